# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The postscreen role's tasks, run through the collection's modules on a scratch copy of Debian's
configuration with the real Postfix binaries, and its rule that no DNS blocklist is looked up twice.

- present puts postscreen on port 25 with its helper services, parameters and access table, in the form
  Postfix reads back (``postconf -M``, ``postconf -n``, ``postmap -q``);
- absent gives back exactly the configuration Debian shipped (``postconf -Mf`` and ``postconf -n``
  as before present, the access table gone);
- the role's check refuses a zone that is both one of its sites and one of anti_relay's
  ``reject_rbl_client`` zones, however the two spell it, and accepts different zones.

The tasks are evaluated as tests/unit/test_roles_converged.py evaluates them (``when``, loops, the
role's defaults and vars), so a task changed in the role is what runs here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

from ansible.template import Templar

from ansible_collections.estafeta.postfix.plugins.modules import master_service, postconf_set, postmap_file
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf
from ansible_collections.estafeta.postfix.tests.unit.test_roles_converged import (
    LOADER, ROLES_DIR, condition, load, module_of, render, role_vars, walk)

MODULES = {
    'estafeta.postfix.master_service': master_service,
    'estafeta.postfix.postconf_set': postconf_set,
    'estafeta.postfix.postmap_file': postmap_file,
}


def apply_role(run_module, config_dir, overrides):
    """Run every module task the role would run with ``overrides``; returns the tasks' results."""
    variables = role_vars('postscreen', overrides)
    main = load(os.path.join(ROLES_DIR, 'postscreen', 'tasks', 'main.yml'))
    results = []
    for dummy, task, inherited in walk('postscreen', main[1:], 'main.yml'):
        module = module_of(task)
        if module not in MODULES:
            continue
        for item in render(Templar(loader=LOADER, variables=variables), task['loop']) if 'loop' in task else [None]:
            scoped = dict(variables, item=item)
            local = Templar(loader=LOADER, variables=scoped)
            when = list(inherited) + ([] if 'when' not in task else
                                      task['when'] if isinstance(task['when'], list) else [task['when']])
            if when and not condition(local, when):
                continue
            args = dict(render(local, task[module]), config_dir=config_dir)
            result = run_module(MODULES[module], args)
            assert not result.get('failed'), (task['name'], result)
            results.append((task['name'], result))
    return results


def settings(config_dir):
    return postconf(config_dir, '-Mf'), postconf(config_dir, '-n'), postconf(config_dir, '-P')


def test_present_then_absent_gives_debian_s_configuration_back(postfix_dir, run_module, tmp_path):
    table = str(tmp_path / 'postscreen_access.cidr')
    shipped = settings(postfix_dir)
    present = {
        'postscreen_access_path': table,
        'postscreen_dnsbl_sites': ['bl.example.test=127.0.0.[2..11]*3', 'weak.example.test'],
        'postscreen_dnsbl_threshold': 2,
        'postscreen_greet_wait': '3s',
        'postscreen_access': [{'network': '192.0.2.0/25', 'action': 'dunno'},
                              {'network': '192.0.2.0/24', 'action': 'permit'},
                              {'network': '198.51.100.7', 'action': 'reject'}],
        'postscreen_params': {'postscreen_greet_banner': 'screening'},
        'postscreen_smtpd_options': {'syslog_name': 'postfix/pass'},
    }
    results = apply_role(run_module, postfix_dir, present)
    assert all(r['changed'] for name, r in results if name != 'Reset the postscreen parameters left at the Postfix default')
    services = postconf(postfix_dir, '-M')
    assert postconf(postfix_dir, '-M', 'smtp/inet').split() == ['smtp', 'inet', 'n', '-', 'y', '-', '1', 'postscreen']
    assert postconf(postfix_dir, '-M', 'smtpd/pass').split() == ['smtpd', 'pass', '-', '-', 'y', '-', '-', 'smtpd',
                                                                 '-o', 'syslog_name=postfix/pass']
    assert postconf(postfix_dir, '-M', 'dnsblog/unix').split() == ['dnsblog', 'unix', '-', '-', 'y', '-', '0', 'dnsblog']
    assert postconf(postfix_dir, '-M', 'tlsproxy/unix').split() == ['tlsproxy', 'unix', '-', '-', 'y', '-', '0', 'tlsproxy']
    assert 'submission' not in services
    main = dict(line.split(' = ', 1) for line in postconf(postfix_dir, '-n').splitlines() if ' = ' in line)
    assert main['postscreen_access_list'] == 'permit_mynetworks, cidr:%s' % table
    assert main['postscreen_dnsbl_sites'] == 'bl.example.test=127.0.0.[2..11]*3, weak.example.test'
    assert (main['postscreen_dnsbl_threshold'], main['postscreen_greet_wait'], main['postscreen_greet_banner']) == \
        ('2', '3s', 'screening')
    assert main['postscreen_dnsbl_action'] == main['postscreen_greet_action'] == main['postscreen_denylist_action'] \
        == 'enforce'
    # The table answers in its order: the first match wins.
    for address, answer in (('192.0.2.1', 'dunno'), ('192.0.2.200', 'permit'), ('198.51.100.7', 'reject')):
        assert postconf_free_query(postfix_dir, table, address) == answer
    # Again: nothing to change.
    assert not any(r['changed'] for name, r in apply_role(run_module, postfix_dir, present))

    results = apply_role(run_module, postfix_dir, dict(present, postscreen_state='absent'))
    assert all(r['changed'] for name, r in results)
    assert settings(postfix_dir) == shipped
    assert postconf(postfix_dir, '-M', 'smtp/inet').split() == ['smtp', 'inet', 'n', '-', 'y', '-', '-', 'smtpd']
    assert not os.path.exists(table)
    assert not any(r['changed'] for name, r in apply_role(run_module, postfix_dir, dict(present, postscreen_state='absent')))


def postconf_free_query(config_dir, table, key):
    proc = subprocess.run(['/usr/sbin/postmap', '-c', config_dir, '-q', key, 'cidr:' + table], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip()


def composition_check(overrides):
    """Whether the role's check task lets these variables through."""
    variables = role_vars('postscreen', overrides)
    task = [t for t in load(os.path.join(ROLES_DIR, 'postscreen', 'tasks', 'main.yml'))
            if t['name'].startswith('Check that no DNS blocklist is looked up twice')][0]
    templar = Templar(loader=LOADER, variables=variables)
    message = render(templar, task['ansible.builtin.assert']['fail_msg'])
    return condition(templar, task['ansible.builtin.assert']['that']), message


@pytest.mark.parametrize('sites, zones, state, allowed, named', [
    (['bl.example.test*3'], ['bl.example.test'], 'present', False, 'bl.example.test'),
    (['BL.example.test=127.0.0.[2..11]*3'], ['bl.example.test=127.0.0.2'], 'present', False, 'bl.example.test'),
    (['a.example.test', 'b.example.test*2'], ['c.example.test', 'B.Example.Test'], 'present', False, 'b.example.test'),
    (['bl.example.test*3'], ['other.example.test'], 'present', True, None),
    (['bl.example.test*3'], None, 'present', True, None),
    ([], ['bl.example.test'], 'present', True, None),
    (['bl.example.test*3'], ['bl.example.test'], 'absent', True, None),
])
def test_no_zone_is_looked_up_twice(sites, zones, state, allowed, named):
    overrides = {'postscreen_dnsbl_sites': sites, 'postscreen_state': state}
    if zones is not None:
        overrides['anti_relay_dnsbl_zones'] = zones
    ok, message = composition_check(overrides)
    assert ok is allowed, message
    if named:
        assert message.startswith(named + ' would be looked up twice'), message
