# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role shares the common role: one set of Postfix handlers per play, one host probe.

- each role lists ``common`` as a dependency, and only ``common`` defines handlers for the
  "estafeta.postfix : reload/restart postfix" topics (so several roles reload Postfix once);
- each role that records a converged state digests its input (``__<role>_stamp_input``), skips
  its configuration tasks only through ``__<role>_converged``, and records after them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, 'roles')) if r != 'common'
               and os.path.isdir(os.path.join(ROOT, 'roles', r, 'tasks')))
POSTFIX_TOPICS = {'estafeta.postfix : reload postfix', 'estafeta.postfix : restart postfix'}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def tasks_of(role):
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'roles', role, 'tasks', '*.yml'))):
        for task in load(path) or []:
            found.append((os.path.basename(path), task))
    return found


@pytest.mark.parametrize('role', ROLES)
def test_depends_on_common(role):
    deps = load(os.path.join(ROOT, 'roles', role, 'meta', 'main.yml')).get('dependencies') or []
    assert {'role': 'common'} in deps


@pytest.mark.parametrize('role', ROLES)
def test_postfix_handlers_only_in_common(role):
    path = os.path.join(ROOT, 'roles', role, 'handlers', 'main.yml')
    handlers = load(path) if os.path.exists(path) else []
    assert not [h['name'] for h in handlers or [] if h.get('listen') in POSTFIX_TOPICS or h['name'].lower().endswith(' postfix')]


def test_common_handlers_cover_both_topics():
    handlers = load(os.path.join(ROOT, 'roles', 'common', 'handlers', 'main.yml'))
    assert {h['listen'] for h in handlers} == POSTFIX_TOPICS
    # The check comes before the reload or restart it guards.
    order = [(h['listen'], 'check' in h['name'].lower()) for h in handlers]
    for topic in POSTFIX_TOPICS:
        mine = [is_check for listen, is_check in order if listen == topic]
        assert mine == [True, False]


@pytest.mark.parametrize('role', ROLES)
def test_converged_record(role):
    vars_path = os.path.join(ROOT, 'roles', role, 'vars', 'main.yml')
    variables = load(vars_path) if os.path.exists(vars_path) else {}
    if '__%s_stamp_spec' % role not in (variables or {}):
        pytest.skip('%s records no converged state' % role)
    for name in ('stamp_names', 'stamp_input', 'converged'):
        assert '__%s_%s' % (role, name) in variables
    assert "estafeta.postfix.stamp_input('%s')" % role in variables['__%s_stamp_input' % role]
    tasks = tasks_of(role)
    text = yaml.safe_dump([t for dummy, t in tasks])
    # The role's first task ends it on a converged host, before anything reaches the host.
    first = load(os.path.join(ROOT, 'roles', role, 'tasks', 'main.yml'))[0]
    assert first.get('ansible.builtin.meta') == 'end_role'
    assert str(first['when']).startswith('__%s_converged' % role)
    record = [i for i, (dummy, t) in enumerate(tasks) if 'record' in str((t.get('ansible.builtin.command') or {}).get('argv'))]
    assert len(record) == 1
    record_file, record_task = tasks[record[0]]
    assert 'not ansible_check_mode' in record_task['when']
    assert record_task['changed_when'] is False
    # Every task of our modules is skipped through the converged flag: it sits in configure.yml (or a
    # file configure.yml imports), which main.yml includes only when the role is not converged, or it
    # carries the flag in its own condition.
    files = dict((f, []) for f, dummy in tasks)
    for f, task in tasks:
        files[f].append(task)
    gated_files = set()
    for task in files.get('main.yml', []):
        include = task.get('ansible.builtin.include_tasks')
        if include and 'not __%s_converged' % role in str(task.get('when')):
            gated_files.add(include['file'] if isinstance(include, dict) else include)
    pending = sorted(gated_files)
    while pending:
        for task in files.get(pending.pop(), []):
            for key in ('ansible.builtin.import_tasks', 'ansible.builtin.include_tasks'):
                inner = task.get(key)
                inner = inner.get('file') if isinstance(inner, dict) else inner
                if inner and inner not in gated_files:
                    gated_files.add(inner)
                    pending.append(inner)
    for f, task in tasks:
        module = [k for k in task if k.startswith('estafeta.postfix.')]
        if module and module[0] not in ('estafeta.postfix.postqueue', 'estafeta.postfix.postfix_info') \
                and f not in ('queue.yml', 'flush.yml', 'absent.yml'):
            assert f in gated_files or '__%s_converged' % role in str(task.get('when')), (role, f, task['name'])
    assert record_file in gated_files or 'not __%s_converged' % role in record_task['when']
    assert '__%s_converged' % role in text


def test_common_ends_early_where_the_probe_is_current():
    tasks = load(os.path.join(ROOT, 'roles', 'common', 'tasks', 'main.yml'))
    assert tasks[0].get('ansible.builtin.meta') == 'end_role'
    assert '__common_probe_digest' in tasks[0]['when']
    # The report is a role variable, not a fact set by a task: no worker process per host.
    variables = load(os.path.join(ROOT, 'roles', 'common', 'vars', 'main.yml'))
    assert 'estafeta.postfix.host_probe' in variables['__common_probe']
    assert not [t for t in tasks if 'ansible.builtin.set_fact' in t]


@pytest.mark.parametrize('role', ROLES)
def test_end_role_waits_for_every_probe_guarded_step(role):
    """A role may end early only when no step the probe guards is still needed.

    What the probe shows still to do (packages, services, /etc/mailname) is named in vars/main.yml
    as ``__<role>_..._needed``; the role's first task must not end the role while one of them is
    true, and the guarded tasks use the same names.
    """
    vars_path = os.path.join(ROOT, 'roles', role, 'vars', 'main.yml')
    variables = load(vars_path) if os.path.exists(vars_path) else {}
    if '__%s_converged' % role not in (variables or {}):
        pytest.skip('%s records no converged state' % role)
    probe_vars = sorted(name for name, value in variables.items()
                        if re.search(r'__common_probe\.(packages|services|mailname)', str(value)))
    needed = [name for name in probe_vars if name != '__%s_converged' % role]
    assert all(re.match(r'^__%s_\w+_needed$' % role, name) for name in needed), needed
    first = load(os.path.join(ROOT, 'roles', role, 'tasks', 'main.yml'))[0]
    for name in needed:
        assert 'not %s' % name in first['when'], (role, name)
    text = yaml.safe_dump([t for dummy, t in tasks_of(role)])
    for name in needed:
        assert text.count(name) >= 2, '%s is used by the end of the role only, not by the step it guards' % name
