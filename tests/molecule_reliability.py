# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Record the reliability cases of a Molecule scenario for tests/reliability_report.py.

Shared by the testinfra verifiers of the scenarios that prove reliability cases (security,
stress): their tests/conftest.py imports this module, which gives them the ``case`` fixture
and the hooks below.

A test calls ``case(ID, WHAT)`` and then ``case.evidence(TEXT)`` with what it observed. Testinfra
runs each test once per host: the outcomes of one case are merged (a case fails when it fails on
any host) and the evidence is prefixed with the host. A case passes only when the call phase of
its test passed on a host and failed on none; every collected test that asks for ``case`` must
reach the end of its run: one that was interrupted (or never started) is listed as unfinished,
and the run counts as failed.

At the end of the run the cases are written to tests/output/reliability/molecule-<scenario>.json
in the collection, with the code they ran: the commit checked out, whether the files that make
up the run (CODE_PATHS and the scenario's directory) differed from it (``dirty``), the git tree
ids of roles/ and plugins/, and pytest's exit status.
"""

import datetime
import json
import os
import subprocess

import pytest

# The files whose state a recorded run stands for (besides molecule/<scenario>/).
CODE_PATHS = ['roles', 'plugins', 'molecule/shared', '.config/molecule', 'tests/molecule_reliability.py',
              'tests/molecule_helpers.py']

_RESULTS = {}
_NODES = {}
_EXPECTED = []
# node id -> the test it runs whatever the host (file, function, parameters but the host's)
_KEYS = {}


class Case:
    def __init__(self, node):
        self.node = node

    def __call__(self, case_id, what):
        self.node.user_properties.append(('case', case_id))
        self.node.user_properties.append(('what', what))

    def evidence(self, text, limit=400):
        text = ' '.join(str(text).split())
        if len(text) > limit:
            text = text[:limit - 3] + '...'
        self.node.user_properties.append(('evidence', text))


@pytest.fixture
def case(request):
    return Case(request.node)


def _host_of(nodeid):
    # test_x[docker://security-bookworm] or test_x[ansible://security-bookworm-...]
    if '[' not in nodeid:
        return ''
    param = nodeid.rsplit('[', 1)[1].rstrip(']')
    return param.split('://')[-1].split('-', 1)[-1].split('-')[0]


def test_key(item):
    """What identifies a test whatever host testinfra runs it on."""
    params = getattr(getattr(item, 'callspec', None), 'params', {})
    return '%s::%s%s' % (item.path, getattr(item, 'originalname', item.name),
                         sorted((k, repr(v)) for k, v in params.items() if k != '_testinfra_host'))


def pytest_collection_finish(session):
    """Every collected test that records a case is expected to finish."""
    del _EXPECTED[:]
    _KEYS.clear()
    for item in session.items:
        if 'case' in getattr(item, 'fixturenames', ()):
            _EXPECTED.append(item.nodeid)
            _KEYS[item.nodeid] = test_key(item)


def pytest_runtest_logreport(report):
    # How each test ended: skipped (in any phase, when nothing failed), failed (in any phase),
    # passed (its call phase passed). A test with no such end did not finish.
    node = _NODES.setdefault(report.nodeid, None)
    if report.failed:
        _NODES[report.nodeid] = 'failed'
    elif report.skipped and node != 'failed':
        _NODES[report.nodeid] = 'skipped'
    elif report.when == 'call' and report.passed and node is None:
        _NODES[report.nodeid] = 'passed'
    props = dict((k, v) for k, v in report.user_properties if k in ('case', 'what'))
    if 'case' not in props:
        return
    entry = _RESULTS.setdefault(props['case'], {'case': props['case'], 'what': props['what'], 'outcome': None,
                                                'evidence': [], 'failure': '', 'nodeids': []})
    host = _host_of(report.nodeid)
    if report.nodeid not in entry['nodeids']:
        entry['nodeids'].append(report.nodeid)
    for key, value in report.user_properties:
        if key == 'evidence':
            item = {'kind': 'evidence', 'text': ('%s: %s' % (host, value)) if host else value}
            if item not in entry['evidence']:
                entry['evidence'].append(item)
    if report.failed:
        entry['outcome'] = 'failed'
        text = getattr(report, 'longreprtext', '') or str(report.longrepr)
        lines = [line[2:].strip() for line in text.splitlines() if line.startswith('E ')]
        entry['failure'] = ('%s: ' % host if host else '') + (' '.join(lines[:3]) or text.strip()[-300:])[:300]
    elif report.skipped:
        if entry['outcome'] is None:
            entry['outcome'] = 'skipped'
    elif report.when == 'call' and report.passed and entry['outcome'] in (None, 'skipped'):
        entry['outcome'] = 'passed'


def git(root, *args):
    """Output of a git command in ``root``, or None when git or the repository is not there."""
    try:
        proc = subprocess.run(['git', '-C', root] + list(args), capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_state(root, paths):
    """The commit checked out in ``root``, whether ``paths`` differ from it, and the tree ids of roles/ and plugins/."""
    commit = git(root, 'rev-parse', 'HEAD')
    status = git(root, 'status', '--porcelain', '--untracked-files=all', '--', *paths)
    return {'commit': commit, 'dirty': status is None or status != '', 'dirty_files': (status or '').splitlines()[:20],
            'paths': list(paths),
            'trees': dict((p, git(root, 'rev-parse', 'HEAD:' + p)) for p in ('roles', 'plugins'))}


def cases_of(results, nodes, expected, keys=None):
    """The recorded cases and the expected tests that did not finish.

    A case fails when one of its tests did not finish, also on a host where it was interrupted
    before it could name its case: ``keys`` (node id -> test whatever the host) ties such a node
    to the case its test records on the other hosts.
    """
    keys = keys or {}
    unfinished = sorted(n for n in expected if nodes.get(n) is None)
    cases = []
    for entry in results.values():
        outcome = entry['outcome'] or 'failed'
        failure = entry['failure']
        mine = set(keys.get(n, n) for n in entry['nodeids'])
        stopped = [n for n in unfinished if n in entry['nodeids'] or keys.get(n, n) in mine]
        if stopped and outcome != 'failed':
            outcome = 'failed'
            failure = 'did not finish: %s' % ', '.join(stopped)
        elif entry['outcome'] is None:
            failure = failure or 'did not finish'
        cases.append(dict(entry, outcome=outcome, failure=failure))
    return cases, unfinished


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS and not _EXPECTED:
        return
    root = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    scenario = os.environ.get('MOLECULE_SCENARIO_NAME') or os.path.basename(str(session.config.rootpath))
    out_dir = os.path.join(root, 'tests', 'output', 'reliability')
    os.makedirs(out_dir, exist_ok=True)
    entries, unfinished = cases_of(_RESULTS, _NODES, _EXPECTED, _KEYS)
    cases = []
    for entry in entries:
        entry = dict(entry, scenario=scenario,
                     nodeid='molecule/%s: %s' % (scenario, ', '.join(sorted(set(n.split('[')[0] for n in entry['nodeids'])))))
        del entry['nodeids']
        # The same observation on every host is written once, prefixed with all of them.
        merged = []
        for item in entry['evidence']:
            host, sep, text = item['text'].partition(': ')
            same = [m for m in merged if m[1] == text] if sep else []
            if same:
                same[0][0].append(host)
            else:
                merged.append(([host], text) if sep else ([], item['text']))
        entry['evidence'] = [{'kind': 'evidence', 'text': ('%s: %s' % (', '.join(h), t)) if h else t} for h, t in merged]
        cases.append(entry)
    run = {'scenario': scenario,
           'finished': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
           'exitstatus': int(exitstatus), 'unfinished': unfinished,
           'cases': sorted(cases, key=lambda c: c['case'])}
    run.update(code_state(root, CODE_PATHS + ['molecule/' + scenario]))
    with open(os.path.join(out_dir, 'molecule-%s.json' % scenario), 'w') as f:
        json.dump(run, f, indent=1)
