# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""README.md serves both audiences and agrees with the collection's metadata.

A fresh machine's two commands come first; then what a user needs: installing with
requirements.yml (and the dependencies galaxy.yml declares), the supported platforms (as
meta/runtime.yml and the roles' metadata say), where secrets go (variables the roles really
hide with no_log), and upgrade notes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def _yaml(rel):
    return yaml.safe_load(_read(rel))


@pytest.fixture(scope='module')
def sections():
    """{heading: text} of the README's level-2 sections, in order."""
    parts = re.split(r'^## (.+)$', _read('README.md'), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _code_blocks(text, lang=None):
    return [m.group(2) for m in re.finditer(r'^```(\w*)\n(.*?)^```', text, flags=re.M | re.S)
            if lang is None or m.group(1) == lang]


def _section(sections, prefix):
    found = [text for heading, text in sections.items() if heading.startswith(prefix)]
    assert found, 'README.md has no section "%s"' % prefix
    return found[0]


def test_two_commands_come_first(sections):
    first = list(sections)[0]
    assert first.startswith('Two commands'), first
    block = _code_blocks(sections[first])[0]
    assert [line.split('#')[0].strip() for line in block.splitlines()] == ['make demo', 'make test']


def test_install_with_requirements_and_dependencies(sections):
    text = _section(sections, 'Install')
    requirements = [yaml.safe_load(b) for b in _code_blocks(text, 'yaml')]
    names = [c['name'] for r in requirements if r and 'collections' in r for c in r['collections']]
    assert names == ['estafeta.postfix']
    galaxy = _yaml('galaxy.yml')
    for name, spec in (galaxy.get('dependencies') or {}).items():
        minimum = re.search(r'>=\s*([0-9.]+)', spec).group(1)
        assert '`%s` (%s or later)' % (name, minimum) in text, 'README.md does not name the dependency %s %s' % (name, spec)
    assert 'community.docker' in text and 'not** a dependency' in text
    assert 'estafeta-postfix-%s.tar.gz' % galaxy['version'] in text


def test_supported_platforms_match_the_metadata(sections):
    text = _section(sections, 'Supported platforms')
    core = re.match(r'>=\s*([0-9]+\.[0-9]+)', _yaml('meta/runtime.yml')['requires_ansible']).group(1)
    assert 'ansible-core %s or later' % core in text
    names = {'bookworm': 'Debian 12', 'trixie': 'Debian 13'}
    for role in sorted(os.listdir(os.path.join(ROOT, 'roles'))):
        meta = _yaml(os.path.join('roles', role, 'meta', 'main.yml'))
        for platform in meta['galaxy_info']['platforms']:
            assert platform['name'] == 'Debian'
            for version in platform['versions']:
                assert '%s "%s"' % (names[version], version) in text, (role, version)


def test_secrets_example_uses_vault_for_no_log_variables(sections):
    text = _section(sections, 'Secrets')
    assert 'ansible-vault create' in text
    example = yaml.safe_load(_code_blocks(text, 'yaml')[0])
    secrets = []
    for name, value in example.items():
        if isinstance(value, str) and 'vault_' in value:
            secrets.append((name, None))
        elif isinstance(value, list):
            secrets += [(name, key) for item in value for key, v in item.items() if 'vault_' in str(v)]
    assert secrets, 'the example takes no value from the vault'
    for name, key in secrets:
        role = [r for r in os.listdir(os.path.join(ROOT, 'roles')) if name.startswith(r + '_')][0]
        spec = _yaml(os.path.join('roles', role, 'meta', 'argument_specs.yml'))['argument_specs']['main']['options'][name]
        if key:
            spec = spec['options'][key]
        assert spec.get('no_log') is True, '%s%s is a secret in README.md but not no_log in the role' % (
            name, '[].' + key if key else '')


def test_upgrade_notes(sections):
    text = _section(sections, 'Upgrading')
    assert '[CHANGELOG.md](CHANGELOG.md)' in text and os.path.exists(os.path.join(ROOT, 'CHANGELOG.md'))
    assert '--upgrade' in text and '--check --diff' in text
