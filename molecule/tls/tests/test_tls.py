# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tls role: STARTTLS offered, the handshake presents the role's certificate, the key is protected;
mandatory TLS refuses TLS 1.0 and 1.1 while opportunistic TLS keeps Postfix's defaults.

tls-bookworm has a self-signed certificate and the hardened profile; its renewal is proved by
the verifier's own converge (tls_selfsigned_renew_days). tls-trixie has a provided certificate
(content, then files on the controller after the verifier's converge, then those files replaced
in place on the controller and one more run) at other paths, the default protocols, and other logging and client settings. What the verifier's converge changes is
observed before and after it by one fixture, so every test stands alone.
"""

import os
import re
import shutil
import tempfile
import time
import uuid

import pytest
import testinfra
from molecule_helpers import log_lines, run_playbook, wait_until

NAME = 'mail.example.test'
PATHS = {
    'tls-bookworm': ('/etc/ssl/certs/postfix.pem', '/etc/ssl/private/postfix.key'),
    'tls-trixie': ('/etc/ssl/certs/mail-provided.pem', '/etc/ssl/private/mail-provided.key'),
}
PROVIDED = os.path.join(os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', ''), 'provided')
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The verifier's converge: renewal window 90 days on tls-bookworm, certificate "b" as files on tls-trixie
# (copied to current.pem and current.key, which test_replaced_src_files_deployed replaces later).
RECONVERGE_VARS = '''
tls_selfsigned_renew_days: "{{ 90 if inventory_hostname == 'tls-bookworm' else 30 }}"
tls_certificate: ""
tls_private_key: ""
tls_certificate_src: "{{ '' if inventory_hostname == 'tls-bookworm' else tls_test_provided ~ '/current.pem' }}"
tls_private_key_src: "{{ '' if inventory_hostname == 'tls-bookworm' else tls_test_provided ~ '/current.key' }}"
'''


def name_of(host):
    return host.backend.get_hostname()


def hardened(host):
    return name_of(host) == 'tls-bookworm'


def cert_path(host):
    return PATHS[name_of(host)][0]


def key_path(host):
    return PATHS[name_of(host)][1]


def s_client(host, *extra):
    return host.run('openssl s_client -starttls smtp -connect 127.0.0.1:25 -servername %s %s </dev/null 2>&1'
                    % (NAME, ' '.join(extra)))


def fingerprint_file(host, path):
    return host.check_output('openssl x509 -in %s -noout -fingerprint -sha256', path)


def presented(host):
    return host.check_output('openssl s_client -starttls smtp -connect 127.0.0.1:25 -servername %s </dev/null '
                             '2>/dev/null | openssl x509 -noout -fingerprint -sha256', NAME)


def provided(name):
    with open(os.path.join(PROVIDED, name)) as f:
        return f.read().strip()


def state(host):
    """What the certificate looks like now: serial, expiry (seconds from now), public key, PEM, presented."""
    cert = cert_path(host)
    end = host.check_output('date -d "$(openssl x509 -in %s -noout -enddate | cut -d= -f2)" +%%s', cert)
    return {'serial': host.check_output('openssl x509 -in %s -noout -serial', cert).split('=')[-1].lower(),
            'expires_in_days': (int(end) - time.time()) / 86400,
            'pubkey': host.check_output('openssl x509 -in %s -noout -pubkey', cert),
            'pem': host.file(cert).content_string.strip(),
            'file': fingerprint_file(host, cert), 'presented': presented(host)}


_CONVERGES = {}


@pytest.fixture
def reconverge(host):
    """Before and after the verifier's converge (once for both hosts), as seen from each host."""
    if not _CONVERGES:
        hosts = dict((name, testinfra.get_host('docker://' + name)) for name in PATHS)
        _CONVERGES['before'] = dict((name, state(h)) for name, h in hosts.items())
        for ext in ('pem', 'key'):
            shutil.copyfile(os.path.join(PROVIDED, 'b.' + ext), os.path.join(PROVIDED, 'current.' + ext))
        with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as f:
            f.write(RECONVERGE_VARS)
        try:
            _CONVERGES['run'] = run_playbook(os.path.join(SCENARIO_DIR, 'converge.yml'), '-e', '@' + f.name)
        finally:
            os.unlink(f.name)
        # The reload the run triggered is done once the new certificate is presented.
        for name, h in hosts.items():
            wait_until(lambda h=h: presented(h) == fingerprint_file(h, PATHS[name_of(h)][0]), 30)
        _CONVERGES['after'] = dict((name, state(h)) for name, h in hosts.items())
    assert _CONVERGES['run']['rc'] == 0, _CONVERGES['run']['out'][-3000:]
    return _CONVERGES['before'][name_of(host)], _CONVERGES['after'][name_of(host)]


def test_key_file_protected(host):
    key = host.file(key_path(host))
    assert key.exists
    assert key.user == 'root'
    assert key.group == 'root'
    assert key.mode == 0o600


def test_certificate_names(host):
    text = host.check_output('openssl x509 -in %s -noout -subject -ext subjectAltName', cert_path(host))
    assert 'CN = %s' % NAME in text or 'CN=%s' % NAME in text
    assert 'DNS:%s' % NAME in text
    assert 'DNS:smtp.example.test' in text


def test_key_matches_certificate(host):
    cert_pub = host.check_output('openssl x509 -in %s -noout -pubkey', cert_path(host))
    key_pub = host.check_output('openssl pkey -in %s -pubout', key_path(host))
    assert cert_pub == key_pub


def test_main_cf(host):
    assert host.check_output('postconf -h smtpd_tls_cert_file') == cert_path(host)
    assert host.check_output('postconf -h smtpd_tls_key_file') == key_path(host)
    assert host.check_output('postconf -h smtpd_tls_security_level') == ('may' if hardened(host) else 'encrypt')
    names = host.check_output('postconf -n -H').split()
    for obsolete in ('smtpd_use_tls', 'smtp_use_tls', 'tls_random_source'):
        assert obsolete not in names
    # The client side and the other settings: the defaults on tls-bookworm, the scenario's on tls-trixie.
    expected = {
        'smtp_tls_security_level': ('may', 'encrypt'),
        'smtp_tls_loglevel': ('1', '2'),
        'smtp_tls_note_starttls_offer': ('yes', 'no'),
        'smtpd_tls_session_cache_timeout': ('3600s', '1800s'),
        'smtp_tls_session_cache_timeout': ('3600s', '1800s'),
        'smtpd_tls_loglevel': ('1', '0'),
        'smtpd_tls_received_header': ('yes', 'no'),
    }
    for name, (bookworm, trixie) in expected.items():
        assert host.check_output('postconf -h %s', name) == (bookworm if hardened(host) else trixie), name
    if not hardened(host):
        assert host.check_output('postconf -n smtpd_tls_eecdh_grade') == 'smtpd_tls_eecdh_grade = strong'


def test_starttls_offered(host):
    ehlo = host.check_output(
        "python3 -c 'import smtplib; s = smtplib.SMTP(\"127.0.0.1\", 25, timeout=20); "
        "print(s.ehlo()[1].decode()); s.quit()'")
    assert 'STARTTLS' in ehlo


def test_mail_without_starttls(host):
    """tls_smtpd_security_level: encrypt (tls-trixie) refuses MAIL before STARTTLS; may (tls-bookworm) takes it."""
    reply = host.check_output(
        "python3 -c 'import smtplib; s = smtplib.SMTP(\"127.0.0.1\", 25, timeout=20); s.ehlo(\"client.example.test\"); "
        "print(*s.docmd(\"MAIL FROM:<root@%s>\")); s.quit()'" % NAME)
    if hardened(host):
        assert reply.startswith('250 '), reply
    else:
        assert reply.startswith("530 b'5.7.0 Must issue a STARTTLS command first"), reply


def test_presented_certificate_is_the_installed_one(host):
    assert presented(host) == fingerprint_file(host, cert_path(host))


def test_handshake_and_tls_delivery(host):
    """Delivered over TLS (ESMTPS); the TLS details in the Received header and the log follow
    tls_smtpd_received_header and tls_smtpd_loglevel (on, 1 on tls-bookworm; off, 0 on tls-trixie)."""
    token = 'tls-%s' % uuid.uuid4().hex
    pattern = r'postfix/smtpd\[[0-9]+\]: .*TLS connection established from'
    before = len(log_lines(host, pattern))
    cmd = host.run('swaks --server 127.0.0.1 --port 25 --tls --from root@%s --to postmaster@%s '
                   '--header "Subject: %s" --body %s', NAME, NAME, token, token)
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    assert 'TLS started' in cmd.stdout
    assert wait_until(lambda: token in host.run('cat /var/mail/root').stdout, 30)
    message = [m for m in host.run('cat /var/mail/root').stdout.split('\nFrom ') if token in m][0]
    received = message[:message.index('Subject:')]
    assert 'with ESMTPS' in received
    assert ('(using TLSv1' in received) is hardened(host), received
    # The session is over (the message was delivered): its log lines are written.
    assert (len(log_lines(host, pattern)) > before) is hardened(host)


def test_tls_1_2_accepted(host):
    out = s_client(host, '-tls1_2').stdout
    assert re.search(r'Protocol\s*:\s*TLSv1\.2', out), out
    assert 'BEGIN CERTIFICATE' in out


def starttls_protocol(host, port, *options):
    """The protocol a STARTTLS handshake on 127.0.0.1:port agreed on, or None when the server refused it.

    The client's own OpenSSL is allowed TLS 1.0 and 1.1 (SECLEVEL=0), so only the server can refuse."""
    out = host.run("timeout 20 openssl s_client -starttls smtp -connect 127.0.0.1:%s -servername %s "
                   "-cipher 'DEFAULT:@SECLEVEL=0' %s </dev/null 2>&1" % (port, NAME, ' '.join(options))).stdout
    match = re.search(r'Protocol\s*:\s*(TLSv[0-9.]+)', out)
    if match and 'Cipher is (NONE)' not in out and 'BEGIN CERTIFICATE' in out:
        return match.group(1)
    # A refusal is the server's protocol-version alert, not any client-side error.
    assert 'alert protocol version' in out, out
    return None


def test_mandatory_tls_needs_tls_1_2(host):
    """Where TLS is mandatory, TLS 1.1 is refused with the server's protocol alert and TLS 1.2 works (positive
    control on the same port): on tls-bookworm (hardened, port 25) everywhere; on tls-trixie (not hardened)
    on its port 25, which requires TLS, while the opportunistic test service on port 2525 keeps Postfix's
    defaults and speaks TLS 1.1 (RFC 7435)."""
    for side in ('smtpd', 'smtp'):
        assert host.check_output('postconf -h %s_tls_mandatory_protocols' % side) == '>=TLSv1.2'
    assert starttls_protocol(host, 25, '-tls1_1') is None
    assert starttls_protocol(host, 25, '-tls1_2') == 'TLSv1.2'
    if hardened(host):
        assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1.2'
        assert host.check_output('postconf -h smtpd_tls_mandatory_ciphers') == 'high'
    else:
        assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1'
        assert starttls_protocol(host, 2525, '-tls1_1') == 'TLSv1.1'


def test_selfsigned_renewal(host, reconverge):
    """tls_selfsigned_renew_days: a certificate that expires within the window is made again."""
    if name_of(host) != 'tls-bookworm':
        pytest.skip('tls-bookworm has the self-signed certificate')
    before, after = reconverge
    # prepare.yml kept the serial number as a decimal number, openssl prints it in hexadecimal.
    prepared = int(host.file('/root/tls-test-prepared-serial').content_string.strip())
    # The converge with the default window (30 days) kept the 60-day certificate made in prepare.yml.
    assert int(before['serial'].replace(':', ''), 16) == prepared
    assert 50 < before['expires_in_days'] < 61
    # The converge with a 90-day window made a new one: same key and names, valid for
    # tls_selfsigned_days (3000).
    assert after['serial'] != before['serial']
    assert after['pubkey'] == before['pubkey']
    assert 2990 < after['expires_in_days'] < 3001
    assert after['presented'] == after['file'] != before['file']


def test_provided_certificate(host, reconverge):
    """tls_certificate and tls_private_key as content, then tls_certificate_src and tls_private_key_src."""
    if name_of(host) != 'tls-trixie':
        pytest.skip('tls-trixie has the provided certificate')
    before, after = reconverge
    assert before['pem'] == provided('a.pem')
    assert before['presented'] == before['file']
    assert after['pem'] == provided('b.pem')
    assert after['presented'] == after['file'] != before['file']
    key = host.file(key_path(host))
    assert key.content_string.strip() == provided('b.key') and key.mode == 0o600
    # Nothing was generated at the default paths.
    assert not host.file('/etc/ssl/private/postfix.key').exists


def test_replaced_src_files_deployed(host, reconverge):
    """A certificate and key replaced in place on the controller (same tls_certificate_src and
    tls_private_key_src) are deployed and served after the very next run."""
    if name_of(host) != 'tls-trixie':
        pytest.skip('tls-trixie has the provided certificate files')
    before, after = reconverge
    assert after['pem'] == provided('b.pem')
    for ext in ('pem', 'key'):
        shutil.copyfile(os.path.join(PROVIDED, 'a.' + ext), os.path.join(PROVIDED, 'current.' + ext))
    with tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False) as f:
        f.write(RECONVERGE_VARS)
    try:
        run = run_playbook(os.path.join(SCENARIO_DIR, 'converge.yml'), '-e', '@' + f.name, '--limit', 'tls-trixie')
    finally:
        os.unlink(f.name)
    assert run['rc'] == 0, run['out'][-3000:]
    assert wait_until(lambda: presented(host) == fingerprint_file(host, cert_path(host)), 30)
    assert host.file(cert_path(host)).content_string.strip() == provided('a.pem')
    assert host.file(key_path(host)).content_string.strip() == provided('a.key')
    assert presented(host) != after['presented']
