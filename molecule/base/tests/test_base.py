# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base role gives a running internet-site Postfix: greeting, local delivery, aliases, no open relay."""

import json
import time
import uuid

MYHOSTNAME = 'mail.example.test'

# Runs inside the container: one SMTP dialogue, prints the server's answers as JSON.
SMTP_SCRIPT = r'''
import json, smtplib, sys
server, sender, rcpt, subject = sys.argv[1:5]
out = {}
s = smtplib.SMTP(timeout=20)
out["connect"] = list(s.connect(server, 25))
out["connect"][1] = out["connect"][1].decode()
code, msg = s.ehlo("client.example.test")
out["ehlo"] = [code, msg.decode()]
code, msg = s.mail(sender)
out["mail"] = [code, msg.decode()]
code, msg = s.rcpt(rcpt)
out["rcpt"] = [code, msg.decode()]
if code == 250 and subject:
    code, msg = s.data(("Subject: %s\r\nFrom: %s\r\nTo: %s\r\n\r\nbody %s\r\n" % (subject, sender, rcpt, subject)).encode())
    out["data"] = [code, msg.decode()]
else:
    s.rset()
s.quit()
print(json.dumps(out))
'''


def smtp(host, server, sender, rcpt, subject=''):
    cmd = host.run("python3 -c %s %s %s %s %s" % (_q(SMTP_SCRIPT), server, sender, rcpt, _q(subject)))
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def _q(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def wait_for(host, path, token, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        cmd = host.run('grep -c -- %s %s', token, path)
        if cmd.rc == 0:
            return True
        time.sleep(1)
    return False


def postconf(host, name):
    return host.check_output('postconf -h %s', name)


def test_postfix_service_runs(host):
    service = host.service('postfix')
    assert service.is_running
    assert service.is_enabled


def test_listens_on_smtp_port(host):
    assert host.socket('tcp://0.0.0.0:25').is_listening


def test_packages(host):
    for name in ('postfix', 'postfix-pcre', 'postfix-doc'):
        assert host.package(name).is_installed


def test_main_cf_values(host):
    assert postconf(host, 'myhostname') == MYHOSTNAME
    assert host.file('/etc/mailname').content_string == MYHOSTNAME + '\n'
    assert postconf(host, 'mynetworks') == '127.0.0.0/8, [::ffff:127.0.0.0]/104, [::1]/128'
    assert postconf(host, 'message_size_limit') == '20480000'
    assert postconf(host, 'maillog_file') == '/var/log/mail.log'
    relay = postconf(host, 'smtpd_relay_restrictions')
    assert 'reject_unauth_destination' in relay
    assert 'defer_unauth_destination' not in relay


def test_purge_removed_undeclared_parameter(host):
    names = host.check_output('postconf -n -H').split()
    assert 'delay_warning_time' not in names
    # Debian's packaged settings stay.
    assert 'smtpd_tls_security_level' in names
    assert 'compatibility_level' in names


def test_configuration_checks(host):
    assert host.run('postfix check').rc == 0


def test_greeting_names_myhostname(host):
    answer = smtp(host, '127.0.0.1', 'root@%s' % MYHOSTNAME, 'alice@%s' % MYHOSTNAME)
    assert answer['connect'][0] == 220
    assert answer['connect'][1].startswith(MYHOSTNAME + ' ESMTP')
    assert answer['ehlo'][1].startswith(MYHOSTNAME)


def test_local_delivery_to_mailbox(host):
    token = 'local-%s' % uuid.uuid4().hex
    answer = smtp(host, '127.0.0.1', 'root@%s' % MYHOSTNAME, 'alice@%s' % MYHOSTNAME, token)
    assert answer['data'][0] == 250
    assert wait_for(host, '/var/mail/alice', token)


def test_alias_delivers_to_targets(host):
    token = 'alias-%s' % uuid.uuid4().hex
    answer = smtp(host, '127.0.0.1', 'someone@example.org', 'info@%s' % MYHOSTNAME, token)
    assert answer['data'][0] == 250
    assert wait_for(host, '/var/mail/alice', token)
    assert wait_for(host, '/var/mail/bob', token)
    assert host.file('/etc/aliases.db').exists


def test_root_alias(host):
    token = 'root-%s' % uuid.uuid4().hex
    answer = smtp(host, '127.0.0.1', 'someone@example.org', 'root@%s' % MYHOSTNAME, token)
    assert answer['data'][0] == 250
    assert wait_for(host, '/var/mail/alice', token)


def test_relay_allowed_from_loopback(host):
    answer = smtp(host, '127.0.0.1', 'root@%s' % MYHOSTNAME, 'someone@example.org')
    assert answer['rcpt'][0] == 250


def test_relay_refused_from_other_address(host):
    address = host.check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    answer = smtp(host, address, 'spammer@example.net', 'victim@example.org')
    assert answer['rcpt'][0] == 554, answer
    assert 'Relay access denied' in answer['rcpt'][1]
    # Mail for a local domain is still accepted from there.
    answer = smtp(host, address, 'friend@example.net', 'alice@%s' % MYHOSTNAME)
    assert answer['rcpt'][0] == 250, answer


def test_log_file_written(host):
    log = host.file('/var/log/mail.log')
    assert log.exists
    assert 'status=sent' in log.content_string
