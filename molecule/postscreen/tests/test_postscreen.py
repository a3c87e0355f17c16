# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""postscreen in front of port 25, proved over SMTP from the other containers (addresses in molecule.yml),
with the scenario's own DNS serving the blocklists bl.test (weight 3) and weak.test (weight 1),
threshold 2:

* a listed client (Debian 13's address: 3 + 1) is refused by postscreen: 550 at RCPT TO on Debian 12
  (enforce), 521 before the greeting on Debian 13 (drop); postscreen logs its summed rank, 4;
* a client that talks before the greeting (the bot, listed nowhere) is refused: 550 "Protocol error" at
  RCPT TO on Debian 12, after STARTTLS through tlsproxy; 521 right away on Debian 13;
* a clean client delivers, although it is listed in weak.test (score 1, under the threshold), through
  the SMTP server behind postscreen (Debian 13's logs under its own syslog name);
* an allow-listed address (Debian 12's, listed in bl.test) is let through without any test;
* submission on port 587 is not behind postscreen: the listed client authenticates and may relay;
* the role refuses a zone that anti_relay would also look up, before it changes anything;
* postscreen_state absent gives back the plain smtp/inet smtpd service (a listed client is answered by
  smtpd again), and present puts postscreen back; both are idempotent with every task run.
"""

import json
import os
import re
import uuid

import pytest
import testinfra
from molecule_helpers import log_lines, recap, reply_to, run_playbook, swaks, wait_until

SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLE_ONLY = os.path.join(SCENARIO_DIR, 'postscreen.yml')
ADDRESS = {'postscreen-bookworm': '10.231.23.11', 'postscreen-trixie': '10.231.23.12'}
SERVERS = sorted(ADDRESS)
CLIENT_IP = '10.231.23.21'
BOT_IP = '10.231.23.22'
# Debian 13's address is listed in bl.test and weak.test; Debian 12's in bl.test, and allow-listed.
LISTED, ALLOWED = 'postscreen-trixie', 'postscreen-bookworm'
# Debian 13 drops (521) where Debian 12 enforces (550).
DROPS = 'postscreen-trixie'
HELO = 'client.test'
SENDER = 'someone@client.test'
TABLE = {'postscreen-bookworm': '/etc/postfix/postscreen_access.cidr',
         'postscreen-trixie': '/etc/postfix/postscreen_clients.cidr'}
CACHE = {'postscreen-bookworm': '/var/lib/postfix/postscreen_cache.db',
         'postscreen-trixie': '/var/lib/postfix/postscreen_screened.db'}
SMTPD_LOG = {'postscreen-bookworm': 'postfix/smtpd', 'postscreen-trixie': 'postfix/pass/smtpd'}

# Run on the bot: connects, says EHLO before the server's greeting, then goes on as an SMTP client
# would (STARTTLS when asked and offered, MAIL, RCPT, QUIT); prints the transcript.
PREGREET = r'''
import socket, ssl, sys
host, port, starttls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "starttls"
sock = socket.create_connection((host, port), timeout=30)
sock.sendall(b"EHLO bot.test\r\n")
print("-> EHLO bot.test (before the greeting)")
stream = sock.makefile("rb")
pending = []
def reply():
    # One reply: lines up to the one with a space after the code. A line with another code ends it too
    # (postscreen does not finish its greeting for a client that talked before it).
    lines = []
    while True:
        if pending:
            line = pending.pop()
        else:
            try:
                raw = stream.readline()
            except ConnectionResetError:
                # Closed with our early EHLO still unread.
                raw = b""
            if not raw:
                print("<- (connection closed)")
                return lines
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if lines and line[:3] != lines[0][:3]:
            pending.append(line)
            return lines
        print("<- " + line)
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines
def send(command):
    print("-> " + command)
    sock.sendall(command.encode() + b"\r\n")
    return reply()
def expect(lines, code):
    if not lines or not lines[-1].startswith(code):
        while reply():
            pass
        sys.exit(0)
expect(reply(), "220")
ehlo = reply()
expect(ehlo, "250")
if starttls and any("STARTTLS" in line for line in ehlo):
    expect(send("STARTTLS"), "220")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(sock)
    stream = sock.makefile("rb")
    print("== TLS established: " + sock.version())
    expect(send("EHLO bot.test"), "250")
expect(send("MAIL FROM:<bot@bot.test>"), "250")
send("RCPT TO:<alice@example.test>")
send("QUIT")
'''


@pytest.fixture
def server(host):
    if host.backend.get_hostname() not in ADDRESS:
        pytest.skip('runs on the mail servers')
    return host


def container(name):
    return testinfra.get_host('docker://' + name)


def name_of(host):
    return host.backend.get_hostname()


def session(from_host, server_ip, *args):
    """An SMTP session with swaks; the transcript (the rc does not matter: the replies do)."""
    dummy, out = swaks(from_host, '--server', server_ip, '--helo', HELO, '--from', SENDER, '--timeout', '30', *args)
    return out


def count(host, pattern):
    return len(log_lines(host, pattern))


def listed_in(host, address, zone):
    """What the server's resolver answers for ``address`` in blocklist ``zone`` ('' for not listed)."""
    query = '.'.join(reversed(address.split('.'))) + '.' + zone
    return host.run('getent hosts %s', query).stdout.split(' ')[0].strip()


def test_services(server):
    """master.cf: smtp/inet is postscreen; smtpd/pass, dnsblog and tlsproxy are there; 587 is smtpd."""
    assert server.check_output('postconf -M smtp/inet').split() == \
        ['smtp', 'inet', 'n', '-', 'y', '-', '1', 'postscreen']
    assert server.check_output('postconf -M dnsblog/unix').split() == \
        ['dnsblog', 'unix', '-', '-', 'y', '-', '0', 'dnsblog']
    assert server.check_output('postconf -M tlsproxy/unix').split() == \
        ['tlsproxy', 'unix', '-', '-', 'y', '-', '0', 'tlsproxy']
    passed = server.check_output('postconf -M smtpd/pass').split()
    assert passed[:8] == ['smtpd', 'pass', '-', '-', 'y', '-', '-', 'smtpd']
    # postscreen_smtpd_options (Debian 13): the SMTP server behind postscreen logs as postfix/pass.
    overrides = server.check_output('postconf -P smtpd/pass')
    if name_of(server) == 'postscreen-trixie':
        assert overrides == 'smtpd/pass/syslog_name = postfix/pass'
    else:
        assert overrides == ''
    assert server.check_output('postconf -M submission/inet').split()[7] == 'smtpd'


def test_parameters(server):
    main = dict((k.strip(), v.strip()) for k, dummy, v in
                (line.partition('=') for line in server.check_output('postconf -n').splitlines()))
    mine = dict((k, v) for k, v in main.items() if k.startswith('postscreen_'))
    drops = name_of(server) == DROPS
    action = 'drop' if drops else 'enforce'
    expected = {
        'postscreen_access_list': 'permit_mynetworks, cidr:' + TABLE[name_of(server)],
        'postscreen_dnsbl_sites': 'bl.test=127.0.0.[2..11]*3, weak.test*1',
        'postscreen_dnsbl_threshold': '2',
        'postscreen_dnsbl_action': action,
        'postscreen_greet_action': action,
        'postscreen_denylist_action': action,
        'postscreen_greet_wait': '2s',
        'postscreen_cache_map': 'btree:$data_directory/' + ('postscreen_screened' if drops else 'postscreen_cache'),
    }
    if drops:
        expected['postscreen_greet_banner'] = 'estafeta postscreen'
    assert mine == expected
    # One lookup per zone: smtpd checks anti_relay's cl.test, and none of postscreen's zones.
    restrictions = ' '.join(v for k, v in main.items() if k.startswith('smtpd_') and k.endswith('_restrictions'))
    assert 'reject_rbl_client cl.test' in restrictions
    assert 'bl.test' not in restrictions and 'weak.test' not in restrictions


def test_access_table(server):
    """The allow-list (Debian 12's address), a rejected network, and no answer for everyone else."""
    table = server.file(TABLE[name_of(server)])
    assert table.exists and table.mode == 0o644 and table.user == 'root'
    query = 'postmap -q %s cidr:' + TABLE[name_of(server)]
    assert server.check_output(query, ADDRESS[ALLOWED]) == 'permit'
    assert server.check_output(query, '192.0.2.77') == 'reject'
    assert server.run(query, CLIENT_IP).rc == 1


def test_listed_client_is_refused(server):
    """Debian 13's address scores 3 (bl.test) + 1 (weak.test) = 4 >= 2: refused before smtpd sees it."""
    assert listed_in(server, ADDRESS[LISTED], 'bl.test') == '127.0.0.2'
    assert listed_in(server, ADDRESS[LISTED], 'weak.test') == '127.0.0.2'
    rank = r'postscreen\[[0-9]+\]: DNSBL rank 4 for \[%s\]:[0-9]+$' % re.escape(ADDRESS[LISTED])
    before = count(server, rank)
    out = session(container(LISTED), ADDRESS[name_of(server)], '--to', 'alice@example.test', '--quit-after', 'RCPT')
    refusal = 'Service unavailable; client [%s] blocked using bl.test' % ADDRESS[LISTED]
    if name_of(server) == DROPS:
        assert '<** 521 5.7.1 ' + refusal in out, out
        assert 'RCPT TO' not in out, out
    else:
        assert reply_to(out, 'RCPT TO') == '550 5.7.1 ' + refusal, out
    assert wait_until(lambda: count(server, rank) > before, 30), 'postscreen logged no DNSBL rank 4 for this client'


def test_client_that_talks_first_is_refused(server):
    """The pregreet test: the bot (listed nowhere) sends EHLO before the greeting."""
    for zone in ('bl.test', 'weak.test'):
        assert listed_in(server, BOT_IP, zone) == ''
    pregreet = r'postscreen\[[0-9]+\]: PREGREET [0-9]+ after [0-9.]+ from \[%s\]:[0-9]+: EHLO bot.test' % re.escape(BOT_IP)
    before = count(server, pregreet)
    drops = name_of(server) == DROPS
    out = container('postscreen-bot').check_output('python3 -c %s %s 25 %s', PREGREET, ADDRESS[name_of(server)],
                                                   'plain' if drops else 'starttls')
    lines = out.splitlines()
    # postscreen's teaser: the first line of a greeting that is not over yet.
    assert lines[1].startswith('<- 220-'), out
    if drops:
        assert lines[1] == '<- 220-estafeta postscreen', out
        assert lines[2:] == ['<- 521 5.5.1 Protocol error', '<- (connection closed)'], out
    else:
        # tlsproxy: postscreen's own SMTP engine offers STARTTLS and hands the TLS session to it.
        assert '<- 220 2.0.0 Ready to start TLS' in lines and any(x.startswith('== TLS established') for x in lines), out
        rcpt = lines.index('-> RCPT TO:<alice@example.test>')
        assert lines[rcpt + 1] == '<- 550 5.5.1 Protocol error', out
    assert wait_until(lambda: count(server, pregreet) > before, 30), 'postscreen logged no PREGREET for the bot'


def test_clean_client_delivers(server):
    """The clean client, listed in weak.test only (score 1 < 2), delivers through smtpd/pass."""
    assert listed_in(server, CLIENT_IP, 'weak.test') == '127.0.0.2'
    assert listed_in(server, CLIENT_IP, 'bl.test') == ''
    token = uuid.uuid4().hex
    out = session(container('postscreen-client'), ADDRESS[name_of(server)], '--to', 'alice@example.test',
                  '--header', 'Subject: %s' % token, '--body', 'postscreen test')
    match = re.search(r'250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)', out)
    assert match, out
    # The SMTP server behind postscreen took it (Debian 13's under its own syslog name), from the client.
    taken = r'%s\[[0-9]+\]: %s: client=\S*\[%s\]' % (re.escape(SMTPD_LOG[name_of(server)]), match.group(1),
                                                     re.escape(CLIENT_IP))
    assert wait_until(lambda: log_lines(server, taken), 30), 'no smtpd log line for %s' % match.group(1)
    assert wait_until(lambda: server.run('grep -qF %s /var/mail/alice', token).rc == 0, 30), \
        'message %s did not reach /var/mail/alice' % token
    # postscreen screened it (a pass is remembered in the cache, at the configured place).
    assert log_lines(server, r'postscreen\[[0-9]+\]: PASS (NEW|OLD) \[%s\]:[0-9]+$' % re.escape(CLIENT_IP))
    assert server.file(CACHE[name_of(server)]).exists


def test_allowlisted_address_bypasses(server):
    """Debian 12's address is listed in bl.test (score 3 >= 2) and allow-listed: no test, accepted."""
    assert listed_in(server, ADDRESS[ALLOWED], 'bl.test') == '127.0.0.2'
    allowed = r'postscreen\[[0-9]+\]: (ALLOW|WHITE)LISTED \[%s\]:[0-9]+$' % re.escape(ADDRESS[ALLOWED])
    before = count(server, allowed)
    out = session(container(ALLOWED), ADDRESS[name_of(server)], '--to', 'alice@example.test', '--quit-after', 'RCPT')
    assert reply_to(out, 'RCPT TO') == '250 2.1.5 Ok', out
    assert wait_until(lambda: count(server, allowed) > before, 30), 'postscreen logged no allow-listing'


def test_submission_is_not_behind_postscreen(server):
    """The listed client (refused on port 25) authenticates on port 587 and may relay."""
    out = session(container(LISTED), ADDRESS[name_of(server)], '--port', '587', '--tls', '--auth', 'PLAIN',
                  '--auth-user', 'alice', '--auth-password', 'molecule-secret', '--to', 'someone@foreign.test',
                  '--quit-after', 'RCPT')
    greeting = [line for line in out.splitlines() if line.lstrip().startswith('<-')][0]
    # smtpd's own one-line greeting, not postscreen's teaser.
    assert greeting.strip().startswith('<-  220 mail.example.test ESMTP'), out
    assert '235 2.7.0 Authentication successful' in out, out
    assert reply_to(out, 'RCPT TO') == '250 2.1.5 Ok', out


_RUNS = {}


def observe(name):
    host = container(name)
    return {
        'postconf -n': host.check_output('postconf -n'),
        'postconf -Mf': host.check_output('postconf -Mf'),
        'postconf -Pf': host.check_output('postconf -Pf'),
        'table': host.run('sha256sum %s', TABLE[name]).stdout,
    }


@pytest.fixture(scope='module')
def refused():
    """The role alone, with one of its zones also in anti_relay_dnsbl_zones (spelt otherwise)."""
    if 'refused' not in _RUNS:
        before = dict((s, observe(s)) for s in SERVERS)
        run = run_playbook(ROLE_ONLY, '-e', json.dumps({'anti_relay_dnsbl_zones': ['cl.test', 'BL.test=127.0.0.2']}))
        _RUNS['refused'] = (before, run, dict((s, observe(s)) for s in SERVERS))
    return _RUNS['refused']


def test_zone_in_both_roles_is_refused(server, refused):
    before, run, after = refused
    name = name_of(server)
    assert run['rc'] != 0 and recap(run['out'])[name]['failed'] == 1, run['out'][-3000:]
    assert 'bl.test would be looked up twice' in run['out'], run['out'][-3000:]
    assert after[name] == before[name]


@pytest.fixture(scope='module')
def cycle():
    """absent, absent again with every task run, then present, and present again with every task run."""
    if 'cycle' not in _RUNS:
        runs = {'start_state': dict((s, observe(s)) for s in SERVERS)}
        runs['absent'] = run_playbook(ROLE_ONLY, '-e', 'postscreen_state=absent')
        runs['absent_state'] = dict((s, observe(s)) for s in SERVERS)
        runs['absent_smtp'] = dict(
            (s, session(container(LISTED), ADDRESS[s], '--to', 'alice@example.test', '--quit-after', 'RCPT'))
            for s in SERVERS)
        runs['absent_again'] = run_playbook(ROLE_ONLY, '-e', 'postscreen_state=absent', '-e', 'common_fast_rerun=false')
        runs['present'] = run_playbook(ROLE_ONLY)
        runs['present_again'] = run_playbook(ROLE_ONLY, '-e', 'common_fast_rerun=false')
        runs['present_state'] = dict((s, observe(s)) for s in SERVERS)
        _RUNS['cycle'] = runs
    return _RUNS['cycle']


def test_absent_restores_plain_smtpd_and_present_comes_back(server, cycle):
    name = name_of(server)
    for run in ('absent', 'absent_again', 'present', 'present_again'):
        assert cycle[run]['rc'] == 0, (run, cycle[run]['out'][-3000:])
    assert recap(cycle['absent']['out'])[name]['changed'] > 0
    state = cycle['absent_state'][name]
    services = dict((line.split()[0] + '/' + line.split()[1], line.split()) for line in state['postconf -Mf'].splitlines()
                    if line and not line[0].isspace())
    assert services['smtp/inet'] == ['smtp', 'inet', 'n', '-', 'y', '-', '-', 'smtpd']
    assert not set(services) & {'smtpd/pass', 'dnsblog/unix', 'tlsproxy/unix'}
    assert 'submission/inet' in services
    assert not re.search(r'^postscreen_', state['postconf -n'], re.M)
    assert state['table'] == ''
    # The listed client is answered by smtpd itself again: one-line greeting, accepted.
    out = cycle['absent_smtp'][name]
    assert not re.search(r'<-  220-', out) and reply_to(out, 'RCPT TO') == '250 2.1.5 Ok', out
    # Every task of the role run again: nothing left to change, in either state.
    assert recap(cycle['absent_again']['out'])[name]['changed'] == 0, cycle['absent_again']['out'][-3000:]
    assert recap(cycle['present']['out'])[name]['changed'] > 0
    assert recap(cycle['present_again']['out'])[name]['changed'] == 0, cycle['present_again']['out'][-3000:]
    assert cycle['present_state'][name] == cycle['start_state'][name]
