# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Null clients converged by playbooks/null_client.yml with the example inventory's settings.

Mail goes through the relay, authenticated and over TLS; a wrong password keeps it queued. The
tls role's certificate is the one the client's own SMTP server presents, and the example's
null client listens on the loopback only.

Runs on every client (group null_clients); the relay is reached as a second testinfra host.
"""

import json
import re
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


def client_name(host):
    """The client's name on the scenario's network."""
    return host.backend.get_hostname().replace('smarthost-', 'client-')


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
    # The client side of that TLS session, as the tls role's smtp_tls_loglevel reports it.
    assert re.search(r'TLS connection established to relay\.example\.test\[[^]]+\]:587: TLSv1\.[23] ', client_log), \
        [line for line in client_log.splitlines() if 'TLS' in line][-5:]


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


def test_listens_on_loopback_only(host):
    """The example's null client: no SMTP service on the network, no local domain."""
    assert host.check_output('postconf -h inet_interfaces') == 'loopback-only'
    assert host.check_output('postconf -h mydestination') == ''
    listeners = host.check_output("ss -Hltn 'sport = :25' | awk '{print $4}'").split()
    assert listeners and all(addr.startswith(('127.0.0.1:', '[::1]:')) for addr in listeners), listeners
    # A real connection from the relay, on the client's network address, is refused.
    res = RELAY.run('swaks --server %s --port 25 --quit-after CONNECT', client_name(host))
    assert res.rc != 0
    assert 'Connection refused' in res.stdout + res.stderr, res.stdout + res.stderr


def test_tls_certificate_and_key(host):
    cert = host.file('/etc/ssl/certs/postfix.pem')
    key = host.file('/etc/ssl/private/postfix.key')
    assert cert.exists and cert.user == 'root' and cert.mode == 0o644
    assert key.exists and key.user == 'root' and key.group == 'root' and key.mode == 0o600
    assert host.check_output('postconf -h smtpd_tls_cert_file') == cert.path
    assert host.check_output('postconf -h smtpd_tls_key_file') == key.path
    # The key is the certificate's.
    assert host.check_output('openssl x509 -in %s -noout -pubkey', cert.path) == \
        host.check_output('openssl pkey -in %s -pubout', key.path)


def test_starttls_presents_the_certificate(host):
    """An SMTP session on the loopback: STARTTLS is offered and the handshake shows the role's certificate."""
    res = host.run('swaks --server 127.0.0.1 --port 25 --tls --quit-after TLS')
    assert res.rc == 0, res.stdout + res.stderr
    assert '250-STARTTLS' in res.stdout and 'TLS started' in res.stdout, res.stdout
    fingerprint = 'openssl x509 -noout -fingerprint -sha256'
    served = host.check_output('openssl s_client -starttls smtp -connect 127.0.0.1:25 </dev/null 2>/dev/null | ' + fingerprint)
    assert served and served == host.check_output(fingerprint + ' -in /etc/ssl/certs/postfix.pem')
