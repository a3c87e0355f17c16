# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one module of the collection in its own process, as Ansible would, with an optional fault.

    python -m ansible_collections.estafeta.postfix.tests.unit.reliability.module_driver MODULE ARGS.json

ARGS.json holds the module arguments (a plain dict). The module's JSON result goes to stdout
and the exit code is 1 when the module failed, as with a real module run.

``ESTAFETA_FAULT`` makes the process kill itself with SIGKILL at one precise point of a write to
the directory ``ESTAFETA_FAULT_DIR`` (the configuration directory under test):

* ``tmp_created``: the temporary file next to the target exists but is still empty;
* ``tmp_written``: the temporary file holds the whole new content, not yet renamed;
* ``renamed``: the first file has just been renamed into place (before ``postfix check``, before
  the other files of the same change);
* ``rollback``: ``postfix check`` failed and the previous file is being put back.

``ESTAFETA_START_FILE`` makes the process create ``START_FILE.PID`` after its imports and wait
until ``START_FILE`` exists, so that several processes start their work at the same moment;
``ESTAFETA_READY=1`` makes it print ``ready`` on stderr just before the module starts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import json
import os
import signal
import sys
import time

from ansible.module_utils import basic

FAULTS = ('tmp_created', 'tmp_written', 'renamed', 'rollback')


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _in_dir(path, directory):
    return os.path.dirname(os.path.abspath(path)) == directory


def _fd_in_dir(fd, directory):
    try:
        return _in_dir(os.readlink('/proc/self/fd/%d' % fd), directory)
    except OSError:
        return False


def install_fault(fault, directory):
    """Patch the few calls around a file replacement so that the process dies at ``fault``."""
    directory = os.path.abspath(directory)
    if fault == 'tmp_created':
        original_fchmod = os.fchmod

        def fchmod(fd, mode):
            if _fd_in_dir(fd, directory):
                _die()
            return original_fchmod(fd, mode)

        os.fchmod = fchmod
    elif fault == 'tmp_written':
        original_fsync = os.fsync

        def fsync(fd):
            if _fd_in_dir(fd, directory):
                _die()
            return original_fsync(fd)

        os.fsync = fsync
    elif fault in ('renamed', 'rollback'):
        original_rename = os.rename
        renames = []

        def rename(src, dest, *args, **kwargs):
            target = os.fsdecode(dest)
            if _in_dir(target, directory):
                renames.append(target)
                if fault == 'rollback' and renames.count(target) == 2:
                    _die()
            result = original_rename(src, dest, *args, **kwargs)
            if fault == 'renamed' and _in_dir(target, directory):
                _die()
            return result

        os.rename = rename
    elif fault:
        raise SystemExit('unknown fault %r (one of %s)' % (fault, ', '.join(FAULTS)))


def main(argv):
    name, args_file = argv[1], argv[2]
    with open(args_file) as f:
        args = json.load(f)
    args.setdefault('_ansible_remote_tmp', '/tmp')
    args.setdefault('_ansible_keep_remote_files', False)
    basic._ANSIBLE_ARGS = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode('utf-8')
    basic._ANSIBLE_PROFILE = 'legacy'
    fault = os.environ.get('ESTAFETA_FAULT')
    if fault:
        install_fault(fault, os.environ['ESTAFETA_FAULT_DIR'])
    module = importlib.import_module('ansible_collections.estafeta.postfix.plugins.modules.%s' % name)
    start_file = os.environ.get('ESTAFETA_START_FILE')
    if start_file:
        with open('%s.%d' % (start_file, os.getpid()), 'w'):
            pass
        deadline = time.time() + 60
        while not os.path.exists(start_file) and time.time() < deadline:
            time.sleep(0.005)
    if os.environ.get('ESTAFETA_READY'):
        sys.stderr.write('ready\n')
        sys.stderr.flush()
    module.main()


if __name__ == '__main__':
    main(sys.argv)
