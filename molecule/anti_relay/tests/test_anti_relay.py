# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Anti-relay, proved over SMTP from an outside client (not in mynetworks):

* relaying to a foreign domain is refused with 554, mail to a local domain is accepted;
* senders on the access list are rejected (with the custom text when there is one);
* a client listed in a DNS blocklist (served by the test DNS server) is rejected;
* on port 587, AUTH is offered only after STARTTLS, relaying is refused without AUTH and
  accepted after it; TLS below 1.2 is refused there (port 25 still accepts it);
* the submission users' hashes survive a re-run, a changed password gets a new hash with a new
  salt, and neither passwords nor hashes show in the run's output.
"""

import json
import os
import re
import subprocess
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
    # Our own clients first: the access list and the sender checks are for strangers.
    assert lists["smtpd_sender_restrictions"] == ("permit_mynetworks, permit_sasl_authenticated, "
                                                  "check_sender_access hash:/etc/postfix/access, "
                                                  "reject_non_fqdn_sender, reject_unknown_sender_domain")
    assert lists["smtpd_helo_restrictions"].startswith("permit_mynetworks, permit_sasl_authenticated")
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


def s_client(host, target, *options):
    return host.run("timeout 20 openssl s_client -connect %s -starttls smtp -cipher 'DEFAULT:@SECLEVEL=0' %s </dev/null",
                    target, ' '.join(options))


def protocol_of(result):
    match = re.search(r'Protocol\s*:\s*(TLSv[0-9.]+)', result.stdout)
    return match.group(1) if match and 'Cipher is (NONE)' not in result.stdout else None


def test_submission_refuses_tls_below_1_2(server, client):
    assert server.check_output('postconf -P submission/inet/smtpd_tls_mandatory_protocols') \
        == 'submission/inet/smtpd_tls_mandatory_protocols = >=TLSv1.2'
    ip = address(server)
    # Control: OpenSSL on both sides would speak TLS 1.1 (port 25, opportunistic TLS at Postfix's defaults).
    assert protocol_of(s_client(client, '%s:25' % ip, '-tls1_1')) == 'TLSv1.1'
    old = s_client(client, '%s:587' % ip, '-tls1_1')
    assert protocol_of(old) is None and old.rc != 0, old.stdout + old.stderr
    assert protocol_of(s_client(client, '%s:587' % ip, '-tls1_2')) == 'TLSv1.2'


# ---------------------------------------------------------------- the submission users' hashes across runs

USERS_FILE = "/etc/dovecot/estafeta-postfix-users"
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RUNS = {}


def converge(extra=None):
    """Run the scenario's converge playbook on both servers; returns (rc, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    cmd = ["ansible-playbook", "-i", env["MOLECULE_INVENTORY_FILE"], os.path.join(SCENARIO_DIR, "converge.yml"),
           "--diff", "-v"]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def users_lines(host):
    return dict(line.split(":", 1) for line in host.file(USERS_FILE).content_string.splitlines()
                if line and not line.startswith("#"))


def salt(stored):
    return stored.split("$")[-2]


@pytest.fixture
def password_change(server):
    """Once: the users file before, after a run that changes alice's password, and after the original run again."""
    if not _RUNS:
        servers = [testinfra.get_host("docker://" + name) for name in ("anti_relay-bookworm", "anti_relay-trixie")]
        _RUNS["before"] = [users_lines(h) for h in servers]
        _RUNS["changed"] = converge({"anti_relay_submission_users": [
            {"name": "alice", "password": "N3w-molecule-secret"}, {"name": "bob", "hash": "{PLAIN}bob-secret"}]})
        _RUNS["after_change"] = [users_lines(h) for h in servers]
        _RUNS["auth_new"] = [auth(h, "alice", "N3w-molecule-secret") for h in servers]
        _RUNS["auth_old"] = [auth(h, "alice", "molecule-secret") for h in servers]
        _RUNS["restored"] = converge()
        _RUNS["after_restore"] = [users_lines(h) for h in servers]
        _RUNS["again"] = converge()
        _RUNS["after_again"] = [users_lines(h) for h in servers]
        _RUNS["servers"] = [h.backend.get_hostname() for h in servers]
    return _RUNS


def auth(server, user, password):
    client = testinfra.get_host("docker://" + CLIENT)
    result = client.run("swaks --server %s --port 587 --helo %s --tls --auth PLAIN --auth-user %s --auth-password %s "
                        "--from %s@example.test --to alice@example.test --quit-after AUTH"
                        % (address(server), HELO, user, password, user))
    return output(result)


def test_submission_hashes_kept_and_renewed(server, password_change):
    runs = password_change
    i = runs["servers"].index(server.backend.get_hostname())
    before, changed, restored, again = (runs["before"][i], runs["after_change"][i], runs["after_restore"][i],
                                        runs["after_again"][i])
    assert before["alice"].startswith("{SHA512-CRYPT}$6$rounds=50000$")
    # A new password: a new hash with a new salt for alice; bob's line is untouched.
    assert changed["alice"] != before["alice"] and salt(changed["alice"]) != salt(before["alice"])
    assert changed["bob"] == before["bob"] == "{PLAIN}bob-secret"
    assert "235 2.7.0 Authentication successful" in runs["auth_new"][i]
    assert "535 5.7.8" in runs["auth_old"][i]
    # Back to the old password: again a new random salt (nothing is derived from the name or the host).
    assert salt(restored["alice"]) not in (salt(before["alice"]), salt(changed["alice"]))
    # A run with nothing changed keeps every hash.
    assert again == restored
    assert "235 2.7.0 Authentication successful" in auth(server, "alice", "molecule-secret")
    users = server.file(USERS_FILE)
    assert (users.user, users.group, users.mode) == ("root", "dovecot", 0o640)


def test_submission_runs_show_no_secret(server, password_change):
    for key in ("changed", "restored", "again"):
        rc, out = password_change[key]
        assert rc == 0, out[-3000:]
        for secret in ("N3w-molecule-secret", "molecule-secret", "bob-secret", "$6$rounds="):
            assert secret not in out, (key, secret)
    rc, out = password_change["again"]
    assert re.search(r"anti_relay-bookworm\s*:\s*ok=\d+\s+changed=0\b", out), out[-1500:]
    assert re.search(r"anti_relay-trixie\s*:\s*ok=\d+\s+changed=0\b", out), out[-1500:]
