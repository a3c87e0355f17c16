# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The harness sets up a fresh Debian 12 machine: run for real in a throwaway container.

The test image (estafeta/debian-systemd:bookworm) has neither docker.io, debootstrap nor Postfix:
a fresh machine as far as the harness is concerned. In it, with the repository's scripts:

1. two set-ups at the same time (``host-deps.sh all``, then ``host-deps.sh containers`` while
   the first one installs, as two make targets would) both succeed: no dpkg lock collision;
2. every package is installed in ONE apt transaction;
3. ``container-engine.sh engine`` removes a stale dockerd pid file, starts dockerd and waits
   until the engine answers;
4. ``fresh-host.sh`` (what CI runs first) stops that dockerd and removes the packages again.

This machine's own packages and Docker engine are not touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
IMAGE = os.environ.get('ESTAFETA_FRESH_TEST_IMAGE', 'estafeta/debian-systemd:bookworm')
PACKAGES = ['docker.io', 'debootstrap', 'postfix', 'postfix-pcre', 'postfix-lmdb', 'postfix-cdb']

SCRIPT = r'''
set -u
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
installs() { grep -c '^Commandline: apt-get .* install ' /var/log/apt/history.log 2>/dev/null || true; }
for p in %(packages)s; do installed "$p" && echo "NOT-FRESH $p"; done
echo "FRESH-CHECKED"
before=$(installs)

# 1 and 2. two set-ups at the same time (the second starts while the first installs)
/src/scripts/host-deps.sh all >/tmp/a.log 2>&1 & a=$!
sleep 1
/src/scripts/host-deps.sh containers >/tmp/b.log 2>&1 & b=$!
wait $a; echo "PARALLEL-ALL rc=$?"; wait $b; echo "PARALLEL-CONTAINERS rc=$?"
cat /tmp/a.log /tmp/b.log
for p in %(packages)s; do installed "$p" || echo "MISSING $p"; done
grep -h 'Could not get lock' /tmp/a.log /tmp/b.log && echo "LOCK-COLLISION"
echo "TRANSACTIONS $(( $(installs) - before ))"
grep '^Commandline: apt-get .* install ' /var/log/apt/history.log | tail -n1

# 3. stale pid file (pid 1 is this shell, not a dockerd), then the engine
echo 1 >/var/run/docker.pid
ESTAFETA_DOCKERD_LOG=/tmp/dockerd.log timeout 120 /src/scripts/container-engine.sh engine; echo "ENGINE rc=$?"
docker info --format 'SERVER {{.ServerVersion}}'

# 4. CI's fresh-host stops this engine and removes the packages
CI=true /src/scripts/fresh-host.sh; echo "FRESH-HOST rc=$?"
docker info >/dev/null 2>&1 && echo "ENGINE-STILL-UP"
for p in %(packages)s; do installed "$p" && echo "STILL-INSTALLED $p"; done
echo "DONE"
'''


def _docker(*args):
    return subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False)


def test_fresh_machine_setup():
    if _docker('info').returncode != 0:
        pytest.fail('no Docker engine answers: run `make images` first')
    if _docker('image', 'inspect', IMAGE).returncode != 0:
        pytest.fail('the image %s is missing: run `make images` first' % IMAGE)
    apt_cache = os.path.join(ROOT, '.cache', 'apt', 'fresh-machine-bookworm')
    os.makedirs(os.path.join(apt_cache, 'partial'), exist_ok=True)
    script = SCRIPT % {'packages': ' '.join(PACKAGES)}
    # NET_ADMIN and SYS_ADMIN let dockerd set up its bridge and mounts inside the container.
    proc = _docker('run', '--rm', '--tmpfs', '/run', '--tmpfs', '/tmp',
                   '--cap-add', 'SYS_ADMIN', '--cap-add', 'NET_ADMIN', '--security-opt', 'seccomp=unconfined',
                   '-v', '%s:/src/scripts:ro' % os.path.join(ROOT, 'scripts'),
                   '-v', '%s:/var/cache/apt/archives' % apt_cache,
                   IMAGE, 'bash', '-c', script)
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    assert proc.returncode == 0 and 'DONE' in lines, out
    assert 'FRESH-CHECKED' in lines and not any(line.startswith('NOT-FRESH') for line in lines), out
    assert 'PARALLEL-ALL rc=0' in lines and 'PARALLEL-CONTAINERS rc=0' in lines, out
    assert 'LOCK-COLLISION' not in lines and not any(line.startswith('MISSING') for line in lines), out
    assert 'TRANSACTIONS 1' in lines, out
    install_line = [line for line in lines if line.startswith('Commandline: apt-get')][-1]
    assert install_line.split()[-len(PACKAGES):] == PACKAGES, install_line
    assert 'removing the stale pid file /var/run/docker.pid (no dockerd runs)' in out, out
    assert 'ENGINE rc=0' in lines and any(line.startswith('SERVER ') for line in lines), out
    assert 'FRESH-HOST rc=0' in lines and 'ENGINE-STILL-UP' not in lines, out
    assert not any(line.startswith('STILL-INSTALLED') for line in lines), out
