# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup MX converged by playbooks/backup_mx.yml with the example inventory's settings.

With the primary down, mail for example.com is accepted and queued on the backup; after the
primary is back and the queue is flushed, it arrives at the primary (the Debian 13 backup
delivers to its primary's port 2526: backup_mx_primary_port). Unknown users are rejected
at RCPT time. From the primary's container (a client outside the backup's mynetworks) relaying
to a foreign domain is refused, a sender domain that does not exist in DNS is refused, and
STARTTLS presents the tls role's certificate.
"""

import ipaddress
import json
import re
import uuid

import pytest
import testinfra
from molecule_helpers import wait_until as wait

SENDER = "remitente@externo.example"


@pytest.fixture
def backup(host):
    if "backup_mx" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("runs on the backup MX hosts")
    return host


@pytest.fixture
def primary(backup):
    """The primary of the same distribution (another container on the scenario's network)."""
    return testinfra.get_host("docker://" + backup.backend.get_hostname().replace("-backup-", "-primary-"))


def own_address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def swaks(client, server, to, subject, quit_after=None, sender=SENDER, extra=""):
    cmd = "swaks --server {s} --port 25 --from {sender} --to {to} --header 'Subject: {subj}' --body 'backup mx test' {extra}".format(
        s=server, sender=sender, to=to, subj=subject, extra=extra)
    if quit_after:
        cmd += " --quit-after " + quit_after
    return client.run(cmd)


def queued(host, token):
    """Queue entries of the message whose Subject holds token (postqueue -j has no subject: match by queue id)."""
    entries = []
    for line in host.check_output("postqueue -j").splitlines():
        entry = json.loads(line)
        if host.run("postcat -hq %s | grep -qF %s" % (entry["queue_id"], token)).rc == 0:
            entries.append(entry)
    return entries


def primary_port(backup):
    return 2526 if backup.backend.get_hostname().endswith('trixie') else 25


def test_main_cf(backup, primary):
    # The example's group_vars/backup_mx.yml, with the primary's name from the scenario.
    assert backup.check_output("postconf -h relay_domains") == "example.com"
    assert backup.check_output("postconf -h relay_recipient_maps") == "hash:/etc/postfix/relay_recipients"
    assert backup.check_output("postconf -h maximal_queue_lifetime") == "10d"
    nexthop = "[%s]" % primary.check_output("hostname")
    if primary_port(backup) != 25:
        nexthop += ":%d" % primary_port(backup)
    assert backup.check_output("postconf -h relay_transport") == "relay:" + nexthop
    for address in ("ana@example.com", "postmaster@example.com"):
        assert backup.check_output("postmap -q %s hash:/etc/postfix/relay_recipients" % address) == "OK"


def test_anti_relay_lists(backup):
    assert backup.check_output("postconf -h smtpd_relay_restrictions") == \
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    assert "reject_unknown_recipient_domain" in backup.check_output("postconf -h smtpd_recipient_restrictions")
    assert backup.check_output("postconf -h smtpd_helo_required") == "yes"


def test_unknown_recipient_rejected_at_rcpt(backup):
    res = swaks(backup, own_address(backup), "nadie@example.com", "unknown", quit_after="RCPT")
    assert res.rc != 0
    assert "<** 550" in res.stdout, res.stdout
    assert "User unknown in relay recipient table" in res.stdout


def test_foreign_domain_not_relayed_from_outside(backup, primary):
    """A real SMTP session from another container, whose address is not in the backup's mynetworks."""
    client = ipaddress.ip_address(own_address(primary))
    networks = backup.check_output("postconf -h mynetworks").replace(",", " ").split()
    assert networks and not any(client in ipaddress.ip_network(net.strip("[]").replace("]/", "/"), strict=False)
                                for net in networks), networks
    res = swaks(primary, backup.check_output("hostname"), "alguien@otrodominio.example", "relay", quit_after="RCPT")
    assert res.rc != 0
    assert "<** 554 5.7.1 <alguien@otrodominio.example>: Relay access denied" in res.stdout, res.stdout
    # From the loopback (in mynetworks) the same recipient passes RCPT: the refusal is anti-relay's.
    res = swaks(backup, "127.0.0.1", "alguien@otrodominio.example", "relay", quit_after="RCPT")
    assert res.rc == 0, res.stdout


def test_unknown_sender_domain_refused(backup, primary):
    res = swaks(primary, backup.check_output("hostname"), "ana@example.com", "sender",
                quit_after="RCPT", sender="alguien@desconocido.externo.example")
    assert res.rc != 0
    assert "Sender address rejected: Domain not found" in res.stdout, res.stdout
    # The backup's domain and the outside sender's domain exist in the test's DNS: accepted at RCPT.
    res = swaks(primary, backup.check_output("hostname"), "ana@example.com", "sender", quit_after="RCPT")
    assert res.rc == 0, res.stdout


def test_tls(backup, primary):
    key = backup.file("/etc/ssl/private/postfix.key")
    assert key.exists and key.user == "root" and key.mode == 0o600
    assert backup.file("/etc/ssl/certs/postfix.pem").exists
    res = swaks(primary, backup.check_output("hostname"), "ana@example.com", "tls", quit_after="TLS", extra="--tls")
    assert res.rc == 0, res.stdout + res.stderr
    assert "250-STARTTLS" in res.stdout and "TLS started" in res.stdout, res.stdout
    served = primary.check_output(
        "openssl s_client -starttls smtp -connect %s:25 </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        % own_address(backup))
    assert served and served == backup.check_output("openssl x509 -noout -fingerprint -sha256 -in /etc/ssl/certs/postfix.pem")


def test_queued_while_primary_down_then_delivered(backup, primary):
    token = "backupmx-" + uuid.uuid4().hex
    primary.run_test("systemctl stop postfix")
    try:
        assert wait(lambda: primary.run("ss -Hltn 'sport = :25' | grep -q LISTEN").rc != 0, timeout=30)

        res = swaks(backup, own_address(backup), "ana@example.com", token)
        assert res.rc == 0, res.stdout + res.stderr

        # The backup tried the primary, failed, and keeps the message in its deferred queue.
        assert wait(lambda: any(e["queue_name"] == "deferred" for e in queued(backup, token)), timeout=60), \
            backup.run("postqueue -p; tail -n 20 /var/log/mail.log").stdout
        entry = list(queued(backup, token))[0]
        assert entry["recipients"][0]["address"] == "ana@example.com"
        assert primary.run("grep -qF %s /var/mail/ana" % token).rc != 0
    finally:
        primary.run_test("systemctl start postfix")

    assert wait(lambda: primary.run("ss -Hltn 'sport = :25' | grep -q LISTEN").rc == 0, timeout=30)
    # The guide's "postfix flush"; repeated in case the first attempt races the primary's start.
    assert wait(lambda: backup.run("postqueue -f").rc == 0 and primary.run("grep -qF %s /var/mail/ana" % token).rc == 0,
                timeout=90, step=5), backup.run("postqueue -p; tail -n 20 /var/log/mail.log").stdout
    assert wait(lambda: not queued(backup, token), timeout=30)
    # Delivered exactly once, to the primary's port.
    assert primary.check_output("grep -cF 'Subject: %s' /var/mail/ana" % token) == "1"
    sent = [line for line in backup.check_output("grep -F 'to=<ana@example.com>' /var/log/mail.log").splitlines()
            if "status=sent" in line]
    relay = r"relay=%s\[[0-9.]+\]:%d," % (re.escape(primary.check_output("hostname")), primary_port(backup))
    assert sent and all(re.search(relay, line) for line in sent), sent
