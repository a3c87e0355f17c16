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
import os
import re
import subprocess
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


def relay_fingerprint():
    return RELAY.check_output('openssl x509 -in /etc/ssl/certs/postfix.pem -noout -fingerprint -sha256').split('=')[-1]


# The policy each client has towards the relay (both ports): mandatory TLS (the clients send credentials),
# TLS 1.2 or later, and the certificate verified (bookworm: CA and name) or pinned (trixie).
def expected_policy(host):
    name = host.backend.get_hostname()
    if name == 'smarthost-bookworm':
        return 'secure protocols=>=TLSv1.2'
    if name == 'smarthost-trixie':
        return 'fingerprint protocols=>=TLSv1.2 match=%s' % relay_fingerprint()
    return 'encrypt protocols=>=TLSv1.2'


def test_main_cf(host):
    assert host.check_output('postconf -h relayhost') == '[relay.example.test]:587'
    assert host.check_output('postconf -h smtp_sasl_auth_enable') == 'yes'
    assert host.check_output('postconf -h smtp_sender_dependent_authentication') == 'yes'
    # No plaintext mechanism without TLS; PLAIN and LOGIN inside TLS.
    assert host.check_output('postconf -h smtp_sasl_security_options') == 'noplaintext, noanonymous'
    assert host.check_output('postconf -h smtp_sasl_tls_security_options') == 'noanonymous'
    # The global client TLS level is untouched; the relay gets its level through the policy table.
    assert host.check_output('postconf -h smtp_tls_security_level') == 'may'
    for relay in ('[relay.example.test]:587', '[relay.example.test]:2526'):
        assert host.check_output('postmap -q "%s" hash:/etc/postfix/smarthost_tls_policy' % relay) == expected_policy(host)
    assert host.check_output('postmap -q @alt.example.test hash:/etc/postfix/sender_relayhost') == '[relay.example.test]:587'
    if host.backend.get_hostname() == 'smarthost-bookworm':
        assert host.check_output('postconf -h smtp_tls_CAfile') == '/etc/postfix/smarthost_tls_ca.pem'
        assert host.file('/etc/postfix/smarthost_tls_ca.pem').content_string.strip() == \
            RELAY.file('/etc/ssl/certs/postfix.pem').content_string.strip()
    else:
        assert host.check_output('postconf -h smtp_tls_CAfile') == ''
        assert not host.file('/etc/postfix/smarthost_tls_ca.pem').exists


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
    # The client side of that TLS session, as the tls role's smtp_tls_loglevel reports it: verified where the
    # client checks the relay's certificate (secure: CA and name; fingerprint: pinned), untrusted with encrypt.
    trust = 'Untrusted' if host.backend.get_hostname() == 'smarthost-badpw' else 'Verified'
    assert re.search(r'%s TLS connection established to relay\.example\.test\[[^]]+\]:587: TLSv1\.[23] ' % trust,
                     client_log), [line for line in client_log.splitlines() if 'TLS' in line][-5:]


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


def queue_reasons(host, token):
    reasons = []
    for line in host.run('postqueue -j').stdout.splitlines():
        message = json.loads(line)
        if token in host.run('postcat -q %s', message['queue_id']).stdout:
            reasons += [rcpt.get('delay_reason', '') for rcpt in message['recipients']]
    return reasons


def sasl_logins(client):
    """Number of successful logins of this client on the relay so far (the relay's log)."""
    address = client.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")
    log = RELAY.file('/var/log/mail.log').content_string
    return len([line for line in log.splitlines() if '[%s]' % address in line and 'sasl_username=' in line])


def test_relay_speaking_tls_1_1_refused(host):
    """The relay's port 2526 speaks TLS 1.1 at most. OpenSSL on both sides would agree on TLS 1.1 (the
    control below); the client, which sends credentials there, must not."""
    control = host.run("timeout 20 openssl s_client -starttls smtp -connect relay.example.test:2526 -tls1_1 "
                       "-cipher 'DEFAULT:@SECLEVEL=0' </dev/null")
    assert re.search(r'Protocol\s*:\s*TLSv1\.1', control.stdout) and 'Cipher is (NONE)' not in control.stdout, \
        control.stdout + control.stderr
    token = 'legacy-%s' % uuid.uuid4().hex
    logins = sasl_logins(host)
    send(host, 'someone@legacy-tls.example.test', token)
    assert wait(lambda: any(queue_reasons(host, token))), host.run('tail -20 /var/log/mail.log').stdout
    reasons = queue_reasons(host, token)
    assert all('TLS' in reason for reason in reasons), reasons
    assert not relay_message(token)
    assert sasl_logins(host) == logins
    client_log = host.file('/var/log/mail.log').content_string
    assert not re.search(r'TLS connection established to relay\.example\.test\[[^]]+\]:2526', client_log)
    for line in host.run('postqueue -j').stdout.splitlines():
        message = json.loads(line)
        if token in host.run('postcat -q %s', message['queue_id']).stdout:
            host.run('postsuper -d %s', message['queue_id'])


SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def converge(*args):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    proc = subprocess.run(['ansible-playbook', '-i', env['MOLECULE_INVENTORY_FILE'], os.path.join(SCENARIO_DIR, 'converge.yml'),
                           '--limit', 'smarthost-relay,smarthost-trixie'] + list(args),
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_wrong_fingerprint_keeps_mail_and_password(host):
    """Run last: smarthost-trixie pins a fingerprint that is not the relay's, sends, and is converged back."""
    if host.backend.get_hostname() != 'smarthost-trixie':
        pytest.skip('smarthost-trixie pins the relay certificate')
    wrong = ':'.join(['AB'] * 32)
    rc, out = converge('-e', json.dumps({'smarthost_tls_fingerprints': [wrong]}))
    assert rc == 0, out[-3000:]
    try:
        assert host.check_output('postmap -q "[relay.example.test]:587" hash:/etc/postfix/smarthost_tls_policy') == \
            'fingerprint protocols=>=TLSv1.2 match=%s' % wrong
        token = 'pinned-%s' % uuid.uuid4().hex
        logins = sasl_logins(host)
        send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)
        assert wait(lambda: any(queue_reasons(host, token))), host.run('tail -20 /var/log/mail.log').stdout
        reasons = queue_reasons(host, token)
        assert all('certificate' in reason.lower() for reason in reasons), reasons
        assert sasl_logins(host) == logins
        assert not relay_message(token)
    finally:
        rc, out = converge()
        assert rc == 0, out[-3000:]
    # With the right fingerprint again, the queued message goes out.
    host.run('postqueue -f')
    assert wait(lambda: relay_message(token), 90)
