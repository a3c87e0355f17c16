# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read the Postfix mail queue as data and act on selected messages (private to this collection).

* :func:`read_queue` runs ``postqueue -j`` and :func:`parse_queue_json` turns its output into
  message dicts;
* :func:`select_messages` applies the selectors (queue IDs, sender, recipient, regular
  expressions, age, queue name); :func:`check_guard` refuses selections that would hit every
  message by accident;
* :func:`run_postsuper` hands the queue IDs to ``postsuper -d/-h/-H/-r -`` on standard input,
  so any number of messages costs one command;
* :func:`manage` ties them together for the ``postqueue`` module;
* :func:`master_running` and :func:`count_queue_files` tell the queue size without the mail
  system (used by ``postfix_info``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import time

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError

# The queues postqueue -j lists, in the order mail goes through them.
QUEUES = ('maildrop', 'incoming', 'active', 'deferred', 'hold')
ACTIONS = ('list', 'flush', 'hold', 'release', 'requeue', 'delete')

# action -> (postsuper option, queues it is applied to, word postsuper logs per message)
POSTSUPER = {
    'delete': ('-d', ('maildrop', 'incoming', 'active', 'deferred', 'hold'), 'removed'),
    'hold': ('-h', ('incoming', 'active', 'deferred'), 'placed on hold'),
    'release': ('-H', ('hold',), 'released from hold'),
    'requeue': ('-r', ('incoming', 'active', 'deferred', 'hold'), 'requeued'),
}
# The summary line postsuper prints after the per-message lines.
_SUMMARY_RE = re.compile(r'^postsuper: (Deleted|Placed on hold|Released from hold|Requeued): (\d+) messages?$')
_DONE_RE = re.compile(r'^postsuper: ([0-9A-Za-z]+): (removed|placed on hold|released from hold|requeued)$')

# Postfix shows the null sender (bounces) as MAILER-DAEMON.
NULL_SENDERS = ('', '<>', 'mailer-daemon')
_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_DURATION_RE = re.compile(r'^(?:(\d+)\s*([smhdw]))+$')
_DURATION_PART_RE = re.compile(r'(\d+)\s*([smhdw])')


def parse_duration(value, what='older_than'):
    """``3600``, ``'3600'``, ``'45s'``, ``'30m'``, ``'2h'``, ``'1d'``, ``'1w'``, ``'1h30m'`` -> seconds."""
    if isinstance(value, bool):
        raise PostfixError('%s must be a number of seconds or a duration such as "30m", "2h", "1d"; got %r.' % (what, value))
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            compact = re.sub(r'\s+', '', text)
            if not _DURATION_RE.match(compact):
                raise PostfixError('%s must be a number of seconds or a duration such as "30m", "2h", "1d" or '
                                   '"1h30m" (units s, m, h, d, w); got %r.' % (what, value))
            seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION_PART_RE.findall(compact))
    if seconds < 0:
        raise PostfixError('%s must not be negative; got %r.' % (what, value))
    return seconds


# ---------------------------------------------------------------------------------------------
# Reading the queue
# ---------------------------------------------------------------------------------------------

def normalize_message(obj, now):
    """One ``postqueue -j`` object -> the message dict the modules return."""
    recipients = []
    reasons = []
    for rcpt in obj.get('recipients') or []:
        if not isinstance(rcpt, dict):
            continue
        recipients.append(str(rcpt.get('address', '')))
        reason = rcpt.get('delay_reason')
        if reason and reason not in reasons:
            reasons.append(reason)
    arrival = int(obj.get('arrival_time') or 0)
    return {
        'queue_id': str(obj.get('queue_id', '')),
        'queue': str(obj.get('queue_name', '')),
        'arrival_time': arrival,
        'age': max(0, int(now - arrival)) if arrival else 0,
        'size': int(obj.get('message_size') or 0),
        'sender': str(obj.get('sender', '')),
        'recipients': recipients,
        'delay_reasons': reasons,
        'forced_expire': bool(obj.get('forced_expire', False)),
    }


def parse_queue_json(text, now=None):
    """Parse ``postqueue -j`` output (one JSON object per line) into a list of messages.

    The queue may change while it is listed, so a message can appear twice; the last
    occurrence wins and the order of first appearance is kept.
    """
    if now is None:
        now = time.time()
    messages = {}
    order = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise PostfixError('Cannot parse line %d of the "postqueue -j" output (%s): %r' % (lineno, exc, line[:200]))
        if not isinstance(obj, dict) or 'queue_id' not in obj:
            raise PostfixError('Line %d of the "postqueue -j" output is not a queue file object: %r' % (lineno, line[:200]))
        msg = normalize_message(obj, now)
        if msg['queue_id'] not in messages:
            order.append(msg['queue_id'])
        messages[msg['queue_id']] = msg
    return [messages[qid] for qid in order]


def read_queue(runner, config_dir, now=None):
    """The messages in the queue of the Postfix instance of ``config_dir`` (``postqueue -j``).

    As root, postqueue reads the queue directly when the mail system is down.
    """
    rc, out, err = runner.run(['postqueue', '-c', config_dir, '-j'], check=False)
    if rc != 0:
        raise PostfixError(
            'postqueue -j failed (rc=%d): %s. Is Postfix running (systemctl start postfix), and does the task '
            'run as root (become: true)?' % (rc, (err or out).strip().rstrip('.')),
            cmd=['postqueue', '-c', config_dir, '-j'], rc=rc, stdout=out, stderr=err)
    return parse_queue_json(out, now)


def count_by_queue(messages):
    counts = dict((name, 0) for name in QUEUES)
    for msg in messages:
        counts[msg['queue']] = counts.get(msg['queue'], 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------

def _compile(pattern, what):
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise PostfixError('%s %r is not a valid regular expression: %s. Nothing was changed.' % (what, pattern, exc))


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


class Selection:
    """The selectors of one request. Every given selector must match (AND); the items of a
    list selector are alternatives (OR)."""

    def __init__(self, queue_id=None, sender=None, sender_regex=None, recipient=None,
                 recipient_regex=None, older_than=None, queue=None):
        self.queue_ids = _as_list(queue_id) if queue_id else []
        self.senders = [s.strip().lower() for s in _as_list(sender)] if sender is not None else []
        self.sender_given = sender is not None and len(_as_list(sender)) > 0
        self.sender_regex = _compile(sender_regex, 'sender_regex') if sender_regex else None
        self.recipients = [r.strip().lower() for r in _as_list(recipient)] if recipient else []
        self.recipient_regex = _compile(recipient_regex, 'recipient_regex') if recipient_regex else None
        self.older_than = parse_duration(older_than) if older_than not in (None, '') else None
        self.queues = _as_list(queue) if queue else []
        for name in self.queues:
            if name not in QUEUES:
                raise PostfixError('Unknown queue %r: use one of %s.' % (name, ', '.join(QUEUES)))

    def empty(self):
        return not (self.queue_ids or self.sender_given or self.sender_regex or self.recipients
                    or self.recipient_regex or self.older_than is not None or self.queues)

    def describe(self):
        parts = []
        if self.queue_ids:
            parts.append('queue_id=%s' % ','.join(self.queue_ids))
        if self.sender_given:
            parts.append('sender=%s' % ','.join(self.senders))
        if self.sender_regex:
            parts.append('sender_regex=%s' % self.sender_regex.pattern)
        if self.recipients:
            parts.append('recipient=%s' % ','.join(self.recipients))
        if self.recipient_regex:
            parts.append('recipient_regex=%s' % self.recipient_regex.pattern)
        if self.older_than is not None:
            parts.append('older_than=%ds' % self.older_than)
        if self.queues:
            parts.append('queue=%s' % ','.join(self.queues))
        return ' '.join(parts) or 'no selector'

    def _sender_matches(self, sender):
        low = sender.lower()
        for wanted in self.senders:
            if wanted in NULL_SENDERS:
                if low in NULL_SENDERS:
                    return True
            elif wanted == low:
                return True
        return False

    def matches(self, msg):
        if self.queue_ids and msg['queue_id'] not in self.queue_ids:
            return False
        if self.queues and msg['queue'] not in self.queues:
            return False
        if self.sender_given and not self._sender_matches(msg['sender']):
            return False
        if self.sender_regex and not self.sender_regex.search(msg['sender']):
            return False
        rcpts = [r.lower() for r in msg['recipients']]
        if self.recipients and not any(r in self.recipients for r in rcpts):
            return False
        if self.recipient_regex and not any(self.recipient_regex.search(r) for r in msg['recipients']):
            return False
        if self.older_than is not None and msg['age'] <= self.older_than:
            return False
        return True

    def select(self, messages):
        return [m for m in messages if self.matches(m)]

    def unmatched_ids(self, messages):
        present = set(m['queue_id'] for m in messages)
        return [qid for qid in self.queue_ids if qid not in present]


def actionable(action, messages):
    """The selected messages that ``action`` would change (for example, release: only held ones)."""
    if action not in POSTSUPER:
        return list(messages)
    queues = POSTSUPER[action][1]
    return [m for m in messages if m['queue'] in queues]


def check_guard(action, selection, selected, total, allow_all):
    """Refuse a change that hits every message by accident, unless ``allow_all``.

    * no selector at all;
    * a selection without explicit queue IDs that matches every message of a queue holding
      two messages or more.
    """
    if allow_all or action not in POSTSUPER:
        return
    if selection.empty():
        raise PostfixError(
            'Refusing to %s without a selector: give queue_id, sender, sender_regex, recipient, recipient_regex, '
            'older_than or queue, or set allow_all=true to act on every message. Nothing was changed.' % action)
    if not selection.queue_ids and total >= 2 and len(selected) == total:
        raise PostfixError(
            'Refusing to %s all %d queued messages: the selection (%s) matches every message in the queue. '
            'Narrow the selection, name the messages with queue_id, or set allow_all=true. Nothing was changed.'
            % (action, total, selection.describe()))


# ---------------------------------------------------------------------------------------------
# Acting
# ---------------------------------------------------------------------------------------------

def parse_postsuper_output(text):
    """``(ids, summary_count)`` from postsuper's stderr; summary_count is None when absent."""
    ids = []
    summary = None
    for line in text.splitlines():
        line = line.strip()
        match = _DONE_RE.match(line)
        if match:
            if match.group(1) not in ids:
                ids.append(match.group(1))
            continue
        match = _SUMMARY_RE.match(line)
        if match:
            summary = (summary or 0) + int(match.group(2))
    return ids, summary


def run_postsuper(runner, config_dir, action, queue_ids):
    """One ``postsuper -c DIR -X - QUEUES...`` call with the IDs on standard input.

    Returns the IDs postsuper reports as done.
    """
    option, queues, dummy = POSTSUPER[action]
    args = ['postsuper', '-c', config_dir, option, '-'] + list(queues)
    data = ''.join('%s\n' % qid for qid in queue_ids)
    rc, out, err = runner.run(args, data=data, check=False)
    if rc != 0:
        raise PostfixError('postsuper %s failed (rc=%d): %s. Does the task run as root (become: true)?'
                           % (option, rc, (err or out).strip().rstrip('.')),
                           cmd=args, rc=rc, stdout=out, stderr=err)
    done, summary = parse_postsuper_output(err + '\n' + out)
    if not done and summary:
        # Per-message lines missing (older or newer wording): trust the summary.
        done = list(queue_ids)[:summary]
    return done


def manage(runner, config_dir, action='list', selection=None, allow_all=False, check_mode=False, now=None):
    """Carry out one request of the ``postqueue`` module; returns the result dict."""
    if action not in ACTIONS:
        raise PostfixError('Unknown action %r: use one of %s.' % (action, ', '.join(ACTIONS)))
    selection = selection or Selection()
    if action == 'flush' and not selection.empty():
        raise PostfixError(
            'action=flush acts on the whole queue (postqueue -f) and takes no selector (%s). To retry selected '
            'messages now, use action=requeue with the selector.' % selection.describe())
    messages = read_queue(runner, config_dir, now)
    result = dict(changed=False, action=action, total=len(messages), queues=count_by_queue(messages))

    if action == 'flush':
        deferred = [m for m in messages if m['queue'] == 'deferred']
        result.update(messages=deferred, count=len(deferred), changed=bool(deferred),
                      affected=[m['queue_id'] for m in deferred])
        if deferred and not check_mode:
            runner.run(['postqueue', '-c', config_dir, '-f'],
                       what='postqueue -f (is Postfix running? systemctl start postfix)')
        return result

    selected = selection.select(messages)
    result['unmatched_queue_ids'] = selection.unmatched_ids(messages)
    if action == 'list':
        result.update(messages=selected, count=len(selected))
        return result

    check_guard(action, selection, selected, len(messages), allow_all)
    todo = actionable(action, selected)
    result.update(messages=todo, count=len(todo), affected=[m['queue_id'] for m in todo])
    result['unaffected'] = [m['queue_id'] for m in selected if m not in todo]
    result['changed'] = bool(todo)
    if todo and not check_mode:
        done = run_postsuper(runner, config_dir, action, [m['queue_id'] for m in todo])
        result['affected'] = done
        result['changed'] = bool(done)
    return result


# ---------------------------------------------------------------------------------------------
# Without the mail system
# ---------------------------------------------------------------------------------------------

def master_running(queue_directory):
    """Whether the Postfix master process of this queue directory runs (its pid file, like ``postfix status``)."""
    path = os.path.join(queue_directory, 'pid', 'master.pid')
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
    except (IOError, OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        # EPERM: the process exists but belongs to another user.
        return getattr(exc, 'errno', None) == 1
    return True


def count_queue_files(queue_directory):
    """``{queue: number of queue files}`` by walking the queue directories (needs root)."""
    counts = {}
    for name in QUEUES:
        top = os.path.join(queue_directory, name)
        if not os.path.isdir(top):
            counts[name] = 0
            continue
        errors = []
        total = 0
        for dummy, dummy2, files in os.walk(top, onerror=errors.append):
            total += len(files)
        if errors:
            raise PostfixError('Cannot read the queue directory %s: %s. Run as root (become: true).' % (top, errors[0]))
        counts[name] = total
    return counts
