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
* :func:`check_text` - refuse text that Postfix would read differently (control characters);
* :func:`split_lines` - split text into lines on ``\n`` only, as Postfix does;
* :func:`real_target` - the file a write goes to (symbolic links are followed);
* :func:`atomic_write` - write a file through a temporary file in the same directory;
* :func:`install_files` - replace several files all-or-nothing (roll back on any failure);
* :class:`ConfigTransaction` - stage edits of main.cf/master.cf in a scratch copy, install
  them atomically, check that Postfix accepts them and roll back when it does not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unicodedata

DEFAULT_CONFIG_DIR = '/etc/postfix'
POSTFIX_SBIN_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin']
C_LOCALE = {'LANG': 'C', 'LC_ALL': 'C', 'LC_MESSAGES': 'C'}
# How long a run waits for another run that edits the same configuration directory.
LOCK_TIMEOUT = 300
# Postfix waits for a configuration file modified within the last two seconds to settle.
SETTLE_SECONDS = 3
# A Postfix parameter name (a leading "-" would reach postconf as an option).
PARAM_NAME_RE = re.compile(r'\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')
# Postfix's ISSPACE (ASCII only): what it trims around keys, values and parameter values.
POSTFIX_SPACE = ' \t\n\v\f\r'
# Control characters (C0, DEL, C1) and lone surrogates.
_BAD_CHAR_RE = re.compile('[\x00-\x1f\x7f-\x9f\ud800-\udfff]')
_CHAR_NAMES = {
    '\x00': 'a NUL byte', '\t': 'a tab', '\n': 'a newline', '\r': 'a carriage return',
    '\x0b': 'a vertical tab', '\x0c': 'a form feed', '\x7f': 'a DEL character',
    '\x85': 'a next-line character (U+0085)', '\x1c': 'a file separator (U+001C)',
    '\x1d': 'a group separator (U+001D)', '\x1e': 'a record separator (U+001E)', '\x1f': 'a unit separator (U+001F)',
}


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
        proc = subprocess.run(args, input=data, capture_output=True, encoding='utf-8', errors='surrogateescape',
                              env=env, check=False)
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


def bad_char(text):
    """The first character of ``text`` that no Postfix file may hold, or None.

    Those are the control characters (C0, DEL and C1, including NUL, tab, line feed, carriage
    return, vertical tab, form feed, the information separators U+001C-U+001F and next line
    U+0085) and lone surrogates (not valid Unicode, cannot be written as UTF-8). Postfix reads
    its files as bytes, one line per ``\n``, and stops reading a value at a NUL byte, so such a
    character would make it read something else than what was asked. Other Unicode text,
    including the line and paragraph separators U+2028 and U+2029, is ordinary text to Postfix.
    """
    match = _BAD_CHAR_RE.search(text)
    return match.group(0) if match else None


def describe_char(char):
    if char in _CHAR_NAMES:
        return _CHAR_NAMES[char] if 'U+' in _CHAR_NAMES[char] else '%s (%r)' % (_CHAR_NAMES[char], char)
    if '\ud800' <= char <= '\udfff':
        return 'a lone surrogate (U+%04X, not valid Unicode)' % ord(char)
    name = unicodedata.name(char, '')
    return 'a control character (U+%04X%s)' % (ord(char), ', ' + name.lower() if name else '')


def check_text(what, text):
    """Raise PostfixError when ``text`` holds a character that Postfix would not read back (see :func:`bad_char`)."""
    char = bad_char(text)
    if char is not None:
        raise PostfixError('%s contains %s: Postfix would not read it back as given (its files are lines of text, '
                           'and a NUL byte ends a value). Nothing was changed.' % (what, describe_char(char)))


def split_lines(text, keepends=False):
    """Split ``text`` into lines on ``\n`` only, as Postfix does.

    ``str.splitlines`` also splits on ``\r``, ``\v``, ``\f``, ``\x1c``-``\x1e``, U+0085, U+2028 and
    U+2029, which Postfix treats as ordinary characters inside a line.
    """
    if not text:
        return []
    lines = text.split('\n')
    last = lines.pop()
    if keepends:
        lines = [line + '\n' for line in lines]
    if last:
        lines.append(last)
    return lines


def pstrip(text):
    """``text`` without the leading and trailing whitespace Postfix trims (ASCII only)."""
    return text.strip(POSTFIX_SPACE)


def real_target(path, what='file'):
    """The file that a write of ``path`` replaces: symbolic links are followed.

    Postfix reads a configuration file or a lookup table through a symbolic link, so the
    modules write the file the link points to and leave the link in place. A link that
    points nowhere (or into a loop) is refused.
    """
    if not os.path.islink(path):
        return path
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise PostfixError('%s is a symbolic link to %s, which does not exist (or is a loop). Point the link at the '
                           'real %s or remove it. Nothing was changed.' % (path, real, what))
    if not os.path.isfile(real):
        raise PostfixError('%s is a symbolic link to %s, which is not a regular file. Nothing was changed.' % (path, real))
    return real


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
    path = real_target(path)
    tmp = stage_file(path, content, mode)
    try:
        (mover or os.rename)(tmp, path)
        tmp = None
        if settled:  # after the move: AnsibleModule.atomic_move stamps the file with the current time
            past = time.time() - SETTLE_SECONDS
            os.utime(path, (past, past))
    except BaseException as exc:
        if tmp is not None:
            _remove_quietly(tmp)
        if isinstance(exc, PostfixError) or not isinstance(exc, Exception):
            raise
        raise PostfixError('Cannot replace %s: %s. Is the file immutable (lsattr, chattr -i) or its file system '
                           'mounted read-only?' % (path, exc))
    return path


def keep_link(path):
    """A hard link to ``path`` next to it, to put the current file back after a failed change.

    Creating it is also the test that the file can be replaced at all: Linux refuses to link (and to
    replace) an immutable or append-only file. Returns None where hard links are not available
    (the caller then restores the file from its saved content). Raises PostfixError when the file
    cannot be replaced; nothing has been changed at that point.
    """
    directory, base = os.path.split(path)
    for dummy in range(100):
        keep = os.path.join(directory, '.%s.%s.keep' % (base, os.urandom(4).hex()))
        try:
            os.link(path, keep)
            return keep
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                try:
                    foreign = os.geteuid() != 0 and os.stat(path).st_uid != os.geteuid()
                except OSError:
                    foreign = False
                if exc.errno == errno.EPERM and foreign:
                    return None  # protected_hardlinks: another user's file, which a rename can still replace
                raise PostfixError('Cannot replace %s: %s. Is the file immutable or append-only (lsattr; chattr -i, '
                                   'chattr -a)? Nothing was changed.' % (path, exc.strerror or exc))
            return None
    return None


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def stage_file(target, content, mode=None):
    """Write ``content`` (text or bytes) to a new temporary file next to ``target``; return its name.

    The file gets ``mode`` (default: the mode of ``target``, or 0644) before any byte is written.
    """
    directory = os.path.dirname(target) or '.'
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            mode = 0o644
    if not isinstance(content, bytes):
        content = content.encode('utf-8', 'surrogateescape')
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(target), suffix='.tmp', dir=directory)
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        if tmp is not None:
            _remove_quietly(tmp)
        if not isinstance(exc, Exception):
            raise
        raise PostfixError('Cannot write a new %s next to the old one: %s. Is the directory writable, the file system '
                           'full or mounted read-only? Nothing was changed.' % (target, exc))
    return tmp


class _Replacement:
    """One file of :func:`replace_files`: the staged file, its target, and how to put the old one back."""

    def __init__(self, staged, target, settled):
        self.staged = staged
        self.target = target
        self.settled = settled
        self.existed = os.path.exists(target)
        self.keep = keep_link(target) if self.existed else None
        self.old = None
        if self.existed and self.keep is None:
            with open(target, 'rb') as f:
                self.old = f.read()
        self.installed = False

    def restore(self):
        if not self.installed:
            return
        if self.keep is not None:
            os.rename(self.keep, self.target)
            self.keep = None
        elif self.existed:
            tmp = stage_file(self.target, self.old)
            try:
                os.rename(tmp, self.target)
            except OSError:
                _remove_quietly(tmp)
                raise
        else:
            os.unlink(self.target)
        self.installed = False


def replace_files(moves, mover=None, after=None):
    """Move staged files onto their targets, all-or-nothing.

    ``moves`` is a list of ``(staged, target, settled)``: ``staged`` a complete file next to
    ``target`` (see :func:`stage_file`), moved with ``mover(src, dst)`` (default ``os.rename``) in
    that order; ``settled`` backdates the target afterwards (see :func:`atomic_write`).
    ``after()`` (for example the check that Postfix accepts them) runs once all are in place.

    Before the first move, each existing target is kept under a hard link, which also proves that it
    can be replaced (an immutable or append-only file fails here, before anything changed). When a
    move or ``after()`` fails, every target replaced so far is put back and the error is raised
    again (an OSError as PostfixError). The staged files are removed in any case.
    """
    done = []
    try:
        for staged, target, settled in moves:
            done.append(_Replacement(staged, target, settled))
        for item in done:
            try:
                (mover or os.rename)(item.staged, item.target)
            except PostfixError:
                raise
            except Exception as exc:  # OSError, or the plain Exception AnsibleModule.atomic_move raises
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                raise PostfixError('Cannot replace %s: %s. Is the file immutable (lsattr, chattr -i) or its file '
                                   'system mounted read-only?' % (item.target, cause))
            item.installed = True
            if item.settled:
                past = time.time() - SETTLE_SECONDS
                os.utime(item.target, (past, past))
        if after is not None:
            after()
    except BaseException as exc:
        failed = []
        for item in reversed(done):
            try:
                item.restore()
            except Exception as problem:  # keep restoring the others
                failed.append('%s (%s)' % (item.target, getattr(problem, 'msg', problem)))
        if isinstance(exc, PostfixError):
            if failed:
                exc.msg += (' Putting back the previous content failed for %s: run the task again to repair.'
                            % ', '.join(failed))
            elif len(moves) > 1 and 'Nothing was changed' not in exc.msg and 'restored' not in exc.msg:
                exc.msg += ' The files of this change were put back as they were: nothing was changed.'
        if isinstance(exc, OSError):
            raise PostfixError('Cannot replace %s: %s.%s' % (
                ', '.join(t for dummy, t, dummy2 in moves), exc,
                ' Putting back the previous content failed for %s.' % ', '.join(failed) if failed else
                ' Nothing was changed.'))
        raise
    finally:
        for item in done:
            if item.keep is not None:
                _remove_quietly(item.keep)
        for staged, dummy, dummy2 in moves:
            if os.path.exists(staged):
                _remove_quietly(staged)
    return [t for dummy, t, dummy2 in moves]


def install_files(files, mover=None, after=None):
    """Replace several files all-or-nothing.

    ``files`` is a list of ``(path, content, mode, settled)``: every new file is written next to its
    target first, then they are moved into place in that order by :func:`replace_files`, which
    puts every file back when a move or ``after()`` fails. Symbolic links are followed
    (:func:`real_target`).
    """
    moves = []
    try:
        for path, content, mode, settled in files:
            real = real_target(path)
            moves.append((stage_file(real, content, mode), real, settled))
    except BaseException:
        for staged, dummy, dummy2 in moves:
            _remove_quietly(staged)
        raise
    return replace_files(moves, mover=mover, after=after)


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
                tx.commit(check=True)                               # install + Postfix accepts it

    The scratch directory holds copies of main.cf and master.cf (the files ``postconf``
    edits). ``commit`` moves every changed file into place with an atomic rename; when
    Postfix then refuses them (:meth:`postfix_check`), the previous files are put back and
    PostfixError is raised.
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
        return self.read_staged()[0]

    def read_staged(self):
        """``(warnings, services)``: the warnings of ``postconf -n``/``-M`` on the staged files, and the
        ``postconf -M`` output (every service as Postfix reads the staged master.cf, one line each)."""
        self.settle()
        dummy, dummy2, err = self.runner.run(['postconf', '-c', self.scratch, '-n'], what='postconf -n')
        dummy, services, err2 = self.runner.run(['postconf', '-c', self.scratch, '-M'], what='postconf -M')
        lines = []
        for line in (err + err2).split('\n'):
            line = line.replace(self.scratch, self.config_dir)
            if line and line not in lines:
                lines.append(line)
        return lines, services

    def backup(self, name, backup_file_func):
        """Keep a timestamped copy of the current file (``AnsibleModule.backup_local``)."""
        target = os.path.join(self.config_dir, name)
        if os.path.exists(target):
            return backup_file_func(target)
        return None

    def postfix_check(self):
        """Make sure Postfix accepts the installed configuration; raise PostfixError when it does not.

        Every Postfix program validates the global parameters of main.cf before it does anything and
        stops with a fatal error on a bad value (``message_size_limit = abc``, an unknown user in
        ``mail_owner``, a host name ``inet_interfaces`` cannot resolve, ...); ``postmap`` does it and,
        unlike ``postfix check``, prints the reason, in about ten milliseconds. The directories
        ``postfix check`` insists on must exist too. What ``postfix check`` adds - ownership and
        permissions of the queue and of Postfix's own files - is not something a change to main.cf,
        master.cf or a table can break; the collection's roles run the full ``postfix check`` once,
        before they reload Postfix.
        """
        cmd = ['postmap', '-c', self.config_dir, '-q', 'probe', 'static:probe']
        rc, out, err = self.runner.run(cmd, check=False)
        if rc != 0 or out.strip() != 'probe':
            lines = [line.strip() for line in (err or '').splitlines() if 'fatal:' in line or 'error:' in line]
            raise PostfixError(
                'Postfix refuses the new configuration, so the previous files were restored: %s'
                % (' '.join(lines) or (err or out).strip() or 'postmap -q failed with rc=%d' % rc),
                cmd=cmd, rc=rc, stdout=out, stderr=err)
        names = ['queue_directory', 'data_directory', 'daemon_directory', 'command_directory']
        if 'main.cf' not in self.changed_files() or not [
                n for n in names if re.search(r'(?m)^\s*%s\s*=' % n, self.before['main.cf'] + '\n' + self.after('main.cf'))]:
            return
        dummy, out, dummy2 = self.runner.run(['postconf', '-c', self.config_dir, '-h'] + names, what='postconf -h')
        for name, value in zip(names, out.split('\n')):
            if not os.path.isdir(value.strip()):
                raise PostfixError(
                    'Postfix refuses the new configuration, so the previous files were restored: %s = %s is not '
                    'a directory.' % (name, value.strip()), cmd=['postconf', '-h', name])

    def commit(self, check=True, extra=()):
        """Install the changed files all-or-nothing; check that Postfix accepts them; roll back on failure.

        ``extra`` is a list of ``(path, content, mode)`` of other files that belong to the same
        change (the restrictions module's ownership record); they are installed first, and put
        back too when anything fails.
        """
        changed = self.changed_files()
        files = [(path, content, mode, False) for path, content, mode in extra]
        files += [(os.path.join(self.config_dir, name), self.after(name), None, True) for name in changed]
        if files:
            install_files(files, mover=self.mover, after=self.postfix_check if check and changed else None)
        return changed
