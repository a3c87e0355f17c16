# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, SubprocessRunner
from ansible_collections.estafeta.postfix.plugins.module_utils import postmap as pm


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


def test_secret_values():
    assert pm.secret_values({'a': 'pw1', 'b': ['x', 'y']}) == set(['pw1', 'x', 'y', 'x, y'])
    assert pm.secret_values([{'key': 'a', 'value': 's3'}]) == set(['s3'])


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
