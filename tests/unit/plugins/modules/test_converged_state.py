# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The converged_state module: read, record, commit and forget through AnsibleModule."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.estafeta.postfix.plugins.modules import converged_state
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot

DIGEST = 'c' * 64


def test_record_commit_read_forget(run_module, postfix_dir, tmp_path):
    state_dir = str(tmp_path / 'state')
    common = {'config_dir': postfix_dir, 'state_dir': state_dir}
    record = dict(common, action='record', role='base', input=DIGEST, spec=['param myhostname', 'service smtp/inet'])

    checked = run_module(converged_state, record, check_mode=True)
    assert checked['changed'] is True and checked['diff']['before'] == ''
    assert not os.path.exists(state_dir)
    first = run_module(converged_state, record)
    assert first['changed'] is True and first['role'] == 'base'
    assert run_module(converged_state, dict(common))['pending'] == ['base']

    commit = run_module(converged_state, dict(common, action='commit'))
    assert (commit['changed'], commit['committed'], commit['stale']) == (True, ['base'], [])
    state = run_module(converged_state, dict(common, action='read'))
    assert state['changed'] is False and state['records'] == {'base': DIGEST} and state['drifted'] == {}
    assert run_module(converged_state, record, check_mode=True)['changed'] is False
    assert run_module(converged_state, record)['changed'] is False
    assert run_module(converged_state, dict(common, action='commit'))['changed'] is False

    postconf(postfix_dir, '-e', 'myhostname=drifted.example.test')
    past = os.stat(postfix_dir).st_mtime - 60
    os.utime(os.path.join(postfix_dir, 'main.cf'), (past, past))
    state = run_module(converged_state, dict(common))
    assert state['records'] == {} and state['drifted'] == {'base': ['param myhostname']}

    before = snapshot(os.path.join(state_dir, 'records'))
    assert run_module(converged_state, dict(common, action='forget', roles=['base']), check_mode=True)['forgotten'] == ['base']
    assert snapshot(os.path.join(state_dir, 'records')) == before
    assert run_module(converged_state, dict(common, action='forget', roles=['base']))['changed'] is True
    assert run_module(converged_state, dict(common, action='forget'))['changed'] is False


def test_bad_input_fails_cleanly(run_module, postfix_dir, tmp_path):
    state_dir = str(tmp_path / 'state')
    base = {'config_dir': postfix_dir, 'state_dir': state_dir, 'action': 'record', 'role': 'base'}
    missing = run_module(converged_state, dict(base, input=DIGEST))
    assert missing['failed'] and 'spec' in missing['msg']
    bad_kind = run_module(converged_state, dict(base, input=DIGEST, spec=['parm myhostname']))
    assert bad_kind['failed'] and "unknown kind 'parm'" in bad_kind['msg']
    bad_digest = run_module(converged_state, dict(base, input='not-a-digest', spec=['param myhostname']))
    assert bad_digest['failed'] and 'SHA-256' in bad_digest['msg']
    assert not os.path.exists(state_dir)
