# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Greylisting proved over SMTP: first attempt 450, retry after the delay accepted."""

import json
import time
import uuid

from molecule_helpers import wait_until

DELAY = 5


def listen(host):
    """Where postgrey listens: 127.0.0.1 by default, postgrey_listen_host (127.0.0.2) on postgrey-trixie."""
    return '127.0.0.2' if host.backend.get_hostname() == 'postgrey-trixie' else '127.0.0.1'


def policy(host):
    return 'check_policy_service inet:%s:10023' % listen(host)


# Runs inside the container: one SMTP dialogue up to RCPT (or the whole mail), prints JSON.
SMTP_SCRIPT = r'''
import json, smtplib, sys
server, sender, rcpt, send = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
s = smtplib.SMTP(server, 25, timeout=30)
s.ehlo("client.example.org")
s.mail(sender)
code, msg = s.rcpt(rcpt)
out = {"rcpt_code": code, "rcpt_msg": msg.decode()}
if send and code == 250:
    body = "From: %s\r\nTo: %s\r\nSubject: greylist %s\r\n\r\nhello\r\n" % (sender, rcpt, sender)
    out["data_code"] = s.data(body)[0]
s.quit()
print(json.dumps(out))
'''


def eth0_address(host):
    out = host.check_output("ip -4 -o addr show dev eth0")
    return out.split()[3].split('/')[0]


def smtp(host, server, sender, rcpt, send=False):
    cmd = "python3 -c %s %s %s %s %s" % (
        _quote(SMTP_SCRIPT), server, sender, rcpt, '1' if send else '0')
    return json.loads(host.check_output(cmd))


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_postgrey_running_and_listening(host):
    service = host.service('postgrey')
    assert service.is_running
    assert service.is_enabled
    assert host.socket('tcp://%s:10023' % listen(host)).is_listening


def test_options_file(host):
    opts = host.file('/etc/default/postgrey').content_string
    assert '--inet=%s:10023' % listen(host) in opts
    assert '--delay=5' in opts
    # The running postgrey took them (postgrey_max_age and postgrey_extra_options on postgrey-trixie).
    running = host.check_output("ps -o args= -C postgrey || ps -eo args= | grep '[p]ostgrey'")
    assert '--inet=%s:10023' % listen(host) in running and '--delay=5' in running, running
    trixie = host.backend.get_hostname() == 'postgrey-trixie'
    assert ('--max-age=10' in running) is trixie, running
    assert ('--privacy' in running) is trixie, running
    assert 'POSTGREY_TEXT="Greylisted by the estafeta test, try again later"' in opts
    assert 'postmaster@' in host.file('/etc/postgrey/whitelist_recipients.local').content_string
    assert 'trusted.example.test' in host.file('/etc/postgrey/whitelist_clients.local').content_string


def test_policy_check_after_relay_check(host):
    value = host.check_output('postconf -h smtpd_recipient_restrictions')
    items = [i.strip() for i in value.split(',')]
    assert policy(host) in items
    assert items.index('reject_unauth_destination') < items.index(policy(host))
    assert items.index('permit_mynetworks') < items.index('reject_unauth_destination')
    assert items[-1] == policy(host)


def test_first_attempt_greylisted_retry_accepted(host):
    server = eth0_address(host)
    tag = uuid.uuid4().hex[:12]
    sender = 'grey-%s@example.org' % tag
    rcpt = 'alice@mail.example.test'
    started = time.monotonic()
    first = smtp(host, server, sender, rcpt)
    assert first['rcpt_code'] == 450, first
    assert 'Greylisted by the estafeta test' in first['rcpt_msg'], first
    # An early retry is still refused.
    assert smtp(host, server, sender, rcpt)['rcpt_code'] == 450

    # Retried like a client would (every second) until accepted, and refused until the delay was over.
    refused = []

    def accepted():
        result = smtp(host, server, sender, rcpt, send=True)
        if result['rcpt_code'] != 250:
            refused.append(result['rcpt_code'])
            return None
        return result

    second = wait_until(accepted, DELAY + 30, step=1, what='the retry accepted')
    assert refused and set(refused) == {450}, refused
    # postgrey counts whole seconds from the first attempt, so the retry may pass up to one second early.
    assert time.monotonic() - started >= DELAY - 1
    assert second['data_code'] == 250, second
    wait_until(lambda: host.file('/var/mail/alice').exists
               and ('greylist %s' % sender) in host.file('/var/mail/alice').content_string, 30,
               what='the retried message reaching /var/mail/alice')


def test_whitelisted_recipient_not_greylisted(host):
    server = eth0_address(host)
    sender = 'wl-%s@example.org' % uuid.uuid4().hex[:12]
    result = smtp(host, server, sender, 'postmaster@mail.example.test')
    assert result['rcpt_code'] == 250, result


def test_mynetworks_client_not_greylisted(host):
    sender = 'local-%s@example.org' % uuid.uuid4().hex[:12]
    result = smtp(host, '127.0.0.1', sender, 'alice@mail.example.test')
    assert result['rcpt_code'] == 250, result


def test_relay_refused_before_policy(host):
    server = eth0_address(host)
    sender = 'relay-%s@example.org' % uuid.uuid4().hex[:12]
    result = smtp(host, server, sender, 'someone@elsewhere.example.net')
    assert result['rcpt_code'] == 554, result
