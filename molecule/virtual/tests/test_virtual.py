# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Virtual alias domains: configuration, table content, and real SMTP delivery/rejection."""

import uuid

import pytest
from molecule_helpers import wait_until


def outside_address(host):
    """The container's own non-loopback address: a client connecting from it is not in mynetworks."""
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")


def swaks(host, to, subject, quit_after=None):
    server = outside_address(host)
    cmd = "swaks --server {s} --port 25 --from remitente@remoto.example --to {to} --header 'Subject: {subj}' --body 'virtual test'".format(
        s=server, to=to, subj=subject)
    if quit_after:
        cmd += " --quit-after " + quit_after
    return host.run(cmd)


def wait_for_mail(host, user, token, timeout=60):
    return wait_until(lambda: host.run("grep -qF %s /var/mail/%s" % (token, user)).rc == 0, timeout)


def table(host):
    """The role's own alias table: hash at the default path, lmdb at another path on Debian 13."""
    if host.backend.get_hostname() == "virtual-trixie":
        return "lmdb:/etc/postfix/virtual_aliases"
    return "hash:/etc/postfix/virtual"


def test_main_cf(host):
    assert host.check_output("postconf -h virtual_alias_domains") == "dominiovirtual1.com, dominiovirtual2.com"
    assert host.check_output("postconf -h virtual_alias_maps") == table(host) + ", regexp:/etc/postfix/virtual_regexp"
    path = table(host).split(":", 1)[1]
    database = path + (".lmdb" if table(host).startswith("lmdb:") else ".db")
    assert host.file(database).exists
    # A virtual alias domain must never also be a local domain.
    assert "dominiovirtual" not in host.check_output("postconf -h mydestination")


@pytest.mark.parametrize("key,value", [
    ("usuario1@dominiovirtual1.com", "usuariolocal1"),
    ("usuario3@dominiovirtual1.com", "usuariolocal3"),
    ("ventas@dominiovirtual1.com", "usuariolocal1, usuariolocal2"),
    ("externo@dominiovirtual1.com", "destino@remoto.example"),
    ("usuario1@dominiovirtual2.com", "usuariolocal5"),
    ("@dominiovirtual2.com", "usuariolocal4"),
])
def test_table_answers(host, key, value):
    assert host.check_output("postmap -q %s %s" % (key, table(host))) == value


def test_stale_alias_removed(host):
    assert host.run("postmap -q viejo@dominiovirtual1.com %s" % table(host)).rc == 1
    assert "viejo" not in host.file(table(host).split(":", 1)[1]).content_string


def test_extra_map_delivers(host):
    """virtual_alias_extra_maps: an address only the extra regexp table knows is delivered through it."""
    assert host.run("postmap -q soporte@dominiovirtual1.com %s" % table(host)).rc == 1
    assert host.check_output("postmap -q soporte+ayuda@dominiovirtual1.com regexp:/etc/postfix/virtual_regexp") == \
        "usuariolocal3"
    token = "extra-" + uuid.uuid4().hex
    res = swaks(host, "soporte+ayuda@dominiovirtual1.com", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for_mail(host, "usuariolocal3", token), host.run("tail -n 30 /var/log/mail.log").stdout


def test_alias_to_local_user_is_delivered(host):
    token = "virtual-" + uuid.uuid4().hex
    res = swaks(host, "usuario1@dominiovirtual1.com", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for_mail(host, "usuariolocal1", token), host.run("tail -n 30 /var/log/mail.log").stdout


def test_alias_to_several_users(host):
    token = "ventas-" + uuid.uuid4().hex
    res = swaks(host, "ventas@dominiovirtual1.com", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for_mail(host, "usuariolocal1", token)
    assert wait_for_mail(host, "usuariolocal2", token)


def test_catch_all_and_specific_address(host):
    token = "catchall-" + uuid.uuid4().hex
    res = swaks(host, "cualquiera@dominiovirtual2.com", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for_mail(host, "usuariolocal4", token)
    token = "specific-" + uuid.uuid4().hex
    res = swaks(host, "usuario1@dominiovirtual2.com", token)
    assert res.rc == 0, res.stdout + res.stderr
    assert wait_for_mail(host, "usuariolocal5", token)
    assert host.run("grep -qF %s /var/mail/usuariolocal4" % token).rc != 0


@pytest.mark.parametrize("address", ["nadie@dominiovirtual1.com", "viejo@dominiovirtual1.com"])
def test_unknown_address_rejected_at_rcpt(host, address):
    res = swaks(host, address, "unknown", quit_after="RCPT")
    assert res.rc != 0
    assert "<** 550" in res.stdout, res.stdout
    assert "User unknown in virtual alias table" in res.stdout
