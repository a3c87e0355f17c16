# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every ready playbook is run by a test.

A playbook under playbooks/*.yml counts as covered when a Molecule scenario's converge.yml
imports it, or the demo (playbooks/demo.yml, run by ``make demo``) does, directly or through
other imported playbooks. The import_playbook paths are followed as Ansible resolves them
(relative to the importing file), and ``estafeta.postfix.<name>`` stands for
playbooks/<name>.yml. An import of a missing file, or one whose path is templated, fails too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMPORT_KEYS = ('import_playbook', 'ansible.builtin.import_playbook', 'ansible.legacy.import_playbook')
COLLECTION_PREFIX = 'estafeta.postfix.'


def _imports(path):
    """The import_playbook targets of one playbook file, as written."""
    with open(path) as handle:
        plays = yaml.safe_load(handle) or []
    targets = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        for key in IMPORT_KEYS:
            if key in play:
                targets.append(str(play[key]).strip())
    return targets


def _resolve(root, importer, target):
    """The file an import_playbook target names, or raise ValueError."""
    if '{{' in target or '{%' in target:
        raise ValueError('%s: templated import_playbook path %r cannot be followed' % (os.path.relpath(importer, root), target))
    if target.startswith(COLLECTION_PREFIX):
        name = target[len(COLLECTION_PREFIX):]
        candidates = [os.path.join(root, 'playbooks', name + ext) for ext in ('.yml', '.yaml')]
    else:
        candidates = [os.path.normpath(os.path.join(os.path.dirname(importer), target))]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.realpath(candidate)
    raise ValueError('%s: import_playbook %r names no file' % (os.path.relpath(importer, root), target))


def coverage(root):
    """(covered playbooks' real paths, the problems found while following the imports)."""
    roots = sorted(glob.glob(os.path.join(root, 'molecule', '*', 'converge.yml')))
    demo = os.path.join(root, 'playbooks', 'demo.yml')
    if os.path.isfile(demo):
        roots.append(demo)
    covered, problems = set(), []
    pending = [os.path.realpath(path) for path in roots]
    while pending:
        path = pending.pop()
        if path in covered:
            continue
        covered.add(path)
        for target in _imports(path):
            try:
                pending.append(_resolve(root, path, target))
            except ValueError as exc:
                problems.append(str(exc))
    return covered, problems


def uncovered(root):
    """The playbooks/*.yml nothing runs, and the broken imports."""
    covered, problems = coverage(root)
    playbooks = sorted(glob.glob(os.path.join(root, 'playbooks', '*.yml')))
    missing = [os.path.relpath(path, root) for path in playbooks if os.path.realpath(path) not in covered]
    return missing, problems


def test_every_playbook_is_converged():
    missing, problems = uncovered(ROOT)
    assert not problems, problems
    assert not missing, (
        'no Molecule scenario (molecule/*/converge.yml) and not the demo (playbooks/demo.yml) imports '
        '%s: import it with ansible.builtin.import_playbook in a scenario\'s converge.yml' % ', '.join(missing))


def test_the_ready_playbooks_are_found():
    """The check above looks at the real playbooks (not an empty glob)."""
    covered, dummy = coverage(ROOT)
    names = set(os.path.basename(path) for path in covered)
    assert {'null_client.yml', 'backup_mx.yml', 'transport_hub.yml', 'complete_mailserver.yml', 'demo.yml'} <= names


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_an_unconverged_playbook(tmp_path):
    _write(tmp_path / 'playbooks' / 'demo.yml', '- name: Demo\n  ansible.builtin.import_playbook: full.yml\n')
    _write(tmp_path / 'playbooks' / 'full.yml', '- name: Full\n  hosts: all\n  tasks: []\n')
    _write(tmp_path / 'playbooks' / 'inner.yml', '- name: Inner\n  hosts: all\n  tasks: []\n')
    _write(tmp_path / 'playbooks' / 'outer.yml', '- name: Outer\n  import_playbook: inner.yml\n')
    _write(tmp_path / 'playbooks' / 'lonely.yml', '- name: Lonely\n  hosts: all\n  tasks: []\n')
    _write(tmp_path / 'playbooks' / 'inventories' / 'example' / 'hosts.yml', 'all: {}\n')
    _write(tmp_path / 'molecule' / 'one' / 'converge.yml',
           '- name: Converge\n  ansible.builtin.import_playbook: ../../playbooks/outer.yml\n')
    # prepare.yml is not the converge step: what it imports does not count.
    _write(tmp_path / 'molecule' / 'one' / 'prepare.yml',
           '- name: Prepare\n  ansible.builtin.import_playbook: ../../playbooks/lonely.yml\n')
    missing, problems = uncovered(str(tmp_path))
    assert missing == ['playbooks/lonely.yml']
    assert problems == []


def test_checker_follows_collection_names_and_reports_broken_imports(tmp_path):
    _write(tmp_path / 'playbooks' / 'hub.yml', '- name: Hub\n  hosts: all\n  tasks: []\n')
    _write(tmp_path / 'molecule' / 'one' / 'converge.yml',
           '- name: By collection name\n  ansible.builtin.import_playbook: estafeta.postfix.hub\n'
           '- name: Missing\n  ansible.builtin.import_playbook: ../../playbooks/gone.yml\n'
           '- name: Templated\n  ansible.builtin.import_playbook: "{{ which }}.yml"\n')
    missing, problems = uncovered(str(tmp_path))
    assert missing == []
    assert len(problems) == 2
    assert "molecule/one/converge.yml: import_playbook '../../playbooks/gone.yml' names no file" in problems
    assert any('templated' in problem for problem in problems)
