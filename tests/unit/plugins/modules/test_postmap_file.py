# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import subprocess
import tempfile
import time

import pytest

from ansible.module_utils import basic

from ansible_collections.estafeta.postfix.plugins.modules import postmap_file
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot

ACCESS = {
    'bob645@yahoo.com': 'REJECT',
    'METHOSYSTEM.IT': 'REJECT',
    'techemail.com': 'REJECT Spam source',
}


@pytest.fixture
def tables(tmp_path, postfix_dir):
    # Postfix waits up to two seconds for a main.cf modified in the last seconds to settle:
    # backdate the fresh copy so that each test does not pay that wait.
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(os.path.join(postfix_dir, name), (past, past))
    d = tmp_path / 'tables'
    d.mkdir()
    return str(d)


def query(config_dir, key, spec, cmd='postmap'):
    proc = subprocess.run(['/usr/sbin/' + cmd, '-c', config_dir, '-q', key, spec],
                          capture_output=True, text=True, check=False, env={'LANG': 'C', 'PATH': os.environ['PATH']})
    return proc.stdout[:-1] if proc.returncode == 0 else None  # the value as Postfix answers it, no strip()


def four_steps(run_module, args, directory):
    """check -> real -> check -> real; returns the result of the first real run."""
    before = snapshot(directory)
    res = run_module(postmap_file, args, check_mode=True)
    assert res['changed'] is True, res
    assert snapshot(directory) == before
    first = run_module(postmap_file, args)
    assert first['changed'] is True, first
    res = run_module(postmap_file, args, check_mode=True)
    assert res['changed'] is False, res
    res = run_module(postmap_file, args)
    assert res['changed'] is False, res
    assert res['rebuilt'] is False
    return first


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('table_type, suffix', [('hash', '.db'), ('lmdb', '.lmdb'), ('cdb', '.cdb'), ('btree', '.db')])
def test_indexed_build(run_module, postfix_dir, tables, table_type, suffix):
    path = os.path.join(tables, 'access')
    args = dict(path=path, type=table_type, entries=ACCESS, config_dir=postfix_dir)
    res = four_steps(run_module, args, tables)
    assert res['rebuilt'] is True
    assert res['database'] == path + suffix
    assert res['entries'] == 3
    assert sorted(res['added']) == sorted(ACCESS)
    assert res['diff']['before'] == '' and 'techemail.com' in res['diff']['after']
    assert query(postfix_dir, 'techemail.com', '%s:%s' % (table_type, path)) == 'REJECT Spam source'
    assert query(postfix_dir, 'methosystem.it', '%s:%s' % (table_type, path)) == 'REJECT'
    with open(path) as f:
        text = f.read()
    assert text.startswith('# Managed by Ansible (estafeta.postfix.postmap_file): local edits are overwritten.\n')
    assert 'techemail.com    REJECT Spam source\n' in text
    assert sorted(os.listdir(tables)) == ['access', 'access' + suffix]
    assert mode_of(path) == 0o644 and mode_of(path + suffix) == 0o644


def test_default_type_from_postconf(run_module, postfix_dir, tables):
    with open(os.path.join(postfix_dir, 'main.cf'), 'a') as f:
        f.write('default_database_type = lmdb\n')
    past = time.time() - 60
    os.utime(os.path.join(postfix_dir, 'main.cf'), (past, past))
    assert postconf(postfix_dir, '-h', 'default_database_type').strip() == 'lmdb'
    path = os.path.join(tables, 'transport')
    res = run_module(postmap_file, dict(path=path, config_dir=postfix_dir,
                                        entries={'dominio3.com': 'smtp:servidor4.dominio4.com:10025'}))
    assert res['type'] == 'lmdb' and res['database'] == path + '.lmdb'
    assert query(postfix_dir, 'dominio3.com', 'lmdb:' + path) == 'smtp:servidor4.dominio4.com:10025'


def test_rebuild_when_db_missing_or_older(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'virtual')
    args = dict(path=path, type='hash', entries={'info@example.org': ['a@x.com', 'b@x.com']}, config_dir=postfix_dir)
    assert run_module(postmap_file, args)['rebuilt'] is True
    assert query(postfix_dir, 'info@example.org', 'hash:' + path) == 'a@x.com, b@x.com'

    os.unlink(path + '.db')
    res = run_module(postmap_file, args, check_mode=True)
    assert res['changed'] is True and res['rebuilt'] is True and not os.path.exists(path + '.db')
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['rebuilt'] is True
    assert res['added'] == [] and res['diff']['before'] == res['diff']['after']
    assert query(postfix_dir, 'info@example.org', 'hash:' + path) == 'a@x.com, b@x.com'

    db_mtime = os.stat(path + '.db').st_mtime
    os.utime(path, (db_mtime + 10, db_mtime + 10))
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['rebuilt'] is True
    assert os.stat(path + '.db').st_mtime_ns >= os.stat(path).st_mtime_ns
    assert run_module(postmap_file, args)['rebuilt'] is False

    res = run_module(postmap_file, dict(args, rebuild=True))
    assert res['changed'] is True and res['rebuilt'] is True
    assert sorted(os.listdir(tables)) == ['virtual', 'virtual.db']


def test_exclusive_removes_unlisted_keys(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    args = dict(path=path, type='hash', entries={'techemail.com': 'REJECT', 'new.example': 'OK'}, config_dir=postfix_dir)
    res = four_steps(run_module, args, tables)
    assert res['added'] == ['new.example']
    assert res['updated'] == ['techemail.com']
    assert sorted(res['removed']) == ['METHOSYSTEM.IT', 'bob645@yahoo.com']
    assert query(postfix_dir, 'bob645@yahoo.com', 'hash:' + path) is None
    assert query(postfix_dir, 'techemail.com', 'hash:' + path) == 'REJECT'
    assert res['entries'] == 2


def test_exclusive_absent_removes_file_and_db(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    args = dict(path=path, type='hash', state='absent', exclusive=True, config_dir=postfix_dir)
    res = four_steps(run_module, args, tables)
    assert sorted(res['removed']) == sorted(ACCESS)
    assert os.listdir(tables) == []


def test_partial_mode_keeps_other_lines(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    original = '# Hand-made list\nspam.example   REJECT\n# keep me\nold.example    REJECT old\nfriend.example OK\n'
    with open(path, 'w') as f:
        f.write(original)
    args = dict(path=path, type='hash', exclusive=False, config_dir=postfix_dir,
                entries={'old.example': 'REJECT gone', 'added.example': 'REJECT'})
    res = four_steps(run_module, args, tables)
    assert res['added'] == ['added.example'] and res['updated'] == ['old.example'] and res['removed'] == []
    with open(path) as f:
        text = f.read()
    assert text == ('# Hand-made list\nspam.example   REJECT\n# keep me\nold.example   REJECT gone\n'
                    'friend.example OK\nadded.example REJECT\n')
    assert query(postfix_dir, 'spam.example', 'hash:' + path) == 'REJECT'
    assert query(postfix_dir, 'old.example', 'hash:' + path) == 'REJECT gone'

    args = dict(path=path, type='hash', exclusive=False, state='absent', config_dir=postfix_dir,
                entries=['spam.example'])
    res = four_steps(run_module, args, tables)
    assert res['removed'] == ['spam.example']
    with open(path) as f:
        assert f.read() == ('# Hand-made list\n# keep me\nold.example   REJECT gone\n'
                            'friend.example OK\nadded.example REJECT\n')
    assert query(postfix_dir, 'spam.example', 'hash:' + path) is None
    assert query(postfix_dir, 'friend.example', 'hash:' + path) == 'OK'


def test_partial_absent_on_missing_file_is_noop(run_module, postfix_dir, tables):
    res = run_module(postmap_file, dict(path=os.path.join(tables, 'x'), exclusive=False, state='absent',
                                        entries=['a'], type='hash', config_dir=postfix_dir))
    assert res['changed'] is False and os.listdir(tables) == []


PCRE = [
    {'key': '/^Subject:.*\\bviagra\\b/', 'value': 'REJECT Spam'},
    {'key': '/^Content-(Type|Disposition):.*name="?.*\\.(exe|scr)"?/', 'value': 'REJECT No executables'},
    {'key': '/^Subject: hello world/', 'value': 'WARN greeting'},
]


def test_pcre_written_not_postmapped(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'header_checks')
    args = dict(path=path, type='pcre', entries=PCRE, config_dir=postfix_dir)
    res = four_steps(run_module, args, tables)
    assert res['database'] is None and res['rebuilt'] is False
    assert os.listdir(tables) == ['header_checks']
    assert query(postfix_dir, 'Subject: buy VIAGRA now', 'pcre:' + path) == 'REJECT Spam'
    assert query(postfix_dir, 'Content-Type: application/x; name="a.exe"', 'pcre:' + path) == 'REJECT No executables'
    assert query(postfix_dir, 'Subject: hello world', 'pcre:' + path) == 'WARN greeting'
    with open(path) as f:
        lines = f.read().splitlines()
    assert [line.split()[0] for line in lines[1:]] == ['/^Subject:.*\\bviagra\\b/',
                                                       '/^Content-(Type|Disposition):.*name="?.*\\.(exe|scr)"?/',
                                                       '/^Subject:']


@pytest.mark.parametrize('table_type, key', [('pcre', '/foo(/'), ('regexp', '/foo(/'), ('cidr', '10.0.0.0/33')])
def test_invalid_text_table_fails_nothing_written(run_module, postfix_dir, tables, table_type, key):
    path = os.path.join(tables, 'checks')
    good = [{'key': '/ok/' if table_type != 'cidr' else '10.0.0.0/8', 'value': 'OK'}]
    run_module(postmap_file, dict(path=path, type=table_type, entries=good, config_dir=postfix_dir))
    before = snapshot(tables)
    for check_mode in (True, False):
        res = run_module(postmap_file, dict(path=path, type=table_type, config_dir=postfix_dir,
                                            entries=good + [{'key': key, 'value': 'REJECT'}]), check_mode=check_mode)
        assert res['failed'] is True
        assert repr(key) in res['msg'] and path in res['msg'], res['msg']
        assert snapshot(tables) == before


@pytest.mark.parametrize('entries, culprit', [
    ({'bad key': 'OK'}, 'bad key'),
    ({'good': ''}, "'good'"),
    ({'good': 'OK', 'x': None}, "'x'"),
    ([{'key': 'dup', 'value': 'OK'}, {'key': 'dup', 'value': 'REJECT'}], "'dup'"),
    ({'': 'OK'}, 'empty key'),
    ({'a': 'line\nbreak'}, "'a'"),
])
def test_bad_input_fails_nothing_written(run_module, postfix_dir, tables, entries, culprit):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    before = snapshot(tables)
    conf_before = snapshot(postfix_dir)
    res = run_module(postmap_file, dict(path=path, type='hash', entries=entries, config_dir=postfix_dir))
    assert res['failed'] is True and culprit in res['msg'], res
    assert snapshot(tables) == before and snapshot(postfix_dir) == conf_before


def test_bad_mode_and_owner_fail(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    for extra, culprit in ((dict(mode='u+rw'), 'mode'), (dict(owner='no-such-user-x'), 'no-such-user-x'),
                           (dict(group='no-such-group-x'), 'no-such-group-x')):
        res = run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir, **extra))
        assert res['failed'] is True and culprit in res['msg']
    assert os.listdir(tables) == []


def test_missing_entries_fails(run_module, postfix_dir, tables):
    res = run_module(postmap_file, dict(path=os.path.join(tables, 'a'), config_dir=postfix_dir))
    assert res['failed'] is True and 'entries' in res['msg']


def test_secret_values_hidden_and_mode(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'sasl_passwd')
    secret = 'relayuser:Sup3r-S3cret'
    args = dict(path=path, type='hash', mode='0600', config_dir=postfix_dir,
                secret_entries={'[smtp.example.net]:587': secret})
    res = four_steps(run_module, args, tables)
    dumped = json.dumps(res)
    assert 'Sup3r-S3cret' not in dumped
    assert res['diff']['after'].endswith('[smtp.example.net]:587 ********\n')
    assert res['added'] == ['[smtp.example.net]:587']
    assert mode_of(path) == 0o600 and mode_of(path + '.db') == 0o600
    assert query(postfix_dir, '[smtp.example.net]:587', 'hash:' + path) == secret

    res = run_module(postmap_file, dict(args, secret_entries={'[smtp.example.net]:587': 'relayuser:0ther-Secret'}))
    assert res['changed'] is True and res['updated'] == ['[smtp.example.net]:587']
    assert 'Sup3r-S3cret' not in json.dumps(res) and '0ther-Secret' not in json.dumps(res)


def test_mode_change_only_and_db_follows_source(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    args = dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir)
    run_module(postmap_file, args)
    os.chmod(path, 0o640)
    # No mode given: the existing source mode is kept and the database follows it.
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['rebuilt'] is False
    assert mode_of(path) == 0o640 and mode_of(path + '.db') == 0o640
    res = four_steps(run_module, dict(args, mode='0600', owner='root', group='root'), tables)
    assert res['rebuilt'] is False
    assert mode_of(path) == 0o600 and mode_of(path + '.db') == 0o600


def test_postalias(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'aliases')
    with open(path, 'w') as f:
        f.write('# See man 5 aliases\npostmaster:    root\n')
    args = dict(path=path, type='hash', alias=True, exclusive=False, config_dir=postfix_dir,
                entries={'root': ['admin', 'ops@example.com'], 'abuse': 'root'})
    res = four_steps(run_module, args, tables)
    assert res['rebuilt'] is True
    with open(path) as f:
        assert f.read() == '# See man 5 aliases\npostmaster:    root\nroot:  admin, ops@example.com\nabuse: root\n'
    assert query(postfix_dir, 'root', 'hash:' + path, cmd='postalias') == 'admin, ops@example.com'
    assert query(postfix_dir, 'postmaster', 'hash:' + path, cmd='postalias') == 'root'


def test_backup(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir, backup=True))
    res = run_module(postmap_file, dict(path=path, type='hash', entries={'a.example': 'OK'}, config_dir=postfix_dir, backup=True))
    assert res['changed'] is True
    backup = res['backup_file']
    assert os.path.dirname(backup) == tables
    with open(backup) as f:
        assert 'techemail.com' in f.read()
    res = run_module(postmap_file, dict(path=path, type='hash', entries={'a.example': 'OK'}, config_dir=postfix_dir, backup=True))
    assert res['changed'] is False and 'backup_file' not in res


def test_texthash_validated(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'relay_recipients')
    res = four_steps(run_module, dict(path=path, type='texthash', entries={'a@example.org': 'x'}, config_dir=postfix_dir), tables)
    assert res['database'] is None and os.listdir(tables) == ['relay_recipients']
    past = time.time() - 60
    os.utime(path, (past, past))  # spare the test Postfix's wait for a freshly modified file
    assert query(postfix_dir, 'a@example.org', 'texthash:' + path) == 'x'


def test_large_hash_noop_touches_nothing(run_module, postfix_dir, tables, monkeypatch):
    """A no-op re-run of a 10,000-entry table reads and compares only: it lists the database (postmap -s,
    to compare what it answers with the source), builds nothing, and leaves the source and the database
    as they are (file identity and timestamps)."""
    commands = []
    original = basic.AnsibleModule.run_command

    def spy(self, args, *more, **kwargs):
        commands.append(list(args) if isinstance(args, (list, tuple)) else args.split())
        return original(self, args, *more, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', spy)
    path = os.path.join(tables, 'big')
    entries = dict(('user%05d@example.org' % i, 'REJECT') for i in range(10000))
    args = dict(path=path, type='hash', entries=entries, config_dir=postfix_dir)
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['entries'] == 10000
    # Control: the spy sees the build's postmap.
    assert [c for c in commands if os.path.basename(c[0]) == 'postmap'], commands
    files = dict((name, os.stat(os.path.join(tables, name))) for name in ('big', 'big.db'))
    del commands[:]
    res = run_module(postmap_file, args)
    assert res['changed'] is False and res['rebuilt'] is False
    assert [c[1:] for c in commands if os.path.basename(c[0]) == 'postmap'] == [
        ['-c', postfix_dir, '-s', 'hash:' + path]], commands
    for name, before in files.items():
        after = os.stat(os.path.join(tables, name))
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size), name
    assert query(postfix_dir, 'user09999@example.org', 'hash:' + path) == 'REJECT'


# ---------------------------------------------------------------- what Postfix reads back

INDEXED = [('hash', '.db'), ('btree', '.db'), ('lmdb', '.lmdb'), ('cdb', '.cdb')]
CONTROLS = ['\x00', '\t', '\n', '\r', '\x0b', '\x0c', '\x1b', '\x1c', '\x1d', '\x1e', '\x1f', '\x7f', '\x85', '\x9f']


def postmap(config_dir, *args, **kw):
    return subprocess.run(['/usr/sbin/postmap', '-c', config_dir] + list(args), capture_output=True, check=True, **kw)


def dump(config_dir, spec, cmd='postmap'):
    """``{key: value}`` as ``postmap -s`` (``postalias -s``) lists it; CDB read back with -q of the source keys."""
    proc = subprocess.run(['/usr/sbin/' + cmd, '-c', config_dir, '-s', spec], capture_output=True, check=False,
                          env={'LANG': 'C', 'PATH': os.environ['PATH']})
    sep = b':\t' if cmd == 'postalias' else b'\t'
    result = {}
    for line in proc.stdout.split(b'\n'):
        if line:
            key, dummy, value = line.partition(sep)
            result[key.decode('utf-8', 'surrogateescape')] = value.decode('utf-8', 'surrogateescape')
    for key in ('@', 'YP_LAST_MODIFIED', 'YP_MASTER_NAME'):
        result.pop(key, None)
    return result


@pytest.mark.parametrize('char', CONTROLS, ids=lambda c: 'U+%04X' % ord(c))
@pytest.mark.parametrize('where', ['value', 'key', 'list-item'])
@pytest.mark.parametrize('table_type', ['hash', 'pcre', 'cidr', 'alias'])
def test_control_characters_are_refused(run_module, postfix_dir, tables, char, where, table_type):
    """A NUL would cut the value where Postfix reads it, a line break would start another entry: refused."""
    path = os.path.join(tables, 'table')
    key = {'pcre': '/^x/', 'cidr': '10.0.0.0/8'}.get(table_type, 'a.example')
    value = 'REJECT a%sb' % char
    if where == 'key':
        key = key[:-1] + char + key[-1]
        value = 'OK'
    args = dict(path=path, config_dir=postfix_dir, type='hash' if table_type == 'alias' else table_type,
                alias=table_type == 'alias', entries=[{'key': key, 'value': [value] if where == 'list-item' else value}])
    run_module(postmap_file, dict(args, entries={'keep.example' if table_type in ('hash', 'alias') else key[:0] + (
        '/^keep/' if table_type == 'pcre' else '192.168.0.0/16' if table_type == 'cidr' else 'keep'): 'OK'}))
    before = snapshot(tables)
    for check_mode in (True, False):
        res = run_module(postmap_file, args, check_mode=check_mode)
        assert res.get('failed') is True, res
        assert 'U+%04X' % ord(char) in res['msg'] or repr(char) in res['msg'] or 'line break' in res['msg'], res['msg']
        assert snapshot(tables) == before


@pytest.mark.parametrize('char', ['\u2028', '\u2029', '\u00a0', '\u3000', '\u200b'], ids=lambda c: 'U+%04X' % ord(c))
@pytest.mark.parametrize('table_type, suffix', INDEXED + [('texthash', None), ('pcre', None)])
def test_unicode_separators_round_trip(run_module, postfix_dir, tables, char, table_type, suffix):
    """Postfix splits lines on \\n only: a Unicode separator in a key or a value is text to it. Written once,
    read back by postmap -q, and the next runs are no change (str.splitlines() used to break them)."""
    path = os.path.join(tables, 'table')
    if table_type == 'pcre':
        entries = [{'key': '/^a%sb/' % char, 'value': 'REJECT x%sy' % char}, {'key': '/^z/', 'value': 'OK'}]
        probe = [('a%sb' % char, 'REJECT x%sy' % char), ('z', 'OK')]
    else:
        entries = {'k%sey.example' % char: 'REJECT x%sy%s' % (char, char), 'plain.example': 'OK %s' % char}
        probe = list(entries.items())
    four_steps(run_module, dict(path=path, type=table_type, entries=entries, config_dir=postfix_dir), tables)
    past = time.time() - 60
    os.utime(path, (past, past))
    for key, value in probe:
        assert query(postfix_dir, key, '%s:%s' % (table_type, path)) == value
    if suffix:
        assert dump(postfix_dir, '%s:%s' % (table_type, path)) == dict(probe) if table_type != 'cdb' else True


def test_unicode_separator_in_hand_written_table(run_module, postfix_dir, tables):
    """A hand-written line with U+2028 and U+0085 in a table managed with exclusive=false: the second run
    is no change (the line used to be split in two, "bad field count")."""
    path = os.path.join(tables, 'access')
    with open(path, 'w') as f:
        f.write('# hand\nweird.example REJECT a\u2028b\u0085c\nother.example OK\n')
    args = dict(path=path, type='hash', exclusive=False, entries={'new.example': 'OK'}, config_dir=postfix_dir)
    four_steps(run_module, args, tables)
    assert query(postfix_dir, 'weird.example', 'hash:' + path) == 'REJECT a\u2028b\u0085c'


# ---------------------------------------------------------------- content freshness (A)

def _hand_edit(kind, config_dir, path, table_type, tables):
    spec = '%s:%s' % (table_type, path)
    db = path + dict(INDEXED)[table_type]
    if kind == 'added-by-hand':
        if table_type == 'cdb':
            other = os.path.join(tables, 'other')
            with open(path) as src, open(other, 'w') as dst:
                dst.write(src.read() + 'extra.example OK\n')
            postmap(config_dir, '%s:%s' % (table_type, other))
            os.rename(other + '.cdb', db)
            os.unlink(other)
        else:
            postmap(config_dir, '-i', spec, input=b'extra.example OK\n')
    elif kind == 'removed-by-hand':
        if table_type == 'cdb':
            other = os.path.join(tables, 'other')
            with open(other, 'w') as f:
                f.write('bob645@yahoo.com REJECT\n')
            postmap(config_dir, '%s:%s' % (table_type, other))
            os.rename(other + '.cdb', db)
            os.unlink(other)
        else:
            postmap(config_dir, '-d', 'techemail.com', spec)
    elif kind == 'other-file-newer':
        other = os.path.join(tables, 'other')
        with open(other, 'w') as f:
            f.write('techemail.com OK\n')
        postmap(config_dir, '%s:%s' % (table_type, other))
        os.rename(other + dict(INDEXED)[table_type], db)
        os.unlink(other)
        future = time.time() + 3600
        os.utime(db, (future, future))
    elif kind == 'other-file-older':
        other = os.path.join(tables, 'other')
        with open(other, 'w') as f:
            f.write('techemail.com OK\n')
        postmap(config_dir, '%s:%s' % (table_type, other))
        os.rename(other + dict(INDEXED)[table_type], db)
        os.unlink(other)
        os.utime(db, (1, 1))
    elif kind == 'source-newer':
        future = time.time() + 3600
        os.utime(path, (future, future))


@pytest.mark.parametrize('kind', ['added-by-hand', 'removed-by-hand', 'other-file-newer', 'other-file-older',
                                  'source-newer'])
@pytest.mark.parametrize('table_type, suffix', INDEXED)
def test_database_with_other_content_is_rebuilt(run_module, postfix_dir, tables, table_type, suffix, kind):
    path = os.path.join(tables, 'access')
    args = dict(path=path, type=table_type, entries=ACCESS, config_dir=postfix_dir)
    run_module(postmap_file, args)
    expected = dict((k.lower(), v) for k, v in ACCESS.items())
    _hand_edit(kind, postfix_dir, path, table_type, tables)
    source = snapshot(tables)['access']
    res = run_module(postmap_file, args, check_mode=True)
    assert res['changed'] is True and res['rebuilt'] is True, res
    assert snapshot(tables)['access'] == source
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['rebuilt'] is True, res
    assert res['added'] == res['removed'] == res['updated'] == []
    for check_mode in (True, False):
        res = run_module(postmap_file, args, check_mode=check_mode)
        assert res['changed'] is False and res['rebuilt'] is False, res
    for key, value in expected.items():
        assert query(postfix_dir, key, '%s:%s' % (table_type, path)) == value
    assert query(postfix_dir, 'extra.example', '%s:%s' % (table_type, path)) is None
    if table_type != 'cdb':
        assert dump(postfix_dir, '%s:%s' % (table_type, path)) == expected


def test_alias_database_with_other_content_is_rebuilt(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'aliases')
    args = dict(path=path, type='hash', alias=True, config_dir=postfix_dir,
                entries={'postmaster': 'root', 'root': ['admin', 'ops@example.com']})
    four_steps(run_module, args, tables)
    subprocess.run(['/usr/sbin/postalias', '-c', postfix_dir, '-i', 'hash:' + path], input=b'extra: root\n', check=True)
    res = run_module(postmap_file, args)
    assert res['changed'] is True and res['rebuilt'] is True
    assert run_module(postmap_file, args)['changed'] is False
    assert dump(postfix_dir, 'hash:' + path, cmd='postalias') == {'postmaster': 'root', 'root': 'admin, ops@example.com'}


# ---------------------------------------------------------------- failures half way (4)

def _chattr(flag, path):
    try:
        return subprocess.run(['chattr', flag, path], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.parametrize('immutable', ['source', 'database'])
@pytest.mark.parametrize('change', ['entries', 'mode'])
def test_immutable_file_fails_cleanly_and_consistently(run_module, postfix_dir, tables, immutable, change):
    """The issue's case: an immutable source used to crash ([Errno 1]) after the database was replaced, and the
    next run with the original entries said ok while the database answered the new value."""
    path = os.path.join(tables, 'access')
    args = dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir)
    run_module(postmap_file, args)
    target = path if immutable == 'source' else path + '.db'
    if not _chattr('+i', target):
        pytest.skip('chattr +i is not supported here')
    try:
        before = snapshot(tables)
        modes = (mode_of(path), mode_of(path + '.db'))
        new = dict(args, entries=dict(ACCESS, **{'techemail.com': 'OK'})) if change == 'entries' else dict(args, mode='0600')
        res = run_module(postmap_file, new)
        assert res.get('failed') is True, res
        assert target in res['msg'] and 'immutable' in res['msg'], res['msg']
        assert 'Traceback' not in res['msg']
        assert snapshot(tables) == before
        assert (mode_of(path), mode_of(path + '.db')) == modes
        assert query(postfix_dir, 'techemail.com', 'hash:' + path) == 'REJECT Spam source'
    finally:
        _chattr('-i', target)
    # The original entries: nothing to do, source and database agree.
    res = run_module(postmap_file, args)
    assert res['changed'] is False, res
    res = run_module(postmap_file, new)
    assert res['changed'] is True
    assert run_module(postmap_file, new)['changed'] is False


@pytest.mark.parametrize('call', ['rename', 'link', 'chmod'])
def test_failure_at_every_write_step(run_module, postfix_dir, tables, monkeypatch, call):
    """os.rename, os.link or os.chmod fail at the 1st, 2nd... call in the table's directory: every failed run
    leaves source and database byte-identical (and consistent); the run without failure converges."""
    path = os.path.join(tables, 'access')
    args = dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir, mode='0640')
    run_module(postmap_file, dict(args, mode='0644'))
    new = dict(args, entries=dict(ACCESS, **{'new.example': 'OK'}))
    original = getattr(os, call)
    failures = 0
    for step in range(1, 20):
        count = {'n': 0}

        def failing(*a, **kw):
            target = a[1] if call in ('rename', 'link') else a[0]
            if os.path.dirname(os.path.abspath(str(target))) == tables:
                count['n'] += 1
                if count['n'] == step:
                    if call == 'link':  # what an immutable file answers
                        raise OSError(1, 'Operation not permitted (injected)', str(a[0]))
                    raise OSError(5, 'Input/output error (injected)', str(target))
            return original(*a, **kw)

        before = snapshot(tables)
        monkeypatch.setattr(os, call, failing)
        try:
            res = run_module(postmap_file, new)
        finally:
            monkeypatch.setattr(os, call, original)
        if not res.get('failed'):
            break
        failures += 1
        assert 'injected' in res['msg'] and 'Traceback' not in res['msg'], res['msg']
        assert snapshot(tables) == before, 'step %d of %s left a change: %s' % (step, call, res['msg'])
        assert query(postfix_dir, 'new.example', 'hash:' + path) is None
    assert failures > 0 and res['changed'] is True
    assert query(postfix_dir, 'new.example', 'hash:' + path) == 'OK'
    assert mode_of(path) == mode_of(path + '.db') == 0o640
    assert run_module(postmap_file, new)['changed'] is False


def test_removal_is_all_or_nothing(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    if not _chattr('+i', path + '.db'):
        pytest.skip('chattr +i is not supported here')
    try:
        before = snapshot(tables)
        res = run_module(postmap_file, dict(path=path, type='hash', state='absent', exclusive=True, config_dir=postfix_dir))
        assert res.get('failed') is True and path + '.db' in res['msg']
        assert snapshot(tables) == before
    finally:
        _chattr('-i', path + '.db')


# ---------------------------------------------------------------- symbolic links (5)

def test_symlinked_source_is_followed(run_module, postfix_dir, tables, tmp_path):
    """The source a link to a file outside the directory: that file is written and gets the mode, the link
    and its own attributes stay, the database is built next to the link, and the runs settle."""
    outside = tmp_path / 'shared'
    outside.mkdir()
    real = str(outside / 'access')
    with open(real, 'w') as f:
        f.write('old.example OK\n')
    os.chmod(real, 0o644)
    path = os.path.join(tables, 'access')
    os.symlink(real, path)
    link_stat = os.lstat(path)
    args = dict(path=path, type='hash', entries=ACCESS, mode='0640', config_dir=postfix_dir)
    four_steps(run_module, args, tables)
    assert os.path.islink(path) and os.readlink(path) == real
    assert os.lstat(path).st_ino == link_stat.st_ino
    assert mode_of(real) == 0o640 and mode_of(path + '.db') == 0o640
    assert sorted(os.listdir(tables)) == ['access', 'access.db']
    assert sorted(os.listdir(str(outside))) == ['access']
    with open(real) as f:
        assert 'techemail.com' in f.read()
    assert query(postfix_dir, 'techemail.com', 'hash:' + path) == 'REJECT Spam source'
    # Removing the table removes the link, not the file it points to.
    res = run_module(postmap_file, dict(path=path, type='hash', state='absent', exclusive=True, config_dir=postfix_dir))
    assert res['changed'] is True and os.listdir(tables) == [] and os.path.exists(real)


@pytest.mark.parametrize('kind', ['dangling-source', 'database-link'])
def test_unusable_links_are_refused(run_module, postfix_dir, tables, tmp_path, kind):
    path = os.path.join(tables, 'access')
    if kind == 'dangling-source':
        os.symlink(str(tmp_path / 'nowhere'), path)
    else:
        run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
        os.rename(path + '.db', str(tmp_path / 'access.db'))
        os.symlink(str(tmp_path / 'access.db'), path + '.db')
    before = snapshot(tables)
    for check_mode in (True, False):
        res = run_module(postmap_file, dict(path=path, type='hash', entries={'a.example': 'OK'}, config_dir=postfix_dir),
                         check_mode=check_mode)
        assert res.get('failed') is True and 'symbolic link' in res['msg'], res
        assert snapshot(tables) == before


# ---------------------------------------------------------------- state=absent is safe (8)

def test_absent_removes_only_the_listed_entries_by_default(run_module, postfix_dir, tables):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    args = dict(path=path, type='hash', state='absent', entries=['bob645@yahoo.com'], config_dir=postfix_dir)
    res = four_steps(run_module, args, tables)
    assert res['removed'] == ['bob645@yahoo.com']
    assert query(postfix_dir, 'bob645@yahoo.com', 'hash:' + path) is None
    assert query(postfix_dir, 'techemail.com', 'hash:' + path) == 'REJECT Spam source'
    assert sorted(os.listdir(tables)) == ['access', 'access.db']


@pytest.mark.parametrize('extra', [{}, {'exclusive': False}])
def test_absent_without_entries_is_refused(run_module, postfix_dir, tables, extra):
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    before = snapshot(tables)
    for check_mode in (True, False):
        res = run_module(postmap_file, dict(path=path, type='hash', state='absent', config_dir=postfix_dir, **extra),
                         check_mode=check_mode)
        assert res.get('failed') is True and 'exclusive=true' in res['msg'], res
        assert snapshot(tables) == before


# ---------------------------------------------------------------- secrets (3)

def run_logged(monkeypatch, module, args, check_mode=False, diff=True):
    """Run a module in-process with the real result formatting; returns ``(result, log lines)``.

    The log lines are what AnsibleModule sends to syslog/journald (its "Invoked with ..." line first);
    the result is the JSON the controller receives, with ``invocation`` (what -vvv prints).
    """
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes
    logged = []
    results = []
    monkeypatch.setattr(basic, 'has_journal', False)
    monkeypatch.setattr(basic.AnsibleModule, '_log_to_syslog', lambda self, msg: logged.append(msg))
    monkeypatch.setattr(basic.AnsibleModule, '_record_module_result', lambda self, o: results.append(json.dumps(o)))
    payload = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_remote_tmp='/tmp',
                   _ansible_keep_remote_files=False, _ansible_verbosity=3)
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': payload})))
    monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)
    with pytest.raises(SystemExit):
        module.main()
    return json.loads(results[-1]), logged


@pytest.mark.parametrize('form', ['dict', 'list'])
def test_secret_never_logged_nor_returned(monkeypatch, postfix_dir, tables, form):
    path = os.path.join(tables, 'sasl_passwd')
    secret = 'relayuser:Sup3r-S3cret'
    entries = ({'[smtp.example.net]:587': secret} if form == 'dict'
               else [{'key': '[smtp.example.net]:587', 'value': secret}])
    args = dict(path=path, type='hash', mode='0600', config_dir=postfix_dir, secret_entries=entries)
    seen = []
    for check_mode in (True, False, False):
        result, logged = run_logged(monkeypatch, postmap_file, args, check_mode=check_mode)
        assert not result.get('failed'), result
        assert logged and logged[0].startswith('Invoked with'), logged
        seen.append(json.dumps(result) + '\n'.join(logged))
    # A failing run (a bad mode) with the secret in its arguments.
    result, logged = run_logged(monkeypatch, postmap_file, dict(args, mode='u+rw'))
    assert result.get('failed') is True
    seen.append(json.dumps(result) + '\n'.join(logged))
    for text in seen:
        assert 'Sup3r-S3cret' not in text
    assert 'secret_entries=NOT_LOGGING_PARAMETER' in seen[0]
    assert query(postfix_dir, '[smtp.example.net]:587', 'hash:' + path) == secret
    assert mode_of(path) == 0o600 and mode_of(path + '.db') == 0o600


def test_entries_and_secret_entries_are_exclusive(run_module, postfix_dir, tables):
    res = run_module(postmap_file, dict(path=os.path.join(tables, 'a'), entries={'a': 'b'}, secret_entries={'c': 'd'},
                                        config_dir=postfix_dir))
    assert res.get('failed') is True and 'mutually exclusive' in res['msg']
    assert os.listdir(tables) == []


def test_failure_while_staging_changes_nothing(run_module, postfix_dir, tables, monkeypatch):
    """No room for the new source next to the old one (ENOSPC at mkstemp): one clear error, nothing changed."""
    path = os.path.join(tables, 'access')
    run_module(postmap_file, dict(path=path, type='hash', entries=ACCESS, config_dir=postfix_dir))
    before = snapshot(tables)
    original = tempfile.mkstemp

    def mkstemp(*a, **kw):
        if kw.get('dir') == tables:
            raise OSError(28, 'No space left on device (injected)')
        return original(*a, **kw)

    monkeypatch.setattr(tempfile, 'mkstemp', mkstemp)
    res = run_module(postmap_file, dict(path=path, type='hash', entries={'a.example': 'OK'}, config_dir=postfix_dir))
    monkeypatch.setattr(tempfile, 'mkstemp', original)
    assert res.get('failed') is True and 'No space left on device' in res['msg'] and 'Nothing was changed' in res['msg']
    assert snapshot(tables) == before
