# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet operations through Ansible, as an operator runs them ad hoc.

Every module call goes through ``ansible HOST -b -m estafeta.postfix.<module> -a '...'``,
against a live Postfix whose relay refuses connections, so the test messages
stay deferred. Every test stands alone: it starts from the same four deferred messages, queued
again when an earlier test changed the queue.
"""

import json
import os
import subprocess
import tempfile

import pytest
from molecule_helpers import wait_until

SPAMMER = 'spammer@bad.test'
MESSAGES = [
    (SPAMMER, 'victim1@example.net'),
    (SPAMMER, 'victim2@example.org'),
    ('alice@example.test', 'bob@example.net'),
    ('carol@example.test', 'dave@example.org'),
]
REFUSED = '127.0.0.1[127.0.0.1]:2525: Connection refused'


def module(host, name, args='', check=False, fail=False):
    """Run a module of the collection ad hoc, as an operator does across the fleet:
    ``ansible HOST -b -m NAME -a ARGS [--check]``. Returns the module's result.

    The exit code tells success from failure (``--tree`` output has no "failed" key any more).
    """
    with tempfile.TemporaryDirectory() as tree:
        cmd = ['ansible', host.backend.get_hostname(), '-i', os.environ['MOLECULE_INVENTORY_FILE'], '-b',
               '-m', name, '--tree', tree]
        if args:
            cmd += ['-a', args]
        if check:
            cmd.append('--check')
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        files = os.listdir(tree)
        assert files, proc.stdout + proc.stderr
        with open(os.path.join(tree, files[0])) as f:
            result = json.load(f)
    if fail:
        assert proc.returncode == 2, (proc.returncode, result)
    else:
        assert proc.returncode == 0, (proc.returncode, result, proc.stderr)
    return result


def failing(host, name, args):
    """The failure message of a module call that must fail."""
    return module(host, name, args, fail=True)['msg']


def queue(host):
    """The queue as Postfix itself lists it."""
    out = host.check_output('postqueue -j')
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def shape(messages):
    """The queue as (sender, recipient, queue name), in order."""
    return sorted((m['sender'], m['recipients'][0]['address'], m['queue_name']) for m in messages)


WANTED = sorted((sender, rcpt, 'deferred') for sender, rcpt in MESSAGES)


@pytest.fixture
def queued(host):
    """The four deferred messages (the relay refuses them) and nothing else; queued again from an
    empty queue unless the queue already holds exactly those (a test before may have changed it)."""
    if shape(queue(host)) != WANTED:
        host.run_test('postsuper -d ALL')
        for sender, rcpt in MESSAGES:
            host.run_test("printf 'Subject: fleet ops\\n\\nqueued by the fleet_ops scenario\\n' | sendmail -f %s %s"
                          % (sender, rcpt))
        assert wait_until(lambda: shape(queue(host)) == WANTED, 60), queue(host)
    return queue(host)


def test_info_version_and_queue(host, queued):
    info = module(host, 'estafeta.postfix.postfix_info', 'gather=version,queue', check=True)
    assert info['changed'] is False
    assert info['gathered'] == ['version', 'queue']
    assert info['version'] == host.check_output('postconf -h mail_version')
    assert info['queue']['method'] == 'postqueue' and info['queue']['running'] is True
    assert info['queue']['counts']['deferred'] == 4 and info['queue']['total'] == 4


def test_list(host, queued):
    res = module(host, 'estafeta.postfix.postqueue')
    assert res['changed'] is False and res['count'] == 4 and res['queues']['deferred'] == 4
    spam = [m for m in res['messages'] if m['sender'] == SPAMMER]
    assert len(spam) == 2
    assert all(REFUSED in m['delay_reasons'][0] for m in res['messages'])
    res = module(host, 'estafeta.postfix.postqueue', r'recipient_regex=@example\.org$')
    assert sorted(m['recipients'][0] for m in res['messages']) == ['dave@example.org', 'victim2@example.org']


def test_guard_refuses_and_deletes_nothing(host, queued):
    msg = failing(host, 'estafeta.postfix.postqueue', 'action=delete')
    assert 'without a selector' in msg
    msg = failing(host, 'estafeta.postfix.postqueue', 'action=delete recipient_regex=@example')
    assert 'matches every message' in msg
    assert len(queue(host)) == 4


def test_check_mode_delete_reports_but_keeps(host, queued):
    res = module(host, 'estafeta.postfix.postqueue', 'action=delete sender=%s' % SPAMMER, check=True)
    assert res['changed'] is True and res['count'] == 2
    assert sorted(res['affected']) == sorted(m['queue_id'] for m in queued if m['sender'] == SPAMMER)
    assert len(queue(host)) == 4


def test_delete_by_sender_deletes_only_those(host, queued):
    res = module(host, 'estafeta.postfix.postqueue', 'action=delete sender=%s' % SPAMMER)
    assert res['changed'] is True and len(res['affected']) == 2
    left = queue(host)
    assert sorted(m['sender'] for m in left) == ['alice@example.test', 'carol@example.test']
    res = module(host, 'estafeta.postfix.postqueue', 'action=delete sender=%s' % SPAMMER)
    assert res['changed'] is False


def test_hold_and_release(host, queued):
    res = module(host, 'estafeta.postfix.postqueue', 'action=hold sender=alice@example.test')
    assert res['changed'] is True
    held = [m for m in queue(host) if m['queue_name'] == 'hold']
    assert [m['sender'] for m in held] == ['alice@example.test']
    info = module(host, 'estafeta.postfix.postfix_info', 'gather=queue')
    assert info['queue']['counts']['hold'] == 1 and info['queue']['counts']['deferred'] == len(MESSAGES) - 1
    assert module(host, 'estafeta.postfix.postqueue', 'action=hold sender=alice@example.test')['changed'] is False
    res = module(host, 'estafeta.postfix.postqueue', 'action=release queue_id=%s' % held[0]['queue_id'])
    assert res['changed'] is True and res['affected'] == [held[0]['queue_id']]
    assert wait_until(lambda: shape(queue(host)) == WANTED, 30), queue(host)


def test_flush_retries_deferred_mail(host, queued):
    def attempts():
        return int(host.run('grep -cF -- %s /var/log/mail.log', REFUSED).stdout.strip() or 0)

    before = attempts()
    res = module(host, 'estafeta.postfix.postqueue', 'action=flush')
    assert res['changed'] is True and res['count'] == len(MESSAGES)
    assert wait_until(lambda: attempts() >= before + len(MESSAGES), 30), 'postqueue -f did not trigger delivery attempts'


def test_info_reports_stale_table(host, queued):
    info = module(host, 'estafeta.postfix.postfix_info', 'gather=tables')
    table = [t for t in info['tables'] if t['name'] == 'hash:/etc/postfix/transport'][0]
    assert table['used_by'] == ['transport_maps'] and table['stale'] is False and table['database_exists'] is True
    host.run_test("touch -d '-1 hour' /etc/postfix/transport.db")
    try:
        info = module(host, 'estafeta.postfix.postfix_info', 'gather=tables')
        assert 'hash:/etc/postfix/transport' in info['stale_tables']
    finally:
        host.run_test('postmap /etc/postfix/transport')
    info = module(host, 'estafeta.postfix.postfix_info', 'gather=tables')
    assert info['stale_tables'] == []


def test_adhoc_postconf_set_in_check_mode(host):
    """ansible mailservers -m estafeta.postfix.postconf_set -a 'name=message_size_limit value=52428800' --check"""
    before = host.check_output('postconf -h message_size_limit')
    res = module(host, 'estafeta.postfix.postconf_set', 'name=message_size_limit value=52428800', check=True)
    assert res['changed'] is (before != '52428800')
    assert host.check_output('postconf -h message_size_limit') == before
