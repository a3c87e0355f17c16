#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: master_service
short_description: Manage a Postfix C(master.cf) service entry and its C(-o) overrides
version_added: 0.1.0
description:
  - Adds, updates or removes one service entry of the Postfix master daemon configuration
    file C(master.cf), identified by its service name and type, as C(postconf -M name/type) does.
  - The whole entry is managed. The eight fields, the C(-o) parameter overrides in O(options)
    and the other command arguments in O(args) are compared with the entry in the file after
    parsing. Spacing, the order of the overrides and the C(,)/C(, ) list separators do not
    count, so an entry that is already right is left alone, byte for byte.
  - When the entry changes, only its lines are rewritten, in the usual C(master.cf) layout
    (fields aligned in columns, one C(  -o name=value) line per override, then the other
    arguments). Comment lines inside the entry are kept. Every other line of the file stays
    as it was.
  - A new entry is written right after the commented-out example of the same service when the
    file has one (as Debian's C(master.cf) has for C(submission), C(submissions), or the
    C(postscreen) services), otherwise at the end of the file. Commented-out lines are never changed.
  - Before anything is written, the new C(master.cf) is checked with C(postconf -M) and
    C(postconf -n) in a scratch copy of the configuration directory; an error or a new
    warning (such as an unknown parameter in O(options)), or an entry that C(postconf -M)
    reads back differently from what was asked, fails the task and nothing is written.
  - When C(master.cf) is a symbolic link, the file it points to is replaced and the link stays.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  name:
    description:
      - The service name field, for example V(submission), V(smtps), V(smtp-amavis),
        V(127.0.0.1:10025), or V(smtp) for the C(inet) entry of C(postscreen).
      - For C(inet) services this is the listening address and port (C([host:]port)).
    type: str
    required: true
  type:
    description:
      - The service type field. Postfix identifies a service by O(name) and O(type) together.
    type: str
    required: true
    choices: [inet, unix, unix-dgram, fifo, pass]
  private:
    description:
      - Whether the service is accessible only by the mail system (C(private) field).
      - V(-) means the Postfix default, V(y).
      - Internet (C(inet)) services cannot be private (Postfix's master refuses to start with
        C(inet service cannot be private)), so for O(type=inet) the default is V(n) and V(y) or
        V(-) are refused. For the other types the default is V(-).
      - V(true)/V(false) are accepted for V(y)/V(n).
    type: raw
  unpriv:
    description:
      - Whether the service runs with the privileges of the mail owner (C(unpriv) field).
      - Accepts V(-), V(y), V(n), or a boolean.
    type: raw
    default: '-'
  chroot:
    description:
      - Whether the service runs chrooted to the queue directory (C(chroot) field).
        Debian ships most services with V(y).
      - Accepts V(-), V(y), V(n), or a boolean.
    type: raw
    default: '-'
  wakeup:
    description:
      - The C(wakeup) field, V(-) or a number of seconds, optionally followed by V(?) to wake
        up only a service that is in use (for example V(60) or V(1000?)).
    type: raw
    default: '-'
  maxproc:
    description:
      - The C(maxproc) field, V(-) (C(default_process_limit)) or a number of processes;
        V(0) means no limit.
    type: raw
    default: '-'
  command:
    description:
      - The daemon program (in C(daemon_directory)), for example V(smtpd), V(smtp),
        V(postscreen), V(pipe).
      - Required when O(state=present).
    type: str
  args:
    description:
      - Command arguments other than the C(-o) overrides, for example V([-v]) or the
        C(flags=... user=... argv=...) arguments of a C(pipe) service.
      - They are written after the C(-o) lines. An argument with whitespace is written as
        C({ argument }) (Postfix 3.0 and later).
      - C({ }) is the only quoting of C(master.cf) and has no escape character, so an argument
        with an unbalanced C({) or C(}) (for example V(user=nobody{x)) is refused, as is one with
        a control character (NUL, tab, newline, and the like).
      - Put C(-o) overrides in O(options), not here.
    type: list
    elements: str
    default: []
  options:
    description:
      - The C(-o name=value) parameter overrides of the service, which replace the
        C(main.cf) values for this service only.
      - This is the complete set. Overrides already in the entry but not listed here are removed.
      - Values are written as C(postconf) does. V(true)/V(false) become C(yes)/C(no), and a list
        is joined with commas (V([permit_sasl_authenticated, reject]) becomes
        C(permit_sasl_authenticated,reject)). An empty value or V(null) gives C(-o name=), which
        clears the C(main.cf) setting for this service.
      - A value with whitespace is written as C(-o { name = value }) (Postfix 3.0 and later).
        A value with an unbalanced C({) or C(}), or with a control character, cannot be written so
        that Postfix reads it back and is refused (braces in pairs, such as
        V(inline:{ a=b, c=d }), are fine).
    type: dict
    default: {}
  state:
    description:
      - V(present) adds or updates the entry, V(absent) removes it with its continuation lines.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - estafeta.postfix.postfix
  - estafeta.postfix.postfix.check
  - estafeta.postfix.postfix.attributes
notes:
  - Postfix needs C(postfix reload) to use a changed C(master.cf); notify a handler.
  - When several entries have the same O(name) and O(type), the first is managed and the
    others are removed.
seealso:
  - module: estafeta.postfix.postconf_set
  - module: estafeta.postfix.postmap_file
  - name: master(5)
    description: The format of the Postfix master daemon configuration file.
    link: https://www.postfix.org/master.5.html
'''

EXAMPLES = r'''
- name: Hand mail to amavisd-new (content filter transport)
  estafeta.postfix.master_service:
    name: smtp-amavis
    type: unix
    private: '-'
    unpriv: '-'
    chroot: n
    maxproc: 2
    command: smtp
    options:
      smtp_data_done_timeout: 1200
      smtp_send_xforward_command: true

- name: Re-inject mail checked by amavisd-new
  estafeta.postfix.master_service:
    name: 127.0.0.1:10025
    type: inet
    private: n
    chroot: n
    command: smtpd
    options:
      content_filter: ''
      local_recipient_maps: ''
      relay_recipient_maps: ''
      smtpd_restriction_classes: ''
      smtpd_client_restrictions: ''
      smtpd_helo_restrictions: ''
      smtpd_sender_restrictions: ''
      smtpd_recipient_restrictions: [permit_mynetworks, reject]
      mynetworks: 127.0.0.0/8
      strict_rfc821_envelopes: true
      smtpd_error_sleep_time: 0
      smtpd_soft_error_limit: 1001
      smtpd_hard_error_limit: 1000
  notify: Reload postfix

- name: Submission on port 587, TLS and SASL required
  estafeta.postfix.master_service:
    name: submission
    type: inet
    private: n
    chroot: y
    command: smtpd
    options:
      syslog_name: postfix/submission
      smtpd_tls_security_level: encrypt
      smtpd_sasl_auth_enable: true
      smtpd_client_restrictions: [permit_sasl_authenticated, reject]
  notify: Reload postfix

- name: SMTP over TLS on port 465 (smtps, wrapper mode)
  estafeta.postfix.master_service:
    name: smtps
    type: inet
    private: n
    chroot: y
    command: smtpd
    options:
      syslog_name: postfix/smtps
      smtpd_tls_wrappermode: true
      smtpd_sasl_auth_enable: true
  notify: Reload postfix

- name: Put postscreen in front of smtpd
  estafeta.postfix.master_service:
    name: "{{ item.name }}"
    type: "{{ item.type }}"
    private: "{{ item.private | default('-') }}"
    chroot: y
    maxproc: "{{ item.maxproc }}"
    command: "{{ item.command }}"
  loop:
    - {name: smtp, type: inet, private: n, maxproc: 1, command: postscreen}
    - {name: smtpd, type: pass, maxproc: '-', command: smtpd}
    - {name: dnsblog, type: unix, maxproc: 0, command: dnsblog}
    - {name: tlsproxy, type: unix, maxproc: 0, command: tlsproxy}
  notify: Reload postfix

- name: Remove the smtps service
  estafeta.postfix.master_service:
    name: smtps
    type: inet
    state: absent
  notify: Reload postfix
'''

RETURN = r'''
service:
  description:
    - The entry after the task, as Postfix reads it. Option values are strings.
    - V(null) when O(state=absent).
  returned: success
  type: dict
  sample:
    name: submission
    type: inet
    private: n
    unpriv: '-'
    chroot: y
    wakeup: '-'
    maxproc: '-'
    command: smtpd
    args: []
    options:
      smtpd_tls_security_level: encrypt
      smtpd_sasl_auth_enable: 'yes'
      smtpd_client_restrictions: permit_sasl_authenticated,reject
before:
  description:
    - The entry found in C(master.cf) before the task, in the same form as RV(service);
      V(null) when there was none.
  returned: success
  type: dict
  sample:
    name: smtp
    type: inet
    private: n
    unpriv: '-'
    chroot: y
    wakeup: '-'
    maxproc: '-'
    command: smtpd
    args: []
    options: {}
backup_file:
  description: Name of the backup of C(master.cf).
  returned: changed and O(backup=true), not in check mode
  type: str
  sample: /etc/postfix/master.cf.12345.2024-01-01@10:00:00~
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.master_cf import (
    SERVICE_TYPES,
    apply,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            type=dict(type='str', required=True, choices=list(SERVICE_TYPES)),
            private=dict(type='raw'),
            unpriv=dict(type='raw', default='-'),
            chroot=dict(type='raw', default='-'),
            wakeup=dict(type='raw', default='-'),
            maxproc=dict(type='raw', default='-'),
            command=dict(type='str'),
            args=dict(type='list', elements='str', default=[]),
            options=dict(type='dict', default={}),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            config_dir=dict(type='path', default='/etc/postfix'),
            backup=dict(type='bool', default=False),
            check=dict(type='bool', default=True),
        ),
        required_if=[('state', 'present', ['command'])],
        supports_check_mode=True,
    )
    try:
        result = apply(ModuleRunner(module), module.params['config_dir'], module.params,
                       check_mode=module.check_mode, want_diff=module._diff,
                       backup_func=module.backup_local if module.params['backup'] else None,
                       mover=module.atomic_move, check=module.params['check'])
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
