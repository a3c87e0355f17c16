# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Content checks, amavisd-new, ClamAV and SpamAssassin proved over SMTP.

Every test stands alone: the one that stops clamd starts it again and waits until it answers, and
the tests that need clamd wait for it too. A message that must not reach the mailbox is checked
once it has left the queue for good.
"""

import base64
import json
import re
import uuid

import pytest
from molecule_helpers import left_queue, wait_until

RCPT = 'alice@mail.example.test'
# The EICAR anti-virus test file and the GTUBE anti-spam test string, kept apart so that this file
# itself matches neither.
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$' + 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*' + 'GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
QUARANTINE = '/var/lib/amavis/virusmails'

# Runs inside the container: sends one message read from stdin, prints the outcome (the reply to
# DATA, with the queue id when it was accepted) as JSON.
SEND = r'''
import json, smtplib, sys
msg = sys.stdin.read().replace("\n", "\r\n")
s = smtplib.SMTP("127.0.0.1", 25, timeout=60)
s.ehlo("client.example.org")
s.mail("bob@example.org")
s.rcpt(sys.argv[1])
try:
    code, reply = s.data(msg.encode("utf-8"))
    out = {"code": code, "msg": reply.decode()}
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


def mailbox(host):
    mbox = host.file('/var/mail/alice')
    return mbox.content_string if mbox.exists else ''


def wait_for_mailbox(host, text, timeout=60):
    return wait_until(lambda: text in mailbox(host) and mailbox(host), timeout,
                      what='%r reaching /var/mail/alice' % text)


def clamd_answers(host):
    return host.run('clamdscan --no-summary /etc/hostname').rc == 0


@pytest.fixture
def clamd(host):
    """clamd answering (another test stops it for a moment and starts it again)."""
    wait_until(lambda: clamd_answers(host), 180, step=2, what='clamd answering')
    return host


def amavis_port(host):
    """amavisd-new's port: the default on Debian 12, content_filter_amavis_port on Debian 13."""
    return 10034 if host.backend.get_hostname().endswith('trixie') else 10024


def test_parameters(host):
    conf = host.check_output('postconf -n')
    assert 'header_checks = pcre:/etc/postfix/header_checks' in conf
    assert 'mime_header_checks = pcre:/etc/postfix/mime_header_checks' in conf
    assert 'body_checks = pcre:/etc/postfix/body_checks' in conf
    assert 'content_filter = smtp-amavis:[127.0.0.1]:%d' % amavis_port(host) in conf


def trixie(host):
    """content_filter-trixie: other ports, maxproc and re-injection override (see molecule.yml)."""
    return host.backend.get_hostname().endswith('trixie')


def reinject(host):
    """amavisd-new's way back into Postfix: the re-injection listener's address and port."""
    return ('127.0.0.2', 10035) if trixie(host) else ('127.0.0.1', 10025)


def test_master_services(host):
    amavis = host.check_output('postconf -M smtp-amavis/unix').split()
    assert amavis[:8] == ['smtp-amavis', 'unix', '-', '-', 'n', '-', '3' if trixie(host) else '2', 'smtp']
    overrides = host.check_output('postconf -P smtp-amavis/unix')
    assert 'smtp-amavis/unix/smtp_data_done_timeout = 1200' in overrides
    assert 'smtp-amavis/unix/smtp_send_xforward_command = yes' in overrides
    service = '%s:%d' % reinject(host)
    listener = host.check_output("postconf -M '%s/inet'" % service).split()
    # Twice as many processes as amavisd-new has children (content_filter_amavis_maxproc): never at its limit.
    assert listener[:8] == [service, 'inet', 'n', '-', 'n', '-', '6' if trixie(host) else '4', 'smtpd']
    overrides = host.check_output("postconf -P '%s/inet'" % service).splitlines()
    expected = {
        'content_filter': '', 'local_recipient_maps': '', 'relay_recipient_maps': '',
        'smtpd_restriction_classes': '', 'smtpd_client_restrictions': '',
        'smtpd_helo_restrictions': '', 'smtpd_sender_restrictions': '',
        'smtpd_recipient_restrictions': 'permit_mynetworks,reject',
        'smtpd_relay_restrictions': 'permit_mynetworks,reject',
        'mynetworks': '127.0.0.0/8', 'strict_rfc821_envelopes': 'yes',
        'smtpd_error_sleep_time': '0', 'smtpd_soft_error_limit': '1001',
        'smtpd_hard_error_limit': '1000',
        'receive_override_options': 'no_header_body_checks,no_unknown_recipient_checks,no_milters',
        'smtpd_authorized_xforward_hosts': '127.0.0.0/8',
        'smtpd_client_connection_count_limit': '0', 'smtpd_client_connection_rate_limit': '0',
    }
    if trixie(host):
        expected['smtpd_client_connection_count_limit'] = '10'
    found = {}
    for line in overrides:
        name, dummy, value = line.partition('=')
        found[name.strip().split('/')[-1]] = value.strip()
    assert found == expected


def test_amavis_and_reinjection_listening(host):
    assert host.service('amavis').is_running
    assert host.service('amavis').is_enabled
    assert host.socket('tcp://127.0.0.1:%d' % amavis_port(host)).is_listening
    assert host.socket('tcp://%s:%d' % reinject(host)).is_listening
    conf = host.file('/etc/amavis/conf.d/40-estafeta_postfix').content_string
    assert '$myhostname = "mail.example.test";' in conf
    # As many amavisd-new children as Postfix opens connections to it (smtp-amavis maxproc: 3 on trixie, 2).
    maxproc = '3' if trixie(host) else '2'
    assert '$max_servers = %s;' % maxproc in conf
    children = host.check_output("ps -o args= -u amavis | grep 'amavisd (' | grep -vc '(master)'")
    assert children == maxproc, host.check_output('ps -o args= -u amavis')


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


def test_own_body_rule_with_text(host):
    """content_filter_body_checks: the scenario's own rule, after the guide's, with its text."""
    assert host.check_output('postmap -q "estafeta forbidden body line" pcre:/etc/postfix/body_checks') == \
        'REJECT Body refused by the estafeta test'
    result = send(host, headers('body %s' % uuid.uuid4().hex) + '\nfirst line\nestafeta forbidden body line\n')
    assert result['code'] in (550, 554), result
    assert 'Body refused by the estafeta test' in result['msg'], result
    # Control: the same message without that line is accepted.
    assert send(host, headers('body %s' % uuid.uuid4().hex) + '\nfirst line\nan allowed body line\n')['code'] == 250


def queue_id(result):
    match = re.search(r'queued as ([0-9A-Za-z]+)', result['msg'])
    assert match, result
    return match.group(1)


def filtered(host, qid, timeout=90):
    """Postfix's log line of the hand-over of message qid to amavisd-new (once it is done)."""
    def line():
        for candidate in host.file('/var/log/mail.log').content_string.splitlines():
            if ' %s: ' % qid in candidate and 'relay=127.0.0.1[127.0.0.1]:%d' % amavis_port(host) in candidate \
                    and 'status=' in candidate:
                return candidate
        return None
    return wait_until(line, timeout, step=1, what='message %s handed to amavisd-new' % qid)


def amavis_log(host, qid, timeout=30):
    """amavisd-new's summary line of message qid (journal: amavisd-new logs through syslog)."""
    def line():
        out = host.check_output('journalctl -q -o cat -t amavis --no-pager')
        lines = [candidate for candidate in out.splitlines() if 'Queue-ID: %s,' % qid in candidate]
        return lines[-1] if lines else None
    return wait_until(line, timeout, step=1, what='the amavisd-new log line of %s' % qid)


def mailbox_message(mbox, subject):
    """The one message of the mbox with this subject."""
    found = [m for m in re.split(r'\n(?=From \S+ )', mbox) if subject in m]
    assert len(found) == 1, found
    return found[0]


def destiny(host, kind):
    return host.ansible.get_variables().get('content_filter_amavis_%s_destiny' % kind,
                                            {'virus': 'discard', 'spam': 'pass'}[kind])


def test_clean_message_passes_amavis_and_reaches_mailbox(host, clamd):
    subject = 'clean %s' % uuid.uuid4().hex
    part = 'Content-Type: text/plain; name="notes.txt"'
    result = send(host, multipart(subject, part))
    assert result['code'] == 250, result
    message = mailbox_message(wait_for_mailbox(host, subject), subject)
    headers_part = message[message.index('Return-Path'):message.index('Subject: %s' % subject)]
    # amavisd-new's own Received line, then the re-injection through the re-injection listener.
    amavis = '(amavis, port %d)' % amavis_port(host)
    assert amavis in headers_part
    assert headers_part.index('by mail.example.test (Postfix)') < headers_part.index(amavis)
    # The virus checks ran (amavisd-new adds this header only then) and found nothing.
    assert 'X-Virus-Scanned: Debian amavis at' in message
    qid = queue_id(result)
    line = filtered(host, qid)
    # amavisd-new handed the message back through the re-injection listener's port.
    assert 'status=sent' in line and 'from MTA(smtp:[%s]:%d)' % reinject(host) in line, line
    assert 'Passed CLEAN' in amavis_log(host, qid)


def test_prepend_rule_acts_once(host):
    """header_checks run when Postfix receives the message, not again when amavisd-new hands it back."""
    subject = 'estafeta prepend %s' % uuid.uuid4().hex
    result = send(host, headers(subject) + '\nhello\n')
    assert result['code'] == 250, result
    message = mailbox_message(wait_for_mailbox(host, subject), subject)
    assert '(amavis, port %d)' % amavis_port(host) in message
    assert message.count('X-Estafeta-Prepended: by header_checks') == 1, message


# Runs inside the container: like SEND, but from the host's own network address (not loopback).
SEND_FROM = SEND.replace('s = smtplib.SMTP("127.0.0.1", 25, timeout=60)',
                         's = smtplib.SMTP(sys.argv[2], 25, timeout=60, source_address=(sys.argv[2], 0))')


def test_reinjection_keeps_the_original_client(host):
    """amavisd-new passes the original client on (XFORWARD): the re-injection smtpd logs it as orig_client, next
    to the original queue id. (Its Received: header names the real connection, amavisd-new on the loopback:
    Postfix uses XFORWARD for logging only.)"""
    address = host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")
    subject = 'xforward %s' % uuid.uuid4().hex
    script = SEND_FROM.replace("'", "'\"'\"'")
    data = (headers(subject) + '\nhello\n').replace("'", "'\"'\"'")
    result = json.loads(host.check_output("printf '%%s' '%s' | python3 -c '%s' %s %s" % (data, script, RCPT, address)))
    assert result['code'] == 250, result
    qid = queue_id(result)
    wait_for_mailbox(host, subject)
    reinjected = [line for line in host.file('/var/log/mail.log').content_string.splitlines()
                  if 'orig_queue_id=%s' % qid in line]
    assert reinjected and 'orig_client=' in reinjected[0] and '[%s]' % address in reinjected[0], reinjected


def delivered_count(host, rcpt):
    return int(host.run("grep -c '^Delivered-To: %s$' /var/mail/alice" % rcpt).stdout.strip() or 0)


def test_burst_through_amavis_without_deferral(host):
    """A short form of make stress: 10 sessions, 100 messages through amavisd-new (ClamAV and SpamAssassin),
    while another local client holds a connection to the re-injection port. Every message is counted in the
    mailbox; none may be deferred."""
    token = uuid.uuid4().hex[:10]
    rcpt = 'alice+burst%s@mail.example.test' % token
    holder = 'estafeta-hold-%s' % token
    host.run_expect([0], "systemd-run --unit=%s python3 -c 'import socket, time; s = socket.create_connection((\"127.0.0.1\", "
                    "10025)); time.sleep(600)'" % holder)
    try:
        host.run_expect([0], '/usr/sbin/smtp-source -s 10 -m 100 -f load@example.org -t %s 127.0.0.1:25' % rcpt)
        wait_until(lambda: delivered_count(host, rcpt) >= 100, 600, step=3)
        count = delivered_count(host, rcpt)
    finally:
        host.run('systemctl stop %s' % holder)
    log = host.file('/var/log/mail.log').content_string
    deferred = [line for line in log.splitlines() if 'to=<%s>' % rcpt in line and 'status=deferred' in line]
    assert count == 100 and not deferred, (count, deferred[:3])
    assert rcpt not in host.run('postqueue -j').stdout


def test_clamav_runs_with_the_local_signatures_only(host):
    assert host.service('clamav-daemon').is_running
    assert host.service('clamav-daemon').is_enabled
    assert host.socket('unix:///run/clamav/clamd.ctl').is_listening
    # No mirror is reachable: freshclam is off and the official databases are missing, so clamd
    # only starts thanks to the drop-ins.
    for unit in ('clamav-freshclam.service', 'clamav-freshclam-once.service', 'clamav-freshclam-once.timer'):
        assert host.run('systemctl is-enabled %s' % unit).stdout.strip() == 'masked', unit
        assert not host.service(unit).is_running, unit
    # Masked before the installation: freshclam never ran, not even once while it was installed.
    assert host.check_output('journalctl -q -o cat --no-pager -t freshclam') == ''
    assert host.run('ls /var/lib/clamav/main.* /var/lib/clamav/daily.*').rc != 0
    for unit in ('clamav-daemon.service', 'clamav-daemon.socket'):
        dropin = host.file('/etc/systemd/system/%s.d/estafeta-local-signatures.conf' % unit)
        assert 'ConditionPathExistsGlob=\n' in dropin.content_string
    hdb = host.file('/var/lib/clamav/estafeta-test.hdb')
    assert hdb.user == 'clamav'
    assert hdb.content_string.endswith(':68:Eicar-Test-Signature\n')
    # Left by prepare.yml, listed with state: absent.
    assert not host.file('/var/lib/clamav/estafeta-obsolete.ndb').exists
    # clamd reads the files amavisd-new unpacks through the amavis group.
    assert 'amavis' in host.user('clamav').groups


def test_clamd_finds_eicar(host, clamd):
    path = '/tmp/estafeta-eicar-%s' % uuid.uuid4().hex
    host.check_output("python3 -c 'import base64, sys; open(sys.argv[1], \"wb\").write(base64.b64decode(sys.argv[2]))' %s %s"
                      % (path, base64.b64encode(EICAR.encode()).decode()))
    host.check_output('chmod 0644 %s' % path)
    try:
        found = host.run('clamdscan --no-summary %s' % path)
        assert found.rc == 1, found
        assert '%s: Eicar-Test-Signature.UNOFFICIAL FOUND' % path in found.stdout
        host.check_output('printf clean > %s' % path)
        clean = host.run('clamdscan --no-summary %s' % path)
        assert clean.rc == 0 and '%s: OK' % path in clean.stdout, clean
    finally:
        host.run('rm -f %s' % path)


def test_eicar_attachment_is_blocked(host, clamd):
    subject = 'eicar %s' % uuid.uuid4().hex
    body = base64.b64encode(EICAR.encode()).decode()
    # Not eicar.com: the guide's attachment rules refuse .com names before amavisd-new is asked.
    part = ('Content-Type: application/octet-stream; name="eicar.bin"\n'
            'Content-Transfer-Encoding: base64\n'
            'Content-Disposition: attachment; filename="eicar.bin"\n\n' + body)
    message = (headers(subject, 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n')
               + '\n--XX\nContent-Type: text/plain\n\nsee attachment\n--XX\n' + part + '\n--XX--\n')
    # After-queue filter: Postfix has accepted the message before amavisd-new sees it.
    result = send(host, message)
    assert result['code'] == 250, result
    qid = queue_id(result)
    line = filtered(host, qid)
    assert 'INFECTED: Eicar-Test-Signature' in line, line
    amavis = amavis_log(host, qid)
    assert 'Blocked INFECTED (Eicar-Test-Signature.UNOFFICIAL)' in amavis, amavis
    if destiny(host, 'virus') == 'discard':
        # Accepted and dropped by amavisd-new, kept in its quarantine.
        assert 'status=sent (250 2.7.0 Ok, discarded' in line, line
        assert 'DiscardedInbound' in amavis, amavis
        quarantined = re.search(r'quarantine: (\S+),', amavis)
        assert quarantined, amavis
        assert host.file('%s/%s' % (QUARANTINE, quarantined.group(1))).exists
    else:
        # amavisd-new refuses it; Postfix returns it to the sender.
        assert 'status=bounced' in line and '554 5.7.0 Reject' in line, line
        assert 'RejectedInbound' in amavis, amavis
    # clamd itself (not the clamscan fallback) scanned the part amavisd-new unpacked.
    clamd_log = host.file('/var/log/clamav/clamav.log').content_string
    assert re.search(r'/var/lib/amavis/tmp/\S+: Eicar-Test-Signature\.UNOFFICIAL\S* FOUND', clamd_log)
    assert 'av-scanner FAILED' not in host.check_output('journalctl -q -o cat -t amavis --no-pager')
    # Gone from the queue for good (discarded or bounced): it can no longer reach the mailbox.
    left_queue(host, qid)
    assert subject not in mailbox(host)


def test_gtube_is_spam(host):
    subject = 'gtube %s' % uuid.uuid4().hex
    result = send(host, headers(subject) + '\n' + GTUBE + '\n')
    assert result['code'] == 250, result
    qid = queue_id(result)
    line = filtered(host, qid)
    amavis = amavis_log(host, qid)
    if destiny(host, 'spam') == 'pass':
        assert 'Passed SPAM' in amavis, amavis
        message = mailbox_message(wait_for_mailbox(host, subject), subject)
        assert 'X-Spam-Flag: YES' in message
        assert 'Subject: ***SPAM*** %s' % subject in message
        assert 'GTUBE' in re.search(r'X-Spam-Status: Yes.*?\n(?=\S)', message, re.S).group(0)
    else:
        assert 'Blocked SPAM' in amavis, amavis
        assert 'status=sent (250 2.7.0 Ok, discarded' in line, line
        left_queue(host, qid)
        assert subject not in mailbox(host)


def test_no_virus_scanner_answering(host, clamd):
    """clamd stopped, and the clamscan backup without signatures: defer (the message waits in the
    queue and is delivered once clamd is back) or pass (delivered unchecked). clamd is started
    again, and answers, before the test ends."""
    failure = host.ansible.get_variables().get('content_filter_amavis_virus_scanner_failure', 'defer')
    hdb = '/var/lib/clamav/estafeta-test.hdb'
    subject = 'unscanned %s' % uuid.uuid4().hex
    host.check_output('systemctl stop clamav-daemon.socket clamav-daemon.service')
    host.check_output('mv %s %s.off' % (hdb, hdb))
    try:
        result = send(host, headers(subject) + '\nhello\n')
        assert result['code'] == 250, result
        qid = queue_id(result)
        line = filtered(host, qid)
        if failure == 'defer':
            assert 'status=deferred' in line and 'ALL VIRUS SCANNERS FAILED' in line, line
            assert qid in host.check_output('postqueue -j')
        else:
            assert 'Passed UNCHECKED' in amavis_log(host, qid)
            assert 'status=sent' in line, line
            wait_for_mailbox(host, subject)
    finally:
        host.run('mv %s.off %s' % (hdb, hdb))
        host.run('systemctl start clamav-daemon.socket clamav-daemon.service')
        wait_until(lambda: clamd_answers(host), 180, step=2, what='clamd answering again')
    if failure == 'defer':
        host.check_output('postqueue -i %s' % qid)
        message = mailbox_message(wait_for_mailbox(host, subject), subject)
        assert 'X-Virus-Scanned: Debian amavis at' in message
