# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""SPF checking of inbound mail (anti_relay_spf_*), proved over SMTP from the outside client.

The test DNS server (prepare.yml) serves the SPF records of the sender domains spf-fail.test
(``-all``), spf-pass.test (the client's address, ``-all``), spf-soft.test (``~all``), spf-perm.test (a
broken record) and spf-temp.test (its include times out); client.test has no SPF record.

* Debian 12 has the policy's defaults: a fail is refused (550 5.7.23), a pass, none, softfail,
  permerror and temperror are accepted, each with its Received-SPF header; a HELO fail is refused.
* Debian 13 is stricter: softfail refused, permerror refused (550 5.7.24), temperror deferred
  (450 4.7.24), a HELO fail refused only for the null sender, its own refusal text.
* Authenticated (port 587) and mynetworks clients are not SPF-checked: a sender of spf-fail.test is
  accepted from them (while the policy itself refuses the same sender from the same address).
* Switched off, everything SPF added is gone: the policy check, the master.cf service, the time limit,
  the role's settings file and (where the role installed it, Debian 12) the package, its files and its
  user; a package that was there before (Debian 13, as if installed by hand) stays, untouched. A fail is
  accepted then. Switched on again, everything is back and the fail refused.
"""

import os
import uuid

import pytest
import testinfra
from molecule_helpers import address, recap, run_playbook, swaks, wait_until

CLIENT = "anti_relay-client"
HELO = "client.test"
STRICT = "anti_relay-trixie"
SPF_ITEM = "check_policy_service unix:private/policy-spf"
SPF_CONF = "/etc/postfix-policyd-spf-python/estafeta-postfix.conf"
DEBIAN_CONF = "/etc/postfix-policyd-spf-python/policyd-spf.conf"
MARKER = "/etc/postfix/estafeta-policyd-spf-installed"
CONVERGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converge.yml")


def strict(host):
    return host.backend.get_hostname() == STRICT


def rcpt(from_host, server_ip, sender, helo=HELO, to="alice@example.test", port=25, *extra):
    """An SMTP session that ends after RCPT; returns the transcript."""
    dummy, out = swaks(from_host, "--server", server_ip, "--port", port, "--helo", helo, "--from", sender,
                       "--to", to, "--quit-after", "RCPT", *extra)
    return out


def delivered_with_header(server, client, domain, result):
    """Send a whole message from ``token@domain``; return the Received-SPF line of its delivery to alice."""
    token = uuid.uuid4().hex[:12]
    sender = "%s@%s" % (token, domain)
    dummy, out = swaks(client, "--server", address(server), "--helo", HELO, "--from", sender,
                       "--to", "alice@example.test", "--body", "spf test")
    assert "250 2.0.0 Ok: queued" in out, out
    expected = "Received-SPF: %s (mailfrom) identity=mailfrom; client-ip=%s; helo=%s; envelope-from=%s" % (
        result, address(client), HELO, sender)
    assert wait_until(lambda: server.run("grep -F %s /var/mail/alice", "envelope-from=" + sender).rc == 0, 30), \
        "message from %s did not reach /var/mail/alice" % sender
    line = server.check_output("grep -F %s /var/mail/alice", "envelope-from=" + sender)
    assert line.startswith(expected), line
    return line


def test_policy_service_time_limit_and_settings(server):
    entry = server.check_output("postconf -M policy-spf/unix").split()
    assert entry == ["policy-spf", "unix", "-", "n", "n", "-", "0", "spawn", "user=policyd-spf",
                     "argv=/usr/bin/policyd-spf", SPF_CONF], entry
    assert server.check_output("postconf -h policy-spf_time_limit") == ("1800" if strict(server) else "3600")
    # The role's own settings file; Debian's (a conffile) is as the package shipped it.
    assert server.run("dpkg --verify postfix-policyd-spf-python").stdout == ""
    assert server.file(DEBIAN_CONF).exists
    conf = server.file(SPF_CONF)
    assert conf.mode == 0o644 and conf.user == "root"
    settings = dict(line.split(" = ", 1) for line in conf.content_string.splitlines()
                    if line and not line.startswith("#"))
    assert settings["Lookup_Time"] == "3"
    if strict(server):
        assert (settings["Mail_From_reject"], settings["HELO_reject"]) == ("Softfail", "Null")
        assert (settings["PermError_reject"], settings["TempError_Defer"]) == ("True", "True")
        # None skipped: written as the unspecified addresses (policyd-spf fails on an empty value).
        assert settings["skip_addresses"] == "0.0.0.0/32,::/128"
    else:
        assert (settings["Mail_From_reject"], settings["HELO_reject"]) == ("Fail", "Fail")
        assert (settings["PermError_reject"], settings["TempError_Defer"]) == ("False", "False")
        assert settings["skip_addresses"] == "127.0.0.0/8,::ffff:127.0.0.0/104,::1"
    assert server.package("postfix-policyd-spf-python").is_installed


def test_policy_check_after_the_relay_check_and_the_permits(server):
    items = [i.strip() for i in server.check_output("postconf -h smtpd_recipient_restrictions").split(",")]
    assert items.count(SPF_ITEM) == 1, items
    spf = items.index(SPF_ITEM)
    for before in ("permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination",
                   "reject_rbl_client bl.test", "reject_rhsbl_sender rhsbl.test"):
        assert items.index(before) < spf, (before, items)
    assert spf == len(items) - 1, items
    # Only the recipient list asks the policy.
    for name in ("smtpd_relay_restrictions", "smtpd_sender_restrictions", "smtpd_client_restrictions",
                 "smtpd_helo_restrictions"):
        assert "policy-spf" not in server.check_output("postconf -h %s", name), name


def test_fail_refused(server, client):
    out = rcpt(client, address(server), "someone@spf-fail.test")
    text = "by the estafeta test" if strict(server) else "due to"
    assert "<** 550 5.7.23 <alice@example.test>: Recipient address rejected: Message rejected %s: " \
           "SPF fail - not authorized" % text in out, out


def test_pass_accepted(server, client):
    delivered_with_header(server, client, "spf-pass.test", "Pass")


def test_none_accepted(server, client):
    """client.test publishes no SPF record."""
    delivered_with_header(server, client, "client.test", "None")


def test_softfail(server, client):
    """Accepted with a Softfail header by default (Mail_From_reject = Fail); refused with Softfail (Debian 13)."""
    if strict(server):
        out = rcpt(client, address(server), "someone@spf-soft.test")
        assert "<** 550 5.7.23 <alice@example.test>: Recipient address rejected: Message rejected by the " \
               "estafeta test: domain owner discourages use of this host" in out, out
    else:
        delivered_with_header(server, client, "spf-soft.test", "Softfail")


def test_permerror(server, client):
    """A broken record: accepted with a Permerror header by default, refused with 5.7.24 (Debian 13)."""
    if strict(server):
        out = rcpt(client, address(server), "someone@spf-perm.test")
        assert "<** 550 5.7.24 <alice@example.test>: Recipient address rejected: Message rejected by the " \
               "estafeta test: SPF Permanent Error: Unknown mechanism found: no-such-mechanism" in out, out
    else:
        delivered_with_header(server, client, "spf-perm.test", "Permerror")


def test_temperror(server, client):
    """A DNS time-out: accepted with a Temperror header by default, deferred with 4.7.24 (Debian 13)."""
    if strict(server):
        out = rcpt(client, address(server), "someone@spf-temp.test")
        assert "<** 450 4.7.24 <alice@example.test>: Recipient address rejected: Message deferred by the " \
               "estafeta test: SPF Temporary Error: DNS Timeout" in out, out
    else:
        delivered_with_header(server, client, "spf-temp.test", "Temperror")


def test_helo_fail(server, client):
    """The HELO name is checked first: its fail is refused (HELO_reject = Fail), on Debian 13 (Null) only
    for the null sender; a null sender with a HELO name without SPF record is accepted (bounces)."""
    out = rcpt(client, address(server), "<>", helo="spf-fail.test")
    assert "<** 550 5.7.23 <alice@example.test>: Recipient address rejected: Message rejected" in out, out
    assert "SPF fail - not authorized" in out, out
    out = rcpt(client, address(server), "someone@client.test", helo="spf-fail.test")
    if strict(server):
        assert "<-  250 2.1.5 Ok" in out, out
    else:
        assert "<** 550 5.7.23" in out and "SPF fail - not authorized" in out, out
    out = rcpt(client, address(server), "<>")
    assert "<-  250 2.1.5 Ok" in out, out


def test_authenticated_client_not_checked(server, client):
    """alice on port 587 may send as a sender of spf-fail.test; the same sender from outside is refused."""
    out = rcpt(client, address(server), "someone@spf-fail.test", HELO, "alice@example.test", 587, "--tls",
               "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "molecule-secret")
    assert "235 2.7.0 Authentication successful" in out, out
    assert "<~  250 2.1.5 Ok" in out, out
    out = rcpt(client, address(server), "someone@spf-fail.test")
    assert "<** 550 5.7.23" in out, out


# Asks the policy server directly, as Postfix does (client address, HELO name, sender, instance), with the
# role's settings file.
POLICY_QUERY = ("printf 'request=smtpd_access_policy\\nprotocol_state=RCPT\\nclient_address=%%s\\nhelo_name=%%s\\n"
                "sender=%%s\\nrecipient=alice@example.test\\ninstance=%%s\\n\\n' %s %s %s %s | "
                "runuser -u policyd-spf -- /usr/bin/policyd-spf " + SPF_CONF)


def test_mynetworks_client_not_checked(server):
    """The loopback (in mynetworks) may send as a sender of spf-fail.test. On Debian 13 the policy skips no
    address and refuses that sender from 127.0.0.1 itself: only permit_mynetworks, before the policy check,
    lets it through. On Debian 12 the policy would skip the loopback anyway (skip_addresses)."""
    out = rcpt(server, "127.0.0.1", "someone@spf-fail.test")
    assert "<-  250 2.1.5 Ok" in out, out
    answer = server.check_output(POLICY_QUERY, "127.0.0.1", HELO, "someone@spf-fail.test", uuid.uuid4().hex[:8])
    if strict(server):
        assert answer.startswith("action=550 5.7.23 Message rejected by the estafeta test: SPF fail"), answer
    else:
        assert answer.startswith("action=prepend X-Comment: SPF check N/A for local connections"), answer


_TOGGLED = {}


@pytest.fixture
def toggled():
    """Switch SPF off on both servers, observe, switch it on again, observe; once for all tests. Before, the
    Debian 13 server forgets that the role installed the package (its note removed), as if it had been
    installed by hand."""
    if not _TOGGLED:
        servers = dict((name, testinfra.get_host("docker://" + name)) for name in ("anti_relay-bookworm", STRICT))
        outside = testinfra.get_host("docker://" + CLIENT)
        # The converge installed the package on both: both have the note.
        _TOGGLED["noted"] = dict((name, host.file(MARKER).exists) for name, host in servers.items())
        servers[STRICT].check_output("rm %s", MARKER)

        def observe():
            found = {}
            for name, host in servers.items():
                found[name] = {
                    "list": host.check_output("postconf -h smtpd_recipient_restrictions"),
                    "service": host.check_output("postconf -M policy-spf/unix"),
                    "param": host.check_output("postconf -n policy-spf_time_limit"),
                    "package": host.run("dpkg-query -W -f '${db:Status-Abbrev}' postfix-policyd-spf-python").stdout,
                    "verify": host.run("dpkg --verify postfix-policyd-spf-python").stdout,
                    "files": host.run("ls -A /etc/postfix-policyd-spf-python").stdout.split(),
                    "marker": host.file(MARKER).exists,
                    "user": host.run("getent passwd policyd-spf").rc == 0,
                    "group": host.run("getent group policyd-spf").rc == 0,
                    "smtp": rcpt(outside, address(host), "someone@spf-fail.test"),
                }
            return found

        off = run_playbook(CONVERGE, "-e", "anti_relay_spf_enabled=false")
        _TOGGLED["off"] = dict(off, state=observe(), recap=recap(off["out"]))
        on = run_playbook(CONVERGE)
        _TOGGLED["on"] = dict(on, state=observe(), recap=recap(on["out"]))
    return _TOGGLED


def test_disabled_removes_what_it_added(server, toggled):
    name = server.backend.get_hostname()
    off = toggled["off"]
    assert toggled["noted"][name], toggled["noted"]
    assert off["rc"] == 0 and off["recap"][name]["changed"] > 0, off["out"][-3000:]
    state = off["state"][name]
    assert "policy-spf" not in state["list"], state
    assert "reject_unauth_destination" in state["list"], state
    assert state["service"] == "" and state["param"] == "", state
    if strict(server):
        # Installed otherwise (no note): the package, Debian's settings and the user stay; the role's file goes.
        assert state["package"] == "ii ", state
        assert state["verify"] == "" and state["files"] == ["policyd-spf.conf"], state
        assert state["user"] and state["group"], state
    else:
        # Installed by the role: purged, with its directory, its user and group, and the note.
        assert state["package"] in ("", "un "), state
        assert state["files"] == [] and not state["user"] and not state["group"], state
    assert not state["marker"], state
    # Mail from spf-fail.test is accepted without the check.
    assert "<-  250 2.1.5 Ok" in state["smtp"], state["smtp"]


def test_enabled_again_restores_everything(server, toggled):
    name = server.backend.get_hostname()
    on = toggled["on"]
    assert on["rc"] == 0 and on["recap"][name]["changed"] > 0, on["out"][-3000:]
    state = on["state"][name]
    assert state["list"].endswith(SPF_ITEM), state
    assert state["service"].split()[:11] == ["policy-spf", "unix", "-", "n", "n", "-", "0", "spawn",
                                             "user=policyd-spf", "argv=/usr/bin/policyd-spf", SPF_CONF], state
    assert state["param"] == "policy-spf_time_limit = %s" % ("1800" if strict(server) else "3600"), state
    assert state["package"] == "ii " and state["verify"] == "" and state["user"], state
    assert sorted(state["files"]) == ["estafeta-postfix.conf", "policyd-spf.conf"], state
    # The role installed the package again on Debian 12 (noted); on Debian 13 it found it installed.
    assert state["marker"] == (not strict(server)), state
    assert "<** 550 5.7.23" in state["smtp"], state["smtp"]
