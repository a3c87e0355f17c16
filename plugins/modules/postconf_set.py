#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: postconf_set
short_description: Set or remove Postfix main.cf parameters and master.cf service overrides
version_added: 0.1.0
description:
  - Sets or removes parameters in C(main.cf) with C(postconf -e) and C(postconf -X), or the
    C(-o name=value) overrides of one C(master.cf) service with C(postconf -P).
  - One parameter (O(name) and O(value)) or many at once (O(params)). A batch is all-or-nothing,
    and the number of Postfix commands run does not grow with the number of parameters.
  - A parameter is V(present) when it is explicitly set in C(main.cf) (as C(postconf -n) shows it)
    to exactly the rendered value. A parameter only at its built-in default is not set.
  - The edit is staged in a scratch copy of the configuration first. Names that Postfix itself
    reports as C(unused parameter) are refused (with a suggestion) unless O(allow_unknown=true);
    this also works in check mode. Then the files are replaced atomically and Postfix must accept
    them (see O(check)); when it does not, the previous files are restored.
extends_documentation_fragment:
  - estafeta.postfix.postfix
  - estafeta.postfix.postfix.check
  - estafeta.postfix.postfix.attributes
options:
  name:
    description:
      - Name of one parameter, for example V(message_size_limit).
      - Letters, digits, V(_), V(.) and V(-) only, not starting with V(-).
      - Mutually exclusive with O(params).
    type: str
  value:
    description:
      - Value of O(name). Required with O(state=present) when O(name) is given; ignored with O(state=absent).
      - A boolean becomes V(yes) or V(no), a number its decimal text.
      - A list is joined with a comma and a space (its items may contain spaces, for example
        V(check_sender_access hash:/etc/postfix/access)); an empty list gives an empty value.
      - Surrounding whitespace is removed, as Postfix does. A value with a newline, carriage return,
        tab or other control character is refused.
      - With O(service), the value cannot contain whitespace (a C(postconf -P) limitation); list items
        are joined with commas and whitespace inside an item becomes a comma, which Postfix lists accept.
    type: raw
  params:
    description:
      - 'Several parameters at once, as a dictionary C(name: value). Values are rendered as for O(value).'
      - With O(state=absent) only the keys matter.
      - Mutually exclusive with O(name).
    type: dict
  state:
    description:
      - V(present) sets the parameters to the given values.
      - V(absent) removes them (C(postconf -X), or C(postconf -PX) with O(service)), so they fall
        back to their defaults. Removing a parameter that is not set is no change.
    type: str
    choices: [present, absent]
    default: present
  service:
    description:
      - A C(master.cf) service as V(SERVICE/TYPE), for example V(submission/inet) or V(127.0.0.1:10025/inet).
      - When set, the parameters are that service's C(-o name=value) overrides instead of C(main.cf)
        parameters. The service must already exist in C(master.cf) (see M(estafeta.postfix.master_service)).
    type: str
  allow_unknown:
    description:
      - Accept names that Postfix reports as C(unused parameter) for the staged configuration.
      - Names valid because of a C(master.cf) service (such as V(amavis_destination_recipient_limit)
        with an C(amavis) service), or because another setting refers to them as V($name), are known
        anyway. Set this for a parameter that only a later task makes known.
    type: bool
    default: false
notes:
  - Values are compared as text with what C(postconf -n) (or C(postconf -P)) prints, so
    V(a b) and V(a, b) differ even though Postfix reads both as the same list.
  - The module does not reload Postfix; notify a handler that runs C(postfix reload).
seealso:
  - module: estafeta.postfix.postmap_file
  - module: estafeta.postfix.master_service
  - name: postconf(5)
    description: Postfix configuration parameters.
    link: https://www.postfix.org/postconf.5.html
  - name: postconf(1)
    description: The Postfix configuration utility.
    link: https://www.postfix.org/postconf.1.html
author:
  - estafeta.postfix contributors (@estafeta)
'''

EXAMPLES = r'''
- name: Limit the size of a message to 50 MB
  estafeta.postfix.postconf_set:
    name: message_size_limit
    value: 52428800

- name: Networks allowed to relay and the relay restrictions
  estafeta.postfix.postconf_set:
    params:
      mynetworks:
        - 127.0.0.0/8
        - "[::1]/128"
        - 192.168.2.0/24
      smtpd_relay_restrictions:
        - permit_mynetworks
        - permit_sasl_authenticated
        - reject_unauth_destination
      smtpd_helo_required: true
  notify: Reload postfix

- name: Drop obsolete settings (back to the defaults)
  estafeta.postfix.postconf_set:
    params:
      smtp_use_tls:
      smtpd_use_tls:
    state: absent

- name: Require TLS and SASL on the submission port
  estafeta.postfix.postconf_set:
    service: submission/inet
    params:
      syslog_name: postfix/submission
      smtpd_tls_security_level: encrypt
      smtpd_sasl_auth_enable: true
      smtpd_client_restrictions:
        - permit_sasl_authenticated
        - reject

# Ad hoc, from the command line:
#   ansible mailservers -b -m estafeta.postfix.postconf_set -a 'name=message_size_limit value=52428800'
'''

RETURN = r'''
changes:
  description:
    - The parameters that changed (or would change in check mode), sorted by name.
    - RV(changes[].before) is V(null) when the parameter was not set, RV(changes[].after) is V(null)
      when it is removed.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Parameter name.
      type: str
      sample: message_size_limit
    before:
      description: Value before the change, as C(postconf -n) printed it.
      type: str
      sample: "10240000"
    after:
      description: Value after the change.
      type: str
      sample: "52428800"
  sample:
    - name: message_size_limit
      before: "10240000"
      after: "52428800"
backup_file:
  description: Name of the backup of C(main.cf) (or C(master.cf) with O(service)).
  returned: changed and O(backup=true), not in check mode
  type: str
  sample: /etc/postfix/main.cf.12345.2025-01-01@12:00:00~
diff:
  description: Text of C(main.cf) (or C(master.cf)) before and after.
  returned: diff mode
  type: dict
  contains:
    before:
      description: Text before.
      type: str
    after:
      description: Text after.
      type: str
    before_header:
      description: Path of the file, marked C((before)).
      type: str
    after_header:
      description: Path of the file, marked C((after)).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.postconf import apply


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str'),
            value=dict(type='raw'),
            params=dict(type='dict'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            service=dict(type='str'),
            allow_unknown=dict(type='bool', default=False),
            config_dir=dict(type='path', default='/etc/postfix'),
            backup=dict(type='bool', default=False),
            check=dict(type='bool', default=True),
        ),
        mutually_exclusive=[['name', 'params']],
        required_one_of=[['name', 'params']],
        supports_check_mode=True,
    )
    p = module.params
    if p['name'] is not None:
        if p['state'] == 'present' and p['value'] is None:
            module.fail_json(msg='value is required with state=present when name is given '
                                 '(use an empty string for an empty value, or state=absent to remove %s).' % p['name'])
        params = {p['name']: p['value']}
    else:
        params = p['params']

    try:
        result = apply(
            ModuleRunner(module), p['config_dir'], params,
            state=p['state'], service=p['service'], allow_unknown=p['allow_unknown'],
            check_mode=module.check_mode, check=p['check'],
            backup_func=module.backup_local if p['backup'] else None,
            mover=module.atomic_move, want_diff=module._diff)
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
