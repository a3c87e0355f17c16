# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure tests of the master.cf parser/renderer, cross-checked with the real postconf."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils import master_cf
from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError

from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf

MASTER_DIST = '/usr/share/postfix/master.cf.dist'


def dist_text():
    with open(MASTER_DIST) as f:
        return f.read()


def wanted(**kw):
    params = dict(name='submission', type='inet', private=None, unpriv='-', chroot='-', wakeup='-',
                  maxproc='-', command='smtpd', args=[], options={})
    params.update(kw)
    return master_cf.normalize_service(params)


def write_dir(tmp_path, master_text):
    conf = tmp_path / 'conf'
    conf.mkdir()
    main = '/usr/share/postfix/main.cf.debian'
    shutil.copy(main if os.path.exists(main) else '/usr/share/postfix/main.cf.dist', str(conf / 'main.cf'))
    (conf / 'master.cf').write_text(master_text)
    return str(conf)


# --- round trip -------------------------------------------------------------


def test_round_trip_debian_master_cf():
    text = dist_text()
    assert master_cf.render(master_cf.parse(text)) == text


@pytest.mark.parametrize('text', [
    '',
    '\n\n',
    'smtp inet n - y - - smtpd',  # no final newline
    'smtp inet n - y - - smtpd\r\n  -o a=b\r\n',
    '  orphan continuation\nsmtp inet n - y - - smtpd\n',
    'smtp inet n - y - - smtpd\n# inside\n\n  -o a=b\n# trailing\n\n',
    'broken entry\n',
])
def test_round_trip_odd_files(text):
    assert master_cf.render(master_cf.parse(text)) == text


def test_debian_headers_render_unchanged():
    """The canonical header layout is the one of Debian's own file."""
    for block in master_cf.parse(dist_text()):
        if block.is_entry and len(block.lines) == 1:
            assert master_cf.render_header(block.service) + '\n' == block.lines[0]


def test_parse_agrees_with_postconf(tmp_path):
    """Every entry and every -o override of Debian's master.cf, as postconf -F/-P sees them."""
    conf = write_dir(tmp_path, dist_text())
    entries = [b.service for b in master_cf.parse(dist_text()) if b.is_entry]
    fields = postconf(conf, '-F')
    for service in entries:
        prefix = '%s/%s/' % (service['name'], service['type'])
        for field, pf_name in (('private', 'private'), ('unpriv', 'unprivileged'), ('chroot', 'chroot'),
                               ('wakeup', 'wakeup'), ('maxproc', 'process_limit')):
            assert '%s%s = %s\n' % (prefix, pf_name, service[field]) in fields
    params = sorted(line for line in postconf(conf, '-P').splitlines() if line)
    ours = sorted('%s/%s/%s = %s' % (s['name'], s['type'], k, v) for s in entries for k, v in s['options'].items())
    assert params == ours
    assert len(entries) == len(postconf(conf, '-M').splitlines())


def test_interior_comments_belong_to_entry():
    text = 'smtp inet n - y - - smtpd\n# inside\n\n  -o a=b\n# trailing\n'
    blocks = master_cf.parse(text)
    assert [b.is_entry for b in blocks] == [True, False]
    assert blocks[0].text == 'smtp inet n - y - - smtpd\n# inside\n\n  -o a=b\n'
    assert blocks[0].service['options'] == {'a': 'b'}


# --- tokens ----------------------------------------------------------------


def test_split_tokens_braces():
    assert master_cf.split_tokens('a {b c} d={e f}g  {x {y} z}') == ['a', '{b c}', 'd={e f}g', '{x {y} z}']


def test_extract_braces():
    assert master_cf.extract_braces('{ a b }') == 'a b'
    assert master_cf.extract_braces('plain') == 'plain'
    assert master_cf.extract_braces('{a} b') is None
    assert master_cf.extract_braces('{a') is None


def test_parse_command_forms():
    tokens = master_cf.split_tokens(
        '-v -o a=1 -o { b = x, y } -vo c=2 -od=3 -o {e=} flags=x -o notanoption { f g }')
    options, args = master_cf.parse_command(tokens)
    assert options == [('a', '1'), ('b', 'x, y'), ('c', '2'), ('d', '3'), ('e', '')]
    assert args == ['-v', '-v', 'flags=x', '-o', 'notanoption', 'f g']


def test_parse_command_double_dash_ends_options():
    options, args = master_cf.parse_command(['--', '-o', 'a=b'])
    assert options == []
    assert args == ['--', '-o', 'a=b']


# --- desired state ----------------------------------------------------------


def test_normalize_values():
    svc = wanted(private=False, chroot=True, unpriv='-', maxproc=2, wakeup='1000?', options={
        'a': True, 'b': False, 'c': ['permit_mynetworks', 'reject'], 'd': '', 'e': None, 'f': 1200,
        'g': 'x y', 'h': ['check_policy_service unix:private/p', 'reject']})
    assert (svc['private'], svc['chroot'], svc['unpriv'], svc['maxproc'], svc['wakeup']) == ('n', 'y', '-', '2', '1000?')
    assert svc['options'] == {'a': 'yes', 'b': 'no', 'c': 'permit_mynetworks,reject', 'd': '', 'e': '',
                              'f': '1200', 'g': 'x y', 'h': 'check_policy_service unix:private/p, reject'}


@pytest.mark.parametrize('kw, culprit', [
    (dict(type='inetx'), 'type'),
    (dict(name='two words'), 'name'),
    (dict(name='#x'), 'name'),
    (dict(command=None), 'command'),
    (dict(private='maybe'), 'private'),
    (dict(chroot='yy'), 'chroot'),
    (dict(maxproc='x'), 'maxproc'),
    (dict(maxproc='-1'), 'maxproc'),
    (dict(maxproc=True), 'maxproc'),
    (dict(wakeup='60s'), 'wakeup'),
    (dict(options={'a=b': 'c'}), "'a=b'"),
    (dict(options={'a b': 'c'}), "'a b'"),
    (dict(options={'a': 'x\ny'}), 'options.a'),
    (dict(options={'a': 'x {y'}), 'options.a'),
    (dict(options={'a': {'b': 'c'}}), 'options.a'),
    (dict(args=['-o', 'a=b']), 'args[0]'),
    (dict(args=['-vo']), 'args[0]'),
    (dict(args=['x\ny']), 'args[0]'),
    (dict(args=['']), 'args[0]'),
    (dict(args=['x', '{y']), 'args[1]'),
])
def test_normalize_rejects(kw, culprit):
    with pytest.raises(PostfixError) as exc:
        wanted(**kw)
    assert culprit in exc.value.msg


def test_args_after_non_option_may_contain_o():
    svc = wanted(command='pipe', args=['flags=R', 'argv=/bin/x', '-o', 'two words', '#hash'])
    assert svc['args'] == ['flags=R', 'argv=/bin/x', '-o', 'two words', '#hash']
    lines = master_cf.render_entry(svc)
    assert lines[1] == '  flags=R argv=/bin/x -o { two words } { #hash }\n'
    back = master_cf.parse(''.join(lines))[0].service
    assert master_cf.same_service(back, svc)


# --- rendering and editing ----------------------------------------------------


def test_render_entry_canonical():
    svc = wanted(private='n', chroot='y', options={'a': 'b', 'c': '', 'd': 'x y'}, args=['-v'])
    assert master_cf.render_entry(svc) == [
        'submission inet n       -       y       -       -       smtpd\n',
        '  -o a=b\n',
        '  -o c=\n',
        '  -o { d = x y }\n',
        '  -v\n',
    ]


def test_same_service_is_semantic():
    text = ('submission   inet n - y - - smtpd -o {smtpd_client_restrictions = permit_sasl_authenticated,  reject}\n'
            '\t-o   b=1 -v\n')
    old = master_cf.parse(text)[0].service
    new = wanted(private='n', chroot='y', args=['-v'],
                 options={'b': 1, 'smtpd_client_restrictions': ['permit_sasl_authenticated', 'reject']})
    assert master_cf.same_service(old, new)
    assert master_cf.edit(text, 'submission', 'inet', new)[0] == text
    assert not master_cf.same_service(old, wanted(private='n', chroot='y', args=['-v'], options={'b': 1}))


def test_edit_keeps_interior_comments():
    text = ('head unix - - n - - x\n'
            'svc unix - - n - - smtp\n'
            '  -o a=1\n'
            '# about b\n'
            '  -o b=2\n'
            '# about gone\n'
            '  -o gone=3\n'
            '# after\n'
            'tail unix - - n - - y\n')
    svc = wanted(name='svc', type='unix', chroot='n', command='smtp', options={'a': 1, 'b': 5})
    new, before, after = master_cf.edit(text, 'svc', 'unix', svc)
    assert before['options'] == {'a': '1', 'b': '2', 'gone': '3'}
    assert after['options'] == {'a': '1', 'b': '5'}
    assert new == ('head unix - - n - - x\n'
                   'svc       unix  -       -       n       -       -       smtp\n'
                   '# about gone\n'
                   '  -o a=1\n'
                   '# about b\n'
                   '  -o b=5\n'
                   '# after\n'
                   'tail unix - - n - - y\n')


def test_edit_inserts_after_commented_example():
    text = dist_text()
    new, before, after = master_cf.edit(text, 'smtpd', 'pass', wanted(name='smtpd', type='pass', chroot='y'))
    assert before is None
    assert '#smtpd     pass  -       -       y       -       -       smtpd\n' \
           'smtpd     pass  -       -       y       -       -       smtpd\n' \
           '#dnsblog' in new
    new, dummy, dummy2 = master_cf.edit(text, 'submission', 'inet', wanted(private='n', chroot='y'))
    assert ('#  -o milter_macro_daemon_name=ORIGINATING\n'
            'submission inet n       -       y       -       -       smtpd\n'
            '# Choose one: enable submissions') in new


def test_edit_appends_and_adds_newline():
    new, dummy, dummy2 = master_cf.edit('a unix - - n - - b', 'x', 'unix', wanted(name='x', type='unix'))
    assert new == 'a unix - - n - - b\nx         unix  -       -       -       -       -       smtpd\n'


def test_edit_absent_and_duplicates():
    text = 'x unix - - n - - a\n  -o a=1\n# keep\ny unix - - n - - b\nx unix - - n - - c\n'
    new, before, after = master_cf.edit(text, 'x', 'unix', None)
    assert new == '# keep\ny unix - - n - - b\n'
    assert before['command'] == 'a' and after is None
    new, before, after = master_cf.edit(text, 'x', 'unix', master_cf.parse(text)[0].service)
    assert new == 'x unix - - n - - a\n  -o a=1\n# keep\ny unix - - n - - b\n'
    assert master_cf.edit('', 'x', 'unix', None) == ('', None, None)


def test_new_warnings_ignores_line_numbers():
    before = ['postconf: warning: /etc/postfix/master.cf: line 3: x', 'w1']
    after = ['postconf: warning: /etc/postfix/master.cf: line 9: x', 'w1', 'w2']
    assert master_cf.new_warnings(before, after) == ['w2']


def test_public_strips_private_keys():
    assert '_option_list' not in master_cf.public(wanted())
    assert master_cf.public(None) is None
