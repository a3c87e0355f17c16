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
* :func:`source_entries` reads a source file the way ``postmap``/``postalias`` do, and
  :func:`database_matches_source` compares it with what the database holds (``postmap -s``),
  so that a database is rebuilt when its content differs, whatever the timestamps say;
* :class:`PostmapFile` compares the wanted state with the host and, unless in check mode,
  installs it: the source and its database are staged next to the target, built with
  ``postmap``/``postalias``, queried, then renamed into place all-or-nothing (when one rename
  fails, the files already replaced are put back), so the live database is never half built
  and never left answering for a source it was not built from.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import os
import pwd
import re
import shutil
import stat
import struct
import tempfile
import time

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    POSTFIX_SPACE,
    PostfixError,
    bad_char,
    check_config_dir,
    describe_char,
    make_diff,
    pstrip,
    read_text,
    real_target,
    replace_files,
    split_lines,
    stage_file,
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
# Entries postalias adds to every alias database (Sendmail and NIS signatures).
ALIAS_SIGNATURES = ('@', 'YP_LAST_MODIFIED', 'YP_MASTER_NAME')
# Characters that RFC 822 parsing (postalias) treats specially in an alias name.
_ALIAS_KEY_SPECIALS = '"(),:;<>@[\\]%'
# An alias value postalias stores exactly as written: simple addresses, files, commands,
# :include: files, separated by commas (postalias writes ", " between them).
_ALIAS_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@:-]+"
_SIMPLE_ALIAS_VALUE_RE = re.compile(r'\A%s(?:[ \t]*,[ \t]*%s)*\Z' % (_ALIAS_ATOM, _ALIAS_ATOM))
_SPACE_RE = re.compile('[ \t\n\v\f\r]')
_ESCAPED_RE = re.compile('[\udc80-\udcff]')
_ASCII_LOWER = dict((c, c + 32) for c in range(ord('A'), ord('Z') + 1))


def _sentence(text):
    """``text`` ending with one full stop (Postfix messages may end with '.' or '?')."""
    text = text.strip()
    return text if text.endswith(('.', '?', '!')) else text + '.'


def is_indexed(table_type):
    return table_type in DB_SUFFIXES


def database_files(path, table_type):
    """The database files postmap builds for ``path`` (empty for regexp/pcre/cidr/texthash)."""
    return [path + suffix for suffix in DB_SUFFIXES.get(table_type, ())]


def fold_key(key, utf8=True):
    """A key folded the way Postfix folds keys of an indexed or texthash table.

    With SMTPUTF8 support on (``smtputf8_enable``, on by default) Postfix folds UTF-8 keys with
    full Unicode case folding (``Straße`` -> ``strasse``); without it, ASCII letters only.
    """
    if utf8:
        return key.casefold()
    return key.translate(_ASCII_LOWER)


def _fold(table_type, utf8=True):
    if table_type in FOLDING_TYPES:
        return lambda key: fold_key(key, utf8)
    return lambda key: key


def postmap_split(logical):
    """``(key, value)`` of a logical line as postmap and texthash read it, or None when Postfix
    ignores the line (an unbalanced ``"`` in the key, a missing key or value).

    The key ends at the first whitespace outside double quotes (a backslash escapes the next
    character); quotes and backslashes stay in the key. The value is the rest, trimmed.
    """
    if '"' not in logical and '\\' not in logical:
        match = _SPACE_RE.search(logical)
        if match is None:
            return None
        key, value = logical[:match.start()], pstrip(logical[match.end():])
        return (key, value) if key and value else None
    in_quotes = False
    i, n = 0, len(logical)
    while i < n:
        ch = logical[i]
        if ch == '\\':
            i += 1
            if i >= n:
                break
        elif ch in POSTFIX_SPACE:
            if not in_quotes:
                break
        elif ch == '"':
            in_quotes = not in_quotes
        i += 1
    if in_quotes:
        return None
    key = logical[:i]
    value = pstrip(logical[i + 1:]) if i < n else ''
    if not key or not value:
        return None
    return key, value


# ---------------------------------------------------------------------------------------------
# Keys and values
# ---------------------------------------------------------------------------------------------

def split_pattern(text):
    """Split ``/pattern/flags rest`` into ``(key, rest)`` the way Postfix reads regexp/pcre tables.

    The delimiter is the first character (after an optional ``!``); a backslash escapes it.
    Returns ``(None, text)`` when the pattern is not closed.
    """
    i = 1 if text.startswith('!') else 0
    if i >= len(text) or text[i] in POSTFIX_SPACE:
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
    while j < len(text) and text[j] not in POSTFIX_SPACE:
        j += 1
    return text[:j], pstrip(text[j:])


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
    char = bad_char(text)
    if char is not None:
        if char in '\n\r':
            problem = 'a line break: a table entry is one line'
        else:
            problem = '%s: Postfix would read a different value (a NUL byte ends it, other control characters ' \
                      'are not text)' % describe_char(char)
        raise PostfixError('The value of entry %r contains %s. Nothing was changed.' % (key, problem))
    text = pstrip(text)
    if not text:
        raise PostfixError('Entry %r has an empty value: every key needs a value%s.'
                           % (key, '' if secret else ' (use state=absent to remove a key)'))
    return text


def check_key(key, table_type, alias):
    """Raise PostfixError when ``key`` cannot be written as one key of this table."""
    if not key:
        raise PostfixError('An entry has an empty key.')
    char = bad_char(key)
    if char is not None:
        raise PostfixError('Key %r contains %s: %s. Nothing was changed.' % (
            key, 'a line break' if char in '\n\r' else describe_char(char),
            'a table entry is one line' if char in '\n\r' else 'Postfix would read a different key'))
    if key != pstrip(key):
        raise PostfixError('Key %r starts or ends with whitespace.' % key)
    if key.startswith('#'):
        raise PostfixError('Key %r starts with "#", which makes the line a comment.' % key)
    if table_type in PATTERN_TYPES and not alias:
        pattern, rest = split_pattern(key)
        if pattern is None or rest:
            raise PostfixError('Key %r is not a %s pattern: write it as /pattern/flags (the action '
                               'goes into the value).' % (key, table_type))
        return
    if _SPACE_RE.search(key):
        raise PostfixError('Key %r contains whitespace: %s keys cannot hold spaces.'
                           % (key, 'alias' if alias else table_type))
    if alias:
        if ':' in key:
            raise PostfixError('Alias name %r contains ":", which ends the name in an alias table.' % key)
        specials = sorted(set(ch for ch in key if ch in _ALIAS_KEY_SPECIALS))
        if specials:
            raise PostfixError('Alias name %r contains %s: postalias reads a local name as an address (RFC 822), '
                               'in which these characters quote, comment or route, so it would store another name.'
                               % (key, ', '.join('"%s"' % ch for ch in specials)))
        return
    if key.endswith(':'):
        raise PostfixError('Key %r ends with ":" like an alias table entry; drop the colon, or set '
                           'alias=true for an aliases file.' % key)
    if ('"' in key or '\\' in key) and table_type != 'cidr' and postmap_split(key + ' x') != (key, 'x'):
        raise PostfixError('Key %r has an unbalanced double quote or ends with a backslash: postmap would read '
                           'the value as part of the key (and ignore the line).' % key)


def normalize_entries(entries, table_type, alias=False, state='present', secret=False, utf8=True):
    """Check ``entries`` (dict, list of {key, value} dicts, or list of keys for removal).

    Returns a list of ``(key, value)`` pairs in order; ``value`` is None when removing.
    Raises PostfixError naming the offending key. ``utf8``: see :func:`fold_key`.
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

    fold = _fold(table_type, utf8)
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
            m = re.match(r'"(?:[^"\\]|\\.)*"[ \t\n\v\f\r]*:', logical)
        else:
            m = re.match(r'[^ \t\n\v\f\r:]+[ \t\n\v\f\r]*:', logical)
        if not m:
            return None, None
        key = logical[:m.end()].rstrip(POSTFIX_SPACE)[:-1].rstrip(POSTFIX_SPACE)
        rest = logical[m.end():]
        return key, m.end() + (len(rest) - len(rest.lstrip(POSTFIX_SPACE)))
    first = _SPACE_RE.split(logical, 1)[0]
    if first in ('if', 'endif') and table_type in PATTERN_TYPES + ('cidr',):
        return None, None
    if table_type in PATTERN_TYPES:
        key, dummy = split_pattern(logical)
        if key is None:
            return None, None
    elif table_type == 'cidr' or ('"' not in first and '\\' not in first):
        key = first
    else:
        pair = postmap_split(logical + ' x')
        if pair is None:
            return None, None
        key = pair[0]
    rest = logical[len(key):]
    return key, len(key) + (len(rest) - len(rest.lstrip(POSTFIX_SPACE)))


def parse_table(text, table_type, alias=False):
    """Split a source file into records, following Postfix's logical-line rules.

    Lines end at ``\n`` only. A line starting with whitespace continues the previous entry; blank
    lines and comments in between are skipped by Postfix (they stay inside the record here, so
    that removing the entry removes its continuation lines too).
    """
    records = []
    pending = []  # comment/blank lines not yet attached
    current = None
    lines = split_lines(text, keepends=True)
    start_of_pending = 0
    for idx, line in enumerate(lines):
        lineno = idx + 1
        stripped = pstrip(line)
        if not stripped or stripped.startswith('#'):
            if not pending:
                start_of_pending = lineno
            pending.append(line)
            continue
        if line[0] in POSTFIX_SPACE:
            if current is not None:
                current.lines.extend(pending)
                current.lines.append(line)
                if current.key is not None:
                    current.value = (current.value + line.rstrip('\n')).rstrip(POSTFIX_SPACE)
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
        body = line.rstrip('\n')
        key, vstart = _split_entry(body, table_type, alias)
        if key is None:
            current = Record(lineno, [line])
        else:
            current = Record(lineno, [line], key=key, value=body[vstart:].rstrip(POSTFIX_SPACE), prefix=body[:vstart])
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


def table_entries(records, table_type, utf8=True):
    """``{folded key: (key, value)}`` of the entries (first occurrence wins, as in Postfix)."""
    fold = _fold(table_type, utf8)
    result = {}
    for rec in records:
        if rec.key is not None:
            result.setdefault(fold(rec.key), (rec.key, rec.value))
    return result


def compare_entries(before_records, pairs, table_type, utf8=True):
    """(added, removed, updated) key lists between a parsed file and the wanted pairs."""
    fold = _fold(table_type, utf8)
    before = table_entries(before_records, table_type, utf8)
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


def apply_entries(records, pairs, table_type, alias=False, state='present', utf8=True):
    """Partial mode: ensure ``pairs`` are present (or their keys absent); keep everything else.

    Returns ``(text, added, removed, updated)``. An existing key keeps its place; a key that is
    present more than once keeps its first line only. New keys are appended at the end.
    """
    fold = _fold(table_type, utf8)
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
    """True when ``path`` exists and its owner/group/mode differ from the wanted ones (links followed)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return ((uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid)
            or (mode is not None and stat.S_IMODE(st.st_mode) != mode))


def set_attrs(path, uid, gid, mode):
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


def set_attrs_all(paths, uid, gid, mode):
    """Give every file of ``paths`` the owner, group and mode; all-or-nothing.

    When one change fails (an immutable file, a foreign file system), the files already changed
    get their previous owner, group and mode back, and PostfixError is raised.
    """
    done = []
    try:
        for path in paths:
            if not attrs_differ(path, uid, gid, mode):
                continue
            st = os.stat(path)
            done.append((path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
            set_attrs(path, uid, gid, mode)
    except OSError as exc:
        for path, old_uid, old_gid, old_mode in reversed(done):
            try:
                set_attrs(path, old_uid, old_gid, old_mode)
            except OSError:
                pass
        raise PostfixError('Cannot set the owner, group or mode of %s: %s. Is the file immutable (lsattr, chattr -i)? '
                           'The files keep their previous owner, group and mode.' % (exc.filename or path, exc.strerror or exc))


# ---------------------------------------------------------------------------------------------
# What Postfix reads from a source file, and what a database holds
# ---------------------------------------------------------------------------------------------

def logical_lines(text):
    """The logical lines Postfix's ``readllines`` makes of ``text``: comment and blank lines dropped,
    continuation lines (starting with whitespace) appended as they are, lines that start a file
    with whitespace dropped (Postfix warns about them)."""
    result = []
    current = None
    for line in text.split('\n'):
        stripped = line.lstrip(POSTFIX_SPACE)
        if not stripped or stripped.startswith('#'):
            continue
        if line[0] in POSTFIX_SPACE:
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            result.append(''.join(current))
        current = [line]
    if current is not None:
        result.append(''.join(current))
    return result


def _alias_entry(logical):
    """``(name, value)`` of a simple alias line exactly as postalias stores it, or None when only
    postalias itself can tell (quoted names, comments, route addresses, unusual spacing...)."""
    match = re.match(r'([^ \t\n\v\f\r%s]+)[ \t\n\v\f\r]*:(.*)\Z' % re.escape(_ALIAS_KEY_SPECIALS), logical, re.DOTALL)
    if not match:
        return None
    key, value = match.group(1), pstrip(match.group(2))
    if key.startswith('#') or not _SIMPLE_ALIAS_VALUE_RE.match(value):
        return None
    return key, ', '.join(pstrip(part) for part in value.split(','))


def source_entries(text, table_type, alias=False, utf8=True):
    """``({key: value}, certain)``: the entries ``postmap``/``postalias`` would store for source ``text``.

    Keys are folded as Postfix folds them (:func:`fold_key`); the first of duplicate keys wins;
    a logical line is cut at a NUL byte; lines Postfix ignores are left out. ``certain`` is False
    when the source holds something whose stored form only Postfix can tell exactly (quotes or
    backslashes in a key, bytes that are not UTF-8, alias lines beyond plain names and addresses);
    :func:`database_matches_source` then asks Postfix to build a scratch copy.
    """
    fold = _fold(table_type, utf8)
    entries = {}
    certain = True
    for logical in logical_lines(text):
        logical = logical.split('\x00', 1)[0]
        if _ESCAPED_RE.search(logical):
            certain = False  # not UTF-8: ignored when SMTPUTF8 is on, stored as bytes otherwise
            continue
        if alias:
            pair = _alias_entry(logical)
            if pair is None:
                certain = False
                continue
        else:
            pair = postmap_split(logical)
            if pair is None:
                continue
            if '"' in pair[0] or '\\' in pair[0]:
                certain = False
        key = fold(pair[0])
        if key not in entries:
            entries[key] = pair[1]
    return entries, certain


def _decode(data):
    return data.decode('utf-8', 'surrogateescape')


def read_cdb(path):
    """``{key: value}`` of a CDB file (postmap cannot list one: its "sequence" is not supported).

    The format is D. J. Bernstein's constant database: a 2048-byte header of 256 hash table
    positions, then the records (key length, value length, key, value; little-endian), then the
    tables, the first of which starts where the records end. Returns None for a malformed file.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except (IOError, OSError):
        return None
    if len(data) < 2048:
        return None
    end = struct.unpack_from('<I', data, 0)[0]
    if end < 2048 or end > len(data):
        return None
    entries = {}
    pos = 2048
    while pos + 8 <= end:
        klen, vlen = struct.unpack_from('<II', data, pos)
        pos += 8
        if pos + klen + vlen > end:
            return None
        key = data[pos:pos + klen]
        value = data[pos + klen:pos + klen + vlen]
        pos += klen + vlen
        # Postfix may store the terminating NUL with the key and the value (DICT_FLAG_TRY1NULL).
        if key.endswith(b'\0'):
            key, value = key[:-1], value[:-1] if value.endswith(b'\0') else value
        entries.setdefault(_decode(key), _decode(value))
    return entries if pos == end else None


def dump_database(runner, config_dir, path, table_type, alias=False):
    """``{key: value}``: every entry the database of table ``path`` holds, or None when there is no
    (readable) database. ``postmap -s``/``postalias -s``; CDB files are read directly."""
    databases = database_files(path, table_type)
    if not databases or not all(os.path.isfile(db) for db in databases):
        return None
    if table_type == 'cdb':
        entries = read_cdb(databases[0])
    else:
        command = 'postalias' if alias else 'postmap'
        rc, out, err = runner.run([command, '-c', config_dir, '-s', '%s:%s' % (table_type, path)], check=False)
        if rc != 0:
            return None
        separator = ':\t' if alias else '\t'
        entries = {}
        for line in split_lines(out):
            key, found, value = line.partition(separator)
            if not found:
                return None
            entries.setdefault(key, value)
    if entries is not None and alias:
        for key in ALIAS_SIGNATURES:
            entries.pop(key, None)
    return entries


def utf8_enabled(runner, config_dir):
    """Whether the Postfix commands run with SMTPUTF8 support (``smtputf8_enable``), which decides how
    they fold keys (see :func:`fold_key`) and whether they ignore lines that are not UTF-8."""
    rc, out, dummy = runner.run(['postconf', '-c', config_dir, '-x', '-h', 'smtputf8_enable'], check=False)
    return rc != 0 or out.strip().lower() in ('yes', 'true', '1', 'on')


def _scratch_dump(runner, config_dir, text, table_type, alias):
    """Build ``text`` into a scratch database with Postfix itself and dump it."""
    scratch = tempfile.mkdtemp(prefix='estafeta-postmap-')
    try:
        source = os.path.join(scratch, 'table')
        with open(source, 'wb') as f:
            f.write(text.encode('utf-8', 'surrogateescape'))
        rc, out, err = runner.run(['postalias' if alias else 'postmap', '-c', config_dir,
                                   '%s:%s' % (table_type, source)], check=False)
        if rc != 0:
            return None
        return dump_database(runner, config_dir, source, table_type, alias)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def database_matches_source(runner, config_dir, path, table_type, alias=False):
    """True when the database of table ``path`` holds exactly the entries Postfix reads from the source.

    The entries ``postmap -s`` (``postalias -s``) lists are compared with the entries parsed from
    the source file the way Postfix reads it (:func:`source_entries`: keys folded as Postfix folds
    them for an indexed table). When the source holds something only Postfix can parse exactly, a
    scratch copy is built with Postfix and its entries are compared instead. False when the source
    or the database is missing or unreadable. Tables of types without a database (regexp, pcre,
    cidr, texthash) always match.
    """
    if not is_indexed(table_type):
        return True
    try:
        with open(path, 'rb') as f:
            text = _decode(f.read())
    except (IOError, OSError):
        return False
    stored = dump_database(runner, config_dir, path, table_type, alias)
    if stored is None:
        return False
    utf8 = True
    if table_type in FOLDING_TYPES and not text.isascii():
        utf8 = utf8_enabled(runner, config_dir)
    expected, certain = source_entries(text, table_type, alias, utf8)
    if expected == stored:
        return True
    if certain:
        return False
    return _scratch_dump(runner, config_dir, text, table_type, alias) == stored


# ---------------------------------------------------------------------------------------------
# The table on the managed host
# ---------------------------------------------------------------------------------------------

class PostmapFile:
    """Compute and apply the wanted state of one lookup table (source file + database)."""

    def __init__(self, runner, path, table_type, entries=None, alias=False, exclusive=None,
                 state='present', owner=None, group=None, mode=None, secret=False,
                 config_dir='/etc/postfix', rebuild=False):
        self.runner = runner
        self.path = path
        self.type = table_type
        self.alias = alias
        # The safe default: with state=absent only the listed entries go (see the module docs).
        self.exclusive = (state == 'present') if exclusive is None else exclusive
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
        if entries is None and not (self.exclusive and state == 'absent'):
            if state == 'absent':
                raise PostfixError('state=absent removes the entries given in entries (their keys), and nothing '
                                   'else: give them, or set exclusive=true to remove the whole table with its '
                                   'database. Nothing was changed.')
            raise PostfixError('entries is required (an empty list is allowed with exclusive=true).')
        self.entries = entries
        self.pairs = normalize_entries(entries, table_type, alias, state, secret)
        self.mode = parse_mode(mode)
        self.uid = resolve_user(owner)
        self.gid = resolve_group(group)
        self.databases = database_files(path, table_type)
        self.utf8 = True

    # -- helpers -----------------------------------------------------------------------------

    def _find_utf8(self, texts):
        """How Postfix folds keys here (:func:`fold_key`); asked only when a key is not ASCII."""
        if self.type in FOLDING_TYPES and not all(t.isascii() for t in texts):
            return utf8_enabled(self.runner, self.config_dir)
        return True

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
        """The database is missing, older than the source (Postfix warns about that), or holds
        other entries than the source (a hand ``postmap`` of another file, an interrupted change)."""
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
        return not database_matches_source(self.runner, self.config_dir, self.path, self.type, self.alias)

    def _show(self, text):
        return mask_text(text, self.type, self.alias) if self.secret else text

    def _problems(self, err, tmp):
        """Postfix warnings/fatal errors about the staged file, with the real path put back."""
        records = None
        lines = []
        for line in split_lines(err):
            if tmp not in line and 'fatal:' not in line:
                continue
            line = pstrip(line).replace(tmp, self.path)
            m = re.search(r'line (\d+)', line)
            if m:
                if records is None:
                    records = parse_table(read_text(tmp, default=''), self.type, self.alias)
                lineno = int(m.group(1))
                for rec in records:
                    if rec.key is not None and rec.lineno <= lineno <= rec.last_lineno:
                        line += ' (entry %r)' % rec.key
                        break
            if self.secret:
                # A warning may quote the line (for example "non-UTF-8 input"): never its value.
                line = re.sub(r'"[^"]*"', '"..."', line)
            if line not in lines:
                lines.append(line)
        return lines

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
                    rc=rc, stderr=None if self.secret else err.replace(tmp, self.path))
            if sample is not None:
                key, value = sample
                rc, out, err = self.runner.run([self.command, '-c', self.config_dir, '-q', key, spec], check=False)
                if rc != 0 or out.rstrip('\n') != value:
                    raise PostfixError(
                        'The freshly built %s:%s does not answer key %r as expected (rc=%d). Nothing was changed.'
                        % (self.type, self.path, key, rc), stderr=None if self.secret else err.replace(tmp, self.path))
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
                    rc=rc, stderr=None if self.secret else err.replace(tmp, self.path))

    def _sample(self, text):
        """A key and the value Postfix must answer for it, to probe a fresh build (None: no probe)."""
        if not is_indexed(self.type):
            return None
        entries, certain = source_entries(text, self.type, self.alias, self.utf8)
        if not certain:
            return None
        for key, value in entries.items():
            return key, value
        return None

    def _check_targets(self):
        """The source file a write goes to (links followed) and the database files, which must not be links."""
        for db in self.databases:
            if os.path.islink(db):
                raise PostfixError('%s is a symbolic link. The module replaces a table\'s database with a rename, as '
                                   'Postfix builds it next to the source; remove the link (the database is rebuilt '
                                   'there). Nothing was changed.' % db)
            if os.path.exists(db) and not os.path.isfile(db):
                raise PostfixError('%s exists but is not a regular file. Nothing was changed.' % db)
        if os.path.islink(self.path) or os.path.exists(self.path):
            real = real_target(self.path, 'table source')
            if not os.path.isfile(real):
                raise PostfixError('%s exists but is not a regular file.' % self.path)
            return real
        return self.path

    # -- main entry ----------------------------------------------------------------------------

    def run(self, check_mode=False, want_diff=False, backup_func=None):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise PostfixError('The directory of %s does not exist; create it first.' % self.path)
        check_config_dir(self.config_dir)
        result = dict(changed=False, rebuilt=False, path=self.path, type=self.type,
                      database=self.databases[-1] if self.databases else None,
                      added=[], removed=[], updated=[], entries=0)
        if self.state == 'absent' and self.exclusive:
            exists = os.path.isfile(self.path)
            before = read_text(self.path, default='') if exists else ''
            before_records = parse_table(before, self.type, self.alias)
            return self._remove(result, before, before_records, exists, check_mode, want_diff, backup_func)

        source = self._check_targets()
        exists = os.path.exists(self.path)
        before = read_text(self.path, default='') if exists else ''
        utf8 = self.utf8 = self._find_utf8([before] + [k for k, dummy in self.pairs])
        if utf8 is not True:
            self.pairs = normalize_entries(self.entries, self.type, self.alias, self.state, self.secret, utf8)
        before_records = parse_table(before, self.type, self.alias)
        if not exists and self.state == 'absent':
            return result
        if self.exclusive:
            after = render_table(self.pairs, self.alias)
            added, removed, updated = compare_entries(before_records, self.pairs, self.type, utf8)
        else:
            after, added, removed, updated = apply_entries(before_records, self.pairs, self.type,
                                                           self.alias, self.state, utf8)
        result.update(added=added, removed=removed, updated=updated)
        after_records = before_records if after == before else parse_table(after, self.type, self.alias)
        result['entries'] = len(table_entries(after_records, self.type, utf8))

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
                    tmp = stage_file(os.path.join(scratch, os.path.basename(self.path)), after, mode)
                    self._build(tmp, self._sample(after))
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            return result

        if content_changed or need_build:
            self._install(source, after, uid, gid, mode, content_changed and exists, backup_func, result)
        else:
            set_attrs_all([self.path] + self.databases, uid, gid, mode)
        return result

    def _install(self, source, text, uid, gid, mode, backup, backup_func, result):
        """Build the new database from a staged copy of the source, then move the database files and
        the source into place all-or-nothing (see :func:`.common.replace_files`)."""
        staged = []
        try:
            install = None
            if os.path.dirname(source) != os.path.dirname(self.path):
                # The link points into another directory: a copy to install there, written before the
                # database is built, so that the source is not newer than its database.
                install = stage_file(source, text, mode)
                staged.append(install)
            tmp = stage_file(self.path, text, mode)  # next to the database files postmap makes
            staged.append(tmp)
            self._build(tmp, self._sample(text))
            moves = [(tmp_db, db, False) for tmp_db, db in zip(database_files(tmp, self.type), self.databases)]
            moves.append((install or tmp, source, False))
            try:
                for staged_file, dummy, dummy2 in moves:
                    set_attrs(staged_file, uid, gid, mode)
            except OSError as exc:
                raise PostfixError('Cannot give the new %s owner %s, group %s and mode %o: %s. Nothing was changed.'
                                   % (self.path, uid, gid, mode, exc))
            if backup and backup_func is not None:
                result['backup_file'] = backup_func(self.path)
            # The database first, the source last: the source then ends up older than its database.
            replace_files(moves)
        finally:
            for tmp in staged:
                self._cleanup(tmp)

    def _remove(self, result, before, before_records, exists, check_mode, want_diff, backup_func):
        """Remove the source (a symbolic link itself, not what it points to) and its database, all-or-nothing."""
        present = [f for f in [self.path] + self.databases if os.path.lexists(f)]
        result['removed'] = [k for k, v in table_entries(before_records, self.type).values()]
        result['changed'] = bool(present)
        if want_diff:
            result['diff'] = make_diff(self._show(before), '', self.path)
        if present and not check_mode:
            if exists and backup_func is not None:
                result['backup_file'] = backup_func(self.path)
            moved = []
            try:
                for f in present:
                    aside = '%s.%s.removed' % (os.path.join(os.path.dirname(f), '.' + os.path.basename(f)),
                                               os.urandom(4).hex())
                    os.rename(f, aside)
                    moved.append((f, aside))
            except OSError as exc:
                for f, aside in reversed(moved):
                    try:
                        os.rename(aside, f)
                    except OSError:
                        pass
                raise PostfixError('Cannot remove %s: %s. Is it immutable (lsattr, chattr -i)? The table was left as '
                                   'it was.' % (exc.filename or self.path, exc.strerror or exc))
            for dummy, aside in moved:
                os.unlink(aside)
        return result
