#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check the built collection tarball: it holds what a user needs, and nothing else.

    python tests/check_build.py build/estafeta-postfix-X.Y.Z.tar.gz

Fails when

* a file is in the tarball that no rule of ``SHIPPED`` allows (development files, caches, test
  data, a local ``.ansible/`` or ``changelogs/.plugin-cache.yaml``: ``build_ignore`` in
  galaxy.yml must leave them out);
* a file of the working copy that a rule allows is missing from the tarball (``build_ignore``
  left out something users need), or a required file is missing;
* MANIFEST.json does not declare the dependencies that galaxy.yml declares, or the shipped roles,
  playbooks and plugins use a collection that is not a declared dependency (it would fail only at
  run time on a user's machine);
* meta/execution-environment.yml is not the version 1 dependency file ansible-builder reads from
  an installed collection, or names a file that is not shipped.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import sys
import tarfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELF = 'estafeta.postfix'

# Everything the tarball may hold (paths relative to the collection root).
SHIPPED = [re.compile(p) for p in (
    r'MANIFEST\.json',
    r'FILES\.json',
    r'README\.md',
    r'LICENSE',
    r'CHANGELOG\.md',
    r'changelogs/(changelog|config)\.yaml',
    r'meta/(runtime|execution-environment)\.yml',
    r'meta/ee-(requirements|bindep)\.txt',
    r'plugins/(modules|module_utils|filter|test|lookup|action|doc_fragments)/[a-z0-9_]+\.py',
    r'roles/[a-z0-9_]+/README\.md',
    r'roles/[a-z0-9_]+/(defaults|vars|tasks|handlers|meta)/[a-z0-9_]+\.yml',
    r'roles/[a-z0-9_]+/(templates|files)/[A-Za-z0-9_.-]+',
    r'playbooks/[a-z0-9_]+\.yml',
    r'playbooks/inventories/example/([a-z0-9_]+/)*[a-z0-9_]+\.yml',
    r'docs/docsite/(extra-docs|links)\.yml',
    r'docs/docsite/rst/[a-z0-9_]+\.rst',
)]
# Files of the working copy that a rule above allows but that are still not for users.
NOT_SHIPPED = [re.compile(p) for p in (
    r'playbooks/demo\.yml',
    r'playbooks/inventories/demo/.*',
)]
REQUIRED = ('MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'changelogs/changelog.yaml',
            'meta/runtime.yml', 'meta/execution-environment.yml')
# Collections every ansible-core has.
BUILTIN = ('ansible.builtin', 'ansible.legacy')
# Directories of the working copy that are never shipped, so not walked when looking for
# files the tarball should have.
SKIP_DIRS = ('.git', '.venv', '.cache', '.ansible', 'build', 'tests', 'molecule', 'bench', '__pycache__')

FQCN = r'([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+'
FQCN_KEY = re.compile(r'^%s$' % FQCN)
# Jinja filters, tests and lookups given with their collection's name.
JINJA_REFS = re.compile(r'(?:\|\s*|\bis\s+(?:not\s+)?|\b(?:lookup|query|q)\(\s*[\'"])%s\b' % FQCN)
PYTHON_IMPORTS = re.compile(r'\bansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)\b')
TASK_LISTS = ('tasks', 'pre_tasks', 'post_tasks', 'handlers', 'block', 'rescue', 'always')


def shipped(name):
    return any(p.fullmatch(name) for p in SHIPPED) and not any(p.fullmatch(name) for p in NOT_SHIPPED)


def _task_collections(tasks, found):
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        for key, value in task.items():
            if key in TASK_LISTS:
                _task_collections(value, found)
                continue
            m = FQCN_KEY.match(str(key))
            if m:
                found.add(m.group(1))
                if m.group(1) in BUILTIN and key.split('.')[-1] in ('include_role', 'import_role') \
                        and isinstance(value, dict):
                    _role_collection(value.get('name'), found)


def _role_collection(role, found):
    name = role.get('role') or role.get('name') if isinstance(role, dict) else role
    m = FQCN_KEY.match(str(name or ''))
    if m:
        found.add(m.group(1))


def collections_used(name, text):
    """Collections that the file ``name`` (a path in the collection) refers to by name."""
    found = set()
    if name.endswith('.py'):
        found.update('%s.%s' % m for m in PYTHON_IMPORTS.findall(text))
        return found
    found.update(JINJA_REFS.findall(text))
    if not name.endswith('.yml'):
        return found
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return found
    parts = name.split('/')
    if parts[0] == 'roles' and len(parts) == 4 and parts[2] in ('tasks', 'handlers'):
        _task_collections(data, found)
    elif parts[0] == 'roles' and parts[2:] == ['meta', 'main.yml'] and isinstance(data, dict):
        for dep in data.get('dependencies') or []:
            _role_collection(dep, found)
        found.update(data.get('collections') or [])
    elif parts[0] == 'playbooks' and len(parts) == 2 and isinstance(data, list):
        for play in data:
            if not isinstance(play, dict):
                continue
            if 'import_playbook' in play or 'ansible.builtin.import_playbook' in play:
                continue
            found.update(play.get('collections') or [])
            for role in play.get('roles') or []:
                _role_collection(role, found)
            for key in TASK_LISTS:
                _task_collections(play.get(key), found)
    return found


def load_galaxy(root):
    with open(os.path.join(root, 'galaxy.yml')) as f:
        return yaml.safe_load(f)


def working_copy_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not (rel_dir == '.' and d.startswith('.'))]
        for filename in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, filename)).replace(os.sep, '/')
            if not filename.endswith('.pyc'):
                yield rel


def check(path, root=ROOT):
    """The problems with the tarball at ``path``, as a list of messages."""
    problems = []
    with tarfile.open(path) as tar:
        members = {m.name[2:] if m.name.startswith('./') else m.name: m for m in tar.getmembers()}
        files = sorted(n for n, m in members.items() if m.isfile())

        def read(name):
            return tar.extractfile(members[name]).read().decode('utf-8')

        for name in files:
            if not shipped(name):
                problems.append('%s should not be in the tarball (not for users: add it to build_ignore in galaxy.yml)'
                                % name)
        for name in REQUIRED:
            if name not in members:
                problems.append('%s is missing from the tarball' % name)
        for name in sorted(working_copy_files(root)):
            if shipped(name) and name not in members and name not in ('MANIFEST.json', 'FILES.json'):
                problems.append('%s is in the working copy but not in the tarball (build_ignore leaves out a file users need)'
                                % name)

        galaxy = load_galaxy(root)
        declared = dict(galaxy.get('dependencies') or {})
        if 'MANIFEST.json' in members:
            manifest = json.loads(read('MANIFEST.json'))['collection_info']
            if (manifest.get('dependencies') or {}) != declared:
                problems.append('MANIFEST.json declares the dependencies %s, galaxy.yml %s'
                                % (manifest.get('dependencies'), declared))
        for name in files:
            if not shipped(name) or not name.endswith(('.yml', '.py', '.j2')):
                continue
            for collection in sorted(collections_used(name, read(name))):
                if collection not in BUILTIN and collection != SELF and collection not in declared:
                    problems.append('%s uses the collection %s, which galaxy.yml does not declare as a dependency'
                                    % (name, collection))

        if 'meta/execution-environment.yml' in members:
            ee = yaml.safe_load(read('meta/execution-environment.yml')) or {}
            if ee.get('version') != 1:
                problems.append('meta/execution-environment.yml must be a version 1 file (ansible-builder reads it as the '
                                'collection\'s dependency file); it says version %r' % ee.get('version'))
            for kind, ref in sorted((ee.get('dependencies') or {}).items()):
                if not isinstance(ref, str) or ref not in members:
                    problems.append('meta/execution-environment.yml: the %s dependencies %r are not a file in the tarball'
                                    % (kind, ref))
    return problems, files


def main(argv):
    if len(argv) != 1:
        print('usage: check_build.py COLLECTION_TARBALL', file=sys.stderr)
        return 2
    problems, files = check(argv[0])
    for problem in problems:
        print('FAIL: ' + problem)
    print('%s: %d files, %s' % (argv[0], len(files), 'problems found' if problems else 'clean'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
