# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Load: Postfix's smtp-source against each converged server, everything relayed to smtp-sink on the client.

Every message is counted at the destination by its recipient (one per run), and the server's queue
ids in the Received headers are compared for duplicates. STRESS_SESSIONS x STRESS_MESSAGES
(provisioner env in molecule.yml) set the size.

The times come from one clock, the kernel's, which the containers share: the start and the end of
smtp-source are taken on the server in the shell that runs it, the arrival of the last message is
the modification time of its file in the sink. The count is made once every message has arrived
and the server's queue is empty (nothing more can come).
"""

import os
import uuid

import pytest
import testinfra
from molecule_helpers import queue_empty, wait_until

CLIENT = testinfra.get_host('docker://stress-client')
SERVERS = ('stress-bookworm', 'stress-trixie')
AMAVIS = ('stress-amavis-bookworm', 'stress-amavis-trixie')
SESSIONS = int(os.environ.get('STRESS_SESSIONS', '20'))
MESSAGES = int(os.environ.get('STRESS_MESSAGES', '500'))
AMAVIS_SESSIONS = int(os.environ.get('STRESS_AMAVIS_SESSIONS', '20'))
AMAVIS_MESSAGES = int(os.environ.get('STRESS_AMAVIS_MESSAGES', '500'))


@pytest.fixture(autouse=True)
def servers_only(host):
    if host.backend.get_hostname() not in SERVERS + AMAVIS:
        pytest.skip('the sink is examined through the server tests')


def sink_times(rcpt):
    """The modification times (seconds) of the sink's files of the messages to ``rcpt``."""
    out = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r stat -c %%.9Y", '<%s>' % rcpt).stdout
    return [float(line) for line in out.split()]


def test_load(host, case):
    if host.backend.get_hostname() not in SERVERS:
        pytest.skip('the plain relays carry the big load')
    total = SESSIONS * MESSAGES
    case('L02', 'Load: smtp-source with %d concurrent sessions x %d messages (%d in all) to the server, relayed to '
                'smtp-sink on another container; the messages at the destination counted' % (SESSIONS, MESSAGES, total))
    rcpt = 'stress-%s@far.test' % uuid.uuid4().hex[:10]
    times = host.check_output('date +%%s.%%N && /usr/sbin/smtp-source -s %s -m %s -f load@example.test -t %s '
                              '127.0.0.1:25 >&2 && date +%%s.%%N', str(SESSIONS), str(total), rcpt).split()
    started, accepted = float(times[0]), float(times[1]) - float(times[0])
    assert wait_until(lambda: len(sink_times(rcpt)) >= total and queue_empty(host), 900, step=3), \
        '%d of %d messages arrived' % (len(sink_times(rcpt)), total)
    arrivals = sink_times(rcpt)
    seconds = max(arrivals) - started
    ids = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r grep -h -o -E 'with ESMTP id [A-Za-z0-9]+'",
                     '<%s>' % rcpt).stdout.split('\n')
    ids = [i for i in ids if i]
    unique = len(set(ids))
    assert (len(arrivals), len(ids), unique) == (total, total, total)
    assert queue_empty(host)
    case.evidence('%d sent, %d arrived, %d distinct queue ids (no loss, no duplicate), queue empty; accepted by the '
                  'server in %.0f s (%.0f messages/s), the last one written by the sink %.0f s after smtp-source '
                  'started (%.0f messages/s end to end; times from the server\'s clock and the sink\'s file times)'
                  % (total, len(arrivals), unique, accepted, total / accepted, seconds, total / seconds))


def test_burst_through_amavis(host, case):
    if host.backend.get_hostname() not in AMAVIS:
        pytest.skip('the servers with amavisd-new take the burst')
    total = AMAVIS_MESSAGES
    case('L03', 'Burst through amavisd-new: smtp-source -s %d -m %d (%d messages, %d sessions at a time) to the server, '
                'every message through amavisd-new and the re-injection smtpd, relayed to smtp-sink; the messages at '
                'the destination counted, deferrals counted in the log' % (AMAVIS_SESSIONS, total, total, AMAVIS_SESSIONS))
    rcpt = 'burst-%s@far.test' % uuid.uuid4().hex[:10]
    times = host.check_output('date +%%s.%%N && /usr/sbin/smtp-source -s %s -m %s -f load@example.test -t %s '
                              '127.0.0.1:25 >&2 && date +%%s.%%N', str(AMAVIS_SESSIONS), str(total), rcpt).split()
    started, accepted = float(times[0]), float(times[1]) - float(times[0])
    assert wait_until(lambda: len(sink_times(rcpt)) >= total and queue_empty(host), 900, step=3), \
        '%d of %d messages arrived' % (len(sink_times(rcpt)), total)
    arrivals = sink_times(rcpt)
    seconds = max(arrivals) - started
    # The queue is empty: every delivery attempt of these messages is logged.
    log = host.file('/var/log/mail.log').content_string.splitlines()
    deferred = [line for line in log if 'to=<%s>' % rcpt in line and 'status=deferred' in line]
    # Each message went through amavisd-new (its hand-over) and came back through the re-injection smtpd.
    filtered = [line for line in log if 'to=<%s>' % rcpt in line and 'relay=127.0.0.1[127.0.0.1]:10024' in line
                and 'status=sent' in line]
    ids = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r grep -h -o -E 'with ESMTP id [A-Za-z0-9]+'",
                     '<%s>' % rcpt).stdout.split('\n')
    ids = [i for i in ids if i]
    assert (len(arrivals), len(filtered), len(deferred)) == (total, total, 0), deferred[:3]
    assert len(set(ids)) >= total
    case.evidence('%d sent, %d handed to amavisd-new and accepted, %d arrived, 0 deferred, queue empty; accepted by the '
                  'server in %.0f s, the last one written by the sink %.0f s after smtp-source started (%.0f messages/s '
                  'end to end)' % (total, len(filtered), len(arrivals), accepted, seconds, total / seconds))
