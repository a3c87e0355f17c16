# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Role variables of the wrong type: the role stops at its argument validation, before any task.

One ``ansible-playbook`` run (connection local, check mode as a second safety net) includes each
role with one wrongly typed variable inside a block; the rescue records the failed task and its
message. The play does not gather facts (a quick tagged run often does not), so a role whose
argument defaults need facts is caught too. Each case then asserts that the failing task was the
argument validation (or the rule check it is about), that the message names the variable, and,
from the run's JSON record of every task (the ansible.posix.json callback), that the role ran no
task past its checks: check mode alone would hide a role that went on, since nothing is written
in check mode. /etc/postfix of this host is compared before and after as well (or found absent
both times), which only counts for a run that went wrong outside check mode.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.estafeta.postfix.tests.unit.conftest import ROOT, snapshot
from ansible_collections.estafeta.postfix.tests.unit.reliability.conftest import COLLECTIONS

# (case id, role, variable, wrong value, what was tried)
ROLE_CASES = [
    ('R01', 'base', 'base_purge', 'maybe', 'base: base_purge (bool) set to "maybe"'),
    ('R02', 'base', 'base_params', ['message_size_limit=1000'], 'base: base_params (dict) given as a list'),
    ('R03', 'base', 'base_mynetworks', {'10.0.0.0/8': True}, 'base: base_mynetworks (list) given as a mapping'),
    ('R04', 'base', 'base_inet_protocols', 'ipv5', 'base: base_inet_protocols outside its choices (ipv5)'),
    ('R05', 'base', 'base_aliases_type', 'dbm', 'base: base_aliases_type outside its choices (dbm)'),
    ('R06', 'postgrey', 'postgrey_listen_port', 'smtp', 'postgrey: postgrey_listen_port (int) set to "smtp"'),
    ('R07', 'postgrey', 'postgrey_delay', 'five minutes', 'postgrey: postgrey_delay (int) set to "five minutes"'),
    ('R08', 'backup_mx', 'backup_mx_primary_port', '25a', 'backup_mx: backup_mx_primary_port (int) set to "25a"'),
    ('R09', 'transport', 'transport_routes', ['example.com smtp:[relay.example]'],
     'transport: transport_routes (list of mappings) given a list of strings'),
    ('R10', 'virtual', 'virtual_aliases', ['info@example.com'], 'virtual: virtual_aliases (dict) given as a list'),
    ('R11', 'content_filter', 'content_filter_amavis_port', 'tcp/10024',
     'content_filter: content_filter_amavis_port (int) set to "tcp/10024"'),
    ('R12', 'content_filter', 'content_filter_header_checks_type', 'glob',
     'content_filter: content_filter_header_checks_type outside its choices (glob)'),
    ('R13', 'anti_relay', 'anti_relay_helo_required', 'sometimes', 'anti_relay: anti_relay_helo_required (bool) set to "sometimes"'),
    ('R14', 'anti_relay', 'anti_relay_sender_access', 'spam.example REJECT',
     'anti_relay: anti_relay_sender_access (dict) given as a plain string'),
    ('R15', 'tls', 'tls_selfsigned_days', 'a year', 'tls: tls_selfsigned_days (int) set to "a year"'),
    ('R16', 'tls', 'tls_key_type', 'DSA', 'tls: tls_key_type outside its choices (DSA)'),
    ('R17', 'tls', 'tls_smtpd_security_level', 'sometimes', 'tls: unknown TLS level (tls_smtpd_security_level: sometimes)'),
    ('R18', 'smarthost', 'smarthost_relayhost', 'smtp.example.com extra',
     'smarthost: relay host with a space (smarthost_relayhost: "smtp.example.com extra")'),
    ('R19', 'smarthost', 'smarthost_password', '',
     'smarthost: authentication on (smarthost_auth: true) and no password (smarthost_password empty)'),
]

# Rules that argument_specs cannot express are checked by the role's first tasks (asserts):
# case id -> (extra variables, name of the task that must stop the run).
RULE_CASES = {
    'R18': ({}, 'Check smarthost_relayhost'),
    'R19': ({'smarthost_relayhost': 'smtp.example.com', 'smarthost_auth': True, 'smarthost_username': 'relay-user'},
            'Check the credentials when smarthost_auth is on'),
}
# Variables a role requires, so that a case reaches the check it is about.
REQUIRED_VARS = {'smarthost': {'smarthost_relayhost': 'smtp.example.com'}}

VALIDATION_TASK = 'Validating arguments against arg spec'


def _has_role(role):
    return os.path.exists(os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml'))


def _playbook(cases, out_file):
    tasks = [{'name': 'Start with no results', 'ansible.builtin.set_fact': {'reliability_results': {}}}]
    for case_id, role, var, value, dummy in cases:
        case_vars = dict(REQUIRED_VARS.get(role, {}))
        case_vars.update(RULE_CASES.get(case_id, ({}, None))[0])
        case_vars[var] = value
        tasks.append({
            'name': 'Case %s' % case_id,
            'block': [
                {'name': 'Include %s with a wrong %s (%s)' % (role, var, case_id),
                 'ansible.builtin.include_role': {'name': 'estafeta.postfix.%s' % role},
                 'vars': case_vars},
                {'name': 'The role went past its validation',
                 'ansible.builtin.set_fact': {
                     'reliability_results': "{{ reliability_results | combine({'%s': {'task': 'NONE', 'msg': ''}}) }}" % case_id}},
            ],
            'rescue': [
                {'name': 'Record the failure',
                 'ansible.builtin.set_fact': {
                     'reliability_results': "{{ reliability_results | combine({'%s': {'task': ansible_failed_task.name, "
                                            "'msg': ansible_failed_result.msg, "
                                            "'errors': ansible_failed_result.argument_errors | default([])}}) }}" % case_id}},
            ],
        })
    tasks.append({'name': 'Write the results', 'ansible.builtin.copy': {
        'content': '{{ reliability_results | to_json }}', 'dest': out_file, 'mode': '0644'}, 'check_mode': False})
    return [{'name': 'Wrongly typed role variables', 'hosts': 'localhost', 'connection': 'local',
             'gather_facts': False, 'tasks': tasks}]


@pytest.fixture(scope='module')
def role_results(tmp_path_factory):
    cases = [c for c in ROLE_CASES if _has_role(c[1])]
    work = tmp_path_factory.mktemp('roles')
    playbook = str(work / 'playbook.yml')
    out_file = str(work / 'results.json')
    with open(playbook, 'w') as f:
        json.dump(_playbook(cases, out_file), f, indent=1)
    etc = '/etc/postfix'
    before = snapshot(etc) if os.path.isdir(etc) else 'absent'
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': os.pathsep.join([COLLECTIONS] + [p for p in sys.path if p.endswith('site-packages')]),
        'ANSIBLE_ROLES_PATH': os.path.join(ROOT, 'roles'),
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCAL_TEMP': str(work / 'tmp'),
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
    })
    playbook_bin = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    proc = subprocess.run([playbook_bin, '-i', 'localhost,', '--check', playbook], capture_output=True, text=True,
                          env=env, cwd=str(work), check=False)
    after = snapshot(etc) if os.path.isdir(etc) else 'absent'
    if not os.path.exists(out_file):
        pytest.fail('ansible-playbook did not finish (rc=%d): %s %s' % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    with open(out_file) as f:
        results = json.load(f)
    return {'results': results, 'etc_unchanged': before == after, 'etc': 'absent' if after == 'absent' else 'present',
            'ran': tasks_ran(json.loads(proc.stdout)), 'output': proc.stdout}


# What a role may run before it stops at a check: the validation, its "end here" test and asserts.
CHECK_ACTIONS = {'validate_argument_spec', 'assert', 'meta', 'include_role', 'set_fact', 'fail'}


def tasks_ran(record):
    """[(task name, action)] in the order the play ran them, from the ansible.posix.json callback's record."""
    ran = []
    for play in record['plays']:
        for task in play['tasks']:
            for result in task['hosts'].values():
                ran.append((task['task']['name'], result.get('action', '')))
    return ran


def ran_in_case(ran, case_id):
    """The tasks that ran between the include of case ``case_id`` and the end of its block."""
    names = [name for name, dummy in ran]
    start = [i for i, name in enumerate(names) if name.endswith('(%s)' % case_id)]
    assert len(start) == 1, names
    tasks = []
    for name, action in ran[start[0] + 1:]:
        if name in ('Record the failure', 'The role went past its validation'):
            break
        tasks.append((name, action))
    return tasks


@pytest.mark.parametrize('case_id, role, var, value, what', [pytest.param(*c, id=c[0]) for c in ROLE_CASES])
def test_wrong_role_variable(case_id, role, var, value, what, role_results, case):
    case(case_id, what)
    if not _has_role(role):
        pytest.skip('role %s is not in this collection yet' % role)
    result = role_results['results'].get(case_id)
    assert result is not None, role_results['output'][-3000:]
    expected_task = RULE_CASES.get(case_id, (None, VALIDATION_TASK))[1]
    assert result['task'].startswith(expected_task), 'the role ran past its validation: %r' % (result,)
    assert var in result['msg'], 'the message does not name %s: %s' % (var, result['msg'])
    ran = ran_in_case(role_results['ran'], case_id)
    own = [(name, action) for name, action in ran if name.startswith('estafeta.postfix.%s : ' % role)]
    past = [(name, action) for name, action in own if action.split('.')[-1] not in CHECK_ACTIONS]
    assert own and not past, 'the role ran tasks past its checks: %r' % past
    assert role_results['etc_unchanged'], '/etc/postfix changed during the run'
    # The role's dependencies run before the role's own validation; say which did something.
    before = sorted(set('%s (%s)' % (name.split(' : ', 1)[1], action.split('.')[-1]) for name, action in ran
                        if ' : ' in name and not name.startswith('estafeta.postfix.%s : ' % role)
                        and action.split('.')[-1] not in CHECK_ACTIONS))
    errors = [e for e in result.get('errors', []) if var in e] or [result['msg']]
    case.evidence('stopped at "%s"; the role\'s own tasks that ran: %s (none past its checks)%s; /etc/postfix %s'
                  % (result['task'].split(' - ')[0], ', '.join(sorted(set(a.split('.')[-1] for n, a in own))),
                     '; its dependencies ran before it: %s' % ', '.join(before) if before else '',
                     'unchanged' if role_results['etc'] == 'present' else 'absent before and after'))
    case.message(errors[0])
