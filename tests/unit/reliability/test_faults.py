# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults at module level: killed runs, a failing postfix check, concurrent runs, hand edits.

The modules run in their own processes (module_driver.py), as Ansible runs them, so that they
can be killed with SIGKILL at a precise point of a write, or at random moments, and run side by
side against one configuration directory. Runs that only need to prove the written bytes pass
``check=false`` and the test runs ``postfix check`` itself on the result: Postfix waits about two
seconds before it reads a file written in the last second, and the suite has to stay fast.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest

from ansible_collections.estafeta.postfix.plugins.modules import master_service, postconf_set, postmap_file, restrictions
from ansible_collections.estafeta.postfix.tests.unit.conftest import SBIN, snapshot
from ansible_collections.estafeta.postfix.tests.unit.reliability.conftest import (
    module_command,
    module_env,
    postconf_ok,
    run_process,
    settle,
    write_args,
)

MODULES = {m.__name__.rsplit('.', 1)[-1]: m for m in (postconf_set, postmap_file, master_service, restrictions)}
# What a killed run may leave behind: its temporary files and the hidden hard links that keep the
# files it replaces until the change is complete (both invisible to Postfix).
STRAY_RE = re.compile(r'^\.(main\.cf|master\.cf|access|access\.db|estafeta-restrictions\.json)\.[A-Za-z0-9_]+\.(tmp|keep)$')
RECORD = 'estafeta-restrictions.json'


def postfix_check(conf):
    settle(conf)
    proc = subprocess.run([os.path.join(SBIN, 'postfix'), '-c', conf, 'check'], capture_output=True, text=True,
                          check=False, env={'LANG': 'C', 'PATH': os.environ.get('PATH', '')})
    return proc.returncode, (proc.stderr + proc.stdout).strip()


def query(conf, key, spec):
    proc = subprocess.run([os.path.join(SBIN, 'postmap'), '-c', conf, '-q', key, spec], capture_output=True, text=True,
                          check=False, env={'LANG': 'C', 'PATH': os.environ.get('PATH', '')})
    return proc.stdout.strip() if proc.returncode == 0 else None


def generic(names):
    """Stray temporary file names without their random part."""
    return sorted(re.sub(r'\.[A-Za-z0-9_]+\.(tmp|keep)$', r'.*.\1', n) for n in names)


def _fill(args, conf):
    return json.loads(json.dumps(args).replace('{conf}', conf))


@pytest.fixture
def work(tmp_path):
    """A directory for argument files, and the TMPDIR of the module processes."""
    path = tmp_path / 'work'
    path.mkdir()
    return str(path)


# ---------------------------------------------------------------- killed at a precise point

FAULT_ARGS = {
    'postconf_set': {'params': {'message_size_limit': 20480000, 'smtpd_banner': '$myhostname ESMTP after'}},
    'master_service': {'name': 'smtps', 'type': 'inet', 'private': 'n', 'chroot': 'y', 'command': 'smtpd',
                       'options': {'syslog_name': 'postfix/smtps', 'smtpd_tls_wrappermode': True}},
    'restrictions': {'name': 'smtpd_recipient_restrictions', 'owner': 'anti_relay',
                     'items': ['permit_mynetworks', 'reject_unauth_destination']},
    'postmap_file': {'path': '{conf}/access', 'type': 'hash', 'exclusive': False,
                     'entries': {'spam.example': 'REJECT', 'new.example': 'OK'}},
}
TARGET = {'postconf_set': 'main.cf', 'master_service': 'master.cf', 'restrictions': 'main.cf', 'postmap_file': 'access'}

KILLS = [
    ('F01', 'postconf_set', 'tmp_created', 'old',
     'postconf_set killed (SIGKILL) right after creating its temporary file next to main.cf'),
    ('F02', 'postconf_set', 'tmp_written', 'old',
     'postconf_set killed after writing the whole new main.cf into the temporary file, before the rename'),
    ('F03', 'postconf_set', 'renamed', 'new',
     'postconf_set killed right after the new main.cf was renamed into place, before postfix check'),
    ('F04', 'master_service', 'tmp_written', 'old',
     'master_service killed after writing the new master.cf into the temporary file, before the rename'),
    ('F05', 'master_service', 'renamed', 'new',
     'master_service killed right after the new master.cf was renamed into place, before postfix check'),
    ('F06', 'restrictions', 'renamed', 'old',
     'restrictions killed after installing its ownership record, before main.cf (the record goes first, so the '
     'owner\'s items are never in main.cf without their record)'),
    ('F07', 'postmap_file', 'renamed', 'new-db',
     'postmap_file killed between installing the new access.db and the new access source file'),
]


@pytest.mark.parametrize('case_id, module, fault, expect, what', [pytest.param(*k, id=k[0]) for k in KILLS])
def test_killed_at_a_precise_point(case_id, module, fault, expect, what, conf, work, case, run_module):
    case(case_id, what)
    before = snapshot(conf)
    args = dict(_fill(FAULT_ARGS[module], conf), config_dir=conf)
    rc, result, err = run_process(module, args, work, env={'ESTAFETA_FAULT': fault, 'ESTAFETA_FAULT_DIR': conf,
                                                           'TMPDIR': work})
    assert rc == -signal.SIGKILL, 'the process was not killed at %s: rc=%s %s %s' % (fault, rc, result, err[-500:])
    killed = snapshot(conf)
    strays = [n for n in killed if n not in before and not (module == 'restrictions' and n == RECORD)]
    assert all(STRAY_RE.match(n) for n in strays), 'unexpected files after the kill: %s' % strays
    if module == 'restrictions':
        assert b'anti_relay' in killed[RECORD], 'the ownership record was not written first'
    target = TARGET[module]
    db_answer = query(conf, 'new.example', 'hash:' + os.path.join(conf, 'access')) if module == 'postmap_file' else None

    recover_args = dict(args, check=False) if module != 'postmap_file' else args
    first = run_module(MODULES[module], recover_args)
    assert first.get('failed') is not True, first
    settle(conf)
    second = run_module(MODULES[module], recover_args)
    assert second.get('failed') is not True and second['changed'] is False, second
    final = snapshot(conf)

    if expect == 'old':
        assert killed[target] == before[target], '%s is not the old content after the kill' % target
        state = 'the old %s in full' % target
    elif expect == 'new':
        assert killed[target] == final[target], '%s is not the complete new content after the kill' % target
        state = 'the complete new %s' % target
    else:
        assert killed['access'] == before['access'], 'the access source changed although the kill came first'
        assert db_answer == 'OK', 'access.db does not answer for the new entry after the kill'
        state = 'the old access source with the complete new access.db'
    rc_check, out = postfix_check(conf)
    assert rc_check == 0, 'postfix check fails after the kill and the next run: %s' % out
    if module == 'postmap_file':
        assert query(conf, 'new.example', 'hash:' + os.path.join(conf, 'access')) == 'OK'
    if module == 'restrictions':
        with open(os.path.join(conf, RECORD)) as f:
            assert 'anti_relay' in f.read()
    case.evidence('after the kill: %s; stray files: %s; next run changed=%s, the one after changed=false; '
                  'postfix check passes' % (state, ', '.join(generic(strays)) or 'none', str(first['changed']).lower()))


def test_killed_during_rollback(conf, work, case, run_module):
    case('F08', 'postconf_set with a value postfix check rejects (message_size_limit=abc), killed while it puts the '
                'previous main.cf back')
    before = snapshot(conf)
    args = {'name': 'message_size_limit', 'value': 'abc', 'config_dir': conf}
    rc, result, err = run_process('postconf_set', args, work, env={'ESTAFETA_FAULT': 'rollback', 'ESTAFETA_FAULT_DIR': conf,
                                                                   'TMPDIR': work})
    assert rc == -signal.SIGKILL, (rc, result, err[-500:])
    killed = snapshot(conf)
    rc_n, out, dummy = postconf_ok(conf, '-n', 'message_size_limit')
    assert rc_n == 0 and out.strip() == 'message_size_limit = abc', 'main.cf is not the complete rejected content'
    assert killed['master.cf'] == before['master.cf']
    rc_check, dummy = postfix_check(conf)
    assert rc_check != 0
    fixed = run_module(postconf_set, {'name': 'message_size_limit', 'value': 10240000, 'config_dir': conf, 'check': False})
    assert fixed['changed'] is True
    rc_check, out = postfix_check(conf)
    assert rc_check == 0, out
    case.evidence('after the kill main.cf is the complete but rejected new file (message_size_limit = abc, postfix check '
                  'fails: the one window where a kill leaves an invalid configuration); the next run with a valid value '
                  'converges and postfix check passes')


def test_postfix_check_failure_rolls_back(conf, case, run_module):
    case('F09', 'postconf_set with a value that only postfix check rejects (message_size_limit=abc): installed, '
                'checked, rolled back')
    before = snapshot(conf)
    result = run_module(postconf_set, {'name': 'message_size_limit', 'value': 'abc', 'config_dir': conf})
    assert result.get('failed') is True and 'Postfix refuses the new configuration' in result['msg'], result
    assert 'message_size_limit' in result['msg']
    assert snapshot(conf) == before
    case.message(result['msg'])


# ---------------------------------------------------------------- killed at random moments

def _batch(letter, count=100, size=1000):
    return {'estafeta_fill_%03d' % i: '%s%03d-%s' % (letter, i, letter * size) for i in range(count)}


def test_random_kills(conf, work, case, run_module):
    kills = 30
    case('F10', 'postconf_set with a batch of 100 parameters (a 100 kB main.cf) killed with SIGKILL at %d random '
                'moments of its run' % kills)
    letters = 'abc'
    wanted = dict((letter, _batch(letter)) for letter in letters)
    contents = {}
    for letter in 'abca':
        result = run_module(postconf_set, {'params': wanted[letter], 'allow_unknown': True, 'check': False,
                                           'config_dir': conf})
        assert result['changed'] is True
        with open(os.path.join(conf, 'main.cf'), 'rb') as f:
            text = f.read()
        assert contents.setdefault(letter, text) == text, 'the same batch gives different bytes'
    master = snapshot(conf)['master.cf']
    rng = random.Random(20240917)
    tally = {'old': 0, 'new': 0, 'finished': 0}

    def spawn(number):
        # Started one step ahead, so that its imports overlap the run before it; it waits for its start file.
        target = letters[(number + 1) % 3]
        start_file = os.path.join(work, 'start-%d' % number)
        args_file = write_args(work, {'params': wanted[target], 'allow_unknown': True, 'check': False, 'config_dir': conf})
        env = module_env({'ESTAFETA_READY': '1', 'TMPDIR': work, 'ESTAFETA_START_FILE': start_file})
        proc = subprocess.Popen(module_command('postconf_set', args_file), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd='/')
        return proc, start_file, target

    calibration = 2
    durations = []
    upcoming = spawn(0)
    for number in range(kills + calibration):
        proc, start_file, target = upcoming
        with open(start_file, 'w'):
            pass
        line = proc.stderr.readline()
        assert line.strip() == 'ready', line + proc.stderr.read()
        started = time.time()
        upcoming = spawn(number + 1) if number + 1 < kills + calibration else None
        if number < calibration:
            # The first runs are not killed: they measure how long a run takes after its imports.
            proc.wait()
            durations.append(time.time() - started)
        else:
            time.sleep(rng.uniform(0, min(durations)))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
        with open(os.path.join(conf, 'main.cf'), 'rb') as f:
            text = f.read()
        assert text in contents.values(), 'main.cf is neither the old nor the new content after kill %d' % number
        if number < calibration:
            assert text == contents[target]
        elif proc.returncode == 0:
            tally['finished'] += 1
        else:
            assert proc.returncode == -signal.SIGKILL, 'run %d ended with %d, not by the kill' % (number, proc.returncode)
            tally['new' if text == contents[target] else 'old'] += 1
    # The kills must have landed in runs, not only after them: a case where every run finished
    # first would prove nothing about a kill.
    assert tally['old'] + tally['new'] > 0, 'no kill landed while a run was working: %r' % tally
    now = snapshot(conf)
    assert now['master.cf'] == master
    strays = [n for n in now if n not in ('main.cf', 'master.cf', 'access', 'access.db', 'header_checks.pcre')]
    assert all(STRAY_RE.match(n) for n in strays), strays
    final = run_module(postconf_set, {'params': wanted['b'], 'allow_unknown': True, 'check': False, 'config_dir': conf})
    assert final.get('failed') is not True
    settle(conf)
    again = run_module(postconf_set, {'params': wanted['b'], 'allow_unknown': True, 'check': False, 'config_dir': conf})
    assert again['changed'] is False
    rc_n, dummy, dummy2 = postconf_ok(conf, '-n')
    rc_check, out = postfix_check(conf)
    assert rc_n == 0 and rc_check == 0, out
    case.evidence('%d kills: main.cf was the old content in full %d times, the new content in full %d times, %d runs '
                  'finished first; never anything else. Stray temporary files: %d; postconf -n and postfix check '
                  'pass, the next run converges' % (kills, tally['old'], tally['new'], tally['finished'], len(strays)))


# ---------------------------------------------------------------- concurrent runs

def run_together(jobs, work, conf):
    """Start ``(module, args)`` jobs as processes that begin their work at the same moment."""
    start_file = os.path.join(work, 'go')
    env = module_env({'ESTAFETA_START_FILE': start_file, 'TMPDIR': work})
    procs = []
    for module, args in jobs:
        args_file = write_args(work, dict(args, config_dir=conf))
        procs.append(subprocess.Popen(module_command(module, args_file), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd='/'))
    deadline = time.time() + 60
    while time.time() < deadline:
        waiting = [n for n in os.listdir(work) if n.startswith('go.')]
        if len(waiting) >= len(procs) or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    with open(start_file, 'w'):
        pass
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        try:
            results.append(json.loads(out))
        except ValueError:
            results.append({'failed': True, 'msg': 'no JSON result (rc=%s): %s' % (proc.returncode, err[-500:])})
    return results


def lost(conf, missing, results):
    failed = [r.get('msg') for r in results if r.get('failed')]
    return 'failed runs: %s; lost updates (the run reported changed=true, the change is not in the file): %s' % (
        failed, ', '.join(missing))


def main_values(conf):
    rc, out, err = postconf_ok(conf, '-n')
    assert rc == 0, err
    return dict(line.split(' = ', 1) if ' = ' in line else (line.rstrip(' ='), '') for line in out.splitlines())


CONCURRENT_PARAMS = {
    'message_size_limit': '20480001', 'mailbox_size_limit': '51200002', 'delay_warning_time': '4h',
    'relayhost': '[relay.example]:587', 'bounce_queue_lifetime': '2d', 'maximal_queue_lifetime': '3d',
    'smtpd_helo_required': 'yes', 'disable_vrfy_command': 'yes',
}


def test_concurrent_postconf_set(conf, work, case):
    case('C01', '8 postconf_set runs at the same moment on one main.cf, each setting a different parameter')
    jobs = [('postconf_set', {'name': n, 'value': v, 'check': False}) for n, v in sorted(CONCURRENT_PARAMS.items())]
    results = run_together(jobs, work, conf)
    values = main_values(conf)
    missing = [n for n, v in CONCURRENT_PARAMS.items() if values.get(n) != v]
    assert not [r for r in results if r.get('failed')] and not missing, lost(conf, missing, results)
    case.evidence('main.cf parses and all 8 changes are in it')


SERVICES = ['relay%d' % i for i in range(6)]


def test_concurrent_master_service(conf, work, case):
    case('C02', '6 master_service runs at the same moment on one master.cf, each adding a different service')
    jobs = [('master_service', {'name': s, 'type': 'unix', 'command': 'smtp', 'check': False}) for s in SERVICES]
    results = run_together(jobs, work, conf)
    rc, out, err = postconf_ok(conf, '-M')
    assert rc == 0, err
    present = set(line.split()[0] for line in out.splitlines() if line.strip())
    missing = [s for s in SERVICES if s not in present]
    assert not [r for r in results if r.get('failed')] and not missing, lost(conf, missing, results)
    assert 'submission' in present
    case.evidence('master.cf parses and all 6 services are in it')


OWNERS = {'o1': ['permit_mynetworks'], 'o2': ['reject_unauth_destination'], 'o3': ['reject_non_fqdn_recipient'],
          'o4': ['reject_unknown_recipient_domain']}


def test_concurrent_restrictions(conf, work, case):
    case('C03', '4 restrictions runs at the same moment, 4 owners adding items to smtpd_recipient_restrictions')
    jobs = [('restrictions', {'name': 'smtpd_recipient_restrictions', 'owner': o, 'items': i, 'check': False})
            for o, i in sorted(OWNERS.items())]
    results = run_together(jobs, work, conf)
    value = main_values(conf).get('smtpd_recipient_restrictions', '')
    with open(os.path.join(conf, RECORD)) as f:
        record = json.load(f)
    text = json.dumps(record)
    missing = ['%s in main.cf' % i[0] for o, i in OWNERS.items() if i[0] not in value]
    missing += ['%s in the record' % o for o in OWNERS if '"%s"' % o not in text]
    assert not [r for r in results if r.get('failed')] and not missing, lost(conf, missing, results)
    case.evidence('smtpd_recipient_restrictions = %s; the ownership record lists all 4 owners' % value)


def test_concurrent_mixed(conf, work, case):
    case('C04', '7 runs of three modules at the same moment: 3 postconf_set, 2 master_service, 2 restrictions')
    params = dict(list(sorted(CONCURRENT_PARAMS.items()))[:3])
    jobs = [('postconf_set', {'name': n, 'value': v, 'check': False}) for n, v in params.items()]
    jobs += [('master_service', {'name': s, 'type': 'unix', 'command': 'smtp', 'check': False}) for s in SERVICES[:2]]
    jobs += [('restrictions', {'name': 'smtpd_recipient_restrictions', 'owner': o, 'items': OWNERS[o], 'check': False})
             for o in ('o1', 'o2')]
    results = run_together(jobs, work, conf)
    values = main_values(conf)
    rc, out, err = postconf_ok(conf, '-M')
    present = set(line.split()[0] for line in out.splitlines() if line.strip())
    missing = [n for n, v in params.items() if values.get(n) != v]
    missing += [s for s in SERVICES[:2] if s not in present]
    missing += [OWNERS[o][0] for o in ('o1', 'o2') if OWNERS[o][0] not in values.get('smtpd_recipient_restrictions', '')]
    assert not [r for r in results if r.get('failed')] and not missing, lost(conf, missing, results)
    case.evidence('main.cf and master.cf parse; all 7 changes are in them')


# ---------------------------------------------------------------- hand edits survive

def lines(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8').splitlines(True)


def unmanaged(text_lines, managed):
    """The lines that do not belong to a managed main.cf parameter (continuation lines follow their parameter)."""
    kept = []
    owner = None
    for line in text_lines:
        if line[:1] in (' ', '\t') and line.strip() and owner is not None:
            if owner in managed:
                continue
        else:
            match = re.match(r'^([A-Za-z0-9_.-]+)\s*=', line)
            owner = match.group(1) if match else None
            if owner in managed:
                continue
        kept.append(line)
    return kept


def twice(run_module, module, args, conf):
    first = run_module(module, args)
    assert first.get('failed') is not True and first['changed'] is True, first
    settle(conf)
    snap = snapshot(conf)
    second = run_module(module, args)
    assert second.get('failed') is not True and second['changed'] is False, second
    assert snapshot(conf) == snap


def test_hand_edits_main_cf_postconf_set(conf, case, run_module):
    case('H01', 'postconf_set sets, changes and removes parameters in a main.cf with comments, a commented-out '
                'setting and a hand-written multi-line list')
    path = os.path.join(conf, 'main.cf')
    before = lines(path)
    managed = {'message_size_limit', 'relayhost', 'smtpd_banner'}
    twice(run_module, postconf_set, {'params': {'message_size_limit': 20480000, 'relayhost': '[relay.example]:587',
                                                'smtpd_banner': '$myhostname ESMTP'}, 'check': False, 'config_dir': conf}, conf)
    twice(run_module, postconf_set, {'name': 'biff', 'state': 'absent', 'check': False, 'config_dir': conf}, conf)
    after = lines(path)
    managed.add('biff')
    assert unmanaged(after, managed) == unmanaged(before, managed), ''.join(difflib.unified_diff(before, after))
    assert '#message_size_limit = 1   (a commented-out experiment)\n' in after
    rc, out = postfix_check(conf)
    assert rc == 0, out
    changed = len([d for d in difflib.ndiff(before, after) if d[:2] in ('- ', '+ ')])
    case.evidence('every line but the %d lines of the managed parameters is byte-identical (comments, the '
                  'commented-out message_size_limit, the continuation lines of smtpd_client_restrictions); second '
                  'runs changed=false' % changed)


def _entry_span(text_lines, name):
    start = next(i for i, line in enumerate(text_lines) if line.split()[:1] == [name])
    end = start + 1
    while end < len(text_lines) and text_lines[end][:1] in (' ', '\t') and text_lines[end].strip():
        end += 1
    return start, end


def test_hand_edits_master_cf_overrides(conf, case, run_module):
    case('H02', 'postconf_set changes -o overrides of the hand-written submission service in master.cf')
    path = os.path.join(conf, 'master.cf')
    before = lines(path)
    twice(run_module, postconf_set, {'service': 'submission/inet', 'params': {'smtpd_sasl_auth_enable': True},
                                     'check': False, 'config_dir': conf}, conf)
    after = lines(path)
    b_start, b_end = _entry_span(before, 'submission')
    a_start, a_end = _entry_span(after, 'submission')
    assert before[:b_start] == after[:a_start] and before[b_end:] == after[a_end:]
    assert after[a_start - 1] == '# Local hand edit: submission for the office.\n'
    rc, out = postfix_check(conf)
    assert rc == 0, out
    case.evidence('only the submission entry changed (one -o line added); every other line of master.cf, with the '
                  'hand-written comment above the entry, is byte-identical; second run changed=false')


def test_hand_edits_master_cf_services(conf, case, run_module):
    case('H03', 'master_service adds smtps, changes the hand-written submission entry and removes relay in master.cf')
    path = os.path.join(conf, 'master.cf')
    before = lines(path)
    twice(run_module, master_service, {'name': 'smtps', 'type': 'inet', 'private': 'n', 'chroot': 'y', 'command': 'smtpd',
                                       'options': {'smtpd_tls_wrappermode': True}, 'check': False, 'config_dir': conf}, conf)
    twice(run_module, master_service, {'name': 'submission', 'type': 'inet', 'private': 'n', 'chroot': 'y',
                                       'command': 'smtpd', 'options': {'syslog_name': 'postfix/submission',
                                                                       'smtpd_tls_security_level': 'may'},
                                       'check': False, 'config_dir': conf}, conf)
    twice(run_module, master_service, {'name': 'relay', 'type': 'unix', 'state': 'absent', 'check': False,
                                       'config_dir': conf}, conf)
    after = lines(path)
    removed = [d[2:] for d in difflib.ndiff(before, after) if d.startswith('- ')]
    added = [d[2:] for d in difflib.ndiff(before, after) if d.startswith('+ ')]
    entry_names = ('smtps', 'submission', 'relay')

    def in_entries(line):
        return line.split()[:1] and (line.split()[0] in entry_names or line[:1] in (' ', '\t'))

    assert all(in_entries(line) for line in removed + added), ''.join(difflib.unified_diff(before, after))
    assert [line for line in before if line.startswith('#')] == [line for line in after if line.startswith('#')]
    rc, out = postfix_check(conf)
    assert rc == 0, out
    case.evidence('%d lines removed and %d added, all inside the three entries; every comment (Debian\'s commented-out '
                  'examples and the hand-written one) byte-identical; second runs changed=false' % (len(removed), len(added)))


def test_hand_edits_restrictions(conf, case, run_module):
    case('H04', 'restrictions adds an owner\'s items to smtpd_client_restrictions, which is hand-written over three lines')
    path = os.path.join(conf, 'main.cf')
    before = lines(path)
    twice(run_module, restrictions, {'name': 'smtpd_client_restrictions', 'owner': 'anti_relay',
                                     'items': ['reject_unauth_pipelining'], 'check': False, 'config_dir': conf}, conf)
    after = lines(path)
    managed = {'smtpd_client_restrictions'}
    assert unmanaged(after, managed) == unmanaged(before, managed), ''.join(difflib.unified_diff(before, after))
    value = main_values(conf)['smtpd_client_restrictions']
    assert 'reject_unknown_reverse_client_hostname' in value and 'reject_unauth_pipelining' in value
    case.evidence('only smtpd_client_restrictions changed, to "%s" (the hand-written items kept); every other line '
                  'byte-identical; second run changed=false' % value)


def test_hand_edits_table(conf, case, run_module):
    case('H05', 'postmap_file with exclusive=false adds an entry to a hand-written access table with a comment')
    path = os.path.join(conf, 'access')
    before = lines(path)
    twice(run_module, postmap_file, {'path': path, 'type': 'hash', 'exclusive': False, 'entries': {'new.example': 'OK'},
                                     'config_dir': conf}, conf)
    after = lines(path)
    assert after[:len(before)] == before and len(after) == len(before) + 1, ''.join(difflib.unified_diff(before, after))
    assert query(conf, 'new.example', 'hash:' + path) == 'OK' and query(conf, 'spam.example', 'hash:' + path) == 'REJECT'
    case.evidence('the comment and both hand-written entries are byte-identical, the new entry is appended; '
                  'postmap -q answers for old and new keys; second run changed=false')


# ---------------------------------------------------------------- failures half way, two files, links

def _chattr(flag, path):
    try:
        return subprocess.run(['chattr', flag, path], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def test_immutable_table_source(conf, case, run_module):
    case('F11', 'postmap_file changes a table whose source file is immutable (chattr +i): it used to replace the '
                'database, then crash with [Errno 1]; the next run with the old entries said ok')
    path = os.path.join(conf, 'access')
    if not _chattr('+i', path):
        pytest.skip('chattr +i is not supported on this file system')
    args = {'path': path, 'type': 'hash', 'exclusive': False, 'entries': {'spam.example': 'OK'}, 'config_dir': conf}
    try:
        before = snapshot(conf)
        result = run_module(postmap_file, args)
        assert result.get('failed') is True and 'immutable' in result['msg'], result
        assert snapshot(conf) == before
        assert query(conf, 'spam.example', 'hash:' + path) == 'REJECT'
    finally:
        _chattr('-i', path)
    again = run_module(postmap_file, dict(args, entries={'spam.example': 'REJECT'}))
    assert again.get('failed') is not True and again['changed'] is False, again
    case.message(result['msg'])
    case.evidence('source and database byte-identical after the failure, access.db still answers REJECT; a run with '
                  'the original entries: changed=false')


def test_immutable_ownership_record(conf, case, run_module):
    case('F12', 'restrictions adds an owner\'s items while its ownership record is immutable: main.cf used to change '
                'and the task fail, and a later state=absent said ok while the items stayed')
    run_module(restrictions, {'name': 'smtpd_recipient_restrictions', 'owner': 'base', 'check': False,
                              'items': ['permit_mynetworks', 'reject_unauth_destination'], 'config_dir': conf})
    path = os.path.join(conf, RECORD)
    if not _chattr('+i', path):
        pytest.skip('chattr +i is not supported on this file system')
    args = {'name': 'smtpd_recipient_restrictions', 'owner': 'postgrey', 'check': False,
            'items': ['check_policy_service inet:127.0.0.1:10023'], 'config_dir': conf}
    try:
        before = snapshot(conf)
        result = run_module(restrictions, args)
        assert result.get('failed') is True and 'immutable' in result['msg'], result
        assert snapshot(conf) == before
    finally:
        _chattr('-i', path)
    assert run_module(restrictions, args)['changed'] is True
    settle(conf)
    assert run_module(restrictions, dict(args, state='absent'))['changed'] is True
    settle(conf)
    rc, out, err = postconf_ok(conf, '-h', 'smtpd_recipient_restrictions')
    assert 'check_policy_service' not in out
    case.message(result['msg'])
    case.evidence('main.cf and the record byte-identical after the failure; once writable, the items go in and '
                  'state=absent takes them out again')


def test_hand_built_database_repaired(conf, case, run_module):
    case('H06', 'postmap_file after a hand "postmap" of another file over access.db (newer than the source, other '
                'content): freshness is judged by content')
    path = os.path.join(conf, 'access')
    other = os.path.join(conf, 'other')
    with open(other, 'w') as f:
        f.write('spam.example OK\nextra.example OK\n')
    subprocess.run([os.path.join(SBIN, 'postmap'), '-c', conf, 'hash:' + other], check=True)
    os.rename(other + '.db', path + '.db')
    os.unlink(other)
    args = {'path': path, 'type': 'hash', 'exclusive': False, 'entries': {'spam.example': 'REJECT'}, 'config_dir': conf}
    first = run_module(postmap_file, args)
    assert first['changed'] is True and first['rebuilt'] is True, first
    assert run_module(postmap_file, args)['changed'] is False
    assert query(conf, 'spam.example', 'hash:' + path) == 'REJECT' and query(conf, 'extra.example', 'hash:' + path) is None
    case.evidence('first run changed=true, rebuilt=true with the source unchanged; postmap -q spam.example answers '
                  'REJECT again and extra.example is gone; second run changed=false')


def test_exclusive_list_repaired(conf, case, run_module):
    case('H07', 'restrictions with exclusive=true after hand edits of the list: "permit" prepended, a multi-word item '
                'removed, the order reversed, the list emptied')
    items = {'base': ['permit_mynetworks', 'reject_unauth_destination'],
             'anti_relay': ['reject_rbl_client zen.spamhaus.org', 'permit_sasl_authenticated']}
    for owner, owned in items.items():
        run_module(restrictions, {'name': 'smtpd_recipient_restrictions', 'owner': owner, 'items': owned,
                                  'check': False, 'exclusive': True, 'config_dir': conf})
    settle(conf)
    rc, original, err = postconf_ok(conf, '-h', 'smtpd_recipient_restrictions')
    listed = original.strip().split(', ')
    assert 'reject_rbl_client zen.spamhaus.org' in listed
    for edit in ('permit, ' + original.strip(), ', '.join(i for i in listed if not i.startswith('reject_rbl_client')),
                 ', '.join(reversed(listed)), ''):
        subprocess.run([os.path.join(SBIN, 'postconf'), '-c', conf, '-e', 'smtpd_recipient_restrictions=' + edit],
                       check=True)
        settle(conf)
        args = {'name': 'smtpd_recipient_restrictions', 'owner': 'base', 'items': items['base'], 'check': False,
                'exclusive': True, 'config_dir': conf}
        assert run_module(restrictions, args)['changed'] is True
        settle(conf)
        assert run_module(restrictions, args)['changed'] is False
        assert postconf_ok(conf, '-h', 'smtpd_recipient_restrictions')[1] == original
    case.evidence('each edit undone by one call, the value identical to before it ("%s"); the second call '
                  'changed=false' % original.strip())


def test_symlinked_table_settles(conf, case, run_module, tmp_path):
    case('H08', 'postmap_file on a table whose source is a symbolic link to a file outside the configuration '
                'directory, with a mode (it used to report changed on every run and chmod through the link)')
    outside = tmp_path / 'shared'
    outside.mkdir()
    real = str(outside / 'access')
    path = os.path.join(conf, 'access')
    os.rename(path, real)
    os.symlink(real, path)
    args = {'path': path, 'type': 'hash', 'mode': '0640', 'entries': {'spam.example': 'REJECT'}, 'config_dir': conf}
    first = run_module(postmap_file, args)
    assert first['changed'] is True
    assert run_module(postmap_file, args)['changed'] is False
    assert os.path.islink(path) and os.readlink(path) == real
    assert oct(os.stat(real).st_mode & 0o777) == oct(0o640) == oct(os.stat(path + '.db').st_mode & 0o777)
    case.evidence('the link is followed: the file it points to is written and gets mode 0640, the link stays, the '
                  'database is built next to the link; second run changed=false')
