# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Transport hubs converged by playbooks/transport_hub.yml with the example inventory's settings.

Table content (the example's routes and the test's), real routing to a listener on port 10025,
and the anti_relay role in SMTP sessions from the other hub (a client outside mynetworks):
relaying is refused, also to the routed domains, while the hub's own clients (the loopback) may
relay; MAIL before HELO and sender domains unknown to DNS are refused.
"""

import ipaddress
import uuid

import pytest
import testinfra
from molecule_helpers import wait_until

SINK_DIR = "/var/tmp/smtp-sink"
# A foreign domain served by the scenario's DNS server (prepare.yml): the anti_relay role checks
# the sender's domain in DNS.
FOREIGN = "externo.example"
# An SMTP session that sends MAIL FROM without greeting first; prints the server's answer.
MAIL_WITHOUT_HELO = """
import smtplib, sys
session = smtplib.SMTP(sys.argv[1], 25)
code, text = session.docmd("MAIL FROM:<someone@%s>")
print(code, text.decode())
session.quit()
""" % FOREIGN


@pytest.fixture(scope="module")
def sink(host):
    """Postfix's smtp-sink on 127.0.0.1:10025, dumping every message it receives into SINK_DIR."""
    if host.run("systemctl is-active --quiet estafeta-smtp-sink").rc != 0:
        host.run_test("install -d -o nobody -m 0755 %s" % SINK_DIR)
        host.run_expect([0], "systemd-run --unit=estafeta-smtp-sink /usr/sbin/smtp-sink -u nobody -d %s/msg. 127.0.0.1:10025 64" % SINK_DIR)
    wait_until(lambda: host.run("ss -Hltn 'sport = :10025' | grep -q 127.0.0.1").rc == 0, 30,
               what="smtp-sink listening on 127.0.0.1:10025")
    return SINK_DIR


def send(host, to, subject):
    """From the hub itself (in mynetworks), as root@myhostname (the anti_relay role wants a fully-qualified sender)."""
    return host.run(
        "swaks --server 127.0.0.1 --port 25 --from root@%s --to %s --header 'Subject: %s' --body 'transport test'"
        % (host.check_output("postconf -h myhostname"), to, subject))


def other_hub(host):
    """The other hub of the scenario: a client whose address is not in this hub's mynetworks."""
    name = host.backend.get_hostname()
    return testinfra.get_host("docker://" + ("transport-trixie" if name == "transport-bookworm" else "transport-bookworm"))


def wait_for(host, command, timeout=60):
    return wait_until(lambda: host.run(command).rc == 0, timeout)


def table(host):
    """The transport table: hash, or btree on the Debian 13 hub (transport_map_type)."""
    return ("btree" if host.backend.get_hostname().endswith("trixie") else "hash") + ":/etc/postfix/transport"


def test_main_cf(host):
    assert host.check_output("postconf -h transport_maps") == table(host)
    # The example's hub keeps the default identity: myhostname from the facts, mydomain from group_vars/all.yml.
    assert host.check_output("postconf -h myhostname") == host.check_output("hostname -f")
    assert host.check_output("postconf -h mydomain") == "example.com"
    assert host.check_output("postconf -h smtpd_relay_restrictions") == \
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"


@pytest.mark.parametrize("key,value", [
    ("dominio1.com", "smtp:servidor2.dominio2.com"),
    ("dominio2.com", "smtp:servidor3.dominio3.com"),
    ("dominio3.com", "smtp:servidor4.dominio4.com:10025"),
    ("enrutado.example", "smtp:[127.0.0.1]:10025"),
    ("vip@dominio6.example", "smtp:[127.0.0.1]:10025"),
    ("dominio6.example", "error:5.7.1 dominio6.example no longer receives mail"),
    (".interno.example", "relay:[gateway.interno.example]"),
])
def test_table_answers(host, key, value):
    assert host.check_output("postmap -q %s %s" % (key, table(host))) == value


def test_stale_route_removed(host):
    assert host.run("postmap -q viejo.example %s" % table(host)).rc == 1
    assert "viejo" not in host.file("/etc/postfix/transport").content_string


def test_routed_domain_goes_to_port_10025(host, sink):
    token = "transport-" + uuid.uuid4().hex
    res = send(host, "usuario@enrutado.example", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for(host, "grep -rqF %s %s" % (token, sink)), host.run("tail -n 30 /var/log/mail.log").stdout
    log = host.check_output("grep -F 'to=<usuario@enrutado.example>' /var/log/mail.log")
    assert "relay=127.0.0.1[127.0.0.1]:10025" in log
    assert "status=sent" in log


def test_address_route_wins_over_domain_route(host, sink):
    token = "vip-" + uuid.uuid4().hex
    res = send(host, "vip@dominio6.example", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for(host, "grep -rqF %s %s" % (token, sink))
    # Every other address of the domain takes the domain's route, the error transport: Postfix
    # already refuses it at RCPT time with the route's text.
    res = send(host, "otro@dominio6.example", "otro")
    assert res.rc != 0
    assert "<** 550 5.7.1 <otro@dominio6.example>: Recipient address rejected: dominio6.example no longer receives mail" in res.stdout, res.stdout


@pytest.mark.parametrize("to", ["victim@" + FOREIGN, "usuario@enrutado.example"])
def test_relay_refused_from_outside(host, to):
    """A real SMTP session from the other hub's container: not in mynetworks, so no relaying."""
    client = other_hub(host)
    address = ipaddress.ip_address(client.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1"))
    networks = host.check_output("postconf -h mynetworks").replace(",", " ").split()
    assert networks and not any(address in ipaddress.ip_network(net.strip("[]").replace("]/", "/"), strict=False)
                                for net in networks), networks
    server = host.check_output("hostname -s")
    res = client.run("swaks --server %s --port 25 --from someone@%s --to %s --quit-after RCPT", server, FOREIGN, to)
    assert res.rc != 0
    assert "<** 554 5.7.1 <%s>: Relay access denied" % to in res.stdout, res.stdout
    # The same recipient from the hub's own client (the loopback, in mynetworks) passes RCPT.
    res = host.run("swaks --server 127.0.0.1 --port 25 --from someone@%s --to %s --quit-after RCPT", FOREIGN, to)
    assert res.rc == 0, res.stdout


def test_anti_relay_checks_from_outside(host):
    """What the anti_relay role adds to the base role, in real SMTP sessions from the other hub."""
    client = other_hub(host)
    server = host.check_output("hostname -s")
    local = "postmaster@" + host.check_output("postconf -h myhostname")
    # smtpd_helo_required: MAIL FROM before HELO/EHLO is refused.
    res = client.run("python3 -c %s %s", MAIL_WITHOUT_HELO, server)
    assert res.rc == 0, res.stderr
    assert res.stdout.startswith("503 5.5.1"), res.stdout
    # reject_unknown_sender_domain: a sender domain that does not exist in DNS, to a local recipient.
    res = client.run("swaks --server %s --port 25 --from someone@nowhere.invalid --to %s --quit-after RCPT", server, local)
    assert res.rc != 0
    assert "<** 450 4.1.8 <someone@nowhere.invalid>: Sender address rejected: Domain not found" in res.stdout, res.stdout
    res = client.run("swaks --server %s --port 25 --from someone@%s --to %s --quit-after RCPT", server, FOREIGN, local)
    assert res.rc == 0, res.stdout
