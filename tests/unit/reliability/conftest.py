# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the reliability cases, and the record that tests/reliability_report.py turns into docs.

Every test calls ``case(ID, WHAT)`` first, then ``case.message(TEXT)`` with the error message it
got or ``case.evidence(TEXT)`` with what it observed. When ``ESTAFETA_RELIABILITY_JSON`` names a
file, the outcome of every case is written there as JSON at the end of the run (also under
pytest-xdist). A case passes only when its call phase passed (see ``record_report``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.estafeta.postfix.tests.unit.conftest import POSTFIX_SHARE, ROOT, SBIN

COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
DRIVER = 'ansible_collections.estafeta.postfix.tests.unit.reliability.module_driver'
REPORT_ENV = 'ESTAFETA_RELIABILITY_JSON'
HERE = os.path.dirname(os.path.abspath(__file__))
_SCRATCH_RE = re.compile(r'/tmp/estafeta-postfix-[A-Za-z0-9_]+')
_PYTEST_CONF_RE = re.compile(r'/\S*/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+/postfix')
_PYTEST_TMP_RE = re.compile(r'/\S*/pytest-of-[^/\s]+/pytest-\d+/[^/\s\'"]+')
_RESULTS = {}


class Case:
    """Records the id, the description and the evidence of one reliability case."""

    def __init__(self, node):
        self.node = node
        self.replacements = []

    def __call__(self, case_id, what):
        self.node.user_properties.append(('case', case_id))
        self.node.user_properties.append(('what', what))

    def hide(self, path, shown):
        """Show ``path`` (a scratch directory) as ``shown`` in the evidence."""
        self.replacements.append((os.path.realpath(path), shown))
        self.replacements.append((path, shown))

    def clean(self, text):
        text = str(text)
        for path, shown in sorted(self.replacements, key=lambda r: -len(r[0])):
            text = text.replace(path, shown)
        text = _PYTEST_CONF_RE.sub('/etc/postfix', text)
        text = _PYTEST_TMP_RE.sub('<tmp>', text)
        return _SCRATCH_RE.sub('<scratch copy>', text)

    def _short(self, text, limit):
        text = ' '.join(self.clean(text).split())
        if len(text) > limit:
            text = text[:limit - 3] + '...'
        return text

    def evidence(self, text, limit=300):
        """What the test observed, in words."""
        self.node.user_properties.append(('evidence', self._short(text, limit)))

    def message(self, text, limit=300):
        """The error message the module or role gave."""
        self.node.user_properties.append(('message', self._short(text, limit)))


@pytest.fixture
def case(request):
    return Case(request.node)


def settle(config_dir):
    """Backdate main.cf and master.cf: Postfix waits about two seconds for a file written just now."""
    past = time.time() - 60
    for name in ('main.cf', 'master.cf'):
        path = os.path.join(config_dir, name)
        if os.path.exists(path):
            os.utime(path, (past, past))


def module_env(extra=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([COLLECTIONS] + [p for p in sys.path if p.endswith('site-packages')])
    env['LANG'] = 'C'
    env.update(extra or {})
    return env


def module_command(module, args_file, python=None):
    return [python or sys.executable, '-m', DRIVER, module, args_file]


def write_args(directory, args, name='args.json'):
    fd, path = tempfile.mkstemp(prefix='args-', suffix='.json', dir=directory)
    with os.fdopen(fd, 'w') as f:
        json.dump(args, f)
    os.chmod(path, 0o644)
    return path


def run_process(module, args, workdir, env=None, prefix=None, python=None, preexec_fn=None, timeout=120):
    """Run ``module`` in its own process; returns ``(returncode, result dict or None, stderr)``."""
    args_file = write_args(workdir, args)
    cmd = (prefix or []) + module_command(module, args_file, python=python)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=module_env(env), timeout=timeout,
                          preexec_fn=preexec_fn, cwd='/', check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    return proc.returncode, result, proc.stderr


def postconf_ok(config_dir, *args):
    """Run postconf on ``config_dir``; returns ``(rc, stdout, stderr)``."""
    settle(config_dir)
    proc = subprocess.run([os.path.join(SBIN, 'postconf'), '-c', config_dir] + list(args), capture_output=True,
                          text=True, check=False, env={'LANG': 'C', 'PATH': os.environ.get('PATH', '')})
    return proc.returncode, proc.stdout, proc.stderr


def copy_dir(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    settle(dst)
    return dst


HAND_MAIN = '''
# Local hand edit: keep these lines exactly as they are.
header_size_limit = 204800
# Hand-written list with continuation lines:
smtpd_client_restrictions =
    permit_mynetworks,
    reject_unknown_reverse_client_hostname
#message_size_limit = 1   (a commented-out experiment)
'''
HAND_MASTER = '''# Local hand edit: submission for the office.
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
'''
ACCESS = '# hand-written access table\nspam.example REJECT\nfriend.example OK\n'
PCRE = '/^Subject:.*viagra/ REJECT no spam\n'


@pytest.fixture(scope='session')
def template(tmp_path_factory):
    """A configuration directory with hand edits and tables, built once per session."""
    conf = str(tmp_path_factory.mktemp('template') / 'postfix')
    os.mkdir(conf)
    with open(os.path.join(POSTFIX_SHARE, 'main.cf.debian')) as src, open(os.path.join(conf, 'main.cf'), 'w') as dst:
        dst.write(src.read() + HAND_MAIN)
    with open(os.path.join(POSTFIX_SHARE, 'master.cf.dist')) as src, open(os.path.join(conf, 'master.cf'), 'w') as dst:
        dst.write(src.read() + HAND_MASTER)
    with open(os.path.join(conf, 'access'), 'w') as f:
        f.write(ACCESS)
    with open(os.path.join(conf, 'header_checks.pcre'), 'w') as f:
        f.write(PCRE)
    settle(conf)
    subprocess.run([os.path.join(SBIN, 'postmap'), '-c', conf, 'hash:' + os.path.join(conf, 'access')], check=True)
    return conf


@pytest.fixture
def conf(template, tmp_path, case):
    path = copy_dir(template, str(tmp_path / 'postfix'))
    case.hide(path, '/etc/postfix')
    return path


# ---------------------------------------------------------------- report hooks

def record_report(results, report):
    """Fold one phase report into ``results`` (node id -> entry).

    A case passes only when its call phase passed and no phase failed: a case whose test started
    but did not reach the end of its call phase (an interrupted run) keeps the outcome None and is
    written as failed ("did not finish").
    """
    entry = results.setdefault(report.nodeid, {'nodeid': report.nodeid, 'outcome': None, 'props': []})
    for key, value in report.user_properties:
        if (key, value) not in entry['props']:
            entry['props'].append((key, value))
    if report.failed:
        entry['outcome'] = 'failed'
        text = getattr(report, 'longreprtext', '') or str(report.longrepr)
        lines = [line[2:].strip() for line in text.splitlines() if line.startswith('E ')]
        entry['failure'] = Case(None).clean(' '.join(lines[:3]) or text.strip().splitlines()[-1])[:300]
    elif report.skipped and entry['outcome'] != 'failed':
        entry['outcome'] = 'skipped'
        longrepr = report.longrepr
        entry['failure'] = Case(None).clean(longrepr[2] if isinstance(longrepr, tuple) else longrepr)[:300]
    elif report.when == 'call' and report.passed and entry['outcome'] is None:
        entry['outcome'] = 'passed'
    return entry


def pytest_runtest_logreport(report):
    if 'reliability' not in report.nodeid:
        return
    record_report(_RESULTS, report)


def case_records(results):
    """The JSON records of the cases in ``results``."""
    cases = []
    for entry in results.values():
        props = {}
        evidence = []
        for key, value in entry['props']:
            if key in ('evidence', 'message'):
                evidence.append({'kind': key, 'text': value})
            else:
                props.setdefault(key, value)
        outcome = entry['outcome'] or 'failed'
        failure = entry.get('failure', '') or ('' if entry['outcome'] else 'did not finish: the run stopped in this case')
        cases.append({'nodeid': entry['nodeid'], 'case': props.get('case', entry['nodeid'].split('::')[-1]),
                      'what': props.get('what', ''), 'outcome': outcome, 'evidence': evidence, 'failure': failure})
    return sorted(cases, key=lambda c: c['case'])


def pytest_sessionfinish(session):
    path = os.environ.get(REPORT_ENV)
    if not path or hasattr(session.config, 'workerinput'):
        return
    with open(path, 'w') as f:
        json.dump(case_records(_RESULTS), f, indent=1)
