#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: postqueue
short_description: List, flush, hold, release, requeue or delete messages in the Postfix queue
version_added: 0.1.0
description:
  - Reads the mail queue as data (C(postqueue -j)) and returns the selected messages with their
    queue ID, sender, recipients, arrival time, age, size, queue and delay reasons.
  - Flushes the queue (C(postqueue -f), the C(postfix flush) of older guides and C(mailq -q)).
  - Holds, releases, requeues or deletes the messages chosen by queue ID, sender, recipient
    (exact addresses or regular expressions), age and queue. The queue IDs are passed to
    C(postsuper -h), C(-H), C(-r) or C(-d) on standard input, so thousands of messages cost one
    command, and only the messages seen in the listing are touched (never C(ALL)).
  - A guard refuses, unless O(allow_all=true), a change with no selector at all, or a selection
    that matches every message in the queue (when it holds two messages or more and no O(queue_id)
    is given), so a typo cannot empty the queue.
  - In check mode nothing is changed and RV(messages) lists what would be affected.
author:
  - estafeta.postfix contributors (@estafeta)
options:
  action:
    description:
      - V(list) returns the selected messages and never changes anything.
      - V(flush) attempts to deliver all deferred mail now (C(postqueue -f)). It takes no selector
        (use V(requeue) for a selection). It reports a change when the queue holds deferred messages,
        since only then does it trigger delivery attempts; RV(messages) lists those messages.
      - V(hold) puts the selected messages of the incoming, active and deferred queues on hold (C(postsuper -h)).
      - V(release) moves the selected messages of the hold queue back to the deferred queue (C(postsuper -H)).
      - V(requeue) sends the selected messages through the cleanup daemon again (C(postsuper -r)), for
        example after a change of C(transport_maps), C(virtual_alias_maps) or C(content_filter).
      - V(delete) deletes the selected messages from every queue (C(postsuper -d)).
    type: str
    choices: [list, flush, hold, release, requeue, delete]
    default: list
  queue_id:
    description:
      - Select these messages by queue ID (as C(mailq) or RV(messages[].queue_id) shows them).
      - IDs not in the queue are returned in RV(unmatched_queue_ids).
    type: list
    elements: str
  sender:
    description:
      - Select messages whose envelope sender is one of these addresses (case-insensitive, exact).
      - V('') or V(<>) selects bounces (the null sender, shown as C(MAILER-DAEMON)).
    type: list
    elements: str
  sender_regex:
    description:
      - Select messages whose envelope sender matches this Python regular expression (searched, case-insensitive).
    type: str
  recipient:
    description:
      - Select messages with at least one of these recipient addresses (case-insensitive, exact).
    type: list
    elements: str
  recipient_regex:
    description:
      - Select messages with a recipient matching this Python regular expression (searched, case-insensitive),
        for example V(@example[.]com$).
    type: str
  older_than:
    description:
      - Select messages that arrived more than this long ago.
      - A number of seconds (V(3600)) or a duration with units V(s), V(m), V(h), V(d), V(w)
        (V(30m), V(2h), V(1d), V(1h30m)).
    type: raw
  queue:
    description:
      - Select messages in these queues only.
    type: list
    elements: str
    choices: [maildrop, incoming, active, deferred, hold]
  allow_all:
    description:
      - Allow O(action=hold), V(release), V(requeue) or V(delete) without a selector, or with a
        selection that matches every queued message.
    type: bool
    default: false
  config_dir:
    description:
      - The Postfix configuration directory of the instance whose queue is managed, passed to
        C(postqueue) and C(postsuper) as C(-c).
    type: path
    default: /etc/postfix
requirements:
  - Postfix installed on the managed host (C(postqueue) and C(postsuper) in C(/usr/sbin)).
  - Root privileges (C(become)) for every action but V(list) and V(flush); V(flush) also needs
    the mail system to run.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: partial
    details:
      - V(hold), V(release) and V(delete) are idempotent.
      - V(requeue) moves the messages to the maildrop queue, where a second run leaves them alone;
        once Postfix has picked them up they get new queue IDs, and a selection by sender or
        recipient matches them again.
      - V(flush) reports a change as long as deferred mail remains.
notes:
  - Selectors combine with AND; the items of one list selector are alternatives (OR).
  - The queue changes while it is read and acted on; RV(affected) holds the IDs C(postsuper) reports
    as done, which may be fewer than RV(messages) when mail was delivered in between.
  - Messages in the maildrop queue are not yet processed by Postfix; only V(delete) acts on them.
seealso:
  - module: estafeta.postfix.postfix_info
  - name: postqueue(1)
    description: Postfix queue control, including the JSON queue listing.
    link: https://www.postfix.org/postqueue.1.html
  - name: postsuper(1)
    description: Postfix superintendent, deletes, holds, releases and requeues messages.
    link: https://www.postfix.org/postsuper.1.html
'''

EXAMPLES = r'''
# Ad hoc, across a fleet:
#   ansible mailservers -b -m estafeta.postfix.postqueue
#   ansible mailservers -b -m estafeta.postfix.postqueue -a 'action=flush'
#   ansible mailservers -b -m estafeta.postfix.postqueue -a 'action=delete sender=spammer@example.net' --check
#   ansible mailservers -b -m estafeta.postfix.postqueue -a 'action=delete sender=spammer@example.net'

- name: Read the queue (the guide's mailq)
  estafeta.postfix.postqueue:
  register: mailq

- name: Show the deferred messages and why
  ansible.builtin.debug:
    msg: "{{ item.queue_id }} from {{ item.sender }} to {{ item.recipients | join(', ') }}: {{ item.delay_reasons | join('; ') }}"
  loop: "{{ mailq.messages | selectattr('queue', '==', 'deferred') }}"
  loop_control:
    label: "{{ item.queue_id }}"

- name: Try to deliver the deferred mail now (the guide's postfix flush)
  estafeta.postfix.postqueue:
    action: flush

- name: Delete the spam a compromised account sent
  estafeta.postfix.postqueue:
    action: delete
    sender: compromised@example.org

- name: Hold everything for one destination domain while its server is down
  estafeta.postfix.postqueue:
    action: hold
    recipient_regex: '@example\.com$'

- name: Release it again
  estafeta.postfix.postqueue:
    action: release
    recipient_regex: '@example\.com$'

- name: Send deferred mail through the new transport map
  estafeta.postfix.postqueue:
    action: requeue
    queue: deferred
    allow_all: true

- name: Delete bounces older than two days
  estafeta.postfix.postqueue:
    action: delete
    sender: ''
    older_than: 2d

- name: Empty the whole queue, on purpose
  estafeta.postfix.postqueue:
    action: delete
    allow_all: true
'''

RETURN = r'''
action:
  description: The action carried out.
  returned: always
  type: str
  sample: delete
messages:
  description:
    - With O(action=list), the selected messages.
    - With O(action=flush), the deferred messages the flush retries.
    - With the other actions, the selected messages the action applies to (for example only held
      messages for V(release)), as they were listed before the action.
  returned: always
  type: list
  elements: dict
  contains:
    queue_id:
      description: The queue ID.
      type: str
      sample: 4F2A31CC2F0
    queue:
      description: The queue the message was in (V(maildrop), V(incoming), V(active), V(deferred), V(hold)).
      type: str
      sample: deferred
    sender:
      description: The envelope sender (C(MAILER-DAEMON) for the null sender).
      type: str
      sample: alice@example.org
    recipients:
      description: The recipient addresses still to be delivered.
      type: list
      elements: str
      sample: [bob@example.net]
    delay_reasons:
      description: The distinct reasons recorded for delayed recipients.
      type: list
      elements: str
      sample: ['connect to mx.example.net[192.0.2.1]:25: Connection timed out']
    arrival_time:
      description: Arrival time, in seconds since the epoch.
      type: int
      sample: 1735689600
    age:
      description: Seconds since arrival.
      type: int
      sample: 7260
    size:
      description: Message size in bytes (header and body).
      type: int
      sample: 2048
    forced_expire:
      description: Whether the message is forced to expire (C(postsuper -e), Postfix 3.5 and later).
      type: bool
      sample: false
count:
  description: The number of RV(messages).
  returned: always
  type: int
  sample: 2
total:
  description: The number of messages in the queue before the action.
  returned: always
  type: int
  sample: 14
queues:
  description: Messages per queue before the action.
  returned: always
  type: dict
  sample: {maildrop: 0, incoming: 0, active: 1, deferred: 12, hold: 1}
affected:
  description:
    - The queue IDs acted on (C(postsuper) reports each one), or in check mode that would be.
  returned: when O(action) is not V(list)
  type: list
  elements: str
  sample: [4F2A31CC2F0]
unaffected:
  description: Selected queue IDs the action does not apply to (for example a message not on hold for V(release)).
  returned: when O(action) is V(hold), V(release), V(requeue) or V(delete)
  type: list
  elements: str
  sample: []
unmatched_queue_ids:
  description: The O(queue_id) values not found in the queue.
  returned: when O(action) is not V(flush)
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.queue import (
    ACTIONS,
    QUEUES,
    Selection,
    manage,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(type='str', default='list', choices=list(ACTIONS)),
            queue_id=dict(type='list', elements='str'),
            sender=dict(type='list', elements='str'),
            sender_regex=dict(type='str'),
            recipient=dict(type='list', elements='str'),
            recipient_regex=dict(type='str'),
            older_than=dict(type='raw'),
            queue=dict(type='list', elements='str', choices=list(QUEUES)),
            allow_all=dict(type='bool', default=False),
            config_dir=dict(type='path', default='/etc/postfix'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        selection = Selection(queue_id=p['queue_id'], sender=p['sender'], sender_regex=p['sender_regex'],
                              recipient=p['recipient'], recipient_regex=p['recipient_regex'],
                              older_than=p['older_than'], queue=p['queue'])
        result = manage(ModuleRunner(module), p['config_dir'], p['action'], selection,
                        allow_all=p['allow_all'], check_mode=module.check_mode)
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
