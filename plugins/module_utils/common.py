# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared plumbing for the estafeta.postfix modules (private to this collection).

Everything here is independent of AnsibleModule so that unit tests can drive it with
the real Postfix binaries and a scratch configuration directory:

* :class:`PostfixError` - the one exception type modules turn into ``fail_json``;
* :class:`Runner` / :class:`SubprocessRunner` - run Postfix commands with argument lists
  and ``LANG=C``;
* :func:`atomic_write` - write a file through a temporary file in the same directory;
* :class:`ConfigTransaction` - stage edits of main.cf/master.cf in a scratch copy, install
  them atomically, run ``postfix check`` and roll back when it fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
import time

DEFAULT_CONFIG_DIR = '/etc/postfix'
POSTFIX_SBIN_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin']
C_LOCALE = {'LANG': 'C', 'LC_ALL': 'C', 'LC_MESSAGES': 'C'}
# How long a run waits for another run that edits the same configuration directory.
LOCK_TIMEOUT = 300
# Postfix waits for a configuration file modified within the last two seconds to settle.
SETTLE_SECONDS = 3


class PostfixError(Exception):
    """A domain error: bad input or a failed Postfix command.

    ``msg`` says what was wrong and what to do; ``details`` carries cmd/rc/stdout/stderr
    of a failed command so that ``fail_json`` can report them.
    """

    def __init__(self, msg, **details):
        super(PostfixError, self).__init__(msg)
        self.msg = msg
        self.details = dict((k, v) for k, v in details.items() if v is not None)


class Runner:
    """Runs a command given as an argument list; returns ``(rc, stdout, stderr)``."""

    def __init__(self):
        self._bins = {}

    def which(self, name):
        raise NotImplementedError

    def _run(self, args, data=None):
        raise NotImplementedError

    def run(self, args, data=None, check=True, what=None):
        """Run ``args`` (first element a command name); raise PostfixError when rc != 0."""
        args = [self.which(args[0])] + [str(a) for a in args[1:]]
        rc, out, err = self._run(args, data=data)
        if check and rc != 0:
            raise PostfixError(
                '%s failed (rc=%d): %s' % (what or ' '.join(args), rc, (err or out).strip()),
                cmd=args, rc=rc, stdout=out, stderr=err)
        return rc, out, err


class SubprocessRunner(Runner):
    """Plain-Python runner (used by unit tests and tools)."""

    def which(self, name):
        if os.path.isabs(name):
            return name
        if name not in self._bins:
            path = shutil.which(name, path=os.pathsep.join(
                os.environ.get('PATH', '').split(os.pathsep) + POSTFIX_SBIN_DIRS))
            if path is None:
                raise PostfixError(
                    'Command %r was not found. Is Postfix installed (apt-get install postfix)?' % name)
            self._bins[name] = path
        return self._bins[name]

    def _run(self, args, data=None):
        env = dict(os.environ)
        env.update(C_LOCALE)
        proc = subprocess.run(args, input=data, capture_output=True, text=True, env=env, check=False)
        return proc.returncode, proc.stdout, proc.stderr


class ModuleRunner(Runner):
    """Runner on top of AnsibleModule.run_command / get_bin_path."""

    def __init__(self, module):
        super(ModuleRunner, self).__init__()
        self.module = module

    def which(self, name):
        if os.path.isabs(name):
            return name
        if name not in self._bins:
            path = self.module.get_bin_path(name, required=False, opt_dirs=POSTFIX_SBIN_DIRS)
            if path is None:
                raise PostfixError(
                    'Command %r was not found on the managed host. Install Postfix first '
                    '(for example with the estafeta.postfix.base role).' % name)
            self._bins[name] = path
        return self._bins[name]

    def _run(self, args, data=None):
        return self.module.run_command(args, data=data, binary_data=True, environ_update=C_LOCALE)


def read_text(path, default=None):
    """Return the text of ``path``, or ``default`` when it does not exist."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'surrogateescape')
    except (IOError, OSError) as exc:
        if default is not None and not os.path.exists(path):
            return default
        raise PostfixError('Cannot read %s: %s' % (path, exc))


def check_config_dir(config_dir):
    """Fail early, before anything is written, when ``config_dir`` is unusable."""
    if not os.path.isabs(config_dir):
        raise PostfixError('config_dir must be an absolute path, got %r.' % config_dir)
    if not os.path.isdir(config_dir):
        raise PostfixError('config_dir %s does not exist or is not a directory. Is Postfix '
                           'installed, and is this the right configuration directory?' % config_dir)
    if not os.access(config_dir, os.W_OK):
        raise PostfixError('config_dir %s is not writable by this user (become: true?); nothing '
                           'was changed.' % config_dir)


def lock_config_dir(config_dir, timeout=LOCK_TIMEOUT):
    """Hold an exclusive lock on ``config_dir`` until the returned descriptor is closed.

    The lock is a ``flock`` on the directory itself (no lock file is created). It serializes runs
    of the collection's modules that edit the same directory: each reads, edits and installs
    the files while holding it, so a concurrent run cannot install a copy made from files that
    are about to change (a lost update).
    """
    fd = os.open(config_dir, os.O_RDONLY)
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise PostfixError('Another run has been editing %s for more than %d seconds (it holds the lock on '
                                       'the directory); nothing was changed.' % (config_dir, timeout))
                raise PostfixError('Cannot lock %s: %s' % (config_dir, exc))
            time.sleep(0.05)


def atomic_write(path, content, mode=None, mover=None, settled=False):
    """Write ``content`` (text) to ``path`` through a temporary file in the same directory.

    The temporary file gets ``mode`` (or the mode of the file it replaces) before it is
    moved into place, so a secret is never readable, even for a moment. ``mover(src, dst)``
    defaults to ``os.rename``; modules pass ``AnsibleModule.atomic_move``.

    ``settled`` gives the file a modification time a few seconds in the past. Postfix does
    not trust a configuration file modified within the last two seconds (an editor may still
    be writing it) and every Postfix command that reads it waits for it to settle: about 2 s
    for ``postfix check`` right after a change, and again for the reload. A file that appears
    through an atomic rename is complete the moment it exists, so that wait buys nothing.
    """
    directory = os.path.dirname(path) or '.'
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as f:
            f.write(content.encode('utf-8', 'surrogateescape'))
            f.flush()
            os.fsync(f.fileno())
        (mover or os.rename)(tmp, path)
        if settled:  # after the move: AnsibleModule.atomic_move stamps the file with the current time
            past = time.time() - SETTLE_SECONDS
            os.utime(path, (past, past))
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, PostfixError):
            raise
        raise PostfixError('Cannot replace %s: %s. Is the file immutable (lsattr, chattr -i) or its file system '
                           'mounted read-only?' % (path, exc))
    return path


def make_diff(before, after, path):
    """A diff dict as Ansible's callbacks render it."""
    return {'before': before, 'after': after,
            'before_header': '%s (before)' % path, 'after_header': '%s (after)' % path}


class ConfigTransaction:
    """Stage an edit of a Postfix configuration directory, then install it safely.

    Usage::

        with ConfigTransaction(runner, '/etc/postfix') as tx:
            runner.run(['postconf', '-c', tx.scratch, '-e', 'a=b'])   # edit the copy
            tx.validate()                                            # postconf warnings
            if tx.changed_files() and not check_mode:
                tx.commit(check=True)                               # install + postfix check

    The scratch directory holds copies of main.cf and master.cf (the files ``postconf``
    edits). ``commit`` moves every changed file into place with an atomic rename; when
    ``postfix check`` then fails, the previous files are put back and PostfixError is raised.
    """

    FILES = ('main.cf', 'master.cf')

    def __init__(self, runner, config_dir, mover=None):
        self.runner = runner
        self.config_dir = config_dir
        self.mover = mover
        self.scratch = None
        self.before = {}
        self._lock = None

    def __enter__(self):
        check_config_dir(self.config_dir)
        self._lock = lock_config_dir(self.config_dir)
        try:
            self.scratch = tempfile.mkdtemp(prefix='estafeta-postfix-')
            for name in self.FILES:
                src = os.path.join(self.config_dir, name)
                if name == 'main.cf' and not os.path.exists(src):
                    raise PostfixError('%s does not exist: is Postfix installed in %s?' % (src, self.config_dir))
                self.before[name] = read_text(src, default='')
                with open(os.path.join(self.scratch, name), 'wb') as f:
                    f.write(self.before[name].encode('utf-8', 'surrogateescape'))
            self.settle()
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        return False

    def settle(self):
        """Backdate the scratch files after an edit, so that Postfix reads them at once.

        Postfix does not trust a file modified within the last second or so (it may still be
        being written) and waits up to a few seconds for it to settle. The scratch copies are
        private to this transaction, so giving them an old timestamp is safe; the installed
        files keep their real one.
        """
        past = time.time() - 60
        for name in self.FILES:
            path = self.path(name)
            if os.path.exists(path):
                os.utime(path, (past, past))

    def path(self, name):
        return os.path.join(self.scratch, name)

    def after(self, name):
        return read_text(self.path(name), default='')

    def changed_files(self):
        return [n for n in self.FILES if self.after(n) != self.before[n]]

    def diff(self, name):
        return make_diff(self.before[name], self.after(name), os.path.join(self.config_dir, name))

    def postconf_warnings(self):
        """Warnings Postfix prints for the staged main.cf/master.cf (unknown names, bad syntax)."""
        self.settle()
        dummy, dummy2, err = self.runner.run(['postconf', '-c', self.scratch, '-n'], what='postconf -n')
        dummy, dummy2, err2 = self.runner.run(['postconf', '-c', self.scratch, '-M'], what='postconf -M')
        lines = []
        for line in (err + err2).splitlines():
            line = line.replace(self.scratch, self.config_dir)
            if line and line not in lines:
                lines.append(line)
        return lines

    def backup(self, name, backup_file_func):
        """Keep a timestamped copy of the current file (``AnsibleModule.backup_local``)."""
        target = os.path.join(self.config_dir, name)
        if os.path.exists(target):
            return backup_file_func(target)
        return None

    def explain_check_failure(self):
        """The reason for a ``postfix check`` that failed without a word.

        ``postfix`` writes its fatal errors to the mail log only, unless stderr is a terminal.
        ``postmap`` reads the same main.cf, validates the global parameters the same way and
        prints to stderr, so a harmless lookup reveals bad values such as
        ``message_size_limit = abc``.
        """
        rc, out, err = self.runner.run(['postmap', '-c', self.config_dir, '-q', 'probe', 'static:probe'],
                                       check=False)
        lines = [line.strip() for line in (err or '').splitlines() if 'fatal:' in line or 'error:' in line]
        if rc != 0 and lines:
            return ' '.join(lines)
        return ('postfix check printed nothing (rc != 0); Postfix logged the reason to the mail log '
                '(journalctl -t postfix, or /var/log/mail.log).')

    def commit(self, check=True):
        """Install the changed files atomically; run ``postfix check``; roll back on failure."""
        changed = self.changed_files()
        installed = []
        try:
            for name in changed:
                target = os.path.join(self.config_dir, name)
                atomic_write(target, self.after(name), mover=self.mover, settled=True)
                installed.append(name)
            if check and changed:
                rc, out, err = self.runner.run(['postfix', '-c', self.config_dir, 'check'], check=False)
                if rc != 0:
                    raise PostfixError(
                        'postfix check failed after the change, so the previous configuration was '
                        'restored: %s' % ((err or out).strip() or self.explain_check_failure()),
                        cmd=['postfix', '-c', self.config_dir, 'check'], rc=rc, stdout=out, stderr=err)
        except Exception:
            for name in installed:
                atomic_write(os.path.join(self.config_dir, name), self.before[name], mover=self.mover, settled=True)
            raise
        return changed
