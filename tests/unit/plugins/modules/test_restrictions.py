# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import json
import os
import shutil
import stat
import time

import pytest

from ansible.module_utils import basic
from ansible_collections.estafeta.postfix.plugins.modules import restrictions
from ansible_collections.estafeta.postfix.tests.unit.conftest import postconf, snapshot

RCPT = 'smtpd_recipient_restrictions'
RELAY = 'smtpd_relay_restrictions'
STATE = 'estafeta-restrictions.json'

ANTI = ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination',
        'reject_non_fqdn_recipient', 'reject_unknown_recipient_domain', 'reject_rbl_client zen.spamhaus.org']
GREY = ['check_policy_service inet:127.0.0.1:10023']
BASE = ['permit_mynetworks', 'reject_unauth_destination']
EXPECTED = ('permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, reject_non_fqdn_recipient, '
            'reject_unknown_recipient_domain, reject_rbl_client zen.spamhaus.org, check_policy_service inet:127.0.0.1:10023')


def settle(config_dir):
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        os.utime(os.path.join(config_dir, name), (past, past))


def value(config_dir, name):
    """The value set in main.cf (postconf -n), or None."""
    settle(config_dir)
    out = postconf(config_dir, '-n', name)
    return out.partition(' = ')[2].strip() if out.strip() else None


def record(config_dir):
    with open(os.path.join(config_dir, STATE)) as f:
        return json.load(f)['lists']


def four_steps(run_module, args):
    """check mode -> changed, nothing written; real -> changed; both again -> unchanged."""
    config_dir = args['config_dir']
    before = snapshot(config_dir)
    first = run_module(restrictions, args, check_mode=True)
    assert not first.get('failed'), first
    assert first['changed'] is True
    assert snapshot(config_dir) == before
    real = run_module(restrictions, args)
    assert not real.get('failed'), real
    assert real['changed'] is True
    assert real['value'] == first['value']
    again = run_module(restrictions, args, check_mode=True)
    assert again['changed'] is False, again
    last = run_module(restrictions, args)
    assert last['changed'] is False, last
    assert last['value'] == real['value']
    return real


def contribute(run_module, config_dir, owner, items, name=RCPT, **extra):
    args = dict(config_dir=config_dir, name=name, owner=owner, items=items)
    args.setdefault('check', extra.pop('check', True))
    args.update(extra)
    result = run_module(restrictions, args)
    assert not result.get('failed'), result
    return result


def test_four_steps_and_content(run_module, postfix_dir):
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY))
    assert value(postfix_dir, RCPT) == 'check_policy_service inet:127.0.0.1:10023'
    assert result['items'] == GREY
    assert result['owned'] == GREY
    assert record(postfix_dir) == {RCPT: {'postgrey': GREY}}
    mode = stat.S_IMODE(os.stat(os.path.join(postfix_dir, STATE)).st_mode)
    assert mode == 0o644
    # main.cf diff and the record diff
    assert result['diff'][0]['after'].count('check_policy_service') == 1
    assert result['diff'][1]['before'] == ''


def test_all_orders_identical(run_module, tmp_path, postfix_dir):
    results = set()
    for index, perm in enumerate(itertools.permutations([('anti_relay', ANTI), ('postgrey', GREY), ('base', BASE)])):
        config_dir = str(tmp_path / ('order%d' % index))
        shutil.copytree(postfix_dir, config_dir)
        for owner, items in perm:
            # postfix check (about a second each) is covered elsewhere; this test is about composition.
            contribute(run_module, config_dir, owner, items, check=False)
        results.add((value(config_dir, RCPT), json.dumps(record(config_dir), sort_keys=True)))
        # Re-running every owner changes nothing.
        for owner, items in perm:
            again = run_module(restrictions, dict(config_dir=config_dir, name=RCPT, owner=owner, items=items, check=False))
            assert again['changed'] is False, (perm, again)
    assert len(results) == 1
    assert results.pop()[0] == EXPECTED


def test_fewer_items_drop_only_own(run_module, postfix_dir):
    for owner, items in (('anti_relay', ANTI), ('postgrey', GREY), ('base', BASE)):
        contribute(run_module, postfix_dir, owner, items)
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='anti_relay',
                                         items=['permit_sasl_authenticated']))
    # permit_mynetworks and reject_unauth_destination stay: base owns them too.
    assert value(postfix_dir, RCPT) == ('permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination, '
                                        'check_policy_service inet:127.0.0.1:10023')
    assert result['owned'] == ['permit_sasl_authenticated']


def test_hand_written_item_kept(run_module, postfix_dir):
    postconf(postfix_dir, '-e', '%s=reject_unauth_pipelining check_recipient_access pcre:/etc/postfix/rcpt '
                                'reject_unauth_destination' % RCPT)
    contribute(run_module, postfix_dir, 'postgrey', GREY)
    contribute(run_module, postfix_dir, 'anti_relay', ANTI)
    assert value(postfix_dir, RCPT) == (
        'permit_mynetworks, permit_sasl_authenticated, check_recipient_access pcre:/etc/postfix/rcpt, '
        'reject_unauth_destination, reject_unauth_pipelining, reject_non_fqdn_recipient, reject_unknown_recipient_domain, '
        'reject_rbl_client zen.spamhaus.org, check_policy_service inet:127.0.0.1:10023')
    # Withdrawing anti_relay keeps the hand-written items, even reject_unauth_destination it had listed.
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='anti_relay', state='absent'))
    assert value(postfix_dir, RCPT) == ('check_recipient_access pcre:/etc/postfix/rcpt, reject_unauth_pipelining, '
                                        'check_policy_service inet:127.0.0.1:10023')
    assert record(postfix_dir) == {RCPT: {'postgrey': GREY}}


def test_hand_written_item_claimed_then_dropped(run_module, postfix_dir):
    # An item the owner also lists becomes its item: withdrawing the owner removes it.
    postconf(postfix_dir, '-e', '%s=reject_unauth_destination' % RCPT)
    contribute(run_module, postfix_dir, 'base', BASE)
    contribute(run_module, postfix_dir, 'base', [], state='absent')
    assert value(postfix_dir, RCPT) is None


def test_state_absent_removes_parameter(run_module, postfix_dir):
    contribute(run_module, postfix_dir, 'postgrey', GREY)
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', state='absent'))
    # The default of smtpd_recipient_restrictions is empty: the line goes away.
    assert value(postfix_dir, RCPT) is None
    assert record(postfix_dir) == {}


def test_absent_without_record(run_module, postfix_dir):
    """Items given with state=absent are removed even when the ownership record was lost."""
    contribute(run_module, postfix_dir, 'postgrey', GREY)
    os.unlink(os.path.join(postfix_dir, STATE))
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY, state='absent'))
    assert result['changed'] is True
    assert value(postfix_dir, RCPT) is None


def test_relay_default_and_remove(run_module, postfix_dir):
    """Unset smtpd_relay_restrictions starts from its default; remove drops Debian's defer."""
    assert value(postfix_dir, RELAY) is None
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RELAY, owner='base',
                                         items=['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination'],
                                         remove=['defer_unauth_destination']))
    assert value(postfix_dir, RELAY) == 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination'
    assert result['owned'] == ['permit_mynetworks', 'permit_sasl_authenticated', 'reject_unauth_destination']


def test_relay_keeps_default_items(run_module, postfix_dir):
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RELAY, owner='x',
                                         items=['check_client_access cidr:/etc/postfix/clients']))
    assert value(postfix_dir, RELAY) == ('permit_mynetworks, permit_sasl_authenticated, check_client_access '
                                         'cidr:/etc/postfix/clients, defer_unauth_destination')
    assert result['items'][-1] == 'defer_unauth_destination'


def test_remove_conflict_warns(run_module, postfix_dir, monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, msg: warnings.append(msg))
    contribute(run_module, postfix_dir, 'base', BASE)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='other',
                                           remove=['reject_unauth_destination']))
    assert result['changed'] is False
    assert any('another owner (base)' in w for w in warnings), warnings
    assert value(postfix_dir, RCPT) == 'permit_mynetworks, reject_unauth_destination'


def test_restriction_class(run_module, postfix_dir):
    postconf(postfix_dir, '-e', 'smtpd_restriction_classes=greylist', 'greylist=check_policy_service inet:127.0.0.1:10023')
    four_steps(run_module, dict(config_dir=postfix_dir, name='greylist', owner='x', items=['reject_unauth_pipelining']))
    assert value(postfix_dir, 'greylist') == 'reject_unauth_pipelining, check_policy_service inet:127.0.0.1:10023'
    contribute(run_module, postfix_dir, 'y', ['greylist', 'permit_mynetworks'])
    assert value(postfix_dir, RCPT) == 'permit_mynetworks, greylist'


def test_guide_sender_acl(run_module, postfix_dir):
    """The guide's bare table in smtpd_sender_restrictions, kept next to a new item."""
    postconf(postfix_dir, '-e', 'smtpd_sender_restrictions=hash:/etc/postfix/access')
    contribute(run_module, postfix_dir, 'anti_relay', ['reject_non_fqdn_sender'], name='smtpd_sender_restrictions')
    assert value(postfix_dir, 'smtpd_sender_restrictions') == 'hash:/etc/postfix/access, reject_non_fqdn_sender'


def test_sorts_existing_list(run_module, postfix_dir):
    postconf(postfix_dir, '-e', '%s=check_policy_service inet:127.0.0.1:10023, reject_unauth_destination,'
                                'permit_mynetworks' % RCPT)
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='base', items=BASE))
    assert result['value'] == 'permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023'


def test_backup(run_module, postfix_dir):
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='base', items=BASE, backup=True))
    assert os.path.exists(result['backup_file'])


@pytest.mark.parametrize('args, message', [
    (dict(name=RCPT, owner='o', items=['reject_unauth_destinaton']), 'did you mean "reject_unauth_destination"'),
    (dict(name=RCPT, owner='o', items=['check_relay_domains']), 'use reject_unauth_destination'),
    (dict(name=RCPT, owner='o', items=['check_sender_access']), 'needs an argument'),
    (dict(name=RCPT, owner='o', items=['reject\nx']), 'newline'),
    (dict(name=RCPT, owner='bad owner', items=['reject']), 'owner must be'),
    (dict(name='smtpd_recipient_restriction', owner='o', items=['reject']), 'Unknown Postfix parameter'),
    (dict(name='bad name', owner='o', items=['reject']), 'Invalid Postfix parameter name'),
    (dict(name=RCPT, owner='o', items=['reject'], remove=['reject']), 'both in items and in remove'),
    (dict(name=RCPT, owner='o', items=['reject'], config_dir='/nonexistent'), 'does not exist'),
])
def test_bad_input(run_module, postfix_dir, args, message):
    contribute(run_module, postfix_dir, 'base', BASE)
    before = snapshot(postfix_dir)
    args.setdefault('config_dir', postfix_dir)
    result = run_module(restrictions, args)
    assert result.get('failed'), result
    assert message in result['msg']
    assert snapshot(postfix_dir) == before


def test_unknown_parameter_set_in_main_cf(run_module, postfix_dir):
    with open(os.path.join(postfix_dir, 'main.cf'), 'a') as f:
        f.write('my_restrictions = reject\n')
    before = snapshot(postfix_dir)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name='my_restrictions', owner='o', items=['reject']))
    assert result.get('failed')
    assert 'smtpd_restriction_classes' in result['msg']
    assert snapshot(postfix_dir) == before


def test_corrupt_record(run_module, postfix_dir):
    with open(os.path.join(postfix_dir, STATE), 'w') as f:
        f.write('[')
    before = snapshot(postfix_dir)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='o', items=['reject']))
    assert result.get('failed')
    assert 'not a valid ownership record' in result['msg']
    assert snapshot(postfix_dir) == before


def test_allow_unknown(run_module, postfix_dir):
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='o', items=['future_restriction'],
                                allow_unknown=True))
    assert value(postfix_dir, RCPT) == 'future_restriction'


def test_postfix_check_failure_rolls_back(run_module, postfix_dir, monkeypatch):
    from ansible_collections.estafeta.postfix.plugins.module_utils import common
    original = common.ModuleRunner._run

    def failing(self, args, data=None):
        if args[-1] == 'static:probe':
            return 1, '', 'postmap: fatal: simulated'
        return original(self, args, data=data)

    monkeypatch.setattr(common.ModuleRunner, '_run', failing)
    before = snapshot(postfix_dir)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='o', items=['reject']))
    assert result.get('failed')
    assert 'restored' in result['msg'] and 'postmap: fatal: simulated' in result['msg']
    assert snapshot(postfix_dir) == before


# ---------------------------------------------------------------- exclusive (B)

def _converge_three(run_module, config_dir, **extra):
    for owner, items in (('anti_relay', ANTI), ('postgrey', GREY), ('base', BASE)):
        contribute(run_module, config_dir, owner, items, check=False, **extra)
    return value(config_dir, RCPT)


def _hand_edit(config_dir, text):
    postconf(config_dir, '-e', '%s=%s' % (RCPT, text))
    settle(config_dir)


EDITS = {
    'prepend-permit': lambda v: 'permit, ' + v,
    'remove-multi-word-item': lambda v: v.replace('reject_rbl_client zen.spamhaus.org, ', ''),
    'reorder': lambda v: ', '.join(reversed(v.split(', '))),
    'emptied': lambda v: '',
    'unowned-item': lambda v: v.replace('reject_unauth_destination', 'reject_unauth_destination, reject_unauth_pipelining'),
}


@pytest.mark.parametrize('edit', sorted(EDITS))
def test_exclusive_repairs_any_hand_edit(run_module, postfix_dir, edit):
    """One exclusive call undoes the hand edit (the value is identical to before it); a second is a no-op."""
    original = _converge_three(run_module, postfix_dir)
    assert original == EXPECTED
    _hand_edit(postfix_dir, EDITS[edit](original))
    assert value(postfix_dir, RCPT) != original
    before_record = record(postfix_dir)
    # Any owner's call repairs the whole list, with its contribution unchanged.
    result = four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY,
                                         exclusive=True, check=False))
    assert value(postfix_dir, RCPT) == original == result['value']
    assert record(postfix_dir) == before_record


def test_non_exclusive_keeps_hand_items(run_module, postfix_dir):
    original = _converge_three(run_module, postfix_dir)
    _hand_edit(postfix_dir, 'permit, ' + original)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY, check=False))
    assert result['changed'] is True  # sorted: the terminal permit goes last, but it stays
    assert value(postfix_dir, RCPT) == original + ', permit'


def test_exclusive_is_the_composition_of_the_record(run_module, postfix_dir):
    from ansible_collections.estafeta.postfix.plugins.module_utils import restrictions as r
    _hand_edit(postfix_dir, 'reject_unauth_pipelining, check_recipient_access pcre:/etc/postfix/rcpt')
    for owner, items in (('postgrey', GREY), ('base', BASE), ('anti_relay', ANTI)):
        contribute(run_module, postfix_dir, owner, items, check=False, exclusive=True)
        assert value(postfix_dir, RCPT) == r.render(r.composed(r.load_state(postfix_dir), RCPT))
    assert value(postfix_dir, RCPT) == EXPECTED
    # Withdrawing an owner: its items go, except those another owner contributes.
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='anti_relay', state='absent',
                                exclusive=True, check=False))
    assert value(postfix_dir, RCPT) == 'permit_mynetworks, reject_unauth_destination, ' + GREY[0]
    # The last owner leaves: the list is empty and the parameter (empty by default) goes away.
    contribute(run_module, postfix_dir, 'base', [], state='absent', exclusive=True, check=False)
    contribute(run_module, postfix_dir, 'postgrey', [], state='absent', exclusive=True, check=False)
    assert value(postfix_dir, RCPT) is None


# ---------------------------------------------------------------- two files, one change (6)

def _chattr(flag, path):
    import subprocess
    try:
        return subprocess.run(['chattr', flag, path], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.parametrize('immutable', ['record', 'main.cf'])
def test_one_file_not_writable_changes_neither(run_module, postfix_dir, immutable):
    """The issue's case: with the ownership record not writable, main.cf used to change and the task fail;
    a later state=absent then said ok and the item stayed. Now neither file changes."""
    contribute(run_module, postfix_dir, 'base', BASE, check=False)
    target = os.path.join(postfix_dir, STATE if immutable == 'record' else 'main.cf')
    if not _chattr('+i', target):
        pytest.skip('chattr +i is not supported here')
    try:
        before = snapshot(postfix_dir)
        result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY))
        assert result.get('failed') is True, result
        assert target in result['msg'] and 'immutable' in result['msg']
        assert snapshot(postfix_dir) == before
    finally:
        _chattr('-i', target)
    assert GREY[0] not in (value(postfix_dir, RCPT) or '')
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY, check=False))
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', state='absent', check=False))
    assert GREY[0] not in value(postfix_dir, RCPT)


@pytest.mark.parametrize('step', range(1, 5))
def test_failing_rename_changes_neither(run_module, postfix_dir, monkeypatch, step):
    """A rename that fails at any point of the change (the record, main.cf, or while putting back) leaves both
    files byte-identical, or, if it fails only while putting back, says so."""
    contribute(run_module, postfix_dir, 'base', BASE, check=False)
    before = snapshot(postfix_dir)
    original = os.rename
    count = {'n': 0}

    def rename(src, dst, *a, **kw):
        if os.path.dirname(os.path.abspath(os.fsdecode(dst))) == postfix_dir:  # atomic_move passes bytes
            count['n'] += 1
            if count['n'] == step:
                raise OSError(5, 'Input/output error (injected)', dst)
        return original(src, dst, *a, **kw)

    monkeypatch.setattr(os, 'rename', rename)
    result = run_module(restrictions, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY))
    monkeypatch.setattr(os, 'rename', original)
    if step <= 2:  # the record's rename, then main.cf's
        assert result.get('failed') is True and 'injected' in result['msg'], result
        assert snapshot(postfix_dir) == before
    else:  # no third rename in a change that succeeds
        assert not result.get('failed'), result


def test_symlinked_record_is_followed(run_module, postfix_dir, tmp_path):
    """The ownership record a link to a file elsewhere: that file is written, the link stays, runs settle."""
    elsewhere = tmp_path / 'shared'
    elsewhere.mkdir()
    real = str(elsewhere / STATE)
    with open(real, 'w') as f:
        f.write('')
    link = os.path.join(postfix_dir, STATE)
    os.symlink(real, link)
    four_steps(run_module, dict(config_dir=postfix_dir, name=RCPT, owner='postgrey', items=GREY, check=False))
    assert os.path.islink(link) and os.readlink(link) == real
    with open(real) as f:
        assert json.load(f)['lists'] == {RCPT: {'postgrey': GREY}}


def test_milter_lists_compose_like_restriction_lists(run_module, postfix_dir):
    """A milter list, as the dkim role composes it: a milter written by hand is kept, the owner's milter
    (with its settings in braces) goes after it, another spelling of the owner's socket is taken out with
    ``remove``, and a changed socket replaces the old one."""
    signer = '{ inet:127.0.0.1:8891, default_action=accept }'
    postconf(postfix_dir, '-e', 'smtpd_milters=inet:127.0.0.1:9999, { inet:127.0.0.1:8891, default_action=tempfail }')
    args = dict(config_dir=postfix_dir, name='smtpd_milters', owner='dkim', items=[signer], allow_unknown=True,
                remove=['{ inet:127.0.0.1:8891, default_action=tempfail }'])
    result = four_steps(run_module, args)
    assert value(postfix_dir, 'smtpd_milters') == 'inet:127.0.0.1:9999, ' + signer
    assert result['items'] == ['inet:127.0.0.1:9999', signer] and result['owned'] == [signer]
    # Without allow_unknown the braces are refused as an unknown restriction.
    refused = run_module(restrictions, dict(args, items=['{ inet:127.0.0.1:8892, default_action=accept }'], allow_unknown=False))
    assert refused.get('failed') and 'Unknown restriction' in refused['msg'], refused
    # The milter moved to another port: the old item, recorded as the owner's, goes.
    moved = '{ inet:127.0.0.1:8892, default_action=accept }'
    four_steps(run_module, dict(args, items=[moved], remove=[]))
    assert value(postfix_dir, 'smtpd_milters') == 'inet:127.0.0.1:9999, ' + moved
    # Removed by hand: put back, after the hand-written milter.
    postconf(postfix_dir, '-e', 'smtpd_milters=inet:127.0.0.1:9999')
    four_steps(run_module, dict(args, items=[moved], remove=[]))
    assert value(postfix_dir, 'smtpd_milters') == 'inet:127.0.0.1:9999, ' + moved
