#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: postmap_file
short_description: Manage a Postfix lookup table and rebuild its database only when needed
version_added: 0.1.0
description:
  - Writes the source file of a Postfix lookup table (access, sender lists, virtual aliases,
    transport, SASL passwords, header checks, aliases) from O(entries) (or O(secret_entries)),
    and builds its database with C(postmap) (or C(postalias) for alias tables) only when needed.
    That is, when the source changed, the database is missing or older than the source, its
    content differs from the source, or O(rebuild=true).
  - The content of the database is compared with the source on every run. The entries
    C(postmap -s) (C(postalias -s)) lists must be the entries Postfix reads from the source, with
    keys folded to lower case as Postfix folds them. So a database built by hand from another file,
    with entries added or removed, or left behind by an interrupted change, is rebuilt (and the task
    reports a change), whatever its timestamp.
  - The new source and database are built next to the target under temporary names, queried
    once, then renamed into place, the database first. When a rename fails (an immutable file, a
    full disk), the files already replaced are put back, so source and database always belong
    together and the task fails with a clear message.
  - When O(path) is a symbolic link, the file it points to is written (in its own directory,
    atomically) and gets O(owner), O(group) and O(mode); the link stays. The database is built
    next to O(path), as C(postmap) does, and must not be a symbolic link itself. With
    O(state=absent) and O(exclusive=true) the link itself is removed, not the file it points to.
  - Tables of type V(regexp), V(pcre), V(cidr) and V(texthash) are read by Postfix directly and
    are never postmapped; the module lets Postfix parse the candidate file first and fails,
    without writing anything, on any warning (for example a broken regular expression).
  - Bad input (keys with whitespace, empty keys or values, line breaks or other control characters
    such as NUL, a key given twice with different values) fails with a message naming the key,
    before anything is written. Lines end at a line feed only, as Postfix reads them, so Unicode line
    separators (U+2028, U+2029) are ordinary text.
author:
  - estafeta.postfix contributors (@estafeta)
extends_documentation_fragment:
  - estafeta.postfix.postfix
  - estafeta.postfix.postfix.attributes
options:
  path:
    description:
      - Absolute path of the table's source file, for example C(/etc/postfix/access).
      - The database is the same path plus C(.db) (V(hash), V(btree)), C(.lmdb) (V(lmdb)),
        C(.cdb) (V(cdb)), or C(.dir) and C(.pag) (V(dbm)).
    type: path
    required: true
  entries:
    description:
      - "The table's entries, either a dict C({key: value}) or a list of C({key: ..., value: ...}) dicts.
        Both keep their order, which matters for V(regexp) and V(pcre) tables (first match wins)."
      - Values may be strings, numbers, booleans (written as V(yes)/V(no)) or lists of strings
        (joined with C(", "), for example several targets of a virtual alias).
      - For V(regexp) and V(pcre) the key is the whole C(/pattern/flags) expression (it may hold
        spaces) and the value is the action.
      - With O(state=absent) and O(exclusive=false) the values are ignored and a plain list of keys
        is accepted too.
      - With O(state=present), O(entries) or O(secret_entries) is required. An empty list with
        O(exclusive=true) makes an empty table.
      - Mutually exclusive with O(secret_entries).
    type: raw
  secret_entries:
    description:
      - The table's entries when their values are secrets (for example C(smtp_sasl_password_maps)),
        in the same forms as O(entries).
      - This option is declared C(no_log), so its content never reaches the system log (the
        invocation Ansible logs before the module runs), the result or C(-vvv) output. The diff shows
        C(********) instead of each value, and the returned data holds keys only. With the dict
        form the keys stay visible; with the list form Ansible masks the keys too.
      - Use together with O(mode=0600).
      - Mutually exclusive with O(entries).
    type: raw
  type:
    description:
      - The Postfix lookup table type.
      - Indexed types (V(hash), V(lmdb), V(cdb), V(btree), V(dbm)) get a database built with
        C(postmap); V(regexp), V(pcre), V(cidr) and V(texthash) are only validated.
      - Default is the value of C(default_database_type) reported by C(postconf) for O(config_dir)
        (V(hash) on Debian 12 and 13).
    type: str
    choices: [hash, lmdb, cdb, btree, dbm, regexp, pcre, cidr, texthash]
  alias:
    description:
      - "The table is an aliases file (C(name: value) syntax, built with C(postalias)), for example
        C(/etc/aliases) as used by C(alias_maps)."
    type: bool
    default: false
  exclusive:
    description:
      - If V(true), the module owns the whole file; keys not in O(entries) are removed, comments
        are dropped, and a header comment says that local edits are overwritten. With
        O(state=absent), the whole table (source and database) is removed.
      - If V(false), only the given entries are ensured present with their value (or absent with
        O(state=absent)); every other line and comment is kept as it is. New keys are appended at
        the end of the file.
      - The default depends on O(state). It is V(true) with O(state=present) and V(false) with
        O(state=absent), so that C(state=absent) removes the listed entries only. Removing the
        whole table takes an explicit O(exclusive=true), and O(state=absent) without O(entries)
        and without O(exclusive=true) fails.
    type: bool
  state:
    description:
      - V(present) ensures the entries; V(absent) removes the listed entries (the default,
        O(exclusive=false)) or the source file and its database (O(exclusive=true)).
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Owner (name or uid) of the source file and its database. Default keeps the current owner.
    type: str
  group:
    description:
      - Group (name or gid) of the source file and its database. Default keeps the current group.
    type: str
  mode:
    description:
      - Permissions of the source file and its database, as an octal string such as V('0600').
        Quote it in YAML.
      - Default keeps the mode of an existing source file, or C(0644) for a new one. The database
        always gets the same owner, group and mode as the source.
    type: raw
  rebuild:
    description:
      - Build the database even if it looks current.
    type: bool
    default: false
notes:
  - Postfix folds keys of indexed tables and V(texthash) tables to lower case, so two keys that
    differ only in case are the same key; the module reports them as duplicates.
  - Patterns of V(regexp) and V(pcre) tables match case-insensitively by default; the C(i) flag
    toggles that (C(/pattern/i) is case-sensitive).
  - Reload Postfix after changing a V(regexp), V(pcre), V(cidr) or V(texthash) table (a notified
    handler); indexed tables are picked up by the daemons without a reload.
seealso:
  - module: estafeta.postfix.postconf_set
  - module: estafeta.postfix.master_service
  - name: postmap(1)
    description: The Postfix lookup table management command.
    link: https://www.postfix.org/postmap.1.html
  - name: Postfix lookup table overview (DATABASE_README)
    description: Table types, when to run postmap, and how Postfix reads each type.
    link: https://www.postfix.org/DATABASE_README.html
'''

EXAMPLES = r'''
- name: Reject mail from some senders and whole domains (access map)
  estafeta.postfix.postmap_file:
    path: /etc/postfix/access
    entries:
      bob645@yahoo.com: REJECT
      techemail.com: REJECT Spam source, contact postmaster
      trafficmagnet.net: REJECT

- name: Let these sender addresses relay (check_sender_access; unsafe, sender addresses are easily forged)
  estafeta.postfix.postmap_file:
    path: /etc/postfix/usuarios
    entries:
      usuario@dominio.com: OK
      usuario2@dominio.com: OK

- name: Virtual aliases, one of them to several targets
  estafeta.postfix.postmap_file:
    path: /etc/postfix/virtual
    type: lmdb
    entries:
      info@example.org: alice@example.com
      sales@example.org: [bob@example.com, carol@example.com]

- name: Transport map, one domain to a relay on port 10025
  estafeta.postfix.postmap_file:
    path: /etc/postfix/transport
    entries:
      dominio1.com: smtp:servidor2.dominio2.com
      dominio3.com: smtp:servidor4.dominio4.com:10025

- name: SMTP client passwords for the relay host
  estafeta.postfix.postmap_file:
    path: /etc/postfix/sasl_passwd
    mode: '0600'
    secret_entries:
      '[smtp.example.net]:587': "relayuser:{{ vault_relay_password }}"

- name: Header checks, in order (first match wins)
  estafeta.postfix.postmap_file:
    path: /etc/postfix/header_checks
    type: pcre
    entries:
      - key: '/^Subject:.*\bviagra\b/'
        value: REJECT Spam
      - key: '/^Content-(Type|Disposition):.*name="?.*\.(exe|scr|pif|vbs)"?/'
        value: REJECT Executable attachments are not accepted
  notify: Reload postfix

- name: Local aliases (newaliases equivalent)
  estafeta.postfix.postmap_file:
    path: /etc/aliases
    alias: true
    exclusive: false
    entries:
      postmaster: root
      root: [admin, ops@example.com]

- name: Make sure one sender is no longer blocked, keeping the rest of the file
  estafeta.postfix.postmap_file:
    path: /etc/postfix/access
    state: absent
    entries:
      - bob645@yahoo.com

- name: Remove a whole table with its database
  estafeta.postfix.postmap_file:
    path: /etc/postfix/old_access
    state: absent
    exclusive: true
'''

RETURN = r'''
path:
  description: The source file.
  returned: always
  type: str
  sample: /etc/postfix/access
database:
  description: The database file (for V(dbm) the C(.pag) file), or V(null) for types that are not indexed.
  returned: always
  type: str
  sample: /etc/postfix/access.db
type:
  description: The table type used (the default comes from C(default_database_type)).
  returned: always
  type: str
  sample: hash
rebuilt:
  description: Whether the database was (or, in check mode, would be) built.
  returned: always
  type: bool
  sample: true
entries:
  description: Number of entries in the resulting table.
  returned: always
  type: int
  sample: 7
added:
  description: Keys added to the table.
  returned: always
  type: list
  elements: str
  sample: [techemail.com]
removed:
  description: Keys removed from the table.
  returned: always
  type: list
  elements: str
  sample: []
updated:
  description: Keys whose value changed.
  returned: always
  type: list
  elements: str
  sample: [bob645@yahoo.com]
backup_file:
  description: The backup of the previous source file.
  returned: when O(backup=true) and the source file changed
  type: str
  sample: /etc/postfix/access.12345.2025-01-01@10:00:00~
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ModuleRunner,
    PostfixError,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.postmap import (
    TYPES,
    PostmapFile,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            entries=dict(type='raw'),
            secret_entries=dict(type='raw', no_log=True),
            type=dict(type='str', choices=list(TYPES)),
            alias=dict(type='bool', default=False),
            exclusive=dict(type='bool'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw'),
            rebuild=dict(type='bool', default=False),
            config_dir=dict(type='path', default='/etc/postfix'),
            backup=dict(type='bool', default=False),
        ),
        mutually_exclusive=[('entries', 'secret_entries')],
        required_if=[('state', 'present', ('entries', 'secret_entries'), True)],
        supports_check_mode=True,
    )
    p = module.params
    secret = p['secret_entries'] is not None
    runner = ModuleRunner(module)
    try:
        table_type = p['type']
        if table_type is None:
            dummy, out, dummy2 = runner.run(['postconf', '-c', p['config_dir'], '-h', 'default_database_type'])
            table_type = out.strip()
        table = PostmapFile(
            runner, p['path'], table_type, entries=p['secret_entries'] if secret else p['entries'],
            alias=p['alias'], exclusive=p['exclusive'], state=p['state'], owner=p['owner'], group=p['group'],
            mode=p['mode'], secret=secret, config_dir=p['config_dir'], rebuild=p['rebuild'])
        result = table.run(check_mode=module.check_mode, want_diff=module._diff,
                           backup_func=module.backup_local if p['backup'] else None)
    except PostfixError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
