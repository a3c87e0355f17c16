# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The security decisions the roles compute, for whole classes of input (the Molecule scenarios prove them
over SMTP): which relays may receive credentials and get mandatory TLS, our own clients permitted before
every check for strangers, mandatory TLS at TLS 1.2, the amavisd-new re-injection service.

The roles' variables are rendered as Ansible renders them (defaults, vars, the given overrides), with
the helpers of test_roles_converged.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import re
import sys

import pytest
from passlib.hash import sha512_crypt

from ansible.template import Templar
from ansible_collections.estafeta.postfix.plugins.module_utils.restrictions import order

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_roles_converged import LOADER, ROLES_DIR, render, role_vars  # noqa: E402 pylint: disable=wrong-import-position

MANDATORY = ('encrypt', 'fingerprint', 'verify', 'secure', 'dane-only')
MAIN = '[relay.example.test]:587'


def value(role, overrides, expression):
    variables = role_vars(role, overrides)
    return render(Templar(loader=LOADER, variables=variables), expression)


def smarthost(**overrides):
    base = {'smarthost_relayhost': 'relay.example.test'}
    base.update(overrides)
    return base


CREDS = {'smarthost_auth': True, 'smarthost_username': 'u', 'smarthost_password': 'p'}

# (overrides, relays that may receive credentials, {relay: level} expected)
CASES = [
    ('no credentials', smarthost(), [], {MAIN: 'may'}),
    ('relayhost credentials', smarthost(**CREDS), [MAIN], {MAIN: 'encrypt'}),
    ('sender credentials only: the relayhost stays opportunistic', smarthost(smarthost_sender_relays=[
        {'sender': '@a.test', 'relayhost': '[r1.test]:587', 'username': 'a', 'password': 'pa'},
        {'sender': '@b.test', 'relayhost': '[r2.test]:25'}]),
     ['[r1.test]:587'], {MAIN: 'may', '[r1.test]:587': 'encrypt', '[r2.test]:25': 'may'}),
    ('an address falls back to its @domain credentials', smarthost(smarthost_sender_relays=[
        {'sender': '@a.test', 'relayhost': '[r1.test]:587', 'username': 'a', 'password': 'pa'},
        {'sender': 'boss@A.test', 'relayhost': '[r2.test]:25'},
        {'sender': 'boss@b.test', 'relayhost': '[r3.test]:25'}]),
     ['[r1.test]:587', '[r2.test]:25'],
     {MAIN: 'may', '[r1.test]:587': 'encrypt', '[r2.test]:25': 'encrypt', '[r3.test]:25': 'may'}),
    ('both, one relay shared', smarthost(smarthost_sender_relays=[
        {'sender': 'x@a.test', 'relayhost': MAIN, 'username': 'x', 'password': 'px'}], **CREDS),
     [MAIN], {MAIN: 'encrypt'}),
    ('a level for all relays', smarthost(smarthost_tls_security_level='secure', **CREDS), [MAIN], {MAIN: 'secure'}),
]


@pytest.mark.parametrize('what, overrides, relays, levels', CASES, ids=[c[0] for c in CASES])
def test_credentials_mean_mandatory_tls(what, overrides, relays, levels):
    assert sorted(value('smarthost', overrides, '{{ __smarthost_credential_relays }}')) == sorted(relays)
    policy = value('smarthost', overrides, '{{ __smarthost_tls_policy }}')
    assert dict((relay, entry.split()[0]) for relay, entry in policy.items()) == levels
    for relay, entry in policy.items():
        level = entry.split()[0]
        # Mandatory levels refuse TLS below 1.2; opportunistic ones keep Postfix's defaults.
        assert ('protocols=>=TLSv1.2' in entry.split()) == (level in MANDATORY), entry
        if relay in relays:
            assert level in MANDATORY
    assert value('smarthost', overrides, '{{ __smarthost_cleartext_relays }}') == []
    params = value('smarthost', overrides, '{{ __smarthost_params }}')
    assert 'noplaintext' in params['smtp_sasl_security_options']
    assert 'noplaintext' not in params['smtp_sasl_tls_security_options']


@pytest.mark.parametrize('level', ['none', 'may', 'dane'])
@pytest.mark.parametrize('overrides', [
    smarthost(**CREDS),
    smarthost(smarthost_sender_relays=[{'sender': '@a.test', 'relayhost': '[r1.test]:587', 'username': 'a',
                                        'password': 'pa'}]),
], ids=['relayhost credentials', 'sender credentials'])
def test_a_level_that_may_send_in_clear_is_refused(overrides, level):
    overrides = dict(overrides, smarthost_tls_security_level=level)
    assert value('smarthost', overrides, '{{ __smarthost_cleartext_relays }}') != []


def test_the_role_asserts_the_rules():
    """The assertions of the role are those of this test: no cleartext relay, noplaintext with credentials."""
    with open(os.path.join(ROLES_DIR, 'smarthost', 'tasks', 'main.yml')) as handle:
        text = handle.read()
    assert '__smarthost_cleartext_relays | length == 0' in text
    assert "not __smarthost_use_auth or 'noplaintext' in smarthost_sasl_security_options" in text


def test_verification_attributes():
    pinned = value('smarthost', smarthost(smarthost_tls_security_level='fingerprint',
                                          smarthost_tls_fingerprints=['AA:BB', 'CC:DD'], **CREDS),
                   '{{ __smarthost_tls_policy }}')
    assert pinned == {MAIN: 'fingerprint protocols=>=TLSv1.2 match=AA:BB|CC:DD'}
    secure = value('smarthost', smarthost(smarthost_tls_security_level='secure', smarthost_tls_match=['relay.example.test', 'nexthop'],
                                          smarthost_tls_ca_certificates='PEM', **CREDS), '{{ __smarthost_tls_policy }}')
    assert secure == {MAIN: 'secure protocols=>=TLSv1.2 match=relay.example.test:nexthop'}
    params = value('smarthost', smarthost(smarthost_tls_ca_certificates='PEM'), '{{ __smarthost_params }}')
    assert params['smtp_tls_CAfile'] == '/etc/postfix/smarthost_tls_ca.pem'
    assert value('smarthost', smarthost(), '{{ __smarthost_params }}')['smtp_tls_CAfile'] == ''


LISTS = ['smtpd_relay_restrictions', 'smtpd_recipient_restrictions', 'smtpd_sender_restrictions',
         'smtpd_helo_restrictions', 'smtpd_client_restrictions']


@pytest.mark.parametrize('overrides', [
    {},
    {'anti_relay_sender_restrictions': ['reject_non_fqdn_sender', 'reject_unknown_sender_domain',
                                        'reject_rhsbl_sender dbl.example.test']},
    {'anti_relay_helo_restrictions': ['reject_non_fqdn_helo_hostname', 'reject_unknown_helo_hostname'],
     'anti_relay_client_restrictions': ['reject_unknown_client_hostname'],
     'anti_relay_recipient_restrictions': ['reject_unauth_destination', 'reject_unknown_recipient_domain'],
     'anti_relay_sender_access': {'spam@example.test': 'REJECT'}},
], ids=['defaults', 'own sender list without permits', 'every list without permits'])
def test_own_clients_permitted_first(overrides):
    lists = dict((entry['name'], entry) for entry in value('anti_relay', overrides, '{{ __anti_relay_lists }}'))
    assert sorted(lists) == sorted(LISTS)
    for name, entry in lists.items():
        composed = order(entry['items'])
        if not entry['items']:
            continue
        assert composed[:2] == ['permit_mynetworks', 'permit_sasl_authenticated'], (name, composed)
    assert any(i.startswith('reject_') for i in lists['smtpd_sender_restrictions']['items'])


def test_permits_can_be_switched_off():
    overrides = {'anti_relay_permit_trusted': False,
                 'anti_relay_sender_restrictions': ['reject_non_fqdn_sender'],
                 'anti_relay_helo_restrictions': ['reject_invalid_helo_hostname']}
    lists = dict((entry['name'], entry['items']) for entry in value('anti_relay', overrides, '{{ __anti_relay_lists }}'))
    assert lists['smtpd_sender_restrictions'] == ['reject_non_fqdn_sender']
    assert lists['smtpd_helo_restrictions'] == ['reject_invalid_helo_hostname']
    assert lists['smtpd_client_restrictions'] == []


def test_empty_lists_stay_empty():
    lists = dict((entry['name'], entry['items']) for entry in value('anti_relay', {}, '{{ __anti_relay_lists }}'))
    assert lists['smtpd_client_restrictions'] == []


def test_submission_requires_tls_1_2():
    options = value('anti_relay', {'anti_relay_submission_enabled': True}, '{{ __anti_relay_submission_options }}')
    assert options['smtpd_tls_security_level'] == 'encrypt'
    assert options['smtpd_tls_mandatory_protocols'] == '>=TLSv1.2'


@pytest.mark.parametrize('hardened, opportunistic', [(False, '>=TLSv1'), (True, '>=TLSv1.2')])
def test_mandatory_tls_is_1_2_whatever_hardened_says(hardened, opportunistic):
    params = value('tls', {'tls_hardened': hardened}, '{{ __tls_params }}')
    for side in ('smtpd', 'smtp'):
        assert params['%s_tls_mandatory_protocols' % side] == '>=TLSv1.2'
        assert params['%s_tls_protocols' % side] == opportunistic


@pytest.mark.parametrize('maxproc', [1, 2, 5])
def test_amavis_numbers_agree(maxproc):
    overrides = {'content_filter_amavis_enabled': True, 'content_filter_amavis_myhostname': 'mail.example.test',
                 'content_filter_amavis_maxproc': maxproc, 'ansible_managed': 'Ansible managed'}
    options = value('content_filter', overrides, '{{ __content_filter_reinject_options }}')
    assert options['receive_override_options'] == ['no_header_body_checks', 'no_unknown_recipient_checks', 'no_milters']
    assert options['smtpd_authorized_xforward_hosts'] == '127.0.0.0/8'
    assert int(value('content_filter', overrides, '{{ __content_filter_reinject_maxproc }}')) == 2 * maxproc
    with open(os.path.join(ROLES_DIR, 'content_filter', 'templates', 'amavis-postfix.conf.j2')) as handle:
        template = handle.read()
    conf = value('content_filter', overrides, template)
    assert '$max_servers = %d;' % maxproc in conf
    with open(os.path.join(ROLES_DIR, 'content_filter', 'tasks', 'amavis.yml')) as handle:
        tasks = handle.read()
    assert 'maxproc: "{{ content_filter_amavis_maxproc }}"' in tasks
    assert 'maxproc: "{{ __content_filter_reinject_maxproc }}"' in tasks


# ---------------------------------------------------------------- the submission users' file

USERS_HEADER = '# Managed by Ansible (estafeta.postfix.anti_relay): local edits are overwritten.'
SHA512_LINE = re.compile(r'^(?P<name>[^:]+):\{SHA512-CRYPT\}(?P<hash>\$6\$(?:rounds=(?P<rounds>\d+)\$)?'
                         r'(?P<salt>[./0-9A-Za-z]+)\$[./0-9A-Za-z]{86})$')


def users_file(users, current=None, rounds=50000):
    """The file the role writes for ``users`` when the host's file holds ``current`` (None: no file)."""
    registered = ({'failed': True, 'msg': 'file not found: /etc/dovecot/estafeta-postfix-users'} if current is None
                  else {'content': base64.b64encode(current.encode()).decode()})
    return value('anti_relay', {'anti_relay_submission_users': users, 'anti_relay_submission_hash_rounds': rounds,
                                '__anti_relay_users_current': registered}, '{{ __anti_relay_users_file }}')


def sha512_entries(content):
    return dict((m.group('name'), m) for m in (SHA512_LINE.match(line) for line in content.splitlines()) if m)


def test_users_file_new_hashes_have_random_salts():
    users = [{'name': 'alice', 'password': 'S3cret-a'}, {'name': 'bob', 'password': 'S3cret-a'}]
    first, second = users_file(users), users_file(users)
    assert first.startswith(USERS_HEADER + '\n') and first.endswith('\n')
    one, two = sha512_entries(first), sha512_entries(second)
    assert sorted(one) == ['alice', 'bob']
    for name in one:
        assert one[name].group('rounds') == '50000'
        assert sha512_crypt.verify('S3cret-a', one[name].group('hash'))
    # Not derived from the name or the host: two users with one password differ, and so do two runs.
    salts = [one['alice'].group('salt'), one['bob'].group('salt'), two['alice'].group('salt'), two['bob'].group('salt')]
    assert len(set(salts)) == 4 and all(len(salt) == 16 for salt in salts)
    assert 'S3cret-a' not in first


def test_users_file_keeps_hashes_that_verify():
    users = [{'name': 'alice', 'password': 'S3cret-a'}, {'name': 'bob', 'password': 'S3cret-b'}]
    first = users_file(users)
    assert users_file(users, first) == first
    # One password changed: only that user gets a new hash, with a new salt; the other line stays as it was.
    changed = users_file([users[0], {'name': 'bob', 'password': 'N3w-b'}], first)
    before, after = sha512_entries(first), sha512_entries(changed)
    assert after['alice'].group(0) == before['alice'].group(0)
    assert after['bob'].group('salt') != before['bob'].group('salt')
    assert sha512_crypt.verify('N3w-b', after['bob'].group('hash'))
    assert not sha512_crypt.verify('S3cret-b', after['bob'].group('hash'))


def test_users_file_rehashes_other_rounds_and_schemes():
    first = users_file([{'name': 'alice', 'password': 'pw-1'}])
    more = sha512_entries(users_file([{'name': 'alice', 'password': 'pw-1'}], first, rounds=60000))['alice']
    assert more.group('rounds') == '60000' and sha512_crypt.verify('pw-1', more.group('hash'))
    # Postfix's implicit default of 5000 rounds is written without "rounds=", and still recognised.
    implicit = users_file([{'name': 'alice', 'password': 'pw-1'}], rounds=5000)
    assert sha512_entries(implicit)['alice'].group('rounds') is None
    assert users_file([{'name': 'alice', 'password': 'pw-1'}], implicit, rounds=5000) == implicit
    # Another scheme, a damaged or a hand-written hash is replaced, even when it would match the password.
    for stored in ('{PLAIN}pw-1', '{SHA256-CRYPT}$5$abc$def', 'pw-1', '', '{SHA512-CRYPT}$6$broken',
                   sha512_crypt.using(rounds=50000).hash('pw-1')):
        out = sha512_entries(users_file([{'name': 'alice', 'password': 'pw-1'}], 'alice:%s\n' % stored))['alice']
        assert sha512_crypt.verify('pw-1', out.group('hash')) and out.group(0) != 'alice:' + stored, stored


def test_users_file_given_hash_and_dropped_users():
    given = '{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui'
    current = '# old header\n\nalice:{PLAIN}x\ncarol:{PLAIN}y::::::\n'
    assert users_file([{'name': 'alice', 'hash': given}], current) == USERS_HEADER + '\nalice:' + given + '\n'


@pytest.mark.parametrize('users, refused', [
    ([{'name': 'alice', 'password': 'x'}, {'name': 'bob', 'hash': '{PLAIN}y'}], []),
    ([{'name': 'alice', 'password': ''}, {'name': 'bob'}, {'name': 'carol', 'password': 'x', 'hash': 'y'},
      {'name': 'dave', 'password': None}], ['alice', 'bob', 'carol', 'dave']),
    ([{'name': 'a:b', 'password': 'x'}, {'name': 'root\nx', 'password': 'x'}, {'name': '#c', 'password': 'x'},
      {'name': 'd', 'hash': '{PLAIN}d:1'}], ['a:b', 'root\nx', '#c', 'd']),
])
def test_users_without_a_usable_secret_or_name_are_refused(users, refused):
    assert value('anti_relay', {'anti_relay_submission_users': users}, '{{ __anti_relay_users_without_secret }}') == refused
