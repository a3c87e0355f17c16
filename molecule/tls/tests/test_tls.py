# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tls role: STARTTLS offered, handshake completes with the generated (or provided) certificate, key
protected; mandatory TLS refuses TLS 1.1 while opportunistic TLS keeps Postfix's defaults; a certificate
replaced on the controller is served after the next run."""

import datetime
import os
import re
import subprocess
import time
import uuid

import pytest

CERT = '/etc/ssl/certs/postfix.pem'
KEY = '/etc/ssl/private/postfix.key'
NAME = 'mail.example.test'


def hardened(host):
    return host.backend.get_hostname().endswith('bookworm')


def name_of(host):
    return host.backend.get_hostname()


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


def protocol(host, port, *options):
    """The protocol a STARTTLS handshake agreed on (the client's OpenSSL allows TLS 1.0 and 1.1), or None."""
    out = host.run("timeout 20 openssl s_client -starttls smtp -connect 127.0.0.1:%s -cipher 'DEFAULT:@SECLEVEL=0' %s "
                   "</dev/null 2>&1" % (port, ' '.join(options))).stdout
    match = re.search(r'Protocol\s*:\s*(TLSv[0-9.]+)', out)
    return match.group(1) if match and 'Cipher is (NONE)' not in out else None


def test_mandatory_tls_needs_tls_1_2(host):
    for side in ('smtpd', 'smtp'):
        assert host.check_output('postconf -h %s_tls_mandatory_protocols' % side) == '>=TLSv1.2'
    if name_of(host) != 'tls-trixie':
        return
    # tls_hardened: false and OpenSSL allowed to speak TLS 1.1: port 25 (opportunistic) does, the test service
    # that requires TLS (port 2587) refuses it and speaks TLS 1.2.
    assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1'
    assert protocol(host, 25, '-tls1_1') == 'TLSv1.1'
    assert protocol(host, 2587, '-tls1_1') is None
    assert protocol(host, 2587, '-tls1_2') == 'TLSv1.2'


# ---------------------------------------------------------------- a provided certificate, replaced on the controller

PROVIDED = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', ''), 'provided')
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def served_fingerprint(host):
    return host.check_output('openssl s_client -starttls smtp -connect 127.0.0.1:25 -servername %s </dev/null 2>/dev/null'
                             ' | openssl x509 -noout -fingerprint -sha256', NAME)


def local_fingerprint(path):
    return subprocess.run(['openssl', 'x509', '-in', path, '-noout', '-fingerprint', '-sha256'], capture_output=True,
                          text=True, check=True).stdout.strip()


def make_certificate(directory):
    """A new key and self-signed certificate, written over the controller's files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME), x509.DNSName('smtp.example.test')]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(directory, 'key.pem'), 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(os.path.join(directory, 'cert.pem'), 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))


def test_provided_certificate_served(host):
    if name_of(host) != 'tls-provided':
        pytest.skip('the host with a provided certificate')
    assert served_fingerprint(host) == local_fingerprint(os.path.join(PROVIDED, 'cert.pem'))
    assert host.file(CERT).content_string == open(os.path.join(PROVIDED, 'cert.pem')).read()
    key = host.file(KEY)
    assert (key.user, key.group, key.mode) == ('root', 'root', 0o600)


def test_replaced_certificate_deployed_on_the_next_run(host):
    """Run last: it replaces the certificate and key on the controller, then runs the converge playbook once."""
    if name_of(host) != 'tls-provided':
        pytest.skip('the host with a provided certificate')
    before = served_fingerprint(host)
    make_certificate(PROVIDED)
    replaced = local_fingerprint(os.path.join(PROVIDED, 'cert.pem'))
    assert replaced != before
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    run = subprocess.run(['ansible-playbook', '-i', env['MOLECULE_INVENTORY_FILE'], os.path.join(SCENARIO_DIR, 'converge.yml'),
                          '--limit', 'tls-provided'], capture_output=True, text=True, env=env, timeout=900, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    # The tls role's input is unchanged (same paths), so it ends early - after the provided files were copied.
    tasks = dict(re.findall(r'^TASK \[estafeta\.postfix\.tls : ([^\]]+)\][^\n]*\n(.*?)(?=^TASK \[|^RUNNING HANDLER|^PLAY RECAP)',
                            out, re.M | re.S))
    assert 'changed: [tls-provided]' in tasks['Install the certificate'], out[-3000:]
    assert 'changed: [tls-provided]' in tasks['Install the private key'], out[-3000:]
    assert 'skipping' not in tasks['End here when the host is already as this role leaves it']
    assert 'Set the TLS parameters' not in tasks
    assert 'RUNNING HANDLER [estafeta.postfix.common : Reload Postfix]' in out, out[-3000:]
    deadline = time.time() + 30
    while served_fingerprint(host) != replaced and time.time() < deadline:
        time.sleep(1)
    assert served_fingerprint(host) == replaced
    assert host.check_output('openssl x509 -in %s -noout -pubkey', CERT) == host.check_output('openssl pkey -in %s -pubout', KEY)
