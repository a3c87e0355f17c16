# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The postqueue module against a real Postfix queue in a scratch directory.

No Postfix daemon runs: messages are submitted with the real ``sendmail -C`` (postdrop writes
them to the scratch maildrop queue), moved into the queue the test needs, and ``postsuper -s``
puts them where Postfix expects them. As root, ``postqueue -j`` reads such a queue directly,
and ``postsuper`` acts on it as on a live one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.estafeta.postfix.plugins.modules import postqueue

SBIN = '/usr/sbin'
ENV = {'LANG': 'C', 'PATH': os.environ.get('PATH', '') + ':/usr/sbin'}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='postdrop, postqueue -j (mail system down) and postsuper need root')

# sender, recipients, queue
MESSAGES = [
    ('spammer@bad.test', ['victim1@example.net', 'victim2@example.org'], 'deferred'),
    ('spammer@bad.test', ['victim3@example.net'], 'deferred'),
    ('alice@example.test', ['bob@example.net'], 'deferred'),
    ('', ['postmaster@example.net'], 'deferred'),
    ('carol@example.test', ['dave@example.org'], 'hold'),
]


def _run(*args, **kwargs):
    return subprocess.run(list(args), capture_output=True, text=True, check=True, env=ENV, **kwargs)


def queue_list(config_dir):
    out = _run(os.path.join(SBIN, 'postqueue'), '-c', config_dir, '-j').stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def spool_snapshot(spool):
    files = {}
    for root, dummy, names in os.walk(spool):
        for name in names:
            path = os.path.join(root, name)
            if '/pid/' not in path:
                with open(path, 'rb') as f:
                    files[os.path.relpath(path, spool)] = f.read()
    return files


@pytest.fixture
def queue(tmp_path, postfix_dir):
    """A scratch queue holding MESSAGES; returns (config_dir, spool, {sender/queue: [ids]})."""
    spool = str(tmp_path / 'spool')
    data = str(tmp_path / 'data')
    os.mkdir(spool)
    os.mkdir(data)
    _run(os.path.join(SBIN, 'postconf'), '-c', postfix_dir, '-e', 'queue_directory=' + spool, 'data_directory=' + data)
    past = os.stat(os.path.join(postfix_dir, 'master.cf')).st_mtime
    os.utime(os.path.join(postfix_dir, 'main.cf'), (past, past))
    _run(os.path.join(SBIN, 'postfix'), '-c', postfix_dir, 'post-install', 'create-missing')
    maildrop = os.path.join(spool, 'maildrop')
    for sender, rcpts, where in MESSAGES:
        before = set(os.listdir(maildrop))
        _run(os.path.join(SBIN, 'sendmail'), '-C', postfix_dir, '-f', sender, *rcpts,
             input='Subject: test\n\nbody\n')
        new = set(os.listdir(maildrop)) - before
        assert len(new) == 1
        qid = new.pop()
        shutil.move(os.path.join(maildrop, qid), os.path.join(spool, where, qid))
    _run(os.path.join(SBIN, 'postsuper'), '-c', postfix_dir, '-s')
    listed = queue_list(postfix_dir)
    assert len(listed) == len(MESSAGES)
    return postfix_dir, spool


def ids_by(listed, sender=None, queue_name=None):
    return sorted(m['queue_id'] for m in listed
                  if (sender is None or m['sender'] == sender) and (queue_name is None or m['queue_name'] == queue_name))


def four_steps(run_module, args, spool):
    """check -> real -> check -> real: changed True, True, False, False; check mode writes nothing."""
    before = spool_snapshot(spool)
    check = run_module(postqueue, args, check_mode=True)
    assert check['changed'] is True, check
    assert spool_snapshot(spool) == before
    real = run_module(postqueue, args)
    assert real['changed'] is True, real
    assert sorted(real['affected']) == sorted(check['affected'])
    again = run_module(postqueue, args, check_mode=True)
    assert again['changed'] is False, again
    again = run_module(postqueue, args)
    assert again['changed'] is False, again
    return check, real


def test_list(run_module, queue):
    config_dir, spool = queue
    before = spool_snapshot(spool)
    res = run_module(postqueue, {'config_dir': config_dir})
    assert res['changed'] is False and res['action'] == 'list'
    assert res['total'] == 5 and res['count'] == 5
    assert res['queues'] == {'maildrop': 0, 'incoming': 0, 'active': 0, 'deferred': 4, 'hold': 1}
    msg = [m for m in res['messages'] if m['sender'] == 'spammer@bad.test' and len(m['recipients']) == 2][0]
    assert msg['recipients'] == ['victim1@example.net', 'victim2@example.org']
    assert msg['queue'] == 'deferred' and msg['size'] > 0 and msg['arrival_time'] > 0
    res = run_module(postqueue, {'config_dir': config_dir, 'sender': [''], 'recipient_regex': 'POSTMASTER@'})
    assert res['count'] == 1 and res['messages'][0]['sender'] == 'MAILER-DAEMON'
    res = run_module(postqueue, {'config_dir': config_dir, 'queue_id': ['NOSUCHID'], 'queue': ['hold']})
    assert res['count'] == 0 and res['unmatched_queue_ids'] == ['NOSUCHID']
    assert spool_snapshot(spool) == before


def test_delete_by_sender(run_module, queue):
    config_dir, spool = queue
    listed = queue_list(config_dir)
    spam = ids_by(listed, sender='spammer@bad.test')
    args = {'config_dir': config_dir, 'action': 'delete', 'sender': ['spammer@bad.test']}
    check, real = four_steps(run_module, args, spool)
    assert sorted(check['affected']) == spam and sorted(m['queue_id'] for m in check['messages']) == spam
    after = queue_list(config_dir)
    assert len(after) == 3 and not set(spam) & set(m['queue_id'] for m in after)


def test_hold_and_release(run_module, queue):
    config_dir, spool = queue
    alice = ids_by(queue_list(config_dir), sender='alice@example.test')
    args = {'config_dir': config_dir, 'action': 'hold', 'recipient': ['BOB@example.net']}
    four_steps(run_module, args, spool)
    after = queue_list(config_dir)
    assert ids_by(after, queue_name='hold') == sorted(alice + ids_by(after, sender='carol@example.test'))
    args = {'config_dir': config_dir, 'action': 'release', 'queue_id': alice}
    four_steps(run_module, args, spool)
    assert ids_by(queue_list(config_dir), sender='alice@example.test', queue_name='deferred') == alice


def test_requeue_by_id(run_module, queue):
    config_dir, spool = queue
    carol = ids_by(queue_list(config_dir), sender='carol@example.test')
    args = {'config_dir': config_dir, 'action': 'requeue', 'queue_id': carol}
    check, real = four_steps(run_module, args, spool)
    assert real['affected'] == carol
    assert ids_by(queue_list(config_dir), sender='carol@example.test', queue_name='maildrop') == carol


@pytest.mark.parametrize('args, message', [
    ({'action': 'delete'}, 'Refusing to delete without a selector'),
    ({'action': 'delete', 'recipient_regex': r'@example\.(net|org)$'}, 'Refusing to delete all 5 queued messages'),
    ({'action': 'requeue', 'queue': ['deferred', 'hold']}, 'Refusing to requeue all 5 queued messages'),
    ({'action': 'delete', 'older_than': 'yesterday'}, 'older_than must be a number of seconds'),
    ({'action': 'delete', 'sender_regex': '(spam'}, "sender_regex '(spam' is not a valid regular expression"),
    ({'action': 'flush', 'sender': ['a@b.c']}, 'takes no selector'),
])
def test_refusals_change_nothing(run_module, queue, args, message):
    config_dir, spool = queue
    before = spool_snapshot(spool)
    args = dict(args, config_dir=config_dir)
    res = run_module(postqueue, args)
    assert res.get('failed') is True, res
    assert message in res['msg']
    assert spool_snapshot(spool) == before


def test_delete_all_allowed(run_module, queue):
    config_dir, spool = queue
    args = {'config_dir': config_dir, 'action': 'delete', 'allow_all': True}
    check, real = four_steps(run_module, args, spool)
    assert len(real['affected']) == 5
    assert queue_list(config_dir) == []


def test_flush(run_module, queue):
    config_dir, spool = queue
    res = run_module(postqueue, {'config_dir': config_dir, 'action': 'flush'}, check_mode=True)
    assert res['changed'] is True and res['count'] == 4
    # The mail system of the scratch instance is down: the flush fails and says why.
    res = run_module(postqueue, {'config_dir': config_dir, 'action': 'flush'})
    assert res['failed'] is True and 'postqueue -f' in res['msg'] and 'systemctl start postfix' in res['msg']
    run_module(postqueue, {'config_dir': config_dir, 'action': 'hold', 'queue': ['deferred'], 'allow_all': True})
    res = run_module(postqueue, {'config_dir': config_dir, 'action': 'flush'})
    assert res['changed'] is False and res['count'] == 0 and 'failed' not in res
