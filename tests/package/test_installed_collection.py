# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The built tarball works for a user who installs it into an empty collections path.

* ansible-galaxy installs the collection's declared dependencies with it, and refuses to
  install it without them;
* the ready playbooks pass ``--syntax-check`` from the installed copy;
* the ``tls`` role (which needs community.crypto) converges a Debian 12 container from the
  installed copy, with nothing else on Ansible's collection search path but community.docker
  for the connection to the container.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import subprocess
import time
import uuid

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMAGE = os.environ.get('ESTAFETA_PACKAGE_TEST_IMAGE', 'estafeta/debian-systemd:bookworm')


def test_dependencies_are_declared_and_enforced(tmp_path, tarball, helpers):
    galaxy, isolated_env, run, BIN = helpers.galaxy, helpers.isolated_env, helpers.run, helpers.bin
    declared = galaxy().get('dependencies') or {}
    assert 'community.crypto' in declared, 'the tls role needs community.crypto: declare it in galaxy.yml'
    env = isolated_env(str(tmp_path / 'home'), str(tmp_path / 'collections'))
    proc = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline',
                '-p', str(tmp_path / 'collections'), tarball], env, str(tmp_path / 'home'), check=False)
    assert proc.returncode != 0, 'the tarball installed without its dependencies:\n' + proc.stdout
    for fqcn, version in declared.items():
        assert '%s:%s (dependency of estafeta.postfix' % (fqcn, version) in proc.stderr, proc.stderr
    assert not os.path.exists(str(tmp_path / 'collections' / 'ansible_collections' / 'estafeta'))


def test_only_the_installed_collections_are_visible(installed, helpers):
    galaxy, run, BIN = helpers.galaxy, helpers.run, helpers.bin
    collections, env, cwd = installed
    listed = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list', '--format', 'yaml'], env, cwd).stdout
    found = {}
    for entries in (yaml.safe_load(listed) or {}).values():
        # ansible-core's own (ansible.builtin, ansible._protomatter) are always there.
        found.update((name, info) for name, info in entries.items() if not name.startswith('ansible.'))
    assert sorted(found) == sorted(['estafeta.postfix'] + list(galaxy().get('dependencies') or {})), listed
    assert found['estafeta.postfix']['version'] == galaxy()['version']


def test_ready_playbooks_pass_syntax_check(installed, helpers):
    run, BIN = helpers.run, helpers.bin
    collections, env, cwd = installed
    root = os.path.join(collections, 'ansible_collections', 'estafeta', 'postfix')
    inventory = os.path.join(root, 'playbooks', 'inventories', 'example', 'hosts.yml')
    playbooks = sorted(glob.glob(os.path.join(root, 'playbooks', '*.yml')))
    assert os.path.join(root, 'playbooks', 'complete_mailserver.yml') in playbooks
    for playbook in playbooks:
        run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, playbook, '--syntax-check'], env, cwd)


def _docker(*args, check=True):
    proc = subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, 'docker %s failed: %s' % (' '.join(args), proc.stderr)
    return proc


@pytest.fixture
def container():
    if _docker('info', check=False).returncode != 0:
        pytest.fail('no Docker engine answers: run `make images` (scripts/container-engine.sh) first')
    if _docker('image', 'inspect', IMAGE, check=False).returncode != 0:
        pytest.fail('the image %s is missing: run `make images` first' % IMAGE)
    name = 'estafeta-package-%s' % uuid.uuid4().hex[:8]
    apt_cache = os.path.join(ROOT, '.cache', 'apt', 'package-bookworm')
    os.makedirs(os.path.join(apt_cache, 'partial'), exist_ok=True)
    _docker('run', '-d', '--name', name, '--hostname', 'mail',
            '--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined',
            '--tmpfs', '/run', '--tmpfs', '/run/lock', '--tmpfs', '/tmp',
            '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--cgroupns', 'host',
            '-v', '%s:/var/cache/apt/archives:rw' % apt_cache,
            IMAGE, '/lib/systemd/systemd')
    try:
        for _attempt in range(60):
            state = _docker('exec', name, 'systemctl', 'is-system-running', check=False).stdout.strip()
            if state in ('running', 'degraded'):
                break
            time.sleep(1)
        yield name
    finally:
        _docker('rm', '-f', name, check=False)


def test_tls_role_runs_from_the_installed_collection(installed, container, tmp_path, helpers):
    run, BIN = helpers.run, helpers.bin
    collections, env, cwd = installed
    # community.docker only carries the connection to the test container: it is on the search
    # path after the installed collections, from a directory of its own.
    transport = tmp_path / 'transport' / 'ansible_collections' / 'community'
    transport.mkdir(parents=True)
    os.symlink(helpers.venv_collection('community.docker'), str(transport / 'docker'))
    env = dict(env, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([collections, str(tmp_path / 'transport')]))
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {container: {
        'ansible_connection': 'community.docker.docker',
        'ansible_python_interpreter': '/usr/bin/python3',
    }}}}))
    playbook = tmp_path / 'tls.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'TLS from the installed collection',
        'hosts': 'all',
        'gather_facts': True,
        'roles': [
            {'role': 'estafeta.postfix.base', 'vars': {'base_myhostname': 'mail.example.test'}},
            {'role': 'estafeta.postfix.tls', 'vars': {'tls_selfsigned_common_name': 'mail.example.test'}},
        ],
    }], sort_keys=False))
    proc = run([os.path.join(BIN, 'ansible-playbook'), '-i', str(inventory), str(playbook)], env, cwd)
    assert 'failed=0' in proc.stdout

    cert_file = _docker('exec', container, 'postconf', '-h', 'smtpd_tls_cert_file').stdout.strip()
    subject = _docker('exec', container, 'openssl', 'x509', '-noout', '-subject', '-in', cert_file).stdout
    assert 'mail.example.test' in subject
    assert _docker('exec', container, 'postconf', '-h', 'smtpd_tls_security_level').stdout.strip() == 'may'
