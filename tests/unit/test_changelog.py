# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changelog is released with antsibull-changelog and agrees with the collection.

* the fragments and changelogs/changelog.yaml pass antsibull-changelog's linters;
* CHANGELOG.md is exactly what ``antsibull-changelog generate`` makes of changelog.yaml;
* galaxy.yml's version is the latest release or a later one still being worked on;
* every module, plugin and role says in which version it was added (``version_added``), no later
  than galaxy.yml's version, and each one added in a released version is listed as new in that
  release (a plugin with a too-high ``version_added`` would be left out of the release notes);
  every plugin or role a release lists still exists.

To release version X.Y.Z: set it in galaxy.yml, then ``antsibull-changelog release``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.path.dirname(sys.executable)
FQCN = 'estafeta.postfix'


def _load(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return yaml.safe_load(f)


def _run(args, cwd=ROOT, env=None):
    proc = subprocess.run([os.path.join(BIN, args[0])] + args[1:], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, '%s failed:\n%s\n%s' % (' '.join(args), proc.stdout, proc.stderr)
    return proc.stdout


def _version(text):
    return LooseVersion(str(text))


@pytest.fixture(scope='module')
def changelog():
    return _load('changelogs/changelog.yaml')


@pytest.fixture(scope='module')
def contents():
    """{(kind, name): version_added} of every module, plugin and role, as ansible-doc reports them."""
    env = dict(os.environ)
    env['ANSIBLE_COLLECTIONS_PATH'] = os.pathsep.join([os.path.join(ROOT, '.cache', 'collections'),
                                                      env.get('ANSIBLE_COLLECTIONS_PATH', '')])
    dump = json.loads(_run(['ansible-doc', '--metadata-dump', '--no-fail-on-errors', FQCN], env=env))
    found = {}
    for kind, entries in dump['all'].items():
        for name, data in entries.items():
            if not name.startswith(FQCN + '.'):
                continue
            if kind == 'role':
                doc = (data.get('entry_points') or {}).get('main') or {}
            else:
                doc = data.get('doc') or {}
            found[(kind, name[len(FQCN) + 1:])] = doc.get('version_added')
    assert ('module', 'postconf_set') in found and ('role', 'base') in found, sorted(found)
    return found


def test_fragments_and_changelog_yaml_pass_the_linters():
    _run(['antsibull-changelog', 'lint'])
    _run(['antsibull-changelog', 'lint-changelog-yaml', 'changelogs/changelog.yaml'])


def test_changelog_md_is_generated_from_changelog_yaml(tmp_path):
    copy = tmp_path / 'collection'
    copy.mkdir()
    shutil.copy(os.path.join(ROOT, 'galaxy.yml'), str(copy / 'galaxy.yml'))
    shutil.copytree(os.path.join(ROOT, 'changelogs'), str(copy / 'changelogs'))
    _run(['antsibull-changelog', 'generate'], cwd=str(copy))
    with open(os.path.join(ROOT, 'CHANGELOG.md')) as f:
        committed = f.read()
    assert (copy / 'CHANGELOG.md').read_text() == committed, \
        'CHANGELOG.md is not what antsibull-changelog generates from changelogs/changelog.yaml: run antsibull-changelog generate'


def test_galaxy_version_is_released_or_later(changelog):
    releases = sorted((changelog.get('releases') or {}), key=_version)
    assert releases, 'changelogs/changelog.yaml has no release'
    version = _load('galaxy.yml')['version']
    assert _version(version) >= _version(releases[-1]), \
        'galaxy.yml says %s, older than the latest release %s' % (version, releases[-1])


def test_everything_is_in_the_release_it_was_added_in(changelog, contents):
    version = _version(_load('galaxy.yml')['version'])
    releases = changelog.get('releases') or {}
    listed = {}
    for release, data in releases.items():
        for module in data.get('modules') or []:
            listed[('module', module['name'])] = release
        for kind, plugins in (data.get('plugins') or {}).items():
            for plugin in plugins:
                listed[(kind, plugin['name'])] = release
        for kind, objects in (data.get('objects') or {}).items():
            for obj in objects:
                listed[(kind, obj['name'])] = release
    problems = []
    for (kind, name), added in sorted(contents.items()):
        label = '%s %s.%s' % (kind, FQCN, name)
        if added is None:
            problems.append('%s has no version_added' % label)
            continue
        if _version(added) > version:
            problems.append('%s says version_added %s, later than the collection version %s' % (label, added, version))
        elif str(added) in releases and listed.get((kind, name)) != str(added):
            problems.append('%s was added in %s, but that release does not list it as new' % (label, added))
    for (kind, name), release in sorted(listed.items()):
        if (kind, name) not in contents:
            problems.append('release %s lists the %s %s.%s, which does not exist' % (release, kind, FQCN, name))
    assert not problems, '\n'.join(problems)
