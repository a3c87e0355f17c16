# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the tests of the built collection (``make package``, after ``make build``).

The tests use the tarball the way a user does: installed with ansible-galaxy into an empty
collections path, then used from there with nothing else on Ansible's collection search path.
Galaxy is not reachable from the test machines, so the dependencies are installed from the
copies the project's virtualenv has (the ``ansible`` package): ansible-galaxy still resolves
them from the tarball's MANIFEST.json and checks their versions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys
import sysconfig

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
BIN = os.path.dirname(sys.executable)
# The collections the virtualenv's `ansible` package brings (stand-in for Galaxy).
VENV_COLLECTIONS = os.path.join(sysconfig.get_paths()['purelib'], 'ansible_collections')


def galaxy():
    with open(os.path.join(ROOT, 'galaxy.yml')) as f:
        return yaml.safe_load(f)


def tarball_path():
    info = galaxy()
    return os.path.join(ROOT, 'build', '%s-%s-%s.tar.gz' % (info['namespace'], info['name'], info['version']))


def venv_collection(fqcn):
    return os.path.join(VENV_COLLECTIONS, *fqcn.split('.'))


def isolated_env(home, collections_path):
    """Environment in which Ansible sees only ``collections_path`` (no ansible.cfg, no venv copies)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_')}
    config = os.path.join(home, 'ansible.cfg')
    if not os.path.exists(config):
        os.makedirs(home, exist_ok=True)
        with open(config, 'w') as f:
            f.write('[defaults]\n')
    env.update({
        'HOME': home,
        'PATH': BIN + os.pathsep + env.get('PATH', ''),
        'ANSIBLE_CONFIG': config,
        'ANSIBLE_COLLECTIONS_PATH': collections_path,
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
        'ANSIBLE_ROLES_PATH': os.path.join(home, 'roles'),
        'ANSIBLE_LOCAL_TEMP': os.path.join(home, 'tmp'),
        'ANSIBLE_NOCOLOR': 'true',
    })
    return env


def run(cmd, env, cwd, check=True):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if check:
        message = '%s failed (rc %d):\n%s\n%s' % (' '.join(cmd), proc.returncode, proc.stdout[-6000:], proc.stderr[-6000:])
        assert proc.returncode == 0, message
    return proc


@pytest.fixture(scope='session')
def tarball():
    path = tarball_path()
    if not os.path.exists(path):
        pytest.fail('%s is missing: run `make build` first' % os.path.relpath(path, ROOT))
    return path


@pytest.fixture(scope='session')
def dependency_sources():
    """Local copies of every dependency galaxy.yml declares, as ansible-galaxy install arguments."""
    sources = []
    for fqcn in sorted(galaxy().get('dependencies') or {}):
        path = venv_collection(fqcn)
        assert os.path.exists(os.path.join(path, 'MANIFEST.json')), 'the virtualenv has no copy of %s' % fqcn
        sources.append(path)
    return sources


@pytest.fixture(scope='session')
def installed(tmp_path_factory, tarball, dependency_sources):
    """The tarball and its dependencies installed into an empty collections path.

    Returns (collections path, environment that sees only it, working directory).
    """
    base = tmp_path_factory.mktemp('installed')
    collections = str(base / 'collections')
    env = isolated_env(str(base / 'home'), collections)
    cwd = str(base / 'home')
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '-p', collections, tarball]
        + dependency_sources, env, cwd)
    return collections, env, cwd


class Helpers:
    """The helpers above, for the test modules (which are imported by path, not as a package)."""

    root = ROOT
    bin = BIN
    galaxy = staticmethod(galaxy)
    isolated_env = staticmethod(isolated_env)
    run = staticmethod(run)
    venv_collection = staticmethod(venv_collection)


@pytest.fixture(scope='session')
def helpers():
    return Helpers
