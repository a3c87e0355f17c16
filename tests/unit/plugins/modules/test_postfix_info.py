# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postfix_info against a scratch configuration with real tables and a real scratch queue."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.modules import postfix_info
from ansible_collections.estafeta.postfix.tests.unit.conftest import snapshot

SBIN = '/usr/sbin'
ENV = {'LANG': 'C', 'PATH': os.environ.get('PATH', '') + ':/usr/sbin'}


def run(*args, **kwargs):
    return subprocess.run(list(args), capture_output=True, text=True, check=True, env=ENV, **kwargs)


def settle(config_dir):
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(os.path.join(config_dir, name), (past, past))


@pytest.fixture
def configured(tmp_path, postfix_dir):
    """main.cf and master.cf referring to a fresh, a stale, a never built and an absent table."""
    tables = tmp_path / 'tables'
    tables.mkdir()
    t = str(tables)
    for name in ('access', 'virtual', 'transport', 'header_checks', 'sender_access'):
        with open(os.path.join(t, name), 'w') as f:
            f.write('/x/ REJECT\n' if name == 'header_checks' else 'example.com OK\n')
    run(os.path.join(SBIN, 'postmap'), '-c', postfix_dir, 'hash:%s/access' % t)
    run(os.path.join(SBIN, 'postmap'), '-c', postfix_dir, 'lmdb:%s/virtual' % t)
    run(os.path.join(SBIN, 'postmap'), '-c', postfix_dir, 'hash:%s/sender_access' % t)
    # virtual edited after its database was built: stale
    old = time.time() - 100
    os.utime(os.path.join(t, 'virtual.lmdb'), (old, old))
    postconf = os.path.join(SBIN, 'postconf')
    run(postconf, '-c', postfix_dir, '-e',
        'tables = %s' % t,
        'smtpd_recipient_restrictions = permit_mynetworks, check_recipient_access hash:$tables/access, '
        'reject_unauth_destination',
        'virtual_alias_maps = lmdb:%s/virtual' % t,
        'transport_maps = hash:%s/transport' % t,
        'header_checks = pcre:%s/header_checks' % t,
        'body_checks = regexp:%s/absent' % t,
        'message_size_limit = 52428800')
    run(postconf, '-c', postfix_dir, '-M', 'submission/inet=submission inet n - y - - smtpd')
    run(postconf, '-c', postfix_dir, '-P', 'submission/inet/smtpd_sender_restrictions=check_sender_access,hash:%s/sender_access' % t)
    settle(postfix_dir)
    return postfix_dir, t


def test_all(run_module, configured):
    config_dir, t = configured
    before = snapshot(config_dir)
    tables_before = snapshot(t)
    for check_mode in (True, False):
        res = run_module(postfix_info, {'config_dir': config_dir}, check_mode=check_mode)
        assert res['changed'] is False and 'failed' not in res, res
        assert snapshot(config_dir) == before and snapshot(t) == tables_before
    assert res['gathered'] == ['version', 'parameters', 'services', 'tables', 'queue']
    version = run(os.path.join(SBIN, 'postconf'), '-c', config_dir, '-h', 'mail_version').stdout.strip()
    assert res['version'] == version
    assert res['parameters']['message_size_limit'] == '52428800'
    sub = [s for s in res['services'] if s['name'] == 'submission'][0]
    assert sub['command'] == 'smtpd' and sub['options']['smtpd_sender_restrictions'].endswith('sender_access')
    tables = dict((x['name'], x) for x in res['tables'])
    assert sorted(tables) == sorted([
        'hash:%s/access' % t, 'lmdb:%s/virtual' % t, 'hash:%s/transport' % t, 'pcre:%s/header_checks' % t,
        'regexp:%s/absent' % t, 'hash:%s/sender_access' % t])
    assert tables['hash:%s/access' % t]['stale'] is False          # $tables expanded
    assert tables['hash:%s/access' % t]['used_by'] == ['smtpd_recipient_restrictions']
    assert tables['hash:%s/sender_access' % t]['used_by'] == ['submission/inet/smtpd_sender_restrictions']
    assert sorted(res['stale_tables']) == sorted(['lmdb:%s/virtual' % t, 'hash:%s/transport' % t])
    assert sorted(res['missing_tables']) == sorted(['hash:%s/transport' % t, 'regexp:%s/absent' % t])
    assert res['queue']['method'] == 'files' and res['queue']['running'] is False


def test_subset_and_failure(run_module, configured, tmp_path):
    config_dir, t = configured
    res = run_module(postfix_info, {'config_dir': config_dir, 'gather': ['version', 'tables']})
    assert res['gathered'] == ['version', 'tables'] and 'parameters' not in res and 'queue' not in res
    res = run_module(postfix_info, {'config_dir': config_dir, 'gather': ['tables', 'bogus']})
    assert res['failed'] is True and 'bogus' in res['msg']
    res = run_module(postfix_info, {'config_dir': str(tmp_path / 'none')})
    assert res['failed'] is True and 'does not exist' in res['msg']


@pytest.mark.skipif(os.geteuid() != 0, reason='postdrop and postqueue -j on a stopped mail system need root')
def test_queue_counts(run_module, postfix_dir, tmp_path):
    spool = str(tmp_path / 'spool')
    data = str(tmp_path / 'data')
    os.mkdir(spool)
    os.mkdir(data)
    run(os.path.join(SBIN, 'postconf'), '-c', postfix_dir, '-e', 'queue_directory=' + spool, 'data_directory=' + data)
    settle(postfix_dir)
    run(os.path.join(SBIN, 'postfix'), '-c', postfix_dir, 'post-install', 'create-missing')
    maildrop = os.path.join(spool, 'maildrop')
    for where in ('deferred', 'deferred', 'hold', 'maildrop'):
        before = set(os.listdir(maildrop))
        run(os.path.join(SBIN, 'sendmail'), '-C', postfix_dir, '-f', 'a@example.test', 'b@example.net', input='Subject: t\n\nx\n')
        qid = (set(os.listdir(maildrop)) - before).pop()
        if where != 'maildrop':
            shutil.move(os.path.join(maildrop, qid), os.path.join(spool, where, qid))
    run(os.path.join(SBIN, 'postsuper'), '-c', postfix_dir, '-s')
    expected = {'maildrop': 1, 'incoming': 0, 'active': 0, 'deferred': 2, 'hold': 1}

    res = run_module(postfix_info, {'config_dir': postfix_dir, 'gather': ['queue']})
    assert res['queue'] == {'queue_directory': spool, 'running': False, 'method': 'files', 'counts': expected, 'total': 4}

    # A live master process (this test's own PID in the pid file): postqueue -j is used.
    with open(os.path.join(spool, 'pid', 'master.pid'), 'w') as f:
        f.write('%10d\n' % os.getpid())
    res = run_module(postfix_info, {'config_dir': postfix_dir, 'gather': ['queue']})
    assert res['queue']['method'] == 'postqueue' and res['queue']['running'] is True
    assert res['queue']['counts'] == expected and res['queue']['total'] == 4
