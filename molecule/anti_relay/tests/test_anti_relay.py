# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Anti-relay, proved over SMTP from an outside client (not in mynetworks):

* relaying to a foreign domain is refused with 554, mail to a local domain is accepted;
* senders on the access list are rejected (with the custom text when there is one);
* a client listed in a DNS blocklist (served by the test DNS server) is rejected;
* on port 587, AUTH is offered only after STARTTLS, relaying is refused without AUTH and
  accepted after it.
"""

import time
import uuid

import pytest
import testinfra

CLIENT = "anti_relay-client"
HELO = "client.test"
SENDER = "someone@client.test"


@pytest.fixture
def server(host):
    if "mailservers" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("runs on the mail servers")
    return host


@pytest.fixture
def client():
    return testinfra.get_host("docker://" + CLIENT)


def address(host):
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def swaks(from_host, server_ip, *args):
    cmd = "swaks --server {ip} --helo {helo} --from {sender} --body 'anti-relay test' ".format(
        ip=server_ip, helo=HELO, sender=SENDER)
    return from_host.run(cmd + " ".join(args))


def output(result):
    return result.stdout + result.stderr


def test_restriction_lists(server):
    lists = dict(
        line.split(" = ", 1) for line in server.check_output(
            "postconf -n smtpd_relay_restrictions smtpd_recipient_restrictions smtpd_sender_restrictions "
            "smtpd_helo_restrictions mynetworks smtpd_helo_required").splitlines())
    assert lists["smtpd_relay_restrictions"] == "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    recipient = lists["smtpd_recipient_restrictions"]
    assert recipient.index("permit_mynetworks") < recipient.index("reject_unauth_destination") \
        < recipient.index("reject_rbl_client bl.test")
    assert lists["smtpd_sender_restrictions"].startswith("check_sender_access hash:/etc/postfix/access")
    assert lists["mynetworks"] == "127.0.0.0/8, [::1]/128, 192.168.2.0/24, 172.16.3.4/32"
    assert lists["smtpd_helo_required"] == "yes"
    # The ownership record next to main.cf.
    record = server.file("/etc/postfix/estafeta-restrictions.json")
    assert record.exists and record.mode == 0o644
    assert '"anti_relay"' in record.content_string and '"base"' in record.content_string


def test_client_not_in_mynetworks(server, client):
    ip = address(client)
    assert not ip.startswith(("127.", "192.168.2.", "172.16.3.4"))


def test_relay_refused(server, client):
    result = swaks(client, address(server), "--to someone@foreign.test --quit-after RCPT")
    assert "554 5.7.1" in output(result) and "Relay access denied" in output(result), output(result)


def test_local_delivery_accepted(server, client):
    token = uuid.uuid4().hex
    result = swaks(client, address(server), "--to alice@example.test --header 'Subject: %s'" % token)
    assert "250 2.0.0 Ok: queued" in output(result), output(result)
    deadline = time.time() + 30
    while time.time() < deadline:
        if server.run("grep -qF %s /var/mail/alice" % token).rc == 0:
            return
        time.sleep(1)
    pytest.fail("message %s did not reach /var/mail/alice" % token)


def test_access_list_rejects_address(server, client):
    result = client.run("swaks --server %s --helo %s --from bob645@yahoo.com --to alice@example.test --quit-after RCPT"
                        % (address(server), HELO))
    assert "554 5.7.1 <bob645@yahoo.com>: Sender address rejected: Access denied" in output(result), output(result)


def test_access_list_rejects_domain_with_text(server, client):
    result = client.run("swaks --server %s --helo %s --from anyone@techemail.com --to alice@example.test --quit-after RCPT"
                        % (address(server), HELO))
    assert "Sender address rejected: No mail from techemail.com, says the estafeta test" in output(result), output(result)


def test_dnsbl_blocks_listed_client(server):
    # The server's own eth0 address is listed in bl.test by the test DNS server.
    result = swaks(server, address(server), "--to alice@example.test --quit-after RCPT")
    assert "554 5.7.1" in output(result) and "blocked using bl.test" in output(result), output(result)


def test_dnsbl_lets_unlisted_client_through(server, client):
    result = swaks(client, address(server), "--to alice@example.test --quit-after RCPT")
    assert "<-  250 2.1.5 Ok" in output(result), output(result)


def test_submission_listens(server):
    assert server.service("dovecot").is_running
    assert server.socket("tcp://0.0.0.0:587").is_listening
    assert server.file("/var/spool/postfix/private/auth").is_socket
    users = server.file("/etc/dovecot/estafeta-postfix-users")
    assert users.mode == 0o640 and users.user == "root" and users.group == "dovecot"
    assert "alice:{SHA512-CRYPT}$6$" in users.content_string


def test_no_auth_before_starttls(server, client):
    result = client.run("swaks --server %s --port 587 --helo %s --quit-after EHLO" % (address(server), HELO))
    text = output(result)
    assert "STARTTLS" in text, text
    assert "AUTH" not in text, text
    tls = client.run("swaks --server %s --port 587 --helo %s --tls --quit-after EHLO" % (address(server), HELO))
    assert "250-AUTH PLAIN LOGIN" in output(tls) or "250 AUTH PLAIN LOGIN" in output(tls), output(tls)


def test_submission_relay_needs_auth(server, client):
    result = client.run("swaks --server %s --port 587 --helo %s --tls --from alice@example.test "
                        "--to someone@foreign.test --quit-after RCPT" % (address(server), HELO))
    assert "554 5.7.1" in output(result), output(result)


def test_submission_relay_after_auth(server, client):
    for user, password in (("alice", "molecule-secret"), ("bob", "bob-secret")):
        result = client.run("swaks --server %s --port 587 --helo %s --tls --auth PLAIN --auth-user %s "
                            "--auth-password %s --from %s@example.test --to someone@foreign.test --quit-after RCPT"
                            % (address(server), HELO, user, password, user))
        text = output(result)
        assert "235 2.7.0 Authentication successful" in text, text
        assert "<~  250 2.1.5 Ok" in text, text


def test_submission_wrong_password(server, client):
    result = client.run("swaks --server %s --port 587 --helo %s --tls --auth PLAIN --auth-user alice "
                        "--auth-password wrong --from alice@example.test --to someone@foreign.test --quit-after RCPT"
                        % (address(server), HELO))
    assert "535 5.7.8" in output(result), output(result)
