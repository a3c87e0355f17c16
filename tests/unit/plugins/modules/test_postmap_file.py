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
    return proc.stdout.strip() if proc.returncode == 0 else None


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
    args = dict(path=path, type='hash', state='absent', config_dir=postfix_dir)
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
    args = dict(path=path, type='hash', secret=True, mode='0600', config_dir=postfix_dir,
                entries={'[smtp.example.net]:587': secret})
    res = four_steps(run_module, args, tables)
    dumped = json.dumps(res)
    assert 'Sup3r-S3cret' not in dumped
    assert res['diff']['after'].endswith('[smtp.example.net]:587 ********\n')
    assert res['added'] == ['[smtp.example.net]:587']
    assert mode_of(path) == 0o600 and mode_of(path + '.db') == 0o600
    assert query(postfix_dir, '[smtp.example.net]:587', 'hash:' + path) == secret

    res = run_module(postmap_file, dict(args, entries={'[smtp.example.net]:587': 'relayuser:0ther-Secret'}))
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
    """A no-op re-run of a 10,000-entry table reads and compares only: it runs no postmap and
    leaves the source and the database as they are (file identity and timestamps)."""
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
    assert not [c for c in commands if os.path.basename(c[0]) == 'postmap'], commands
    for name, before in files.items():
        after = os.stat(os.path.join(tables, name))
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size), name
    assert query(postfix_dir, 'user09999@example.org', 'hash:' + path) == 'REJECT'
