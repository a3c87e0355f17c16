# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postfix_info helpers: version parsing, table references, table state with real postmap."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, SubprocessRunner
from ansible_collections.estafeta.postfix.plugins.module_utils.info import (
    find_tables,
    gather,
    parse_version,
    table_status,
)

ENV = {'LANG': 'C', 'PATH': os.environ.get('PATH', '')}


def postmap(config_dir, spec):
    subprocess.run(['/usr/sbin/postmap', '-c', config_dir, spec], check=True, env=ENV)


def age(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


@pytest.mark.parametrize('text, expected', [
    ('3.7.11\n', ('3.7.11', [3, 7, 11])),
    ('3.10.13', ('3.10.13', [3, 10, 13])),
    ('3.11-20250101', ('3.11-20250101', [3, 11])),
    ('weird', ('weird', [])),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_find_tables():
    values = {
        'alias_maps': 'hash:/etc/aliases',
        'smtpd_recipient_restrictions': 'permit_mynetworks, check_recipient_access hash:/etc/postfix/access,'
                                        'reject_unauth_destination',
        'virtual_alias_maps': 'proxy:lmdb:/etc/postfix/virtual unionmap:{cdb:/etc/postfix/a, pcre:/etc/postfix/b}',
        'submission/inet/smtpd_sender_restrictions': 'check_sender_access,hash:/etc/postfix/access',
        'relay_domains': '$mydestination static:all inline:{ a=b } texthash:relative/path',
        'smtp_sasl_password_maps': 'ldap:/etc/postfix/ldap-sasl.cf',
        'bogus': 'myhash:/x, hash:/etc/aliases',
    }
    tables = find_tables(values)
    assert list(tables) == ['hash:/etc/aliases', 'hash:/etc/postfix/access', 'lmdb:/etc/postfix/virtual',
                            'cdb:/etc/postfix/a', 'pcre:/etc/postfix/b', 'ldap:/etc/postfix/ldap-sasl.cf']
    assert tables['hash:/etc/postfix/access']['used_by'] == [
        'smtpd_recipient_restrictions', 'submission/inet/smtpd_sender_restrictions']
    assert tables['hash:/etc/aliases']['used_by'] == ['alias_maps', 'bogus']
    assert tables['lmdb:/etc/postfix/virtual']['type'] == 'lmdb'


def test_table_status(tmp_path, postfix_dir):
    d = str(tmp_path)
    fresh, stale, nodb = os.path.join(d, 'fresh'), os.path.join(d, 'stale'), os.path.join(d, 'nodb')
    for path in (fresh, stale, nodb):
        with open(path, 'w') as f:
            f.write('key value\n')
    postmap(postfix_dir, 'hash:' + fresh)
    postmap(postfix_dir, 'lmdb:' + stale)
    age(stale + '.lmdb', 10)
    assert table_status('hash', fresh) == {'indexed': True, 'source_exists': True, 'database': fresh + '.db',
                                           'database_exists': True, 'stale': False, 'missing': False}
    status = table_status('lmdb', stale)
    assert status['stale'] is True and status['database'] == stale + '.lmdb' and status['missing'] is False
    status = table_status('cdb', nodb)
    assert status['stale'] is True and status['database_exists'] is False and status['missing'] is True
    status = table_status('hash', os.path.join(d, 'absent'))
    assert status['stale'] is False and status['missing'] is True and status['source_exists'] is False
    assert table_status('pcre', nodb) == {'indexed': False, 'source_exists': True, 'database': None,
                                          'database_exists': None, 'stale': False, 'missing': False}
    assert table_status('regexp', os.path.join(d, 'absent'))['missing'] is True
    dbm = table_status('dbm', nodb)
    assert dbm['database'] == nodb + '.pag' and dbm['stale'] is True


def test_gather_subsets_and_errors(postfix_dir, tmp_path):
    runner = SubprocessRunner()
    res = gather(runner, postfix_dir, ['version'])
    assert set(res) == set(['gathered', 'config_dir', 'version', 'version_info'])
    assert res['version_info'][:1] == [3]
    res = gather(runner, postfix_dir, ['services', 'parameters'])
    assert res['gathered'] == ['parameters', 'services']
    assert ('smtp', 'inet') in [(s['name'], s['type']) for s in res['services']]
    assert res['parameters']['compatibility_level']
    with pytest.raises(PostfixError, match='Unknown gather subset'):
        gather(runner, postfix_dir, ['versions'])
    with pytest.raises(PostfixError, match='does not exist'):
        gather(runner, str(tmp_path / 'nowhere'))
    with pytest.raises(PostfixError, match='has no main.cf'):
        gather(runner, str(tmp_path))
