# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""estafeta.postfix.master_service against a scratch directory and the real Postfix binaries."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.estafeta.postfix.plugins.modules import master_service
from ansible_collections.estafeta.postfix.plugins.module_utils import master_cf
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot

AMAVIS_OPTIONS = {
    'content_filter': '',
    'local_recipient_maps': '',
    'relay_recipient_maps': '',
    'smtpd_restriction_classes': '',
    'smtpd_client_restrictions': '',
    'smtpd_helo_restrictions': '',
    'smtpd_sender_restrictions': '',
    'smtpd_recipient_restrictions': ['permit_mynetworks', 'reject'],
    'mynetworks': '127.0.0.0/8',
    'strict_rfc821_envelopes': True,
    'smtpd_error_sleep_time': 0,
    'smtpd_soft_error_limit': 1001,
    'smtpd_hard_error_limit': 1000,
}

# (module arguments, expected `postconf -M name/type` line, expected `postconf -P name/type` lines)
CASES = {
    'amavis-out': (
        dict(name='smtp-amavis', type='unix', chroot='n', maxproc=2, command='smtp',
             options={'smtp_data_done_timeout': 1200, 'smtp_send_xforward_command': True}),
        'smtp-amavis unix -       -       n       -       2       smtp -o smtp_data_done_timeout=1200 '
        '-o smtp_send_xforward_command=yes',
        ['smtp-amavis/unix/smtp_data_done_timeout = 1200', 'smtp-amavis/unix/smtp_send_xforward_command = yes'],
    ),
    'amavis-in': (
        dict(name='127.0.0.1:10025', type='inet', private='n', chroot=False, command='smtpd', options=AMAVIS_OPTIONS),
        '127.0.0.1:10025 inet n   -       n       -       -       smtpd -o content_filter= '
        '-o local_recipient_maps= -o relay_recipient_maps= -o smtpd_restriction_classes= '
        '-o smtpd_client_restrictions= -o smtpd_helo_restrictions= -o smtpd_sender_restrictions= '
        '-o smtpd_recipient_restrictions=permit_mynetworks,reject -o mynetworks=127.0.0.0/8 '
        '-o strict_rfc821_envelopes=yes -o smtpd_error_sleep_time=0 -o smtpd_soft_error_limit=1001 '
        '-o smtpd_hard_error_limit=1000',
        ['127.0.0.1:10025/inet/%s = %s' % (k, v) for k, v in (
            ('content_filter', ''), ('local_recipient_maps', ''), ('relay_recipient_maps', ''),
            ('smtpd_restriction_classes', ''), ('smtpd_client_restrictions', ''), ('smtpd_helo_restrictions', ''),
            ('smtpd_sender_restrictions', ''), ('smtpd_recipient_restrictions', 'permit_mynetworks,reject'),
            ('mynetworks', '127.0.0.0/8'), ('strict_rfc821_envelopes', 'yes'), ('smtpd_error_sleep_time', '0'),
            ('smtpd_soft_error_limit', '1001'), ('smtpd_hard_error_limit', '1000'))],
    ),
    'submission': (
        dict(name='submission', type='inet', private='n', chroot='y', command='smtpd',
             options={'syslog_name': 'postfix/submission', 'smtpd_tls_security_level': 'encrypt',
                      'smtpd_sasl_auth_enable': True,
                      'smtpd_client_restrictions': ['permit_sasl_authenticated', 'reject']}),
        'submission inet  n       -       y       -       -       smtpd -o syslog_name=postfix/submission '
        '-o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes '
        '-o smtpd_client_restrictions=permit_sasl_authenticated,reject',
        ['submission/inet/smtpd_client_restrictions = permit_sasl_authenticated,reject',
         'submission/inet/smtpd_sasl_auth_enable = yes',
         'submission/inet/smtpd_tls_security_level = encrypt',
         'submission/inet/syslog_name = postfix/submission'],
    ),
    'smtps': (
        dict(name='smtps', type='inet', private='n', chroot='y', command='smtpd',
             options={'smtpd_tls_wrappermode': True, 'smtpd_sasl_auth_enable': True}),
        'smtps      inet  n       -       y       -       -       smtpd -o smtpd_tls_wrappermode=yes '
        '-o smtpd_sasl_auth_enable=yes',
        ['smtps/inet/smtpd_sasl_auth_enable = yes', 'smtps/inet/smtpd_tls_wrappermode = yes'],
    ),
    'postscreen': (
        dict(name='smtp', type='inet', private='n', chroot='y', maxproc=1, command='postscreen'),
        'smtp       inet  n       -       y       -       1       postscreen',
        [],
    ),
    'postscreen-smtpd': (
        dict(name='smtpd', type='pass', chroot='y', command='smtpd'),
        'smtpd      pass  -       -       y       -       -       smtpd',
        [],
    ),
    'dnsblog': (
        dict(name='dnsblog', type='unix', chroot='y', maxproc=0, command='dnsblog'),
        'dnsblog    unix  -       -       y       -       0       dnsblog',
        [],
    ),
    'tlsproxy': (
        dict(name='tlsproxy', type='unix', chroot='y', maxproc='0', command='tlsproxy'),
        'tlsproxy   unix  -       -       y       -       0       tlsproxy',
        [],
    ),
    'pipe-with-args': (
        dict(name='maildrop', type='unix', unpriv='n', chroot='n', command='pipe',
             args=['flags=DRXhu', 'user=vmail', 'argv=/usr/bin/maildrop', '-d', '${recipient}', 'two words'],
             options={'syslog_name': 'postfix/maildrop'}),
        'maildrop   unix  -       n       n       -       -       pipe -o syslog_name=postfix/maildrop '
        'flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} {two words}',
        ['maildrop/unix/syslog_name = postfix/maildrop'],
    ),
}


def read(path):
    with open(path, 'rb') as f:
        return f.read().decode()


def without(text, name, stype):
    """master.cf text minus the entry name/type: everything the module must not touch."""
    return master_cf.render([b for b in master_cf.parse(text) if b.key() != (name, stype)])


def run4(run_module, args):
    """check, real, check, real: returns the four results and asserts the changed flags."""
    conf = args['config_dir']
    start = snapshot(conf)
    first = run_module(master_service, args, check_mode=True)
    assert not first.get('failed'), first
    assert first['changed'] is True
    assert snapshot(conf) == start, 'check mode wrote something'
    second = run_module(master_service, args)
    assert second['changed'] is True, second
    third = run_module(master_service, args, check_mode=True)
    assert third['changed'] is False, third
    fourth = run_module(master_service, args)
    assert fourth['changed'] is False, fourth
    after = snapshot(conf)
    assert fourth['diff']['before'] == fourth['diff']['after']
    assert run_module(master_service, args)['changed'] is False
    assert snapshot(conf) == after
    return first, second, third, fourth


@pytest.mark.parametrize('case', sorted(CASES))
def test_reference_cases(run_module, postfix_dir, case):
    args, expected_m, expected_p = CASES[case]
    args = dict(args, config_dir=postfix_dir)
    original = read(os.path.join(postfix_dir, 'master.cf'))
    first, second, third, fourth = run4(run_module, args)
    key = '%s/%s' % (args['name'], args['type'])
    assert postconf(postfix_dir, '-M', key).rstrip('\n') == expected_m
    assert sorted(line.rstrip() for line in postconf(postfix_dir, '-P', key).splitlines()) == sorted(
        line.rstrip() for line in expected_p)
    new = read(os.path.join(postfix_dir, 'master.cf'))
    assert without(new, args['name'], args['type']) == without(original, args['name'], args['type'])
    assert second['service'] == fourth['service'] == fourth['before']
    assert first['diff']['after'] == new
    assert first['diff']['before'] == original
    assert first['diff']['after_header'] == os.path.join(postfix_dir, 'master.cf') + ' (after)'
    assert 'backup_file' not in second


def test_postscreen_replaces_existing_smtp_entry(run_module, postfix_dir):
    res = run_module(master_service, dict(CASES['postscreen'][0], config_dir=postfix_dir))
    assert res['before']['command'] == 'smtpd'
    assert res['service']['command'] == 'postscreen'
    text = read(os.path.join(postfix_dir, 'master.cf'))
    lines = text.splitlines()
    # Rewritten in place (first entry of the file), the commented example below is untouched.
    assert lines[11] == 'smtp      inet  n       -       y       -       1       postscreen'
    assert lines[12] == '#smtp      inet  n       -       y       -       1       postscreen'


def test_new_entry_follows_commented_example(run_module, postfix_dir):
    run_module(master_service, dict(CASES['submission'][0], config_dir=postfix_dir))
    text = read(os.path.join(postfix_dir, 'master.cf'))
    assert ('#  -o milter_macro_daemon_name=ORIGINATING\n'
            'submission inet n       -       y       -       -       smtpd\n'
            '  -o syslog_name=postfix/submission\n') in text


def test_modify_existing_option_keeps_comments(run_module, postfix_dir):
    path = os.path.join(postfix_dir, 'master.cf')
    original = read(path)
    args = dict(name='relay', type='unix', chroot='y', command='smtp', config_dir=postfix_dir,
                options={'syslog_name': 'postfix/$service_name', 'smtp_helo_timeout': 5,
                         'smtp_connect_timeout': '5'})
    first, second, third, fourth = run4(run_module, args)
    assert second['before']['options'] == {'syslog_name': 'postfix/$service_name'}
    assert sorted(postconf(postfix_dir, '-P', 'relay/unix').splitlines()) == [
        'relay/unix/smtp_connect_timeout = 5', 'relay/unix/smtp_helo_timeout = 5',
        'relay/unix/syslog_name = postfix/$service_name']
    text = read(path)
    assert ('relay     unix  -       -       y       -       -       smtp\n'
            '  -o syslog_name=postfix/$service_name\n'
            '  -o smtp_helo_timeout=5\n'
            '  -o smtp_connect_timeout=5\n'
            '#       -o smtp_helo_timeout=5 -o smtp_connect_timeout=5\n'
            'showq ') in text
    assert without(text, 'relay', 'unix') == without(original, 'relay', 'unix')
    # Change one value, drop another.
    res = run_module(master_service, dict(args, options={'syslog_name': 'postfix/relay', 'smtp_helo_timeout': 5}))
    assert res['changed'] is True
    assert sorted(postconf(postfix_dir, '-P', 'relay/unix').splitlines()) == [
        'relay/unix/smtp_helo_timeout = 5', 'relay/unix/syslog_name = postfix/relay']


def test_comment_inside_entry_survives(run_module, postfix_dir):
    path = os.path.join(postfix_dir, 'master.cf')
    with open(path, 'a') as f:
        f.write('submission inet n - y - - smtpd\n'
                '# TLS is mandatory here\n'
                '  -o smtpd_tls_security_level=encrypt\n'
                '\t-o {smtpd_client_restrictions = permit_sasl_authenticated,   reject}\n'
                '# end of submission\n')
    original = read(path)
    # Same entry, other spacing and list form: not a change, nothing rewritten.
    same = dict(name='submission', type='inet', private='n', chroot='y', command='smtpd', config_dir=postfix_dir,
                options={'smtpd_client_restrictions': ['permit_sasl_authenticated', 'reject'],
                         'smtpd_tls_security_level': 'encrypt'})
    res = run_module(master_service, same)
    assert res['changed'] is False
    assert read(path) == original
    run4(run_module, dict(same, options=dict(same['options'], smtpd_sasl_auth_enable=True)))
    assert read(path).endswith('submission inet n       -       y       -       -       smtpd\n'
                               '  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n'
                               '# TLS is mandatory here\n'
                               '  -o smtpd_tls_security_level=encrypt\n'
                               '  -o smtpd_sasl_auth_enable=yes\n'
                               '# end of submission\n')


def test_value_with_spaces(run_module, postfix_dir):
    args = dict(name='submission', type='inet', private='n', command='smtpd', config_dir=postfix_dir,
                options={'smtpd_client_restrictions': 'permit_sasl_authenticated, reject',
                         'smtpd_recipient_restrictions': ['check_policy_service unix:private/policy', 'reject']})
    run4(run_module, args)
    assert sorted(postconf(postfix_dir, '-P', 'submission/inet').splitlines()) == [
        'submission/inet/smtpd_client_restrictions = permit_sasl_authenticated, reject',
        'submission/inet/smtpd_recipient_restrictions = check_policy_service unix:private/policy, reject']
    assert '  -o { smtpd_client_restrictions = permit_sasl_authenticated, reject }\n' in read(
        os.path.join(postfix_dir, 'master.cf'))


def test_absent(run_module, postfix_dir):
    path = os.path.join(postfix_dir, 'master.cf')
    original = read(path)
    args = dict(name='relay', type='unix', state='absent', config_dir=postfix_dir)
    first, second, third, fourth = run4(run_module, args)
    assert second['before']['options'] == {'syslog_name': 'postfix/$service_name'}
    assert second['service'] is None
    assert postconf(postfix_dir, '-M', 'relay/unix') == ''
    text = read(path)
    assert without(original, 'relay', 'unix') == text
    assert '#       -o smtp_helo_timeout=5 -o smtp_connect_timeout=5\n' in text
    # A service that does not exist: nothing to do.
    res = run_module(master_service, dict(args, name='nosuch'))
    assert res['changed'] is False and res['before'] is None


def test_absent_keeps_commented_example(run_module, postfix_dir):
    path = os.path.join(postfix_dir, 'master.cf')
    original = read(path)
    args = dict(CASES['submission'][0], config_dir=postfix_dir)
    run_module(master_service, args)
    res = run_module(master_service, dict(name='submission', type='inet', state='absent', config_dir=postfix_dir))
    assert res['changed'] is True
    assert read(path) == original


@pytest.mark.parametrize('override, culprit', [
    (dict(type='inetx'), 'type'),
    (dict(maxproc='x'), 'maxproc'),
    (dict(wakeup='soon'), 'wakeup'),
    (dict(private='maybe'), 'private'),
    (dict(options={'smtpd_banner': 'two\nlines'}), 'options.smtpd_banner'),
    (dict(options={'bad=name': 'x'}), 'bad=name'),
    (dict(args=['-o', 'a=b']), 'options'),
    (dict(name='has space'), 'name'),
    (dict(command=None), 'command'),
    (dict(options={'smtpd_no_such_parameter': 'yes'}), 'unused parameter: smtpd_no_such_parameter=yes'),
])
@pytest.mark.parametrize('check_mode', [True, False])
def test_bad_input_changes_nothing(run_module, postfix_dir, override, culprit, check_mode):
    args = dict(CASES['submission'][0], config_dir=postfix_dir)
    args.update(override)
    if args.get('command') is None:
        del args['command']
    before = snapshot(postfix_dir)
    res = run_module(master_service, args, check_mode=check_mode)
    assert res.get('failed') is True, res
    assert culprit in res['msg']
    assert snapshot(postfix_dir) == before


def test_broken_existing_file_is_reported(run_module, postfix_dir):
    """A fatal postconf error fails the task with the real path in the message; nothing is written."""
    with open(os.path.join(postfix_dir, 'master.cf'), 'a') as f:
        f.write('x         inetx n       -       y       -       -       smtpd\n')
    before = snapshot(postfix_dir)
    for check_mode in (True, False):
        res = run_module(master_service, dict(CASES['smtps'][0], config_dir=postfix_dir), check_mode=check_mode)
        assert res['failed'] is True
        assert 'invalid type field "inetx"' in res['msg']
        assert 'Postfix rejects the current configuration' in res['msg']
        assert snapshot(postfix_dir) == before


def test_staged_file_validated_by_postconf(postfix_dir):
    """Postfix itself rejects what the pure checks would let through: nothing is installed."""
    from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
        ConfigTransaction, PostfixError, SubprocessRunner, atomic_write)
    runner = SubprocessRunner()
    before = snapshot(postfix_dir)
    with ConfigTransaction(runner, postfix_dir) as tx:
        atomic_write(tx.path('master.cf'), tx.before['master.cf'] + 'x inetx n - y - - smtpd\n')
        with pytest.raises(PostfixError) as exc:
            tx.postconf_warnings()
        assert 'invalid type field' in exc.value.msg
    assert snapshot(postfix_dir) == before


def test_postfix_check_failure_rolls_back(run_module, postfix_dir):
    """Postfix refuses the configuration after the write (here: a main.cf value every Postfix program
    rejects): the previous master.cf is put back and the task fails."""
    with open(os.path.join(postfix_dir, 'main.cf'), 'a') as f:
        f.write('message_size_limit = abc\n')
    before = snapshot(postfix_dir)
    args = dict(CASES['smtps'][0], config_dir=postfix_dir)
    res = run_module(master_service, args)
    assert res['failed'] is True
    assert 'Postfix refuses the new configuration' in res['msg']
    assert res['rc'] != 0
    assert snapshot(postfix_dir) == before
    # Without the check the change goes through.
    res = run_module(master_service, dict(args, check=False))
    assert res['changed'] is True
    assert postconf(postfix_dir, '-M', 'smtps/inet').startswith('smtps ')


def test_backup(run_module, postfix_dir):
    path = os.path.join(postfix_dir, 'master.cf')
    original = read(path)
    args = dict(CASES['smtps'][0], config_dir=postfix_dir, backup=True)
    res = run_module(master_service, args, check_mode=True)
    assert 'backup_file' not in res
    res = run_module(master_service, args)
    assert res['changed'] is True
    assert res['backup_file'].startswith(path + '.')
    assert read(res['backup_file']) == original
    res = run_module(master_service, args)
    assert res['changed'] is False and 'backup_file' not in res


def test_no_diff_without_diff_mode(run_module, postfix_dir):
    res = run_module(master_service, dict(CASES['smtps'][0], config_dir=postfix_dir), diff=False)
    assert res['changed'] is True
    assert 'diff' not in res


def test_missing_config_dir(run_module, tmp_path):
    res = run_module(master_service, dict(CASES['smtps'][0], config_dir=str(tmp_path / 'nope')))
    assert res['failed'] is True
    assert 'does not exist' in res['msg']


# ---------------------------------------------------------------- what Postfix reads back

CONTROLS = ['\x00', '\t', '\n', '\r', '\x0b', '\x0c', '\x1b', '\x1c', '\x1d', '\x1e', '\x1f', '\x7f', '\x85', '\x9f']
PIPE = dict(name='filter', type='unix', unpriv='n', chroot='n', command='pipe',
            args=['flags=Rq', 'user=nobody', 'argv=/bin/true', '${recipient}'],
            options={'syslog_name': 'postfix/filter'})


def read_back(config_dir, key):
    """``(service, options)``: the entry as ``postconf -Mf`` prints it (parsed back), and ``postconf -Pf``."""
    text = postconf(config_dir, '-Mf', key)
    name, stype = key.split('/')
    service = master_cf.service_in(text, name, stype)
    prefix = key + '/'
    options = {}
    for line in postconf(config_dir, '-Pf', key).split('\n'):
        if line.startswith(prefix):
            opt, dummy, value = line[len(prefix):].partition(' = ')
            options[opt] = value
    return service, options


def assert_reads_back(config_dir, args):
    key = '%s/%s' % (args['name'], args['type'])
    service, options = read_back(config_dir, key)
    wanted = master_cf.normalize_service(dict(dict(private=None, unpriv='-', chroot='-', wakeup='-', maxproc='-'),
                                              **args))
    assert service is not None, postconf(config_dir, '-Mf', key)
    assert master_cf.differences(wanted, service) == []
    assert options == wanted['options']
    assert service['args'] == wanted['args']


@pytest.mark.parametrize('options, args', [
    ({'smtp_helo_name': 'a{b}c'}, []),
    ({'smtp_helo_name': 'a {b c} d'}, []),
    ({'syslog_name': 'inline:{ a=b, c=d }'}, []),
    ({'smtp_helo_name': '{x}'}, ['flags=R', 'user={nobody}', 'argv=/bin/true']),
    ({}, ['flags=R', '{x y}', '{ a }', '{}', 'argv=/bin/echo', '{a}b', 'a {b} c']),
    ({'smtp_helo_name': '{{nested} braces}'}, ['flags=R', 'argv=/bin/{{true}}']),
], ids=['plain', 'blanks', 'inline-map', 'leading-brace', 'quoted-args', 'nested'])
def test_balanced_braces_are_quoted_and_read_back(run_module, postfix_dir, options, args):
    """Braces in pairs are written with { } quoting where needed; postconf -Mf/-Pf read back what was asked,
    and the arguments that follow are not swallowed."""
    call = dict(PIPE, config_dir=postfix_dir, options=dict(PIPE['options'], **options),
                args=args or PIPE['args'], check=False)
    run4(run_module, call)
    assert_reads_back(postfix_dir, call)


@pytest.mark.parametrize('where, value', [
    ('options', 'a{b'), ('options', 'a}b'), ('options', '}{'), ('options', '{a'), ('options', 'a b}'),
    ('options', '{a}}'), ('args', 'user=nobody{x'), ('args', 'x}'), ('args', '{'), ('args', '{ a'),
    ('name', 'fil{ter'), ('command', 'pi}pe'), ('option_name', 'smtp_helo{name'),
])
def test_unbalanced_braces_are_refused(run_module, postfix_dir, where, value):
    """The issue's examples and their kin: no way to quote them in master.cf, so one clear error, no write."""
    call = dict(PIPE, config_dir=postfix_dir)
    if where == 'options':
        call['options'] = {'smtp_helo_name': value, 'syslog_name': 'postfix/filter'}
    elif where == 'args':
        call['args'] = ['flags=R', value, 'argv=/bin/true']
    elif where == 'option_name':
        call['options'] = {value: 'x'}
    else:
        call[where] = value
    before = snapshot(postfix_dir)
    for check_mode in (True, False):
        res = run_module(master_service, call, check_mode=check_mode)
        assert res.get('failed') is True, res
        assert value in res['msg'] or repr(value) in res['msg'], res['msg']
        assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('char', CONTROLS, ids=lambda c: 'U+%04X' % ord(c))
@pytest.mark.parametrize('where', ['options', 'args', 'name', 'command', 'option_name'])
def test_control_characters_are_refused(run_module, postfix_dir, where, char):
    call = dict(PIPE, config_dir=postfix_dir)
    if where == 'options':
        call['options'] = {'smtp_helo_name': 'a%sb' % char}
    elif where == 'args':
        call['args'] = ['flags=R', 'argv=/bin/true', 'x%sy' % char]
    elif where == 'option_name':
        call['options'] = {'smtp%shelo_name' % char: 'x'}
    else:
        call[where] = call[where] + char + 'x'
    before = snapshot(postfix_dir)
    for check_mode in (True, False):
        res = run_module(master_service, call, check_mode=check_mode)
        assert res.get('failed') is True, res
        assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('char', ['\u2028', '\u2029', '\u00a0', '\u3000'], ids=lambda c: 'U+%04X' % ord(c))
def test_unicode_separators_round_trip(run_module, postfix_dir, char):
    """Postfix splits lines on \\n only: a Unicode line separator is text, written once, then no change."""
    call = dict(PIPE, config_dir=postfix_dir, check=False, options={'smtp_helo_name': 'a%sb' % char},
                args=['flags=R', 'argv=/bin/echo', 'x%sy' % char])
    run4(run_module, call)
    assert_reads_back(postfix_dir, call)


def test_inet_service_is_not_private_by_default(run_module, postfix_dir):
    call = dict(name='127.0.0.1:10026', type='inet', command='smtpd', config_dir=postfix_dir, check=False)
    first, second, third, fourth = run4(run_module, call)
    assert second['service']['private'] == 'n'
    assert postconf(postfix_dir, '-M', '127.0.0.1:10026/inet').split()[2] == 'n'
    # Other types keep Postfix's default.
    run4(run_module, dict(name='relay2', type='unix', command='smtp', config_dir=postfix_dir, check=False))
    assert postconf(postfix_dir, '-M', 'relay2/unix').split()[2] == '-'


@pytest.mark.parametrize('private', ['-', 'y', True, 'yes'])
def test_private_inet_service_is_refused(run_module, postfix_dir, private):
    before = snapshot(postfix_dir)
    res = run_module(master_service, dict(name='smtps', type='inet', private=private, command='smtpd',
                                          config_dir=postfix_dir))
    assert res.get('failed') is True and 'inet service cannot be private' in res['msg']
    assert snapshot(postfix_dir) == before


def test_postconf_read_back_catches_a_bad_rendering(run_module, postfix_dir, monkeypatch):
    """The last safety net: when the entry as written would read differently, postconf -M says so and
    nothing is written (a rendering without { } quoting, and without the pure round-trip check)."""
    monkeypatch.setattr(master_cf, 'render_arg', lambda arg: arg)
    monkeypatch.setattr(master_cf, 'check_round_trip', lambda service: None)
    before = snapshot(postfix_dir)
    res = run_module(master_service, dict(PIPE, args=['flags=R', 'argv=/bin/echo', 'two words'], config_dir=postfix_dir))
    assert res.get('failed') is True, res
    assert 'postconf -M reads the new master.cf entry filter/unix differently' in res['msg']
    assert snapshot(postfix_dir) == before


def test_symlinked_master_cf_is_followed(run_module, postfix_dir, tmp_path):
    """master.cf a link to a file outside the directory: that file is written, the link stays, it settles."""
    elsewhere = tmp_path / 'shared'
    elsewhere.mkdir()
    real = str(elsewhere / 'master.cf')
    link = os.path.join(postfix_dir, 'master.cf')
    os.rename(link, real)
    os.symlink(real, link)
    call = dict(CASES['smtps'][0], config_dir=postfix_dir, check=False)
    run4(run_module, call)
    assert os.path.islink(link) and os.readlink(link) == real
    assert os.listdir(str(elsewhere)) == ['master.cf']
    assert postconf(postfix_dir, '-M', 'smtps/inet').startswith('smtps ')


@pytest.mark.parametrize('call, err', [('rename', 5), ('link', 1), ('utime', 5)])
def test_failure_while_installing_changes_nothing(run_module, postfix_dir, monkeypatch, call, err):
    """The keep link (the "immutable?" test), the rename, the backdating of master.cf: a failure at any of
    them leaves master.cf byte-identical, with one clear error."""
    original = getattr(os, call)

    def failing(*a, **kw):
        target = os.fsdecode(a[1] if call in ('rename', 'link') else a[0])
        if os.path.dirname(os.path.abspath(target)) == postfix_dir:
            raise OSError(err, 'injected failure', target)
        return original(*a, **kw)

    before = snapshot(postfix_dir)
    monkeypatch.setattr(os, call, failing)
    res = run_module(master_service, dict(CASES['smtps'][0], config_dir=postfix_dir))
    monkeypatch.setattr(os, call, original)
    assert res.get('failed') is True and 'injected failure' in res['msg'], res
    assert 'master.cf' in res['msg']
    assert snapshot(postfix_dir) == before


def test_value_postfix_warns_about_is_refused(run_module, postfix_dir):
    """Braces in pairs that Postfix still reads otherwise ("{mail}.example": an element that starts with "{"
    is { text }, and text after "}" is a syntax error): postconf's warning fails the task, nothing written."""
    before = snapshot(postfix_dir)
    res = run_module(master_service, dict(PIPE, options={'smtp_helo_name': '{mail}.example'}, config_dir=postfix_dir))
    assert res.get('failed') is True and "syntax error after '}'" in res['msg'], res
    assert snapshot(postfix_dir) == before
