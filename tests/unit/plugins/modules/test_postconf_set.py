# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils import common
from ansible_collections.estafeta.postfix.plugins.modules import postconf_set
from ansible_collections.estafeta.postfix.tests.unit.conftest import SBIN, postconf, snapshot

SUBMISSION = 'submission inet n - y - - smtpd\n'


def settle(config_dir):
    """Backdate freshly written files: Postfix waits a few seconds before it reads a brand-new file."""
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(os.path.join(config_dir, name), (past, past))


def values(config_dir):
    """Explicitly set main.cf parameters, as postconf -n prints them."""
    settle(config_dir)
    result = {}
    for line in postconf(config_dir, '-n').splitlines():
        name, dummy, value = line.partition(' =')
        result[name] = value.strip()
    return result


def overrides(config_dir, service):
    settle(config_dir)
    result = {}
    for line in postconf(config_dir, '-P').splitlines():
        key, dummy, value = line.partition(' =')
        if key.startswith(service + '/'):
            result[key[len(service) + 1:]] = value.strip()
    return result


def add_service(config_dir, line=SUBMISSION):
    with open(os.path.join(config_dir, 'master.cf'), 'a') as f:
        f.write(line)


def four_steps(run_module, args):
    """check mode -> changed, nothing written; real -> changed; both again -> unchanged."""
    config_dir = args['config_dir']
    before = snapshot(config_dir)
    first = run_module(postconf_set, args, check_mode=True)
    assert not first.get('failed'), first
    assert first['changed'] is True
    assert snapshot(config_dir) == before
    real = run_module(postconf_set, args)
    assert not real.get('failed'), real
    assert real['changed'] is True
    assert real['changes'] == first['changes']
    again = run_module(postconf_set, args, check_mode=True)
    assert again['changed'] is False, again
    assert again['changes'] == []
    last = run_module(postconf_set, args)
    assert last['changed'] is False, last
    return real


@pytest.fixture
def counter(monkeypatch):
    """Count the commands the module runs (through ModuleRunner)."""
    calls = []
    original = common.ModuleRunner._run

    def _run(self, args, data=None):
        calls.append(list(args))
        return original(self, args, data=data)

    monkeypatch.setattr(common.ModuleRunner, '_run', _run)
    return calls


def test_single_parameter(run_module, postfix_dir):
    result = four_steps(run_module, {'name': 'message_size_limit', 'value': 52428800, 'config_dir': postfix_dir})
    assert result['changes'] == [{'name': 'message_size_limit', 'before': None, 'after': '52428800'}]
    assert values(postfix_dir)['message_size_limit'] == '52428800'
    # A different value is a change, with the previous one reported.
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': '1024000', 'config_dir': postfix_dir})
    assert result['changes'] == [{'name': 'message_size_limit', 'before': '52428800', 'after': '1024000'}]


def test_boolean_and_empty_values(run_module, postfix_dir):
    four_steps(run_module, {'params': {'smtpd_helo_required': True, 'biff': False, 'relay_domains': [],
                                       'mydestination': ''}, 'config_dir': postfix_dir})
    current = values(postfix_dir)
    assert current['smtpd_helo_required'] == 'yes'
    assert current['biff'] == 'no'
    assert current['relay_domains'] == ''
    assert current['mydestination'] == ''


def test_batch_of_100_with_constant_commands(run_module, postfix_dir, counter):
    defaults = {}
    settle(postfix_dir)
    for line in postconf(postfix_dir, '-d').splitlines():
        name, dummy, value = line.partition(' = ')
        if re.match(r'^\d+[smhdw]?$', value) and name.endswith(('_limit', '_timeout', '_time', '_size')):
            defaults[name] = value
    names = sorted(defaults)[:100]
    assert len(names) == 100
    params = dict((n, defaults[n]) for n in names)

    run_module(postconf_set, {'name': 'message_size_limit', 'value': 1000, 'config_dir': postfix_dir})
    single = len(counter)
    del counter[:]

    result = run_module(postconf_set, {'params': params, 'config_dir': postfix_dir})
    assert result['changed'] is True, result
    assert len(result['changes']) == 100
    assert len(counter) == single
    postconf_calls = [c for c in counter if os.path.basename(c[0]) == 'postconf']
    assert len([c for c in postconf_calls if '-e' in c]) == 1
    current = values(postfix_dir)
    for name in names:
        assert current[name] == params[name]

    del counter[:]
    assert run_module(postconf_set, {'params': params, 'config_dir': postfix_dir})['changed'] is False
    assert len(counter) == 1

    del counter[:]
    result = run_module(postconf_set, {'params': params, 'state': 'absent', 'config_dir': postfix_dir})
    assert result['changed'] is True
    assert len([c for c in counter if '-X' in c]) == 1
    assert not set(names) & set(values(postfix_dir))


def test_lists(run_module, postfix_dir):
    params = {
        'mynetworks': ['127.0.0.0/8', '[::1]/128', '192.168.2.0/24'],
        'smtpd_relay_restrictions': ['permit_mynetworks', 'permit_sasl_authenticated',
                                     'check_client_access inline:{ 192.0.2.1=REJECT }', 'reject_unauth_destination'],
    }
    four_steps(run_module, {'params': params, 'config_dir': postfix_dir})
    current = values(postfix_dir)
    assert current['mynetworks'] == '127.0.0.0/8, [::1]/128, 192.168.2.0/24'
    assert current['smtpd_relay_restrictions'] == ('permit_mynetworks, permit_sasl_authenticated, '
                                                   'check_client_access inline:{ 192.0.2.1=REJECT }, '
                                                   'reject_unauth_destination')


def test_multiline_value_already_in_place(run_module, postfix_dir):
    with open(os.path.join(postfix_dir, 'main.cf'), 'a') as f:
        f.write('mynetworks = 127.0.0.0/8,\n    [::1]/128\n')
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': 'mynetworks', 'value': ['127.0.0.0/8', '[::1]/128'],
                                       'config_dir': postfix_dir})
    assert result['changed'] is False, result
    assert snapshot(postfix_dir) == before


def test_hash_in_value(run_module, postfix_dir):
    banner = '$myhostname ESMTP #1 # not a comment'
    four_steps(run_module, {'name': 'smtpd_banner', 'value': banner, 'config_dir': postfix_dir})
    assert values(postfix_dir)['smtpd_banner'] == banner


def test_absent(run_module, postfix_dir):
    assert 'biff' in values(postfix_dir)
    args = {'params': {'biff': None, 'append_dot_mydomain': 'ignored', 'soft_bounce': None},
            'state': 'absent', 'config_dir': postfix_dir}
    result = four_steps(run_module, args)
    assert sorted(c['name'] for c in result['changes']) == ['append_dot_mydomain', 'biff']
    assert all(c['after'] is None for c in result['changes'])
    current = values(postfix_dir)
    assert 'biff' not in current and 'append_dot_mydomain' not in current


def test_absent_not_set_is_no_change(run_module, postfix_dir):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': 'soft_bounce', 'state': 'absent', 'config_dir': postfix_dir})
    assert result['changed'] is False
    assert snapshot(postfix_dir) == before


def test_service_override(run_module, postfix_dir):
    add_service(postfix_dir)
    args = {'service': 'submission/inet', 'config_dir': postfix_dir, 'params': {
        'syslog_name': 'postfix/submission',
        'smtpd_tls_security_level': 'encrypt',
        'smtpd_sasl_auth_enable': True,
        'smtpd_client_restrictions': ['permit_sasl_authenticated', 'reject'],
        'smtpd_sender_restrictions': ['check_sender_access hash:/etc/postfix/access', 'permit'],
    }}
    result = four_steps(run_module, args)
    assert 'master.cf' in result['diff']['after_header']
    assert overrides(postfix_dir, 'submission/inet') == {
        'syslog_name': 'postfix/submission',
        'smtpd_tls_security_level': 'encrypt',
        'smtpd_sasl_auth_enable': 'yes',
        'smtpd_client_restrictions': 'permit_sasl_authenticated,reject',
        'smtpd_sender_restrictions': 'check_sender_access,hash:/etc/postfix/access,permit',
    }
    assert 'smtpd_tls_security_level' not in values(postfix_dir)

    absent = {'service': 'submission/inet', 'config_dir': postfix_dir, 'state': 'absent',
              'params': {'smtpd_sasl_auth_enable': None, 'smtpd_sender_restrictions': None}}
    four_steps(run_module, absent)
    assert sorted(overrides(postfix_dir, 'submission/inet')) == [
        'smtpd_client_restrictions', 'smtpd_tls_security_level', 'syslog_name']


def test_service_missing(run_module, postfix_dir):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'service': 'submission/inet', 'name': 'syslog_name',
                                       'value': 'postfix/submission', 'config_dir': postfix_dir})
    assert result['failed']
    assert 'submission/inet is not defined' in result['msg']
    assert snapshot(postfix_dir) == before


def test_service_value_with_whitespace(run_module, postfix_dir):
    add_service(postfix_dir)
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'service': 'submission/inet', 'name': 'smtpd_banner',
                                       'value': 'two words', 'config_dir': postfix_dir})
    assert result['failed']
    assert 'whitespace' in result['msg'] and 'smtpd_banner' in result['msg']
    assert snapshot(postfix_dir) == before


def test_bad_service_syntax(run_module, postfix_dir):
    result = run_module(postconf_set, {'service': 'submission', 'name': 'syslog_name', 'value': 'x',
                                       'config_dir': postfix_dir})
    assert result['failed']
    assert 'SERVICE/TYPE' in result['msg']


@pytest.mark.parametrize('check_mode', [True, False])
def test_unknown_name_with_suggestion(run_module, postfix_dir, check_mode):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'params': {'mynetwork': '127.0.0.0/8', 'message_size_limit': 1000},
                                       'config_dir': postfix_dir}, check_mode=check_mode)
    assert result['failed']
    assert result['msg'].startswith("Unknown Postfix parameter 'mynetwork'. Did you mean 'mynetworks'?")
    assert snapshot(postfix_dir) == before


def test_unknown_service_override(run_module, postfix_dir):
    add_service(postfix_dir)
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'service': 'submission/inet', 'name': 'smtpd_tls_securty_level',
                                       'value': 'encrypt', 'config_dir': postfix_dir})
    assert result['failed']
    assert "Did you mean 'smtpd_tls_security_level'?" in result['msg']
    assert snapshot(postfix_dir) == before


def test_allow_unknown(run_module, postfix_dir):
    four_steps(run_module, {'params': {'estafeta_local_note': u'Se\u00f1or mail', 'mynetwork': 'x'},
                            'allow_unknown': True, 'config_dir': postfix_dir})
    with open(os.path.join(postfix_dir, 'main.cf'), 'rb') as f:
        text = f.read().decode('utf-8')
    assert u'estafeta_local_note = Se\u00f1or mail\n' in text
    # Once set, a known-unknown name still needs allow_unknown.
    result = run_module(postconf_set, {'name': 'mynetwork', 'value': 'x', 'config_dir': postfix_dir})
    assert result['failed'] and 'mynetwork' in result['msg']
    four_steps(run_module, {'params': {'estafeta_local_note': None, 'mynetwork': None}, 'state': 'absent',
                            'config_dir': postfix_dir})


def test_service_defined_parameter_is_known(run_module, postfix_dir):
    args = {'name': 'amavis_destination_recipient_limit', 'value': 1, 'config_dir': postfix_dir}
    result = run_module(postconf_set, args)
    assert result['failed'] and 'amavis_destination_recipient_limit' in result['msg']
    add_service(postfix_dir, 'amavis unix - - n - 2 smtp\n')
    four_steps(run_module, args)
    assert values(postfix_dir)['amavis_destination_recipient_limit'] == '1'


def test_referenced_user_parameter_is_known(run_module, postfix_dir):
    add_service(postfix_dir, SUBMISSION + '  -o smtpd_client_restrictions=$mua_client_restrictions\n')
    four_steps(run_module, {'name': 'mua_client_restrictions', 'value': ['permit_sasl_authenticated', 'reject'],
                            'config_dir': postfix_dir})


@pytest.mark.parametrize('value', ['a\nrelayhost = evil', 'a\rb', 'a\x00b', ['ok', 'bad\nitem']])
def test_control_characters(run_module, postfix_dir, value):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'params': {'smtpd_banner': value, 'message_size_limit': 1},
                                       'config_dir': postfix_dir})
    assert result['failed']
    assert "'smtpd_banner'" in result['msg']
    assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('name', ['bad name', 'relayhost=x', 'a/b'])
def test_bad_names(run_module, postfix_dir, name):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'params': {'message_size_limit': 1, name: 'x'}, 'config_dir': postfix_dir})
    assert result['failed']
    assert repr(name) in result['msg']
    assert snapshot(postfix_dir) == before


def test_value_required(run_module, postfix_dir):
    result = run_module(postconf_set, {'name': 'relayhost', 'config_dir': postfix_dir})
    assert result['failed'] and 'value is required' in result['msg']
    result = run_module(postconf_set, {'params': {'relayhost': None}, 'config_dir': postfix_dir})
    assert result['failed'] and "'relayhost'" in result['msg']
    result = run_module(postconf_set, {'params': {'relayhost': {'a': 1}}, 'config_dir': postfix_dir})
    assert result['failed'] and "'relayhost'" in result['msg']


def test_name_and_params_exclusive(run_module, postfix_dir):
    result = run_module(postconf_set, {'name': 'relayhost', 'value': '', 'params': {'biff': False},
                                       'config_dir': postfix_dir})
    assert result['failed'] and 'mutually exclusive' in result['msg']
    result = run_module(postconf_set, {'config_dir': postfix_dir})
    assert result['failed'] and 'one of the following' in result['msg']


def test_postfix_check_failure_rolls_back(run_module, postfix_dir):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': 'abc', 'config_dir': postfix_dir})
    assert result['failed']
    assert 'Postfix refuses the new configuration' in result['msg']
    assert 'message_size_limit = abc' in result['msg']
    assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('name, value, reason', [
    ('mail_owner', 'no-such-user-x', 'unknown user name'),
    ('inet_protocols', 'ipv9', 'unknown inet_protocols value'),
    ('compatibility_level', 'abc', 'malformed compatibility level'),
    ('queue_directory', '/nonexistent/spool', 'is not a directory'),
    ('data_directory', '/nonexistent/data', 'is not a directory'),
])
def test_refused_configuration_rolls_back(run_module, postfix_dir, name, value, reason):
    """What every Postfix program refuses to start with, and the directories postfix check requires: refused
    on the staged copy already (postconf itself stops) or once installed, and the previous files stay."""
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': name, 'value': value, 'config_dir': postfix_dir})
    assert result['failed'] and reason in result['msg'], result
    assert snapshot(postfix_dir) == before


def test_no_check(run_module, postfix_dir, counter):
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': 2048000, 'check': False,
                                       'config_dir': postfix_dir})
    assert result['changed'] is True
    assert not [c for c in counter if os.path.basename(c[0]) in ('postfix', 'postmap')]


def test_backup(run_module, postfix_dir):
    with open(os.path.join(postfix_dir, 'main.cf'), 'rb') as f:
        original = f.read()
    result = run_module(postconf_set, {'name': 'relayhost', 'value': '[smtp.example.com]:587', 'backup': True,
                                       'config_dir': postfix_dir})
    assert result['changed'] is True
    backup = result['backup_file']
    assert os.path.dirname(backup) == postfix_dir
    with open(backup, 'rb') as f:
        assert f.read() == original
    result = run_module(postconf_set, {'name': 'relayhost', 'value': '[smtp.example.com]:587', 'backup': True,
                                       'config_dir': postfix_dir})
    assert result['changed'] is False
    assert 'backup_file' not in result


def test_diff(run_module, postfix_dir):
    with open(os.path.join(postfix_dir, 'main.cf')) as f:
        original = f.read()
    result = run_module(postconf_set, {'name': 'relayhost', 'value': '[smtp.example.com]:587',
                                       'config_dir': postfix_dir}, check_mode=True, diff=True)
    diff = result['diff']
    assert diff['before'] == original
    assert diff['after'] != original
    assert 'relayhost = [smtp.example.com]:587\n' in diff['after']
    assert diff['before_header'] == os.path.join(postfix_dir, 'main.cf') + ' (before)'
    result = run_module(postconf_set, {'name': 'relayhost', 'value': 'x', 'config_dir': postfix_dir}, diff=False)
    assert 'diff' not in result


def test_check_mode_absent(run_module, postfix_dir):
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': 'biff', 'state': 'absent', 'config_dir': postfix_dir},
                        check_mode=True)
    assert result['changed'] is True
    assert result['changes'] == [{'name': 'biff', 'before': 'no', 'after': None}]
    assert 'biff = no' not in result['diff']['after']
    assert snapshot(postfix_dir) == before


def test_missing_config_dir(run_module, tmp_path):
    result = run_module(postconf_set, {'name': 'biff', 'value': False, 'config_dir': str(tmp_path / 'nothere')})
    assert result['failed'] and 'does not exist' in result['msg']


def pauses(config_dir):
    """Whether Postfix pauses to let main.cf "cool down" when it reads it (its own word, at -v -v)."""
    proc = subprocess.run([os.path.join(SBIN, 'postconf'), '-v', '-v', '-c', config_dir, '-h', 'message_size_limit'],
                          capture_output=True, text=True, check=True, env={'LANG': 'C'})
    return 'pausing to let %s cool down' % os.path.join(config_dir, 'main.cf') in proc.stderr


def test_installed_main_cf_is_read_at_once(run_module, postfix_dir):
    """The installed main.cf carries a settled timestamp: Postfix reads it without its ~2 s wait.

    Postfix pauses while a file it reads was modified within the last second or two; without the
    settled timestamp every command after the change would pay that wait. Proved by Postfix's own
    verbose output, not by a clock: it says when it pauses.
    """
    settle(postfix_dir)
    result = run_module(postconf_set, {'config_dir': postfix_dir, 'name': 'message_size_limit', 'value': '20480000'})
    assert result['changed'] is True
    mtime = os.stat(os.path.join(postfix_dir, 'main.cf')).st_mtime
    assert mtime <= time.time() - common.SETTLE_SECONDS + 0.5
    assert postconf(postfix_dir, '-h', 'message_size_limit').strip() == '20480000'
    assert not pauses(postfix_dir)
    # Control: the same file with a fresh timestamp makes Postfix pause.
    os.utime(os.path.join(postfix_dir, 'main.cf'))
    assert pauses(postfix_dir)


def test_new_parameters_in_a_stable_order(run_module, tmp_path, postfix_dir):
    """postconf -e appends new parameters in hash-table order; the module puts them in name order,
    so the same run gives the same main.cf, byte for byte, on every host."""
    names = ('helo_required', 'delay_reject', 'tls_received_header', 'sasl_auth_enable', 'tls_loglevel')
    params = dict(('smtpd_%s' % n, 'yes') for n in names)
    params.update({'message_size_limit': '2048000', 'delay_warning_time': '3h', 'biff': 'no'})
    texts = set()
    for i in range(4):
        conf = str(tmp_path / ('copy%d' % i))
        shutil.copytree(postfix_dir, conf)
        settle(conf)
        result = run_module(postconf_set, {'config_dir': conf, 'params': params})
        assert result['changed'] is True
        with open(os.path.join(conf, 'main.cf')) as f:
            texts.add(f.read())
    assert len(texts) == 1
    appended = [line.partition(' =')[0] for line in texts.pop().splitlines()[-6:]]
    assert appended == sorted(appended)


# ---------------------------------------------------------------- what Postfix reads back

PIPE_SERVICE = 'filter unix - n n - - pipe\n  flags=Rq user=nobody argv=/bin/true ${recipient}\n'
PIPE_ARGS = ['flags=Rq', 'user=nobody', 'argv=/bin/true', '${recipient}']
CONTROLS = ['\x00', '\t', '\n', '\r', '\x0b', '\x0c', '\x1b', '\x1c', '\x1d', '\x1e', '\x1f', '\x7f', '\x85', '\x9f']


def pipe_entry(config_dir):
    from ansible_collections.estafeta.postfix.plugins.module_utils import master_cf
    settle(config_dir)
    return master_cf.service_in(postconf(config_dir, '-Mf', 'filter/unix'), 'filter', 'unix')


@pytest.mark.parametrize('value', ['a{b', 'a}b', '}{', '{a', 'x{y}}', ['a', 'b{c']])
def test_service_value_with_unbalanced_braces_is_refused(run_module, postfix_dir, value):
    """The issue's case: a pipe service whose arguments follow the overrides. An unbalanced brace would
    swallow them; it is refused, and master.cf stays byte-identical."""
    add_service(postfix_dir, PIPE_SERVICE)
    before = snapshot(postfix_dir)
    for check_mode in (True, False):
        result = run_module(postconf_set, {'service': 'filter/unix', 'params': {'smtp_helo_name': value},
                                           'config_dir': postfix_dir}, check_mode=check_mode)
        assert result.get('failed') is True, result
        assert 'smtp_helo_name' in result['msg'] and 'unbalanced braces' in result['msg']
        assert snapshot(postfix_dir) == before
    assert pipe_entry(postfix_dir)['args'] == PIPE_ARGS


@pytest.mark.parametrize('value', ['a{b}c', '{x}', 'inline:{a=b}', '{{nested}}'])
def test_service_value_with_braces_in_pairs(run_module, postfix_dir, value):
    add_service(postfix_dir, PIPE_SERVICE)
    four_steps(run_module, {'service': 'filter/unix', 'params': {'smtp_helo_name': value}, 'check': False,
                            'config_dir': postfix_dir})
    entry = pipe_entry(postfix_dir)
    assert entry['options'] == {'smtp_helo_name': value}
    assert entry['args'] == PIPE_ARGS
    assert overrides(postfix_dir, 'filter/unix') == {'smtp_helo_name': value}


@pytest.mark.parametrize('char', CONTROLS, ids=lambda c: 'U+%04X' % ord(c))
@pytest.mark.parametrize('service', [None, 'filter/unix'])
def test_every_control_character_is_refused(run_module, postfix_dir, char, service):
    add_service(postfix_dir, PIPE_SERVICE)
    before = snapshot(postfix_dir)
    args = {'params': {'smtpd_banner': 'a%sb' % char}, 'config_dir': postfix_dir}
    if service:
        args['service'] = service
    result = run_module(postconf_set, args)
    assert result.get('failed') is True, result
    assert "'smtpd_banner'" in result['msg']
    assert 'U+%04X' % ord(char) in result['msg'] or repr(char) in result['msg'], result['msg']
    assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('char', ['\u2028', '\u2029', '\u00a0', '\u3000'], ids=lambda c: 'U+%04X' % ord(c))
def test_unicode_separators_round_trip(run_module, postfix_dir, char):
    """Postfix splits lines on \\n only: U+2028 and friends are text, in main.cf and in master.cf."""
    value = 'a%sb%s' % (char, char)
    four_steps(run_module, {'name': 'smtpd_banner', 'value': value, 'check': False, 'config_dir': postfix_dir})
    settle(postfix_dir)
    assert postconf(postfix_dir, '-h', 'smtpd_banner') == value + '\n'
    add_service(postfix_dir, PIPE_SERVICE)
    four_steps(run_module, {'service': 'filter/unix', 'params': {'smtp_helo_name': value}, 'check': False,
                            'config_dir': postfix_dir})
    entry = pipe_entry(postfix_dir)
    assert entry['options'] == {'smtp_helo_name': value} and entry['args'] == PIPE_ARGS


def test_service_read_back_catches_a_swallowed_argument(run_module, postfix_dir, monkeypatch):
    """The last safety net: with the brace check switched off, postconf -P writes the value and the
    arguments after it are swallowed; the read-back of the staged copy sees it and nothing is written."""
    from ansible_collections.estafeta.postfix.plugins.module_utils import master_cf
    monkeypatch.setattr(master_cf, 'check_master_text', lambda what, text: None)
    add_service(postfix_dir, PIPE_SERVICE)
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'service': 'filter/unix', 'params': {'smtp_helo_name': 'a{b'},
                                       'config_dir': postfix_dir})
    assert result.get('failed') is True, result
    assert 'Postfix reads the service filter/unix differently' in result['msg'], result['msg']
    assert snapshot(postfix_dir) == before


def test_symlinked_main_cf_is_followed(run_module, postfix_dir, tmp_path):
    elsewhere = tmp_path / 'shared'
    elsewhere.mkdir()
    real = str(elsewhere / 'main.cf')
    link = os.path.join(postfix_dir, 'main.cf')
    os.rename(link, real)
    os.symlink(real, link)
    four_steps(run_module, {'name': 'message_size_limit', 'value': 20480000, 'config_dir': postfix_dir})
    assert os.path.islink(link) and os.readlink(link) == real
    assert os.listdir(str(elsewhere)) == ['main.cf']
    assert values(postfix_dir)['message_size_limit'] == '20480000'


def test_dangling_main_cf_link_is_refused(run_module, postfix_dir):
    link = os.path.join(postfix_dir, 'main.cf')
    os.unlink(link)
    os.symlink(os.path.join(postfix_dir, 'nowhere', 'main.cf'), link)
    before = snapshot(postfix_dir)
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': 1, 'config_dir': postfix_dir})
    assert result.get('failed') is True
    assert snapshot(postfix_dir) == before and os.path.islink(link)


@pytest.mark.parametrize('call, err', [('rename', 5), ('link', 1), ('utime', 5)])
def test_failure_while_installing_changes_nothing(run_module, postfix_dir, monkeypatch, call, err):
    original = getattr(os, call)

    def failing(*a, **kw):
        target = os.fsdecode(a[1] if call in ('rename', 'link') else a[0])
        if os.path.dirname(os.path.abspath(target)) == postfix_dir:
            raise OSError(err, 'injected failure', target)
        return original(*a, **kw)

    before = snapshot(postfix_dir)
    monkeypatch.setattr(os, call, failing)
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': 1000, 'config_dir': postfix_dir})
    monkeypatch.setattr(os, call, original)
    assert result.get('failed') is True and 'injected failure' in result['msg'], result
    assert snapshot(postfix_dir) == before


@pytest.mark.parametrize('service', [None, 'filter/unix'])
def test_value_postfix_warns_about_is_refused(run_module, postfix_dir, service):
    """"{mail}.example": braces in pairs, but Postfix takes an element that starts with "{" as { text } and
    warns about the text after "}"; the module passes the warning on and writes nothing."""
    add_service(postfix_dir, PIPE_SERVICE)
    before = snapshot(postfix_dir)
    args = {'params': {'smtp_helo_name': '{mail}.example'}, 'config_dir': postfix_dir}
    if service:
        args['service'] = service
    result = run_module(postconf_set, args)
    assert result.get('failed') is True, result
    assert "syntax error after '}'" in result['msg'] and 'smtp_helo_name' in result['msg']
    assert snapshot(postfix_dir) == before
