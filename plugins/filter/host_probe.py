# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: host_probe
short_description: The host probe of the collection's roles, when it can be trusted
version_added: 0.1.0
description:
  - The role C(estafeta.postfix.common) installs a local fact script
    (C(/etc/ansible/facts.d/estafeta_postfix.fact)) that reports, while Ansible gathers facts,
    the installed Debian packages, the state of the mail services, C(/etc/mailname), and the converged
    state the roles recorded on the host.
  - This filter takes C(ansible_local) and returns that report when it was produced by the
    current probe (same schema) less than O(max_age) seconds ago; otherwise (no probe yet, facts
    not gathered, an old fact cache, a clock far apart) it returns an empty report, with which
    the roles do every step the slow way. So a report can only make a run skip work that it
    proved done; it never makes a run skip work on a guess.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  _input:
    description: The C(ansible_local) facts of the host.
    type: dict
    required: true
  max_age:
    description: How old (in seconds, by the controller's clock) a report may be to be trusted.
    type: int
    default: 900
'''

EXAMPLES = r'''
- name: Install Postfix unless the probe shows it installed
  ansible.builtin.apt:
    name: [postfix, postfix-pcre]
  when: "[ 'postfix', 'postfix-pcre' ] | difference(probe.packages) | length > 0"
  vars:
    probe: "{{ ansible_local | default({}) | estafeta.postfix.host_probe }}"
'''

RETURN = r'''
_value:
  description: The report; empty mappings when it cannot be trusted.
  type: dict
  contains:
    trusted:
      description: Whether the report comes from the current probe and is recent.
      type: bool
    packages:
      description:
        - The installed Debian packages, name to version. Test a name with C(in), or compare a list of
          names with the C(difference) filter.
      type: dict
    services:
      description: Per unit (without C(.service)), C(active) (ActiveState) and C(enabled) (UnitFileState).
      type: dict
    mailname:
      description: The name in C(/etc/mailname), or an empty string when the file is missing or not a single host name.
      type: str
    stamps:
      description:
        - Per role that recorded a converged state on the host, C(input) (the digest of its input then, see the
          C(stamp_input) filter) and C(intact) (whether everything the role manages is still exactly as it left it).
      type: dict
'''

import time

from ansible.errors import AnsibleFilterError

# The schema of the report the probe script prints; bump both together.
SCHEMA = 2
FACT = 'estafeta_postfix'


def empty_report():
    return {'trusted': False, 'packages': {}, 'services': {}, 'mailname': '', 'stamps': {}}


def host_probe(ansible_local, max_age=900, now=None):
    if ansible_local is None or ansible_local == '':
        return empty_report()
    if not isinstance(ansible_local, dict):
        raise AnsibleFilterError('host_probe expects the ansible_local facts (a mapping), got %s' % type(ansible_local).__name__)
    report = ansible_local.get(FACT)
    if not isinstance(report, dict) or report.get('schema') != SCHEMA:
        return empty_report()
    try:
        age = (time.time() if now is None else now) - float(report.get('epoch'))
    except (TypeError, ValueError):
        return empty_report()
    if not -60 <= age <= int(max_age):
        return empty_report()
    packages = report.get('packages')
    services = report.get('services')
    stamps = report.get('stamps')
    return {
        'trusted': True,
        # Passed on as it is: copying several hundred entries for every role's check costs more than
        # the check (the roles only test whether a name is in it).
        'packages': packages if isinstance(packages, dict) else {},
        'services': services if isinstance(services, dict) else {},
        'mailname': report.get('mailname') if isinstance(report.get('mailname'), str) else '',
        'stamps': stamps if isinstance(stamps, dict) else {},
    }


class FilterModule(object):

    def filters(self):
        return {'host_probe': host_probe}
