# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What scripts/host-deps.sh and scripts/fresh-host.sh decide, with stand-in system commands.

dpkg-query, apt-get, docker and id are replaced by small scripts on PATH, so every branch runs
here without touching this machine. tests/harness/test_fresh_machine.py runs the same scripts
for real on a fresh Debian 12 container.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL = ['docker.io', 'debootstrap', 'postfix', 'postfix-pcre', 'postfix-lmdb', 'postfix-cdb']


@pytest.fixture
def fake(tmp_path):
    """Stand-ins for the system commands; returns a function that runs a script with them."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    calls = tmp_path / 'calls.log'
    scripts = {
        # Installed packages are listed in $FAKE_INSTALLED.
        'dpkg-query': '[[ " $FAKE_INSTALLED " == *" ${@: -1} "* ]] && printf "install ok installed"\nexit 0\n',
        'apt-get': 'echo "apt-get $*" >>"$FAKE_CALLS"\n',
        'debconf-set-selections': 'echo "debconf $(cat)" >>"$FAKE_CALLS"\n',
        'docker': '[ "${FAKE_ENGINE:-0}" = 1 ]\n',
        'id': 'echo "${FAKE_UID:-0}"\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text('#!/bin/bash\n' + body)
        path.chmod(0o755)

    def run(script, *args, **env):
        environ = {'PATH': '%s:/usr/bin:/bin' % bin_dir, 'FAKE_CALLS': str(calls), 'TMPDIR': str(tmp_path),
                   'FAKE_INSTALLED': '', 'HOME': str(tmp_path)}
        environ.update(env)
        proc = subprocess.run([os.path.join(ROOT, 'scripts', script)] + list(args), env=environ,
                              capture_output=True, text=True, check=False)
        logged = calls.read_text().splitlines() if calls.exists() else []
        return proc, logged

    return run


def test_fresh_machine_gets_one_transaction(fake):
    proc, calls = fake('host-deps.sh')
    assert proc.returncode == 0, proc.stderr
    assert calls == [
        'debconf postfix postfix/main_mailer_type select No configuration',
        'apt-get -q -o DPkg::Lock::Timeout=600 update',
        'apt-get -q -o DPkg::Lock::Timeout=600 install -y ' + ' '.join(ALL),
    ]


def test_nothing_to_do_when_everything_is_installed(fake):
    proc, calls = fake('host-deps.sh', 'all', FAKE_INSTALLED=' '.join(ALL))
    assert proc.returncode == 0 and calls == []
    assert 'host packages present (all)' in proc.stderr


@pytest.mark.parametrize('env, profile, expected', [
    ({}, 'containers', ['docker.io', 'debootstrap']),
    ({}, 'unit', ['postfix', 'postfix-pcre', 'postfix-lmdb', 'postfix-cdb']),
    # An engine that answers (whatever installed it) is used as it is.
    ({'FAKE_ENGINE': '1'}, 'containers', ['debootstrap']),
    # Docker's own packages bring dockerd too.
    ({'FAKE_INSTALLED': 'docker-ce'}, 'containers', ['debootstrap']),
    ({'FAKE_INSTALLED': 'moby-engine postfix'}, 'all', ['debootstrap', 'postfix-pcre', 'postfix-lmdb', 'postfix-cdb']),
    # Images from a registry need no debootstrap.
    ({'ESTAFETA_BASE_IMAGE_FROM_REGISTRY': '1'}, 'containers', ['docker.io']),
])
def test_what_is_installed(fake, env, profile, expected):
    proc, calls = fake('host-deps.sh', '--dry-run', profile, **env)
    assert proc.returncode == 0, proc.stderr
    assert calls == [], 'a dry run must not call apt-get'
    assert proc.stdout.splitlines()[0] == 'would install: ' + ' '.join(expected)
    assert proc.stdout.splitlines()[-1] == 'apt-get -q -o DPkg::Lock::Timeout=600 install -y ' + ' '.join(expected)


def test_without_root_it_says_what_to_install(fake):
    proc, calls = fake('host-deps.sh', 'unit', FAKE_UID='1000')
    assert proc.returncode == 1 and calls == []
    assert 'missing Debian packages: postfix postfix-pcre postfix-lmdb postfix-cdb' in proc.stderr


def test_unknown_profile_is_refused(fake):
    proc, calls = fake('host-deps.sh', 'everything')
    assert proc.returncode == 1 and calls == [] and 'usage:' in proc.stderr


def test_fresh_host_needs_ci_or_yes(fake):
    proc, calls = fake('fresh-host.sh', FAKE_INSTALLED=' '.join(ALL))
    assert proc.returncode == 1 and calls == []
    assert 'run it with --yes' in proc.stderr


def test_fresh_host_dry_run(fake, tmp_path):
    pidfile = tmp_path / 'docker.pid'
    pidfile.write_text('1\n')  # not a dockerd: nothing to stop
    proc, calls = fake('fresh-host.sh', '--dry-run', FAKE_INSTALLED='docker.io postfix runc',
                       ESTAFETA_DOCKER_PIDFILE=str(pidfile))
    assert proc.returncode == 0 and calls == [], proc.stderr
    assert proc.stdout.splitlines() == ['apt-get -q -o DPkg::Lock::Timeout=600 remove -y docker.io runc postfix']
    assert 'stopping dockerd' not in proc.stderr
