# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Set and remove main.cf parameters and master.cf ``-o`` overrides (private to this collection).

Pure helpers (:func:`render_value`, :func:`split_list`, the parsers) plus :func:`apply`, which
drives ``postconf`` through a :class:`~.common.Runner` and a :class:`~.common.ConfigTransaction`.
The number of Postfix commands run is constant, whatever the number of parameters:

* main.cf: ``postconf -n`` (current values and "unused parameter" warnings), one ``postconf -e``
  with every changed pair, one ``postconf -X`` with every removed name;
* master.cf: ``postconf -M`` (does the service exist?) and ``postconf -P`` (current overrides),
  one ``postconf -P -e``, one ``postconf -P -X``;
* then, when something changed, one warnings check on the staged copy (``postconf -n``/``-M``),
  ``postconf -d`` only to suggest a name for an unknown parameter, and ``postfix check`` after
  installing the files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    PARAM_NAME_RE,
    POSTFIX_SPACE,
    ConfigTransaction,
    PostfixError,
    bad_char,
    describe_char,
    split_lines,
)
from ansible_collections.estafeta.postfix.plugins.module_utils import master_cf

# A leading "-" would reach postconf as an option.
NAME_RE = PARAM_NAME_RE
SERVICE_TYPES = ('inet', 'unix', 'unix-dgram', 'fifo', 'pass')
# Postfix separates list elements with commas and/or whitespace (CHARS_COMMA_SP).
LIST_SEPARATORS = ', \t\r\n'
# postconf gets "name=value" as one command-line argument, and Linux limits one argument to 128 kB
# (MAX_ARG_STRLEN); a longer value would fail with "Argument list too long".
MAX_VALUE_BYTES = 100000
# "postconf: warning: /etc/postfix/main.cf: unused parameter: name=value"
_UNUSED_RE = re.compile(r'warning: (?:.*/)?(?P<file>main|master)\.cf: unused parameter: (?P<name>[^=\s]+)=(?P<value>.*)$',
                        re.ASCII | re.DOTALL)
_NAMEVAL_RE = re.compile(r'^(?P<name>[^=\s]+)\s*=\s*(?P<value>.*)$', re.ASCII | re.DOTALL)


def _render_scalar(value):
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip(POSTFIX_SPACE)
    if isinstance(value, bytes):
        return value.decode('utf-8', 'surrogateescape').strip(POSTFIX_SPACE)
    raise TypeError('a value must be a string, a number, a boolean or a list of those, got %s'
                    % type(value).__name__)


def render_value(value, separator=', '):
    """Render a value the way ``postconf -e`` stores it.

    Booleans become ``yes``/``no``, numbers their decimal text, strings lose surrounding
    whitespace (Postfix strips its ASCII whitespace too), lists are joined with ``separator`` (empty items are
    dropped; an empty list gives an empty string). Raises TypeError for other types.
    """
    if value is None:
        raise TypeError('a value is required (got null); use an empty string for an empty value')
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, (list, tuple, dict)) or item is None:
                raise TypeError('list items must be strings, numbers or booleans, got %s'
                                % ('null' if item is None else type(item).__name__))
            text = _render_scalar(item)
            if text:
                items.append(text)
        return separator.join(items)
    return _render_scalar(value)


def split_list(value):
    """Split a Postfix list value on commas and whitespace, as Postfix does.

    Text inside ``{ }`` stays together (``inline:{ a=b, c=d }``, ``{ name = value }``).
    A list given as a Python list is flattened the same way.
    """
    if isinstance(value, (list, tuple)):
        result = []
        for item in value:
            result.extend(split_list(render_value(item)))
        return result
    text = render_value(value)
    tokens = []
    current = []
    depth = 0
    for char in text:
        if char == '{':
            depth += 1
        elif char == '}' and depth > 0:
            depth -= 1
        if depth == 0 and char in LIST_SEPARATORS:
            if current:
                tokens.append(''.join(current))
                current = []
            continue
        current.append(char)
    if current:
        tokens.append(''.join(current))
    return tokens


def check_name(name, what='parameter name'):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PostfixError('Invalid Postfix %s %r: only letters, digits, "_", "." and "-" '
                           '(not first) are allowed.'
                           % (what, name))


def check_value(name, text):
    size = len(text.encode('utf-8', 'surrogateescape'))
    if size > MAX_VALUE_BYTES:
        raise PostfixError('The value of %r is %d bytes long; postconf takes at most %d bytes for one value (on its '
                           'command line). Put a long list into a lookup table and refer to the table instead. '
                           'Nothing was changed.' % (name, size, MAX_VALUE_BYTES))
    char = bad_char(text)
    if char is not None:
        raise PostfixError('The value of %r contains %s: a Postfix parameter value is one line of text, and Postfix '
                           'would not read it back as given. Nothing was changed.' % (name, describe_char(char)))


def parse_service(service):
    """``'submission/inet'`` -> ``('submission', 'inet')``; PostfixError when malformed."""
    if not isinstance(service, str) or '/' not in service:
        raise PostfixError('service must be "SERVICE/TYPE", for example "submission/inet"; got %r.' % (service,))
    name, stype = service.rsplit('/', 1)
    if stype not in SERVICE_TYPES:
        raise PostfixError('service %r: the type must be one of %s; got %r.' % (service, ', '.join(SERVICE_TYPES), stype))
    if not name or name.startswith('-') or not re.match(r'\A[!"$-<>-z|~]+\Z', name):
        raise PostfixError('service %r: the service name must be non-empty printable ASCII, without whitespace, "=", '
                           '"#" or braces, and must not start with "-".' % (service,))
    return name, stype


def render_service_value(name, value):
    """Render a master.cf ``-o`` override value: ``postconf -P`` refuses whitespace there.

    List items are joined with commas; whitespace inside an item (``check_sender_access
    hash:/etc/postfix/access``) becomes a comma too, which Postfix lists treat the same way.
    Braces must come in pairs: master.cf cannot quote an unbalanced one (see
    :func:`.master_cf.check_master_text`).
    """
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            text = render_value([item])
            if text:
                if '{' not in text:
                    text = re.sub(r'[ \t\r\n,]+', ',', text)
                items.append(text)
        text = ','.join(items)
    else:
        text = render_value(value)
    check_value(name, text)
    if any(ch in master_cf.BLANKS for ch in text):
        raise PostfixError(
            'The master.cf override %r=%r contains whitespace, which "postconf -P" cannot write. Give a '
            'list (its items are joined with commas), write commas instead of spaces, or set a main.cf '
            'parameter and refer to it as $name in the override. Nothing was changed.' % (name, text))
    master_cf.check_master_text('The master.cf override %s: the value' % name, text)
    return text


def parse_postconf_output(text):
    """``name = value`` lines (``postconf -n``/``-d``/``-P``) -> dict; later lines win."""
    result = {}
    for line in split_lines(text):
        match = _NAMEVAL_RE.match(line)
        if match:
            result[match.group('name')] = match.group('value').strip(POSTFIX_SPACE)
    return result


def parse_unused(stderr, which):
    """Names (and values) that Postfix reports as "unused parameter" in main.cf or master.cf."""
    result = {}
    for line in split_lines(stderr):
        match = _UNUSED_RE.search(line)
        if match and match.group('file') == which:
            result[match.group('name')] = match.group('value').strip(POSTFIX_SPACE)
    return result


def parse_main_cf(text):
    """Parse main.cf text like Postfix: comments, blank lines, continuation lines; last entry wins."""
    entries = []
    for line in split_lines(text):
        stripped = line.strip(POSTFIX_SPACE)
        if not stripped or stripped.startswith('#'):
            continue
        if line[0] in POSTFIX_SPACE:
            if entries:
                entries[-1] = entries[-1] + ' ' + stripped
            continue
        entries.append(stripped)
    result = {}
    for entry in entries:
        match = _NAMEVAL_RE.match(entry)
        if match:
            result[match.group('name')] = match.group('value').strip(POSTFIX_SPACE)
    return result


def parse_services(text):
    """``postconf -M`` output -> set of ``(service, type)``."""
    services = set()
    for line in split_lines(text):
        fields = line.split()
        if len(fields) >= 2 and line[0] not in POSTFIX_SPACE and not fields[0].startswith('#'):
            services.add((fields[0], fields[1]))
    return services


def unknown_message(unknown, known_names):
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known_names, n=1)
        if close:
            parts.append("Unknown Postfix parameter '%s'. Did you mean '%s'?" % (name, close[0]))
        else:
            parts.append("Unknown Postfix parameter '%s'." % name)
    parts.append('Nothing was changed. Set allow_unknown=true for a name that Postfix only learns '
                 'later (for example a parameter referred to by a service defined afterwards).')
    return ' '.join(parts)


def prepare(params, state='present', service=None):
    """Validate everything before a file is touched; return ``{name: rendered value or None}``."""
    if not params:
        raise PostfixError('No parameter given: set name (and value) or params.')
    wanted = {}
    for name, value in params.items():
        check_name(name)
        if state == 'absent':
            wanted[name] = None
            continue
        if value is None:
            raise PostfixError('No value given for %r with state=present. Give a value (an empty string '
                               'for an empty value) or use state=absent to remove it.' % name)
        try:
            if service:
                text = render_service_value(name, value)
            else:
                text = render_value(value)
        except TypeError as exc:
            raise PostfixError('Invalid value for %r: %s.' % (name, exc))
        check_value(name, text)
        wanted[name] = text
    return wanted


def read_main(runner, tx):
    """``(values, unused_names)`` of the staged main.cf: ``postconf -n`` plus the names Postfix calls unused."""
    dummy, out, err = runner.run(['postconf', '-c', tx.scratch, '-n'], what='postconf -n')
    current = parse_postconf_output(out)
    unused = parse_unused(err, 'main')
    if unused:
        # postconf -n omits unknown names, and its warnings mangle non-ASCII text: read them from the file.
        raw = parse_main_cf(tx.before['main.cf'])
        for name, value in unused.items():
            current.setdefault(name, raw.get(name, value))
    return current, set(unused)


def _read_service(runner, tx, service):
    svc, stype = parse_service(service)
    dummy, out, dummy2 = runner.run(['postconf', '-c', tx.scratch, '-M'], what='postconf -M')
    if (svc, stype) not in parse_services(out):
        raise PostfixError(
            'Service %s is not defined in %s/master.cf, so it cannot take -o overrides. Define it first '
            '(estafeta.postfix.master_service). Nothing was changed.' % (service, tx.config_dir))
    entry = master_cf.service_in(out, svc, stype)
    dummy, out, err = runner.run(['postconf', '-c', tx.scratch, '-P'], what='postconf -P')
    prefix = '%s/%s/' % (svc, stype)
    current = {}
    for key, value in parse_postconf_output(out).items():
        if key.startswith(prefix) and '/' not in key[len(prefix):]:
            current[key[len(prefix):]] = value
    return current, set(parse_unused(err, 'master')), entry


def _check_service_edit(runner, tx, service, entry, to_set, to_remove):
    """The edited service, as ``postconf -M`` reads the staged master.cf, must be the old entry with exactly
    the asked overrides set or removed, and every other field, override and argument unchanged."""
    svc, stype = parse_service(service)
    tx.settle()
    dummy, out, dummy2 = runner.run(['postconf', '-c', tx.scratch, '-M'], what='postconf -M')
    got = master_cf.service_in(out, svc, stype)
    expected = dict(entry)
    expected['options'] = dict(entry['options'])
    for name, value in to_set:
        expected['options'][name] = value
    for name in to_remove:
        expected['options'].pop(name, None)
    problems = master_cf.differences(expected, got)
    if problems:
        raise PostfixError('After "postconf -P", Postfix reads the service %s differently from what was asked: %s. '
                           'Nothing was changed.' % (service, '; '.join(problems)))


def sort_appended(path, new_names):
    """Put the parameters ``postconf -e`` appended to main.cf in the order of ``new_names``.

    ``postconf -e`` appends parameters that were not set yet at the end of main.cf, one line each,
    in the order of its internal hash table, which differs from run to run: the same run on two
    hosts would give two main.cf files with the same settings in a different order. Only when the
    last lines of the file are exactly one ``name = value`` line for each new name are they put in
    order; anything else is left as postconf wrote it.
    """
    if len(new_names) < 2:
        return
    with open(path, 'rb') as f:
        text = f.read().decode('utf-8', 'surrogateescape')
    lines = text.split('\n')
    trailing = lines[-1] == ''
    body = lines[:-1] if trailing else lines
    tail = body[-len(new_names):]
    by_name = {}
    for line in tail:
        name = line.partition('=')[0].strip()
        if not line.startswith(name + ' =') or name in by_name:
            return
        by_name[name] = line
    if sorted(by_name) != sorted(new_names):
        return
    body = body[:-len(new_names)] + [by_name[name] for name in new_names]
    with open(path, 'wb') as f:
        f.write(('\n'.join(body) + ('\n' if trailing else '')).encode('utf-8', 'surrogateescape'))


def apply(runner, config_dir, params, state='present', service=None, allow_unknown=False,
          check_mode=False, check=True, backup_func=None, mover=None, want_diff=False):
    """Bring ``params`` to ``state`` in main.cf (or in master.cf overrides of ``service``).

    Returns a result dict: ``changed``, ``changes`` (list of ``{name, before, after}``),
    ``diff`` when ``want_diff``, ``backup_file`` when ``backup_func`` was used.
    Raises PostfixError (nothing written) for bad input, unknown names and failed commands;
    when ``postfix check`` fails after installing, the previous files are restored first.
    """
    if service is not None:
        parse_service(service)
    wanted = prepare(params, state=state, service=service)
    filename = 'master.cf' if service else 'main.cf'
    result = {'changed': False, 'changes': []}
    with ConfigTransaction(runner, config_dir, mover=mover) as tx:
        if service:
            current, unused, entry = _read_service(runner, tx, service)
        else:
            current, unused = read_main(runner, tx)

        changes = []
        to_set = []
        to_remove = []
        for name in sorted(wanted):
            after = wanted[name]
            before = current.get(name)
            if after is None:
                if name in current:
                    to_remove.append(name)
                    changes.append({'name': name, 'before': before, 'after': None})
            elif before != after:
                to_set.append((name, after))
                changes.append({'name': name, 'before': before, 'after': after})

        # A value with braces may make Postfix read it otherwise than written ("{a}.b": Postfix takes a
        # list element that starts with "{" as { text }); postconf says so in a warning.
        braces = [n for n, v in to_set if '{' in v or '}' in v]
        warnings_before = tx.postconf_warnings() if braces else []
        prefix = '%s/' % service if service else ''
        base = ['postconf', '-c', tx.scratch] + (['-P'] if service else [])
        if to_set:
            runner.run(base + ['-e'] + ['%s%s=%s' % (prefix, n, v) for n, v in to_set],
                       what='postconf %s-e' % ('-P ' if service else ''))
            if not service:
                sort_appended(tx.path('main.cf'), [n for n, v in to_set if n not in current])
        if to_remove:
            runner.run(base + ['-X'] + [prefix + n for n in to_remove],
                       what='postconf %s-X' % ('-P ' if service else ''))
        if service and (to_set or to_remove):
            _check_service_edit(runner, tx, service, entry, to_set, to_remove)
        if braces:
            added = master_cf.new_warnings(warnings_before, tx.postconf_warnings())
            added = [w for w in added if not _UNUSED_RE.search(w)]
            if added:
                raise PostfixError('Postfix warns about the new value of %s, so it would not read it as written: %s. '
                                   'Nothing was changed.' % (', '.join(braces), '; '.join(added)), warnings=added)

        present = [n for n in sorted(wanted) if wanted[n] is not None]
        if present and not allow_unknown:
            if to_set or to_remove:
                unused = set(parse_unused('\n'.join(tx.postconf_warnings()), 'master' if service else 'main'))
            unknown = [n for n in present if n in unused]
            if unknown:
                dummy, out, dummy2 = runner.run(['postconf', '-c', tx.scratch, '-d'], what='postconf -d')
                raise PostfixError(unknown_message(unknown, sorted(parse_postconf_output(out))),
                                   unknown=unknown)

        if filename not in tx.changed_files():
            # Same text after all (for example an equivalent value already in place).
            changes = []
        result['changes'] = changes
        result['changed'] = bool(changes)
        if want_diff:
            result['diff'] = tx.diff(filename)
        if changes and not check_mode:
            if backup_func is not None:
                backup_file = tx.backup(filename, backup_func)
                if backup_file:
                    result['backup_file'] = backup_file
            tx.commit(check=check)
    return result
