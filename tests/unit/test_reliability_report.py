# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/reliability_report.py: the Molecule cases (verifier output, last recorded run) reach the page."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SPEC = importlib.util.spec_from_file_location('reliability_report', os.path.join(ROOT, 'tests', 'reliability_report.py'))
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)

RUN = {'scenario': 'security', 'finished': '2026-01-01 00:00 UTC',
       'cases': [{'case': 'S01', 'what': 'plain relay attempt', 'outcome': 'passed', 'failure': '',
                  'evidence': [{'kind': 'evidence', 'text': 'bookworm, trixie: 554 5.7.1 Relay access denied'}]},
                 {'case': 'L01', 'what': 'load', 'outcome': 'failed', 'failure': 'trixie: 99 arrived', 'evidence': []}]}


def test_fresh_output_is_recorded_and_rendered(tmp_path):
    out_dir = tmp_path / 'output'
    out_dir.mkdir()
    (out_dir / 'molecule-security.json').write_text(json.dumps(RUN))
    record = tmp_path / 'record.json'
    cases = report.molecule_cases(str(out_dir), str(record))
    assert json.loads(record.read_text()) == {'security': RUN}
    assert [c['case'] for c in cases] == ['S01', 'L01']
    page = report.render(cases, {'postfix': '3.7', 'ansible': '2.19'})
    assert '| S01 | plain relay attempt | pass — bookworm, trixie: 554 5.7.1 Relay access denied — ' \
           '(molecule/security, 2026-01-01 00:00 UTC) |' in page
    assert '| L01 | load | **FAIL** — trixie: 99 arrived — (molecule/security, 2026-01-01 00:00 UTC) |' in page
    assert '## Relay abuse, TLS and secrets (Molecule)' in page


def test_last_recorded_run_without_fresh_output(tmp_path):
    record = tmp_path / 'record.json'
    record.write_text(json.dumps({'security': RUN}))
    before = record.read_text()
    cases = report.molecule_cases(str(tmp_path / 'missing'), str(record))
    assert [c['case'] for c in cases] == ['S01', 'L01']
    assert record.read_text() == before


def test_committed_record_covers_the_molecule_cases():
    """The page lists every Molecule case with a pass mark from a recorded run."""
    with open(report.MOLECULE_RECORD) as f:
        runs = json.load(f)
    ids = set(c['case'] for run in runs.values() for c in run['cases'])
    expected = set(['S%02d' % i for i in range(1, 13)] + ['M01', 'M02', 'M03', 'M04', 'L01', 'L02'])
    assert expected <= ids
    with open(report.OUTPUT) as f:
        page = f.read()
    for case_id in sorted(expected):
        assert '| %s |' % case_id in page
