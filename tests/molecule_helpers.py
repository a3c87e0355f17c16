# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the testinfra verifiers of the Molecule scenarios share.

A scenario's tests/conftest.py puts this directory on the import path; the test files then
``from molecule_helpers import ...``. The helpers wait on events (a log line, a file, a queue
entry leaving the queue), never for a fixed time: a negative check ("nothing arrived") is made
once the message it is about has left the server's queue for good.
"""

import os
import re
import shlex
import signal
import subprocess
import threading
import time

MAIL_LOG = '/var/log/mail.log'


class Timeout(AssertionError):
    """An awaited event did not happen in time."""


def wait_until(predicate, timeout=60, step=0.5, what=None):
    """Call ``predicate`` until it returns something true; return that value.

    Returns False after ``timeout`` seconds, or raises Timeout when ``what`` names the event.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if what:
                raise Timeout('%s: not within %s s' % (what, timeout))
            return False
        time.sleep(step)


def address(host, device='eth0'):
    """The host's IPv4 address on ``device``."""
    return host.check_output("ip -4 -o addr show dev %s | awk '{print $4}' | cut -d/ -f1" % device)


def swaks(host, *args):
    """Run swaks on ``host`` with the given arguments (each quoted for the shell); returns (rc, transcript)."""
    cmd = host.run('swaks ' + ' '.join(shlex.quote(str(a)) for a in args))
    return cmd.rc, cmd.stdout + cmd.stderr


def reply_to(transcript, command):
    """The server's reply to the client's ``command`` (RCPT, MAIL, EHLO, ...) in a swaks transcript, or ''."""
    lines = transcript.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip()[:2] in ('->', '~>') and command in line:
            replies = []
            for nxt in lines[i + 1:]:
                stripped = nxt.lstrip()
                if stripped[:2] in ('<-', '<~') or stripped.startswith('<**'):
                    replies.append(stripped.lstrip('<-~* ').strip())
                    if re.match(r'^\d{3} ', replies[-1]):
                        break
                elif stripped[:2] in ('->', '~>'):
                    break
            return ' / '.join(replies)
    return ''


def queued_as(text):
    """The queue id in a "250 2.0.0 Ok: queued as ID" reply, or None."""
    match = re.search(r'queued as ([0-9A-Za-z]+)', text)
    return match.group(1) if match else None


def log_lines(host, pattern, path=MAIL_LOG):
    """The lines of the mail log that match the extended regular expression ``pattern``."""
    return host.run('grep -E -e %s %s', pattern, path).stdout.splitlines()


def left_queue(host, queue_id, timeout=90):
    """Wait until message ``queue_id`` has left the queue for good (Postfix logs "ID: removed").

    Every delivery, bounce or discard of the message is over then: a check that something did
    not happen, made after this, cannot be too early. Raises Timeout otherwise.
    """
    pattern = r'\]: %s: removed$' % re.escape(queue_id)
    return wait_until(lambda: log_lines(host, pattern), timeout, what='message %s leaving the queue' % queue_id)


def queue_empty(host):
    """True when the server's queue (every queue: incoming, active, deferred, hold) is empty."""
    return host.run('postqueue -j').stdout.strip() == ''


def run_playbook(playbook, *args, timeout=900, kill_when=None, env=None):
    """Run ansible-playbook with Molecule's inventory from a verifier.

    ``kill_when(lines)`` is called from a watcher thread with the output read so far; when it
    returns something true, the whole process group is killed with SIGKILL. Returns a dict:
    rc, out (the complete output up to the end or the kill) and killed (the watcher's value, or
    None).
    """
    run_env = dict(os.environ)
    run_env.update({'PYTHONUNBUFFERED': '1', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0'})
    run_env.update(env or {})
    cmd = ['ansible-playbook', '-i', run_env['MOLECULE_INVENTORY_FILE'], playbook] + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env,
                            start_new_session=True)
    lines = []
    state = {'killed': None}
    done = threading.Event()

    def watch():
        deadline = time.monotonic() + timeout
        while not done.is_set():
            if kill_when is not None and state['killed'] is None:
                verdict = kill_when(list(lines))
                if verdict:
                    state['killed'] = verdict
                    os.killpg(proc.pid, signal.SIGKILL)
                    return
            if time.monotonic() > deadline:
                state['killed'] = 'timeout after %s s' % timeout
                os.killpg(proc.pid, signal.SIGKILL)
                return
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in proc.stdout:
        lines.append(line)
    proc.wait()
    done.set()
    watcher.join()
    return {'rc': proc.returncode, 'out': ''.join(lines), 'killed': state['killed']}


def recap(out):
    """{host: {ok:, changed:, failed:, ...}} from the PLAY RECAP of a run's output."""
    hosts = {}
    for match in re.finditer(r'^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$', out, re.M):
        hosts[match.group(1)] = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', match.group(2)))
    return hosts
