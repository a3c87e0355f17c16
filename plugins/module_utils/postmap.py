# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Postfix lookup tables: parse and render source files, build their databases safely.

Pure functions and a small :class:`PostmapFile` class, independent of AnsibleModule:

* :func:`normalize_entries` checks the wanted entries and turns them into ``(key, value)`` pairs;
* :func:`parse_table` reads a source file into records (entries, comments, opaque lines),
  following Postfix's rules for logical lines (continuation lines, comments inside them);
* :func:`render_table` / :func:`apply_entries` compute the wanted source text;
* :class:`PostmapFile` compares the wanted state with the host and, unless in check mode,
  installs it: the source and its database are staged next to the target, built with
  ``postmap``/``postalias``, queried, then renamed into place, so the live database is
  never half built.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import os
import pwd
import re
import shutil
import stat
import tempfile
import time

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    PostfixError,
    check_config_dir,
    make_diff,
    read_text,
)

HEADER = '# Managed by Ansible (estafeta.postfix.postmap_file): local edits are overwritten.\n'
MASK = '********'
PROBE_KEY = 'estafeta-postmap-file-probe'
ALIGN_CAP = 40

# Indexed types and the database files postmap creates for them.
DB_SUFFIXES = {
    'hash': ('.db',),
    'btree': ('.db',),
    'dbm': ('.dir', '.pag'),
    'lmdb': ('.lmdb',),
    'cdb': ('.cdb',),
}
# Types read directly from the source file: validated, never postmapped.
TEXT_TYPES = ('regexp', 'pcre', 'cidr', 'texthash')
TYPES = tuple(sorted(DB_SUFFIXES)) + TEXT_TYPES
PATTERN_TYPES = ('regexp', 'pcre')
# Postfix folds keys to lower case for these types (postmap without -f).
FOLDING_TYPES = tuple(DB_SUFFIXES) + ('texthash',)


def _sentence(text):
    """``text`` ending with one full stop (Postfix messages may end with '.' or '?')."""
    text = text.strip()
    return text if text.endswith(('.', '?', '!')) else text + '.'


def is_indexed(table_type):
    return table_type in DB_SUFFIXES


def database_files(path, table_type):
    """The database files postmap builds for ``path`` (empty for regexp/pcre/cidr/texthash)."""
    return [path + suffix for suffix in DB_SUFFIXES.get(table_type, ())]


def _fold(table_type):
    if table_type in FOLDING_TYPES:
        return lambda key: key.lower()
    return lambda key: key


# ---------------------------------------------------------------------------------------------
# Keys and values
# ---------------------------------------------------------------------------------------------

def split_pattern(text):
    """Split ``/pattern/flags rest`` into ``(key, rest)`` the way Postfix reads regexp/pcre tables.

    The delimiter is the first character (after an optional ``!``); a backslash escapes it.
    Returns ``(None, text)`` when the pattern is not closed.
    """
    i = 1 if text.startswith('!') else 0
    if i >= len(text) or text[i].isspace():
        return None, text
    delim = text[i]
    j = i + 1
    while j < len(text):
        if text[j] == '\\':
            j += 2
            continue
        if text[j] == delim:
            break
        j += 1
    if j >= len(text):
        return None, text
    j += 1
    while j < len(text) and not text[j].isspace():
        j += 1
    return text[:j], text[j:].strip()


def _value_text(value, key, secret):
    """Render one value: str/int/float as text, bool as yes/no, list joined with ", "."""
    if isinstance(value, bool):
        text = 'yes' if value else 'no'
    elif isinstance(value, (list, tuple)):
        parts = []
        for item in value:
            if isinstance(item, (dict, list, tuple)) or item is None:
                raise PostfixError('Entry %r: a list value may only hold strings or numbers.' % key)
            part = _value_text(item, key, secret)
            parts.append(part)
        text = ', '.join(parts)
    elif isinstance(value, (dict,)) or value is None:
        raise PostfixError('Entry %r has no value (or a mapping as value); give a string, a number '
                           'or a list of strings.' % key)
    else:
        text = str(value)
    if '\n' in text or '\r' in text:
        raise PostfixError('The value of entry %r contains a line break: a table entry is one line.' % key)
    text = text.strip()
    if not text:
        raise PostfixError('Entry %r has an empty value: every key needs a value%s.'
                           % (key, '' if secret else ' (use state=absent to remove a key)'))
    return text


def check_key(key, table_type, alias):
    """Raise PostfixError when ``key`` cannot be written as one key of this table."""
    if not key:
        raise PostfixError('An entry has an empty key.')
    if '\n' in key or '\r' in key:
        raise PostfixError('Key %r contains a line break.' % key)
    if key != key.strip():
        raise PostfixError('Key %r starts or ends with whitespace.' % key)
    if key.startswith('#'):
        raise PostfixError('Key %r starts with "#", which makes the line a comment.' % key)
    if table_type in PATTERN_TYPES and not alias:
        pattern, rest = split_pattern(key)
        if pattern is None or rest:
            raise PostfixError('Key %r is not a %s pattern: write it as /pattern/flags (the action '
                               'goes into the value).' % (key, table_type))
        return
    if re.search(r'\s', key):
        raise PostfixError('Key %r contains whitespace: %s keys cannot hold spaces.'
                           % (key, 'alias' if alias else table_type))
    if alias and ':' in key:
        raise PostfixError('Alias name %r contains ":", which ends the name in an alias table.' % key)
    if not alias and key.endswith(':'):
        raise PostfixError('Key %r ends with ":" like an alias table entry; drop the colon, or set '
                           'alias=true for an aliases file.' % key)


def normalize_entries(entries, table_type, alias=False, state='present', secret=False):
    """Check ``entries`` (dict, list of {key, value} dicts, or list of keys for removal).

    Returns a list of ``(key, value)`` pairs in order; ``value`` is None when removing.
    Raises PostfixError naming the offending key.
    """
    removing = state == 'absent'
    if entries is None:
        return []
    pairs = []
    if isinstance(entries, dict):
        for key, value in entries.items():
            pairs.append((key, value, True))
    elif isinstance(entries, (list, tuple)):
        for idx, item in enumerate(entries):
            if isinstance(item, dict):
                unknown = set(item) - set(['key', 'value'])
                if 'key' not in item or unknown:
                    raise PostfixError('entries[%d]: each list item must be a dict with "key" and '
                                       '"value"%s.' % (idx, ' (unknown: %s)' % ', '.join(sorted(unknown)) if unknown else ''))
                pairs.append((item['key'], item.get('value'), 'value' in item))
            elif removing and isinstance(item, (str, int)) and not isinstance(item, bool):
                pairs.append((item, None, False))
            else:
                raise PostfixError('entries[%d]: expected a dict with "key" and "value"%s.'
                                   % (idx, ' or a key to remove' if removing else ''))
    else:
        raise PostfixError('entries must be a dict {key: value} or a list of {key:, value:} dicts.')

    fold = _fold(table_type)
    result = []
    seen = {}
    for key, value, has_value in pairs:
        if key is None or isinstance(key, (dict, list, tuple, bool)):
            raise PostfixError('Entry key %r is not a string.' % (key,))
        key = str(key)
        check_key(key, table_type, alias)
        if removing:
            text = None
        else:
            if not has_value:
                raise PostfixError('Entry %r has no value.' % key)
            text = _value_text(value, key, secret)
        folded = fold(key)
        if folded in seen:
            prev_key, prev_text = seen[folded]
            if prev_text != text:
                raise PostfixError('Key %r is given twice with different values%s; give each key once.'
                                   % (key, '' if prev_key == key else ' (as %r too: Postfix folds %s keys to '
                                      'lower case)' % (prev_key, table_type)))
            continue
        seen[folded] = (key, text)
        result.append((key, text))
    return result


def secret_values(entries):
    """Every value given in ``entries`` as text (for AnsibleModule.no_log_values)."""
    values = set()

    def add(value):
        if isinstance(value, (list, tuple)):
            for item in value:
                add(item)
            values.add(', '.join(str(v) for v in value))
        elif value is not None and not isinstance(value, (dict, bool)):
            text = str(value).strip()
            if text:
                values.add(text)

    if isinstance(entries, dict):
        for value in entries.values():
            add(value)
    elif isinstance(entries, (list, tuple)):
        for item in entries:
            if isinstance(item, dict):
                add(item.get('value'))
    return values


# ---------------------------------------------------------------------------------------------
# Parsing and rendering source files
# ---------------------------------------------------------------------------------------------

class Record:
    """One piece of a source file.

    ``key`` is None for comments, blank lines and lines that are not plain entries
    (``if``/``endif`` blocks, malformed lines); such records are kept verbatim.
    ``prefix`` is the first line up to where the value starts (used to mask values).
    """

    def __init__(self, lineno, lines, key=None, value=None, prefix=None):
        self.lineno = lineno
        self.lines = lines
        self.key = key
        self.value = value
        self.prefix = prefix

    @property
    def text(self):
        return ''.join(self.lines)

    @property
    def last_lineno(self):
        return self.lineno + len(self.lines) - 1


def _split_entry(logical, table_type, alias):
    """Return ``(key, value_start)`` for the first line of a logical line, or (None, None)."""
    if alias:
        if logical.startswith('"'):
            m = re.match(r'"(?:[^"\\]|\\.)*"\s*:', logical)
        else:
            m = re.match(r'[^\s:]+\s*:', logical)
        if not m:
            return None, None
        key = logical[:m.end()].rstrip()[:-1].rstrip()
        rest = logical[m.end():]
        return key, m.end() + (len(rest) - len(rest.lstrip()))
    first = logical.split(None, 1)[0]
    if first in ('if', 'endif') and table_type in PATTERN_TYPES + ('cidr',):
        return None, None
    if table_type in PATTERN_TYPES:
        key, dummy = split_pattern(logical)
        if key is None:
            return None, None
    else:
        key = first
    rest = logical[len(key):]
    return key, len(key) + (len(rest) - len(rest.lstrip()))


def parse_table(text, table_type, alias=False):
    """Split a source file into records, following Postfix's logical-line rules.

    A line starting with whitespace continues the previous entry; blank lines and comments in
    between are skipped by Postfix (they stay inside the record here, so that removing the entry
    removes its continuation lines too).
    """
    records = []
    pending = []  # comment/blank lines not yet attached
    current = None
    lines = text.splitlines(True)
    start_of_pending = 0
    for idx, line in enumerate(lines):
        lineno = idx + 1
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            if not pending:
                start_of_pending = lineno
            pending.append(line)
            continue
        if line[0].isspace():
            if current is not None:
                current.lines.extend(pending)
                current.lines.append(line)
                if current.key is not None:
                    current.value = (current.value + line.rstrip('\r\n')).rstrip()
                pending = []
                continue
            # A continuation without an entry: Postfix warns; keep it verbatim.
            for pline in pending:
                records.append(Record(start_of_pending, [pline]))
                start_of_pending += 1
            pending = []
            current = None
            records.append(Record(lineno, [line]))
            continue
        for pline in pending:
            records.append(Record(start_of_pending, [pline]))
            start_of_pending += 1
        pending = []
        body = line.rstrip('\r\n')
        key, vstart = _split_entry(body, table_type, alias)
        if key is None:
            current = Record(lineno, [line])
        else:
            current = Record(lineno, [line], key=key, value=body[vstart:].rstrip(), prefix=body[:vstart])
        records.append(current)
    for pline in pending:
        records.append(Record(start_of_pending, [pline]))
        start_of_pending += 1
    return records


def format_entry(key, value, alias=False, width=0):
    """One source line: ``key value`` (``key: value`` for aliases), key padded to ``width``."""
    left = key + ':' if alias else key
    return '%-*s %s\n' % (width, left, value)


def _width(pairs, alias):
    if not pairs:
        return 0
    longest = max(len(k) + (1 if alias else 0) for k, dummy in pairs)
    return min(longest, ALIGN_CAP)


def render_table(pairs, alias=False):
    """The whole source file of an exclusively managed table."""
    width = _width(pairs, alias)
    return HEADER + ''.join(format_entry(k, v, alias, width) for k, v in pairs)


def table_entries(records, table_type):
    """``{folded key: (key, value)}`` of the entries (first occurrence wins, as in Postfix)."""
    fold = _fold(table_type)
    result = {}
    for rec in records:
        if rec.key is not None:
            result.setdefault(fold(rec.key), (rec.key, rec.value))
    return result


def compare_entries(before_records, pairs, table_type):
    """(added, removed, updated) key lists between a parsed file and the wanted pairs."""
    fold = _fold(table_type)
    before = table_entries(before_records, table_type)
    wanted = set()
    added, updated = [], []
    for key, value in pairs:
        folded = fold(key)
        wanted.add(folded)
        if folded not in before:
            added.append(key)
        elif before[folded][1] != value:
            updated.append(key)
    removed = [k for f, (k, v) in before.items() if f not in wanted]
    return added, removed, updated


def apply_entries(records, pairs, table_type, alias=False, state='present'):
    """Partial mode: ensure ``pairs`` are present (or their keys absent); keep everything else.

    Returns ``(text, added, removed, updated)``. An existing key keeps its place; a key that is
    present more than once keeps its first line only. New keys are appended at the end.
    """
    fold = _fold(table_type)
    wanted = dict((fold(k), (k, v)) for k, v in pairs)
    width = _width(pairs, alias)
    out = []
    seen = set()
    added, removed, updated = [], [], []
    for rec in records:
        folded = fold(rec.key) if rec.key is not None else None
        if folded is None or folded not in wanted:
            out.append(rec.text)
            continue
        if state == 'absent' or folded in seen:
            if rec.key not in removed:
                removed.append(rec.key)
            continue
        seen.add(folded)
        key, value = wanted[folded]
        if rec.value == value:
            out.append(rec.text)
        else:
            out.append(format_entry(key, value, alias, width))
            updated.append(key)
    if state == 'present':
        for key, value in pairs:
            if fold(key) not in seen:
                if out and not out[-1].endswith('\n'):
                    out[-1] += '\n'
                out.append(format_entry(key, value, alias, width))
                added.append(key)
    return ''.join(out), added, removed, updated


def mask_text(text, table_type, alias=False):
    """``text`` with every entry's value replaced by ``********`` (for diffs of secret tables)."""
    out = []
    for rec in parse_table(text, table_type, alias):
        if rec.key is None:
            out.append(rec.text)
        else:
            out.append('%s%s\n' % (rec.prefix, MASK))
    return ''.join(out)


# ---------------------------------------------------------------------------------------------
# File attributes
# ---------------------------------------------------------------------------------------------

def parse_mode(mode):
    """``'0600'``/``'600'``/``0o600`` -> int; None stays None."""
    if mode is None:
        return None
    if isinstance(mode, bool):
        raise PostfixError('mode must be an octal string such as "0600", got %r.' % (mode,))
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if not re.match(r'^0?[0-7]{3,4}$', text):
            raise PostfixError('mode must be an octal string such as "0600" or "0644", got %r '
                               '(symbolic modes are not supported).' % (mode,))
        value = int(text, 8)
    if value < 0 or value > 0o7777:
        raise PostfixError('mode %r is out of range: quote octal modes in YAML ("0600").' % (mode,))
    return value


def resolve_user(owner):
    if owner is None:
        return None
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if str(owner).isdigit():
            return int(owner)
    raise PostfixError('owner %r: no such user on the managed host.' % owner)


def resolve_group(group):
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if str(group).isdigit():
            return int(group)
    raise PostfixError('group %r: no such group on the managed host.' % group)


def attrs_differ(path, uid, gid, mode):
    """True when ``path`` exists and its owner/group/mode differ from the wanted ones."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return ((uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid)
            or (mode is not None and stat.S_IMODE(st.st_mode) != mode))


def set_attrs(path, uid, gid, mode):
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


# ---------------------------------------------------------------------------------------------
# The table on the managed host
# ---------------------------------------------------------------------------------------------

class PostmapFile:
    """Compute and apply the wanted state of one lookup table (source file + database)."""

    def __init__(self, runner, path, table_type, entries=None, alias=False, exclusive=True,
                 state='present', owner=None, group=None, mode=None, secret=False,
                 config_dir='/etc/postfix', rebuild=False):
        self.runner = runner
        self.path = path
        self.type = table_type
        self.alias = alias
        self.exclusive = exclusive
        self.state = state
        self.secret = secret
        self.config_dir = config_dir
        self.rebuild = rebuild
        self.command = 'postalias' if alias else 'postmap'
        if not os.path.isabs(path):
            raise PostfixError('path must be an absolute path, got %r.' % path)
        if table_type not in TYPES:
            raise PostfixError('Unsupported table type %r (default_database_type?); use one of: %s.'
                               % (table_type, ', '.join(TYPES)))
        if alias and not is_indexed(table_type):
            raise PostfixError('alias=true needs an indexed table type (hash, lmdb, cdb, btree), not %s.'
                               % table_type)
        if entries is None and not (exclusive and state == 'absent'):
            raise PostfixError('entries is required (an empty list is allowed with exclusive=true).')
        self.pairs = normalize_entries(entries, table_type, alias, state, secret)
        self.mode = parse_mode(mode)
        self.uid = resolve_user(owner)
        self.gid = resolve_group(group)
        self.databases = database_files(path, table_type)

    # -- helpers -----------------------------------------------------------------------------

    def _wanted_attrs(self):
        """(uid, gid, mode) for the source and its database; None = leave as created."""
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        uid = self.uid if self.uid is not None else (st.st_uid if st else None)
        gid = self.gid if self.gid is not None else (st.st_gid if st else None)
        if self.mode is not None:
            mode = self.mode
        else:
            mode = stat.S_IMODE(st.st_mode) if st else 0o644
        return uid, gid, mode

    def _database_stale(self):
        if not self.databases:
            return False
        try:
            src = os.stat(self.path).st_mtime_ns
        except OSError:
            return True
        for db in self.databases:
            try:
                if os.stat(db).st_mtime_ns < src:
                    return True
            except OSError:
                return True
        return False

    def _show(self, text):
        return mask_text(text, self.type, self.alias) if self.secret else text

    def _problems(self, err, tmp):
        """Postfix warnings/fatal errors about the staged file, with the real path put back."""
        records = None
        lines = []
        for line in err.splitlines():
            if tmp not in line and 'fatal:' not in line:
                continue
            line = line.strip().replace(tmp, self.path)
            m = re.search(r'line (\d+)', line)
            if m:
                if records is None:
                    records = parse_table(read_text(tmp, default=''), self.type, self.alias)
                lineno = int(m.group(1))
                for rec in records:
                    if rec.key is not None and rec.lineno <= lineno <= rec.last_lineno:
                        line += ' (entry %r)' % rec.key
                        break
            if line not in lines:
                lines.append(line)
        return lines

    def _stage(self, directory, text, mode):
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(self.path), suffix='.tmp', dir=directory)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, 'wb') as f:
                f.write(text.encode('utf-8', 'surrogateescape'))
                f.flush()
                os.fsync(f.fileno())
        except Exception:
            os.unlink(tmp)
            raise
        return tmp

    def _cleanup(self, tmp):
        for name in [tmp, tmp + '.cdb.tmp'] + database_files(tmp, self.type):
            try:
                os.unlink(name)
            except OSError:
                pass

    def _build(self, tmp, sample):
        """postmap/postalias the staged file (indexed types) or let Postfix parse it (others)."""
        spec = '%s:%s' % (self.type, tmp)
        if is_indexed(self.type):
            rc, out, err = self.runner.run([self.command, '-c', self.config_dir, spec], check=False)
            problems = self._problems(err, tmp)
            if rc != 0 or problems:
                raise PostfixError(
                    '%s could not build %s:%s: %s Nothing was changed.'
                    % (self.command, self.type, self.path, _sentence('; '.join(problems) or err or out)),
                    rc=rc, stderr=err.replace(tmp, self.path))
            if sample is not None:
                key, value = sample
                rc, out, err = self.runner.run([self.command, '-c', self.config_dir, '-q', key, spec], check=False)
                if rc != 0 or out.strip() != value:
                    raise PostfixError(
                        'The freshly built %s:%s does not answer key %r as expected (rc=%d). Nothing was changed.'
                        % (self.type, self.path, key, rc), stderr=err.replace(tmp, self.path))
        else:
            # Postfix waits up to two seconds for a texthash file modified in the last seconds to
            # settle; the staged file is complete, so backdate it while Postfix parses it.
            past = time.time() - 60
            os.utime(tmp, (past, past))
            rc, out, err = self.runner.run(['postmap', '-c', self.config_dir, '-q', PROBE_KEY, spec], check=False)
            os.utime(tmp, None)
            problems = self._problems(err, tmp)
            if rc not in (0, 1) or problems:
                raise PostfixError(
                    'Postfix rejects the %s table %s: %s Nothing was changed.'
                    % (self.type, self.path, _sentence('; '.join(problems) or err or out)),
                    rc=rc, stderr=err.replace(tmp, self.path))

    def _sample(self, text):
        for rec in parse_table(text, self.type, self.alias):
            if rec.key is not None:
                return rec.key, rec.value
        return None

    # -- main entry ----------------------------------------------------------------------------

    def run(self, check_mode=False, want_diff=False, backup_func=None):
        exists = os.path.exists(self.path)
        if exists and not os.path.isfile(self.path):
            raise PostfixError('%s exists but is not a regular file.' % self.path)
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise PostfixError('The directory of %s does not exist; create it first.' % self.path)
        check_config_dir(self.config_dir)
        before = read_text(self.path, default='') if exists else ''
        before_records = parse_table(before, self.type, self.alias)

        result = dict(changed=False, rebuilt=False, path=self.path, type=self.type,
                      database=self.databases[-1] if self.databases else None,
                      added=[], removed=[], updated=[], entries=0)

        if self.state == 'absent' and self.exclusive:
            return self._remove(result, before, before_records, exists, check_mode, want_diff, backup_func)

        if not exists and self.state == 'absent':
            return result
        if self.exclusive:
            after = render_table(self.pairs, self.alias)
            added, removed, updated = compare_entries(before_records, self.pairs, self.type)
        else:
            after, added, removed, updated = apply_entries(before_records, self.pairs, self.type,
                                                           self.alias, self.state)
        result.update(added=added, removed=removed, updated=updated)
        after_records = parse_table(after, self.type, self.alias)
        result['entries'] = len(table_entries(after_records, self.type))

        content_changed = not exists or after != before
        need_build = is_indexed(self.type) and (content_changed or self.rebuild or self._database_stale())
        uid, gid, mode = self._wanted_attrs()
        attrs_changed = any(attrs_differ(f, uid, gid, mode) for f in [self.path] + self.databases)

        result['changed'] = content_changed or need_build or attrs_changed
        result['rebuilt'] = need_build
        if want_diff:
            result['diff'] = make_diff(self._show(before), self._show(after), self.path)
        if not result['changed']:
            return result

        if check_mode:
            if content_changed:
                scratch = tempfile.mkdtemp(prefix='estafeta-postmap-')
                try:
                    tmp = self._stage(scratch, after, mode)
                    self._build(tmp, self._sample(after))
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            return result

        if content_changed or need_build:
            tmp = self._stage(directory, after, mode)
            try:
                self._build(tmp, self._sample(after))
                for f in [tmp] + database_files(tmp, self.type):
                    set_attrs(f, uid, gid, mode)
                if content_changed and exists and backup_func is not None:
                    result['backup_file'] = backup_func(self.path)
                for tmp_db, db in zip(database_files(tmp, self.type), self.databases):
                    os.rename(tmp_db, db)
                # Also when only the database was rebuilt: the source then gets an mtime older
                # than its database again (same content, so nothing changes for Postfix).
                os.rename(tmp, self.path)
            finally:
                self._cleanup(tmp)
        for f in [self.path] + self.databases:
            if os.path.exists(f) and attrs_differ(f, uid, gid, mode):
                set_attrs(f, uid, gid, mode)
        return result

    def _remove(self, result, before, before_records, exists, check_mode, want_diff, backup_func):
        present = [f for f in [self.path] + self.databases if os.path.exists(f)]
        result['removed'] = [k for k, v in table_entries(before_records, self.type).values()]
        result['changed'] = bool(present)
        if want_diff:
            result['diff'] = make_diff(self._show(before), '', self.path)
        if present and not check_mode:
            if exists and backup_func is not None:
                result['backup_file'] = backup_func(self.path)
            for f in present:
                os.unlink(f)
        return result
