#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: postfix_info
short_description: Gather facts about Postfix (version, settings, services, tables, queue)
version_added: 0.1.0
description:
  - Reports the Postfix version, the C(main.cf) parameters that differ from the defaults, the
    C(master.cf) services, every lookup table the configuration refers to (and whether its
    database is missing or older than its source), and the number of messages in each queue.
  - Meant for auditing a fleet ad hoc (C(ansible mailservers -m estafeta.postfix.postfix_info))
    and for C(when:) conditions in playbooks. The data is returned at the top level of the
    result (register it), not as C(ansible_facts).
  - Never changes anything.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  config_dir:
    description:
      - The Postfix configuration directory that holds C(main.cf) and C(master.cf).
      - Passed to the Postfix commands as C(-c), so a secondary instance can be inspected.
    type: path
    default: /etc/postfix
  gather:
    description:
      - The kinds of information to collect. V(all) collects every kind.
      - V(version) returns RV(version) and RV(version_info).
      - V(parameters) returns RV(parameters) and RV(config_warnings) (C(postconf -n)).
      - V(services) returns RV(services) (C(postconf -M)).
      - V(tables) returns RV(tables), RV(stale_tables) and RV(missing_tables).
      - V(queue) returns RV(queue).
    type: list
    elements: str
    choices: [all, version, parameters, services, tables, queue]
    default: [all]
requirements:
  - Postfix installed on the managed host (C(postconf) and C(postqueue) in C(/usr/sbin)).
  - Root privileges (C(become)) to count the messages when the mail system is not running.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: This module never changes anything.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: N/A
    details: This module never changes anything.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
notes:
  - Tables are found in the values of the non-default C(main.cf) parameters and of the
    C(master.cf) C(-o) overrides, after C($name) expansion, as C(type:/path) references of the
    file-based types (V(hash), V(lmdb), V(cdb), V(btree), V(dbm), V(regexp), V(pcre), V(cidr),
    V(texthash), and the configuration files of V(ldap), V(mysql), V(pgsql), V(sqlite), V(memcache)).
    C(proxy:) prefixes and tables inside C(unionmap:{...}) or C(pipemap:{...}) are found too.
  - A table is stale when it is indexed, its source file exists and its database is missing or
    older than the source, which is what Postfix warns about and C(postmap) fixes
    (see M(estafeta.postfix.postmap_file)).
  - The queue size comes from C(postqueue -j) when the Postfix master process runs, otherwise from
    counting the files under C(queue_directory); RV(queue.method) says which.
seealso:
  - module: estafeta.postfix.postqueue
  - module: estafeta.postfix.postconf_set
  - module: estafeta.postfix.postmap_file
  - module: estafeta.postfix.master_service
  - name: postconf(1)
    description: The Postfix configuration utility.
    link: https://www.postfix.org/postconf.1.html
  - name: postqueue(1)
    description: Postfix queue control, including the JSON queue listing.
    link: https://www.postfix.org/postqueue.1.html
'''

EXAMPLES = r'''
# Ad hoc, to audit a fleet from the command line:
#   ansible mailservers -b -m estafeta.postfix.postfix_info
#   ansible mailservers -b -m estafeta.postfix.postfix_info -a 'gather=version,queue'
#   ansible mailservers -b -m estafeta.postfix.postfix_info -a 'gather=tables' | grep -A3 stale_tables

- name: Gather everything about Postfix
  estafeta.postfix.postfix_info:
  register: postfix

- name: Show the version and the queue size
  ansible.builtin.debug:
    msg: "Postfix {{ postfix.version }}, {{ postfix.queue.total }} queued ({{ postfix.queue.counts.deferred }} deferred)"

- name: Use a setting that needs Postfix 3.9 or later only where it exists
  estafeta.postfix.postconf_set:
    name: smtpd_forbid_bare_newline
    value: normal
  when: postfix.version is version('3.9', '>=')

- name: Report tables whose database is missing or older than their source
  ansible.builtin.assert:
    that: postfix.stale_tables | length == 0
    fail_msg: "Run postmap for {{ postfix.stale_tables | join(', ') }} (or manage them with estafeta.postfix.postmap_file)"

- name: Fail when the queue is growing
  ansible.builtin.assert:
    that: postfix.queue.counts.deferred < 500
    fail_msg: "{{ postfix.queue.counts.deferred }} deferred messages on {{ inventory_hostname }}"

- name: Only the table state, of a second Postfix instance
  estafeta.postfix.postfix_info:
    config_dir: /etc/postfix-out
    gather: [tables]
  register: postfix_out
'''

RETURN = r'''
gathered:
  description: The kinds of information collected.
  returned: always
  type: list
  elements: str
  sample: [version, parameters, services, tables, queue]
config_dir:
  description: The configuration directory inspected.
  returned: always
  type: str
  sample: /etc/postfix
version:
  description: The Postfix version (C(mail_version)). Compare it with the C(version) test.
  returned: when O(gather) has V(version) or V(all)
  type: str
  sample: 3.7.11
version_info:
  description: The numeric parts of RV(version).
  returned: when O(gather) has V(version) or V(all)
  type: list
  elements: int
  sample: [3, 7, 11]
parameters:
  description: The C(main.cf) parameters that are explicitly set (C(postconf -n)), with their values as written.
  returned: when O(gather) has V(parameters) or V(all)
  type: dict
  sample:
    compatibility_level: '3.6'
    myhostname: mail.example.org
    message_size_limit: '52428800'
config_warnings:
  description: Warnings Postfix prints about the configuration, such as unused parameters.
  returned: when O(gather) has V(parameters) or V(all)
  type: list
  elements: str
  sample: ['postconf: warning: /etc/postfix/main.cf: unused parameter: smtp_use_tls=yes']
services:
  description: The C(master.cf) services, in file order.
  returned: when O(gather) has V(services) or V(all)
  type: list
  elements: dict
  contains:
    name:
      description: Service name (or C(address:port) for an C(inet) service).
      type: str
      sample: submission
    type:
      description: Service type (V(inet), V(unix), V(unix-dgram), V(fifo) or V(pass)).
      type: str
      sample: inet
    private:
      description: The private column, V(y), V(n) or V(-).
      type: str
    unpriv:
      description: The unpriv column.
      type: str
    chroot:
      description: The chroot column.
      type: str
    wakeup:
      description: The wakeup column.
      type: str
    maxproc:
      description: The maxproc column.
      type: str
    command:
      description: The daemon program.
      type: str
      sample: smtpd
    options:
      description: The C(-o name=value) overrides.
      type: dict
      sample: {syslog_name: postfix/submission, smtpd_tls_security_level: encrypt}
    args:
      description: The other command arguments.
      type: list
      elements: str
tables:
  description: The file-based lookup tables referred to by C(main.cf) or a C(master.cf) override.
  returned: when O(gather) has V(tables) or V(all)
  type: list
  elements: dict
  contains:
    name:
      description: The table as Postfix names it, C(type:/path).
      type: str
      sample: hash:/etc/postfix/access
    type:
      description: The table type.
      type: str
      sample: hash
    path:
      description: The source file (for V(ldap), V(mysql), V(pgsql), V(sqlite), V(memcache) the client configuration file).
      type: str
      sample: /etc/postfix/access
    used_by:
      description: The parameters that refer to the table; C(service/type/name) for a C(master.cf) override.
      type: list
      elements: str
      sample: [smtpd_recipient_restrictions, submission/inet/smtpd_sender_restrictions]
    indexed:
      description: Whether Postfix reads a database built by C(postmap) rather than the file itself.
      type: bool
    source_exists:
      description: Whether the source file exists.
      type: bool
    database:
      description: The database file (the C(.pag) file for V(dbm)); V(null) for types that are not indexed.
      type: str
      sample: /etc/postfix/access.db
    database_exists:
      description: Whether the database exists; V(null) for types that are not indexed.
      type: bool
    stale:
      description: Indexed table whose source exists and whose database is missing or older than the source.
      type: bool
    missing:
      description: Postfix cannot open the table (no database for an indexed type, no file otherwise).
      type: bool
stale_tables:
  description: The RV(tables[].name) of the stale tables.
  returned: when O(gather) has V(tables) or V(all)
  type: list
  elements: str
  sample: [hash:/etc/postfix/access]
missing_tables:
  description: The RV(tables[].name) of the tables Postfix cannot open.
  returned: when O(gather) has V(tables) or V(all)
  type: list
  elements: str
  sample: []
queue:
  description: The number of messages in each queue.
  returned: when O(gather) has V(queue) or V(all)
  type: dict
  contains:
    method:
      description: V(postqueue) (C(postqueue -j) with the mail system running) or V(files) (queue files counted).
      type: str
      sample: postqueue
    running:
      description: Whether the Postfix master process runs.
      type: bool
    queue_directory:
      description: The queue directory of the instance.
      type: str
      sample: /var/spool/postfix
    counts:
      description: Messages per queue (V(maildrop), V(incoming), V(active), V(deferred), V(hold)).
      type: dict
      sample: {maildrop: 0, incoming: 0, active: 0, deferred: 12, hold: 1}
    total:
      description: Messages in all queues.
      type: int
      sample: 13
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.info import SUBSETS, gather


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_dir=dict(type='path', default='/etc/postfix'),
            gather=dict(type='list', elements='str', default=['all'], choices=['all'] + list(SUBSETS)),
        ),
        supports_check_mode=True,
    )
    try:
        result = gather(ModuleRunner(module), module.params['config_dir'], module.params['gather'])
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
