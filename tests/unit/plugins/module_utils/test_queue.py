# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Queue parsing, selection, the guard and the postsuper call (fake runner recording its calls)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError, Runner
from ansible_collections.estafeta.postfix.plugins.module_utils.queue import (
    Selection,
    actionable,
    check_guard,
    count_by_queue,
    count_queue_files,
    manage,
    master_running,
    parse_duration,
    parse_postsuper_output,
    parse_queue_json,
    run_postsuper,
)

# Real "postqueue -j" output, Debian 12 (Postfix 3.7.11): mail to a relay that refuses
# connections ([127.0.0.1]:2525), one message then put on hold with postsuper -h.
BOOKWORM_JSON = (
    '{"queue_name": "deferred", "queue_id": "E4D841CC2F0", "arrival_time": 1795573510, "message_size": 277, '
    '"forced_expire": false, "sender": "spammer@bad.test", "recipients": [{"address": "victim1@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}, {"address": "victim2@example.org", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
    '{"queue_name": "deferred", "queue_id": "EB0F31CC3B4", "arrival_time": 1795573510, "message_size": 271, '
    '"forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "postmaster@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
    '{"queue_name": "hold", "queue_id": "E2AA31CC3B0", "arrival_time": 1795573510, "message_size": 279, '
    '"forced_expire": false, "sender": "alice@example.test", "recipients": [{"address": "bob@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
)
# Same on Debian 13 (Postfix 3.10.13), plus a message in maildrop without delay reason.
TRIXIE_JSON = (
    '{"queue_name": "deferred", "queue_id": "6D7171CC3C0", "arrival_time": 1795573526, "message_size": 271, '
    '"forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "postmaster@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
    '{"queue_name": "deferred", "queue_id": "69DB01CC3BF", "arrival_time": 1795573526, "message_size": 277, '
    '"forced_expire": false, "sender": "spammer@bad.test", "recipients": [{"address": "victim1@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}, {"address": "victim2@example.org", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
    '{"queue_name": "hold", "queue_id": "548FF1CC3C2", "arrival_time": 1795573526, "message_size": 279, '
    '"forced_expire": false, "sender": "alice@example.test", "recipients": [{"address": "bob@example.net", '
    '"delay_reason": "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused"}]}\n'
    '{"queue_name": "maildrop", "queue_id": "D817221A92C", "arrival_time": 1795570000, "message_size": 112, '
    '"forced_expire": false, "sender": "alice@example.test", "recipients": [{"address": "victim@example.net"}]}\n'
)
NOW = 1795573600
# Real postsuper stderr.
POSTSUPER_HOLD = ('postsuper: CC07821A819: placed on hold\npostsuper: D26ED21A915: placed on hold\n'
                  'postsuper: Placed on hold: 2 messages\n')
POSTSUPER_NONE = 'postsuper: warning: invalid mail queue id: bad/id\npostsuper: Deleted: 0 messages\n'


class FakeRunner(Runner):
    """Serves canned output and records every call (args and standard input)."""

    def __init__(self, queue_json=BOOKWORM_JSON, postsuper_err=None, rc=0):
        super(FakeRunner, self).__init__()
        self.queue_json = queue_json
        self.postsuper_err = postsuper_err
        self.rc = rc
        self.calls = []

    def which(self, name):
        return name

    def _run(self, args, data=None):
        self.calls.append((list(args), data))
        if args[0] == 'postqueue' and '-j' in args:
            return self.rc, self.queue_json, ''
        if args[0] == 'postsuper':
            if self.postsuper_err is not None:
                return 0, '', self.postsuper_err
            option = args[3]
            word = {'-d': 'removed', '-h': 'placed on hold', '-H': 'released from hold', '-r': 'requeued'}[option]
            ids = [line for line in (data or '').splitlines() if line]
            return 0, '', ''.join('postsuper: %s: %s\n' % (i, word) for i in ids)
        return 0, '', ''


@pytest.mark.parametrize('value, seconds', [
    (3600, 3600), ('3600', 3600), ('45s', 45), ('30m', 1800), ('2h', 7200), ('1d', 86400),
    ('1w', 604800), ('1h30m', 5400), (' 2H ', 7200), ('0', 0),
])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize('value', ['', 'soon', '2y', '-5', 'h2', True, '1.5h'])
def test_parse_duration_bad(value):
    with pytest.raises(PostfixError, match='older_than'):
        parse_duration(value)


@pytest.mark.parametrize('text', [BOOKWORM_JSON, TRIXIE_JSON])
def test_parse_real_output(text):
    messages = parse_queue_json(text, now=NOW)
    assert len(messages) == len(text.splitlines())
    spam = [m for m in messages if m['sender'] == 'spammer@bad.test'][0]
    assert spam['queue'] == 'deferred'
    assert spam['recipients'] == ['victim1@example.net', 'victim2@example.org']
    assert spam['delay_reasons'] == ['connect to 127.0.0.1[127.0.0.1]:2525: Connection refused']
    assert spam['size'] == 277
    assert spam['age'] == NOW - spam['arrival_time']
    assert spam['forced_expire'] is False
    assert set(m['queue'] for m in messages) >= set(['deferred', 'hold'])


def test_parse_duplicates_and_errors():
    line = BOOKWORM_JSON.splitlines()[0]
    moved = line.replace('"deferred"', '"active"')
    messages = parse_queue_json(line + '\n\n' + moved + '\n', now=NOW)
    assert len(messages) == 1 and messages[0]['queue'] == 'active'
    with pytest.raises(PostfixError, match='line 2'):
        parse_queue_json(line + '\n{not json\n')
    with pytest.raises(PostfixError, match='not a queue file'):
        parse_queue_json('[1, 2]\n')
    assert parse_queue_json('') == []


def test_count_by_queue():
    counts = count_by_queue(parse_queue_json(TRIXIE_JSON, now=NOW))
    assert counts == {'maildrop': 1, 'incoming': 0, 'active': 0, 'deferred': 2, 'hold': 1}


def ids(messages):
    return sorted(m['queue_id'] for m in messages)


@pytest.mark.parametrize('kwargs, expected', [
    ({}, ['548FF1CC3C2', '69DB01CC3BF', '6D7171CC3C0', 'D817221A92C']),
    ({'sender': ['SPAMMER@bad.test']}, ['69DB01CC3BF']),
    ({'sender': ['']}, ['6D7171CC3C0']),
    ({'sender': ['<>']}, ['6D7171CC3C0']),
    ({'sender': ['alice@example.test', 'spammer@bad.test']}, ['548FF1CC3C2', '69DB01CC3BF', 'D817221A92C']),
    ({'sender_regex': r'@bad\.test$'}, ['69DB01CC3BF']),
    ({'recipient': ['victim2@example.org']}, ['69DB01CC3BF']),
    ({'recipient_regex': r'@example\.net$'}, ['548FF1CC3C2', '69DB01CC3BF', '6D7171CC3C0', 'D817221A92C']),
    ({'recipient_regex': r'@example\.net$', 'queue': ['deferred']}, ['69DB01CC3BF', '6D7171CC3C0']),
    ({'queue_id': ['548FF1CC3C2', 'NOSUCHID']}, ['548FF1CC3C2']),
    ({'older_than': '30m'}, ['D817221A92C']),
    ({'older_than': 60}, ['548FF1CC3C2', '69DB01CC3BF', '6D7171CC3C0', 'D817221A92C']),
    ({'sender': ['alice@example.test'], 'queue': ['hold']}, ['548FF1CC3C2']),
])
def test_select(kwargs, expected):
    messages = parse_queue_json(TRIXIE_JSON, now=NOW)
    selection = Selection(**kwargs)
    assert ids(selection.select(messages)) == expected
    assert selection.empty() == (not kwargs)


def test_selection_errors():
    with pytest.raises(PostfixError, match='sender_regex'):
        Selection(sender_regex='(unclosed')
    with pytest.raises(PostfixError, match='recipient_regex'):
        Selection(recipient_regex='[a-')
    with pytest.raises(PostfixError, match="Unknown queue 'bounce'"):
        Selection(queue=['bounce'])
    assert Selection(queue_id=['A', 'B']).unmatched_ids(parse_queue_json(BOOKWORM_JSON)) == ['A', 'B']


def test_actionable():
    messages = parse_queue_json(TRIXIE_JSON, now=NOW)
    assert ids(actionable('release', messages)) == ['548FF1CC3C2']
    assert ids(actionable('hold', messages)) == ['69DB01CC3BF', '6D7171CC3C0']
    assert ids(actionable('requeue', messages)) == ['548FF1CC3C2', '69DB01CC3BF', '6D7171CC3C0']
    assert len(actionable('delete', messages)) == 4


def test_guard():
    messages = parse_queue_json(BOOKWORM_JSON, now=NOW)
    with pytest.raises(PostfixError, match='without a selector'):
        check_guard('delete', Selection(), messages, 3, False)
    with pytest.raises(PostfixError, match='all 3 queued messages.*recipient_regex=example'):
        check_guard('delete', Selection(recipient_regex='example'), messages, 3, False)
    # allowed: allow_all, explicit ids, a partial selection, a queue of one message, listing
    check_guard('delete', Selection(), messages, 3, True)
    check_guard('delete', Selection(queue_id=[m['queue_id'] for m in messages]), messages, 3, False)
    check_guard('delete', Selection(sender=['x']), messages[:1], 3, False)
    check_guard('delete', Selection(sender=['x']), messages[:1], 1, False)
    check_guard('list', Selection(), messages, 3, False)
    with pytest.raises(PostfixError, match='without a selector'):
        check_guard('release', Selection(), [], 0, False)


def test_parse_postsuper_output():
    assert parse_postsuper_output(POSTSUPER_HOLD) == (['CC07821A819', 'D26ED21A915'], 2)
    assert parse_postsuper_output(POSTSUPER_NONE) == ([], 0)
    assert parse_postsuper_output('') == ([], None)


def test_run_postsuper_one_call_with_ids_on_stdin():
    runner = FakeRunner()
    queue_ids = ['%011X' % i for i in range(5000)]
    done = run_postsuper(runner, '/etc/postfix', 'delete', queue_ids)
    assert done == queue_ids
    assert len(runner.calls) == 1
    args, data = runner.calls[0]
    assert args == ['postsuper', '-c', '/etc/postfix', '-d', '-', 'maildrop', 'incoming', 'active', 'deferred', 'hold']
    assert data.splitlines() == queue_ids


def test_run_postsuper_summary_only():
    runner = FakeRunner(postsuper_err='postsuper: Requeued: 1 message\n')
    assert run_postsuper(runner, '/etc/postfix', 'requeue', ['A1', 'B2']) == ['A1']


def test_run_postsuper_failure():
    class Failing(FakeRunner):
        def _run(self, args, data=None):
            return 1, '', 'postsuper: fatal: use of this command is reserved for the superuser\n'
    with pytest.raises(PostfixError, match='reserved for the superuser') as exc:
        run_postsuper(Failing(), '/etc/postfix', 'hold', ['A1'])
    assert exc.value.details['rc'] == 1


def test_manage_list_changes_nothing():
    runner = FakeRunner(TRIXIE_JSON)
    res = manage(runner, '/etc/postfix', 'list', Selection(sender=['spammer@bad.test']), now=NOW)
    assert res['changed'] is False and ids(res['messages']) == ['69DB01CC3BF'] and res['count'] == 1
    assert res['total'] == 4 and res['queues']['deferred'] == 2
    assert [c[0][0] for c in runner.calls] == ['postqueue']


@pytest.mark.parametrize('check_mode', [True, False])
def test_manage_delete_by_sender(check_mode):
    runner = FakeRunner(TRIXIE_JSON)
    res = manage(runner, '/etc/postfix', 'delete', Selection(sender=['spammer@bad.test']), check_mode=check_mode, now=NOW)
    assert res['changed'] is True
    assert res['affected'] == ['69DB01CC3BF'] and ids(res['messages']) == ['69DB01CC3BF']
    postsuper = [c for c in runner.calls if c[0][0] == 'postsuper']
    if check_mode:
        assert postsuper == []
    else:
        assert len(postsuper) == 1 and postsuper[0][1] == '69DB01CC3BF\n'


def test_manage_release_only_held():
    runner = FakeRunner(TRIXIE_JSON)
    res = manage(runner, '/etc/postfix', 'release', Selection(sender=['alice@example.test']), now=NOW)
    assert res['affected'] == ['548FF1CC3C2'] and res['unaffected'] == ['D817221A92C']
    res = manage(FakeRunner(TRIXIE_JSON), '/etc/postfix', 'release', Selection(sender=['spammer@bad.test']), now=NOW)
    assert res['changed'] is False and res['affected'] == []


def test_manage_guard_calls_no_postsuper():
    runner = FakeRunner(TRIXIE_JSON)
    with pytest.raises(PostfixError, match='without a selector'):
        manage(runner, '/etc/postfix', 'delete', Selection(), now=NOW)
    with pytest.raises(PostfixError, match='matches every message'):
        manage(runner, '/etc/postfix', 'hold', Selection(older_than=1), now=NOW)
    assert all(c[0][0] != 'postsuper' for c in runner.calls)
    res = manage(runner, '/etc/postfix', 'delete', Selection(), allow_all=True, now=NOW)
    assert len(res['affected']) == 4


@pytest.mark.parametrize('check_mode', [True, False])
def test_manage_flush(check_mode):
    runner = FakeRunner(BOOKWORM_JSON)
    res = manage(runner, '/etc/postfix', 'flush', check_mode=check_mode, now=NOW)
    assert res['changed'] is True and ids(res['messages']) == ['E4D841CC2F0', 'EB0F31CC3B4']
    flushed = [c for c in runner.calls if c[0][:4] == ['postqueue', '-c', '/etc/postfix', '-f']]
    assert len(flushed) == (0 if check_mode else 1)
    held_only = '\n'.join(line for line in BOOKWORM_JSON.splitlines() if '"hold"' in line)
    runner = FakeRunner(held_only)
    res = manage(runner, '/etc/postfix', 'flush', now=NOW)
    assert res['changed'] is False and len(runner.calls) == 1
    with pytest.raises(PostfixError, match='takes no selector'):
        manage(runner, '/etc/postfix', 'flush', Selection(sender=['a@b.c']), now=NOW)


def test_manage_postqueue_failure():
    runner = FakeRunner(rc=69)
    with pytest.raises(PostfixError, match='postqueue -j failed'):
        manage(runner, '/etc/postfix', 'list')
    with pytest.raises(PostfixError, match="Unknown action"):
        manage(runner, '/etc/postfix', 'purge')


def test_count_queue_files(tmp_path):
    spool = tmp_path / 'spool'
    for path in ['deferred/A/A1', 'deferred/B/B1', 'deferred/B/B2', 'hold/H1', 'maildrop/M1', 'bounce/A1']:
        full = spool / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(u'x')
    (spool / 'active').mkdir()
    assert count_queue_files(str(spool)) == {'maildrop': 1, 'incoming': 0, 'active': 0, 'deferred': 3, 'hold': 1}


def test_master_running(tmp_path):
    spool = tmp_path / 'spool'
    (spool / 'pid').mkdir(parents=True)
    assert master_running(str(spool)) is False
    (spool / 'pid' / 'master.pid').write_text(u'%10d\n' % os.getpid())
    assert master_running(str(spool)) is True
    (spool / 'pid' / 'master.pid').write_text(u'%d\n' % (2 ** 22 + 1))
    assert master_running(str(spool)) is False
    (spool / 'pid' / 'master.pid').write_text(u'garbage')
    assert master_running(str(spool)) is False
