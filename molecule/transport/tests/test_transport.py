# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Transport table: table content, and real routing to a listener on port 10025."""

import time
import uuid

import pytest

SINK_DIR = "/var/tmp/smtp-sink"


@pytest.fixture(scope="module")
def sink(host):
    """Postfix's smtp-sink on 127.0.0.1:10025, dumping every message it receives into SINK_DIR."""
    if host.run("systemctl is-active --quiet estafeta-smtp-sink").rc != 0:
        host.run_test("install -d -o nobody -m 0755 %s" % SINK_DIR)
        host.run_expect([0], "systemd-run --unit=estafeta-smtp-sink /usr/sbin/smtp-sink -u nobody -d %s/msg. 127.0.0.1:10025 64" % SINK_DIR)
    for dummy in range(30):
        if host.run("ss -Hltn 'sport = :10025' | grep -q 127.0.0.1").rc == 0:
            break
        time.sleep(1)
    else:
        pytest.fail("smtp-sink does not listen on 127.0.0.1:10025")
    return SINK_DIR


def send(host, to, subject):
    return host.run(
        "swaks --server 127.0.0.1 --port 25 --from root@localhost --to %s --header 'Subject: %s' --body 'transport test'" % (to, subject))


def wait_for(host, command, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if host.run(command).rc == 0:
            return True
        time.sleep(1)
    return False


def test_main_cf(host):
    assert host.check_output("postconf -h transport_maps") == "hash:/etc/postfix/transport"


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
    assert host.check_output("postmap -q %s hash:/etc/postfix/transport" % key) == value


def test_stale_route_removed(host):
    assert host.run("postmap -q viejo.example hash:/etc/postfix/transport").rc == 1
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
