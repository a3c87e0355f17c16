# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base role gives a running internet-site Postfix: greeting, local delivery, aliases, no open relay.

base-trixie varies the role's variables (molecule.yml): not started at boot, IPv4 only, no
documentation but postfix-cdb, aliases as a btree table with hand-written ones kept, another mail
name; base-bookworm has another myorigin. The purge keeps what base_purge_keep and
base_purge_keep_prefixes name.
"""

import json
import uuid

from molecule_helpers import wait_until

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
    return wait_until(lambda: host.run('grep -c -- %s %s', token, path).rc == 0, timeout)


def postconf(host, name):
    return host.check_output('postconf -h %s', name)


def test_postfix_service_runs(host):
    """Running on both; started at boot only where base_service_enabled is true (not on base-trixie)."""
    service = host.service('postfix')
    assert service.is_running
    enabled = host.backend.get_hostname() != 'base-trixie'
    assert service.is_enabled is enabled
    # What boot starts: postfix.service is wanted by multi-user.target exactly when enabled.
    wanted = host.run('systemctl list-dependencies --plain --no-pager multi-user.target').stdout.split()
    assert ('postfix.service' in wanted) is enabled
    # Running means serving: the master answers on port 25 (the real instance is postfix@-).
    assert host.run('postfix status').rc == 0


def trixie(host):
    """base-trixie: base_service_enabled, base_inet_protocols, base_install_doc and base_aliases_type changed."""
    return host.backend.get_hostname() == 'base-trixie'


def test_listens_on_smtp_port(host):
    """On IPv4 and IPv6 (inet_protocols = all); on IPv4 only with base_inet_protocols: ipv4."""
    assert host.socket('tcp://0.0.0.0:25').is_listening
    listeners = host.check_output("ss -Hltn 'sport = :25' | awk '{print $4}'").split()
    assert ('[::]:25' in listeners) is not trixie(host), listeners
    assert postconf(host, 'inet_protocols') == ('ipv4' if trixie(host) else 'all')


def test_packages(host):
    for name in ('postfix', 'postfix-pcre'):
        assert host.package(name).is_installed
    # base_install_doc: false and base_packages with postfix-cdb on base-trixie.
    assert host.package('postfix-doc').is_installed is not trixie(host)
    assert host.package('postfix-cdb').is_installed is trixie(host)


def test_main_cf_values(host):
    assert postconf(host, 'myhostname') == MYHOSTNAME
    mailname = 'mailname.example.test' if trixie(host) else MYHOSTNAME
    assert host.file('/etc/mailname').content_string == mailname + '\n'
    assert postconf(host, 'mynetworks') == '127.0.0.0/8, [::ffff:127.0.0.0]/104, [::1]/128'
    assert postconf(host, 'message_size_limit') == '20480000'
    assert postconf(host, 'maillog_file') == '/var/log/mail.log'
    relay = postconf(host, 'smtpd_relay_restrictions')
    assert 'reject_unauth_destination' in relay
    assert 'defer_unauth_destination' not in relay


def test_purge_removed_undeclared_parameter(host):
    names = host.check_output('postconf -n -H').split()
    assert 'delay_warning_time' not in names
    assert 'minimal_backoff_time' not in names
    # Debian's packaged settings stay.
    assert 'smtpd_tls_security_level' in names
    assert 'compatibility_level' in names


def test_purge_keeps_what_it_is_told_to(host):
    """base_purge_keep (notify_classes) and base_purge_keep_prefixes (bounce_) kept undeclared parameters."""
    assert host.check_output('postconf -n notify_classes') == 'notify_classes = resource, software, policy'
    assert host.check_output('postconf -n bounce_size_limit') == 'bounce_size_limit = 60000'


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
    kind = 'btree' if trixie(host) else 'hash'
    assert postconf(host, 'alias_maps') == '%s:/etc/aliases' % kind
    assert host.check_output('postmap -q info %s:/etc/aliases', kind) == 'alice, bob'


def test_root_alias(host):
    token = 'root-%s' % uuid.uuid4().hex
    answer = smtp(host, '127.0.0.1', 'someone@example.org', 'root@%s' % MYHOSTNAME, token)
    assert answer['data'][0] == 250
    assert wait_for(host, '/var/mail/alice', token)


def test_local_mail_takes_myorigin(host):
    """Mail a local user submits leaves from @myorigin: base_myorigin (example.test) on base-bookworm,
    /etc/mailname (base_mailname: mailname.example.test) on base-trixie."""
    origin = 'mailname.example.test' if trixie(host) else 'example.test'
    assert postconf(host, 'myorigin') == ('/etc/mailname' if trixie(host) else 'example.test')
    token = 'origin-%s' % uuid.uuid4().hex
    host.run_expect([0], "printf 'Subject: %s\\n\\nbody\\n' | runuser -u bob -- /usr/sbin/sendmail alice", token)
    assert wait_for(host, '/var/mail/alice', token)
    message = [m for m in host.file('/var/mail/alice').content_string.split('\nFrom ') if token in m][0]
    assert 'Return-Path: <bob@%s>' % origin in message, message[:800]


def test_handwritten_alias(host):
    """base_aliases_exclusive: false (base-trixie) keeps an alias written by hand; true removes it."""
    kind = 'btree' if trixie(host) else 'hash'
    found = host.run('postmap -q handwritten %s:/etc/aliases', kind)
    if trixie(host):
        assert found.stdout.strip() == 'bob'
        token = 'handwritten-%s' % uuid.uuid4().hex
        answer = smtp(host, '127.0.0.1', 'root@%s' % MYHOSTNAME, 'handwritten@%s' % MYHOSTNAME, token)
        assert answer['data'][0] == 250
        assert wait_for(host, '/var/mail/bob', token)
    else:
        assert found.rc == 1
        assert 'handwritten' not in host.file('/etc/aliases').content_string


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
