# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The execution environment definition turns into a build context (ansible-builder create).

Building the image itself needs a container registry for the base image, so only the build
context is made and checked here (see docs/fleet.md for the build command).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
EE_FILE = os.path.join(ROOT, 'meta', 'execution-environment.yml')


def test_execution_environment_builds_a_context(tmp_path):
    builder = os.path.join(os.path.dirname(sys.executable), 'ansible-builder')
    proc = subprocess.run([builder, 'create', '-f', EE_FILE, '-c', str(tmp_path / 'context')],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / 'context' / 'Dockerfile').read_text()
    assert 'ansible-galaxy collection install' in containerfile or 'assemble' in containerfile
    with open(str(tmp_path / 'context' / '_build' / 'requirements.yml')) as f:
        collections = yaml.safe_load(f)['collections']
    names = [c['name'] for c in collections]
    assert 'estafeta.postfix' in names and 'community.crypto' in names
    python_reqs = (tmp_path / 'context' / '_build' / 'requirements.txt').read_text()
    assert 'passlib' in python_reqs
