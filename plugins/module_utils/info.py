# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Facts about a Postfix instance, read without changing anything (private to this collection).

:func:`gather` collects the subsets the ``postfix_info`` module offers:

* ``version``: ``mail_version`` of the installed binaries;
* ``parameters``: the non-default ``main.cf`` parameters (``postconf -n``) and Postfix's warnings;
* ``services``: the ``master.cf`` services (``postconf -M``, parsed with ``master_cf``);
* ``tables``: every ``type:/path`` lookup table that ``main.cf`` or a ``master.cf`` override
  refers to (``postconf -n -x`` and ``postconf -P -x``, so ``$config_directory`` is expanded),
  with the state of its files: source present, database present, database stale;
* ``queue``: number of messages per queue, from ``postqueue -j`` when the mail system runs,
  else by counting the queue files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.estafeta.postfix.plugins.module_utils.common import POSTFIX_SPACE, PostfixError, split_lines
from ansible_collections.estafeta.postfix.plugins.module_utils.master_cf import parse_entry_text, public
from ansible_collections.estafeta.postfix.plugins.module_utils.postconf import parse_postconf_output
from ansible_collections.estafeta.postfix.plugins.module_utils.postmap import database_files, is_indexed
from ansible_collections.estafeta.postfix.plugins.module_utils.queue import (
    QUEUES,
    count_by_queue,
    count_queue_files,
    master_running,
    read_queue,
)

SUBSETS = ('version', 'parameters', 'services', 'tables', 'queue')

# Table types whose name is a file: indexed ones (a database built by postmap), ones read
# as text, and ones whose "file" is a client configuration (LDAP, SQL, memcache).
FILE_TYPES = ('btree', 'cdb', 'dbm', 'hash', 'lmdb', 'sdbm', 'cidr', 'pcre', 'regexp', 'texthash',
              'ldap', 'mysql', 'pgsql', 'sqlite', 'memcache')
_TABLE_RE = re.compile(r'(?<![A-Za-z0-9_$-])(%s):(/[^\s,{}]+)' % '|'.join(FILE_TYPES))
_VERSION_RE = re.compile(r'(\d+)(?:\.(\d+))?(?:\.(\d+))?')


def parse_version(text):
    """``'3.7.11'`` -> ``('3.7.11', [3, 7, 11])``; snapshots such as ``3.10-20250101`` keep what they have."""
    text = text.strip()
    match = _VERSION_RE.match(text)
    if not match:
        return text, []
    return text, [int(part) for part in match.groups() if part is not None]


def find_tables(values):
    """``{name: value}`` -> ``{'type:/path': {'type', 'path', 'used_by'}}`` in order of appearance."""
    tables = {}
    for name, value in values.items():
        for match in _TABLE_RE.finditer(value):
            key = '%s:%s' % (match.group(1), match.group(2))
            entry = tables.setdefault(key, {'name': key, 'type': match.group(1), 'path': match.group(2), 'used_by': []})
            if name not in entry['used_by']:
                entry['used_by'].append(name)
    return tables


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def table_status(table_type, path):
    """The state of one table's files.

    ``stale``: an indexed table whose source exists and whose database is missing or older than
    the source (what ``postmap`` would fix). ``missing``: Postfix cannot open the table (no
    database for an indexed type, no file for the others).
    """
    source_mtime = _mtime(path)
    status = {
        'indexed': is_indexed(table_type),
        'source_exists': source_mtime is not None,
        'database': None,
        'database_exists': None,
        'stale': False,
        'missing': source_mtime is None,
    }
    if status['indexed']:
        dbs = database_files(path, table_type)
        mtimes = [_mtime(db) for db in dbs]
        exists = all(m is not None for m in mtimes)
        status['database'] = dbs[-1]
        status['database_exists'] = exists
        status['missing'] = not exists
        if source_mtime is not None:
            status['stale'] = not exists or min(mtimes) < source_mtime
    return status


def _postconf(runner, config_dir, *args):
    dummy, out, err = runner.run(['postconf', '-c', config_dir] + list(args),
                                 what='postconf %s' % ' '.join(args))
    return out, err


def _warnings(err):
    lines = []
    for line in split_lines(err):
        line = line.strip()
        if line and line not in lines:
            lines.append(line)
    return lines


def gather_version(runner, config_dir):
    out, dummy = _postconf(runner, config_dir, '-h', 'mail_version')
    version, parts = parse_version(out)
    return {'version': version, 'version_info': parts}


def gather_parameters(runner, config_dir):
    out, err = _postconf(runner, config_dir, '-n')
    return {'parameters': parse_postconf_output(out), 'config_warnings': _warnings(err)}


def gather_services(runner, config_dir):
    out, dummy = _postconf(runner, config_dir, '-M')
    services = []
    for line in split_lines(out):
        if not line.strip(POSTFIX_SPACE) or line[0] in POSTFIX_SPACE:
            continue
        service = parse_entry_text(line, printed=True)
        if service is not None:
            services.append(public(service))
    return {'services': services}


def gather_tables(runner, config_dir):
    main_out, dummy = _postconf(runner, config_dir, '-n', '-x')
    master_out, dummy = _postconf(runner, config_dir, '-P', '-x')
    values = parse_postconf_output(main_out)
    values.update(parse_postconf_output(master_out))
    tables = []
    for entry in find_tables(values).values():
        entry.update(table_status(entry['type'], entry['path']))
        tables.append(entry)
    return {
        'tables': tables,
        'stale_tables': [t['name'] for t in tables if t['stale']],
        'missing_tables': [t['name'] for t in tables if t['missing']],
    }


def gather_queue(runner, config_dir, now=None):
    out, dummy = _postconf(runner, config_dir, '-h', 'queue_directory')
    queue_directory = out.strip()
    running = master_running(queue_directory)
    queue = {'queue_directory': queue_directory, 'running': running}
    counts = None
    if running:
        try:
            counts = count_by_queue(read_queue(runner, config_dir, now))
            queue['method'] = 'postqueue'
        except PostfixError:
            counts = None
    if counts is None:
        counts = count_queue_files(queue_directory)
        queue['method'] = 'files'
    queue['counts'] = dict((name, counts.get(name, 0)) for name in QUEUES)
    queue['total'] = sum(queue['counts'].values())
    return {'queue': queue}


GATHERERS = {
    'version': gather_version,
    'parameters': gather_parameters,
    'services': gather_services,
    'tables': gather_tables,
    'queue': gather_queue,
}


def gather(runner, config_dir, subsets=None):
    """Collect the requested subsets (default: all) into one dict."""
    if not os.path.isabs(config_dir) or not os.path.isdir(config_dir):
        raise PostfixError('config_dir %s does not exist or is not an absolute path to a directory. Is Postfix '
                           'installed, and is this the right configuration directory?' % config_dir)
    if not os.path.exists(os.path.join(config_dir, 'main.cf')):
        raise PostfixError('%s has no main.cf: is Postfix installed there?' % config_dir)
    wanted = list(subsets or ['all'])
    unknown = [s for s in wanted if s != 'all' and s not in SUBSETS]
    if unknown:
        raise PostfixError('Unknown gather subset(s) %s: use all or any of %s.' % (', '.join(unknown), ', '.join(SUBSETS)))
    if 'all' in wanted:
        wanted = list(SUBSETS)
    result = {'gathered': [s for s in SUBSETS if s in wanted], 'config_dir': config_dir}
    for name in result['gathered']:
        result.update(GATHERERS[name](runner, config_dir))
    return result
