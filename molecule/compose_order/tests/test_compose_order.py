# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""base, anti_relay and postgrey compose the same restriction lists in any order."""

import json

import testinfra

LISTS = (
    'smtpd_client_restrictions',
    'smtpd_helo_restrictions',
    'smtpd_sender_restrictions',
    'smtpd_relay_restrictions',
    'smtpd_recipient_restrictions',
)
OLD_POLICY = 'check_policy_service inet:127.0.0.1:10023'
NEW_POLICY = 'check_policy_service inet:127.0.0.1:10030'


def name_of(host):
    return host.backend.get_hostname()


def peer_of(host):
    """The host of the same distribution that applied the roles in the other order."""
    name = name_of(host)
    other = name.replace('-a-', '-b-') if '-a-' in name else name.replace('-b-', '-a-')
    return testinfra.get_host('docker://' + other)


def items(value):
    return [item.strip() for item in value.split(',') if item.strip()]


def current(host):
    return dict((name, host.check_output('postconf -h %s' % name)) for name in LISTS)


def at_converge(host):
    return json.loads(host.file('/root/compose-order-converge.json').content_string)


def test_same_lists_whatever_the_order(host):
    mine, theirs = at_converge(host), at_converge(peer_of(host))
    assert mine == theirs
    assert current(host) == current(peer_of(host))


def test_recipient_list_in_safe_order(host):
    rcpt = items(at_converge(host)['smtpd_recipient_restrictions'])
    for item in ('permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
                 'reject_rbl_client bl.example.test', OLD_POLICY):
        assert rcpt.count(item) == 1, (item, rcpt)
    assert rcpt.index('permit_mynetworks') < rcpt.index('reject_unauth_destination')
    assert rcpt.index('permit_sasl_authenticated') < rcpt.index('reject_unauth_destination')
    assert rcpt.index('reject_unauth_destination') < rcpt.index('reject_rbl_client bl.example.test')
    assert rcpt.index('reject_rbl_client bl.example.test') < rcpt.index(OLD_POLICY)
    assert rcpt[-1] == OLD_POLICY


def test_each_role_kept_its_items(host):
    lists = at_converge(host)
    relay = items(lists['smtpd_relay_restrictions'])
    assert relay.index('permit_mynetworks') < relay.index('reject_unauth_destination')
    assert 'defer_unauth_destination' not in relay
    sender = items(lists['smtpd_sender_restrictions'])
    assert any(item.startswith('check_sender_access ') and item.endswith(':/etc/postfix/access')
               for item in sender), sender


def test_rerunning_one_role_drops_only_its_own_items(host):
    before, after = at_converge(host), current(host)
    for name in LISTS:
        if name != 'smtpd_recipient_restrictions':
            assert after[name] == before[name], name
    old, new = items(before['smtpd_recipient_restrictions']), items(after['smtpd_recipient_restrictions'])
    # postgrey's policy check moved; everything else (owned by anti_relay) stayed, in order.
    assert OLD_POLICY not in new
    assert new[-1] == NEW_POLICY
    assert [item for item in old if item != OLD_POLICY] == new[:-1]


def test_postgrey_follows_the_side_effect(host):
    assert host.socket('tcp://127.0.0.1:10030').is_listening
    assert host.service('postgrey').is_running
