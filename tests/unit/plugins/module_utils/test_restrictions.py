# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import json

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils import restrictions as r
from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError


def test_group_joins_arguments():
    tokens = r.split_list('permit_mynetworks, check_sender_access hash:/etc/postfix/access,'
                          'reject_rbl_client zen.spamhaus.org  warn_if_reject reject_unknown_client_hostname '
                          'check_policy_service { inet:127.0.0.1:10023, timeout=10s } sleep 1 reject')
    assert r.group(tokens) == [
        'permit_mynetworks',
        'check_sender_access hash:/etc/postfix/access',
        'reject_rbl_client zen.spamhaus.org',
        'warn_if_reject reject_unknown_client_hostname',
        'check_policy_service { inet:127.0.0.1:10023, timeout=10s }',
        'sleep 1',
        'reject',
    ]


def test_bare_map_is_one_item():
    assert r.parse_items('hash:/etc/postfix/access') == ['hash:/etc/postfix/access']
    assert r.rank('hash:/etc/postfix/access')[0] == r.CLASS_ACCESS


@pytest.mark.parametrize('text, word', [
    ('check_sender_access', 'lookup table'),
    ('permit_mynetworks, reject_rbl_client', 'DNS zone'),
    ('check_policy_service, reject', 'policy server'),
    ('warn_if_reject', 'followed by a restriction'),
])
def test_missing_argument(text, word):
    with pytest.raises(PostfixError) as exc:
        r.parse_items(text)
    assert word in exc.value.msg


def test_order_is_safe():
    shuffled = ['reject', 'check_policy_service inet:127.0.0.1:10023', 'reject_rbl_client zen.spamhaus.org',
                'reject_non_fqdn_recipient', 'reject_unauth_destination', 'check_sender_access hash:/etc/postfix/usuarios',
                'permit_sasl_authenticated', 'permit_mynetworks', 'greylist', 'reject_unauth_pipelining']
    assert r.order(shuffled) == [
        'permit_mynetworks', 'permit_sasl_authenticated',
        'check_sender_access hash:/etc/postfix/usuarios',
        'reject_unauth_destination',
        'reject_unauth_pipelining', 'reject_non_fqdn_recipient',
        'reject_rbl_client zen.spamhaus.org',
        'check_policy_service inet:127.0.0.1:10023',
        'greylist',
        'reject',
    ]


def test_same_name_keeps_order():
    items = ['reject_rbl_client b.example', 'permit_mynetworks', 'reject_rbl_client a.example']
    assert r.order(items) == ['permit_mynetworks', 'reject_rbl_client b.example', 'reject_rbl_client a.example']


def test_warn_if_reject_ranks_as_its_target():
    assert r.rank('warn_if_reject reject_rbl_client x.example') == r.rank('reject_rbl_client x.example')


def test_normalize_items():
    assert r.normalize_items(['check_sender_access   hash:/etc/postfix/access', 'permit_mynetworks, reject',
                              'reject']) == ['check_sender_access hash:/etc/postfix/access', 'permit_mynetworks', 'reject']
    with pytest.raises(PostfixError, match='newline'):
        r.normalize_items(['reject\nfoo'])
    with pytest.raises(PostfixError, match='must be a string'):
        r.normalize_items([['reject']])


def test_check_known():
    r.check_known(['permit_mynetworks', 'hash:/x', '$other', 'greylist'], {'greylist'})
    with pytest.raises(PostfixError, match='did you mean "reject_unauth_destination"'):
        r.check_known(['reject_unauth_destinaton'], set())
    with pytest.raises(PostfixError, match='use reject_unauth_destination'):
        r.check_known(['check_relay_domains'], set())
    with pytest.raises(PostfixError, match='reject_rbl_client'):
        r.check_known(['reject_maps_rbl'], set())
    r.check_known(['some_future_restriction'], set(), allow_unknown=True)


ANTI = ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
        'reject_non_fqdn_recipient', 'reject_rbl_client zen.spamhaus.org']
GREY = ['check_policy_service inet:127.0.0.1:10023']
BASE = ['permit_mynetworks', 'reject_unauth_destination']


def test_compose_any_order_same_result():
    results = set()
    for perm in itertools.permutations([('anti_relay', ANTI), ('postgrey', GREY), ('base', BASE)]):
        current, state = ['reject_unauth_pipelining'], {}
        for owner, items in perm:
            current, state, dummy = r.compose(current, owner, items, [], state, 'smtpd_recipient_restrictions')
        results.add((tuple(current), json.dumps(state, sort_keys=True)))
    assert len(results) == 1
    current = list(results.pop()[0])
    assert current == ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
                       'reject_unauth_pipelining', 'reject_non_fqdn_recipient', 'reject_rbl_client zen.spamhaus.org',
                       'check_policy_service inet:127.0.0.1:10023']


def test_compose_drops_only_own_items():
    state = {'x': {'base': list(BASE), 'anti_relay': list(ANTI)}}
    current = r.order(ANTI + ['hand_written_class'])
    new, state2, dummy = r.compose(current, 'anti_relay', ['permit_mynetworks'], [], state, 'x')
    # base still owns reject_unauth_destination; the hand-written item stays.
    assert new == ['permit_mynetworks', 'reject_unauth_destination', 'hand_written_class']
    assert state2['x']['anti_relay'] == ['permit_mynetworks']
    new, state3, dummy = r.compose(new, 'anti_relay', [], [], state2, 'x', present=False)
    assert new == ['permit_mynetworks', 'reject_unauth_destination', 'hand_written_class']
    assert 'anti_relay' not in state3['x']
    new, state4, dummy = r.compose(new, 'base', [], [], state3, 'x', present=False)
    assert new == ['hand_written_class']
    assert state4 == {}


def test_compose_remove_and_conflict():
    current = ['permit_mynetworks', 'permit_sasl_authenticated', 'defer_unauth_destination']
    new, state, conflicts = r.compose(current, 'base', BASE, ['defer_unauth_destination'], {}, 'x')
    assert new == ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination']
    assert conflicts == []
    new2, dummy, conflicts = r.compose(new, 'other', [], ['reject_unauth_destination'], state, 'x')
    assert new2 == new
    assert conflicts == ['reject_unauth_destination']


def test_state_round_trip(tmp_path):
    assert r.load_state(str(tmp_path)) == {}
    state = {'b': {'o': ['x y']}, 'a': {'p': ['z'], 'empty': []}}
    (tmp_path / r.STATE_FILE).write_text(r.dump_state(state))
    assert r.load_state(str(tmp_path)) == {'b': {'o': ['x y']}, 'a': {'p': ['z']}}


def test_state_corrupt(tmp_path):
    (tmp_path / r.STATE_FILE).write_text('{not json')
    with pytest.raises(PostfixError, match='Remove it'):
        r.load_state(str(tmp_path))
    (tmp_path / r.STATE_FILE).write_text('{"version": 1}')
    with pytest.raises(PostfixError, match='not a valid ownership record'):
        r.load_state(str(tmp_path))


def test_composed_is_a_pure_function_of_the_record():
    state = {'smtpd_recipient_restrictions': {
        'postgrey': ['check_policy_service inet:127.0.0.1:10023', 'permit_mynetworks'],
        'anti_relay': ['reject_rbl_client zen.spamhaus.org', 'permit_mynetworks', 'reject_unauth_destination',
                       'reject_rbl_client b.example'],
        'base': ['reject_unauth_destination', 'permit_sasl_authenticated'],
    }}
    expected = ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
                'reject_rbl_client zen.spamhaus.org', 'reject_rbl_client b.example',
                'check_policy_service inet:127.0.0.1:10023']
    assert r.composed(state, 'smtpd_recipient_restrictions') == expected
    # Whatever the insertion order of owners in the record.
    reordered = {'smtpd_recipient_restrictions': dict(reversed(list(state['smtpd_recipient_restrictions'].items())))}
    assert r.composed(reordered, 'smtpd_recipient_restrictions') == expected
    assert r.composed(state, 'smtpd_client_restrictions') == []
    assert r.composed({}, 'x') == []


def test_composed_round_trips_through_the_record(tmp_path):
    state = {'smtpd_relay_restrictions': {'b': ['reject_unauth_destination'], 'a': ['permit_mynetworks']}}
    with open(str(tmp_path / r.STATE_FILE), 'w') as f:
        f.write(r.dump_state(state))
    loaded = r.load_state(str(tmp_path))
    assert r.composed(loaded, 'smtpd_relay_restrictions') == ['permit_mynetworks', 'reject_unauth_destination']
    assert r.render(r.composed(loaded, 'smtpd_relay_restrictions')) == 'permit_mynetworks, reject_unauth_destination'


@pytest.mark.parametrize('item', ['check_client_access inline:{a=b', 'check_client_access inline:a=b}', '}{'])
def test_unbalanced_braces_refused(item):
    with pytest.raises(PostfixError) as exc:
        r.normalize_items([item])
    assert 'unbalanced braces' in exc.value.msg
