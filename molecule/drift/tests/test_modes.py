# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the fast re-run path behaves in check mode, with it switched off, and with tags.

On the converged complete servers of this scenario (after test_drift.py):

- check mode on a converged host: every role ends early, nothing is reported changed;
- check mode after a hand edit: the edit is reported as a change, nothing is written (the edit and the
  records stay as they were), and a real run then repairs it;
- ``common_fast_rerun: false``: no role ends early, every task runs, nothing changes, no record is written;
- ``--tags postfix_base``: the base role runs its tagged tasks in full (no early end), no record is written;
  ``--skip-tags`` of a tag the roles do not use keeps the early end.
"""

import os
import re
import subprocess

import pytest
import testinfra

SERVERS = ['drift-bookworm', 'drift-trixie']
CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'converge.yml')
END = 'End here when the host is already as this role leaves it'
ROLES = ['anti_relay', 'base', 'content_filter', 'dkim', 'postgrey', 'postscreen', 'tls', 'virtual']


def playbook(*args):
    env = dict(os.environ)
    env.update({'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0'})
    proc = subprocess.run(['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], CONVERGE] + list(args),
                          capture_output=True, text=True, env=env, timeout=1200, check=False)
    out = proc.stdout + proc.stderr
    changed = dict((m.group(1), int(m.group(2))) for m in re.finditer(r'^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)', out, re.M))
    return proc.returncode, out, changed


def ended(out):
    """The roles whose early end was taken (the meta task printed no "skipping")."""
    found = set()
    for match in re.finditer(r'^TASK \[estafeta\.postfix\.(\w+) : %s\][^\n]*\n(.*?)(?=^TASK \[|^RUNNING HANDLER|^PLAY RECAP|\Z)'
                             % re.escape(END), out, re.M | re.S):
        if 'skipping:' not in match.group(2):
            found.add(match.group(1))
    return sorted(found)


def records(host):
    return host.check_output('stat -c "%%n %%Y" /var/lib/estafeta-postfix/records/*.json')


@pytest.fixture(autouse=True)
def servers_only(host):
    if host.backend.get_hostname() not in SERVERS:
        pytest.skip('the outside client plays no part here')


_RUN = {}


@pytest.fixture(scope='module')
def modes():
    if _RUN:
        return _RUN
    hosts = [testinfra.get_host('docker://' + s) for s in SERVERS]
    rc, out, changed = playbook()
    assert rc == 0 and set(changed.get(s) for s in SERVERS) == {0}, out[-3000:]
    _RUN['records'] = [records(h) for h in hosts]
    _RUN['check'] = playbook('--check')
    _RUN['fast_off'] = playbook('-e', 'common_fast_rerun=false')
    _RUN['tags'] = playbook('--tags', 'postfix_base')
    _RUN['skip_other'] = playbook('--skip-tags', 'some_other_tag')
    _RUN['records_after'] = [records(h) for h in hosts]
    _RUN['myhostname'] = [h.check_output('postconf -h myhostname') for h in hosts]
    for host in hosts:
        host.run_expect([0], 'postconf -e myhostname=checked.example.net')
    _RUN['check_edit'] = playbook('--check', '--diff')
    _RUN['after_check'] = [(h.check_output('postconf -h myhostname'), records(h)) for h in hosts]
    _RUN['repair'] = playbook()
    _RUN['repaired'] = [h.check_output('postconf -h myhostname') for h in hosts]
    return _RUN


def test_check_mode_on_a_converged_host(modes):
    rc, out, changed = modes['check']
    assert rc == 0, out[-3000:]
    assert [changed.get(s) for s in SERVERS] == [0, 0], out[-3000:]
    assert ended(out) == ROLES, ended(out)


def test_check_mode_reports_a_hand_edit_and_writes_nothing(host, modes):
    rc, out, changed = modes['check_edit']
    assert rc == 0, out[-3000:]
    assert all(changed.get(s, 0) > 0 for s in SERVERS), out[-3000:]
    assert 'base' not in ended(out)
    assert re.search(r'^-myhostname = checked\.example\.net$', out, re.M), 'no diff of the repair shown'
    index = SERVERS.index(host.backend.get_hostname())
    myhostname, recs = modes['after_check'][index]
    assert myhostname == 'checked.example.net', 'check mode wrote main.cf'
    assert recs == modes['records_after'][index], 'check mode wrote a record'
    rc, out, changed = modes['repair']
    assert rc == 0 and all(changed.get(s, 0) > 0 for s in SERVERS), out[-3000:]
    assert modes['repaired'][index] == modes['myhostname'][index] != 'checked.example.net'


def test_fast_rerun_switched_off(modes):
    rc, out, changed = modes['fast_off']
    assert rc == 0, out[-3000:]
    assert [changed.get(s) for s in SERVERS] == [0, 0], out[-3000:]
    assert ended(out) == [], 'a role ended early with common_fast_rerun false'
    assert re.search(r'^TASK \[estafeta\.postfix\.common : Read the converged-state records\][^\n]*\n(skipping: .*\n)+',
                     out, re.M), 'the records were read with common_fast_rerun false'
    assert 'TASK [estafeta.postfix.content_filter : Write the header, MIME header and body check tables]' in out


def test_tags_run_in_full_and_record_nothing(host, modes):
    rc, out, changed = modes['tags']
    assert rc == 0, out[-3000:]
    assert [changed.get(s) for s in SERVERS] == [0, 0], out[-3000:]
    assert 'TASK [estafeta.postfix.base : Set the main.cf parameters]' in out
    assert 'TASK [estafeta.postfix.base : Record the converged state]' not in out or \
        re.search(r'Record the converged state\][^\n]*\n(skipping: .*\n)+', out)
    rc, out, changed = modes['skip_other']
    assert rc == 0 and [changed.get(s) for s in SERVERS] == [0, 0], out[-3000:]
    assert ended(out) == ROLES, ended(out)
    index = SERVERS.index(host.backend.get_hostname())
    assert modes['records_after'][index] == modes['records'][index], 'a record was written by a run that changed nothing'
