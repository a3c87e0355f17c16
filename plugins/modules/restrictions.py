#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: restrictions
short_description: Compose a Postfix restriction list from the contributions of several roles
version_added: 0.1.0
description:
  - Adds or removes the items one O(owner) (usually a role, such as V(base), V(anti_relay) or
    V(postgrey)) contributes to a Postfix restriction list such as C(smtpd_recipient_restrictions),
    without touching what other owners or an administrator put there.
  - The items each owner contributed are recorded in C(estafeta-restrictions.json) in O(config_dir)
    (mode C(0644)). The new list is the list now in effect, minus the items this owner contributed
    before and no longer lists (and the items in O(remove)), plus the items of O(items). Items nobody
    owns, for example written by hand, are kept (unless O(exclusive=true)). An item that another owner
    also contributes is never removed.
  - C(main.cf) and the ownership record change together or not at all. When either cannot be replaced
    (for example an immutable file), or Postfix refuses the result (see O(check)), both stay as they were. A symbolic
    link in their place is followed (the file it points to is replaced).
  - The list is then sorted by a fixed rank, so that it is always in a safe order whatever the order
    in which the owners were applied. C(permit_mynetworks) and C(permit_sasl_authenticated) come first,
    then access maps (C(check_*_access)), then the relay check (C(reject_unauth_destination)), then syntax
    checks (C(reject_non_fqdn_*), C(reject_unknown_*), C(reject_unauth_pipelining)), then DNS blocklists
    (C(reject_rbl_client)), then policy services (C(check_policy_service)), then other items (restriction
    classes, C($parameter) references), and the terminal C(permit), C(defer) or C(reject) last. Inside a
    class known restrictions have a fixed order; items with the same name keep their order.
  - When the parameter is not set in C(main.cf), the module starts from its value in effect (the Postfix
    default, for example C(permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination) for
    C(smtpd_relay_restrictions)).
  - Items are compared after grouping each restriction with its argument, so V(check_sender_access hash:/etc/postfix/access)
    is one item whatever the spacing or commas in C(main.cf).
  - The edit is staged in a scratch copy; C(main.cf) is replaced atomically and Postfix must accept it (O(check));
    when it fails the previous file is restored.
extends_documentation_fragment:
  - estafeta.postfix.postfix
  - estafeta.postfix.postfix.check
  - estafeta.postfix.postfix.attributes
options:
  name:
    description:
      - The restriction list parameter, for example V(smtpd_recipient_restrictions), V(smtpd_relay_restrictions),
        V(smtpd_sender_restrictions), V(smtpd_client_restrictions), V(smtpd_helo_restrictions), or the name of a
        restriction class listed in C(smtpd_restriction_classes).
    type: str
    required: true
  owner:
    description:
      - Who contributes O(items), for example V(anti_relay). Each role uses its own owner name.
      - Letters, digits, V(_), V(.) and V(-).
    type: str
    required: true
  items:
    description:
      - The complete contribution of O(owner) to the list. Each item is one restriction with its argument,
        for example V(permit_mynetworks), V(check_sender_access hash:/etc/postfix/access),
        V(reject_rbl_client zen.spamhaus.org) or V(check_policy_service inet:127.0.0.1:10023).
      - Items that this owner contributed before and that are no longer listed are removed from the list
        (unless another owner contributes them too).
      - With O(state=absent), these items are removed as well as the recorded ones (useful when the
        ownership record was lost).
      - Known restriction names are checked; a name Postfix does not know is refused with a suggestion,
        because C(smtpd) answers every client with a temporary error when a list holds an unknown name.
        Names removed from Postfix, such as C(check_relay_domains) or C(reject_maps_rbl), are refused
        with their modern replacement.
    type: list
    elements: str
    default: []
  remove:
    description:
      - Items to take out of the list even if nobody owns them, for example V(defer_unauth_destination),
        which Debian's C(main.cf) puts in C(smtpd_relay_restrictions), when O(items) has V(reject_unauth_destination).
      - An item that another owner contributes stays, with a warning.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) makes O(items) the contribution of O(owner).
      - V(absent) removes the contribution of O(owner) (the recorded items and O(items)) from the list.
      - When the list becomes empty, the parameter is removed from C(main.cf) if its Postfix default is empty,
        otherwise it is set to an empty value.
    type: str
    choices: [present, absent]
    default: present
  allow_unknown:
    description:
      - Accept restriction names this module does not know (for example one added by a newer Postfix).
    type: bool
    default: false
  exclusive:
    description:
      - If V(false), items in the list that no owner contributed (written by hand) are kept.
      - If V(true), the list becomes exactly the composition of every owner's recorded items, after this
        task's change to the record. Items nobody owns are dropped. The composition depends on the
        ownership record only. The owners are taken in name order, each owner's items in its given
        order, duplicates dropped, then sorted by the rank described above (stable). So a hand edit of
        the list (an item added, removed or moved, or the list emptied) is undone, and a second run is no change.
    type: bool
    default: false
notes:
  - The module does not reload Postfix; notify a handler that runs C(postfix reload).
  - Do not set the managed lists with M(estafeta.postfix.postconf_set) as well, or the two will fight.
  - An access map that can answer C(OK) (a whitelist) comes before C(reject_unauth_destination), so in
    C(smtpd_recipient_restrictions) it allows relaying. A whitelist by sender address
    (C(check_sender_access) with C(OK) results) lets anyone relay who forges such a sender; use SASL instead.
  - The order is explained in R(Restriction lists shared by several roles,ansible_collections.estafeta.postfix.docsite.guide_restriction_lists).
  - Milter lists (C(smtpd_milters), C(non_smtpd_milters)) compose the same way, with O(allow_unknown=true) (a milter is
    no restriction). Each item is one milter, a socket such as V(inet:127.0.0.1:8891) or a socket with its own settings
    in braces such as V({ inet:127.0.0.1:8891, default_action=accept }). All milters rank alike, except that plain
    sockets come before those in braces, so without O(exclusive) the milters keep their order and a new one comes
    after them. The P(estafeta.postfix.dkim#role) role adds its signing milter this way.
seealso:
  - module: estafeta.postfix.postconf_set
  - module: estafeta.postfix.postmap_file
  - module: estafeta.postfix.master_service
  - name: Postfix SMTP relay and access control
    description: The order of restrictions and what each one does.
    link: https://www.postfix.org/SMTPD_ACCESS_README.html
author:
  - estafeta.postfix contributors (@estafeta)
'''

EXAMPLES = r'''
- name: Relay only for our networks and authenticated clients (base policy)
  estafeta.postfix.restrictions:
    name: smtpd_relay_restrictions
    owner: base
    items:
      - permit_mynetworks
      - permit_sasl_authenticated
      - reject_unauth_destination
    remove:
      - defer_unauth_destination
  notify: "estafeta.postfix : reload postfix"

- name: Greylisting after the relay check (postgrey role)
  estafeta.postfix.restrictions:
    name: smtpd_recipient_restrictions
    owner: postgrey
    items:
      - check_policy_service inet:127.0.0.1:10023
  notify: "estafeta.postfix : reload postfix"

- name: Reject senders listed in an access map
  estafeta.postfix.restrictions:
    name: smtpd_sender_restrictions
    owner: anti_relay
    items:
      - check_sender_access hash:/etc/postfix/access

- name: Withdraw the greylisting contribution
  estafeta.postfix.restrictions:
    name: smtpd_recipient_restrictions
    owner: postgrey
    state: absent
'''

RETURN = r'''
value:
  description: The resulting list, as written to C(main.cf) (empty when the list is empty).
  returned: success
  type: str
  sample: permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023
items:
  description: The resulting list, one item (a restriction with its argument) per element.
  returned: success
  type: list
  elements: str
  sample: [permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023]
owned:
  description: The items recorded for O(owner) in this list after the task.
  returned: success
  type: list
  elements: str
  sample: [check_policy_service inet:127.0.0.1:10023]
backup_file:
  description: Name of the backup of C(main.cf).
  returned: C(main.cf) changed and O(backup=true), not in check mode
  type: str
  sample: /etc/postfix/main.cf.12345.2025-01-01@12:00:00~
diff:
  description:
    - C(main.cf) before and after, and the ownership record before and after when it changes.
  returned: diff mode
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.restrictions import apply


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            owner=dict(type='str', required=True),
            items=dict(type='list', elements='str', default=[]),
            remove=dict(type='list', elements='str', default=[]),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            allow_unknown=dict(type='bool', default=False),
            exclusive=dict(type='bool', default=False),
            config_dir=dict(type='path', default='/etc/postfix'),
            backup=dict(type='bool', default=False),
            check=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = apply(
            ModuleRunner(module), p['config_dir'], p['name'], p['owner'], p['items'],
            state=p['state'], remove=p['remove'], allow_unknown=p['allow_unknown'],
            check_mode=module.check_mode, check=p['check'],
            backup_func=module.backup_local if p['backup'] else None,
            mover=module.atomic_move, want_diff=module._diff, exclusive=p['exclusive'])
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    for warning in result.pop('warnings', []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
