# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host_probe filter trusts a report only when it is current; otherwise the roles do every step."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.estafeta.postfix.plugins.filter.host_probe import SCHEMA, host_probe

NOW = 1800000000


def report(**changes):
    data = {'schema': SCHEMA, 'epoch': NOW - 5, 'probe': 'x' * 64,
            'packages': {'postfix': '3.7.11-0+deb12u1', 'postfix-pcre': '3.7.11-0+deb12u1'},
            'services': {'postfix': {'active': 'active', 'enabled': 'enabled'}}, 'mailname': 'mail.example.org',
            'stamps': {'base': {'input': 'a' * 64, 'intact': True}}}
    data.update(changes)
    return {'estafeta_postfix': data}


def test_current_report_is_trusted():
    result = host_probe(report(), now=NOW)
    assert result['trusted'] is True
    assert sorted(result['packages']) == ['postfix', 'postfix-pcre']
    assert result['services']['postfix'] == {'active': 'active', 'enabled': 'enabled'}
    assert result['mailname'] == 'mail.example.org'
    assert result['stamps'] == {'base': {'input': 'a' * 64, 'intact': True}}


@pytest.mark.parametrize('facts', [
    None, '', {}, {'other': {}},
    report(schema=SCHEMA + 1),                 # a probe of another version
    report(epoch=NOW - 3600),                  # an old fact cache
    report(epoch=NOW + 3600),                  # a clock far ahead
    report(epoch='yesterday'),
], ids=['none', 'empty-string', 'no-local-facts', 'no-probe', 'other-schema', 'stale', 'future', 'bad-epoch'])
def test_untrusted_report_is_empty(facts):
    result = host_probe(facts, now=NOW)
    assert result == {'trusted': False, 'packages': {}, 'services': {}, 'mailname': '', 'stamps': {}}


def test_max_age():
    assert host_probe(report(epoch=NOW - 100), max_age=60, now=NOW)['trusted'] is False
    assert host_probe(report(epoch=NOW - 100), max_age=600, now=NOW)['trusted'] is True


def test_malformed_parts_are_dropped():
    result = host_probe(report(packages='postfix', services=['x'], mailname=None, stamps='x'), now=NOW)
    assert result['trusted'] is True
    assert (result['packages'], result['services'], result['mailname'], result['stamps']) == ({}, {}, '', {})


def test_not_a_mapping():
    with pytest.raises(AnsibleFilterError, match='ansible_local'):
        host_probe(['postfix'])
