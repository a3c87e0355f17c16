# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, SubprocessRunner
from ansible_collections.estafeta.postfix.plugins.module_utils import postmap as pm


def settle_dir(config_dir):
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(os.path.join(config_dir, name), (past, past))


# -- normalize_entries ----------------------------------------------------------------------

def test_normalize_dict_and_list_keep_order():
    assert pm.normalize_entries({'b.com': 'OK', 'a.com': 'REJECT'}, 'hash') == [('b.com', 'OK'), ('a.com', 'REJECT')]
    assert pm.normalize_entries([{'key': 'z', 'value': 1}, {'key': 'a', 'value': True}], 'hash') == [('z', '1'), ('a', 'yes')]


def test_normalize_list_values_are_joined():
    assert pm.normalize_entries({'sales@x': ['a@y', 'b@y']}, 'hash') == [('sales@x', 'a@y, b@y')]


def test_normalize_strips_value_and_dedupes_identical():
    assert pm.normalize_entries([{'key': 'a', 'value': ' OK '}, {'key': 'a', 'value': 'OK'}], 'hash') == [('a', 'OK')]


@pytest.mark.parametrize('entries, table_type, culprit', [
    ({'bad key': 'OK'}, 'hash', 'bad key'),
    ({'': 'OK'}, 'hash', 'empty key'),
    ({'a': ''}, 'hash', "'a'"),
    ({'a': None}, 'hash', "'a'"),
    ({'a': 'x\ny'}, 'hash', "'a'"),
    ({'a\nb': 'x'}, 'hash', 'line break'),
    ({'#a': 'x'}, 'hash', '#a'),
    ({'a:': 'x'}, 'hash', 'a:'),
    ([{'key': 'a', 'value': 'x'}, {'key': 'a', 'value': 'y'}], 'hash', "'a'"),
    ([{'key': 'A', 'value': 'x'}, {'key': 'a', 'value': 'y'}], 'hash', 'lower case'),
    ({'/foo/ bar': 'x'}, 'pcre', '/foo/ bar'),
    ({'foo': 'x'}, 'pcre', 'foo'),
    ({'10.0.0.0/8 x': 'OK'}, 'cidr', '10.0.0.0/8 x'),
    ('a b', 'hash', 'entries must be'),
    ([{'key': 'a'}], 'hash', "'a'"),
    ([{'key': 'a', 'value': 'b', 'other': 1}], 'hash', 'other'),
    (['a'], 'hash', 'entries[0]'),
])
def test_normalize_rejects(entries, table_type, culprit):
    with pytest.raises(PostfixError) as exc:
        pm.normalize_entries(entries, table_type)
    assert culprit in exc.value.msg


def test_normalize_patterns_may_hold_spaces():
    pairs = pm.normalize_entries([{'key': '/^Subject: buy now/i', 'value': 'REJECT no spam'}], 'pcre')
    assert pairs == [('/^Subject: buy now/i', 'REJECT no spam')]


def test_normalize_absent_accepts_keys():
    assert pm.normalize_entries(['a', {'key': 'b'}], 'hash', state='absent') == [('a', None), ('b', None)]


def test_normalize_alias_key_with_colon():
    with pytest.raises(PostfixError):
        pm.normalize_entries({'a:b': 'x'}, 'hash', alias=True)


# -- parsing and rendering ------------------------------------------------------------------

def test_split_pattern():
    assert pm.split_pattern('/a b/i REJECT x') == ('/a b/i', 'REJECT x')
    assert pm.split_pattern(r'/a\/b/ OK') == (r'/a\/b/', 'OK')
    assert pm.split_pattern('!/x/ DUNNO') == ('!/x/', 'DUNNO')
    assert pm.split_pattern('/open') == (None, '/open')


def test_parse_continuation_and_comments():
    text = '# head\nk v1\n# inner\n  v2\n\nother  x\n'
    recs = pm.parse_table(text, 'hash')
    entries = [(r.key, r.value) for r in recs if r.key]
    assert entries == [('k', 'v1  v2'), ('other', 'x')]
    assert ''.join(r.text for r in recs) == text
    assert [r.lineno for r in recs if r.key] == [2, 6]


def test_parse_pcre_and_if_blocks():
    text = 'if /^From:/\n/a b/ REJECT x\nendif\n'
    recs = pm.parse_table(text, 'pcre')
    assert [(r.key, r.value) for r in recs] == [(None, None), ('/a b/', 'REJECT x'), (None, None)]


def test_parse_alias():
    recs = pm.parse_table('root: a, b\npostmaster:root\n', 'hash', alias=True)
    assert [(r.key, r.value) for r in recs] == [('root', 'a, b'), ('postmaster', 'root')]


def test_render_aligned_and_header():
    text = pm.render_table([('a', 'OK'), ('longer.key', 'REJECT')])
    assert text == pm.HEADER + 'a          OK\nlonger.key REJECT\n'
    assert pm.render_table([('root', 'x')], alias=True) == pm.HEADER + 'root: x\n'


def test_apply_entries_partial():
    text = '# mine\nA.com OK\nb.com REJECT\nb.com DUPLICATE\nc.com   REJECT\n'
    recs = pm.parse_table(text, 'hash')
    out, added, removed, updated = pm.apply_entries(recs, [('a.com', 'OK'), ('b.com', 'OK'), ('d.com', 'REJECT')], 'hash')
    assert out == '# mine\nA.com OK\nb.com OK\nc.com   REJECT\nd.com REJECT\n'
    assert (added, removed, updated) == (['d.com'], ['b.com'], ['b.com'])
    out, added, removed, updated = pm.apply_entries(recs, [('c.com', None)], 'hash', state='absent')
    assert out == '# mine\nA.com OK\nb.com REJECT\nb.com DUPLICATE\n'
    assert removed == ['c.com']


def test_apply_entries_adds_newline_at_eof():
    recs = pm.parse_table('a OK', 'hash')
    assert pm.apply_entries(recs, [('b', 'OK')], 'hash')[0] == 'a OK\nb OK\n'


def test_mask_text():
    assert pm.mask_text('# c\n[relay]:587  user:pw\n', 'hash') == '# c\n[relay]:587  ********\n'


def test_parse_mode():
    assert pm.parse_mode('0600') == 0o600
    assert pm.parse_mode('644') == 0o644
    assert pm.parse_mode(0o640) == 0o640
    assert pm.parse_mode(None) is None
    for bad in ('u+rw', '0999', True, 0o17777):
        with pytest.raises(PostfixError):
            pm.parse_mode(bad)


def test_resolve_user_group():
    assert pm.resolve_user('root') == 0
    assert pm.resolve_group('0') == 0
    with pytest.raises(PostfixError):
        pm.resolve_user('no-such-user-estafeta')


# -- PostmapFile with the real binaries -------------------------------------------------------

def test_postmapfile_invalid_regexp_names_entry(postfix_dir, tmp_path):
    past = time.time() - 60
    os.utime(os.path.join(postfix_dir, 'main.cf'), (past, past))
    path = str(tmp_path / 'checks')
    table = pm.PostmapFile(SubprocessRunner(), path, 'regexp', config_dir=postfix_dir,
                           entries=[{'key': '/ok/', 'value': 'OK'}, {'key': '/bad(/', 'value': 'REJECT'}])
    with pytest.raises(PostfixError) as exc:
        table.run()
    assert "'/bad(/'" in exc.value.msg and path in exc.value.msg
    assert os.listdir(str(tmp_path)) == ['postfix']


def test_postmapfile_rejects_alias_for_text_type(postfix_dir, tmp_path):
    with pytest.raises(PostfixError):
        pm.PostmapFile(SubprocessRunner(), str(tmp_path / 'a'), 'pcre', entries={}, alias=True, config_dir=postfix_dir)


def test_postmapfile_relative_path(postfix_dir):
    with pytest.raises(PostfixError):
        pm.PostmapFile(SubprocessRunner(), 'access', 'hash', entries={}, config_dir=postfix_dir)


def test_database_files():
    assert pm.database_files('/x/a', 'hash') == ['/x/a.db']
    assert pm.database_files('/x/a', 'dbm') == ['/x/a.dir', '/x/a.pag']
    assert pm.database_files('/x/a', 'pcre') == []


# -- What Postfix reads from a source, and what a database holds ------------------------------

INDEXED = ['hash', 'btree', 'lmdb', 'cdb']
# Sources with the corners of Postfix's reading: continuation lines (their leading whitespace kept),
# comments and blank lines inside an entry, a first line that starts with whitespace (dropped), a
# NUL byte (ends the line), duplicates (the first wins), keys folded to lower case (Unicode too),
# tabs inside values, Unicode separators, CR LF line ends, keys with quotes and backslashes.
SOURCES = {
    'plain': 'a.example OK\nb.example REJECT no\n',
    'continuation': 'k v1 \n# inner comment\n\n  v2\n\tv3\nother  x\n',
    'orphan-first-line': '  orphan value\n    more\nreal ok\n',
    'nul': 'a x\x00y\nb z\n',
    'duplicates': 'dup first\nDUP second\nDup third\n',
    'folding': 'Foo.Example OK\nÑANDÚ.example sí\nStraße.example x\n',
    'tabs': 'k\tv\tw\nl \t  spaced   value \t \n',
    'separators': 'a x\u2028y\u2029z\u0085\nb\u2028c v\n\u00a0key v\n',
    'crlf': 'a OK\r\nb REJECT\r\n',
    'no-value': 'lonely\nok value\n',
    'quotes': '"a b" x\na\\ b y\nc\\ z\n"half x\nq"r"s t\n',
    'c0-in-hand-written-lines': 'a\x0bb c\nd\x0ce f\ng\x1ch i\n\x0b\x0c\nj k\x1d\n',
}


def postfix_dump(conf, text, table_type, tmp_path, alias=False):
    path = str(tmp_path / 'table')
    with open(path, 'wb') as f:
        f.write(text.encode('utf-8', 'surrogateescape'))
    subprocess.run(['/usr/sbin/' + ('postalias' if alias else 'postmap'), '-c', conf, '%s:%s' % (table_type, path)],
                   capture_output=True, check=True)
    return path, pm.dump_database(SubprocessRunner(), conf, path, table_type, alias)


@pytest.mark.parametrize('name', sorted(SOURCES))
def test_source_entries_agree_with_postmap(postfix_dir, tmp_path, name):
    """The emulation of Postfix's reading gives what postmap itself stores (or says it is not sure)."""
    settle_dir(postfix_dir)
    text = SOURCES[name]
    path, stored = postfix_dump(postfix_dir, text, 'hash', tmp_path)
    expected, certain = pm.source_entries(text, 'hash')
    if certain:
        assert expected == stored
    else:
        assert name == 'quotes'
    assert pm.database_matches_source(SubprocessRunner(), postfix_dir, path, 'hash')


ALIASES = {
    'simple': 'root: admin, ops@example.com\npostmaster:root\nabuse :  root\n',
    'spacing': 'root: admin,  ops@example.com\nz: a   b\n',
    'specials': '"foo bar": "|/bin/echo hi"\nx: y (comment here)\nw: <q@example.com>\nv: :include:/etc/foo\n',
    'folding': 'PostMaster: root\nRoot: admin\n',
}


@pytest.mark.parametrize('name', sorted(ALIASES))
def test_alias_entries_agree_with_postalias(postfix_dir, tmp_path, name):
    settle_dir(postfix_dir)
    text = ALIASES[name]
    path, stored = postfix_dump(postfix_dir, text, 'hash', tmp_path, alias=True)
    assert '@' not in stored and 'YP_LAST_MODIFIED' not in stored
    expected, certain = pm.source_entries(text, 'hash', alias=True)
    if certain:
        assert expected == stored
    else:
        assert name in ('spacing', 'specials')
    assert pm.database_matches_source(SubprocessRunner(), postfix_dir, path, 'hash', alias=True)


def test_folding_without_smtputf8(postfix_dir, tmp_path):
    """With smtputf8_enable = no, Postfix folds ASCII letters only; the check asks postconf."""
    with open(os.path.join(postfix_dir, 'main.cf'), 'a') as f:
        f.write('smtputf8_enable = no\n')
    settle_dir(postfix_dir)
    text = SOURCES['folding']
    path, stored = postfix_dump(postfix_dir, text, 'hash', tmp_path)
    assert 'ÑandÚ.example' in stored and 'straße.example' in stored
    assert pm.source_entries(text, 'hash', utf8=False)[0] == stored
    assert pm.utf8_enabled(SubprocessRunner(), postfix_dir) is False
    assert pm.database_matches_source(SubprocessRunner(), postfix_dir, path, 'hash')


def _postmap(conf, *args, **kw):
    return subprocess.run(['/usr/sbin/postmap', '-c', conf] + list(args), capture_output=True, check=True, **kw)


@pytest.mark.parametrize('table_type', INDEXED)
def test_database_matches_source_by_content(postfix_dir, tmp_path, table_type):
    settle_dir(postfix_dir)
    runner = SubprocessRunner()
    path = str(tmp_path / 'access')
    other = str(tmp_path / 'other')
    with open(path, 'w') as f:
        f.write('a.example OK\nB.example REJECT\n')
    with open(other, 'w') as f:
        f.write('a.example OK\nb.example REJECT\nc.example OK\n')
    spec = '%s:%s' % (table_type, path)
    assert not pm.database_matches_source(runner, postfix_dir, path, table_type)  # no database yet
    _postmap(postfix_dir, spec)
    assert pm.database_matches_source(runner, postfix_dir, path, table_type)
    db = pm.database_files(path, table_type)[0]
    # Timestamps do not matter, content does.
    os.utime(db, (1, 1))
    assert pm.database_matches_source(runner, postfix_dir, path, table_type)
    # A database built from another file (newer than the source, other content).
    _postmap(postfix_dir, '%s:%s' % (table_type, other))
    os.rename(pm.database_files(other, table_type)[0], db)
    assert not pm.database_matches_source(runner, postfix_dir, path, table_type)
    _postmap(postfix_dir, spec)
    if table_type != 'cdb':  # a CDB database cannot be updated in place
        _postmap(postfix_dir, '-i', spec, input=b'new.example OK\n')
        assert not pm.database_matches_source(runner, postfix_dir, path, table_type)
        _postmap(postfix_dir, spec)
        _postmap(postfix_dir, '-d', 'a.example', spec)
        assert not pm.database_matches_source(runner, postfix_dir, path, table_type)
        _postmap(postfix_dir, spec)
    # A changed source with the old database.
    with open(path, 'a') as f:
        f.write('d.example OK\n')
    assert not pm.database_matches_source(runner, postfix_dir, path, table_type)
    os.unlink(path)
    assert not pm.database_matches_source(runner, postfix_dir, path, table_type)


def test_database_matches_source_text_types(tmp_path):
    assert pm.database_matches_source(SubprocessRunner(), str(tmp_path), str(tmp_path / 'x'), 'pcre') is True


def test_read_cdb(postfix_dir, tmp_path):
    settle_dir(postfix_dir)
    path, stored = postfix_dump(postfix_dir, SOURCES['continuation'] + SOURCES['folding'], 'cdb', tmp_path)
    assert stored == pm.source_entries(SOURCES['continuation'] + SOURCES['folding'], 'cdb')[0]
    with open(path + '.cdb', 'r+b') as f:
        f.truncate(100)
    assert pm.read_cdb(path + '.cdb') is None
    assert not pm.database_matches_source(SubprocessRunner(), postfix_dir, path, 'cdb')


@pytest.mark.parametrize('line, pair', [
    ('k v', ('k', 'v')),
    ('k\t v  w \t', ('k', 'v  w')),
    ('"a b" x', ('"a b"', 'x')),
    ('a\\ b y', ('a\\ b', 'y')),
    ('c\\ z', None),
    ('"half x', None),
    ('lonely', None),
    ('k\u2028x v', ('k\u2028x', 'v')),
])
def test_postmap_split(line, pair):
    assert pm.postmap_split(line) == pair


@pytest.mark.parametrize('key', ['a"b', 'end\\', 'x"y"z"'])
def test_keys_postmap_would_read_differently_are_refused(key):
    with pytest.raises(PostfixError) as exc:
        pm.normalize_entries({key: 'OK'}, 'hash')
    assert repr(key) in exc.value.msg


@pytest.mark.parametrize('key', ['a"b"', '"quoted"@example.com', 'back\\slash'])
def test_keys_postmap_stores_as_given(key):
    assert pm.normalize_entries({key: 'OK'}, 'hash') == [(key, 'OK')]


@pytest.mark.parametrize('key', ['a@b', 'a(b)', '"a"', 'a,b', 'a<b>', 'a;b', 'a[b]', 'a\\b', 'a%b'])
def test_alias_names_postalias_would_rewrite_are_refused(key):
    with pytest.raises(PostfixError) as exc:
        pm.normalize_entries({key: 'root'}, 'hash', alias=True)
    assert repr(key) in exc.value.msg


def test_fold_key():
    assert pm.fold_key('Straße.Example') == 'strasse.example'
    assert pm.fold_key('Straße.Example', utf8=False) == 'straße.example'
    assert pm.fold_key('ÑANDÚ', utf8=False) == 'ÑandÚ'
