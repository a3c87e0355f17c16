# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/check_build.py (run by ``make build``) fails on every kind of unclean tarball."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import io
import json
import os
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SPEC = importlib.util.spec_from_file_location('check_build', os.path.join(ROOT, 'tests', 'check_build.py'))
check_build = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_build)

TASKS = '''---
- name: Make a key
  community.crypto.openssl_privatekey:
    path: /etc/ssl/private/x.pem
- name: Set a parameter
  estafeta.postfix.postconf_set:
    name: myhostname
    value: "{{ inventory_hostname }}"
- name: Transport entries look like names with dots, but are data
  ansible.builtin.set_fact:
    routes:
      mail.example.com: smtp:[relay.example.com]
'''

FILES = {
    'README.md': '# c\n',
    'LICENSE': 'GPL\n',
    'CHANGELOG.md': '# Changelog\n',
    'changelogs/changelog.yaml': 'ancestor: null\nreleases: {}\n',
    'meta/runtime.yml': "requires_ansible: '>=2.19.0'\n",
    'meta/execution-environment.yml': 'version: 1\ndependencies:\n  python: meta/ee-requirements.txt\n',
    'meta/ee-requirements.txt': 'passlib\n',
    'plugins/modules/postconf_set.py': '# module\n',
    'roles/tls/tasks/main.yml': TASKS,
    'roles/tls/meta/main.yml': 'dependencies:\n  - role: common\n',
    'playbooks/site.yml': '- name: Site\n  hosts: all\n  roles:\n    - role: estafeta.postfix.tls\n',
    'docs/docsite/rst/guide_x.rst': 'Guide\n=====\n',
}


def make_collection(tmp_path, dependencies, files=None, extra=None):
    """A working copy under tmp_path/src and a tarball of it (plus ``extra`` members)."""
    files = dict(FILES if files is None else files)
    src = tmp_path / 'src'
    galaxy = {'namespace': 'estafeta', 'name': 'postfix', 'version': '1.0.0', 'dependencies': dependencies}
    for rel, text in list(files.items()) + [('galaxy.yml', yaml.safe_dump(galaxy))]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    members = dict(files)
    members['MANIFEST.json'] = json.dumps({'collection_info': dict(galaxy)})
    members['FILES.json'] = '{}'
    members.update(extra or {})
    path = str(tmp_path / 'estafeta-postfix-1.0.0.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        for rel, text in sorted(members.items()):
            data = text.encode('utf-8')
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, str(src)


def test_clean_tarball_passes(tmp_path):
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'})
    problems, files = check_build.check(path, src)
    assert problems == []
    assert 'roles/tls/tasks/main.yml' in files


@pytest.mark.parametrize('name', [
    '.ansible/collections/ansible_collections/x/y/MANIFEST.json',
    'changelogs/.plugin-cache.yaml',
    'changelogs/fragments/new-feature.yml',
    'tests/unit/test_docs_current.py',
    'tests/reliability_molecule.json',
    'docs/performance.json',
    'docs/reliability.md',
    'tests/docs_build.py',
    'molecule/base/molecule.yml',
    'playbooks/demo.yml',
    'plugins/modules/__pycache__/postconf_set.cpython-311.pyc',
])
def test_development_files_fail(tmp_path, name):
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'}, extra={name: 'x\n'})
    problems, _files = check_build.check(path, src)
    assert problems == ['%s should not be in the tarball (not for users: add it to build_ignore in galaxy.yml)' % name]


def test_file_left_out_fails(tmp_path):
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'})
    os.makedirs(os.path.join(src, 'plugins', 'filter'))
    with open(os.path.join(src, 'plugins', 'filter', 'new_filter.py'), 'w') as f:
        f.write('# filter\n')
    problems, _files = check_build.check(path, src)
    assert problems == ['plugins/filter/new_filter.py is in the working copy but not in the tarball '
                        '(build_ignore leaves out a file users need)']


def test_required_file_missing_fails(tmp_path):
    files = dict(FILES)
    del files['CHANGELOG.md']
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'}, files=files)
    problems, _files = check_build.check(path, src)
    assert problems == ['CHANGELOG.md is missing from the tarball']


def test_undeclared_dependency_fails(tmp_path):
    files = dict(FILES)
    files['roles/base/templates/x.j2'] = "{{ data | community.general.json_query('a') }}\n"
    files['roles/base/tasks/main.yml'] = ('- name: Include\n  ansible.builtin.include_role:\n'
                                          '    name: community.postgresql.setup\n')
    path, src = make_collection(tmp_path, {}, files=files)
    problems, _files = check_build.check(path, src)
    assert sorted(problems) == sorted([
        'roles/base/tasks/main.yml uses the collection community.postgresql, which galaxy.yml does not declare as a dependency',
        'roles/base/templates/x.j2 uses the collection community.general, which galaxy.yml does not declare as a dependency',
        'roles/tls/tasks/main.yml uses the collection community.crypto, which galaxy.yml does not declare as a dependency',
    ])


def test_manifest_must_match_galaxy(tmp_path):
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'})
    with open(os.path.join(src, 'galaxy.yml'), 'a') as f:
        f.write('dependencies: {community.crypto: ">=3.0.0", community.general: ">=10.0.0"}\n')
    problems, _files = check_build.check(path, src)
    assert problems == ["MANIFEST.json declares the dependencies {'community.crypto': '>=3.0.0'}, galaxy.yml "
                        "{'community.crypto': '>=3.0.0', 'community.general': '>=10.0.0'}"]


def test_execution_environment_metadata_must_be_version_1(tmp_path):
    files = dict(FILES)
    files['meta/execution-environment.yml'] = 'version: 3\ndependencies:\n  python: [passlib]\n'
    path, src = make_collection(tmp_path, {'community.crypto': '>=3.0.0'}, files=files)
    problems, _files = check_build.check(path, src)
    assert len(problems) == 2
    assert 'must be a version 1 file' in problems[0]
    assert "the python dependencies ['passlib'] are not a file in the tarball" in problems[1]


def test_the_real_tarball_rules_match_the_repository():
    """Everything a user needs from the working copy is allowed; development files are not."""
    assert check_build.shipped('plugins/modules/postconf_set.py')
    assert check_build.shipped('roles/tls/tasks/selfsigned.yml')
    assert check_build.shipped('playbooks/complete_mailserver.yml')
    assert check_build.shipped('playbooks/inventories/example/group_vars/mailservers.yml')
    assert not check_build.shipped('playbooks/inventories/demo/hosts.yml')
    assert not check_build.shipped('ee/execution-environment.yml')
