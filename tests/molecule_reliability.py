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
any host) and the evidence is prefixed with the host. At the end of the run the cases are written
to tests/output/reliability/<scenario>.json in the collection, where the report generator reads them.
"""

import datetime
import json
import os

import pytest

_RESULTS = {}


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


def pytest_runtest_logreport(report):
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
    elif report.when == 'call' and entry['outcome'] in (None, 'skipped'):
        entry['outcome'] = 'passed'


def pytest_sessionfinish(session):
    if not _RESULTS:
        return
    root = os.environ.get('MOLECULE_PROJECT_DIRECTORY') or os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    scenario = os.environ.get('MOLECULE_SCENARIO_NAME') or os.path.basename(str(session.config.rootpath))
    out_dir = os.path.join(root, 'tests', 'output', 'reliability')
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for entry in _RESULTS.values():
        entry = dict(entry, outcome=entry['outcome'] or 'skipped', scenario=scenario,
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
    with open(os.path.join(out_dir, 'molecule-%s.json' % scenario), 'w') as f:
        json.dump({'scenario': scenario, 'finished': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                   'cases': sorted(cases, key=lambda c: c['case'])}, f, indent=1)
