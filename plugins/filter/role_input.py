# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: role_input
short_description: Digest of a role's input, to recognise a host the role already converged
version_added: 0.1.0
description:
  - Returns a SHA-256 digest of everything a role's result depends on, computed on the controller -
    the role's variables (as given) and the code of the role, of the shared C(common) role and of
    the collection's plugins. Any change to one of them gives another digest.
  - The roles record the digest on the host with the state of what they manage (see
    M(estafeta.postfix.converged_state)); a later run may end a role early only when the digest is the
    same and everything the role manages is untouched.
  - Secrets enter the digest only through a keyed digest (HMAC-SHA256) with O(key), a key that stays on
    the controller - a variable or key whose name contains C(password), C(passphrase), C(secret) or
    C(private_key), or is C(hash). So a changed password makes the role run in full, and the recorded digest
    tells nothing about the password to anyone without the key.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  _input:
    description: The role's variables, name to value.
    type: dict
    required: true
  role:
    description: The role's name (a directory under C(roles/) of the collection).
    type: str
    required: true
  key:
    description:
      - The key of the keyed digest of secrets. Required when a secret has a value.
      - The roles pass the C(common) role's key (C(common_digest_key), or a random key kept on the controller).
    type: str
'''

EXAMPLES = r'''
- name: Digest of the base role's input
  ansible.builtin.debug:
    msg: "{{ dict(names | zip(q('ansible.builtin.vars', *names))) | estafeta.postfix.role_input('base', key) }}"
  vars:
    names: "{{ q('ansible.builtin.varnames', '^base_') }}"
    key: "{{ lookup('ansible.builtin.password', '/root/.ansible/digest.key', chars=['hexdigits'], length=64) }}"
'''

RETURN = r'''
_value:
  description: The digest, 64 hexadecimal characters.
  type: str
'''

import hashlib
import hmac
import json
import os
import re

from ansible.errors import AnsibleFilterError

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SECRET_RE = re.compile(r'password|passphrase|secret|private_key|^hash$', re.IGNORECASE)
_CODE = {}


def _tree_digest(top):
    """Digest of the files under ``top`` (names and contents), in a stable order."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith(('.pyc', '.md')):
                continue
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, top).encode('utf-8') + b'\0')
            with open(path, 'rb') as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def code_digest(role):
    """The code a role's result depends on: the role, the common role and the plugins (cached)."""
    if role not in _CODE:
        role_dir = os.path.join(COLLECTION_ROOT, 'roles', role)
        if not os.path.isdir(role_dir):
            raise AnsibleFilterError('role_input: no role %r in %s' % (role, os.path.join(COLLECTION_ROOT, 'roles')))
        parts = [_tree_digest(role_dir), _tree_digest(os.path.join(COLLECTION_ROOT, 'roles', 'common')),
                 _tree_digest(os.path.join(COLLECTION_ROOT, 'plugins'))]
        _CODE[role] = hashlib.sha256('\n'.join(parts).encode('utf-8')).hexdigest()
    return _CODE[role]


def _plain(name, value, key):
    """Plain data with every secret replaced by its keyed digest."""
    if SECRET_RE.search(name):
        if value in (None, '', [], {}):
            return '(secret unset)'
        if not key:
            raise AnsibleFilterError('role_input: %r holds a secret; a key is needed for its keyed digest' % name)
        text = json.dumps(_plain('', value, key), sort_keys=True, default=str)
        return 'hmac-sha256:' + hmac.new(key.encode('utf-8'), text.encode('utf-8'), hashlib.sha256).hexdigest()
    if isinstance(value, dict):
        return dict((str(k), _plain(str(k), v, key)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(name, v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def role_input(variables, role, key=None):
    if not isinstance(variables, dict):
        raise AnsibleFilterError('role_input expects a mapping of variable names to values, got %s' % type(variables).__name__)
    data = {'role': role, 'code': code_digest(role), 'vars': _plain('', dict(variables), key)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode('utf-8')).hexdigest()


class FilterModule(object):

    def filters(self):
        return {'role_input': role_input}
