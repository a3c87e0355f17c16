# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Content checks and amavisd-new proved over SMTP."""

import json
import time
import uuid

import pytest

RCPT = 'alice@mail.example.test'

# Runs inside the container: sends one message read from stdin, prints the outcome as JSON.
SEND = r'''
import json, smtplib, sys
msg = sys.stdin.read().replace("\n", "\r\n")
s = smtplib.SMTP("127.0.0.1", 25, timeout=60)
s.ehlo("client.example.org")
try:
    s.sendmail("bob@example.org", [sys.argv[1]], msg.encode("utf-8"))
    out = {"code": 250, "msg": ""}
except smtplib.SMTPDataError as exc:
    out = {"code": exc.smtp_code, "msg": exc.smtp_error.decode()}
s.quit()
print(json.dumps(out))
'''


def send(host, message, rcpt=RCPT):
    script = SEND.replace("'", "'\"'\"'")
    data = message.replace("'", "'\"'\"'")
    out = host.check_output("printf '%%s' '%s' | python3 -c '%s' %s" % (data, script, rcpt))
    return json.loads(out)


def headers(subject, extra=''):
    return ('From: bob@example.org\nTo: %s\nSubject: %s\nMessage-ID: <%s@example.org>\n%s'
            % (RCPT, subject, uuid.uuid4().hex, extra))


def multipart(subject, part_headers):
    return (headers(subject, 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n')
            + '\n--XX\nContent-Type: text/plain\n\nsee attachment\n--XX\n'
            + part_headers + '\n\nAAAA\n--XX--\n')


def wait_for_mailbox(host, text, timeout=60):
    for dummy in range(timeout):
        mbox = host.file('/var/mail/alice')
        if mbox.exists and text in mbox.content_string:
            return mbox.content_string
        time.sleep(1)
    raise AssertionError('%r did not reach /var/mail/alice' % text)


def test_parameters(host):
    conf = host.check_output('postconf -n')
    assert 'header_checks = pcre:/etc/postfix/header_checks' in conf
    assert 'mime_header_checks = pcre:/etc/postfix/mime_header_checks' in conf
    assert 'body_checks = pcre:/etc/postfix/body_checks' in conf
    assert 'content_filter = smtp-amavis:[127.0.0.1]:10024' in conf


def test_master_services(host):
    amavis = host.check_output('postconf -M smtp-amavis/unix').split()
    assert amavis[:8] == ['smtp-amavis', 'unix', '-', '-', 'n', '-', '2', 'smtp']
    overrides = host.check_output('postconf -P smtp-amavis/unix')
    assert 'smtp-amavis/unix/smtp_data_done_timeout = 1200' in overrides
    assert 'smtp-amavis/unix/smtp_send_xforward_command = yes' in overrides
    reinject = host.check_output("postconf -M '127.0.0.1:10025/inet'").split()
    assert reinject[:8] == ['127.0.0.1:10025', 'inet', 'n', '-', 'n', '-', '-', 'smtpd']
    overrides = host.check_output("postconf -P '127.0.0.1:10025/inet'").splitlines()
    expected = {
        'content_filter': '', 'local_recipient_maps': '', 'relay_recipient_maps': '',
        'smtpd_restriction_classes': '', 'smtpd_client_restrictions': '',
        'smtpd_helo_restrictions': '', 'smtpd_sender_restrictions': '',
        'smtpd_recipient_restrictions': 'permit_mynetworks,reject',
        'smtpd_relay_restrictions': 'permit_mynetworks,reject',
        'mynetworks': '127.0.0.0/8', 'strict_rfc821_envelopes': 'yes',
        'smtpd_error_sleep_time': '0', 'smtpd_soft_error_limit': '1001',
        'smtpd_hard_error_limit': '1000',
    }
    found = {}
    for line in overrides:
        name, dummy, value = line.partition('=')
        found[name.strip().split('/')[-1]] = value.strip()
    assert found == expected


def test_amavis_and_reinjection_listening(host):
    assert host.service('amavis').is_running
    assert host.service('amavis').is_enabled
    assert host.socket('tcp://127.0.0.1:10024').is_listening
    assert host.socket('tcp://127.0.0.1:10025').is_listening
    conf = host.file('/etc/amavis/conf.d/40-estafeta_postfix').content_string
    assert '$myhostname = "mail.example.test";' in conf


def test_guide_subject_rejected_with_its_text(host):
    result = send(host, headers('Re: Your password!') + '\nhello\n')
    assert result['code'] in (550, 554), result
    assert 'Estas infectado con el Frethem. Desinfectate.' in result['msg'], result


def test_own_header_rule(host):
    result = send(host, headers('estafeta forbidden subject') + '\nhello\n')
    assert result['code'] in (550, 554), result
    assert 'Subject refused by the estafeta test' in result['msg'], result


@pytest.mark.parametrize('part', [
    # The guide's rule: quoted name on the same line.
    'Content-Type: application/octet-stream; name="x.scr"',
    # Folded header, unquoted name on the continuation line (the guide's pcre_anti_virus case).
    'Content-Type: application/octet-stream;\n\tname=x.scr',
    'Content-Disposition: attachment;\n filename="invoice.pif"',
])
def test_forbidden_attachment_rejected(host, part):
    result = send(host, multipart('attachment %s' % uuid.uuid4().hex, part))
    assert result['code'] in (550, 554), result


def test_own_mime_rule_with_text(host):
    part = 'Content-Type: application/octet-stream;\n\tname="setup.exe"'
    result = send(host, multipart('exe %s' % uuid.uuid4().hex, part))
    assert result['code'] in (550, 554), result
    assert 'Executable attachments are not accepted' in result['msg'], result


def test_guide_body_rule(host):
    result = send(host, headers('advice') + '\nI send you this file in order to have your advice\n')
    assert result['code'] in (550, 554), result


def test_clean_message_passes_amavis_and_reaches_mailbox(host):
    subject = 'clean %s' % uuid.uuid4().hex
    part = 'Content-Type: text/plain; name="notes.txt"'
    result = send(host, multipart(subject, part))
    assert result['code'] == 250, result
    mbox = wait_for_mailbox(host, subject)
    message = mbox[mbox.rindex('\nFrom bob@example.org'):] if '\nFrom bob@example.org' in mbox else mbox
    message = message[message.index('Return-Path'):message.index(subject)]
    # amavisd-new's own Received line, then the re-injection through 127.0.0.1:10025.
    assert '(amavis, port 10024)' in message
    assert message.index('by mail.example.test (Postfix)') < message.index('(amavis, port 10024)')
    log = host.file('/var/log/mail.log').content_string
    assert 'relay=127.0.0.1[127.0.0.1]:10024' in log
