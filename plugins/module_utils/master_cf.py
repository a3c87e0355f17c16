# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Parse, compare and edit master.cf service entries (private to this collection).

The file is read as a list of blocks:

* a *text* block is one comment, blank or stray line, kept verbatim;
* an *entry* block is a service entry: its first line, its continuation lines (lines that
  start with whitespace) and the comment or blank lines found between them (Postfix skips
  those inside a logical line, so they belong to the entry).

``render(parse(text)) == text`` for every input. Editing an entry re-renders only that
entry; every other line stays byte-identical.

Tokens are split like Postfix does (``argv_splitq`` with ``{}``): whitespace separates
tokens except inside braces; ``{ text }`` stands for ``text`` (Postfix 3.0 and later), and
``-o { name = value }`` for ``-o name=value``. Daemon options are the arguments after the
command that start with ``-`` up to the first one that does not (or ``--``); ``-o`` options
among them are the parameter overrides, everything else is kept in ``args``.

Lines are split on ``\n`` only and classified with Postfix's ASCII whitespace, as Postfix reads
the file. What the module writes is checked twice before it is installed: the rendered entry is
parsed back here, then read back by ``postconf -M`` from a scratch copy; when either differs from
what was asked, nothing is written. ``{ }`` is master.cf's only quoting and has no escape, so a
value or an argument with an unbalanced brace, or with a control character, is refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    PARAM_NAME_RE,
    POSTFIX_SPACE,
    ConfigTransaction,
    PostfixError,
    atomic_write,
    check_text,
    split_lines,
)

SERVICE_TYPES = ('inet', 'unix', 'unix-dgram', 'fifo', 'pass')
FIELDS = ('name', 'type', 'private', 'unpriv', 'chroot', 'wakeup', 'maxproc', 'command')
FLAG_FIELDS = ('private', 'unpriv', 'chroot')
# Column where each of the eight fields starts, as in Debian's master.cf.
COLUMNS = (0, 10, 16, 24, 32, 40, 48, 56)
INDENT = '  '
# Field separators inside a logical line (Postfix's CHARS_SPACE); lines are classified with
# POSTFIX_SPACE (ISSPACE), which also holds vertical tab and form feed.
BLANKS = ' \t\r\n'

_WAKEUP_RE = re.compile(r'\A(-|[0-9]+\??)\Z')
_MAXPROC_RE = re.compile(r'\A(-|[0-9]+)\Z')
# A field (service name, command): printable ASCII without "#" and braces.
_WORD_RE = re.compile(r'\A[!"$-z|~]+\Z')
_LINE_NUMBER_RE = re.compile(r'line [0-9]+: ')
_FLAG_VALUES = {
    '-': '-', 'y': 'y', 'n': 'n',
    'yes': 'y', 'no': 'n', 'true': 'y', 'false': 'n',
}


# ---------------------------------------------------------------------------
# Tokens


def split_tokens(text):
    """Split ``text`` on whitespace outside ``{}`` (Postfix's ``mystrtokq``)."""
    tokens = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in BLANKS:
            i += 1
        if i >= n:
            break
        start, level = i, 0
        while i < n:
            ch = text[i]
            if ch == '{':
                level += 1
            elif ch == '}' and level > 0:
                level -= 1
            elif level == 0 and ch in BLANKS:
                break
            i += 1
        tokens.append(text[start:i])
    return tokens


def extract_braces(token):
    """``{ text }`` -> ``text`` (Postfix's ``extpar`` with stripping); None when malformed."""
    if not token.startswith('{'):
        return token
    level = 0
    for i, ch in enumerate(token):
        if ch == '{':
            level += 1
        elif ch == '}':
            level -= 1
            if level == 0:
                if i != len(token) - 1:
                    return None
                return token[1:i].strip(BLANKS)
    return None


def split_nameval(text):
    """``name = value`` -> (name, value) with whitespace trimmed; None without ``=``."""
    if '=' not in text:
        return None
    name, value = text.split('=', 1)
    name = name.strip(BLANKS)
    if not name:
        return None
    return name, value.strip(BLANKS)


def parse_command(tokens, printed=False):
    """Split the tokens after the command field into (options, args).

    ``options`` is a list of ``(name, value)`` pairs in file order; ``args`` the other
    arguments, braces removed.

    ``printed``: the tokens come from ``postconf -M`` output rather than from master.cf. postconf
    prints an argument in braces only when it holds whitespace, and prints any other argument as
    it is, even one that starts with ``{`` (the argument ``{}`` is printed ``{}``), so such a token
    stands for itself there.
    """
    options = []
    args = []
    i, n = 0, len(tokens)
    in_options = True
    while i < n:
        tok = tokens[i]
        if in_options and (not tok.startswith('-') or tok == '--'):
            in_options = False
        if not in_options:
            value = extract_braces(tok)
            if printed and value is not None and not _has_blank(value):
                value = None
            args.append(tok if value is None else value)
            i += 1
            continue
        # "-vo name=value" is "-v" "-o" "name=value"; "-oname=value" is "-o" "name=value".
        pos = tok.find('o', 1)
        if pos > 1:
            args.append(tok[:pos])
            tok = '-' + tok[pos:]
        if not tok.startswith('-o'):
            args.append(tok)
            i += 1
            continue
        if len(tok) > 2:
            raw = tok[2:]
            i += 1
        elif i + 1 < n:
            raw = tokens[i + 1]
            i += 2
        else:
            args.append(tok)
            i += 1
            continue
        text = raw
        if raw.startswith('{'):
            text = extract_braces(raw)
        pair = split_nameval(text) if text is not None else None
        if pair is None:
            # Postfix warns about it; keep it as it was so nothing is lost.
            args.extend(['-o', raw])
        else:
            options.append(pair)
    return options, args


def parse_entry_text(text, printed=False):
    """Parse the text of one logical line into a service dict; None when it has < 8 fields.

    ``printed``: see :func:`parse_command`."""
    tokens = split_tokens(text)
    if len(tokens) < len(FIELDS):
        return None
    service = dict(zip(FIELDS, tokens[:len(FIELDS)]))
    options, args = parse_command(tokens[len(FIELDS):], printed)
    service['options'] = dict(options)
    service['args'] = args
    service['_option_list'] = options
    return service


# ---------------------------------------------------------------------------
# Blocks


def classify(line):
    """One of 'blank', 'comment', 'continuation', 'entry' (as Postfix's ``readllines``)."""
    stripped = line.strip(POSTFIX_SPACE)
    if not stripped:
        return 'blank'
    if stripped.startswith('#'):
        return 'comment'
    if line[0] in POSTFIX_SPACE:
        return 'continuation'
    return 'entry'


class Block:
    """A run of lines (with their line endings); ``service`` is set for entries."""

    def __init__(self, lines, service=None, is_entry=False):
        self.lines = list(lines)
        self.service = service
        self.is_entry = is_entry

    @property
    def text(self):
        return ''.join(self.lines)

    def key(self):
        if self.service is None:
            return None
        return (self.service['name'], self.service['type'])


def parse(text, printed=False):
    """Parse master.cf text (or ``postconf -M`` output, ``printed``) into a list of :class:`Block`."""
    lines = split_lines(text, keepends=True)
    blocks = []
    i, n = 0, len(lines)
    while i < n:
        kind = classify(lines[i])
        if kind != 'entry':
            blocks.append(Block([lines[i]]))
            i += 1
            continue
        last = i
        j = i + 1
        while j < n:
            k = classify(lines[j])
            if k == 'entry':
                break
            if k == 'continuation':
                last = j
            j += 1
        entry_lines = lines[i:last + 1]
        logical = ' '.join(line for line in entry_lines if classify(line) in ('entry', 'continuation'))
        blocks.append(Block(entry_lines, service=parse_entry_text(logical, printed), is_entry=True))
        i = last + 1
    return blocks


def render(blocks):
    return ''.join(b.text for b in blocks)


def public(service):
    """A service dict without private keys (for return values)."""
    if service is None:
        return None
    return dict((k, v) for k, v in service.items() if not k.startswith('_'))


# ---------------------------------------------------------------------------
# Desired state


def format_value(value, what):
    """Render an option value the way Postfix writes it (bool -> yes/no, list -> a,b)."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (list, tuple)):
        items = [format_value(v, what) for v in value]
        items = [v for v in items if v != '']
        sep = ', ' if any(_has_blank(v) for v in items) else ','
        return sep.join(items)
    if isinstance(value, dict):
        raise PostfixError('%s must be a string, a number, a boolean or a list, not a dictionary.' % what)
    return str(value).strip(BLANKS)


def _has_blank(text):
    return any(ch in BLANKS for ch in text)


def balanced(text):
    """True when every ``{`` of ``text`` is closed by a later ``}`` and no ``}`` comes unopened."""
    level = 0
    for ch in text:
        if ch == '{':
            level += 1
        elif ch == '}':
            level -= 1
            if level < 0:
                return False
    return level == 0


def check_master_text(what, text):
    """Refuse text that cannot be written to master.cf so that Postfix reads it back unchanged."""
    check_text('%s %r' % (what, text), text)
    if not balanced(text):
        raise PostfixError(
            '%s %r has unbalanced braces. master.cf\'s only quoting is { } (master(5)), which cannot hold an '
            'unbalanced "{" or "}": Postfix would read the overrides and arguments that follow as part of it. '
            'Nothing was changed.' % (what, text))


def _normalize_flag(value, field):
    key = value
    if isinstance(value, bool):
        key = 'true' if value else 'false'
    key = str(key).strip(BLANKS).lower() if key is not None else '-'
    if key not in _FLAG_VALUES:
        raise PostfixError("%s must be '-', 'y' or 'n' (or a boolean), got %r." % (field, value))
    return _FLAG_VALUES[key]


def _check_word(value, field):
    if not isinstance(value, str) or not _WORD_RE.match(value):
        raise PostfixError('%s must be a single word of printable ASCII characters, without whitespace, control '
                           'characters, braces or "#", got %r. Nothing was changed.' % (field, value))


def render_option(name, value):
    """The text of one ``-o`` override: ``-o name=value`` or ``-o { name = value }``."""
    if value and _has_blank(value):
        return '-o { %s = %s }' % (name, value)
    return '-o %s=%s' % (name, value)


def render_arg(arg):
    if _has_blank(arg) or arg[:1] in ('{', '#'):
        return '{ %s }' % arg
    return arg


def default_private(stype):
    """The ``private`` field for a new entry: Postfix's master refuses a private inet service."""
    return 'n' if stype == 'inet' else '-'


def normalize_service(params):
    """Validate module parameters; return the wanted service dict. Raises PostfixError."""
    name = params.get('name')
    stype = params.get('type')
    _check_word(name, 'name')
    if stype not in SERVICE_TYPES:
        raise PostfixError('type must be one of %s, got %r.' % (', '.join(SERVICE_TYPES), stype))
    service = {'name': name, 'type': stype}
    for field in FLAG_FIELDS:
        value = params.get(field)
        if value is None:
            value = default_private(stype) if field == 'private' else '-'
        service[field] = _normalize_flag(value, field)
    if stype == 'inet' and service['private'] != 'n':
        raise PostfixError('private=%r: an inet service cannot be private ("-" means y), Postfix\'s master refuses to '
                           'start with "inet service cannot be private". Leave private unset or set it to n. '
                           'Nothing was changed.' % (params.get('private'),))
    for field, regex, hint in (('wakeup', _WAKEUP_RE, "'-', or seconds optionally followed by '?' (for example 60 or 1000?)"),
                               ('maxproc', _MAXPROC_RE, "'-' or a number of processes (0 means no limit)")):
        value = params.get(field)
        value = '-' if value is None else str(value).strip(BLANKS)
        if isinstance(params.get(field), bool) or not regex.match(value):
            raise PostfixError('%s must be %s, got %r.' % (field, hint, params.get(field)))
        service[field] = value
    command = params.get('command')
    _check_word(command, 'command')
    service['command'] = command

    options = {}
    option_list = []
    for opt_name, raw in (params.get('options') or {}).items():
        if not isinstance(opt_name, str) or not PARAM_NAME_RE.match(opt_name):
            raise PostfixError('options: %r is not a valid parameter name (letters, digits, "_", "." and "-", not '
                               'first). Nothing was changed.' % (opt_name,))
        value = format_value(raw, 'options.%s' % opt_name)
        check_master_text('options.%s: the value' % opt_name, value)
        options[opt_name] = value
        option_list.append((opt_name, value))

    args = []
    in_options = True
    for index, arg in enumerate(params.get('args') or []):
        arg = '' if arg is None else str(arg)
        what = 'args[%d]' % index
        check_master_text(what, arg)
        if not arg.strip(BLANKS):
            raise PostfixError('%s: empty arguments cannot be written to master.cf.' % what)
        if arg != arg.strip(BLANKS):
            raise PostfixError('%s: %r must not start or end with whitespace.' % (what, arg))
        if in_options and (not arg.startswith('-') or arg == '--'):
            in_options = False
        if in_options and 'o' in arg[1:]:
            raise PostfixError('%s: %r is a -o override: put it in options (name: value) instead of args.'
                               % (what, arg))
        args.append(arg)
    service['options'] = options
    service['args'] = args
    service['_option_list'] = option_list
    check_round_trip(service)
    return service


def differences(wanted, got):
    """What Postfix reads (``got``) differently from ``wanted``, in words; empty when the same.

    Strict: option values and arguments must be identical text.
    """
    if got is None:
        return ['the entry is not there']
    problems = []
    for field in FIELDS:
        if wanted[field] != got[field]:
            problems.append('%s is %r instead of %r' % (field, got[field], wanted[field]))
    for name, value in wanted['options'].items():
        if name not in got['options']:
            problems.append('-o %s is missing' % name)
        elif got['options'][name] != value:
            problems.append('-o %s is %r instead of %r' % (name, got['options'][name], value))
    for name in got['options']:
        if name not in wanted['options']:
            problems.append('there is an extra -o %s=%s' % (name, got['options'][name]))
    if got['args'] != wanted['args']:
        problems.append('the arguments are %r instead of %r' % (got['args'], wanted['args']))
    return problems


def check_round_trip(service):
    """Parse the rendered entry back; PostfixError when it reads differently from ``service``."""
    blocks = parse(''.join(render_entry(service)))
    entries = [b for b in blocks if b.is_entry]
    got = entries[0].service if len(entries) == 1 else None
    problems = differences(service, got)
    if problems:
        raise PostfixError('The master.cf entry %s/%s cannot be written so that Postfix reads it back as given: %s. '
                           'Nothing was changed.' % (service['name'], service['type'], '; '.join(problems)))


# ---------------------------------------------------------------------------
# Comparison and rendering


def _norm_value(value):
    value = re.sub(r'[ \t\r\n]*,[ \t\r\n]*', ',', value.strip(BLANKS))
    return re.sub(r'[ \t\r\n]+', ' ', value)


def same_service(a, b):
    """True when two service dicts are the same for Postfix (spacing, list separators and
    option order do not matter)."""
    if a is None or b is None:
        return a is b
    for field in FIELDS:
        if a[field] != b[field]:
            return False
    if a['args'] != b['args']:
        return False
    if set(a['options']) != set(b['options']):
        return False
    return all(_norm_value(a['options'][k]) == _norm_value(b['options'][k]) for k in a['options'])


def render_header(service):
    line = ''
    for field, column in zip(FIELDS, COLUMNS):
        if line:
            line += ' '
            line += ' ' * max(0, column - len(line))
        line += service[field]
    return line


def _anchor(line):
    """What a continuation line holds: ('o', name) for an override, ('args',) otherwise."""
    options, dummy = parse_command(split_tokens(line))
    tokens = split_tokens(line)
    if tokens and tokens[0].startswith('-o') and options:
        return ('o', options[0][0])
    return ('args',)


def render_entry(service, old_lines=None, newline='\n'):
    """Lines of an entry in canonical form; comments found inside ``old_lines`` are kept,
    each in front of the override (or argument line) it preceded."""
    anchored = {}
    loose = []
    pending = []
    for line in (old_lines or [])[1:]:
        kind = classify(line)
        if kind in ('comment', 'blank'):
            pending.append(line if line.endswith('\n') else line + newline)
        elif kind == 'continuation' and pending:
            anchored.setdefault(_anchor(line), []).extend(pending)
            pending = []
    loose.extend(pending)

    body = []
    for name, value in service['_option_list']:
        body.append((('o', name), INDENT + render_option(name, value) + newline))
    if service['args']:
        body.append((('args',), INDENT + ' '.join(render_arg(a) for a in service['args']) + newline))

    lines = [render_header(service) + newline]
    leftovers = []
    for key, comments in anchored.items():
        if key not in [k for k, dummy in body]:
            leftovers.extend(comments)
    lines.extend(leftovers)
    for key, text in body:
        lines.extend(anchored.pop(key, []))
        lines.append(text)
    lines.extend(loose)
    return lines


def _newline_of(text):
    return '\r\n' if '\r\n' in text else '\n'


def _commented_block_end(blocks, name, stype):
    """Index after a commented-out entry for name/type (Debian ships several), or None."""
    header = re.compile(r'^#\s*%s\s+%s(\s|$)' % (re.escape(name), re.escape(stype)), re.ASCII)
    for index, block in enumerate(blocks):
        if block.is_entry or not header.match(block.text):
            continue
        end = index + 1
        # Its commented continuation lines: "#" followed by at least two blanks.
        while end < len(blocks) and not blocks[end].is_entry and re.match(r'^#(\t|\s\s)\s*\S', blocks[end].text, re.ASCII):
            end += 1
        return end
    return None


def edit(text, name, stype, wanted=None):
    """Apply a wanted service (or its removal, ``wanted=None``) to master.cf ``text``.

    Returns ``(new_text, before, after)`` where before/after are service dicts or None.
    A present entry that is already the same for Postfix is left byte-identical.
    """
    blocks = parse(text)
    matches = [i for i, b in enumerate(blocks) if b.key() == (name, stype)]
    before = blocks[matches[0]].service if matches else None
    newline = _newline_of(text)

    if wanted is None:
        for index in reversed(matches):
            del blocks[index]
        return render(blocks), before, None

    if matches:
        first = matches[0]
        for index in reversed(matches[1:]):
            del blocks[index]
        if not same_service(before, wanted):
            old = blocks[first]
            blocks[first] = Block(render_entry(wanted, old.lines, newline), service=wanted, is_entry=True)
        return render(blocks), before, wanted

    position = _commented_block_end(blocks, name, stype)
    if position is None:
        position = len(blocks)
    if position > 0 and not blocks[position - 1].lines[-1].endswith('\n'):
        blocks[position - 1].lines[-1] += newline
    blocks.insert(position, Block(render_entry(wanted, None, newline), service=wanted, is_entry=True))
    return render(blocks), None, wanted


# Postfix 3.9 and later announce parameters whose support will end ('support for parameter
# "smtpd_tls_eecdh_grade" will be removed; instead, ...'): the value is still read as written, so the
# notice is passed on as a warning but never taken for a misread value.
_DEPRECATED_RE = re.compile(r'support for parameter "?[^"\s]+"? will be removed', re.ASCII)


def new_warnings(before, after):
    """Warnings in ``after`` that were not already in ``before`` (line numbers ignored), deprecation
    notices left out."""
    seen = set(_LINE_NUMBER_RE.sub('', w) for w in before)
    return [w for w in after if _LINE_NUMBER_RE.sub('', w) not in seen and not _DEPRECATED_RE.search(w)]


# ---------------------------------------------------------------------------
# The module


def service_in(text, name, stype, printed=True):
    """The first entry name/type in ``postconf -M`` output (``printed=False``: master.cf text), or None."""
    for block in parse(text, printed):
        if block.key() == (name, stype):
            return block.service
    return None


def _staged(tx, config_dir, what):
    """``(warnings, services)`` of the staged files; a fatal postconf error fails the task."""
    try:
        return tx.read_staged()
    except PostfixError as exc:
        raise PostfixError('%s, nothing was changed: %s' % (what, exc.msg.replace(tx.scratch, config_dir)),
                           **exc.details)


def apply(runner, config_dir, params, check_mode=False, want_diff=False, backup_func=None, mover=None, check=True):
    """Bring the entry ``params['name']``/``params['type']`` to ``params['state']``; see the module docs.

    The new master.cf is staged in a scratch copy, where ``postconf -M`` must read the entry back
    exactly as asked (and print no new warning) before anything is installed.
    """
    name, stype = params['name'], params['type']
    key = '%s/%s' % (name, stype)
    wanted = normalize_service(params) if params['state'] == 'present' else None
    result = dict(changed=False)
    with ConfigTransaction(runner, config_dir, mover=mover) as tx:
        old_text = tx.before['master.cf']
        new_text, before, after = edit(old_text, name, stype, wanted)
        result.update(before=public(before), service=public(after))
        if new_text != old_text:
            warnings_before, dummy = _staged(tx, config_dir, 'Postfix rejects the current configuration')
            atomic_write(tx.path('master.cf'), new_text)
            warnings_after, services = _staged(tx, config_dir, 'Postfix rejects the new master.cf entry %s' % key)
            added = new_warnings(warnings_before, warnings_after)
            if added:
                raise PostfixError('Postfix warns about the new master.cf entry %s, nothing was changed: %s'
                                   % (key, '; '.join(added)), warnings=added)
            got = service_in(services, name, stype)
            if wanted is None:
                problems = [] if got is None else ['the entry is still there']
            elif same_service(before, wanted):
                problems = [] if same_service(wanted, got) else differences(wanted, got)
            else:
                problems = differences(wanted, got)
            if problems:
                raise PostfixError('postconf -M reads the new master.cf entry %s differently from what was asked: %s. '
                                   'Nothing was changed.' % (key, '; '.join(problems)))
            result['changed'] = True
        if want_diff:
            result['diff'] = tx.diff('master.cf')
        if result['changed'] and not check_mode:
            if backup_func is not None:
                result['backup_file'] = tx.backup('master.cf', backup_func)
            tx.commit(check=check)
    return result
