# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Converged-state records: the proof behind the roles' fast re-runs (private to this collection).

A role that ran in full queues its record: its **spec**, a list of ``"KIND ARGUMENT"`` items that
name everything it manages, and the digest of its input. The collection's handler chain writes the
queued records after ``postfix check`` and the reload succeeded (:func:`record`), each item of the
spec fingerprinted whole from the host as it is then. At the start of a later play the roles read
the records (:func:`read`): a record whose every fingerprint still matches the host says "this host
is exactly what the role left after a successful run with that input", and the role may end early
when its input digest is the same.

Kinds of spec items (each gives lines of text; their SHA-256 is the item's fingerprint):

``param NAME``
    the main.cf value as ``postconf -n`` shows it, or "unset";
``list NAME OWNER``
    a restriction list shared through the ``restrictions`` module: the items OWNER contributed
    (the ownership record) and whether the whole value in main.cf is exactly the composition
    of every owner's items. Other owners' legitimate changes keep it; any hand edit of the
    list (an item added, removed or moved) breaks it;
``service NAME/TYPE``
    the whole master.cf entry (``postconf -M``) and every ``-o`` override of it (``postconf -P``);
``table PATH TYPE`` / ``alias PATH TYPE``
    the source file (content, mode, owner) and what its database answers (``postmap -s`` /
    ``postalias -s``, sorted) with the database file's mode and owner;
``file PATH``
    content digest, mode, owner and group of a file, or of a directory, or "missing";
``cert PATH DAYS``
    whether the certificate in PATH is still valid DAYS days from now (``openssl x509 -checkend``),
    so that a certificate entering its renewal window makes its role run in full;
``package NAME``
    the installed Debian package version, or "missing";
``unit NAME``
    the systemd unit's ActiveState and UnitFileState (running, enabled, masked);
``master``
    whether the Postfix master process runs (``postfix status``; Debian's ``postfix.service``
    is a oneshot that stays "active" when the master is gone);
``user NAME``
    the user's groups.

Every record also fingerprints the Debian release, so an upgrade of the distribution makes
every role run in full once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import stat
import time

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    PostfixError,
    atomic_write,
    read_text,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.postconf import parse_postconf_output
from ansible_collections.estafeta.postfix.plugins.module_utils.restrictions import (
    composed,
    load_state,
    parse_items,
)

DEFAULT_STATE_DIR = '/var/lib/estafeta-postfix'
RECORDS = 'records'
RECORD_VERSION = 2
ROLE_RE = re.compile(r'\A[a-z][a-z0-9_]*\Z')
DIGEST_RE = re.compile(r'\A[0-9a-f]{64}\Z')
TABLE_TYPES = ('hash', 'btree', 'lmdb', 'cdb', 'dbm', 'regexp', 'pcre', 'cidr', 'texthash', 'inline', 'static')
INDEXED = ('hash', 'btree', 'lmdb', 'cdb', 'dbm')
DB_SUFFIXES = {'hash': ('.db',), 'btree': ('.db',), 'lmdb': ('.lmdb',), 'cdb': ('.cdb',), 'dbm': ('.dir', '.pag')}
# KIND -> number of words in its argument (None: any)
KINDS = {'param': 1, 'list': 2, 'service': 1, 'table': 2, 'alias': 2, 'file': 1, 'cert': 2, 'package': 1,
         'unit': 1, 'master': 0, 'user': 1}
# Implicit in every record: an upgrade of the distribution is a reason to run in full.
IMPLICIT = ['file /etc/debian_version']


def check_spec(spec):
    """Validate a spec (list of "KIND ARGUMENT" strings); return it de-duplicated, in order."""
    if not isinstance(spec, list):
        raise PostfixError('spec must be a list of "KIND ARGUMENT" strings; got %s.' % type(spec).__name__)
    seen = []
    for item in spec:
        if not isinstance(item, str) or item != item.strip() or '\n' in item or '\x00' in item:
            raise PostfixError('spec item %r is not a one-line "KIND ARGUMENT" string.' % (item,))
        words = item.split()
        kind = words[0] if words else ''
        if kind not in KINDS:
            raise PostfixError('spec item %r: unknown kind %r (known: %s).' % (item, kind, ', '.join(sorted(KINDS))))
        if len(words) - 1 != KINDS[kind]:
            raise PostfixError('spec item %r: %s takes %d word(s) after the kind.' % (item, kind, KINDS[kind]))
        if kind in ('file', 'table', 'alias', 'cert') and not os.path.isabs(words[1]):
            raise PostfixError('spec item %r: the path must be absolute.' % (item,))
        if kind in ('table', 'alias') and words[2] not in TABLE_TYPES:
            raise PostfixError('spec item %r: unknown table type %r.' % (item, words[2]))
        if kind == 'cert' and not words[2].isdigit():
            raise PostfixError('spec item %r: the renewal margin must be a number of days.' % (item,))
        if item not in seen:
            seen.append(item)
    return seen


class HostView(object):
    """The host as the spec kinds see it; every command runs at most once per view."""

    def __init__(self, runner, config_dir='/etc/postfix'):
        self.runner = runner
        self.config_dir = config_dir
        self._cache = {}

    def _once(self, key, func):
        if key not in self._cache:
            self._cache[key] = func()
        return self._cache[key]

    def _out(self, args):
        """stdout of a command, or None when it fails or is missing (the item then reads "unknown")."""
        try:
            rc, out, err = self.runner.run(args, check=False)
        except PostfixError:
            return None
        return out if rc == 0 else None

    # -- main.cf, master.cf, restriction lists ------------------------------------------------

    def main(self):
        return self._once('main', lambda: parse_postconf_output(
            self._out(['postconf', '-c', self.config_dir, '-n']) or ''))

    def services(self):
        def read():
            entries = {}
            for line in (self._out(['postconf', '-c', self.config_dir, '-M']) or '').split('\n'):
                fields = line.split()
                if len(fields) >= 2:
                    entries['%s/%s' % (fields[0], fields[1])] = ' '.join(fields)
            return entries
        return self._once('services', read)

    def overrides(self):
        return self._once('overrides', lambda: sorted(
            line.strip() for line in (self._out(['postconf', '-c', self.config_dir, '-P']) or '').split('\n')
            if line.strip()))

    def ownership(self):
        def read():
            try:
                return load_state(self.config_dir)
            except PostfixError as exc:
                return {'__invalid__': str(exc)}
        return self._once('ownership', read)

    # -- packages, units, users, master -------------------------------------------------------

    def packages(self, names):
        key = ('packages', tuple(names))
        if key not in self._cache:
            # dpkg-query exits 1 when one name is unknown, and still prints the others.
            try:
                rc, out, err = self.runner.run(
                    ['dpkg-query', '-W', '-f', '${db:Status-Abbrev}\t${Package}\t${Version}\n'] + list(names), check=False)
            except PostfixError:
                out = ''
            found = {}
            for line in out.split('\n'):
                fields = line.split('\t')
                if len(fields) == 3 and fields[0].startswith('ii'):
                    found[fields[1]] = fields[2]
            self._cache[key] = found
        return self._cache[key]

    def units(self, names):
        key = ('units', tuple(names))
        if key not in self._cache:
            out = self._out(['systemctl', 'show', '--property=Id,ActiveState,UnitFileState'] + list(names)) or ''
            found = {}
            for block, name in zip(out.split('\n\n'), names):
                props = dict(line.split('=', 1) for line in block.split('\n') if '=' in line)
                found[name] = 'active=%s enabled=%s' % (props.get('ActiveState', '?'), props.get('UnitFileState', '?'))
            self._cache[key] = found
        return self._cache[key]

    def master(self):
        def read():
            try:
                rc, out, err = self.runner.run(['postfix', '-c', self.config_dir, 'status'], check=False)
            except PostfixError:
                return 'unknown'
            return 'running' if rc == 0 else 'stopped'
        return self._once('master', read)

    def cert(self, path, days):
        if not os.path.exists(path):
            return 'missing'
        try:
            rc, out, err = self.runner.run(['openssl', 'x509', '-noout', '-checkend', str(days * 86400), '-in', path],
                                           check=False)
        except PostfixError:
            return 'unknown'
        return 'valid beyond the margin' if rc == 0 else 'expiring or unreadable'

    # -- the lines of one item ------------------------------------------------------------------

    @staticmethod
    def file_line(path):
        try:
            st = os.lstat(path)
        except OSError:
            return 'file %s missing' % path
        owner = '%o %d %d' % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        if stat.S_ISLNK(st.st_mode):
            return 'file %s link %s %s' % (path, os.readlink(path), owner)
        if stat.S_ISDIR(st.st_mode):
            return 'file %s directory %s' % (path, owner)
        digest = hashlib.sha256()
        try:
            with open(path, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''):
                    digest.update(chunk)
        except (IOError, OSError) as exc:
            return 'file %s unreadable %s' % (path, exc.__class__.__name__)
        return 'file %s %s %s' % (path, digest.hexdigest(), owner)

    def table_lines(self, path, table_type, alias):
        lines = [self.file_line(path)]
        if table_type in INDEXED:
            for suffix in DB_SUFFIXES[table_type]:
                db = self.file_line(path + suffix)
                # The database's bytes change with every rebuild; its mode and owner and what it answers count.
                lines.append(re.sub(r' [0-9a-f]{64} ', ' ', db))
            if not any(os.path.exists(path + suffix) for suffix in DB_SUFFIXES[table_type]):
                # postmap waits about a second before it gives up on a missing database.
                lines.append('database %s missing' % path)
                return lines
            out = self._out(['postalias' if alias else 'postmap', '-c', self.config_dir, '-s', '%s:%s' % (table_type, path)])
            if out is None:
                lines.append('database %s unreadable' % path)
            else:
                # postalias stamps the build time into the database (YP_LAST_MODIFIED): not content.
                content = '\n'.join(sorted(line for line in out.split('\n') if not line.startswith('YP_LAST_MODIFIED')))
                lines.append('database %s %s' % (path, hashlib.sha256(content.encode('utf-8', 'surrogateescape')).hexdigest()))
        return lines

    def list_lines(self, name, owner):
        ownership = self.ownership()
        if '__invalid__' in ownership:
            return ['list %s ownership record invalid' % name]
        owned = ownership.get(name, {}).get(owner, [])
        value = self.main().get(name)
        try:
            consistent = value is not None and parse_items(value) == composed(ownership, name)
        except PostfixError:
            consistent = False
        return ['list %s %s owns %s' % (name, owner, json.dumps(owned)),
                'list %s %s' % (name, 'composed' if consistent else 'differs: %s' % (value if value is not None else '(unset)'))]

    def lines(self, item, all_packages=(), all_units=()):
        words = item.split()
        kind, args = words[0], words[1:]
        if kind == 'param':
            value = self.main().get(args[0])
            return ['param %s %s' % (args[0], 'unset' if value is None else '= ' + value)]
        if kind == 'list':
            return self.list_lines(args[0], args[1])
        if kind == 'service':
            entry = self.services().get(args[0])
            prefix = args[0] + '/'
            return (['service %s %s' % (args[0], entry if entry is not None else 'missing')]
                    + ['override ' + line for line in self.overrides() if line.startswith(prefix)])
        if kind in ('table', 'alias'):
            return self.table_lines(args[0], args[1], kind == 'alias')
        if kind == 'file':
            return [self.file_line(args[0])]
        if kind == 'cert':
            return ['cert %s %s' % (args[0], self.cert(args[0], int(args[1])))]
        if kind == 'package':
            version = self.packages(tuple(all_packages) or (args[0],)).get(args[0])
            return ['package %s %s' % (args[0], version or 'missing')]
        if kind == 'unit':
            return ['unit %s %s' % (args[0], self.units(tuple(all_units) or (args[0],)).get(args[0], '?'))]
        if kind == 'master':
            return ['master %s' % self.master()]
        if kind == 'user':
            return ['user %s %s' % (args[0], user_groups(args[0]))]
        raise PostfixError('unknown kind %r' % kind)


def user_groups(name):
    import grp
    import pwd
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return 'missing'
    groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem or g.gr_gid == pw.pw_gid)
    return ','.join(groups)


def fingerprints(view, spec):
    """``{item: sha256 of its lines}`` for every item of ``spec`` plus the implicit ones."""
    items = list(spec) + [i for i in IMPLICIT if i not in spec]
    packages = sorted(set(i.split()[1] for i in items if i.startswith('package ')))
    units = sorted(set(i.split()[1] for i in items if i.startswith('unit ')))
    result = {}
    for item in items:
        text = '\n'.join(view.lines(item, packages, units))
        result[item] = hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()
    return result


# -- the records ---------------------------------------------------------------------------------

def records_dir(state_dir):
    return os.path.join(state_dir, RECORDS)


def record_path(state_dir, role):
    return os.path.join(records_dir(state_dir), role + '.json')


def load_records(state_dir):
    """``{role: record dict}``; unreadable or malformed records count as absent."""
    found = {}
    directory = records_dir(state_dir)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return found
    for name in names:
        role = name[:-len('.json')] if name.endswith('.json') else ''
        if not ROLE_RE.match(role):
            continue
        try:
            record = json.loads(read_text(os.path.join(directory, name)))
            if (record.get('version') != RECORD_VERSION or record.get('role') != role
                    or not isinstance(record.get('items'), dict) or not isinstance(record.get('config_dir'), str)
                    or not DIGEST_RE.match(str(record.get('input')))):
                continue
        except (PostfixError, ValueError, AttributeError):
            continue
        found[role] = record
    return found


def dump_record(record):
    return json.dumps(record, indent=1, sort_keys=True) + '\n'


def write_record(state_dir, record):
    directory = records_dir(state_dir)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    os.chmod(state_dir, 0o700)
    os.chmod(directory, 0o700)
    atomic_write(record_path(state_dir, record['role']), dump_record(record), mode=0o600)


def drifted_items(runner, record, views):
    """The items of ``record`` whose fingerprint differs from the host now."""
    config_dir = record['config_dir']
    if config_dir not in views:
        views[config_dir] = HostView(runner, config_dir)
    now = fingerprints(views[config_dir], [i for i in record['items'] if i not in IMPLICIT])
    return sorted(item for item in set(now) | set(record['items']) if now.get(item) != record['items'].get(item))


def read(runner, state_dir):
    """What the roles need at the start of a play (see the module's RETURN)."""
    views = {}
    result = {'records': {}, 'drifted': {}, 'inputs': {}}
    for role, record in load_records(state_dir).items():
        result['inputs'][role] = record['input']
        drifted = drifted_items(runner, record, views)
        if drifted:
            result['drifted'][role] = drifted
        else:
            result['records'][role] = record['input']
    return result


def check_entry(entry):
    """Validate one queued record ``{role, input, spec, config_dir}``; return it normalized."""
    if not isinstance(entry, dict):
        raise PostfixError('each record must be a mapping with role, input and spec; got %r.' % (entry,))
    role, digest = entry.get('role'), entry.get('input')
    if not isinstance(role, str) or not ROLE_RE.match(role):
        raise PostfixError('role must be a role name such as "base" (lower case, digits, "_"); got %r.' % (role,))
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise PostfixError('%s: input must be a SHA-256 digest (64 lower-case hexadecimal digits), as the '
                           'estafeta.postfix.role_input filter gives it.' % role)
    config_dir = entry.get('config_dir') or '/etc/postfix'
    if not isinstance(config_dir, str) or not os.path.isabs(config_dir):
        raise PostfixError('%s: config_dir must be an absolute path; got %r.' % (role, config_dir))
    return {'role': role, 'input': digest, 'spec': check_spec(entry.get('spec')), 'config_dir': config_dir}


def shared_items(entries):
    """Warnings for items two roles both manage (other than restriction lists, which compose)."""
    owners = {}
    for entry in entries:
        for item in entry['spec']:
            if not item.startswith(('list ', 'package ', 'unit ', 'master')):
                owners.setdefault(item, []).append(entry['role'])
    return ['%s is managed by %s: the last of them to run decides its value, and the others\' records '
            'take it as theirs. Let one role manage it.' % (item, ' and '.join(roles))
            for item, roles in sorted(owners.items()) if len(roles) > 1]


def record(runner, state_dir, entries, check_mode=False):
    """Write the records of ``entries`` (the roles that ran in full), fingerprinted from the host now."""
    entries = [check_entry(e) for e in entries]
    roles = [e['role'] for e in entries]
    if len(roles) != len(set(roles)):
        raise PostfixError('each role may have one record; got %s.' % ', '.join(roles))
    old = load_records(state_dir)
    views = {}
    written, diff_before, diff_after = [], [], []
    for entry in entries:
        if entry['config_dir'] not in views:
            views[entry['config_dir']] = HostView(runner, entry['config_dir'])
        new = {'version': RECORD_VERSION, 'role': entry['role'], 'input': entry['input'],
               'config_dir': entry['config_dir'], 'items': fingerprints(views[entry['config_dir']], entry['spec'])}
        before = old.get(entry['role'])
        if before is not None and dict((k, before.get(k)) for k in new) == new:
            continue
        written.append(entry['role'])
        diff_before.append(dump_record(before) if before else '')
        diff_after.append(dump_record(new))
        if not check_mode:
            write_record(state_dir, dict(new, written=time.time()))
    return {'changed': bool(written), 'recorded': written, 'warnings': shared_items(entries),
            'diff': {'before': ''.join(diff_before), 'after': ''.join(diff_after),
                     'before_header': records_dir(state_dir) + ' (before)',
                     'after_header': records_dir(state_dir) + ' (after)'}}


def forget(state_dir, roles, check_mode=False):
    """Remove the records of ``roles`` (all when empty): those roles run in full next time."""
    existing = load_records(state_dir)
    gone = sorted(r for r in existing if not roles or r in roles)
    if not check_mode:
        for role in gone:
            os.unlink(record_path(state_dir, role))
    return {'changed': bool(gone), 'forgotten': gone}
