# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the reliability cases (tests/unit/reliability/) and write docs/reliability.md from the outcome.

    python tests/reliability_report.py              # run the cases, write docs/reliability.md
    python tests/reliability_report.py --json FILE  # write the page from a saved result instead

The cases that need running mail servers (relay abuse, secrets, TLS, faults on a live server, load)
are Molecule tests (molecule/security, molecule/stress). Their verifiers write their outcomes to
tests/output/reliability/molecule-<scenario>.json; this script copies the newest of those into
tests/reliability_molecule.json (the last recorded run, kept with the sources) and renders its
cases with the scenario and the time of that run.

Every run is tied to the code it ran: the unit cases to the commit checked out when the page is
written, each Molecule run to the commit its verifier recorded, with a "dirty" flag when the files
that make up the run differed from that commit (see tests/molecule_reliability.py);
tests/unit/test_reliability_report.py fails when roles/ or plugins/ changed since.

A case passes only when its test's call phase passed. Nothing drops off the page: a test that
was collected but did not report (an interrupted run) and a Molecule case of the last record that
a new run of its scenario lacks are listed as failed ("missing"), and so is a run whose pytest
exit status says it did not complete.

The page is a table per kind of case: the case id, what was tried, and what happened (the pass
mark of the test and the error message or observation it recorded). The exit code is 1 when a
case failed or is missing, or when pytest did not complete; the page is written anyway, failures
included.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES_DIR = os.path.join('tests', 'unit', 'reliability')
OUTPUT = os.path.join(ROOT, 'docs', 'reliability.md')
REPORT_ENV = 'ESTAFETA_RELIABILITY_JSON'
MOLECULE_OUTPUT = os.path.join(ROOT, 'tests', 'output', 'reliability')
MOLECULE_RECORD = os.path.join(ROOT, 'tests', 'reliability_molecule.json')

SECTIONS = [
    ('B', 'Bad input to the modules',
     'Each case runs the module twice, in check mode and for real, against a configuration directory holding '
     'Debian\'s main.cf and master.cf with hand edits, an access table with its database and a PCRE table. '
     'It passes when both runs fail with a message that names the culprit and every file in the directory is '
     'byte-identical afterwards, with no file added.'),
    ('A', 'Unusual input that Postfix accepts',
     'Postfix takes `#` inside a value (a comment starts only at the beginning of a line), UTF-8 text and long '
     'table values. These cases pass when the value is written, reads back unchanged with `postconf` or '
     '`postmap -q`, and the next runs report no change.'),
    ('E', 'An unusable environment',
     'Missing or unwritable configuration directories and a host without Postfix. Nothing may be written. '
     'As root, permissions do not stop a write, so a read-only directory is made three real ways: the immutable '
     'attribute (`chattr +i`), a read-only bind mount in a private mount namespace, and a module process '
     'running as the unprivileged user `nobody` (a play without `become: true`). Cases that need root, '
     '`chattr` or `unshare` are skipped where those are not available.'),
    ('R', 'Role variables of the wrong type',
     'One `ansible-playbook` run (connection local, check mode as a second safety net, no facts gathered) includes '
     'each role with one wrongly typed variable. A case passes when the role stops at its first task, the '
     'argument validation from `meta/argument_specs.yml` (or the rule check the case is about), with a message '
     'that names the variable, when the run\'s record of every task (the ansible.posix.json callback) shows no task '
     'of the role past its checks (check mode alone would hide a role that went on), and /etc/postfix of the host '
     'is unchanged. Tasks of the role\'s dependencies, which Ansible runs before the role\'s own validation, are '
     'listed in the evidence.'),
    ('F', 'Killed runs and a failing postfix check',
     'The modules run in their own processes, as Ansible runs them, and are killed with SIGKILL either at a '
     'precise point of a file replacement or at random moments. A case passes when each file is afterwards '
     'either the old or the new content in full, nothing but the module\'s own temporary files is left '
     'behind, the next run converges (the run after it reports no change) and `postfix check` passes. '
     'A killed run leaves its temporary file (`.main.cf.*.tmp`) next to the target, the hidden hard link that '
     'keeps the file it replaces until the change is complete (`.main.cf.*.keep`), and its scratch copy '
     'in TMPDIR; Postfix ignores them. Killed in the middle of a rollback, the rejected new main.cf stays in '
     'place (complete, but invalid for `postfix check`) until the next run with a valid value. Files that '
     'change together (a table\'s source and database, main.cf and the restrictions ownership record) are '
     'put back together when a step fails.'),
    ('C', 'Concurrent runs',
     'Several module processes start their work at the same moment against one configuration directory, each '
     'with a different change. A case passes when the files parse (`postconf -n`, `postconf -M`) and every '
     'change is in them: no corruption and no lost update. Runs pass `check=false` to keep the cases fast; '
     '`postfix check` changes nothing in what a run reads and writes.'),
    ('M', 'Faults on a running mail server (Molecule)',
     'Scenario `molecule/security`: two converged mail servers (Debian 12 and 13, roles base, tls, anti_relay with '
     'submission, smarthost) and an outside client whose `smtp-sink` is the servers\' next hop. The test runs '
     '`ansible-playbook` against the servers itself: a converge killed with SIGKILL, hand edits and a stopped Postfix '
     'before the next run, and a change that only `postfix check` rejects. Mail is proved to flow over SMTP.'),
    ('S', 'Relay abuse, TLS and secrets (Molecule)',
     'Scenario `molecule/security`, on both servers. The outside client is not in mynetworks. A relay attempt passes '
     'when the server refuses the recipient, or accepts it only for local delivery, and nothing reaches the next hop, '
     'the queue or the delivery log for the foreign domain.'),
    ('L', 'Load (Molecule)',
     'Postfix\'s own `smtp-source` sends to the server, which relays everything to `smtp-sink` on another '
     'container. Every message is counted at the destination by its recipient, and the server\'s queue ids are '
     'compared for duplicates. The small run is part of `make test` (scenario security); the large one is '
     '`make stress` (scenario stress). Times come from the one clock the containers share: the start of smtp-source, '
     'taken on the server in the shell that runs it, and the modification time of the last message\'s file in the '
     'sink; the count is made once the server\'s queue is empty.'),
    ('H', 'Hand edits survive',
     'Comments, commented-out settings and hand-written entries in main.cf, master.cf and tables, outside what '
     'the module manages, must stay byte-identical through every run; the second run reports no change.'),
]

MARKS = {'passed': 'pass', 'failed': '**FAIL**', 'skipped': 'skipped'}


def run_cases(json_path, workers):
    """Run the unit reliability cases; returns pytest's exit status (0 all passed, 1 some failed)."""
    env = dict(os.environ)
    env[REPORT_ENV] = json_path
    cmd = [sys.executable, '-m', 'pytest', CASES_DIR, '-q', '-p', 'no:cacheprovider', '--tb=line']
    if workers:
        cmd += ['-n', str(workers), '--dist', 'loadfile']
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def collect_cases():
    """The node ids of the unit reliability cases, as pytest collects them (the cases expected in a run)."""
    proc = subprocess.run([sys.executable, '-m', 'pytest', CASES_DIR, '--collect-only', '-q', '-p', 'no:cacheprovider'],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit('collecting %s failed:\n%s%s' % (CASES_DIR, proc.stdout[-3000:], proc.stderr[-3000:]))
    return [line.strip() for line in proc.stdout.splitlines() if '::' in line and not line.startswith(' ')]


def missing_cases(cases, expected):
    """Failed entries for the expected tests (node ids) that have no recorded outcome."""
    seen = set(c.get('nodeid') for c in cases)
    return [{'nodeid': nodeid, 'case': nodeid.split('::')[-1], 'what': '(%s)' % nodeid, 'outcome': 'failed',
             'evidence': [], 'failure': 'missing: the test was collected but did not report (interrupted run?)'}
            for nodeid in expected if nodeid not in seen]


def run_problems(rc, cases):
    """Why a pytest run does not count as complete, or None."""
    failed = [c for c in cases if c['outcome'] == 'failed']
    if rc not in (0, 1):
        return 'pytest exited with status %d (interrupted, or an error outside the tests)' % rc
    if rc == 1 and not failed:
        return 'pytest reported a failure that is not a case (exit status 1 with every case passed)'
    return None


def git(*args):
    try:
        proc = subprocess.run(['git', '-C', ROOT] + list(args), capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def versions():
    result = {}
    result['commit'] = git('rev-parse', 'HEAD') or 'unknown'
    status = git('status', '--porcelain', '--', 'roles', 'plugins', CASES_DIR)
    result['dirty'] = status is None or status != ''
    try:
        result['postfix'] = subprocess.run(['/usr/sbin/postconf', '-d', '-h', 'mail_version'], capture_output=True,
                                           text=True, check=True, env={'LANG': 'C'}).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        result['postfix'] = 'unknown'
    try:
        from ansible.release import __version__ as ansible_version
        result['ansible'] = ansible_version
    except ImportError:
        result['ansible'] = 'unknown'
    return result


def cell(text):
    return text.replace('\\', '\\\\').replace('|', '\\|').replace('\n', ' ')


def code(text):
    text = text.replace('|', '\\|')
    fence = '``' if '`' in text else '`'
    pad = ' ' if text.startswith('`') or text.endswith('`') else ''
    return '%s%s%s%s%s' % (fence, pad, text, pad, fence)


def merge_run(previous, run):
    """A new run of a scenario, with every case of the previous record that it lacks listed as missing."""
    run = dict(run)
    have = set(c['case'] for c in run['cases'])
    lost = [dict(c, outcome='failed', evidence=[], failure='missing: the run of %s has no result for this case'
                 % run['finished']) for c in (previous or {}).get('cases', []) if c['case'] not in have]
    run['cases'] = sorted(run['cases'] + lost, key=lambda c: c['case'])
    return run


def molecule_problems(run):
    """Why a recorded Molecule run does not count as complete, or None."""
    if run.get('exitstatus') not in (0, 1):
        return 'molecule/%s: the verifier exited with status %s (interrupted?)' % (run['scenario'], run.get('exitstatus'))
    if run.get('unfinished'):
        return 'molecule/%s: tests that did not finish: %s' % (run['scenario'], ', '.join(run['unfinished']))
    if not run.get('commit'):
        return 'molecule/%s: the run recorded no commit' % run['scenario']
    return None


def source_of(scenario, run):
    commit = (run.get('commit') or 'unknown commit')[:10]
    return 'molecule/%s, %s, commit %s%s' % (scenario, run['finished'], commit, ' (dirty)' if run.get('dirty') else '')


def molecule_cases(output_dir=MOLECULE_OUTPUT, record=MOLECULE_RECORD):
    """Cases of the Molecule scenarios: fresh verifier output when there is some, else the last recorded run.

    Returns (cases, problems): a fresh run replaces the record of its scenario (cases it lacks are
    kept as missing); problems lists the runs that did not complete.
    """
    try:
        with open(record) as f:
            runs = json.load(f)
    except (OSError, ValueError):
        runs = {}
    fresh = False
    if os.path.isdir(output_dir):
        for name in sorted(os.listdir(output_dir)):
            if name.startswith('molecule-') and name.endswith('.json'):
                with open(os.path.join(output_dir, name)) as f:
                    run = json.load(f)
                if runs.get(run['scenario']) != run:
                    runs[run['scenario']] = merge_run(runs.get(run['scenario']), run)
                    fresh = True
    if fresh:
        with open(record, 'w') as f:
            json.dump(runs, f, indent=1, sort_keys=True)
            f.write('\n')
    cases, problems = [], []
    for scenario in sorted(runs):
        run = runs[scenario]
        problem = molecule_problems(run)
        if problem:
            problems.append(problem)
        for case in run['cases']:
            cases.append(dict(case, source=source_of(scenario, run)))
    return cases, problems


def happened(case):
    parts = [MARKS.get(case['outcome'], case['outcome'])]
    if case['outcome'] == 'passed':
        for item in case['evidence']:
            if item['kind'] == 'message':
                parts.append('message: ' + code(item['text']))
            else:
                parts.append(cell(item['text']))
    else:
        parts.append(cell(case.get('failure') or ''))
    if case.get('source'):
        parts.append('(%s)' % cell(case['source']))
    return ' — '.join(p for p in parts if p)


def render(cases, info):
    counts = dict((k, sum(1 for c in cases if c['outcome'] == k)) for k in ('passed', 'failed', 'skipped'))
    lines = [
        '# Reliability: bad input, faults, concurrency, hand edits, relay abuse and load',
        '',
        '<!-- Generated by tests/reliability_report.py from tests/unit/reliability/ and the Molecule results in '
        'tests/reliability_molecule.json; do not edit by hand. -->',
        '',
        'What the modules and roles of estafeta.postfix do with bad input, killed runs, concurrent runs and '
        'hand-edited files, proved by the test cases in `tests/unit/reliability/` against the real Postfix '
        'binaries in scratch configuration directories, and by the Molecule scenarios `security` and `stress` against '
        'running mail servers in containers. Each row is one test case: what was tried, and what '
        'happened (the pass mark of the test and the error message or observation it recorded).',
        '',
        'Last run: Postfix %s, ansible-core %s, commit %s%s. %d cases: %d pass, %d fail, %d skipped.' % (
            info['postfix'], info['ansible'], info.get('commit', 'unknown')[:10],
            ' (with uncommitted changes to roles/, plugins/ or the cases)' if info.get('dirty') else '',
            len(cases), counts['passed'], counts['failed'], counts['skipped']),
        '',
        'Regenerate with `python tests/reliability_report.py` (about a minute). The same cases run in the unit '
        'test suite (`make unit`); the Molecule cases (sections marked Molecule) run in `make test` (scenario '
        'security) and `make stress`, and their rows show the pass marks of the last recorded run '
        '(tests/reliability_molecule.json), with its scenario, time and the commit it ran; the unit tests fail when '
        'roles/ or plugins/ changed since that commit. A case passes only when its test ran to the end and passed; '
        'a case that did not report is listed as failed ("missing").',
        '',
    ]
    by_prefix = {}
    for case in cases:
        by_prefix.setdefault(case['case'][:1], []).append(case)
    known = set(prefix for prefix, dummy, dummy2 in SECTIONS)
    sections = list(SECTIONS) + [(p, 'Other cases', '') for p in sorted(by_prefix) if p not in known]
    for prefix, title, intro in sections:
        group = sorted(by_prefix.get(prefix, []), key=lambda c: c['case'])
        if not group:
            continue
        lines += ['## %s' % title, '']
        if intro:
            lines += [intro, '']
        lines += ['| Case | What was tried | What happened |', '|---|---|---|']
        for case in group:
            lines.append('| %s | %s | %s |' % (case['case'], cell(case['what']), happened(case)))
        lines.append('')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='use this saved result instead of running the cases')
    parser.add_argument('--output', default=OUTPUT, help='the page to write (default: docs/reliability.md)')
    parser.add_argument('-n', '--workers', type=int, default=2,
                        help='pytest-xdist workers (0 runs the cases in this process; default 2)')
    args = parser.parse_args(argv)
    problems = []
    if args.json:
        json_path = args.json
    else:
        expected = collect_cases()
        fd, json_path = tempfile.mkstemp(prefix='reliability-', suffix='.json')
        os.close(fd)
        rc = run_cases(json_path, args.workers)
    try:
        with open(json_path) as f:
            cases = json.load(f)
    except ValueError:
        cases = []
    finally:
        if not args.json:
            os.unlink(json_path)
    if not args.json:
        cases = cases + missing_cases(cases, expected)
        problem = run_problems(rc, cases)
        if problem:
            problems.append(problem)
    if not cases:
        print('No reliability case ran.', file=sys.stderr)
        return 2
    more, molecule_problems_found = molecule_cases()
    cases = cases + more
    problems += molecule_problems_found
    text = render(cases, versions())
    with open(args.output, 'w') as f:
        f.write(text)
    failed = [c['case'] for c in cases if c['outcome'] == 'failed']
    print('%s: %d cases, %d failed%s' % (os.path.relpath(args.output, ROOT), len(cases), len(failed),
                                         (' (%s)' % ', '.join(failed)) if failed else ''))
    for problem in problems:
        print('incomplete run: %s' % problem, file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == '__main__':
    sys.exit(main())
