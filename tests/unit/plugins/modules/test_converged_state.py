# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged_state module: read, record and forget through AnsibleModule."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils import basic
from ansible_collections.estafeta.postfix.plugins.modules import converged_state
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot

DIGEST = 'c' * 64


def test_record_read_forget(run_module, postfix_dir, tmp_path):
    state_dir = str(tmp_path / 'state')
    entry = {'role': 'base', 'input': DIGEST, 'spec': ['param myhostname', 'service smtp/inet'], 'config_dir': postfix_dir}
    record = {'action': 'record', 'records': [entry], 'state_dir': state_dir}

    checked = run_module(converged_state, record, check_mode=True)
    assert checked['changed'] is True and checked['diff']['before'] == '' and checked['recorded'] == ['base']
    assert not os.path.exists(state_dir)
    first = run_module(converged_state, record)
    assert first['changed'] is True and first['recorded'] == ['base']
    state = run_module(converged_state, {'state_dir': state_dir})
    assert state['changed'] is False and state['records'] == {'base': DIGEST} and state['drifted'] == {}
    assert run_module(converged_state, record, check_mode=True)['changed'] is False
    assert run_module(converged_state, record)['changed'] is False

    postconf(postfix_dir, '-e', 'myhostname=drifted.example.test')
    past = os.stat(postfix_dir).st_mtime - 60
    os.utime(os.path.join(postfix_dir, 'main.cf'), (past, past))
    state = run_module(converged_state, {'state_dir': state_dir, 'action': 'read'})
    assert state['records'] == {} and state['drifted'] == {'base': ['param myhostname']}

    before = snapshot(os.path.join(state_dir, 'records'))
    forget = {'state_dir': state_dir, 'action': 'forget', 'roles': ['base']}
    assert run_module(converged_state, forget, check_mode=True)['forgotten'] == ['base']
    assert snapshot(os.path.join(state_dir, 'records')) == before
    assert run_module(converged_state, forget)['changed'] is True
    assert run_module(converged_state, dict(forget, roles=[]))['changed'] is False


def test_shared_object_warns(run_module, postfix_dir, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, msg: warnings.append(msg))
    records = [{'role': r, 'input': DIGEST, 'spec': ['param myhostname'], 'config_dir': postfix_dir} for r in ('base', 'tls')]
    result = run_module(converged_state, {'action': 'record', 'records': records, 'state_dir': str(tmp_path / 's')})
    assert result['changed'] is True
    assert any('managed by base and tls' in w for w in warnings), warnings


def test_bad_input_fails_cleanly(run_module, postfix_dir, tmp_path):
    state_dir = str(tmp_path / 'state')
    base = {'action': 'record', 'state_dir': state_dir}
    missing = run_module(converged_state, dict(base, records=[{'role': 'base', 'input': DIGEST}]))
    assert missing['failed'] and 'spec' in missing['msg']
    bad_kind = run_module(converged_state, dict(base, records=[{'role': 'base', 'input': DIGEST, 'spec': ['parm x']}]))
    assert bad_kind['failed'] and "unknown kind 'parm'" in bad_kind['msg']
    bad_digest = run_module(converged_state, dict(base, records=[{'role': 'base', 'input': 'nope', 'spec': ['param x']}]))
    assert bad_digest['failed'] and 'SHA-256' in bad_digest['msg']
    assert not os.path.exists(state_dir)


def test_facts_come_back_while_the_record_holds(run_module, postfix_dir, tmp_path):
    """The facts a role recorded (the dkim role's DNS records) are read back while its record holds, and only then."""
    state_dir = str(tmp_path / 'state')
    facts = {'dkim_dns_records': [{'name': 's1._domainkey.example.test', 'type': 'TXT', 'value': 'v=DKIM1; k=rsa; p=AA'}]}
    entry = {'role': 'dkim', 'input': DIGEST, 'spec': ['param myhostname'], 'config_dir': postfix_dir, 'facts': facts}
    assert run_module(converged_state, {'action': 'record', 'records': [entry], 'state_dir': state_dir})['changed']
    state = run_module(converged_state, {'state_dir': state_dir})
    assert state['records'] == {'dkim': DIGEST} and state['facts'] == {'dkim': facts}
    # Without facts, the record is written again (the old facts would be stale).
    again = run_module(converged_state, {'action': 'record', 'records': [dict(entry, facts={})], 'state_dir': state_dir})
    assert again['changed'] is True
    assert run_module(converged_state, {'state_dir': state_dir})['facts'] == {}
    bad = run_module(converged_state, {'action': 'record', 'state_dir': state_dir,
                                       'records': [dict(entry, facts={'no-name': 1})]})
    assert bad['failed'] and 'not a variable name' in bad['msg']
