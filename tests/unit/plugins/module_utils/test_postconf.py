# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, SubprocessRunner
from ansible_collections.estafeta.postfix.plugins.module_utils import postconf as pc

from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot


@pytest.mark.parametrize('value, expected', [
    (True, 'yes'),
    (False, 'no'),
    (0, '0'),
    (52428800, '52428800'),
    ('  padded  ', 'padded'),
    ('$myhostname ESMTP', '$myhostname ESMTP'),
    ([], ''),
    (['127.0.0.0/8', '[::1]/128'], '127.0.0.0/8, [::1]/128'),
    (['permit_mynetworks', 'check_sender_access hash:/etc/postfix/access', 'reject'],
     'permit_mynetworks, check_sender_access hash:/etc/postfix/access, reject'),
    (['a', '', '  ', 'b'], 'a, b'),
    ([1, True, 'x'], '1, yes, x'),
    ('', ''),
    (u'Se\u00f1or', u'Se\u00f1or'),
])
def test_render_value(value, expected):
    assert pc.render_value(value) == expected


@pytest.mark.parametrize('value', [None, {'a': 1}, [['nested']], [None], object()])
def test_render_value_rejects(value):
    with pytest.raises(TypeError):
        pc.render_value(value)


@pytest.mark.parametrize('value, expected', [
    ('', []),
    ('a', ['a']),
    ('127.0.0.0/8, [::1]/128 10.0.0.0/8,192.168.0.0/16', ['127.0.0.0/8', '[::1]/128', '10.0.0.0/8', '192.168.0.0/16']),
    ('  permit_mynetworks,\n\treject_unauth_destination ,, ', ['permit_mynetworks', 'reject_unauth_destination']),
    ('check_sender_access hash:/etc/postfix/access', ['check_sender_access', 'hash:/etc/postfix/access']),
    ('inline:{ a=b, c=d }, static:x', ['inline:{ a=b, c=d }', 'static:x']),
    (['a b', 'c,d'], ['a', 'b', 'c', 'd']),
])
def test_split_list(value, expected):
    assert pc.split_list(value) == expected


def test_split_list_roundtrip_with_render():
    items = ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination']
    assert pc.split_list(pc.render_value(items)) == items


def test_render_service_value():
    assert pc.render_service_value('x', ['permit_sasl_authenticated', 'reject']) == 'permit_sasl_authenticated,reject'
    assert pc.render_service_value('x', ['check_sender_access hash:/etc/postfix/a', 'reject']) == \
        'check_sender_access,hash:/etc/postfix/a,reject'
    assert pc.render_service_value('x', True) == 'yes'
    assert pc.render_service_value('x', 'postfix/submission') == 'postfix/submission'
    with pytest.raises(PostfixError, match='whitespace'):
        pc.render_service_value('smtpd_banner', 'two words')


@pytest.mark.parametrize('name', ['mynetworks', 'smtp-amavis_destination_recipient_limit', 'a.b', 'A_1'])
def test_check_name_ok(name):
    pc.check_name(name)


@pytest.mark.parametrize('name', ['', 'a b', 'a=b', 'x\n', '$x', 'a/b', '-X', '-', None])
def test_check_name_rejects(name):
    with pytest.raises(PostfixError, match='Invalid Postfix parameter name'):
        pc.check_name(name)


@pytest.mark.parametrize('text, what', [('a\nb', 'newline'), ('a\rb', 'carriage return'), ('a\x00', 'NUL'),
                                        ('a\tb', 'tab'), ('a\x1b', 'control')])
def test_check_value_rejects(text, what):
    with pytest.raises(PostfixError, match="'p'.*%s" % what):
        pc.check_value('p', text)


@pytest.mark.parametrize('service, expected', [
    ('submission/inet', ('submission', 'inet')),
    ('127.0.0.1:10025/inet', ('127.0.0.1:10025', 'inet')),
    ('smtp-amavis/unix', ('smtp-amavis', 'unix')),
])
def test_parse_service(service, expected):
    assert pc.parse_service(service) == expected


@pytest.mark.parametrize('service', ['submission', 'submission/tcp', '/inet', 'a b/inet', 'a=b/inet', '-n/inet'])
def test_parse_service_rejects(service):
    with pytest.raises(PostfixError, match='service'):
        pc.parse_service(service)


def test_parse_main_cf():
    text = ('# comment\n'
            'mynetworks = 127.0.0.0/8,\n'
            '    [::1]/128\n'
            '# a comment inside\n'
            '\t10.0.0.0/8\n'
            '\n'
            'empty =\n'
            'smtpd_banner = first\n'
            'smtpd_banner = second # not a comment\n'
            'x=y=z\n')
    assert pc.parse_main_cf(text) == {
        'mynetworks': '127.0.0.0/8, [::1]/128 10.0.0.0/8',
        'empty': '',
        'smtpd_banner': 'second # not a comment',
        'x': 'y=z',
    }


def test_parse_postconf_output_and_unused():
    assert pc.parse_postconf_output('a = b\nempty =\nc = d = e\n') == {'a': 'b', 'empty': '', 'c': 'd = e'}
    err = ('postconf: warning: /etc/postfix/main.cf: unused parameter: mynetwork=1.2.3.4\n'
           'postconf: warning: /etc/postfix/master.cf: unused parameter: smtpd_foo=bar\n'
           'postconf: warning: /etc/postfix/main.cf: unused parameter: empty=\n')
    assert pc.parse_unused(err, 'main') == {'mynetwork': '1.2.3.4', 'empty': ''}
    assert pc.parse_unused(err, 'master') == {'smtpd_foo': 'bar'}


def test_parse_services():
    out = ('smtp      inet  n       -       y       -       -       smtpd\n'
           'submission inet n - y - - smtpd -o syslog_name=postfix/submission\n'
           'relay     unix  -       -       y       -       -       smtp -o syslog_name=postfix/$service_name\n')
    assert pc.parse_services(out) == {('smtp', 'inet'), ('submission', 'inet'), ('relay', 'unix')}


def test_unknown_message():
    msg = pc.unknown_message(['mynetwork'], ['mydomain', 'mynetworks', 'mynetworks_style'])
    assert msg.startswith("Unknown Postfix parameter 'mynetwork'. Did you mean 'mynetworks'?")
    assert 'allow_unknown' in msg
    assert pc.unknown_message(['zzzzqqq'], ['mynetworks']).startswith("Unknown Postfix parameter 'zzzzqqq'. Nothing")


def test_prepare():
    assert pc.prepare({'a': ['x', 'y'], 'b': True}) == {'a': 'x, y', 'b': 'yes'}
    assert pc.prepare({'a': None, 'b': 'ignored'}, state='absent') == {'a': None, 'b': None}
    with pytest.raises(PostfixError, match="No value given for 'a'"):
        pc.prepare({'a': None})
    with pytest.raises(PostfixError, match="Invalid value for 'a'"):
        pc.prepare({'a': {'x': 1}})
    with pytest.raises(PostfixError, match='No parameter'):
        pc.prepare({})


class CountingRunner(SubprocessRunner):
    def __init__(self):
        super(CountingRunner, self).__init__()
        self.calls = []

    def _run(self, args, data=None):
        self.calls.append(args)
        return super(CountingRunner, self)._run(args, data=data)


def test_apply_roundtrip_main(postfix_dir):
    runner = CountingRunner()
    params = {'mynetworks': ['127.0.0.0/8', '[::1]/128'], 'smtpd_helo_required': True, 'message_size_limit': 1024000}
    result = pc.apply(runner, postfix_dir, params, want_diff=True)
    assert result['changed'] is True
    assert {c['name'] for c in result['changes']} == set(params)
    values = pc.parse_postconf_output(postconf(postfix_dir, '-n'))
    assert values['mynetworks'] == '127.0.0.0/8, [::1]/128'
    assert values['smtpd_helo_required'] == 'yes'
    assert values['message_size_limit'] == '1024000'
    # read, -e, warnings (-n, -M), postfix check
    assert len(runner.calls) == 5
    again = CountingRunner()
    assert pc.apply(again, postfix_dir, params)['changed'] is False
    assert len(again.calls) == 1


def test_apply_bad_input_writes_nothing(postfix_dir):
    before = snapshot(postfix_dir)
    runner = CountingRunner()
    with pytest.raises(PostfixError):
        pc.apply(runner, postfix_dir, {'good_name': 'x', 'bad name': 'y'})
    assert runner.calls == []
    assert snapshot(postfix_dir) == before


def test_deprecation_notice_is_not_a_misread_value(postfix_dir, tmp_path, monkeypatch):
    """Postfix 3.10 (Debian 13) announces that support for smtpd_tls_eecdh_grade will end; set in the same
    batch as a value with braces (${data_directory}), the notice must not be taken for a misread value.
    A postconf that adds 3.10's notice to the real one's output stands in for Postfix 3.10 here."""
    real = shutil.which('postconf', path=os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin']))
    wrapper = tmp_path / 'bin' / 'postconf'
    wrapper.parent.mkdir()
    wrapper.write_text(
        '#!/bin/sh\n'
        'dir=/etc/postfix\n'
        'prev=\n'
        'for a in "$@"; do [ "$prev" = -c ] && dir=$a; prev=$a; done\n'
        'if grep -q "^smtpd_tls_eecdh_grade" "$dir/main.cf" 2>/dev/null; then\n'
        '  echo "postconf: warning: $dir/main.cf: support for parameter \\"smtpd_tls_eecdh_grade\\" will be removed;'
        ' instead, do not specify (leave at default)" >&2\n'
        'fi\n'
        'exec %s "$@"\n' % real)
    wrapper.chmod(0o755)
    monkeypatch.setenv('PATH', '%s%s%s' % (wrapper.parent, os.pathsep, os.environ.get('PATH', '')))
    params = {'smtpd_tls_eecdh_grade': 'strong',
              'smtpd_tls_session_cache_database': 'btree:${data_directory}/smtpd_scache_test'}
    result = pc.apply(SubprocessRunner(), postfix_dir, params)
    assert result['changed'] is True
    values = pc.parse_postconf_output(postconf(postfix_dir, '-n'))
    assert values['smtpd_tls_eecdh_grade'] == 'strong'
    assert values['smtpd_tls_session_cache_database'] == 'btree:${data_directory}/smtpd_scache_test'
    # A value Postfix does misread is still refused, with the notice around.
    with pytest.raises(PostfixError, match='would not read it as written'):
        pc.apply(SubprocessRunner(), postfix_dir, {'header_checks': '{a}.b'})
