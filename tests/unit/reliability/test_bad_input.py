# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input to the modules: a clear error that names the culprit, and nothing written.

Every case runs the module in check mode and for real against a populated configuration directory
(main.cf and master.cf with hand edits, an access table with its database, a PCRE table) and
compares every file in it, byte for byte, before and after. Unusual input that Postfix accepts
(``#``, non-ASCII text, a 1 MB table value) is shown to round-trip idempotently instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from ansible.module_utils.common import process

from ansible_collections.estafeta.postfix.plugins.modules import master_service, postconf_set, postmap_file, restrictions
from ansible_collections.estafeta.postfix.tests.unit.conftest import SBIN, snapshot
from ansible_collections.estafeta.postfix.tests.unit.reliability.conftest import copy_dir, module_env, postconf_ok, run_process, settle

MODULES = {m.__name__.rsplit('.', 1)[-1]: m for m in (postconf_set, postmap_file, master_service, restrictions)}

Bad = collections.namedtuple('Bad', 'id module what args culprits')


def bad(case_id, module, what, args, *culprits):
    return pytest.param(Bad(case_id, module, what, args, culprits), id=case_id)


BIG = 'x' * (1024 * 1024)

BAD = [
    # postconf_set
    bad('B01', 'postconf_set', 'postconf_set: option name typo (vaule instead of value)',
        {'name': 'smtpd_banner', 'vaule': 'x'}, 'vaule'),
    bad('B02', 'postconf_set', 'postconf_set: Postfix parameter name typo (mesage_size_limit)',
        {'name': 'mesage_size_limit', 'value': 1000}, "'mesage_size_limit'", "'message_size_limit'"),
    bad('B03', 'postconf_set', 'postconf_set: value with a newline that smuggles a second parameter',
        {'name': 'smtpd_banner', 'value': 'hi\nrelayhost = [evil.example]'}, "'smtpd_banner'", 'newline'),
    bad('B04', 'postconf_set', 'postconf_set: value with a carriage return',
        {'name': 'smtpd_banner', 'value': 'hi\rthere'}, "'smtpd_banner'", 'carriage return'),
    bad('B05', 'postconf_set', 'postconf_set: value with a NUL byte',
        {'name': 'smtpd_banner', 'value': 'hi\x00there'}, "'smtpd_banner'", 'NUL'),
    bad('B06', 'postconf_set', 'postconf_set: 1 MB value (longer than a command-line argument may be)',
        {'name': 'smtpd_banner', 'value': BIG}, 'smtpd_banner'),
    bad('B07', 'postconf_set', 'postconf_set: parameter name starting with "-" (would reach postconf as an option)',
        {'name': '-e', 'value': 'x'}, "'-e'"),
    bad('B08', 'postconf_set', 'postconf_set: parameter name with "=" and a space',
        {'name': 'relayhost = x', 'value': 'y'}, "'relayhost = x'"),
    bad('B09', 'postconf_set', 'postconf_set: value of the wrong type (a mapping)',
        {'name': 'smtpd_banner', 'value': {'a': 1}}, "'smtpd_banner'"),
    bad('B10', 'postconf_set', 'postconf_set: state=present without a value',
        {'name': 'smtpd_banner'}, 'value', 'smtpd_banner'),
    bad('B11', 'postconf_set', 'postconf_set: batch of two where one name is a typo (all or nothing)',
        {'params': {'message_size_limit': 1000, 'mydestinaton': 'localhost'}}, "'mydestinaton'", "'mydestination'"),
    bad('B12', 'postconf_set', 'postconf_set: service of an invalid type (submission/tcp)',
        {'service': 'submission/tcp', 'params': {'syslog_name': 'x'}}, "'tcp'"),
    bad('B13', 'postconf_set', 'postconf_set: override for a service that master.cf does not define',
        {'service': 'nosuch/inet', 'params': {'syslog_name': 'x'}}, 'nosuch/inet'),
    bad('B14', 'postconf_set', 'postconf_set: master.cf override value with whitespace',
        {'service': 'submission/inet', 'params': {'smtpd_banner': 'two words'}}, "'smtpd_banner'", 'whitespace'),
    bad('B15', 'postconf_set', 'postconf_set: master.cf override value with a newline',
        {'service': 'submission/inet', 'params': {'syslog_name': 'a\n  -o smtpd_tls_security_level=none'}},
        "'syslog_name'", 'newline'),
    # postmap_file
    bad('B16', 'postmap_file', 'postmap_file: option name typo (entires instead of entries); Ansible reports its first '
        'validation error, the missing entries',
        {'path': '{conf}/access', 'type': 'hash', 'entires': {'a.example': 'OK'}}, 'entries'),
    bad('B17', 'postmap_file', 'postmap_file: key with whitespace in a hash table',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'bad key.example': 'REJECT'}}, "'bad key.example'"),
    bad('B18', 'postmap_file', 'postmap_file: the same key twice with different values',
        {'path': '{conf}/access', 'type': 'hash',
         'entries': [{'key': 'dup.example', 'value': 'OK'}, {'key': 'dup.example', 'value': 'REJECT'}]}, "'dup.example'"),
    bad('B19', 'postmap_file', 'postmap_file: two keys that differ only in case (Postfix folds them to one)',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'Spam.Example': 'OK', 'spam.example': 'REJECT'}},
        'spam.example'),
    bad('B20', 'postmap_file', 'postmap_file: empty value',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': ''}}, "'a.example'"),
    bad('B21', 'postmap_file', 'postmap_file: null value',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': None}}, "'a.example'"),
    bad('B22', 'postmap_file', 'postmap_file: key with a newline',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example\nb.example': 'OK'}}, 'a.example'),
    bad('B23', 'postmap_file', 'postmap_file: value with a newline that smuggles a second entry',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': 'OK\nevil.example OK'}}, "'a.example'"),
    bad('B24', 'postmap_file', 'postmap_file: key starting with "#" (the line would become a comment)',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'#a.example': 'OK'}}, "'#a.example'"),
    bad('B25', 'postmap_file', 'postmap_file: invalid regexp table (unbalanced parenthesis)',
        {'path': '{conf}/header_checks.regexp', 'type': 'regexp', 'entries': [{'key': '/^Subject: (foo/', 'value': 'REJECT'}]},
        '/^Subject: (foo/'),
    bad('B26', 'postmap_file', 'postmap_file: invalid PCRE table replacing a valid one (bad group syntax)',
        {'path': '{conf}/header_checks.pcre', 'type': 'pcre',
         'entries': [{'key': '/^Subject:.*viagra/', 'value': 'REJECT no spam'}, {'key': '/(?<bad/', 'value': 'REJECT'}]},
        '/(?<bad/'),
    bad('B27', 'postmap_file', 'postmap_file: regexp key without the /pattern/ delimiters',
        {'path': '{conf}/header_checks.pcre', 'type': 'pcre', 'entries': {'^Subject: x': 'REJECT'}}, '^Subject: x'),
    bad('B28', 'postmap_file', 'postmap_file: invalid CIDR table (prefix length /33)',
        {'path': '{conf}/clients.cidr', 'type': 'cidr', 'entries': {'10.0.0.0/33': 'REJECT'}}, '10.0.0.0/33'),
    bad('B29', 'postmap_file', 'postmap_file: unknown table type (hsh)',
        {'path': '{conf}/access', 'type': 'hsh', 'entries': {'a.example': 'OK'}}, 'hsh'),
    bad('B30', 'postmap_file', 'postmap_file: mode that is not an octal string',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': 'OK'}, 'mode': 'u+rw'}, 'mode', 'u+rw'),
    bad('B31', 'postmap_file', 'postmap_file: owner that does not exist',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': 'OK'}, 'owner': 'no-such-user-x'},
        'no-such-user-x'),
    bad('B32', 'postmap_file', 'postmap_file: relative path',
        {'path': 'access', 'type': 'hash', 'entries': {'a.example': 'OK'}}, "'access'"),
    bad('B33', 'postmap_file', 'postmap_file: entries of the wrong type (a string)',
        {'path': '{conf}/access', 'type': 'hash', 'entries': 'a.example OK'}, 'entries'),
    # master_service
    bad('B34', 'master_service', 'master_service: invalid service type (tcp)',
        {'name': 'smtps', 'type': 'tcp', 'command': 'smtpd'}, 'tcp', 'type'),
    bad('B35', 'master_service', 'master_service: maxproc that is not a number (many)',
        {'name': 'relay2', 'type': 'unix', 'command': 'smtp', 'maxproc': 'many'}, 'maxproc', "'many'"),
    bad('B36', 'master_service', 'master_service: negative maxproc',
        {'name': 'relay2', 'type': 'unix', 'command': 'smtp', 'maxproc': -1}, 'maxproc'),
    bad('B37', 'master_service', 'master_service: -o value with a newline that smuggles another override',
        {'name': 'submission', 'type': 'inet', 'private': 'n', 'chroot': 'y', 'command': 'smtpd',
         'options': {'syslog_name': 'postfix/submission\n  -o smtpd_client_restrictions=permit'}}, 'syslog_name'),
    bad('B38', 'master_service', 'master_service: -o with an unknown parameter (smtpd_tls_securty_level)',
        {'name': 'submission', 'type': 'inet', 'private': 'n', 'chroot': 'y', 'command': 'smtpd',
         'options': {'smtpd_tls_securty_level': 'encrypt'}}, 'smtpd_tls_securty_level'),
    bad('B39', 'master_service', 'master_service: private flag that is not y/n/- (maybe)',
        {'name': 'relay2', 'type': 'unix', 'command': 'smtp', 'private': 'maybe'}, 'private', "'maybe'"),
    bad('B40', 'master_service', 'master_service: wakeup that is not a number (soon)',
        {'name': 'relay2', 'type': 'unix', 'command': 'smtp', 'wakeup': 'soon'}, 'wakeup', "'soon'"),
    bad('B41', 'master_service', 'master_service: service name with whitespace',
        {'name': 'sub mission', 'type': 'inet', 'command': 'smtpd'}, "'sub mission'"),
    bad('B42', 'master_service', 'master_service: state=present without command',
        {'name': 'relay2', 'type': 'unix'}, 'command'),
    bad('B43', 'master_service', 'master_service: command argument with a newline',
        {'name': 'relay2', 'type': 'unix', 'command': 'pipe', 'args': ['flags=R', 'argv=/bin/true\nsmtp inet n - y - - smtpd']},
        'argv=/bin/true'),
    # restrictions
    bad('B44', 'restrictions', 'restrictions: restriction name typo (reject_unauth_destinaton)',
        {'name': 'smtpd_relay_restrictions', 'owner': 'anti_relay', 'items': ['permit_mynetworks', 'reject_unauth_destinaton']},
        'reject_unauth_destinaton', 'reject_unauth_destination'),
    bad('B45', 'restrictions', 'restrictions: restriction removed from Postfix (check_relay_domains)',
        {'name': 'smtpd_recipient_restrictions', 'owner': 'anti_relay', 'items': ['check_relay_domains']},
        'check_relay_domains'),
    bad('B46', 'restrictions', 'restrictions: owner with spaces and punctuation',
        {'name': 'smtpd_recipient_restrictions', 'owner': 'anti relay!', 'items': ['reject_unauth_destination']},
        'anti relay!'),
    bad('B47', 'restrictions', 'restrictions: item with a newline',
        {'name': 'smtpd_recipient_restrictions', 'owner': 'anti_relay', 'items': ['reject_unauth_destination\nrelayhost = x']},
        "'items'", 'newline'),
    bad('B48', 'restrictions', 'restrictions: list name that is not a Postfix parameter (smtpd_recipent_restrictions)',
        {'name': 'smtpd_recipent_restrictions', 'owner': 'anti_relay', 'items': ['reject_unauth_destination']},
        'smtpd_recipent_restrictions'),
    # master.cf's { } quoting, control characters, private inet services, an ambiguous table removal
    bad('B49', 'master_service', 'master_service: -o value with an unbalanced "{" (smtp_helo_name: "a{b") that would '
        'swallow the overrides and arguments after it',
        {'name': 'filter', 'type': 'unix', 'command': 'pipe', 'options': {'smtp_helo_name': 'a{b', 'syslog_name': 'x'},
         'args': ['flags=R', 'user=nobody', 'argv=/bin/true']}, 'smtp_helo_name', "'a{b'", 'unbalanced braces'),
    bad('B50', 'master_service', 'master_service: pipe argument with an unbalanced "{" (user=nobody{x)',
        {'name': 'filter', 'type': 'unix', 'command': 'pipe', 'args': ['flags=R', 'user=nobody{x', 'argv=/bin/true']},
        'args[1]', "'user=nobody{x'"),
    bad('B51', 'postconf_set', 'postconf_set: override with an unbalanced "{" on the maildrop pipe service, whose '
        'arguments follow its overrides',
        {'service': 'maildrop/unix', 'params': {'smtp_helo_name': 'a{b'}}, 'smtp_helo_name', 'unbalanced braces'),
    bad('B52', 'master_service', 'master_service: NUL byte in an -o value (Postfix would cut the value there)',
        {'name': 'relay2', 'type': 'unix', 'command': 'smtp', 'options': {'smtp_helo_name': 'a\x00b'}},
        'smtp_helo_name', 'NUL'),
    bad('B53', 'postmap_file', 'postmap_file: NUL byte in a value (postmap would store the value cut at the NUL)',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a.example': 'REJECT a\x00b'}}, "'a.example'", 'NUL'),
    bad('B54', 'postmap_file', 'postmap_file: key with a file separator (U+001C), which str.splitlines() treats as a '
        'line end and Postfix does not',
        {'path': '{conf}/access', 'type': 'hash', 'entries': {'a\x1cb.example': 'OK'}}, 'U+001C'),
    bad('B55', 'master_service', 'master_service: inet service with private "-" (the default y: Postfix\'s master '
        'refuses to start)',
        {'name': 'smtps', 'type': 'inet', 'private': '-', 'command': 'smtpd'}, 'inet service cannot be private'),
    bad('B56', 'postmap_file', 'postmap_file: state=absent without entries and exclusive left at its default (used '
        'to delete the whole table)',
        {'path': '{conf}/access', 'type': 'hash', 'state': 'absent'}, 'exclusive=true'),
]


def _fill(value, conf):
    if isinstance(value, str):
        return value.replace('{conf}', conf)
    if isinstance(value, dict):
        return {k: _fill(v, conf) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, conf) for v in value]
    return value


def assert_fails_cleanly(run_module, module, args, culprits, conf, case):
    """Check mode and real run both fail naming every culprit; nothing in ``conf`` changes."""
    before = snapshot(conf)
    result = None
    for check_mode in (True, False):
        result = run_module(MODULES[module], args, check_mode=check_mode)
        assert result.get('failed') is True, 'expected a failure, got %r' % (result,)
        msg = case.clean(result['msg'])
        for culprit in culprits:
            assert culprit in msg, 'the message does not name %r: %s' % (culprit, msg)
        assert snapshot(conf) == before, 'a file changed although the run failed'
    assert sorted(os.listdir(conf)) == sorted(before), 'a file was left behind'
    case.message(result['msg'])
    return result


@pytest.mark.parametrize('bad_case', BAD)
def test_bad_module_input(bad_case, run_module, conf, case):
    case(bad_case.id, bad_case.what)
    args = dict(_fill(bad_case.args, conf))
    args.setdefault('config_dir', conf)
    assert_fails_cleanly(run_module, bad_case.module, args, bad_case.culprits, conf, case)


# ---------------------------------------------------------------- accepted input

def four_steps(run_module, module, args, conf):
    """check mode, real, check mode, real; then postfix check on the result.

    postconf_set runs with check=false and the test runs postfix check itself once the files are
    backdated: Postfix waits about two seconds before it reads a file written in the last second.
    """
    before = snapshot(conf)
    first = run_module(module, args, check_mode=True)
    assert first.get('failed') is not True and first['changed'] is True, first
    assert snapshot(conf) == before
    real = run_module(module, args)
    assert real.get('failed') is not True and real['changed'] is True, real
    settle(conf)
    for check_mode in (True, False):
        again = run_module(module, args, check_mode=check_mode)
        assert again.get('failed') is not True and again['changed'] is False, again
    proc = subprocess.run([os.path.join(SBIN, 'postfix'), '-c', conf, 'check'], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return real


def query(conf, key, spec):
    proc = subprocess.run([os.path.join(SBIN, 'postmap'), '-c', conf, '-q', key, spec], capture_output=True,
                          check=False, env={'LANG': 'C', 'PATH': os.environ.get('PATH', '')})
    return proc.stdout.decode('utf-8', 'replace').rstrip('\n') if proc.returncode == 0 else None


def test_hash_in_value_round_trips(run_module, conf, case):
    case('A01', 'postconf_set: value containing "#" (Postfix starts a comment only at the start of a line)')
    value = '$myhostname ESMTP # not a comment'
    four_steps(run_module, postconf_set, {'name': 'smtpd_banner', 'value': value, 'check': False, 'config_dir': conf}, conf)
    rc, out, err = postconf_ok(conf, '-h', '-x', 'smtpd_banner')
    assert rc == 0 and not err and out.strip().endswith('ESMTP # not a comment')
    case.evidence('accepted; postconf -n prints: smtpd_banner = %s; second run changed=false' % value)


def test_non_ascii_value_round_trips(run_module, conf, case):
    case('A02', 'postconf_set: non-ASCII value (UTF-8 banner "Correo de Estafeta — ñandú")')
    value = 'Correo de Estafeta — ñandú'
    four_steps(run_module, postconf_set, {'name': 'smtpd_banner', 'value': value, 'check': False, 'config_dir': conf}, conf)
    rc, out, err = postconf_ok(conf, '-h', 'smtpd_banner')
    assert rc == 0 and not err and out.strip() == value
    case.evidence('accepted; postconf -h returns the same UTF-8 text; second run changed=false')


def test_non_ascii_map_round_trips(run_module, conf, case):
    case('A03', 'postmap_file: non-ASCII key and value in a hash table (ñandú.example → "REJECT sí")')
    path = os.path.join(conf, 'access')
    four_steps(run_module, postmap_file, {'path': path, 'type': 'hash', 'config_dir': conf,
                                          'entries': {'ñandú.example': 'REJECT sí', 'spam.example': 'REJECT'}}, conf)
    assert query(conf, 'ñandú.example', 'hash:' + path) == 'REJECT sí'
    case.evidence('accepted; postmap -q ñandú.example returns "REJECT sí"; second run changed=false')


def test_hash_in_map_value_round_trips(run_module, conf, case):
    case('A04', 'postmap_file: table value containing "#" (REJECT see ticket #42)')
    path = os.path.join(conf, 'access')
    four_steps(run_module, postmap_file, {'path': path, 'type': 'hash', 'config_dir': conf,
                                          'entries': {'spam.example': 'REJECT see ticket #42'}}, conf)
    assert query(conf, 'spam.example', 'hash:' + path) == 'REJECT see ticket #42'
    case.evidence('accepted; postmap -q returns "REJECT see ticket #42"; second run changed=false')


def test_one_megabyte_map_value_round_trips(run_module, conf, case):
    case('A05', 'postmap_file: 1 MB value in a hash table')
    path = os.path.join(conf, 'big')
    four_steps(run_module, postmap_file, {'path': path, 'type': 'hash', 'config_dir': conf,
                                          'entries': {'big.example': BIG}}, conf)
    assert query(conf, 'big.example', 'hash:' + path) == BIG
    case.evidence('accepted; postmap -q returns all 1,048,576 bytes; second run changed=false')


def test_long_value_below_argument_limit(run_module, conf, case):
    case('A06', 'postconf_set: 100 kB value (below the 128 kB limit of one command-line argument)')
    value = 'y' * 100000
    four_steps(run_module, postconf_set, {'name': 'smtpd_banner', 'value': value, 'check': False, 'config_dir': conf}, conf)
    rc, out, err = postconf_ok(conf, '-h', 'smtpd_banner')
    assert rc == 0 and out.strip() == value
    case.evidence('accepted; postconf -h returns all 100,000 characters; second run changed=false')


def test_non_ascii_pcre_round_trips(run_module, conf, case):
    case('A07', 'postmap_file: PCRE pattern with non-ASCII text (/^Subject:.*oferta única/)')
    path = os.path.join(conf, 'header_checks.pcre')
    four_steps(run_module, postmap_file, {'path': path, 'type': 'pcre', 'config_dir': conf,
                                          'entries': [{'key': '/^Subject:.*oferta única/', 'value': 'REJECT spam'}]}, conf)
    assert query(conf, 'Subject: una oferta única', 'pcre:' + path) == 'REJECT spam'
    case.evidence('accepted; postmap -q "Subject: una oferta única" pcre:... returns "REJECT spam"')


def test_unicode_line_separator_round_trips_in_master_cf(run_module, conf, case):
    case('A08', 'master_service: -o value and argument with U+2028 (a line end for str.splitlines(), text for Postfix)')
    value = 'mail\u2028example'
    four_steps(run_module, master_service, {'name': 'filter', 'type': 'unix', 'command': 'pipe', 'check': False,
                                            'options': {'smtp_helo_name': value},
                                            'args': ['flags=R', 'argv=/bin/echo', value], 'config_dir': conf}, conf)
    rc, out, err = postconf_ok(conf, '-P', 'filter/unix/smtp_helo_name')
    assert rc == 0 and out == 'filter/unix/smtp_helo_name = %s\n' % value
    rc, out, err = postconf_ok(conf, '-M', 'filter/unix')
    assert out.rstrip('\n').endswith('argv=/bin/echo %s' % value)
    case.evidence('accepted; postconf -P and -M read back the U+2028 in the value and the argument; second run '
                  'changed=false')


def test_unicode_line_separator_round_trips_in_table(run_module, conf, case):
    case('A09', 'postmap_file: value with U+2028 and U+2029 in a hash table (the second run used to fail with '
                '"expected format")')
    path = os.path.join(conf, 'access')
    value = 'REJECT a\u2028b\u2029c'
    four_steps(run_module, postmap_file, {'path': path, 'type': 'hash', 'config_dir': conf,
                                          'entries': {'spam.example': value}}, conf)
    assert query(conf, 'spam.example', 'hash:' + path) == value
    case.evidence('accepted; postmap -q returns the value with both separators; second run changed=false')


def test_braces_quoted_and_read_back(run_module, conf, case):
    case('A10', 'master_service: -o value and pipe arguments with braces in pairs and spaces ("a {b c} d", "{x y}")')
    four_steps(run_module, master_service, {'name': 'filter', 'type': 'unix', 'command': 'pipe', 'check': False,
                                            'options': {'smtp_helo_name': 'a {b c} d'},
                                            'args': ['flags=R', '{x y}', 'argv=/bin/echo'], 'config_dir': conf}, conf)
    rc, out, err = postconf_ok(conf, '-P', 'filter/unix/smtp_helo_name')
    assert out == 'filter/unix/smtp_helo_name = a {b c} d\n'
    rc, out, err = postconf_ok(conf, '-M', 'filter/unix')
    assert out.split('pipe ', 1)[1].strip() == '-o {smtp_helo_name=a {b c} d} flags=R {{x y}} argv=/bin/echo'
    case.evidence('written as -o { smtp_helo_name = a {b c} d } and { {x y} }; postconf -M reads back exactly '
                  'the value and the three arguments; second run changed=false')


# ---------------------------------------------------------------- the environment

@pytest.mark.parametrize('module, args', [
    pytest.param('postconf_set', {'name': 'smtpd_banner', 'value': 'x'}, id='E01'),
    pytest.param('master_service', {'name': 'relay2', 'type': 'unix', 'command': 'smtp'}, id='E02'),
    pytest.param('restrictions', {'name': 'smtpd_relay_restrictions', 'owner': 'x', 'items': ['reject_unauth_destination']},
                 id='E03'),
    pytest.param('postmap_file', {'path': '{conf}/access', 'entries': {'a.example': 'OK'}}, id='E04'),
])
def test_missing_config_dir(module, args, run_module, conf, case, request):
    case_id = request.node.callspec.id
    case(case_id, '%s: config_dir that does not exist' % module)
    missing = os.path.join(conf, 'nosuchdir')
    case.hide(missing, '/etc/postfix-missing')
    args = dict(_fill(args, conf), config_dir=missing)
    assert_fails_cleanly(run_module, module, args, ['/etc/postfix-missing'], conf, case)


def test_relative_config_dir(run_module, conf, case):
    case('E05', 'postconf_set: relative config_dir (etc/postfix)')
    assert_fails_cleanly(run_module, 'postconf_set', {'name': 'smtpd_banner', 'value': 'x', 'config_dir': 'etc/postfix'},
                         ['config_dir', 'etc/postfix'], conf, case)


def test_config_dir_without_main_cf(run_module, conf, case, tmp_path):
    case('E06', 'postconf_set: config_dir exists but holds no main.cf (Postfix not installed there)')
    empty = str(tmp_path / 'empty')
    os.mkdir(empty)
    case.hide(empty, '/etc/postfix')
    assert_fails_cleanly(run_module, 'postconf_set', {'name': 'smtpd_banner', 'value': 'x', 'config_dir': empty},
                         ['main.cf'], empty, case)


def _chattr(flag, path):
    try:
        return subprocess.run(['chattr', flag, path], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def test_immutable_config_dir(run_module, conf, case):
    case('E07', 'postconf_set as root on a config_dir made immutable (chattr +i): root cannot write there either')
    if not _chattr('+i', conf):
        pytest.skip('chattr +i is not supported on this file system')
    try:
        assert_fails_cleanly(run_module, 'postconf_set', {'name': 'smtpd_banner', 'value': 'x', 'config_dir': conf},
                             ['/etc/postfix', 'not writable'], conf, case)
    finally:
        _chattr('-i', conf)


def test_immutable_main_cf(run_module, conf, case):
    case('E08', 'postconf_set as root when main.cf itself is immutable (chattr +i) but the directory is writable')
    main = os.path.join(conf, 'main.cf')
    if not _chattr('+i', main):
        pytest.skip('chattr +i is not supported on this file system')
    try:
        before = snapshot(conf)
        # Check mode writes nothing, so it cannot notice; the real run must fail cleanly.
        result = run_module(postconf_set, {'name': 'smtpd_banner', 'value': 'x', 'config_dir': conf})
        assert result.get('failed') is True, 'expected a failure, got %r' % (result,)
        msg = case.clean(result['msg'])
        assert '/etc/postfix/main.cf' in msg, msg
        assert snapshot(conf) == before
        case.message(result['msg'])
    finally:
        _chattr('-i', main)


def test_postfix_not_installed(run_module, conf, case, monkeypatch):
    case('E09', 'every module on a host where the Postfix commands are missing (postconf, postmap, postfix not found)')
    original = process.is_executable
    hidden = ('postconf', 'postmap', 'postalias', 'postfix')
    monkeypatch.setattr(process, 'is_executable', lambda path: os.path.basename(path) not in hidden and original(path))
    before = snapshot(conf)
    messages = []
    for module, args in (('postconf_set', {'name': 'smtpd_banner', 'value': 'x'}),
                         ('master_service', {'name': 'relay2', 'type': 'unix', 'command': 'smtp'}),
                         ('restrictions', {'name': 'smtpd_relay_restrictions', 'owner': 'x',
                                           'items': ['reject_unauth_destination']}),
                         ('postmap_file', {'path': os.path.join(conf, 'access'), 'entries': {'a.example': 'OK'}})):
        result = run_module(MODULES[module], dict(args, config_dir=conf))
        assert result.get('failed') is True, result
        assert 'not found' in result['msg'] and 'Install Postfix' in result['msg'], result['msg']
        assert snapshot(conf) == before
        messages.append(result['msg'])
    case.message(messages[0])


def _can_unshare_mounts():
    try:
        return subprocess.run(['unshare', '-m', 'true'], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def test_read_only_mount(conf, case, tmp_path):
    case('E10', 'postconf_set in its own process on a config_dir on a read-only mount (bind mount remounted ro)')
    if os.geteuid() != 0 or not _can_unshare_mounts():
        pytest.skip('needs root and unshare -m for a private read-only bind mount')
    before = snapshot(conf)
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
    rc, result, err = run_process('postconf_set', {'name': 'smtpd_banner', 'value': 'x', 'config_dir': conf}, str(tmp_path),
                                  prefix=['unshare', '-m', 'sh', '-c', script, 'sh', conf])
    assert rc == 1 and result and result.get('failed') is True, (rc, result, err)
    msg = case.clean(result['msg'])
    assert '/etc/postfix' in msg and 'not writable' in msg, msg
    assert snapshot(conf) == before
    case.message(result['msg'])


def test_unprivileged_user(template, case, tmp_path):
    case('E11', 'postconf_set in its own process as an unprivileged user (nobody), as a play without become: true')
    if os.geteuid() != 0:
        pytest.skip('needs root to start a process as nobody (as non-root, a root-owned /etc/postfix is the same case)')
    python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
    top = tempfile.mkdtemp(prefix='estafeta-reliability-')
    try:
        os.chmod(top, 0o755)
        conf = copy_dir(template, os.path.join(top, 'postfix'))
        case.hide(conf, '/etc/postfix')
        before = snapshot(conf)

        def drop_privileges():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

        probe = subprocess.run([python, '-c', 'import ansible.module_utils.basic, ansible_collections.estafeta.postfix'],
                               capture_output=True, text=True, env=module_env({'HOME': '/tmp'}),
                               preexec_fn=drop_privileges, cwd='/', check=False)
        if probe.returncode != 0:
            pytest.skip('the checkout or its virtualenv is not readable by nobody here (for example a clone in a '
                        'mode-0700 directory): %s' % probe.stderr.strip().splitlines()[-1:])
        rc, result, err = run_process('postconf_set', {'name': 'smtpd_banner', 'value': 'x', 'config_dir': conf}, top,
                                      python=python, preexec_fn=drop_privileges, env={'HOME': '/tmp'})
        assert rc == 1 and result and result.get('failed') is True, (rc, result, err)
        msg = case.clean(result['msg'])
        assert '/etc/postfix' in msg and 'become' in msg, msg
        assert snapshot(conf) == before
        case.message(result['msg'])
    finally:
        shutil.rmtree(top, ignore_errors=True)
