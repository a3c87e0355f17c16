# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tls role: STARTTLS offered, handshake completes with the generated certificate, key protected."""

import time
import uuid

CERT = '/etc/ssl/certs/postfix.pem'
KEY = '/etc/ssl/private/postfix.key'
NAME = 'mail.example.test'


def hardened(host):
    return host.backend.get_hostname().endswith('bookworm')


def s_client(host, *extra):
    return host.run('openssl s_client -starttls smtp -connect 127.0.0.1:25 -servername %s %s </dev/null 2>&1'
                    % (NAME, ' '.join(extra)))


def test_key_file_protected(host):
    key = host.file(KEY)
    assert key.exists
    assert key.user == 'root'
    assert key.group == 'root'
    assert key.mode == 0o600


def test_certificate_names(host):
    text = host.check_output('openssl x509 -in %s -noout -subject -ext subjectAltName', CERT)
    assert 'CN = %s' % NAME in text or 'CN=%s' % NAME in text
    assert 'DNS:%s' % NAME in text
    assert 'DNS:smtp.example.test' in text
    # The guide's -days 3650: valid for roughly ten years.
    assert host.run('openssl x509 -in %s -noout -checkend %s', CERT, str(3600 * 24 * 3600)).rc == 0


def test_key_matches_certificate(host):
    cert_pub = host.check_output('openssl x509 -in %s -noout -pubkey', CERT)
    key_pub = host.check_output('openssl pkey -in %s -pubout', KEY)
    assert cert_pub == key_pub


def test_main_cf(host):
    assert host.check_output('postconf -h smtpd_tls_cert_file') == CERT
    assert host.check_output('postconf -h smtpd_tls_key_file') == KEY
    assert host.check_output('postconf -h smtpd_tls_security_level') == 'may'
    assert host.check_output('postconf -h smtp_tls_security_level') == 'may'
    names = host.check_output('postconf -n -H').split()
    for obsolete in ('smtpd_use_tls', 'smtp_use_tls', 'tls_random_source'):
        assert obsolete not in names


def test_starttls_offered(host):
    ehlo = host.check_output(
        "python3 -c 'import smtplib; s = smtplib.SMTP(\"127.0.0.1\", 25, timeout=20); "
        "print(s.ehlo()[1].decode()); s.quit()'")
    assert 'STARTTLS' in ehlo


def test_presented_certificate_is_the_generated_one(host):
    presented = host.check_output(
        'openssl s_client -starttls smtp -connect 127.0.0.1:25 -servername %s </dev/null 2>/dev/null'
        ' | openssl x509 -noout -fingerprint -sha256', NAME)
    expected = host.check_output('openssl x509 -in %s -noout -fingerprint -sha256', CERT)
    assert presented and presented == expected


def test_handshake_and_tls_delivery(host):
    token = 'tls-%s' % uuid.uuid4().hex
    cmd = host.run('swaks --server 127.0.0.1 --port 25 --tls --from root@%s --to postmaster@%s '
                   '--header "Subject: %s" --body %s', NAME, NAME, token, token)
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    assert 'TLS started' in cmd.stdout
    deadline = time.time() + 30
    mailbox = ''
    while time.time() < deadline:
        mailbox = host.run('cat /var/mail/root').stdout
        if token in mailbox:
            break
        time.sleep(1)
    assert token in mailbox
    assert 'with ESMTPS' in mailbox
    log = host.file('/var/log/mail.log').content_string
    assert 'TLS connection established from' in log


def test_tls_1_2_accepted(host):
    out = s_client(host, '-tls1_2').stdout
    assert 'Protocol  : TLSv1.2' in out or 'TLSv1.2' in out
    assert 'BEGIN CERTIFICATE' in out


def test_hardened_refuses_tls_1_1(host):
    if not hardened(host):
        assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1'
        return
    assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1.2'
    assert host.check_output('postconf -h smtpd_tls_mandatory_ciphers') == 'high'
    # Lower the client's own OpenSSL security level so that only the server can refuse.
    out = s_client(host, '-tls1_1', '-cipher', "'DEFAULT:@SECLEVEL=0'")
    assert 'BEGIN CERTIFICATE' not in out.stdout
