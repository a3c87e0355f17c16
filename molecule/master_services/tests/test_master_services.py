# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""master.cf services written by master_service, read by a running master."""

import time

LOOPBACK = '127.0.0.1:10026'


def banner(host, port):
    cmd = host.run("python3 -c 'import smtplib; print(smtplib.SMTP(\"127.0.0.1\", %d, timeout=20).ehlo()[0])'" % port)
    return cmd.rc, cmd.stdout.strip()


def master_running(host):
    return host.run('postfix status').rc == 0


def test_inet_service_not_private_and_listening(host):
    assert host.check_output('postconf -M %s/inet' % LOOPBACK).split()[2] == 'n'
    assert master_running(host)
    assert host.socket('tcp://%s' % LOOPBACK).is_listening
    assert banner(host, 10026) == (0, '250')


def test_quoted_service_reads_back(host):
    args = host.check_output('postconf -M quoted/unix').split(' pipe ', 1)[1]
    assert args == ('-o syslog_name=postfix/quoted -o {smtp_helo_name=a {b} c} flags=Rq user=nobody '
                    'argv=/bin/echo {{x y}} {a {b} c} ${recipient}')
    assert host.check_output('postconf -Ph quoted/unix/smtp_helo_name') == 'a {b} c'
    assert 'warning' not in host.run('postconf -M quoted/unix').stderr


def test_master_refuses_a_private_inet_service(host):
    """The reason for the default: with private=- (y) an inet service stops the master at its next reload,
    and the master does not start with it. (Started in the foreground, the master logs its refusal to
    syslog; through postfix start it would go to postlogd, which the master had no time to start.)"""
    try:
        host.check_output('postconf -F %s/inet/private=-' % LOOPBACK)
        host.run('postfix reload')
        deadline = time.time() + 30
        while master_running(host) and time.time() < deadline:
            time.sleep(1)
        assert not master_running(host)
        start = host.run('timeout 20 $(postconf -h daemon_directory)/master -d')
        assert start.rc == 1
        deadline = time.time() + 30
        log = ''
        while 'inet service cannot be private' not in log and time.time() < deadline:
            time.sleep(1)
            log = host.run('journalctl --no-pager -q -t postfix/master').stdout
        assert 'inet service cannot be private' in log
        assert not master_running(host)
    finally:
        host.check_output('postconf -F %s/inet/private=n' % LOOPBACK)
        host.run('postfix start')
    deadline = time.time() + 30
    while not master_running(host) and time.time() < deadline:
        time.sleep(1)
    assert master_running(host)
    assert banner(host, 10026) == (0, '250')
