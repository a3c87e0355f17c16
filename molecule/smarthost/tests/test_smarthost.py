# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Null clients converged by playbooks/null_client.yml with the example inventory's settings.

Mail goes through the relay, authenticated and over TLS; a wrong password, or SASL security
options that exclude every mechanism the relay offers, keep it queued. The Debian 13 client
finds the relay through an MX record (smarthost_mx_lookup), the Debian 12 client may only use
the LOGIN mechanism (smarthost_sasl_mechanism_filter). The tls role's certificate is the one the
client's own SMTP server presents, and the example's null client listens on the loopback only.

Runs on every client (group null_clients); the relay is reached as a second testinfra host. What
the relay logged about a message is found through the relay's queue id in the message's
Received header, so two clients sending at once cannot be mistaken for each other.
"""

import json
import os
import re
import time
import uuid

import pytest
import testinfra
from molecule_helpers import log_lines, run_playbook, wait_until

RELAY = testinfra.get_host('docker://smarthost-relay')
# Clients whose mail must stay queued, and why.
STUCK = {
    'smarthost-badpw': 'SASL authentication failed',
    'smarthost-noplain': 'no mechanism available',
}


@pytest.fixture(autouse=True)
def clients_only(host):
    """The tests run on the clients; the relay is examined from them."""
    if host.backend.get_hostname() == 'smarthost-relay':
        pytest.skip('the relay is examined through the clients')


@pytest.fixture
def delivering(host):
    """The clients whose mail reaches the relay."""
    if host.backend.get_hostname() in STUCK:
        pytest.skip('this client cannot authenticate to the relay (%s)' % STUCK[host.backend.get_hostname()])
    return host


@pytest.fixture
def stuck(host):
    """The clients whose mail must stay queued."""
    if host.backend.get_hostname() not in STUCK:
        pytest.skip('this client authenticates to the relay')
    return STUCK[host.backend.get_hostname()]


def send(host, sender, token):
    cmd = host.run("printf 'Subject: %s\\nFrom: %s\\n\\nbody %s\\n' | /usr/sbin/sendmail -f %s bob@relay.example.test",
                   token, sender, token, sender)
    assert cmd.rc == 0, cmd.stderr


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
        # smarthost_tls_mandatory_protocols: TLS 1.3 only towards the relay (it speaks it).
        return 'fingerprint protocols=>=TLSv1.3 match=%s' % relay_fingerprint()
    return 'encrypt protocols=>=TLSv1.2'


def relay_session(message):
    """The relay's log line that names the client and its SASL login for this message (by its queue id)."""
    match = re.search(r'by relay\.example\.test \(Postfix\) with (\w+) id ([0-9A-Za-z]+)', message)
    assert match, message[:2000]
    lines = log_lines(RELAY, r'postfix/submission/smtpd\[[0-9]+\]: %s: client=' % match.group(2))
    assert len(lines) == 1, lines
    return match.group(1), lines[0]


def delivered(host, sender):
    """Send a message from ``sender``; returns (the relay's protocol, its client line) once it arrived."""
    token = 'smarthost-%s' % uuid.uuid4().hex
    send(host, sender, token)
    assert wait_until(lambda: relay_message(token), 60), host.run('tail -20 /var/log/mail.log').stdout
    return relay_session(relay_message(token)), token


def tables(host):
    """(password, TLS policy, sender relay) tables: at other paths on the client with the wrong password."""
    if host.backend.get_hostname() == 'smarthost-badpw':
        return '/etc/postfix/relay_passwords', '/etc/postfix/relay_tls', '/etc/postfix/relay_senders'
    return '/etc/postfix/sasl_passwd', '/etc/postfix/smarthost_tls_policy', '/etc/postfix/sender_relayhost'


def test_main_cf(host):
    trixie = host.backend.get_hostname() == 'smarthost-trixie'
    passwords, policy, senders = tables(host)
    relayhost = 'relays.example.test:587' if trixie else '[relay.example.test]:587'
    assert host.check_output('postconf -h relayhost') == relayhost
    assert host.check_output('postconf -h smtp_sasl_auth_enable') == 'yes'
    assert host.check_output('postconf -h smtp_sasl_password_maps') == 'hash:' + passwords
    assert host.check_output('postconf -h smtp_tls_policy_maps') == 'hash:' + policy
    assert host.check_output('postconf -h sender_dependent_relayhost_maps') == 'hash:' + senders
    assert host.check_output('postconf -h smtp_sender_dependent_authentication') == 'yes'
    # No plaintext mechanism without TLS; PLAIN and LOGIN inside TLS.
    assert host.check_output('postconf -h smtp_sasl_security_options') == 'noplaintext, noanonymous'
    noplain = host.backend.get_hostname() == 'smarthost-noplain'
    assert host.check_output('postconf -h smtp_sasl_tls_security_options') == \
        ('noanonymous, noplaintext' if noplain else 'noanonymous')
    # The global client TLS level is untouched; the relay gets its level through the policy table.
    assert host.check_output('postconf -h smtp_tls_security_level') == 'may'
    for relay in (relayhost, '[relay.example.test]:2526'):
        assert host.check_output('postmap -q "%s" hash:%s' % (relay, policy)) == expected_policy(host)
    assert host.check_output('postmap -q @alt.example.test hash:%s', senders) == '[relay.example.test]:587'
    if host.backend.get_hostname() == 'smarthost-bookworm':
        # smarthost_tls_ca_file: the trust anchors at another path on this client.
        assert host.check_output('postconf -h smtp_tls_CAfile') == '/etc/postfix/relay_ca.pem'
        assert host.file('/etc/postfix/relay_ca.pem').content_string.strip() == \
            RELAY.file('/etc/ssl/certs/postfix.pem').content_string.strip()
    else:
        assert host.check_output('postconf -h smtp_tls_CAfile') == ''
        assert not host.file('/etc/postfix/smarthost_tls_ca.pem').exists
    # smarthost_params, on the client with the wrong password.
    badpw = host.backend.get_hostname() == 'smarthost-badpw'
    assert host.check_output('postconf -h smtp_connect_timeout') == ('15s' if badpw else '30s')


def test_password_table_protected(host):
    for path in (tables(host)[0], tables(host)[0] + '.db'):
        table = host.file(path)
        assert table.exists
        assert table.user == 'root'
        assert table.mode == 0o600


def test_sasl_client_modules_installed(host):
    assert host.package('libsasl2-modules').is_installed


def test_mail_arrives_authenticated_over_tls(delivering):
    host = delivering
    (protocol, session), dummy = delivered(host, 'root@%s' % host.check_output('postconf -h myhostname'))
    # Authenticated (ESMTPSA: ESMTP + TLS + SASL) and over TLS, as the relay's Received header says,
    # by this client, with the relay account.
    assert protocol == 'ESMTPSA'
    assert re.search(r'client=[^,]*\[%s\]' % re.escape(own_address(host)), session), session
    assert 'sasl_username=relayuser@relay.example.test' in session, session
    client_log = host.file('/var/log/mail.log').content_string
    assert 'relay=relay.example.test' in client_log
    # The client side of that TLS session, as the tls role's smtp_tls_loglevel reports it: verified where the
    # client checks the relay's certificate (secure: CA and name; fingerprint: pinned), untrusted with encrypt.
    trust = 'Untrusted' if host.backend.get_hostname() == 'smarthost-badpw' else 'Verified'
    # smarthost-trixie asks for TLS 1.3 (smarthost_tls_mandatory_protocols).
    version = '3' if host.backend.get_hostname() == 'smarthost-trixie' else '[23]'
    assert re.search(r'%s TLS connection established to relay\.example\.test\[[^]]+\]:587: TLSv1\.%s ' % (trust, version),
                     client_log), [line for line in client_log.splitlines() if 'TLS' in line][-5:]


def own_address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def test_sender_dependent_credentials(delivering):
    (protocol, session), dummy = delivered(delivering, 'someone@alt.example.test')
    assert protocol == 'ESMTPSA'
    assert re.search(r'client=[^,]*\[%s\]' % re.escape(own_address(delivering)), session), session
    assert 'sasl_username=altuser@relay.example.test' in session, session


def test_mechanism_filter(delivering):
    """smarthost_sasl_mechanism_filter: [login] on the Debian 12 client; the others take PLAIN, the relay's first."""
    host = delivering
    (dummy, session), dummy2 = delivered(host, 'root@%s' % host.check_output('postconf -h myhostname'))
    if host.backend.get_hostname() == 'smarthost-bookworm':
        assert host.check_output('postconf -h smtp_sasl_mechanism_filter') == 'login'
        assert 'sasl_method=LOGIN' in session, session
    else:
        assert host.check_output('postconf -h smtp_sasl_mechanism_filter') == ''
        assert 'sasl_method=PLAIN' in session, session


def test_relay_found_by_mx_lookup(host):
    """smarthost_mx_lookup on the Debian 13 client: relays.example.test has an MX record and no address."""
    if host.backend.get_hostname() != 'smarthost-trixie':
        pytest.skip('only the Debian 13 client looks the relay up by MX')
    assert host.run('getent hosts relays.example.test').rc != 0, 'relays.example.test must have no address'
    token = 'mx-%s' % uuid.uuid4().hex
    send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)
    assert wait_until(lambda: relay_message(token), 60), host.run('tail -20 /var/log/mail.log').stdout
    # The client delivered to the MX host of the relayhost name, on the relayhost's port.
    sent = wait_until(lambda: [line for line in log_lines(host, r'postfix/smtp\[[0-9]+\]: [0-9A-F]+: to=<bob@relay'
                                                                r'\.example\.test>.*status=sent')
                               if 'relay=relay.example.test[' in line and ']:587' in line], 30)
    assert sent, host.run('tail -20 /var/log/mail.log').stdout


def test_stuck_client_keeps_mail_queued(host, stuck):
    token = 'stuck-%s' % uuid.uuid4().hex
    send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)

    def reasons():
        queue = [json.loads(line) for line in host.check_output('postqueue -j').splitlines() if line]
        return [rcpt.get('delay_reason', '') for msg in queue for rcpt in msg['recipients']
                if stuck in rcpt.get('delay_reason', '')]

    # The delivery attempt is over (the message is deferred, with the reason) before anything is checked.
    assert wait_until(reasons, 60), host.run('tail -20 /var/log/mail.log').stdout
    assert 'bob@relay.example.test' in host.check_output('mailq')
    assert not relay_message(token)
    if host.backend.get_hostname() == 'smarthost-noplain':
        # The password is right: the client refused every mechanism the relay offers, so it never sent AUTH.
        assert host.check_output('postconf -h smtp_sasl_tls_security_options') == 'noanonymous, noplaintext'
        assert not log_lines(RELAY, r'SASL [A-Z]+ authentication failed.*\[%s\]' % re.escape(own_address(host)))


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
    assert wait_until(lambda: any(queue_reasons(host, token))), host.run('tail -20 /var/log/mail.log').stdout
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
    run = run_playbook(os.path.join(SCENARIO_DIR, 'converge.yml'), '--limit', 'smarthost-relay,smarthost-trixie', *args)
    return run['rc'], run['out']


def test_wrong_fingerprint_keeps_mail_and_password(host):
    """Run last: smarthost-trixie pins a fingerprint that is not the relay's, sends, and is converged back."""
    if host.backend.get_hostname() != 'smarthost-trixie':
        pytest.skip('smarthost-trixie pins the relay certificate')
    wrong = ':'.join(['AB'] * 32)
    rc, out = converge('-e', json.dumps({'smarthost_tls_fingerprints': [wrong]}))
    assert rc == 0, out[-3000:]
    try:
        assert host.check_output('postmap -q "relays.example.test:587" hash:/etc/postfix/smarthost_tls_policy') == \
            'fingerprint protocols=>=TLSv1.3 match=%s' % wrong
        token = 'pinned-%s' % uuid.uuid4().hex
        logins = sasl_logins(host)
        send(host, 'root@%s' % host.check_output('postconf -h myhostname'), token)
        assert wait_until(lambda: any(queue_reasons(host, token))), host.run('tail -20 /var/log/mail.log').stdout
        reasons = queue_reasons(host, token)
        assert all('certificate' in reason.lower() for reason in reasons), reasons
        assert sasl_logins(host) == logins
        assert not relay_message(token)
    finally:
        rc, out = converge()
        assert rc == 0, out[-3000:]
    # With the right fingerprint again, the queued message goes out.
    host.run('postqueue -f')
    assert wait_until(lambda: relay_message(token), 90)
