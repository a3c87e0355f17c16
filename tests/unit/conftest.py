# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: a scratch Postfix configuration directory and an in-process module runner.

The tests use the real Postfix binaries of the test host (``apt-get install postfix
postfix-pcre postfix-lmdb``); ``make unit`` installs them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if os.path.isdir(COLLECTIONS) and COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes  # noqa: E402

POSTFIX_SHARE = '/usr/share/postfix'
SBIN = '/usr/sbin'


def _require_postfix():
    if not os.path.exists(os.path.join(SBIN, 'postconf')):
        pytest.fail('The unit tests need the real Postfix binaries: apt-get install postfix postfix-pcre postfix-lmdb')


class ModuleExit(Exception):
    """Raised instead of sys.exit by exit_json / fail_json."""

    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result)
        self.result = result
        self.failed = failed


def _exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise ModuleExit(kwargs, failed=False)


def _fail_json(self, msg, **kwargs):
    kwargs['msg'] = msg
    kwargs['failed'] = True
    raise ModuleExit(kwargs, failed=True)


@pytest.fixture
def postfix_dir(tmp_path):
    """A scratch config directory holding Debian's packaged main.cf and master.cf."""
    _require_postfix()
    conf = tmp_path / 'postfix'
    conf.mkdir()
    main = os.path.join(POSTFIX_SHARE, 'main.cf.debian')
    if not os.path.exists(main):
        main = os.path.join(POSTFIX_SHARE, 'main.cf.dist')
    shutil.copy(main, str(conf / 'main.cf'))
    shutil.copy(os.path.join(POSTFIX_SHARE, 'master.cf.dist'), str(conf / 'master.cf'))
    # Postfix waits until a file it reads is a couple of seconds old: backdate the copies.
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(str(conf / name), (past, past))
    return str(conf)


def postconf(config_dir, *args):
    """Run the real postconf against ``config_dir`` and return its stdout."""
    return subprocess.run([os.path.join(SBIN, 'postconf'), '-c', config_dir] + list(args),
                          capture_output=True, text=True, check=True, env={'LANG': 'C', 'PATH': os.environ['PATH']}).stdout


def snapshot(directory):
    """Bytes of every file in ``directory``: used to prove that nothing was written."""
    files = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                files[name] = f.read()
    return files


@pytest.fixture
def run_module(monkeypatch):
    """Run a module's main() in-process: ``run_module(mod, args, check_mode=False, diff=True)``.

    Returns the result dict; ``result['failed']`` is True for fail_json.
    """
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', _fail_json)

    def _run(module, args, check_mode=False, diff=True):
        payload = dict(args)
        payload['_ansible_check_mode'] = check_mode
        payload['_ansible_diff'] = diff
        payload.setdefault('_ansible_remote_tmp', '/tmp')
        payload.setdefault('_ansible_keep_remote_files', False)
        monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': payload})))
        monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)
        try:
            module.main()
        except ModuleExit as exc:
            return exc.result
        raise AssertionError('module did not call exit_json or fail_json')

    return _run
