#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: converged_state
short_description: Read and write the records behind the roles' fast re-runs
version_added: 0.1.0
description:
  - Each role of the collection that ran in full queues a record of what it manages (its I(spec)) with
    the digest of its input. The last handler of the collection's handler chain, after C(postfix check)
    and the reload succeeded, writes the queued records with this module (O(action=record)), every item
    of the spec fingerprinted whole from the host as it is then.
  - At the start of every play the C(common) role reads the records (O(action=read)). A role ends early
    only when its record's fingerprints all match the host now and its input digest is the same. Any hand
    edit of anything in the spec, a stopped service or master process, a removed package, a Debian upgrade
    or a new version of the collection makes the role run in full.
  - Spec items are C(KIND ARGUMENT) strings; the kinds are V(param NAME) (the main.cf value),
    V(list NAME OWNER) (a restriction list composed by M(estafeta.postfix.restrictions) - the owner's
    items and whether the whole list is exactly their composition), V(service NAME/TYPE) (the whole
    master.cf entry and its C(-o) overrides), V(table PATH TYPE) and V(alias PATH TYPE) (source file
    and what the database answers), V(file PATH) (content, mode, owner), V(cert PATH DAYS) (still valid
    DAYS days from now), V(package NAME) (installed version), V(unit NAME) (running, enabled, masked),
    V(master) (the Postfix master process runs) and V(user NAME) (groups).
  - Ad hoc, O(action=read) tells which roles' records still hold on each host (an audit of drift), and
    O(action=forget) makes roles run in full on the next run.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  action:
    description:
      - V(read) reports the records (never changes anything).
      - V(record) writes the records of O(records), unless a role's record already says the same.
      - V(forget) removes the records of O(roles) (every record when O(roles) is empty).
    type: str
    choices: [read, record, forget]
    default: read
  records:
    description:
      - The records O(action=record) writes, one per role.
    type: list
    elements: dict
    default: []
    suboptions:
      role:
        description: The role's name.
        type: str
        required: true
      input:
        description: The digest of the role's input (see the P(estafeta.postfix.role_input#filter) filter).
        type: str
        required: true
      spec:
        description: What the role manages, as C(KIND ARGUMENT) strings (see the description).
        type: list
        elements: str
        required: true
      config_dir:
        description: The Postfix configuration directory the spec's C(param), C(list), C(service) and table items refer to.
        type: path
        default: /etc/postfix
  roles:
    description: The roles whose records O(action=forget) removes; all when empty.
    type: list
    elements: str
    default: []
  state_dir:
    description: Where the records are kept (a directory of mode 0700; records are 0600).
    type: path
    default: /var/lib/estafeta-postfix
requirements:
  - Postfix installed on the managed host for the Postfix kinds of spec items.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details: O(action=record) returns the records before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
notes:
  - Records never hold secrets, and the role input digests leave them out. The roles run the tasks that
    write secrets (relay passwords, submission users, provided keys) on every run, before they may end early.
  - O(action=record) warns when two roles manage the same object (other than a restriction list, which
    composes); the last one to run decides its value.
seealso:
  - module: estafeta.postfix.postconf_set
  - module: estafeta.postfix.restrictions
  - module: estafeta.postfix.master_service
  - module: estafeta.postfix.postmap_file
'''

EXAMPLES = r'''
- name: Which roles' converged state still holds on each mail server (an audit of drift)
  estafeta.postfix.converged_state:
  register: converged

- name: Show the roles that found a hand edit, and what
  ansible.builtin.debug:
    var: converged.drifted

- name: Make the anti_relay role run in full on the next run
  estafeta.postfix.converged_state:
    action: forget
    roles: [anti_relay]
'''

RETURN = r'''
records:
  description: Per role whose record still matches the host, the input digest it was recorded with.
  returned: action is V(read)
  type: dict
  sample: {base: 3f1c0c1b0f6f6b2b8c5c2e1f0a9d8e7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f10}
drifted:
  description: Per role whose record no longer matches the host, the spec items that differ.
  returned: action is V(read)
  type: dict
  sample: {anti_relay: [list smtpd_relay_restrictions anti_relay]}
inputs:
  description:
    - Per role with a record, held or not, the input digest it was recorded with. With RV(drifted) it tells a role
      that runs in full what it may skip (its packages, when none of them drifted and its input is the same).
  returned: action is V(read)
  type: dict
recorded:
  description: The roles whose record was written (the others already said the same).
  returned: action is V(record)
  type: list
  elements: str
forgotten:
  description: The roles whose record was removed.
  returned: action is V(forget)
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils import converged
from ansible_collections.estafeta.postfix.plugins.module_utils.common import ModuleRunner, PostfixError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type='str', default='read', choices=['read', 'record', 'forget']),
            records=dict(type='list', elements='dict', default=[], options=dict(
                role=dict(type='str', required=True),
                input=dict(type='str', required=True),
                spec=dict(type='list', elements='str', required=True),
                config_dir=dict(type='path', default='/etc/postfix'),
            )),
            roles=dict(type='list', elements='str', default=[]),
            state_dir=dict(type='path', default=converged.DEFAULT_STATE_DIR),
        ),
        supports_check_mode=True,
    )
    p = module.params
    runner = ModuleRunner(module)
    try:
        if p['action'] == 'read':
            result = dict(converged.read(runner, p['state_dir']), changed=False)
        elif p['action'] == 'record':
            result = converged.record(runner, p['state_dir'], p['records'], check_mode=module.check_mode)
            diff = result.pop('diff')
            if module._diff and result['changed']:
                result['diff'] = diff
            for warning in result.pop('warnings'):
                module.warn(warning)
        else:
            result = converged.forget(p['state_dir'], p['roles'], check_mode=module.check_mode)
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except (IOError, OSError) as exc:
        module.fail_json(msg='Cannot write the converged-state records under %s: %s' % (p['state_dir'], exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
