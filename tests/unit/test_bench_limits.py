# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/performance.md keeps measurements and commentary apart.

The commentary of bench/limits.md is written by hand: every item carries the date it was written,
and a figure the benchmark measures is quoted by name and put in from docs/performance.json when
the page is written. docs/performance.md is what bench.py writes from docs/performance.json
(``python bench/bench.py --render``), so no figure on it was typed in by hand.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SPEC = importlib.util.spec_from_file_location('bench', os.path.join(ROOT, 'bench', 'bench.py'))
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


@pytest.fixture(scope='module')
def results():
    with open(os.path.join(ROOT, 'docs', 'performance.json')) as f:
        return bench.prepare_results(json.load(f))


def test_every_commentary_item_is_dated_and_quotes_only_measured_figures(results):
    items = bench.read_limits(os.path.join(ROOT, 'bench', 'limits.md'))
    assert items
    figures = bench.measured_figures(results)
    for item in items:
        for name in bench.PLACEHOLDER.findall(item['text']):
            assert name in figures, '%s is not a measured figure (%s)' % (name, ', '.join(sorted(figures)))


def test_page_is_written_from_the_measurements(results):
    with open(os.path.join(ROOT, 'docs', 'performance.md')) as f:
        page = f.read()
    assert page == bench.markdown(copy.deepcopy(results)), \
        'docs/performance.md is not what bench.py writes from docs/performance.json: python bench/bench.py --render'
    assert '## What limits the figures (commentary)' in page


def test_an_undated_item_is_refused(tmp_path):
    path = tmp_path / 'limits.md'
    path.write_text('# Title\n\n- (2026-01-02) Dated: {{ fleet.largest }} hosts.\n- Undated: 5.3 times.\n')
    with pytest.raises(ValueError, match='must start with the date'):
        bench.read_limits(str(path))
    path.write_text('- (2026-01-02) Dated, continued\n  on the next line.\n')
    assert bench.read_limits(str(path)) == [{'date': '2026-01-02', 'text': 'Dated, continued on the next line.'}]


def test_a_quoted_figure_comes_from_the_results(results):
    assert bench.render_limit('at {{ fleet.largest }} hosts', results) == 'at **%d** hosts' % max(
        p['hosts'] for p in results['fleet']['points'])
    with pytest.raises(KeyError):
        bench.render_limit('{{ no.such_figure }}', results)
