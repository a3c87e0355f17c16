# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""base, anti_relay and postgrey compose the same restriction lists in any order.

anti_relay checks SPF: its policy check comes right before postgrey's, so a sender whose SPF record
fails is refused at once, where a new (client, sender, recipient) would otherwise be greylisted.

After the side effect, postgrey runs on another port on the "a" hosts and is removed
(postgrey_state: absent) on the "b" hosts: only postgrey's own items changed, and over SMTP a new
(client, sender, recipient) from outside mynetworks is greylisted on an "a" host, accepted on a
"b" host.
"""

import json
import uuid

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
SPF_POLICY = 'check_policy_service unix:private/policy-spf'


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


def removed(host):
    """The "b" hosts, where the side effect removed postgrey."""
    return '-b-' in name_of(host)


def test_same_lists_whatever_the_order(host):
    mine, theirs = at_converge(host), at_converge(peer_of(host))
    assert mine == theirs


def test_recipient_list_in_safe_order(host):
    rcpt = items(at_converge(host)['smtpd_recipient_restrictions'])
    for item in ('permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
                 'reject_rbl_client bl.example.test', SPF_POLICY, OLD_POLICY):
        assert rcpt.count(item) == 1, (item, rcpt)
    assert rcpt.index('permit_mynetworks') < rcpt.index('reject_unauth_destination')
    assert rcpt.index('permit_sasl_authenticated') < rcpt.index('reject_unauth_destination')
    assert rcpt.index('reject_unauth_destination') < rcpt.index('reject_rbl_client bl.example.test')
    assert rcpt.index('reject_rbl_client bl.example.test') < rcpt.index(SPF_POLICY)
    assert rcpt[-2:] == [SPF_POLICY, OLD_POLICY]


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
    assert OLD_POLICY not in new
    if removed(host):
        # postgrey_state: absent: its policy check left; everything else (anti_relay's, base's) stayed, in order.
        assert NEW_POLICY not in new
        assert [item for item in old if item != OLD_POLICY] == new
    else:
        # postgrey's policy check moved; everything else (owned by anti_relay) stayed, in order.
        assert new[-1] == NEW_POLICY
        assert [item for item in old if item != OLD_POLICY] == new[:-1]


def test_same_lists_but_postgrey(host):
    """After the side effect the two hosts of a distribution differ only by postgrey's policy check."""
    mine, theirs = current(host), current(peer_of(host))
    for name in LISTS:
        strip = [i for i in items(mine[name]) if i != NEW_POLICY]
        assert strip == [i for i in items(theirs[name]) if i != NEW_POLICY], name


def test_postgrey_follows_the_side_effect(host):
    if removed(host):
        assert not host.service('postgrey').is_running
        assert not host.socket('tcp://127.0.0.1:10023').is_listening
        assert not host.socket('tcp://127.0.0.1:10030').is_listening
        # The package stays (the role's documented behaviour).
        assert host.package('postgrey').is_installed
    else:
        assert host.socket('tcp://127.0.0.1:10030').is_listening
        assert host.service('postgrey').is_running


# Runs on the host: MAIL FROM:<sender> and RCPT from the given address; prints the reply.
RCPT = r"""
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=30)
s.ehlo('client.example.test')
s.docmd('MAIL FROM:<%s>' % sys.argv[3])
code, text = s.docmd('RCPT TO:<%s>' % sys.argv[2])
print(code, text.decode())
s.quit()
"""


def rcpt_reply(host, sender=''):
    """The reply to a new triplet from outside mynetworks (the host's own eth0 address)."""
    eth0 = host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")
    return host.check_output('python3 -c %s %s %s %s', RCPT, eth0, 'root+%s@mail.example.test' % uuid.uuid4().hex[:8],
                             sender)


def test_greylisting_follows_postgrey_state(host):
    """A new triplet with the null sender (no SPF record for the HELO name): 450 where postgrey runs, 250 where
    it was removed."""
    reply = rcpt_reply(host)
    if removed(host):
        assert reply.startswith('250 '), reply
    else:
        assert reply.startswith('450 ') and 'Greylisted' in reply, reply


def test_spf_fail_refused_before_greylisting(host):
    """A new triplet whose sender fails SPF: 550 from the SPF policy on every host, where postgrey runs too (it
    would have answered 450 to a new triplet, as above: the SPF check came first)."""
    reply = rcpt_reply(host, 'someone@spf-fail.example.test')
    assert reply.startswith('550 5.7.23 ') and 'SPF fail - not authorized' in reply, reply
