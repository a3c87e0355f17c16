# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Converged-state records against a scratch configuration with the real Postfix binaries.

Every kind of hand edit of something a record covers must make the record fail to hold, and legitimate
changes of other owners of a shared restriction list must not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils import converged
from ansible_collections.estafeta.postfix.plugins.module_utils import restrictions
from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, SubprocessRunner
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf

INPUT = 'a' * 64
OTHER_INPUT = 'b' * 64
RELAY = 'smtpd_relay_restrictions'


def settle(config_dir):
    past = time.time() - 60
    for name in os.listdir(config_dir):
        os.utime(os.path.join(config_dir, name), (past, past))


def set_param(config_dir, text):
    postconf(config_dir, '-e', text)
    settle(config_dir)


def postmap(config_dir, *args):
    subprocess.run(['/usr/sbin/postmap', '-c', config_dir] + list(args), check=True, capture_output=True)


@pytest.fixture
def env(postfix_dir, tmp_path):
    """A scratch Postfix configuration with a table, a shared list, and a helper that records a role."""
    runner = SubprocessRunner()
    state_dir = str(tmp_path / 'state')
    table = os.path.join(postfix_dir, 'virtual')
    with open(table, 'w') as f:
        f.write('alice@example.test root\nbob@example.test root\n')
    postmap(postfix_dir, 'hash:' + table)
    set_param(postfix_dir, 'myhostname=mail.example.test')
    for owner, items in (('base', ['permit_mynetworks', 'reject_unauth_destination']),
                         ('anti_relay', ['permit_sasl_authenticated'])):
        restrictions.apply(runner, postfix_dir, RELAY, owner, items, exclusive=True)
    settle(postfix_dir)

    def converge(role='base', spec=None, input_digest=INPUT):
        spec = spec if spec is not None else SPEC(postfix_dir)
        return converged.record(runner, state_dir, [entry(role, input_digest, spec, postfix_dir)])

    return {'runner': runner, 'state_dir': state_dir, 'dir': postfix_dir, 'table': table, 'converge': converge}


def entry(role, digest, spec, config_dir):
    return {'role': role, 'input': digest, 'spec': spec, 'config_dir': config_dir}


def SPEC(config_dir):
    return ['param myhostname', 'list %s base' % RELAY, 'table %s hash' % os.path.join(config_dir, 'virtual'),
            'service smtp/inet']


def read(env):
    return converged.read(env['runner'], env['state_dir'])


def test_record_then_read(env):
    runner, state_dir = env['runner'], env['state_dir']
    assert converged.read(runner, state_dir) == {'records': {}, 'drifted': {}, 'inputs': {}}
    result = converged.record(runner, state_dir, [entry('base', INPUT, SPEC(env['dir']), env['dir'])])
    assert result['changed'] is True and result['recorded'] == ['base'] and result['warnings'] == []
    assert result['diff']['before'] == '' and '"role": "base"' in result['diff']['after']
    assert read(env) == {'records': {'base': INPUT}, 'drifted': {}, 'inputs': {'base': INPUT}}
    # The same record again: nothing to write.
    again = converged.record(runner, state_dir, [entry('base', INPUT, SPEC(env['dir']), env['dir'])])
    assert (again['changed'], again['recorded']) == (False, [])
    # Another input digest, or another spec, is a new record.
    assert converged.record(runner, state_dir, [entry('base', OTHER_INPUT, SPEC(env['dir']), env['dir'])])['changed']
    assert converged.record(runner, state_dir, [entry('base', OTHER_INPUT, ['param myhostname'], env['dir'])])['changed']
    assert read(env) == {'records': {'base': OTHER_INPUT}, 'drifted': {}, 'inputs': {'base': OTHER_INPUT}}


def test_several_roles_at_once_and_shared_objects(env):
    runner, state_dir = env['runner'], env['state_dir']
    result = converged.record(runner, state_dir, [
        entry('base', INPUT, ['param myhostname', 'list %s base' % RELAY, 'package postfix'], env['dir']),
        entry('tls', OTHER_INPUT, ['param myhostname', 'list %s anti_relay' % RELAY, 'package postfix'], env['dir'])])
    assert result['recorded'] == ['base', 'tls']
    # Two roles setting one parameter is a conflict to report; shared lists and packages are not.
    assert len(result['warnings']) == 1 and 'param myhostname is managed by base and tls' in result['warnings'][0]
    assert read(env)['records'] == {'base': INPUT, 'tls': OTHER_INPUT}
    with pytest.raises(PostfixError):
        converged.record(runner, state_dir, [entry('base', INPUT, [], env['dir']), entry('base', INPUT, [], env['dir'])])


def test_records_and_directory_are_private(env):
    env['converge']()
    directory = converged.records_dir(env['state_dir'])
    assert stat.S_IMODE(os.stat(env['state_dir']).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(directory, 'base.json')).st_mode) == 0o600


def test_check_mode_writes_nothing(env):
    result = converged.record(env['runner'], env['state_dir'], [entry('base', INPUT, SPEC(env['dir']), env['dir'])],
                              check_mode=True)
    assert result['changed'] is True and result['recorded'] == ['base']
    assert not os.path.exists(env['state_dir'])
    env['converge']()
    before = open(converged.record_path(env['state_dir'], 'base')).read()
    assert converged.record(env['runner'], env['state_dir'], [entry('base', OTHER_INPUT, SPEC(env['dir']), env['dir'])],
                            check_mode=True)['changed'] is True
    assert open(converged.record_path(env['state_dir'], 'base')).read() == before


def _drifts(env, edit, item_kind):
    env['converge']()
    assert read(env)['records'] == {'base': INPUT}
    edit()
    settle(env['dir'])
    state = read(env)
    assert 'base' not in state['records'], 'the edit was not seen'
    assert any(item.startswith(item_kind) for item in state['drifted']['base']), state['drifted']


def test_param_edit(env):
    _drifts(env, lambda: set_param(env['dir'], 'myhostname=evil.example.test'), 'param myhostname')


def test_param_removed(env):
    _drifts(env, lambda: postconf(env['dir'], '-X', 'myhostname'), 'param myhostname')


@pytest.mark.parametrize('value', [
    'permit, permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',   # prepend
    'permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination',           # reorder
    'permit_mynetworks, permit_sasl_authenticated',                                       # remove
    '',                                                                                    # empty
])
def test_shared_list_hand_edits(env, value):
    _drifts(env, lambda: set_param(env['dir'], '%s=%s' % (RELAY, value)), 'list %s base' % RELAY)


def test_multi_word_item_removed(env):
    restrictions.apply(env['runner'], env['dir'], RELAY, 'anti_relay',
                       ['permit_sasl_authenticated', 'check_sender_access hash:/etc/postfix/access'], exclusive=True)
    settle(env['dir'])
    _drifts(env, lambda: set_param(env['dir'], '%s=permit_mynetworks, permit_sasl_authenticated, '
                                   'check_sender_access, reject_unauth_destination' % RELAY), 'list')


def test_other_owner_changes_keep_the_record(env):
    """Another role's items change through the module: the base role's record still holds."""
    env['converge']()
    restrictions.apply(env['runner'], env['dir'], RELAY, 'anti_relay',
                       ['permit_sasl_authenticated', 'reject_unknown_sender_domain'], exclusive=True)
    settle(env['dir'])
    assert read(env)['records'] == {'base': INPUT}


def test_own_items_changed_in_the_ownership_record(env):
    def edit():
        restrictions.apply(env['runner'], env['dir'], RELAY, 'base', ['permit_mynetworks', 'reject'], exclusive=True)
    _drifts(env, edit, 'list %s base' % RELAY)


def test_table_source_edit(env):
    def edit():
        with open(env['table'], 'a') as f:
            f.write('eve@example.test root\n')
    _drifts(env, edit, 'table')


def test_database_rebuilt_with_extra_entries(env):
    def edit():
        other = os.path.join(env['dir'], 'other')
        with open(other, 'w') as f:
            f.write('alice@example.test root\nbob@example.test root\nmallory@example.test root\n')
        postmap(env['dir'], 'hash:' + other)
        os.rename(other + '.db', env['table'] + '.db')
    _drifts(env, edit, 'table')


def test_database_deleted(env):
    _drifts(env, lambda: os.unlink(env['table'] + '.db'), 'table')


def test_file_mode(env):
    _drifts(env, lambda: os.chmod(env['table'], 0o666), 'table')


def test_service_override_changed_added_removed(env):
    def change():
        postconf(env['dir'], '-P', 'smtp/inet/smtpd_tls_security_level=none')
    _drifts(env, change, 'service smtp/inet')
    env['converge']()
    postconf(env['dir'], '-P', '-X', 'smtp/inet/smtpd_tls_security_level')
    settle(env['dir'])
    assert 'base' in read(env)['drifted']
    env['converge']()
    postconf(env['dir'], '-M', '-X', 'smtp/inet')
    settle(env['dir'])
    assert 'service smtp/inet' in read(env)['drifted']['base']


def test_file_kind_directory_and_missing(env, tmp_path):
    directory = tmp_path / 'd'
    directory.mkdir()
    spec = ['file %s' % directory, 'file %s' % (tmp_path / 'absent')]
    env['converge'](spec=spec)
    assert read(env)['records'] == {'base': INPUT}
    os.chmod(str(directory), 0o777)
    assert read(env)['drifted']['base'] == ['file %s' % directory]
    env['converge'](spec=spec)
    (tmp_path / 'absent').write_text('now here')
    assert read(env)['drifted']['base'] == ['file %s' % (tmp_path / 'absent')]


def test_package_and_master(env):
    spec = ['package postfix', 'package estafeta-no-such-package', 'master']
    env['converge'](spec=spec)
    assert read(env)['records'] == {'base': INPUT}
    lines = converged.HostView(env['runner'], env['dir']).lines('package postfix', ['postfix', 'estafeta-no-such-package'])
    assert lines[0].startswith('package postfix ') and 'missing' not in lines[0]
    assert converged.HostView(env['runner'], env['dir']).lines('package estafeta-no-such-package') == [
        'package estafeta-no-such-package missing']
    # The scratch instance has no master process.
    assert converged.HostView(env['runner'], env['dir']).lines('master') == ['master stopped']


def test_certificate_renewal_window(env, tmp_path):
    cert = str(tmp_path / 'cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(tmp_path / 'key.pem'),
                    '-out', cert, '-days', '10', '-subj', '/CN=mail.example.test'], check=True, capture_output=True)
    view = converged.HostView(env['runner'], env['dir'])
    assert view.lines('cert %s 5' % cert) == ['cert %s valid beyond the margin' % cert]
    assert view.lines('cert %s 30' % cert) == ['cert %s expiring or unreadable' % cert]
    assert view.lines('cert %s 5' % (tmp_path / 'none')) == ['cert %s missing' % (tmp_path / 'none')]


def test_debian_release_is_always_fingerprinted(env):
    env['converge']()
    record = converged.load_records(env['state_dir'])['base']
    assert 'file /etc/debian_version' in record['items']


def test_corrupt_or_foreign_records_are_ignored(env):
    env['converge']()
    directory = converged.records_dir(env['state_dir'])
    with open(os.path.join(directory, 'base.json'), 'w') as f:
        f.write('{not json')
    with open(os.path.join(directory, 'Bad-Name.json'), 'w') as f:
        f.write('{}')
    assert read(env) == {'records': {}, 'drifted': {}, 'inputs': {}}
    # A record that is not valid JSON is replaced by the next run's record.
    assert env['converge']()['changed'] is True
    assert read(env)['records'] == {'base': INPUT}


def test_forget(env):
    env['converge']()
    env['converge'](role='tls')
    assert converged.forget(env['state_dir'], ['tls']) == {'changed': True, 'forgotten': ['tls']}
    assert read(env)['records'] == {'base': INPUT}
    assert converged.forget(env['state_dir'], []) == {'changed': True, 'forgotten': ['base']}
    assert converged.forget(env['state_dir'], []) == {'changed': False, 'forgotten': []}


@pytest.mark.parametrize('spec, message', [
    ('param myhostname', 'must be a list'),
    (['nothing here'], 'unknown kind'),
    (['param'], 'takes 1 word'),
    (['param a b'], 'takes 1 word'),
    (['file relative/path'], 'absolute'),
    (['table /etc/postfix/x nosuchtype'], 'unknown table type'),
    (['cert /etc/ssl/x.pem soon'], 'number of days'),
    (['param a\nparam b'], 'one-line'),
    ([' param a'], 'one-line'),
])
def test_bad_spec(env, spec, message):
    with pytest.raises(PostfixError) as err:
        converged.record(env['runner'], env['state_dir'], [entry('base', INPUT, spec, env['dir'])])
    assert message in err.value.msg
    assert not os.path.exists(env['state_dir'])


@pytest.mark.parametrize('role, digest', [('Base', INPUT), ('../x', INPUT), ('base', 'x' * 64), ('base', INPUT[:10])])
def test_bad_role_or_digest(env, role, digest):
    with pytest.raises(PostfixError):
        converged.record(env['runner'], env['state_dir'], [entry(role, digest, ['param myhostname'], env['dir'])])
    assert not os.path.exists(env['state_dir'])
