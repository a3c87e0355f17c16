# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No secret has a default: a missing vault variable stops a run and names itself.

For every inventory under playbooks/inventories/, every variable of every host is templated as a
play would: a variable that reads a ``vault_*`` variable must fail, while that vault variable is
unset, with an error that names it (and not silently fall back to a published password); with
every vault variable given, every variable templates and the secret is the value given. The
roles' defaults hold no usable secret, and nothing in the repository gives a secret a non-empty
default.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
INVENTORIES = sorted(glob.glob(os.path.join(ROOT, 'playbooks', 'inventories', '*', 'hosts.yml')))
VAULT_RE = re.compile(r'\bvault_[A-Za-z0-9_]+')
SECRET_NAME = r'(?:vault_\w+|\w*(?:password|passphrase|secret|private_key)\w*)'
# A secret-named value piped into default() with a non-empty literal: a published fallback.
DEFAULTED_SECRET = re.compile(SECRET_NAME + r"""\s*\|\s*(?:default|d)\(\s*(?:'[^']+'|"[^"]+")""")
SECRET_KEY = re.compile(r'password|passphrase|secret|private_key|^hash$', re.IGNORECASE)


def _hosts_and_vars(inventory, extra=None):
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[inventory])
    variables = VariableManager(loader=loader, inventory=inv)
    for host in inv.get_hosts():
        hostvars = variables.get_vars(host=host, include_hostvars=False)
        hostvars.update(extra or {})  # as -e gives them
        yield host.name, hostvars, loader


def _vault_names(inventory):
    names = set()
    for path in glob.glob(os.path.join(os.path.dirname(inventory), '**', '*.yml'), recursive=True):
        with open(path) as handle:
            names.update(VAULT_RE.findall(handle.read()))
    return sorted(names)


def _own_variables(inventory):
    """The variables the inventory's own files define (not Ansible's magic ones)."""
    names = set()
    for path in glob.glob(os.path.join(os.path.dirname(inventory), '**', '*.yml'), recursive=True):
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
        if os.path.basename(path) == 'hosts.yml':
            continue
        names.update(data)
    return names


def _references_vault(value):
    return bool(VAULT_RE.search(repr(value)))


@pytest.mark.parametrize('inventory', INVENTORIES, ids=[os.path.basename(os.path.dirname(i)) for i in INVENTORIES])
def test_missing_vault_variable_stops_with_its_name(inventory):
    own = _own_variables(inventory)
    checked = 0
    for host, hostvars, loader in _hosts_and_vars(inventory):
        templar = Templar(loader=loader, variables=hostvars)
        for name in sorted(own & set(hostvars)):
            value = hostvars[name]
            if _references_vault(value):
                missing = VAULT_RE.findall(repr(value))
                with pytest.raises(AnsibleError) as err:
                    templar.template(value)
                for vault_name in missing:
                    assert vault_name in str(err.value), (host, name, str(err.value))
                assert 'Vault' in str(err.value), (host, name, str(err.value))
                checked += 1
            else:
                templar.template(value)
    if _vault_names(inventory):
        assert checked, 'the inventory names vault variables, but no host variable reads them'


@pytest.mark.parametrize('inventory', INVENTORIES, ids=[os.path.basename(os.path.dirname(i)) for i in INVENTORIES])
def test_given_vault_variables_are_used(inventory):
    given = dict((name, 'T3st-%s' % name) for name in _vault_names(inventory))
    own = _own_variables(inventory)
    for host, hostvars, loader in _hosts_and_vars(inventory, extra=given):
        templar = Templar(loader=loader, variables=hostvars)
        for name in sorted(own & set(hostvars)):
            value = hostvars[name]
            rendered = templar.template(value)
            for vault_name in VAULT_RE.findall(repr(value)):
                assert given[vault_name] in repr(rendered), (host, name)


def test_the_example_has_secrets_to_check():
    """The example inventory does read secrets from the vault (so the tests above check something)."""
    example = os.path.join(ROOT, 'playbooks', 'inventories', 'example', 'hosts.yml')
    assert {'vault_submission_password_ana', 'vault_smarthost_password'} <= set(_vault_names(example))


def test_example_run_without_vault_fails_naming_the_variable():
    """What a user sees: an ad hoc run against the example inventory, without and with the vault variable."""
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    ansible = os.path.join(os.path.dirname(sys.executable), 'ansible')
    inventory = os.path.join(ROOT, 'playbooks', 'inventories', 'example', 'hosts.yml')
    cmd = [ansible, '-i', inventory, 'mail.example.com', '-m', 'ansible.builtin.debug',
           '-a', 'msg={{ anti_relay_submission_users }}']
    without = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert without.returncode != 0
    assert 'vault_submission_password_ana is not set' in without.stdout + without.stderr
    given = subprocess.run(cmd + ['-e', 'vault_submission_password_ana=T3st-pw'], capture_output=True, text=True,
                           env=env, check=False, timeout=120)
    assert given.returncode == 0, given.stdout + given.stderr
    assert 'T3st-pw' in given.stdout


def _text_files():
    tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        if path.endswith(('.yml', '.yaml', '.j2', '.md', '.rst', '.py', '.cfg', '.ini', '.txt')) \
                and not path.startswith('tests/unit/test_example_inventories.py'):
            yield path


def test_no_secret_has_a_default_anywhere():
    found = []
    for path in _text_files():
        with open(os.path.join(ROOT, path), errors='replace') as handle:
            for number, line in enumerate(handle, 1):
                if DEFAULTED_SECRET.search(line):
                    found.append('%s:%d: %s' % (path, number, line.strip()))
    assert not found, 'secrets with a non-empty default:\n' + '\n'.join(found)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'roles', '*', 'defaults', 'main.yml'))))
def test_role_defaults_hold_no_secret(path):
    with open(path) as handle:
        defaults = yaml.safe_load(handle) or {}

    def walk(name, value):
        if SECRET_KEY.search(name) and not name.endswith(('_file', '_path', '_src')) and value not in ('', None, [], {}):
            raise AssertionError('%s: %s has a default value' % (os.path.relpath(path, ROOT), name))
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(str(key), inner)
        elif isinstance(value, list):
            for inner in value:
                walk(name, inner)

    for name, value in defaults.items():
        walk(name, value)
