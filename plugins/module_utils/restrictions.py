# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compose Postfix restriction lists contributed by several owners (private to this collection).

Several roles add items to the same ``smtpd_*_restrictions`` list. Each call names an
*owner*; the items every owner contributed are recorded in a small JSON file next to
``main.cf`` (:data:`STATE_FILE`). The new list is

    (items in main.cf now - items this owner contributed before and no longer lists)
    + this owner's items

sorted by a stable *rank* (:func:`rank`) so that the list is always in a safe order:
permits for trusted clients, access maps, the relay check, syntax checks, DNS blocklists,
policy services, and the terminal ``permit``/``reject`` last. Items nobody owns (written by
an administrator) are kept. See docs/docsite/rst/guide_restriction_lists.rst in the collection.

With ``exclusive``, the list is exactly :func:`composed`: a pure function of the ownership
record, so any hand edit of the list is undone. main.cf and the record change together or not
at all (:meth:`.common.ConfigTransaction.commit`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json
import os
import re

from ansible_collections.estafeta.postfix.plugins.module_utils.common import (
    ConfigTransaction,
    PostfixError,
    make_diff,
    read_text,
)
from ansible_collections.estafeta.postfix.plugins.module_utils.postconf import (
    check_name,
    check_value,
    read_main,
    split_list,
)

STATE_FILE = 'estafeta-restrictions.json'
STATE_VERSION = 1
STATE_COMMENT = ('Written by the estafeta.postfix.restrictions module: the restriction list items each '
                 'owner (role) contributed. Do not edit by hand.')
OWNER_RE = re.compile(r'\A[A-Za-z0-9_.-]+\Z')

# Rank classes (see docs/docsite/rst/guide_restriction_lists.rst).
CLASS_PERMIT = 0      # trusted clients
CLASS_ACCESS = 1      # access maps (may say OK: they must come before the relay check to matter)
CLASS_RELAY = 2       # the relay check and recipient validation
CLASS_SYNTAX = 3      # cheap syntax and DNS-existence checks
CLASS_DNSBL = 4       # DNS block and allow lists, address verification
CLASS_POLICY = 5      # policy services (postgrey, SPF, quota daemons)
CLASS_OTHER = 6       # restriction classes, $parameter references, unknown names
CLASS_TERMINAL = 9    # permit, reject, defer...: always last

# Known restrictions in their canonical order inside their class. The position in this
# table breaks ties between classes members, so that the result does not depend on the
# order in which owners were applied. Items with the same first word keep their order.
_TABLE = [
    (CLASS_PERMIT, [
        'permit_mynetworks', 'permit_sasl_authenticated', 'permit_tls_clientcerts',
        'permit_tls_all_clientcerts', 'permit_inet_interfaces',
    ]),
    (CLASS_ACCESS, [
        'check_ccert_access', 'check_sasl_access',
        'check_client_access', 'check_client_a_access', 'check_client_mx_access', 'check_client_ns_access',
        'check_reverse_client_hostname_access', 'check_reverse_client_hostname_a_access',
        'check_reverse_client_hostname_mx_access', 'check_reverse_client_hostname_ns_access',
        'check_helo_access', 'check_helo_a_access', 'check_helo_mx_access', 'check_helo_ns_access',
        'check_sender_access', 'check_sender_a_access', 'check_sender_mx_access', 'check_sender_ns_access',
        'check_recipient_access', 'check_recipient_a_access', 'check_recipient_mx_access',
        'check_recipient_ns_access',
    ]),
    (CLASS_RELAY, [
        'permit_auth_destination', 'permit_mx_backup', 'reject_unauth_destination', 'defer_unauth_destination',
        'reject_unlisted_recipient', 'reject_unlisted_sender',
    ]),
    (CLASS_SYNTAX, [
        'reject_unauth_pipelining', 'reject_plaintext_session', 'reject_multi_recipient_bounce',
        'reject_invalid_helo_hostname', 'reject_invalid_hostname',
        'reject_non_fqdn_helo_hostname', 'reject_non_fqdn_hostname',
        'reject_non_fqdn_sender', 'reject_non_fqdn_recipient',
        'reject_sender_login_mismatch', 'reject_authenticated_sender_login_mismatch',
        'reject_known_sender_login_mismatch', 'reject_unauthenticated_sender_login_mismatch',
        'reject_unknown_helo_hostname', 'reject_unknown_hostname',
        'reject_unknown_sender_domain', 'reject_unknown_recipient_domain',
        'reject_unknown_reverse_client_hostname', 'reject_unknown_client_hostname', 'reject_unknown_client',
        'sleep',
    ]),
    (CLASS_DNSBL, [
        'permit_dnswl_client', 'permit_rhswl_client',
        'reject_rbl_client', 'reject_rhsbl_client', 'reject_rhsbl_reverse_client', 'reject_rhsbl_helo',
        'reject_rhsbl_sender', 'reject_rhsbl_recipient',
        'reject_unverified_sender', 'reject_unverified_recipient',
    ]),
    (CLASS_POLICY, ['check_policy_service']),
    (CLASS_TERMINAL, ['permit', 'defer_if_reject', 'defer_if_permit', 'defer', 'reject']),
]
RANKS = {}
for _class, _names in _TABLE:
    for _index, _name in enumerate(_names):
        RANKS[_name] = (_class, _index)
KNOWN = frozenset(RANKS) | frozenset(['warn_if_reject'])
_END = 1000

# Restrictions whose next list element is their argument (a table, a zone, a service, seconds).
TAKES_ARGUMENT = frozenset(
    [n for n in RANKS if n.startswith('check_') or n.startswith('reject_rhsbl_')]
    + ['reject_rbl_client', 'permit_dnswl_client', 'permit_rhswl_client', 'sleep'])

# Names that Postfix no longer accepts, with what to write instead.
REMOVED = {
    'check_relay_domains': 'reject_unauth_destination (check_relay_domains was removed in Postfix 2.2)',
    'reject_maps_rbl': 'reject_rbl_client ZONE (reject_maps_rbl and maps_rbl_domains were removed)',
    'permit_naked_ip_address': 'permit_mynetworks or permit_sasl_authenticated (permit_naked_ip_address was removed)',
}


def _head(tokens):
    """The restriction that decides the rank: ``warn_if_reject X`` ranks as ``X``."""
    if tokens[0] == 'warn_if_reject' and len(tokens) > 1:
        return tokens[1]
    return tokens[0]


def _is_map(token):
    return ':' in token and not token.startswith('{') and not token.startswith('$')


def group(tokens):
    """Group list elements into items: ``['check_sender_access', 'hash:/x', 'reject']`` ->
    ``['check_sender_access hash:/x', 'reject']``.

    A restriction in :data:`TAKES_ARGUMENT` takes the next element; ``warn_if_reject`` takes
    the next item. Raises PostfixError when an argument is missing.
    """
    items = []
    i = 0
    while i < len(tokens):
        parts = []
        while i < len(tokens) and tokens[i] == 'warn_if_reject':
            parts.append(tokens[i])
            i += 1
        if i >= len(tokens):
            raise PostfixError('"warn_if_reject" must be followed by a restriction, as in '
                               '"warn_if_reject reject_unknown_client_hostname".')
        token = tokens[i]
        parts.append(token)
        i += 1
        if token in TAKES_ARGUMENT:
            if i >= len(tokens) or tokens[i] in KNOWN:
                raise PostfixError('"%s" needs an argument (%s), as in "%s".' % (
                    token, 'a number of seconds' if token == 'sleep' else
                    'a DNS zone' if token in ('reject_rbl_client', 'permit_dnswl_client', 'permit_rhswl_client')
                    or token.startswith('reject_rhsbl_') else
                    'a policy server' if token == 'check_policy_service' else 'a lookup table',
                    'sleep 1' if token == 'sleep' else
                    '%s zen.spamhaus.org' % token if not token.startswith('check_') else
                    'check_policy_service inet:127.0.0.1:10023' if token == 'check_policy_service' else
                    '%s hash:/etc/postfix/access' % token))
            parts.append(tokens[i])
            i += 1
        items.append(' '.join(parts))
    return items


def parse_items(value):
    """A Postfix list value (text or a list of strings) -> list of items."""
    return group(split_list(value))


def rank(item):
    """``(class, position)`` of an item; see docs/docsite/rst/guide_restriction_lists.rst."""
    head = _head(item.split(' '))
    if head in RANKS:
        return RANKS[head]
    if head.startswith('check_') and head.endswith('_access'):
        return (CLASS_ACCESS, _END)
    if _is_map(head):
        # A bare table, as in the classic "smtpd_sender_restrictions = hash:/etc/postfix/access".
        return (CLASS_ACCESS, _END)
    if head.startswith('permit_') and head.endswith('clientcerts'):
        return (CLASS_PERMIT, _END)
    if head.startswith(('reject_non_fqdn_', 'reject_unknown_', 'reject_invalid_')):
        return (CLASS_SYNTAX, _END)
    if head.startswith(('reject_rbl_', 'reject_rhsbl_')):
        return (CLASS_DNSBL, _END)
    return (CLASS_OTHER, _END)


def order(items):
    """Sort ``items`` by :func:`rank`; equal ranks keep their order (Python's sort is stable)."""
    return sorted(items, key=rank)


def _dedupe(items):
    seen = set()
    result = []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def _balanced(text):
    level = 0
    for char in text:
        level += {'{': 1, '}': -1}.get(char, 0)
        if level < 0:
            return False
    return level == 0


def normalize_items(items, what='items'):
    """Validate the items given to the module and bring them to the grouped form."""
    result = []
    for item in items or []:
        if not isinstance(item, str):
            raise PostfixError('Each of %s must be a string such as "permit_mynetworks" or '
                               '"check_sender_access hash:/etc/postfix/access"; got %r.' % (what, item))
        check_value(what, item)
        if not _balanced(item):
            raise PostfixError('%s: %r has unbalanced braces: Postfix would read the items that follow it as part of '
                               'it (text in { } stays together in a list). Nothing was changed.' % (what, item))
        result.extend(parse_items(item))
    return _dedupe(result)


def check_known(items, classes, allow_unknown=False):
    """Refuse names Postfix does not know (a typo makes smtpd answer 451 to every client)."""
    for item in items:
        for token in item.split(' '):
            if token in REMOVED:
                raise PostfixError('"%s" is not a restriction of today\'s Postfix: use %s. Nothing was changed.'
                                   % (token, REMOVED[token]))
        head = _head(item.split(' '))
        if allow_unknown or head in KNOWN or head in classes or head.startswith('$') or _is_map(head):
            continue
        close = difflib.get_close_matches(head, sorted(KNOWN), n=1)
        raise PostfixError(
            'Unknown restriction "%s"%s. Restriction class names must be listed in smtpd_restriction_classes; '
            'set allow_unknown=true for a restriction this module does not know yet. Nothing was changed.'
            % (head, ' (did you mean "%s"?)' % close[0] if close else ''))


def state_path(config_dir):
    return os.path.join(config_dir, STATE_FILE)


def load_state(config_dir):
    """The ownership record: ``{parameter: {owner: [items]}}``."""
    path = state_path(config_dir)
    text = read_text(path, default='')
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
        lists = data['lists']
        if not isinstance(lists, dict):
            raise ValueError('"lists" is not an object')
        result = {}
        for param, owners in lists.items():
            result[param] = dict((owner, [str(i) for i in items]) for owner, items in owners.items())
        return result
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PostfixError(
            '%s is not a valid ownership record (%s). Remove it: it is rebuilt as the roles run again, and '
            'until then the items in main.cf count as written by hand. Nothing was changed.' % (path, exc))


def dump_state(state):
    """Text of the ownership record (sorted, stable, one item a line)."""
    lists = {}
    for param in sorted(state):
        owners = dict((o, list(i)) for o, i in state[param].items() if i)
        if owners:
            lists[param] = owners
    data = {'comment': STATE_COMMENT, 'version': STATE_VERSION, 'lists': lists}
    return json.dumps(data, indent=2, sort_keys=True) + '\n'


def compose(current, owner, items, remove, state, name, present=True):
    """The new list of ``name`` and the new ownership record; pure function.

    ``current`` is the list now in effect (items), ``state`` the ownership record.
    Returns ``(new_items, new_state, conflicts)``; ``conflicts`` lists items of ``remove``
    (or of this owner's old items) that another owner still contributes, which are kept.
    """
    owners = dict(state.get(name, {}))
    previous = owners.get(owner, [])
    others = set()
    for other, other_items in owners.items():
        if other != owner:
            others.update(other_items)
    if present:
        drop = [i for i in previous if i not in items] + list(remove)
    else:
        drop = list(previous) + list(items) + list(remove)
    conflicts = [i for i in _dedupe(list(remove)) if i in others]
    drop = set(i for i in drop if i not in others)
    kept = [i for i in current if i not in drop]
    added = [i for i in items if i not in kept] if present else []
    new_items = order(_dedupe(kept + added))

    if present and items:
        owners[owner] = list(items)
    else:
        owners.pop(owner, None)
    new_state = dict((k, dict(v)) for k, v in state.items())
    if owners:
        new_state[name] = owners
    else:
        new_state.pop(name, None)
    return new_items, new_state, conflicts


def composed(state, name):
    """The list ``name`` made of its owners' items only; a pure function of the ownership record.

    ``state`` is the record as :func:`load_state` returns it. Owners in sorted name order, each
    owner's items in its given order, duplicates dropped (first kept), then stable-sorted by
    :func:`rank`.
    """
    owners = state.get(name, {})
    items = []
    for owner in sorted(owners):
        items.extend(owners[owner])
    return order(_dedupe(items))


def render(items):
    """The main.cf value of a list of items."""
    return ', '.join(items)


def _current(runner, tx, name):
    """``(items, explicit, classes)`` of parameter ``name`` in the staged main.cf."""
    values, unused = read_main(runner, tx)
    classes = set(split_list(values.get('smtpd_restriction_classes', '')))
    if name in unused and name not in classes:
        raise PostfixError('%s is not a Postfix parameter (postconf reports it as unused), nor a restriction '
                           'class listed in smtpd_restriction_classes. Nothing was changed.' % name)
    if name in values:
        return parse_items(values[name]), True, classes
    # Not set: start from the value in effect (the built-in default, expanded).
    dummy, out, err = runner.run(['postconf', '-c', tx.scratch, '-h', '-x', name], what='postconf -h -x %s' % name)
    if 'unknown parameter' in err and name not in classes:
        raise PostfixError('Unknown Postfix parameter "%s": give a restriction list such as '
                           'smtpd_recipient_restrictions. Nothing was changed.' % name)
    return parse_items(out.strip()), False, classes


def _default_is_empty(runner, tx, name):
    dummy, out, dummy2 = runner.run(['postconf', '-c', tx.scratch, '-d', '-h', '-x', name], what='postconf -d')
    return not out.strip()


def apply(runner, config_dir, name, owner, items, state='present', remove=None, allow_unknown=False,
          check_mode=False, check=True, backup_func=None, mover=None, want_diff=False, exclusive=False):
    """Bring the contribution of ``owner`` to list ``name`` to ``state``; see the module docs.

    With ``exclusive`` the list becomes :func:`composed` of the new ownership record (items nobody
    owns are dropped). main.cf and the ownership record are installed all-or-nothing.

    Returns a result dict (``changed``, ``value``, ``items``, ``owned``, ``diff``, ``backup_file``,
    ``warnings``). Raises PostfixError before anything is written for bad input.
    """
    check_name(name)
    if not isinstance(owner, str) or not OWNER_RE.match(owner):
        raise PostfixError('owner must be a short name such as "anti_relay" or "postgrey" (letters, digits, '
                           '"_", "." and "-"); got %r. Nothing was changed.' % (owner,))
    items = normalize_items(items, 'items')
    remove = normalize_items(remove, 'remove')
    both = [i for i in remove if i in items]
    if both:
        raise PostfixError('%s is both in items and in remove. Nothing was changed.' % ', '.join(both))
    present = state == 'present'
    result = {'changed': False, 'warnings': []}
    with ConfigTransaction(runner, config_dir, mover=mover) as tx:
        # Read the record under the transaction's lock, so that concurrent owners do not lose updates.
        record = load_state(config_dir)
        current, explicit, classes = _current(runner, tx, name)
        if present:
            check_known(items, classes, allow_unknown)
        new_items, new_record, conflicts = compose(current, owner, items, remove, record, name, present)
        if exclusive:
            new_items = composed(new_record, name)
        for item in conflicts:
            result['warnings'].append('"%s" stays in %s: another owner (%s) contributes it.' % (
                item, name, ', '.join(sorted(o for o, i in record.get(name, {}).items() if item in i and o != owner))))

        if new_items != current:
            if new_items:
                runner.run(['postconf', '-c', tx.scratch, '-e', '%s=%s' % (name, render(new_items))],
                           what='postconf -e')
            elif explicit and _default_is_empty(runner, tx, name):
                runner.run(['postconf', '-c', tx.scratch, '-X', name], what='postconf -X')
            else:
                runner.run(['postconf', '-c', tx.scratch, '-e', '%s=' % name], what='postconf -e')
        main_changed = 'main.cf' in tx.changed_files()
        before_text = dump_state(record)
        after_text = dump_state(new_record)
        record_changed = before_text != after_text

        result['changed'] = main_changed or record_changed
        result['value'] = render(new_items)
        result['items'] = new_items
        result['owned'] = new_record.get(name, {}).get(owner, [])
        if want_diff:
            diffs = [tx.diff('main.cf')]
            if record_changed:
                old = before_text if os.path.exists(state_path(config_dir)) else ''
                diffs.append(make_diff(old, after_text, state_path(config_dir)))
            result['diff'] = diffs
        if check_mode or not result['changed']:
            return result
        if main_changed and backup_func is not None:
            backup_file = tx.backup('main.cf', backup_func)
            if backup_file:
                result['backup_file'] = backup_file
        # The record first: should the process die between the two, the record already holds the
        # owner's intent and the next run (or state=absent) finds what to put in or take out.
        tx.commit(check=check, extra=[(state_path(config_dir), after_text, 0o644)] if record_changed else [])
    return result
