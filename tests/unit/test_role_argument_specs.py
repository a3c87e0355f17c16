# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role documents and validates each public variable.

For every role under roles/: each variable in defaults/main.yml is an option of the ``main``
entry point of meta/argument_specs.yml with the same default, each option of that entry point
has a default in defaults/main.yml (or is required), every option has a type and a
description, and every public variable carries the role's name as prefix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ROLES_DIR = os.path.join(ROOT, 'roles')


def _roles():
    if not os.path.isdir(ROLES_DIR):
        return []
    return sorted(name for name in os.listdir(ROLES_DIR)
                  if os.path.isdir(os.path.join(ROLES_DIR, name, 'tasks')))


def _load(path):
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return yaml.safe_load(handle)


def _defaults(role):
    return _load(os.path.join(ROLES_DIR, role, 'defaults', 'main.yml')) or {}


def _main_options(role):
    specs = _load(os.path.join(ROLES_DIR, role, 'meta', 'argument_specs.yml'))
    assert specs, 'roles/%s/meta/argument_specs.yml is missing or empty' % role
    entry = specs.get('argument_specs', {}).get('main')
    assert entry is not None, 'roles/%s/meta/argument_specs.yml has no "main" entry point' % role
    return entry.get('options') or {}


def _templated(value):
    return isinstance(value, str) and '{{' in value


ROLES = _roles()


@pytest.mark.skipif(not ROLES, reason='no roles yet')
@pytest.mark.parametrize('role', ROLES)
def test_every_default_is_documented_with_the_same_default(role):
    options = _main_options(role)
    problems = []
    for name, value in _defaults(role).items():
        if name not in options:
            problems.append('%s: in defaults/main.yml but not in meta/argument_specs.yml' % name)
            continue
        spec_default = options[name].get('default')
        if spec_default != value:
            problems.append('%s: default %r in defaults/main.yml, %r in meta/argument_specs.yml' % (name, value, spec_default))
    assert not problems, 'roles/%s:\n  %s' % (role, '\n  '.join(problems))


@pytest.mark.skipif(not ROLES, reason='no roles yet')
@pytest.mark.parametrize('role', ROLES)
def test_every_documented_option_has_a_default_or_is_required(role):
    defaults = _defaults(role)
    problems = []
    for name, spec in _main_options(role).items():
        if not spec.get('required') and name not in defaults:
            problems.append('%s: in meta/argument_specs.yml but not in defaults/main.yml (and not required)' % name)
    assert not problems, 'roles/%s:\n  %s' % (role, '\n  '.join(problems))


@pytest.mark.skipif(not ROLES, reason='no roles yet')
@pytest.mark.parametrize('role', ROLES)
def test_options_have_type_description_and_prefix(role):
    problems = []
    for name, spec in _main_options(role).items():
        if not name.startswith(role + '_'):
            problems.append('%s: public variables carry the role name as prefix (%s_)' % (name, role))
        if 'type' not in spec:
            problems.append('%s: no type' % name)
        if not spec.get('description'):
            problems.append('%s: no description' % name)
        if spec.get('type') == 'list' and 'elements' not in spec:
            problems.append('%s: list without elements' % name)
        choices = spec.get('choices')
        value = _defaults(role).get(name)
        if choices and value is not None and not _templated(value):
            values = value if spec.get('type') == 'list' else [value]
            wrong = [item for item in values if item not in choices]
            if wrong:
                problems.append('%s: default %r not among the choices %r' % (name, wrong, choices))
    assert not problems, 'roles/%s:\n  %s' % (role, '\n  '.join(problems))
