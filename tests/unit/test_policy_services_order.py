# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The two policy services of the roles compose in one order: SPF (anti_relay) before greylisting (postgrey).

The items are the roles' own (their vars rendered as Ansible renders them), given to the restrictions
module as the roles give them (``exclusive: true``), in both orders, on a scratch Postfix configuration:
the list is the same, SPF's policy check comes after the permits, reject_unauth_destination and the DNS
lists, and right before postgrey's. Switching SPF off removes only its item.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil

from ansible.template import Templar

from ansible_collections.estafeta.postfix.plugins.modules import restrictions
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf
from ansible_collections.estafeta.postfix.tests.unit.test_roles_converged import LOADER, render, role_vars

RCPT = 'smtpd_recipient_restrictions'
SPF = 'check_policy_service unix:private/policy-spf'
GREY = 'check_policy_service inet:127.0.0.1:10023'


def anti_relay_items(spf):
    variables = role_vars('anti_relay', {'anti_relay_spf_enabled': spf, 'anti_relay_dnsbl_zones': ['zen.spamhaus.org']})
    lists = render(Templar(loader=LOADER, variables=variables), '{{ __anti_relay_lists }}')
    return [entry['items'] for entry in lists if entry['name'] == RCPT][0]


def postgrey_items():
    variables = role_vars('postgrey', {})
    templar = Templar(loader=LOADER, variables=variables)
    return render(templar, '{{ postgrey_restrictions_before + [__postgrey_policy_item] }}')


def apply(run_module, config_dir, owner, items):
    result = run_module(restrictions, dict(config_dir=config_dir, name=RCPT, owner=owner, items=items,
                                           exclusive=True, check=False))
    assert not result.get('failed'), result
    return result


def listed(config_dir):
    return [i.strip() for i in postconf(config_dir, '-h', RCPT).split(',')]


def test_spf_before_postgrey_whatever_the_order(run_module, tmp_path, postfix_dir):
    anti, grey = anti_relay_items(True), postgrey_items()
    assert SPF in anti and GREY in grey
    results = []
    for index, order in enumerate([[('anti_relay', anti), ('postgrey', grey)], [('postgrey', grey), ('anti_relay', anti)]]):
        config_dir = str(tmp_path / ('order%d' % index))
        shutil.copytree(postfix_dir, config_dir)
        for owner, items in order:
            apply(run_module, config_dir, owner, items)
        results.append(listed(config_dir))
    assert results[0] == results[1]
    items = results[0]
    for before in ('permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
                   'reject_rbl_client zen.spamhaus.org'):
        assert items.index(before) < items.index(SPF), items
    assert items[-2:] == [SPF, GREY], items


def test_spf_off_removes_only_its_item(run_module, postfix_dir):
    apply(run_module, postfix_dir, 'anti_relay', anti_relay_items(True))
    apply(run_module, postfix_dir, 'postgrey', postgrey_items())
    with_spf = listed(postfix_dir)
    assert SPF in with_spf
    result = apply(run_module, postfix_dir, 'anti_relay', anti_relay_items(False))
    assert result['changed'] is True
    assert listed(postfix_dir) == [i for i in with_spf if i != SPF]
