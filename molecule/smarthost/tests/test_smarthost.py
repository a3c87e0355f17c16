# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smarthost: mail goes through the relay, authenticated and over TLS; a wrong password keeps it queued.

Runs on every client (group mailservers); the relay is reached as a second testinfra host.
"""

import json
import time
import uuid

import pytest
import testinfra

RELAY = testinfra.get_host('docker://smarthost-relay')


@pytest.fixture(autouse=True)
def clients_only(host):
    """The tests run on the clients; the relay is examined from them."""
    if host.backend.get_hostname() == 'smarthost-relay':
        pytest.skip('the relay is examined through the clients')


def is_bad_client(host):
    return host.backend.get_hostname() == 'smarthost-badpw'


def send(host, sender, token):
    cmd = host.run("printf 'Subject: %s\\nFrom: %s\\n\\nbody %s\\n' | /usr/sbin/sendmail -f %s bob@relay.example.test",
                   token, sender, token, sender)
    assert cmd.rc == 0, cmd.stderr


def wait(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(2)
    return False


def relay_message(token):
    """The message with this token in bob's mailbox on the relay, or ''."""
    box = RELAY.run('cat /var/mail/bob').stdout
    for message in box.split('\nFrom '):
        if token in message:
            return message
    return ''


def test_main_cf(host):
    assert host.check_output('postconf -h relayhost') == '[relay.example.test]:587'
    assert host.check_output('postconf -h smtp_sasl_auth_enable') == 'yes'
    assert host.check_output('postconf -h smtp_sender_dependent_authentication') == 'yes'
    # The global client TLS level is untouched; the relay gets "encrypt" through the policy table.
    assert host.check_output('postconf -h smtp_tls_security_level') == 'may'
    assert host.check_output('postmap -q "[relay.example.test]:587" hash:/etc/postfix/smarthost_tls_policy') == 'encrypt'
    assert host.check_output('postmap -q @alt.example.test hash:/etc/postfix/sender_relayhost') == '[relay.example.test]:587'


def test_password_table_protected(host):
    for path in ('/etc/postfix/sasl_passwd', '/etc/postfix/sasl_passwd.db'):
        table = host.file(path)
        assert table.exists
        assert table.user == 'root'
        assert table.mode == 0o600


def test_sasl_client_modules_installed(host):
    assert host.package('libsasl2-modules').is_installed


def test_mail_arrives_authenticated_over_tls(host):
    if is_bad_client(host):
        return
    token = 'smarthost-%s' % uuid.uuid4().hex
    send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)
    assert wait(lambda: relay_message(token)), host.run('tail -20 /var/log/mail.log').stdout
    message = relay_message(token)
    # Authenticated (ESMTPSA: ESMTP + TLS + SASL) and over TLS, as the relay's Received header says.
    assert 'with ESMTPSA' in message
    log = RELAY.file('/var/log/mail.log').content_string
    assert 'sasl_username=relayuser@relay.example.test' in log
    assert 'TLS connection established from' in log
    client_log = host.file('/var/log/mail.log').content_string
    assert 'relay=relay.example.test' in client_log


def test_sender_dependent_credentials(host):
    if is_bad_client(host):
        return
    token = 'sender-%s' % uuid.uuid4().hex
    send(host, 'someone@alt.example.test', token)
    assert wait(lambda: relay_message(token)), host.run('tail -20 /var/log/mail.log').stdout
    assert 'with ESMTPSA' in relay_message(token)
    assert 'sasl_username=altuser@relay.example.test' in RELAY.file('/var/log/mail.log').content_string


def test_wrong_password_keeps_mail_queued(host):
    if not is_bad_client(host):
        return
    token = 'badpw-%s' % uuid.uuid4().hex
    send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)

    def deferred():
        return 'SASL authentication failed' in host.file('/var/log/mail.log').content_string

    assert wait(deferred), host.run('tail -20 /var/log/mail.log').stdout
    queue = [json.loads(line) for line in host.check_output('postqueue -j').splitlines() if line]
    assert queue, 'the message left the queue'
    reasons = [rcpt.get('delay_reason', '') for msg in queue for rcpt in msg['recipients']]
    assert any('SASL authentication failed' in reason for reason in reasons), reasons
    assert 'bob@relay.example.test' in host.check_output('mailq')
    assert not relay_message(token)


def test_password_not_in_logs(host):
    log = host.file('/var/log/mail.log').content_string
    assert 'relay-secret-1' not in log
    assert 'alt-secret-2' not in log
