# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A condition on a role in a play's ``roles`` list is inherited by the roles it depends on. Every role
of the collection depends on ``common``, whose handlers (the reload, the converged-state records) are
shared by the whole play: a ``when`` on one role of the collection would skip those handlers for every
role on the hosts where it is false. A role with a condition therefore gets a play of its own (see
playbooks/complete_mailserver.yml). The first test shows the inheritance with ansible-playbook itself,
the second checks the playbooks and the Molecule scenarios' plays."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOKS = sorted(glob.glob(os.path.join(ROOT, 'playbooks', '*.yml'))
                   + glob.glob(os.path.join(ROOT, 'molecule', '*', '*.yml')))


def test_a_condition_on_a_role_skips_the_shared_handlers(tmp_path):
    for role in ('shared', 'first', 'second'):
        for sub in ('tasks', 'meta', 'handlers'):
            (tmp_path / 'roles' / role / sub).mkdir(parents=True)
    (tmp_path / 'roles' / 'shared' / 'tasks' / 'main.yml').write_text('- ansible.builtin.meta: noop\n')
    (tmp_path / 'roles' / 'shared' / 'handlers' / 'main.yml').write_text(
        '- name: Shared handler\n  ansible.builtin.debug:\n    msg: shared handler ran\n  listen: topic\n')
    for role in ('first', 'second'):
        (tmp_path / 'roles' / role / 'meta' / 'main.yml').write_text('dependencies:\n  - role: shared\n')
        (tmp_path / 'roles' / role / 'tasks' / 'main.yml').write_text(
            '- name: Change something\n  ansible.builtin.debug:\n    msg: changed\n  changed_when: true\n'
            '  notify: topic\n')
    play = ('- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: first\n'
            '    - role: second\n      when: %s\n')
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(tmp_path / 'roles'), ANSIBLE_NOCOLOR='1')
    ran = {}
    for condition in ('false', 'true'):
        (tmp_path / 'play.yml').write_text(play % condition)
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,',
                               '-c', 'local', str(tmp_path / 'play.yml')], cwd=str(tmp_path), env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ran[condition] = 'shared handler ran' in proc.stdout
    # The first role changed something and notified the handler; the second role's condition decides.
    assert ran == {'false': False, 'true': True}


def _plays(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    return [p for p in data or [] if isinstance(p, dict) and 'roles' in p] if isinstance(data, list) else []


@pytest.mark.parametrize('path', PLAYBOOKS, ids=[os.path.relpath(p, ROOT) for p in PLAYBOOKS])
def test_no_role_of_the_collection_has_a_condition_next_to_others(path):
    for play in _plays(path):
        roles = [r if isinstance(r, dict) else {'role': r} for r in play['roles'] or []]
        ours = [r for r in roles if str(r.get('role', r.get('name', ''))).startswith('estafeta.postfix.')]
        if len(ours) < 2:
            continue
        conditional = [r['role'] for r in ours if 'when' in r]
        assert not conditional, ('%s, play %r: %s has a condition next to other roles of the collection; give it a '
                                 'play of its own' % (os.path.relpath(path, ROOT), play.get('name'), conditional))
