# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup MX: with the primary down, mail is accepted and queued on the backup; after the
primary is back and the queue is flushed, it arrives at the primary. Unknown users are
rejected at RCPT time."""

import json
import time
import uuid

import pytest
import testinfra


@pytest.fixture
def backup(host):
    if "backups" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("runs on the backup MX hosts")
    return host


@pytest.fixture
def primary(backup):
    name = backup.ansible.get_variables()["backup_mx_test_primary_container"]
    return testinfra.get_host("docker://" + name)


def own_address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def swaks(host, to, subject, quit_after=None):
    cmd = "swaks --server {s} --port 25 --from remitente@externo.example --to {to} --header 'Subject: {subj}' --body 'backup mx test'".format(
        s=own_address(host), to=to, subj=subject)
    if quit_after:
        cmd += " --quit-after " + quit_after
    return host.run(cmd)


def queued(host, token):
    """Queue entries of the message whose Subject holds token (postqueue -j has no subject: match by queue id)."""
    entries = []
    for line in host.check_output("postqueue -j").splitlines():
        entry = json.loads(line)
        if host.run("postcat -hq %s | grep -qF %s" % (entry["queue_id"], token)).rc == 0:
            entries.append(entry)
    return entries


def wait(predicate, timeout=60, step=1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_main_cf(backup):
    assert backup.check_output("postconf -h relay_domains") == "midominio.es"
    assert backup.check_output("postconf -h relay_recipient_maps") == "hash:/etc/postfix/relay_recipients"
    assert backup.check_output("postconf -h maximal_queue_lifetime") == "10d"
    primary_name = backup.ansible.get_variables()["backup_mx_primary"]
    assert backup.check_output("postconf -h relay_transport") == "relay:[%s]" % primary_name
    assert backup.check_output("postmap -q usuario1@midominio.es hash:/etc/postfix/relay_recipients") == "OK"


def test_unknown_recipient_rejected_at_rcpt(backup):
    res = swaks(backup, "nadie@midominio.es", "unknown", quit_after="RCPT")
    assert res.rc != 0
    assert "<** 550" in res.stdout, res.stdout
    assert "User unknown in relay recipient table" in res.stdout


def test_foreign_domain_not_relayed(backup):
    res = swaks(backup, "alguien@otrodominio.example", "relay", quit_after="RCPT")
    assert res.rc != 0
    assert "Relay access denied" in res.stdout, res.stdout


def test_queued_while_primary_down_then_delivered(backup, primary):
    token = "backupmx-" + uuid.uuid4().hex
    primary.run_test("systemctl stop postfix")
    try:
        assert wait(lambda: primary.run("ss -Hltn 'sport = :25' | grep -q LISTEN").rc != 0, timeout=30)

        res = swaks(backup, "usuario1@midominio.es", token)
        assert res.rc == 0, res.stdout + res.stderr

        # The backup tried the primary, failed, and keeps the message in its deferred queue.
        assert wait(lambda: any(e["queue_name"] == "deferred" for e in queued(backup, token)), timeout=60), \
            backup.run("postqueue -p; tail -n 20 /var/log/mail.log").stdout
        entry = list(queued(backup, token))[0]
        assert entry["recipients"][0]["address"] == "usuario1@midominio.es"
        assert primary.run("grep -qF %s /var/mail/usuario1" % token).rc != 0
    finally:
        primary.run_test("systemctl start postfix")

    assert wait(lambda: primary.run("ss -Hltn 'sport = :25' | grep -q LISTEN").rc == 0, timeout=30)
    # The guide's "postfix flush"; repeated in case the first attempt races the primary's start.
    assert wait(lambda: backup.run("postqueue -f").rc == 0 and primary.run("grep -qF %s /var/mail/usuario1" % token).rc == 0,
                timeout=90, step=5), backup.run("postqueue -p; tail -n 20 /var/log/mail.log").stdout
    assert wait(lambda: not queued(backup, token), timeout=30)
    # Delivered exactly once.
    assert primary.check_output("grep -cF 'Subject: %s' /var/mail/usuario1" % token) == "1"
