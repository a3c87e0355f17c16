# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stamp_input filter: any change to a role's input or code gives another digest; secrets do not leak."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import shutil

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.estafeta.postfix.plugins.filter import stamp_input as mod

VARS = {'smarthost_relayhost': 'smtp.example.com', 'smarthost_port': 587, 'smarthost_auth': True,
        'smarthost_password': 'correct horse', 'smarthost_sender_relays': [{'sender': '@a.example', 'password': 'pw2'}]}


def test_stable_and_sensitive_to_every_value():
    first = mod.stamp_input(dict(VARS), 'smarthost')
    assert first == mod.stamp_input(dict(VARS), 'smarthost')
    assert len(first) == 64 and int(first, 16) >= 0
    for name, value in [('smarthost_port', 25), ('smarthost_auth', False), ('smarthost_password', 'other'),
                        ('smarthost_sender_relays', [{'sender': '@a.example', 'password': 'pw3'}]), ('smarthost_new', '')]:
        changed = dict(VARS)
        changed[name] = value
        assert mod.stamp_input(changed, 'smarthost') != first, name
    assert mod.stamp_input(dict(VARS), 'virtual') != first


def test_secrets_enter_only_through_a_slow_digest():
    plain = mod._plain('smarthost', '', dict(VARS))
    text = json.dumps(plain)
    assert 'correct horse' not in text and 'pw2' not in text
    assert plain['smarthost_password'].startswith('pbkdf2:')
    assert plain['smarthost_sender_relays'][0]['password'].startswith('pbkdf2:')
    assert plain['smarthost_sender_relays'][0]['sender'] == '@a.example'
    # Not a plain hash of the value, which a dictionary attack would find at once.
    quick = hashlib.sha256(json.dumps('correct horse').encode()).hexdigest()
    assert quick not in text
    assert mod.ROUNDS >= 50000


def test_code_change_gives_another_digest(tmp_path, monkeypatch):
    root = tmp_path / 'collection'
    for part in ('roles/virtual', 'roles/common', 'plugins'):
        shutil.copytree(os.path.join(mod.COLLECTION_ROOT, part), str(root / part))
    monkeypatch.setattr(mod, 'COLLECTION_ROOT', str(root))
    monkeypatch.setattr(mod, '_CODE', {})
    before = mod.stamp_input({'virtual_aliases': {}}, 'virtual')
    with open(str(root / 'roles' / 'virtual' / 'tasks' / 'main.yml'), 'a') as f:
        f.write('# a change\n')
    monkeypatch.setattr(mod, '_CODE', {})
    assert mod.stamp_input({'virtual_aliases': {}}, 'virtual') != before
    # The README is documentation, not code.
    monkeypatch.setattr(mod, '_CODE', {})
    after = mod.stamp_input({'virtual_aliases': {}}, 'virtual')
    (root / 'roles' / 'virtual' / 'README.md').write_text('changed\n')
    monkeypatch.setattr(mod, '_CODE', {})
    assert mod.stamp_input({'virtual_aliases': {}}, 'virtual') == after


def test_bad_input():
    with pytest.raises(AnsibleFilterError, match='mapping'):
        mod.stamp_input(['x'], 'base')
    with pytest.raises(AnsibleFilterError, match='no role'):
        mod.stamp_input({}, 'no_such_role')
