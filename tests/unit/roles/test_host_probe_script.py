# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host probe (roles/common/files/estafeta_postfix.fact) against a scratch Postfix directory.

A role's record stays intact exactly as long as everything the role manages is as it left it:
any hand edit of a parameter, a table, its database, a file's mode, a master.cf service or a
restriction item the role owns breaks it; changes to things the role does not manage do not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.filter.host_probe import SCHEMA
from ansible_collections.estafeta.postfix.tests.unit.conftest import ROOT, SBIN

SCRIPT = os.path.join(ROOT, 'roles', 'common', 'files', 'estafeta_postfix.fact')
INPUT = 'ab' * 32


def settle(*paths):
    past = time.time() - 60
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def probe(postfix_dir, tmp_path):
    state = str(tmp_path / 'state')
    env = dict(os.environ, ESTAFETA_POSTFIX_CONFIG_DIR=postfix_dir, ESTAFETA_POSTFIX_STATE_DIR=state,
               ESTAFETA_POSTFIX_PATH='%s:/usr/bin:/bin' % SBIN)

    def run(*args, **kwargs):
        settle(os.path.join(postfix_dir, 'main.cf'), os.path.join(postfix_dir, 'master.cf'))
        proc = subprocess.run([sys.executable, SCRIPT] + list(args), env=env, capture_output=True, text=True,
                              input=kwargs.get('stdin'), check=False)
        if kwargs.get('check', True):
            assert proc.returncode == 0, proc.stderr
        return proc

    def report():
        return json.loads(run().stdout)

    def record(role, spec):
        return run('record', role, INPUT, stdin=json.dumps(spec))

    run.report, run.record, run.state, run.conf = report, record, state, postfix_dir
    return run


def edit(conf, *assignments):
    subprocess.run([os.path.join(SBIN, 'postconf'), '-c', conf, '-e'] + list(assignments), check=True)


def write_table(conf, name, text):
    path = os.path.join(conf, name)
    with open(path, 'w') as f:
        f.write(text)
    subprocess.run([os.path.join(SBIN, 'postmap'), '-c', conf, 'hash:' + path], check=True)
    return path


def test_report_shape_and_schema(probe):
    report = probe.report()
    assert report['schema'] == SCHEMA, 'bump SCHEMA in the script and in plugins/filter/host_probe.py together'
    assert abs(report['epoch'] - time.time()) < 60
    assert isinstance(report['packages'], dict)
    assert 'dpkg' in report['packages'] or report['packages'] == {}
    assert isinstance(report['services'], dict)
    assert report['stamps'] == {}
    with open(SCRIPT, 'rb') as f:
        assert report['probe'] == hashlib.sha256(f.read()).hexdigest()


def test_record_then_hand_edits_break_it(probe):
    conf = probe.conf
    edit(conf, 'virtual_alias_domains=a.example', 'virtual_alias_maps=hash:%s/virtual' % conf)
    table = write_table(conf, 'virtual', 'alice@a.example root\n')
    spec = ['param virtual_alias_domains', 'param virtual_alias_maps', 'table ' + table]
    probe.record('virtual', spec)
    assert probe.report()['stamps'] == {'virtual': {'input': INPUT, 'intact': True}}
    record = os.path.join(probe.state, 'stamps', 'virtual.json')
    assert oct(os.stat(os.path.dirname(record)).st_mode & 0o777) == '0o700'

    # Something the role does not manage: still intact.
    edit(conf, 'message_size_limit=1024000')
    assert probe.report()['stamps']['virtual']['intact'] is True

    # A managed parameter edited by hand.
    edit(conf, 'virtual_alias_domains=b.example')
    assert probe.report()['stamps']['virtual']['intact'] is False
    edit(conf, 'virtual_alias_domains=a.example')
    assert probe.report()['stamps']['virtual']['intact'] is True

    # The table's source, its mode, its database.
    with open(table, 'a') as f:
        f.write('bob@a.example root\n')
    assert probe.report()['stamps']['virtual']['intact'] is False
    write_table(conf, 'virtual', 'alice@a.example root\n')
    # postmap wrote a new database with the same entries: the bytes may differ, so record again.
    probe.record('virtual', spec)
    assert probe.report()['stamps']['virtual']['intact'] is True
    os.chmod(table, 0o600)
    assert probe.report()['stamps']['virtual']['intact'] is False
    os.chmod(table, 0o644)
    assert probe.report()['stamps']['virtual']['intact'] is True
    os.unlink(table + '.db')
    assert probe.report()['stamps']['virtual']['intact'] is False


def test_removed_parameter_breaks_it(probe):
    edit(probe.conf, 'transport_maps=hash:/etc/postfix/transport')
    probe.record('transport', ['param transport_maps'])
    assert probe.report()['stamps']['transport']['intact'] is True
    subprocess.run([os.path.join(SBIN, 'postconf'), '-c', probe.conf, '-X', 'transport_maps'], check=True)
    assert probe.report()['stamps']['transport']['intact'] is False


def test_services_and_overrides(probe):
    conf = probe.conf
    with open(os.path.join(conf, 'master.cf'), 'a') as f:
        f.write('submission inet n - y - - smtpd\n  -o syslog_name=postfix/submission\n')
    probe.record('anti_relay', ['service submission/inet'])
    assert probe.report()['stamps']['anti_relay']['intact'] is True
    subprocess.run([os.path.join(SBIN, 'postconf'), '-c', conf, '-P', 'submission/inet/smtpd_tls_security_level=encrypt'],
                   check=True)
    assert probe.report()['stamps']['anti_relay']['intact'] is False


def test_restriction_items_of_one_owner(probe):
    conf = probe.conf
    edit(conf, 'smtpd_recipient_restrictions=permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023')
    with open(os.path.join(conf, 'estafeta-restrictions.json'), 'w') as f:
        json.dump({'version': 1, 'lists': {'smtpd_recipient_restrictions': {
            'anti_relay': ['permit_mynetworks', 'reject_unauth_destination'],
            'postgrey': ['check_policy_service inet:127.0.0.1:10023']}}}, f)
    probe.record('anti_relay', ['restriction smtpd_recipient_restrictions anti_relay'])
    assert probe.report()['stamps']['anti_relay']['intact'] is True
    # Another owner's item goes: anti_relay's items are untouched.
    edit(conf, 'smtpd_recipient_restrictions=permit_mynetworks, reject_unauth_destination')
    assert probe.report()['stamps']['anti_relay']['intact'] is True
    # One of anti_relay's items removed by hand.
    edit(conf, 'smtpd_recipient_restrictions=permit_mynetworks')
    assert probe.report()['stamps']['anti_relay']['intact'] is False


def test_input_digest_is_reported_for_the_role_to_compare(probe):
    probe.record('virtual', ['param virtual_alias_domains'])
    assert probe.report()['stamps']['virtual']['input'] == INPUT


def test_bad_records_are_refused_or_ignored(probe):
    assert probe('record', 'Bad-Role', INPUT, stdin='[]', check=False).returncode != 0
    assert probe('record', 'virtual', 'not-a-digest', stdin='[]', check=False).returncode != 0
    assert probe('record', 'virtual', INPUT, stdin='[["param", "x"]]', check=False).returncode != 0
    assert not os.path.exists(os.path.join(probe.state, 'stamps', 'virtual.json'))
    os.makedirs(os.path.join(probe.state, 'stamps'))
    with open(os.path.join(probe.state, 'stamps', 'base.json'), 'w') as f:
        f.write('{broken')
    assert probe.report()['stamps'] == {'base': {'input': '', 'intact': False}}


def test_forget(probe):
    probe.record('virtual', ['param virtual_alias_domains'])
    probe('forget', 'virtual')
    assert probe.report()['stamps'] == {}
