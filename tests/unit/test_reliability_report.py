# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/reliability_report.py and the recorders of the reliability cases.

* The Molecule cases (verifier output, last recorded run) reach the page, with the commit they ran.
* A case passes only on its call phase's success; an interrupted or missing case is a failure.
* The committed record of the Molecule runs is complete and tied to the code of this checkout:
  this test fails when roles/ or plugins/ (or the other files a run stands for) changed since the
  commit the record was made from. Regenerate it: ``make molecule SCENARIOS=security``,
  ``make stress``, then ``python tests/reliability_report.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os
import subprocess
from types import SimpleNamespace

import pytest

from ansible_collections.estafeta.postfix.tests.unit.reliability import conftest as unit_recorder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load('reliability_report', 'tests/reliability_report.py')
recorder = _load('molecule_reliability', 'tests/molecule_reliability.py')

COMMIT = '0123456789abcdef0123456789abcdef01234567'
RUN = {'scenario': 'security', 'finished': '2026-01-01 00:00 UTC', 'commit': COMMIT, 'dirty': False,
       'exitstatus': 1, 'unfinished': [], 'paths': ['roles', 'plugins'], 'trees': {},
       'cases': [{'case': 'L01', 'what': 'load', 'outcome': 'failed', 'failure': 'trixie: 99 arrived', 'evidence': []},
                 {'case': 'S01', 'what': 'plain relay attempt', 'outcome': 'passed', 'failure': '',
                  'evidence': [{'kind': 'evidence', 'text': 'bookworm, trixie: 554 5.7.1 Relay access denied'}]}]}
# The cases the page must always list: every Molecule case (an expected case that a run lacks is
# kept as missing by the report, never dropped).
EXPECTED = {
    'security': set(['S%02d' % i for i in range(1, 16)] + ['M%02d' % i for i in range(1, 7)] + ['L01']),
    'stress': {'L02', 'L03'},
}


def test_fresh_output_is_recorded_and_rendered(tmp_path):
    out_dir = tmp_path / 'output'
    out_dir.mkdir()
    (out_dir / 'molecule-security.json').write_text(json.dumps(RUN))
    record = tmp_path / 'record.json'
    cases, problems = report.molecule_cases(str(out_dir), str(record))
    assert json.loads(record.read_text()) == {'security': RUN}
    assert problems == []
    assert [c['case'] for c in cases] == ['L01', 'S01']
    page = report.render(cases, {'postfix': '3.7', 'ansible': '2.19', 'commit': COMMIT, 'dirty': False})
    assert '| S01 | plain relay attempt | pass — bookworm, trixie: 554 5.7.1 Relay access denied — ' \
           '(molecule/security, 2026-01-01 00:00 UTC, commit 0123456789) |' in page
    assert '| L01 | load | **FAIL** — trixie: 99 arrived — (molecule/security, 2026-01-01 00:00 UTC, ' \
           'commit 0123456789) |' in page
    assert '## Relay abuse, TLS and secrets (Molecule)' in page
    assert 'commit 0123456789.' in page


def test_last_recorded_run_without_fresh_output(tmp_path):
    record = tmp_path / 'record.json'
    record.write_text(json.dumps({'security': RUN}))
    before = record.read_text()
    cases, problems = report.molecule_cases(str(tmp_path / 'missing'), str(record))
    assert sorted(c['case'] for c in cases) == ['L01', 'S01']
    assert problems == []
    assert record.read_text() == before


def test_a_case_missing_from_a_new_run_stays_on_the_page_as_failed(tmp_path):
    record = tmp_path / 'record.json'
    record.write_text(json.dumps({'security': RUN}))
    out_dir = tmp_path / 'output'
    out_dir.mkdir()
    newer = dict(RUN, finished='2026-01-02 00:00 UTC', cases=[RUN['cases'][1]])
    (out_dir / 'molecule-security.json').write_text(json.dumps(newer))
    cases, dummy = report.molecule_cases(str(out_dir), str(record))
    lost = [c for c in cases if c['case'] == 'L01']
    assert len(lost) == 1 and lost[0]['outcome'] == 'failed'
    assert lost[0]['failure'] == 'missing: the run of 2026-01-02 00:00 UTC has no result for this case'
    assert [c['case'] for c in json.loads(record.read_text())['security']['cases']] == ['L01', 'S01']


@pytest.mark.parametrize('change, problem', [
    ({'exitstatus': 2}, 'exited with status 2'),
    ({'unfinished': ['test_x[docker://security-trixie]']}, 'did not finish: test_x[docker://security-trixie]'),
    ({'commit': None}, 'recorded no commit'),
])
def test_an_incomplete_molecule_run_is_reported(tmp_path, change, problem):
    record = tmp_path / 'record.json'
    record.write_text(json.dumps({'security': dict(RUN, **change)}))
    dummy, problems = report.molecule_cases(str(tmp_path / 'missing'), str(record))
    assert len(problems) == 1 and problem in problems[0]


def test_unit_cases_that_did_not_report_are_missing():
    cases = [{'nodeid': 'tests/unit/reliability/test_a.py::test_one', 'case': 'B01', 'outcome': 'passed'}]
    expected = ['tests/unit/reliability/test_a.py::test_one', 'tests/unit/reliability/test_a.py::test_two']
    missing = report.missing_cases(cases, expected)
    assert [(m['nodeid'], m['outcome']) for m in missing] == [('tests/unit/reliability/test_a.py::test_two', 'failed')]
    assert report.run_problems(0, cases) is None
    assert 'status 2' in report.run_problems(2, cases)
    assert 'not a case' in report.run_problems(1, cases)
    assert report.run_problems(1, cases + missing) is None


def _report(nodeid, when, outcome, props=()):
    return SimpleNamespace(nodeid=nodeid, when=when, passed=outcome == 'passed', failed=outcome == 'failed',
                           skipped=outcome == 'skipped', user_properties=list(props), longrepr='E boom',
                           longreprtext='E boom')


CASE_PROPS = [('case', 'B01'), ('what', 'something')]


@pytest.mark.parametrize('phases, outcome', [
    ([('setup', 'passed'), ('call', 'passed'), ('teardown', 'passed')], 'passed'),
    # Interrupted: the call phase never reported (Ctrl-C, a killed worker).
    ([('setup', 'passed')], 'failed'),
    ([('setup', 'passed'), ('call', 'failed'), ('teardown', 'passed')], 'failed'),
    ([('setup', 'passed'), ('call', 'passed'), ('teardown', 'failed')], 'failed'),
    ([('setup', 'skipped'), ('teardown', 'passed')], 'skipped'),
])
def test_unit_recorder_passes_only_on_the_call_phase(phases, outcome):
    results = {}
    for when, result in phases:
        unit_recorder.record_report(results, _report('tests/unit/reliability/test_x.py::test_y', when, result,
                                                     CASE_PROPS if when == 'call' else ()))
    records = unit_recorder.case_records(results)
    assert [r['outcome'] for r in records] == [outcome]
    if len(phases) == 1:
        assert records[0]['failure'].startswith('did not finish')


def _feed(phases, keys=None):
    recorder._RESULTS.clear()
    recorder._NODES.clear()
    for nodeid, when, result, props in phases:
        recorder.pytest_runtest_logreport(_report(nodeid, when, result, props))
    expected = sorted(set(p[0] for p in phases))
    return recorder.cases_of(recorder._RESULTS, recorder._NODES, expected, keys)


def test_molecule_recorder_fails_a_case_interrupted_on_one_host():
    bookworm, trixie = 'test_x[docker://security-bookworm]', 'test_x[docker://security-trixie]'
    cases, unfinished = _feed([
        (bookworm, 'setup', 'passed', ()), (bookworm, 'call', 'passed', CASE_PROPS),
        (bookworm, 'teardown', 'passed', CASE_PROPS),
        # trixie's test started and was interrupted during its call, before it named its case.
        (trixie, 'setup', 'passed', ()),
    ], keys={bookworm: 'test_x', trixie: 'test_x'})
    assert unfinished == [trixie]
    assert [(c['case'], c['outcome']) for c in cases] == [('B01', 'failed')]
    assert cases[0]['failure'] == 'did not finish: ' + trixie


def test_molecule_recorder_passes_a_case_that_ran_everywhere():
    cases, unfinished = _feed([
        ('test_x[docker://security-%s]' % h, when, 'passed', CASE_PROPS)
        for h in ('bookworm', 'trixie') for when in ('setup', 'call', 'teardown')])
    assert unfinished == [] and [(c['case'], c['outcome']) for c in cases] == [('B01', 'passed')]


def test_molecule_recorder_ties_a_run_to_its_commit():
    state = recorder.code_state(ROOT, ['roles', 'plugins'])
    if state['commit'] is None:
        pytest.skip('not a git checkout')
    assert len(state['commit']) == 40
    assert set(state['trees']) == {'roles', 'plugins'} and all(state['trees'].values())
    assert isinstance(state['dirty'], bool)


# ---------------------------------------------------------------- the committed record

def _git(*args):
    try:
        proc = subprocess.run(['git', '-C', ROOT] + list(args), capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc


@pytest.fixture(scope='module')
def record():
    with open(report.MOLECULE_RECORD) as f:
        return json.load(f)


def test_committed_record_is_complete(record):
    """Every expected Molecule case has a pass mark from a complete, clean run of its scenario."""
    assert set(record) >= set(EXPECTED), sorted(record)
    for scenario, run in sorted(record.items()):
        assert report.molecule_problems(run) is None, report.molecule_problems(run)
        assert run['exitstatus'] == 0, (scenario, run['exitstatus'])
        assert run['dirty'] is False, '%s was recorded with uncommitted changes: %s' % (scenario, run.get('dirty_files'))
        ids = dict((c['case'], c['outcome']) for c in run['cases'])
        assert EXPECTED.get(scenario, set()) <= set(ids), (scenario, sorted(EXPECTED[scenario] - set(ids)))
        assert all(outcome == 'passed' for outcome in ids.values()), (scenario, ids)


def test_committed_record_ran_the_code_of_this_checkout(record):
    """roles/, plugins/ and the other files each run stands for are unchanged since its recorded commit."""
    if _git('rev-parse', '--git-dir') is None or _git('rev-parse', '--git-dir').returncode != 0:
        pytest.skip('not a git checkout: a record cannot be tied to code here')
    stale = []
    for scenario, run in sorted(record.items()):
        paths = run.get('paths') or ['roles', 'plugins']
        assert {'roles', 'plugins'} <= set(paths)
        known = _git('cat-file', '-e', run['commit'] + '^{commit}').returncode == 0
        if known:
            changed = _git('diff', '--name-only', run['commit'], '--', *paths).stdout.split()
        else:
            # The recorded commit is not in this repository (a squashed merge): compare the trees of
            # roles/ and plugins/ at HEAD with the recorded ones, and the working tree with HEAD.
            changed = ['%s/ (tree %s, recorded %s)' % (p, _git('rev-parse', 'HEAD:' + p).stdout.strip(), t)
                       for p, t in sorted(run['trees'].items()) if _git('rev-parse', 'HEAD:' + p).stdout.strip() != t]
            changed += _git('diff', '--name-only', 'HEAD', '--', 'roles', 'plugins').stdout.split()
        changed += _git('ls-files', '--others', '--exclude-standard', '--', *paths).stdout.split()
        if changed:
            stale.append('molecule/%s (recorded at %s): %s' % (scenario, run['commit'][:10], ', '.join(sorted(set(changed))[:10])))
    assert not stale, ('changed since the recorded Molecule run; run the scenario again and regenerate the page '
                       '(python tests/reliability_report.py): ' + '; '.join(stale))


def test_page_lists_every_molecule_case_with_its_commit(record):
    with open(report.OUTPUT) as f:
        page = f.read()
    for scenario, ids in sorted(EXPECTED.items()):
        commit = record[scenario]['commit'][:10]
        for case_id in sorted(ids):
            rows = [line for line in page.splitlines() if line.startswith('| %s |' % case_id)]
            assert len(rows) == 1, case_id
            assert '(molecule/%s, %s, commit %s)' % (scenario, record[scenario]['finished'], commit) in rows[0], rows[0]
