# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Relay abuse, secrets, hardened TLS, faults on a running server and a small load test.

Runs on the two mail servers; the outside client (not in mynetworks, the servers' smarthost with
Postfix's smtp-sink on port 2525 writing every message it gets into /srv/sink) is a second host.
The fault cases run ansible-playbook against the servers from here, with Molecule's inventory.
"""

import os
import re
import signal
import subprocess
import time
import uuid

import pytest
import testinfra

CLIENT = testinfra.get_host('docker://security-client')
ALIAS = {'security-bookworm': 'mx-bookworm', 'security-trixie': 'mx-trixie'}
SECRETS = ['Subm1ssion-S3cret-QRS', 'Sm4rthost-S3cret-XYZ']
FOREIGN = 'relay-target.test'
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def name_of(host):
    return host.backend.get_hostname()


@pytest.fixture(autouse=True)
def servers_only(host):
    """The tests run on the servers; the client is driven from them."""
    if name_of(host) not in ALIAS:
        pytest.skip('the outside client is driven through the server tests')


def wait(predicate, timeout=60, step=1):
    deadline = time.time() + timeout
    while True:
        if predicate():
            return True
        if time.time() > deadline:
            return False
        time.sleep(step)


def sink_count(pattern):
    """How many messages the client's smtp-sink got whose envelope/headers match the grep pattern."""
    out = CLIENT.run("grep -l -r -E -e %s /srv/sink | wc -l", pattern).stdout.strip()
    return int(out or 0)


def queue_has(host, text):
    return text in host.run('postqueue -j').stdout


def swaks(server, *args):
    """Run swaks on the outside client; returns (rc, transcript)."""
    cmd = CLIENT.run('swaks --server %s --timeout 20 ' + ' '.join(['%s'] * len(args)), server, *args)
    return cmd.rc, cmd.stdout + cmd.stderr


def reply_to(transcript, command):
    """The server's reply lines to the client's command (RCPT, MAIL, ...)."""
    lines = transcript.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip()[:2] in ('->', '~>') and command in line:
            replies = []
            for nxt in lines[i + 1:]:
                stripped = nxt.lstrip()
                if stripped[:2] in ('<-', '<~') or stripped.startswith('<**'):
                    replies.append(stripped.lstrip('<-~* ').strip())
                    if re.match(r'^\d{3} ', replies[-1]):
                        break
                elif stripped[:2] in ('->', '~>'):
                    break
            return ' / '.join(replies)
    return ''


# ---------------------------------------------------------------- relay abuse

# The foreign sender's domain must resolve (the servers reject unknown sender domains before they
# look at the recipient); in the containers only Debian's mirror does.
OUTSIDER = 'spammer@deb.debian.org'
TRICKS = [
    ('S01', 'plain foreign recipient', OUTSIDER, 'victim1@%s' % FOREIGN, 'victim1'),
    ('S02', '"%" hack: user%foreign@ourdomain', OUTSIDER, 'victim2%%%s@example.test' % FOREIGN, 'victim2'),
    ('S03', '"!" bang path: foreign!user@ourdomain', OUTSIDER, '%s!victim3@example.test' % FOREIGN, 'victim3'),
    ('S04', 'quoted local part: "user@foreign"@ourdomain', OUTSIDER, '"victim4@%s"@example.test' % FOREIGN, 'victim4'),
    ('S05', 'source route: @ourdomain:user@foreign', OUTSIDER, '@example.test:victim5@%s' % FOREIGN, 'victim5'),
    ('S06', 'foreign recipient with our own domain as sender', 'postmaster@example.test', 'victim6@%s' % FOREIGN,
     'victim6'),
]


@pytest.mark.parametrize('case_id,trick,sender,rcpt,victim', TRICKS, ids=[t[0] for t in TRICKS])
def test_relay_trick_refused(host, case, case_id, trick, sender, rcpt, victim):
    case(case_id, 'Relay attempt from a client outside mynetworks, not authenticated: %s (%s), sent with a HELO of '
                  'its own and again with HELO mail.example.test (our own name)' % (trick, rcpt))
    seen = []
    for helo in ('outside.test', 'mail.example.test'):
        rc, out = swaks(ALIAS[name_of(host)], '--helo', helo, '--from', sender, '--to', rcpt)
        reply = reply_to(out, 'RCPT TO')
        if rc == 0:
            # Accepted: it may only be a local delivery attempt; nothing may go out.
            time.sleep(3)
            seen.append('HELO %s: accepted (%s)' % (helo, reply))
        else:
            assert reply[:1] in ('4', '5'), 'unexpected transcript:\n' + out
            # Refused for the recipient, not for something else (sender, HELO) that would hide an open relay.
            assert 'Sender address rejected' not in reply and 'Helo command rejected' not in reply, reply
            seen.append('HELO %s: %s' % (helo, reply))
    assert not queue_has(host, victim), host.run('postqueue -p').stdout
    assert sink_count(victim + '@' + FOREIGN.replace('.', r'\.')) == 0
    case.evidence('; '.join(seen) + '; nothing queued for %s, nothing arrived at the next hop' % FOREIGN)


def test_nothing_relayed(host, case):
    case('S07', 'After every relay attempt: count what left for the foreign domain (the next hop\'s messages, the '
                'queue, delivery attempts in the log)')
    time.sleep(2)
    leaked = sink_count('X-Rcpt-Args: <[^>]*' + FOREIGN.replace('.', r'\.'))
    queued = host.run('postqueue -j | grep -c %s', FOREIGN).stdout.strip() or '0'
    tried = host.run("grep -c -E 'postfix(/[a-z]+)*/(smtp|lmtp|local|virtual|pipe)\\[[0-9]+\\]: [0-9A-Za-z]+: to=<[^>]*%s' "
                     "/var/log/mail.log", FOREIGN).stdout.strip() or '0'
    assert (leaked, queued, tried) == (0, '0', '0')
    case.evidence('messages for %s at the next hop: 0, in the queue: 0, delivery attempts in the log: 0' % FOREIGN)


def test_auth_only_after_starttls(host, case):
    case('S08', 'AUTH is offered only after STARTTLS (ports 25 and 587), and a login over TLS on 587 relays')
    server = ALIAS[name_of(host)]
    for port in ('25', '587'):
        rc, out = swaks(server, '--port', port, '--quit-after', 'EHLO', '--helo', 'outside.test')
        assert 'AUTH' not in out, out
    rc, out = swaks(server, '--port', '587', '--tls', '--quit-after', 'EHLO', '--helo', 'outside.test')
    assert rc == 0 and re.search(r'<~\s+250[- ]AUTH\b', out), out
    # AUTH sent anyway in clear text (with a wrong password) is refused as a command.
    clear = CLIENT.check_output("python3 -c %s", "import smtplib; s = smtplib.SMTP('%s', 587, timeout=20); "
                                "s.ehlo('outside.test'); print(s.docmd('AUTH', 'PLAIN AGFsaWNlAHdyb25n')); s.quit()"
                                % server)
    assert clear.startswith('(5'), clear
    token = uuid.uuid4().hex[:10]
    rc, out = swaks(server, '--port', '587', '--tls', '--helo', 'outside.test', '--auth', 'PLAIN', '--auth-user', 'alice',
                    '--auth-password', SECRETS[0], '--from', 'alice@example.test', '--to', 'friend-%s@far.test' % token)
    assert rc == 0, out
    assert wait(lambda: sink_count('friend-%s@far' % token) == 1, 60)
    case.evidence('no AUTH in EHLO on 25 or 587 in clear text; AUTH PLAIN LOGIN after STARTTLS on 587; AUTH in clear '
                  'text on 587 -> %s; alice over TLS relays to far.test (1 message at the next hop)' % clear)


def test_vrfy_disabled(host, case):
    case('S09', 'VRFY from the outside client (base role default disable_vrfy_command = yes)')
    assert host.check_output('postconf -h disable_vrfy_command') == 'yes'
    out = CLIENT.check_output("python3 -c %s", "import smtplib; s = smtplib.SMTP('%s', 25, timeout=20); "
                              "s.ehlo('outside.test'); print(s.verify('root')); s.quit()" % ALIAS[name_of(host)])
    assert out.startswith('(502'), out
    case.evidence('VRFY root -> %s' % out)


def test_tls_hardened(host, case):
    case('S10', 'tls_hardened: true; the client tries STARTTLS with TLS 1.1 (its own OpenSSL allowed to, SECLEVEL=0) '
                'and with TLS 1.2')
    assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1.2'
    server = ALIAS[name_of(host)]
    old = CLIENT.run('openssl s_client -connect %s:25 -starttls smtp -tls1_1 -cipher DEFAULT:@SECLEVEL=0 </dev/null',
                     server)
    # s_client prints the protocol it asked for even when the handshake fails: look at the cipher.
    assert old.rc != 0 and 'Cipher is (NONE)' in old.stdout, old.stdout + old.stderr
    new = CLIENT.run('openssl s_client -connect %s:25 -starttls smtp -tls1_2 </dev/null', server)
    assert new.rc == 0 and re.search(r'Protocol\s*:\s*TLSv1\.2', new.stdout), new.stdout + new.stderr
    alert = re.search(r'(tlsv1 alert [a-z ]+|no protocols available|unsupported protocol|wrong version number)',
                      old.stderr)
    case.evidence('TLS 1.1 refused (%s); TLS 1.2 handshake completes' % (alert.group(1) if alert else 'handshake failed'))


def test_secret_files(host, case):
    case('S11', 'Private key and password files on the server: modes, and no plaintext password in any '
                'world-readable file')
    key = host.file('/etc/ssl/private/postfix.key')
    assert key.mode == 0o600, oct(key.mode)
    modes = ['postfix.key %o' % key.mode]
    for path in ('/etc/postfix/sasl_passwd', '/etc/postfix/sasl_passwd.db', '/etc/postfix/sasl_passwd.lmdb'):
        if host.file(path).exists:
            assert host.file(path).mode == 0o600, path
            modes.append('%s %o' % (os.path.basename(path), host.file(path).mode))
    users = host.file('/etc/dovecot/estafeta-postfix-users')
    assert users.mode & 0o007 == 0 and SECRETS[0] not in users.content_string
    modes.append('dovecot users file %o (hashes only)' % users.mode)
    args = ' '.join("-e '%s'" % s for s in SECRETS)
    found = host.run("find / /tmp /run -xdev \\( -path /proc -o -path /sys \\) -prune -o -type f -perm -004 "
                     "-size -5M -print0 2>/dev/null | xargs -0 grep -l -F %s 2>/dev/null" % args).stdout.split()
    assert found == []
    case.evidence(', '.join(modes) + '; world-readable files holding a password: none')


# ---------------------------------------------------------------- faults (ansible-playbook against the servers)

def playbook(*args, timeout=600, kill_after_task=None):
    """Run ansible-playbook with Molecule's inventory; returns (rc, output, killed_at)."""
    env = dict(os.environ)
    env['PYTHONUNBUFFERED'] = '1'
    env['ANSIBLE_NOCOLOR'] = '1'
    env['ANSIBLE_FORCE_COLOR'] = '0'
    cmd = ['ansible-playbook', '-i', env['MOLECULE_INVENTORY_FILE']] + list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    out, killed = [], None
    start = time.time()
    for line in proc.stdout:
        out.append(line)
        if kill_after_task and killed is None and kill_after_task in line:
            time.sleep(1.5)
            os.killpg(proc.pid, signal.SIGKILL)
            killed = line.strip()
        if time.time() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode, ''.join(out), killed


_FAULTS = {}


@pytest.fixture
def faults():
    """Run once: a converge killed with SIGKILL, hand edits, Postfix stopped, a -vvv --diff re-run, a rejected change."""
    if _FAULTS:
        return _FAULTS
    servers = [testinfra.get_host('docker://' + name) for name in ALIAS]
    converge = os.path.join(SCENARIO_DIR, 'converge.yml')
    # 1. Kill a converge that changes main.cf, in the middle of the base role's postconf_set batch.
    rc, out, killed = playbook(converge, '-e', 'base_disable_vrfy_command=false',
                               kill_after_task='estafeta.postfix.base : Set the main.cf parameters]')
    _FAULTS['killed'] = {'rc': rc, 'at': killed, 'check': [s.run('postfix check').rc for s in servers]}
    # 2. Hand edits in main.cf and master.cf, and Postfix stopped by hand.
    for server in servers:
        server.run("printf '# hand edit: keep this comment\\ndelay_warning_time = 3h\\n' >> /etc/postfix/main.cf")
        server.run("printf '# hand edit in master.cf: keep this comment\\n' >> /etc/postfix/master.cf")
        server.run('systemctl stop postfix')
    # 3. The next run, at -vvv with --diff.
    rc, out, dummy = playbook(converge, '-vvv', '--diff')
    _FAULTS['rerun'] = {'rc': rc, 'out': out}
    # 4. A change that only postfix check rejects.
    bad = os.path.join(SCENARIO_DIR, 'tests', 'bad_change.yml')
    rc, out, dummy = playbook(bad)
    _FAULTS['bad'] = {'rc': rc, 'out': out}
    # 5. A run with nothing to do: every role finds its converged-state record holding and ends early.
    rc, out, dummy = playbook(converge)
    _FAULTS['noop'] = {'rc': rc, 'out': out}
    # 6. Hand edits of what the roles manage: a main.cf parameter (anti_relay; its record no longer holds, the role
    #    runs in full) and the mode of the relay password table (smarthost; written on every run).
    _FAULTS['drift_before'] = [(s.check_output('postconf -h smtpd_helo_required'),
                                s.check_output('stat -c %a /etc/postfix/sasl_passwd')) for s in servers]
    for server in servers:
        server.run('postconf -e smtpd_helo_required=no')
        server.run('chmod 0644 /etc/postfix/sasl_passwd')
    rc, out, dummy = playbook(converge)
    _FAULTS['drift'] = {'rc': rc, 'out': out}
    return _FAULTS


def test_killed_converge(host, case, faults):
    case('M01', 'ansible-playbook killed with SIGKILL in the middle of a converge (during the base role\'s postconf_set '
                'batch, which changes disable_vrfy_command), then the next run')
    assert faults['killed']['at'], 'the converge ended before the kill point'
    assert faults['killed']['check'] == [0, 0]
    assert faults['rerun']['rc'] == 0, faults['rerun']['out'][-3000:]
    assert host.check_output('postconf -h disable_vrfy_command') == 'yes'
    assert host.run('postfix check').rc == 0
    case.evidence('killed at "%s"; postfix check passed on both servers after the kill; the next run succeeded and '
                  'put disable_vrfy_command back to yes' % faults['killed']['at'].strip('* '))


def test_stopped_postfix_restarted(host, case, faults):
    case('M02', 'Postfix stopped by hand (systemctl stop postfix) before a run')
    assert faults['rerun']['rc'] == 0
    assert host.service('postfix').is_running
    assert wait(lambda: host.socket('tcp://0.0.0.0:25').is_listening, 20)
    case.evidence('after the run postfix is active and port 25 listens')


def test_hand_edits_survive(host, case, faults):
    case('M03', 'Hand edits outside what the roles manage (a comment and delay_warning_time in main.cf, a comment in '
                'master.cf), then a full run of the roles')
    assert faults['rerun']['rc'] == 0
    main = host.file('/etc/postfix/main.cf').content_string
    assert '# hand edit: keep this comment\ndelay_warning_time = 3h\n' in main
    assert '# hand edit in master.cf: keep this comment' in host.file('/etc/postfix/master.cf').content_string
    assert host.check_output('postconf -h delay_warning_time') == '3h'
    case.evidence('both comments and delay_warning_time = 3h are still there, byte for byte')


def test_no_secret_in_output(host, case, faults):
    case('S12', 'Plaintext passwords (smarthost_password, anti_relay_submission_users) in the output of a run at -vvv '
                'with --diff')
    out = faults['rerun']['out']
    assert len(out) > 10000
    for secret in SECRETS:
        assert secret not in out
    case.evidence('%d lines of -vvv --diff output, none holds either password' % len(out.splitlines()))


def test_failed_check_rolled_back(host, case, faults):
    case('M04', 'A change that only postfix check rejects (message_size_limit = abc through postconf_set), then '
                'mail over SMTP')
    assert faults['bad']['rc'] != 0 and 'Postfix refuses the new configuration' in faults['bad']['out'], faults['bad']['out'][-2000:]
    assert host.check_output('postconf -h message_size_limit') != 'abc'
    assert host.run('postfix check').rc == 0
    host.run_expect([0], 'postfix reload')
    token = uuid.uuid4().hex[:10]
    rc, out = swaks(ALIAS[name_of(host)], '--port', '587', '--tls', '--helo', 'outside.test', '--auth', 'PLAIN',
                    '--auth-user', 'alice', '--auth-password', SECRETS[0], '--from', 'alice@example.test',
                    '--to', 'after-%s@far.test' % token)
    assert rc == 0, out
    assert wait(lambda: sink_count('after-%s@far' % token) == 1, 60)
    case.evidence('the run failed ("Postfix refuses the new configuration"), main.cf kept message_size_limit = %s, postfix check '
                  'passes; after a reload a message sent over SMTP reached the next hop'
                  % host.check_output('postconf -h message_size_limit'))


# ---------------------------------------------------------------- load

def load(host, sessions, messages):
    """smtp-source on the server to itself, relayed to the client's smtp-sink; returns (count, unique, seconds)."""
    token = uuid.uuid4().hex[:10]
    rcpt = 'load-%s@far.test' % token
    start = time.time()
    host.run_expect([0], '/usr/sbin/smtp-source -s %s -m %s -f load@example.test -t %s 127.0.0.1:25',
                    str(sessions), str(messages), rcpt)
    wait(lambda: sink_count('<%s>' % rcpt) >= messages, 600, step=2)
    seconds = time.time() - start
    time.sleep(3)
    files = CLIENT.run('grep -l -r -F -e %s /srv/sink', '<%s>' % rcpt).stdout.split()
    ids = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r grep -h -o -E 'with ESMTP id [A-Za-z0-9]+' | sort",
                     '<%s>' % rcpt).stdout.split('\n')
    return len(files), len(set(i for i in ids if i)), seconds


def test_small_load(host, case):
    case('L01', 'Load: smtp-source with 5 sessions sending 100 messages in all to the server, relayed to smtp-sink '
                'on the client; the messages at the destination counted')
    count, unique, seconds = load(host, 5, 100)
    assert (count, unique) == (100, 100)
    assert host.run('postqueue -j').stdout.strip() == ''
    case.evidence('100 sent, %d arrived, %d distinct queue ids (no duplicate), queue empty; %.0f messages/s end to end'
                  % (count, unique, count / seconds))


def tasks_run(out):
    """(task name, what follows its header) for every task of a run's output."""
    return re.findall(r'^TASK \[([^\]]+)\][^\n]*\n(.*?)(?=^TASK \[|^PLAY RECAP|\Z)', out, re.M | re.S)


def recap_changed(out):
    """changed= of every server in a run's PLAY RECAP."""
    return [int(m) for m in re.findall(r'^security-(?:bookworm|trixie)\s+:.*?changed=(\d+)', out, re.M)]


# The tasks that write secrets run on every run, also where their role then ends early (no record holds a
# secret): the relay password table and the submission users.
SECRET_TASKS = ['estafeta.postfix.smarthost : Write the relay passwords (mode 0600)',
                'estafeta.postfix.anti_relay : Write the submission users (passwd-file, SHA512-CRYPT)']


def test_noop_run_skips_configuration(host, case, faults):
    case('M05', 'A run with nothing to do, right after runs that changed things: every role finds its '
                'converged-state record holding and ends at its first task; only the secret tasks run')
    out = faults['noop']['out']
    assert faults['noop']['rc'] == 0, out[-3000:]
    assert recap_changed(out) == [0, 0], out[-2000:]
    ran = sorted(set(name for name, body in tasks_run(out)
                     if name.startswith('estafeta.postfix.') and ' : ' in name
                     and not name.split(' : ')[1].startswith(('Validating arguments', 'End here'))
                     and re.search(r'^(ok|changed|included): ', body, re.M)))
    assert ran == sorted(['estafeta.postfix.common : Read the converged-state records'] + SECRET_TASKS), ran
    # Each role ends at its first task (meta: end_role, evaluated on the controller): a skipped
    # end would print "skipping:" under the task.
    ends = [(name, body) for name, body in tasks_run(out) if name.endswith(' : End here when the host is already as this role leaves it')]
    ended = sorted(set(name.split(' : ')[0].split('.')[-1] for name, body in ends))
    assert ended == ['anti_relay', 'base', 'smarthost', 'tls'], ended
    assert not [name for name, body in ends if re.search(r'^skipping: ', body, re.M)]
    case.evidence('changed=0 on both servers; the roles %s ended at their first task, on the controller; besides '
                  'reading the records, only the two secret tasks ran (ok)' % ', '.join(ended))


def test_managed_drift_repaired(host, case, faults):
    case('M06', 'Hand edits of what the roles manage (smtpd_helo_required set to no in main.cf, the relay password '
                'table made world-readable), then a run')
    out = faults['drift']['out']
    assert faults['drift']['rc'] == 0, out[-3000:]
    changed = recap_changed(out)
    assert len(changed) == 2 and all(c > 0 for c in changed), out[-2000:]
    before = faults['drift_before'][0]
    assert host.check_output('postconf -h smtpd_helo_required') == before[0]
    assert host.check_output('stat -c %a /etc/postfix/sasl_passwd') == before[1] == '600'
    case.evidence('the anti_relay record no longer held, so the role ran in full: smtpd_helo_required is %s again; '
                  'the relay password table, written on every run, is mode 600 again (changed=%s)'
                  % (before[0], recap_changed(out)))
