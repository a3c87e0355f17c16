# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Relay abuse, secrets, hardened TLS, faults on a running server and a small load test.

Runs on the two mail servers; the outside client (not in mynetworks, the servers' smarthost with
Postfix's smtp-sink on port 2525 writing every message it gets into /srv/sink, and the scenario's
DNS server for the .test domain) is a second host. The fault cases run ansible-playbook against
the servers from here, with Molecule's inventory. Every test stands alone: what several tests
look at (the relay attempts, the fault runs) is made once by a fixture, whichever test asks first.
"""

import base64
import json
import os
import re
import subprocess
import tempfile
import uuid

import pytest
import testinfra
from molecule_helpers import left_queue, queue_empty, queued_as, reply_to, run_playbook, wait_until
from molecule_helpers import swaks as swaks_on

CLIENT = testinfra.get_host('docker://security-client')
ALIAS = {'security-bookworm': 'mx-bookworm', 'security-trixie': 'mx-trixie'}
SECRETS = ['Subm1ssion-S3cret-QRS', 'Sm4rthost-S3cret-XYZ']
# Written by the -vvv --diff run of the fault cases (then the scenario's passwords again).
NEW_SECRETS = ['Subm1ssion-N3w-S3cret-TUV', 'Sm4rthost-N3w-S3cret-UVW']
FOREIGN = 'relay-target.test'
SCENARIO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def name_of(host):
    return host.backend.get_hostname()


@pytest.fixture(autouse=True)
def servers_only(host):
    """The tests run on the servers; the client is driven from them."""
    if name_of(host) not in ALIAS:
        pytest.skip('the outside client is driven through the server tests')


def sink_count(pattern):
    """How many messages the client's smtp-sink got whose envelope/headers match the grep pattern."""
    out = CLIENT.run("grep -l -r -E -e %s /srv/sink | wc -l", pattern).stdout.strip()
    return int(out or 0)


def queue_has(host, text):
    return text in host.run('postqueue -j').stdout


def swaks(server, *args):
    """Run swaks on the outside client against ``server``; returns (rc, transcript)."""
    return swaks_on(CLIENT, '--server', server, '--timeout', '20', *args)


# ---------------------------------------------------------------- relay abuse

# The outside client's own domain, served by the scenario's DNS server (prepare.yml): the servers
# reject unknown sender domains before they look at the recipient, so the sender must resolve.
OUTSIDER = 'spammer@outside.test'
TRICKS = [
    ('S01', 'plain foreign recipient', OUTSIDER, 'victim1@%s' % FOREIGN, 'victim1'),
    ('S02', '"%" hack: user%foreign@ourdomain', OUTSIDER, 'victim2%%%s@example.test' % FOREIGN, 'victim2'),
    ('S03', '"!" bang path: foreign!user@ourdomain', OUTSIDER, '%s!victim3@example.test' % FOREIGN, 'victim3'),
    ('S04', 'quoted local part: "user@foreign"@ourdomain', OUTSIDER, '"victim4@%s"@example.test' % FOREIGN, 'victim4'),
    ('S05', 'source route: @ourdomain:user@foreign', OUTSIDER, '@example.test:victim5@%s' % FOREIGN, 'victim5'),
    ('S06', 'foreign recipient with our own domain as sender', 'postmaster@example.test', 'victim6@%s' % FOREIGN,
     'victim6'),
]
_ATTEMPTS = {}


@pytest.fixture
def relay_attempts(host):
    """Every relay trick against this server, once per run of the verifier (whichever test asks first).

    For each trick and HELO: the reply to RCPT, or, when the server accepted the message (for local
    delivery), its queue id; an accepted message is awaited until it has left the queue for good, so
    that the counts made afterwards are final.
    """
    name = name_of(host)
    if name not in _ATTEMPTS:
        attempts = {}
        for case_id, dummy, sender, rcpt, dummy2 in TRICKS:
            for helo in ('outside.test', 'mail.example.test'):
                rc, out = swaks(ALIAS[name], '--helo', helo, '--from', sender, '--to', rcpt)
                qid = queued_as(out) if rc == 0 else None
                if qid:
                    left_queue(host, qid)
                attempts.setdefault(case_id, []).append({'helo': helo, 'rc': rc, 'out': out, 'qid': qid,
                                                         'reply': reply_to(out, 'RCPT TO')})
        _ATTEMPTS[name] = attempts
    return _ATTEMPTS[name]


@pytest.mark.parametrize('case_id,trick,sender,rcpt,victim', TRICKS, ids=[t[0] for t in TRICKS])
def test_relay_trick_refused(host, case, relay_attempts, case_id, trick, sender, rcpt, victim):
    case(case_id, 'Relay attempt from a client outside mynetworks, not authenticated: %s (%s), sent with a HELO of '
                  'its own and again with HELO mail.example.test (our own name)' % (trick, rcpt))
    seen = []
    for attempt in relay_attempts[case_id]:
        if attempt['rc'] == 0:
            # Accepted: it may only be a local delivery; it has left the queue (awaited), nothing may have gone out.
            assert attempt['qid'], 'accepted without a queue id:\n' + attempt['out']
            seen.append('HELO %s: accepted for local delivery (%s)' % (attempt['helo'], attempt['reply']))
        else:
            reply = attempt['reply']
            assert reply[:1] in ('4', '5'), 'unexpected transcript:\n' + attempt['out']
            # Refused for the recipient, not for something else (sender, HELO) that would hide an open relay.
            assert 'Sender address rejected' not in reply and 'Helo command rejected' not in reply, reply
            seen.append('HELO %s: %s' % (attempt['helo'], reply))
    assert not queue_has(host, victim), host.run('postqueue -p').stdout
    assert sink_count(victim + '@' + FOREIGN.replace('.', r'\.')) == 0
    case.evidence('; '.join(seen) + '; nothing queued for %s, nothing arrived at the next hop' % FOREIGN)


def test_nothing_relayed(host, case, relay_attempts):
    case('S07', 'After every relay attempt: count what left for the foreign domain (the next hop\'s messages, the '
                'queue, delivery attempts in the log)')
    attempts = [a for tries in relay_attempts.values() for a in tries]
    accepted = [a['qid'] for a in attempts if a['qid']]
    # Counted once every accepted message has left the queue (awaited by relay_attempts).
    leaked = sink_count('X-Rcpt-Args: <[^>]*' + FOREIGN.replace('.', r'\.'))
    queued = host.run('postqueue -j | grep -c %s', FOREIGN).stdout.strip() or '0'
    tried = host.run("grep -c -E 'postfix(/[a-z]+)*/(smtp|lmtp|local|virtual|pipe)\\[[0-9]+\\]: [0-9A-Za-z]+: to=<[^>]*%s' "
                     "/var/log/mail.log", FOREIGN).stdout.strip() or '0'
    assert len(attempts) == 2 * len(TRICKS)
    assert (leaked, queued, tried) == (0, '0', '0')
    case.evidence('%d attempts, %d accepted for local delivery (delivered or bounced before counting); messages for '
                  '%s at the next hop: 0, in the queue: 0, delivery attempts in the log: 0'
                  % (len(attempts), len(accepted), FOREIGN))


def ehlo(transcript):
    """The server's EHLO replies in a swaks transcript: [(in TLS?, [keywords])], one per EHLO sent."""
    sessions = []
    lines = transcript.splitlines()
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped[:2] in ('->', '~>') and stripped[2:].strip().startswith('EHLO '):
            keywords = []
            for nxt in lines[i + 1:]:
                reply = nxt.lstrip()
                if reply[:2] not in ('<-', '<~'):
                    break
                match = re.match(r'^<[-~]\s+250([- ])(.*)$', reply)
                if not match:
                    break
                keywords.append(match.group(2).split()[0].upper() if match.group(2).split() else '')
                if match.group(1) == ' ':
                    sessions.append((stripped[:2] == '~>', keywords))
                    break
    return sessions


def test_auth_only_after_starttls(host, case):
    case('S08', 'AUTH is offered only after STARTTLS (ports 25 and 587), and a login over TLS on 587 relays')
    server = ALIAS[name_of(host)]
    for port in ('25', '587'):
        rc, out = swaks(server, '--port', port, '--quit-after', 'EHLO', '--helo', 'outside.test')
        replies = ehlo(out)
        # The EHLO was answered (250, with its keyword list), STARTTLS is offered, AUTH is not.
        assert rc == 0 and len(replies) == 1, out
        assert 'STARTTLS' in replies[0][1] and 'AUTH' not in replies[0][1], out
    rc, out = swaks(server, '--port', '587', '--tls', '--quit-after', 'EHLO', '--helo', 'outside.test')
    replies = ehlo(out)
    assert rc == 0 and [tls for tls, dummy in replies] == [False, True], out
    assert 'AUTH' not in replies[0][1] and 'AUTH' in replies[1][1], out
    auth = re.search(r'<~\s+250[- ](AUTH\b.*)$', out, re.M).group(1).strip()
    # AUTH sent anyway in clear text (with a wrong password) is refused as a command.
    clear = CLIENT.check_output("python3 -c %s", "import smtplib; s = smtplib.SMTP('%s', 587, timeout=20); "
                                "print(s.ehlo('outside.test')[0], s.docmd('AUTH', 'PLAIN AGFsaWNlAHdyb25n')); s.quit()"
                                % server)
    assert clear.startswith('250 (5'), clear
    token = uuid.uuid4().hex[:10]
    rc, out = swaks(server, '--port', '587', '--tls', '--helo', 'outside.test', '--auth', 'PLAIN', '--auth-user', 'alice',
                    '--auth-password', SECRETS[0], '--from', 'alice@example.test', '--to', 'friend-%s@far.test' % token)
    assert rc == 0, out
    assert wait_until(lambda: sink_count('friend-%s@far' % token) == 1, 60)
    case.evidence('EHLO answered on 25 and 587 in clear text, with STARTTLS and without AUTH; %s after STARTTLS on '
                  '587; AUTH in clear text on 587 -> %s; alice over TLS relays to far.test (1 message at the next '
                  'hop)' % (auth, clear.split(' ', 1)[1]))


def test_vrfy_disabled(host, case):
    case('S09', 'VRFY from the outside client (base role default disable_vrfy_command = yes)')
    assert host.check_output('postconf -h disable_vrfy_command') == 'yes'
    out = CLIENT.check_output("python3 -c %s", "import smtplib; s = smtplib.SMTP('%s', 25, timeout=20); "
                              "print(s.ehlo('outside.test')[0], s.verify('root')); s.quit()" % ALIAS[name_of(host)])
    assert out.startswith('250 (502'), out
    case.evidence('VRFY root -> %s' % out.split(' ', 1)[1])


# The client's OpenSSL reports an alert it received from the server as "ssl3_read_bytes:tlsv1 alert
# protocol version" (SSL alert number 70); an alert of its own would come from another function.
SERVER_ALERT = re.compile(r'ssl3_read_bytes:tlsv1 alert protocol version')
SERVER_REFUSAL = r'postfix/smtpd\[[0-9]+\]: warning: TLS library problem: .*unsupported protocol'


def test_tls_hardened(host, case):
    case('S10', 'tls_hardened: true; the client tries STARTTLS with TLS 1.1 (its own OpenSSL allowed to, SECLEVEL=0) '
                'and with TLS 1.2')
    assert host.check_output('postconf -h smtpd_tls_protocols') == '>=TLSv1.2'
    server = ALIAS[name_of(host)]
    # Positive control on the same server: TLS 1.2 completes.
    new = CLIENT.run('openssl s_client -connect %s:25 -starttls smtp -tls1_2 </dev/null', server)
    assert new.rc == 0 and re.search(r'Protocol\s*:\s*TLSv1\.2', new.stdout), new.stdout + new.stderr
    before = len(log_refusals(host))
    old = CLIENT.run('openssl s_client -connect %s:25 -starttls smtp -tls1_1 -cipher DEFAULT:@SECLEVEL=0 </dev/null',
                     server)
    # Refused by the server: its protocol-version alert reached the client, and it logged the refusal.
    assert old.rc != 0 and 'Cipher is (NONE)' in old.stdout, old.stdout + old.stderr
    assert SERVER_ALERT.search(old.stderr), old.stderr
    assert wait_until(lambda: len(log_refusals(host)) > before, 30), 'the server logged no refused TLS handshake'
    case.evidence('TLS 1.1 refused by the server (its alert "protocol version" at the client; "unsupported protocol" '
                  'in its log); TLS 1.2 handshake completes on the same server')


def log_refusals(host):
    return host.run('grep -E -e %s /var/log/mail.log', SERVER_REFUSAL).stdout.splitlines()


# Runs on a server: every regular, world-readable file under / (and the tmpfs mounts /tmp and
# /run, /proc and /sys left out) up to 5 MB is read and searched for the given strings. Prints
# JSON: the files holding one, how many files were read, and every file that could not be read.
SCAN = r"""
import errno, json, os, stat, sys
needles = [n.encode() for n in sys.argv[1:]]
found, errors, scanned = [], [], 0
roots = ['/', '/tmp', '/run']
devices = set(os.stat(r).st_dev for r in roots)


def failed(exc):
    if exc.errno != errno.ENOENT:  # a file that went away while the scan ran is no error
        errors.append('%s: %s' % (exc.filename, exc.strerror))


def same_mount(path):
    try:
        return os.lstat(path).st_dev in devices
    except OSError as exc:
        failed(exc)
        return False


for root in roots:
    for top, dirs, files in os.walk(root, onerror=failed):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in ('/proc', '/sys', '/dev', '/tmp', '/run')
                   and same_mount(os.path.join(top, d))]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o004 or st.st_size > 5 * 2 ** 20:
                    continue
                with open(path, 'rb') as f:
                    data = f.read()
            except OSError as exc:
                failed(exc)
                continue
            scanned += 1
            if any(n in data for n in needles):
                found.append(path)
print(json.dumps({'found': sorted(found), 'scanned': scanned, 'errors': errors}))
"""


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
    # The scan's own control: a world-readable file holding a planted string must be found.
    canary = 'canary-%s' % uuid.uuid4().hex
    planted = '/var/tmp/estafeta-canary-%s' % canary[-8:]
    host.run_expect([0], 'printf %s > %s && chmod 0644 %s', canary, planted, planted)
    try:
        result = json.loads(host.check_output('python3 -c %s %s %s %s', SCAN, canary, *SECRETS))
    finally:
        host.run('rm -f %s', planted)
    assert result['errors'] == [], result['errors'][:20]
    assert result['found'] == [planted], result['found']
    case.evidence(', '.join(modes) + '; %d world-readable files read, none holds a password (a planted control '
                  'string was found)' % result['scanned'])


def test_key_type_and_size(host):
    """tls_key_size (3072-bit RSA on Debian 12) and tls_key_type (ECC, P-384, on Debian 13): the key, and the
    certificate the server presents over STARTTLS, are of that kind."""
    text = host.check_output('openssl pkey -in /etc/ssl/private/postfix.key -noout -text')
    if name_of(host) == 'security-bookworm':
        assert text.splitlines()[0].strip() == 'Private-Key: (3072 bit, 2 primes)', text.splitlines()[0]
        expected = 'Public-Key: (3072 bit)'
    else:
        assert text.splitlines()[0].strip() == 'Private-Key: (384 bit)' and 'NIST CURVE: P-384' in text, text[:300]
        expected = 'Public-Key: (384 bit)'
    served = CLIENT.check_output('openssl s_client -connect %s:25 -starttls smtp </dev/null 2>/dev/null | '
                                 'openssl x509 -noout -text', ALIAS[name_of(host)])
    assert expected in served, served[:1500]


# ---------------------------------------------------------------- credentials towards relays

# The relay credentials in every form a client could send them: AUTH PLAIN (authzid, user, password),
# AUTH LOGIN (user and password apart), and the password itself.
RELAY_USER, RELAY_PASSWORD = 'relayuser', SECRETS[1]
CREDENTIAL_FORMS = [RELAY_PASSWORD,
                    base64.b64encode(('\0%s\0%s' % (RELAY_USER, RELAY_PASSWORD)).encode()).decode(),
                    base64.b64encode(('%s\0%s\0%s' % (RELAY_USER, RELAY_USER, RELAY_PASSWORD)).encode()).decode(),
                    base64.b64encode(RELAY_PASSWORD.encode()).decode(),
                    base64.b64encode(RELAY_USER.encode()).decode()]


def captured(port, since):
    """Every connection the capture relay got on ``port`` after ``since`` (its log name starts with the time)."""
    names = CLIENT.run('ls /srv/capture/%s 2>/dev/null', str(port)).stdout.split()
    return [CLIENT.file('/srv/capture/%s/%s' % (port, name)).content_string
            for name in sorted(names) if int(name.split('-')[0]) >= int(since)]


def queued(host, token):
    """{queue id: delay reason} of the queued messages whose recipient holds ``token``."""
    found = {}
    for line in host.run('postqueue -j').stdout.splitlines():
        message = json.loads(line)
        for rcpt in message['recipients']:
            if token in rcpt['address']:
                found[message['queue_id']] = rcpt.get('delay_reason', '')
    return found


def relay_attempt(host, sender, rcpt, port):
    """Send one message from the server itself; wait until its delivery to the capture relay was tried.
    Returns (sessions the capture relay recorded, delay reason); the message is removed from the queue."""
    since = int(CLIENT.check_output('date +%s')) - 1
    token = rcpt.split('@')[0]
    host.run_expect([0], "printf 'Subject: %%s\\n\\nbody\\n' %s | /usr/sbin/sendmail -f %s %s", token, sender, rcpt)
    try:
        assert wait(lambda: any(reason for reason in queued(host, token).values()), 90), host.run('postqueue -p').stdout
        reasons = list(queued(host, token).values())
        assert wait(lambda: captured(port, since), 30)
        return captured(port, since), reasons[0]
    finally:
        for qid in queued(host, token):
            host.run('postsuper -d %s', qid)


def test_no_password_to_a_relay_without_starttls(host, case):
    case('S13', 'A relay that receives credentials (a sender-dependent relay with a username, TLS level left at the '
                'role default) offers AUTH PLAIN LOGIN but no STARTTLS; every byte the server sends it is recorded')
    token = 'tlsreq-%s' % uuid.uuid4().hex[:10]
    assert host.check_output('postmap -q %s hash:/etc/postfix/smarthost_tls_policy', '[capture.example.test]:2526') \
        == 'encrypt protocols=>=TLSv1.2'
    sessions, reason = relay_attempt(host, 'app@tls-required.example.test', '%s@far.test' % token, 2526)
    assert 'TLS is required, but was not offered' in reason, reason
    for session in sessions:
        assert 'EHLO' in session
        assert 'AUTH' not in session.upper() and 'MAIL FROM' not in session.upper(), session
        for form in CREDENTIAL_FORMS:
            assert form not in session, 'the relay received the credentials: %r' % session
    case.evidence('the policy says "encrypt protocols=>=TLSv1.2"; the message stayed queued (%s); the relay recorded '
                  '%d session(s) of EHLO and QUIT only: no AUTH, no MAIL, neither the password nor the user in any '
                  'encoding' % (reason, len(sessions)))


def test_no_plaintext_mechanism_without_tls(host, case):
    case('S14', 'The same sender\'s credentials towards a route the TLS policy does not cover (a transport map entry, '
                'opportunistic TLS), to a relay that offers AUTH PLAIN LOGIN but no STARTTLS')
    assert 'noplaintext' in host.check_output('postconf -h smtp_sasl_security_options')
    assert host.run('postmap -q %s hash:/etc/postfix/smarthost_tls_policy', '[capture.example.test]:2527').rc == 1
    token = 'noplain-%s' % uuid.uuid4().hex[:10]
    sessions, reason = relay_attempt(host, 'app@tls-required.example.test', '%s@noplaintext.test' % token, 2527)
    assert 'SASL authentication failed' in reason and 'no mechanism available' in reason, reason
    for session in sessions:
        assert 'AUTH' not in session.upper() and 'MAIL FROM' not in session.upper(), session
        for form in CREDENTIAL_FORMS:
            assert form not in session, 'the relay received the credentials: %r' % session
    case.evidence('smtp_sasl_security_options = %s; the message stayed queued (%s); the relay recorded EHLO and QUIT '
                  'only, no credentials' % (host.check_output('postconf -h smtp_sasl_security_options'), reason))


# ---------------------------------------------------------------- our own users and a sender domain that does not resolve

UNRESOLVABLE = ['someone@unresolvable-%s.test', 'someone@intranet-%s']


def test_own_users_may_use_an_unresolvable_sender_domain(host, case):
    case('S15', 'Sender domains that do not resolve (an unknown .test domain, a name without a dot): from the outside '
                'client on port 25, from an authenticated user on port 587, from a local application (127.0.0.1)')
    server = ALIAS[name_of(host)]
    seen = []
    for pattern in UNRESOLVABLE:
        sender = pattern % uuid.uuid4().hex[:6]
        rc, out = swaks(server, '--helo', 'outside.test', '--from', sender, '--to', 'postmaster@example.test',
                        '--quit-after', 'RCPT')
        refused = reply_to(out, 'RCPT TO')
        assert refused[:1] in ('4', '5') and 'Sender address rejected' in refused, out
        token = uuid.uuid4().hex[:10]
        rc, out = swaks(server, '--port', '587', '--tls', '--helo', 'outside.test', '--auth', 'PLAIN',
                        '--auth-user', 'alice', '--auth-password', SECRETS[0], '--from', sender,
                        '--to', 'own-%s@far.test' % token)
        assert rc == 0 and reply_to(out, 'RCPT TO').startswith('250'), out
        local = host.run("swaks --server 127.0.0.1 --helo localhost --from %s --to local-%s@far.test --timeout 20",
                         sender, token)
        assert local.rc == 0, local.stdout + local.stderr
        assert wait(lambda: sink_count('own-%s@far' % token) == 1 and sink_count('local-%s@far' % token) == 1, 60)
        seen.append('%s: outside -> %s; alice on 587 and 127.0.0.1 -> delivered' % (sender.split('@')[1], refused))
    case.evidence('; '.join(seen))


# ---------------------------------------------------------------- faults (ansible-playbook against the servers)

KILL_TASK = 'estafeta.postfix.base : Set the main.cf parameters]'
HELD = '/run/estafeta-m01-held'


def docker_exec(container, command):
    return subprocess.run(['docker', 'exec', container, 'sh', '-c', command], capture_output=True, text=True,
                          check=False)


class KillInTask:
    """Kill ansible-playbook while the task KILL_TASK runs on both servers, and prove it.

    When the task's header appears, the test takes the lock the collection's modules take on
    /etc/postfix (flock on the directory) on each server. The task's module then waits inside its
    run for that lock: when a python3 process holding /etc/postfix open is seen on both servers,
    and the task has no result for either server in the output yet, the whole ansible-playbook
    process group is killed. Then the locks are released.
    """

    WAITING = ("for fd in /proc/[0-9]*/fd/*; do [ \"$(readlink $fd 2>/dev/null)\" = /etc/postfix ] && "
               "cat ${fd%%/fd/*}/comm; done 2>/dev/null | sort -u")

    def __init__(self, servers):
        self.servers = servers
        self.locked = False
        self.lost = None

    def __call__(self, lines):
        headers = [i for i, line in enumerate(lines) if line.startswith('TASK [')]
        if not headers or KILL_TASK not in lines[headers[-1]]:
            return None
        after = lines[headers[-1] + 1:]
        done = [s for s in self.servers if any(re.match(r'^(ok|changed|failed|fatal): \[%s\]' % s, line) for line in after)]
        if done:
            self.lost = 'the task finished on %s before the kill' % ', '.join(done)
            if self.locked:  # let the rest of the run go on
                self.release()
                self.locked = False
            return None
        if not self.locked:
            for server in self.servers:
                docker_exec(server, 'systemd-run --unit estafeta-m01-lock --collect flock /etc/postfix '
                                    'sh -c "touch %s; exec sleep 600"' % HELD)
            self.locked = True
        for server in self.servers:
            state = docker_exec(server, 'test -e %s && %s' % (HELD, self.WAITING)).stdout.split()
            if not [comm for comm in state if comm.startswith('python')]:
                return None
        return lines[headers[-1]].strip('* \n')

    def release(self):
        for server in self.servers:
            docker_exec(server, 'systemctl stop estafeta-m01-lock; rm -f %s' % HELD)


_FAULTS = {}


@pytest.fixture
def faults():
    """Run once: a converge killed with SIGKILL, hand edits, Postfix stopped, a -vvv --diff re-run, a rejected change."""
    if _FAULTS:
        return _FAULTS
    servers = [testinfra.get_host('docker://' + name) for name in ALIAS]
    converge = os.path.join(SCENARIO_DIR, 'converge.yml')
    # 1. Kill a converge that changes main.cf while the base role's postconf_set task runs on both servers.
    killer = KillInTask(list(ALIAS))
    try:
        run = run_playbook(converge, '-e', 'base_disable_vrfy_command=false', kill_when=killer)
    finally:
        killer.release()
    # The orphaned module processes (their controller is gone) finish or die once the lock is free.
    waiting = [wait_until(lambda s=s: not [c for c in docker_exec(s, KillInTask.WAITING).stdout.split()
                                           if c.startswith('python')], 120)
               for s in ALIAS]
    _FAULTS['killed'] = {'rc': run['rc'], 'at': run['killed'], 'lost': killer.lost, 'out': run['out'],
                         'orphans_done': waiting, 'check': [s.run('postfix check').rc for s in servers],
                         'vrfy': [s.check_output('postconf -h disable_vrfy_command') for s in servers]}
    # 2. Hand edits in main.cf and master.cf, and Postfix stopped by hand.
    for server in servers:
        server.run("printf '# hand edit: keep this comment\\ndelay_warning_time = 3h\\n' >> /etc/postfix/main.cf")
        server.run("printf '# hand edit in master.cf: keep this comment\\n' >> /etc/postfix/master.cf")
        server.run('systemctl stop postfix')
    # 3. The next run, at -vvv with --diff, with new passwords: the tasks that carry them must run.
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump({'smarthost_password': NEW_SECRETS[1],
                   'anti_relay_submission_users': [{'name': 'alice', 'password': NEW_SECRETS[0]}]}, f)
    try:
        _FAULTS['rerun'] = run_playbook(converge, '-vvv', '--diff', '-e', '@' + f.name)
    finally:
        os.unlink(f.name)
    # 3b. The passwords of the scenario again.
    _FAULTS['restored'] = run_playbook(converge)
    # 4. A change that only postfix check rejects.
    _FAULTS['bad'] = run_playbook(os.path.join(SCENARIO_DIR, 'tests', 'bad_change.yml'))
    # 5. A run with nothing to do: every role finds its converged-state record holding and ends early.
    _FAULTS['noop'] = run_playbook(converge)
    # 6. Hand edits of what the roles manage: a main.cf parameter (anti_relay) and the mode of the relay password
    #    table (smarthost). Their records no longer hold: both roles run in full and repair them.
    _FAULTS['drift_before'] = [(s.check_output('postconf -h smtpd_helo_required'),
                                s.check_output('stat -c %a /etc/postfix/sasl_passwd')) for s in servers]
    for server in servers:
        server.run('postconf -e smtpd_helo_required=no')
        server.run('chmod 0644 /etc/postfix/sasl_passwd')
    _FAULTS['drift'] = run_playbook(converge)
    return _FAULTS


def test_killed_converge(host, case, faults):
    case('M01', 'ansible-playbook killed with SIGKILL while the base role\'s postconf_set task (the batch that changes '
                'disable_vrfy_command) was running on both servers, then the next run')
    killed = faults['killed']
    assert killed['at'], 'no kill: %s\n%s' % (killed['lost'] or 'the task was never seen running',
                                              killed['out'][-3000:])
    assert KILL_TASK in killed['at'] and killed['rc'] == -9, killed
    assert all(killed['orphans_done']), 'a module process was still waiting two minutes after the lock was freed'
    assert killed['check'] == [0, 0]
    # The old value (yes) or the batch's new one (a Postfix false), nothing else.
    assert all(vrfy in ('yes', 'no', 'false') for vrfy in killed['vrfy']), killed['vrfy']
    assert faults['rerun']['rc'] == 0, faults['rerun']['out'][-3000:]
    assert host.check_output('postconf -h disable_vrfy_command') == 'yes'
    assert host.run('postfix check').rc == 0
    outcome = ', '.join('%s %s (%s)' % (name.split('-')[1], vrfy, 'old' if vrfy == 'yes' else 'new')
                        for name, vrfy in zip(ALIAS, killed['vrfy']))
    evidence = ('killed at "%s" while its module waited on both servers for the configuration lock the test held, '
                'before the controller had a result; then main.cf had disable_vrfy_command = %s; postfix check '
                'passed on both; the next run succeeded, disable_vrfy_command is yes' % (killed['at'], outcome))
    assert len(evidence) < 400, len(evidence)
    case.evidence(evidence)


def test_stopped_postfix_restarted(host, case, faults):
    case('M02', 'Postfix stopped by hand (systemctl stop postfix) before a run')
    assert faults['rerun']['rc'] == 0
    assert host.service('postfix').is_running
    assert wait_until(lambda: host.socket('tcp://0.0.0.0:25').is_listening, 20)
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


SECRET_TASKS = ['estafeta.postfix.smarthost : Write the relay passwords (mode 0600)',
                'estafeta.postfix.anti_relay : Write the submission users (passwd-file, SHA512-CRYPT)']


def test_no_secret_in_output(host, case, faults):
    case('S12', 'Plaintext passwords (smarthost_password, anti_relay_submission_users) in the output of a run at -vvv '
                'with --diff that changes them')
    out = faults['rerun']['out']
    assert faults['rerun']['rc'] == 0 and len(out) > 10000, out[-3000:]
    assert faults['restored']['rc'] == 0, faults['restored']['out'][-3000:]
    # The tasks that carry the passwords ran on both servers and changed what they write: the
    # output searched is one that had the passwords to hide.
    ran = dict(tasks_run(out))
    for task in SECRET_TASKS:
        assert task in ran, 'task %r did not run' % task
        assert len(re.findall(r'^changed: \[security-(?:bookworm|trixie)\]', ran[task], re.M)) == 2, ran[task][:2000]
    for secret in SECRETS + NEW_SECRETS:
        assert secret not in out
    case.evidence('%d lines of -vvv --diff output of a run that wrote new passwords on both servers (%s changed), '
                  'none holds the old or the new passwords' % (len(out.splitlines()),
                                                               ' and '.join(t.split(' : ')[1] for t in SECRET_TASKS)))


def test_failed_check_rolled_back(host, case, faults):
    case('M04', 'A change that only postfix check rejects (message_size_limit = abc through postconf_set), then '
                'mail over SMTP')
    bad = faults['bad']
    assert bad['rc'] != 0 and 'Postfix refuses the new configuration' in bad['out'], bad['out'][-2000:]
    assert host.check_output('postconf -h message_size_limit') != 'abc'
    assert host.run('postfix check').rc == 0
    host.run_expect([0], 'postfix reload')
    token = uuid.uuid4().hex[:10]
    rc, out = swaks(ALIAS[name_of(host)], '--port', '587', '--tls', '--helo', 'outside.test', '--auth', 'PLAIN',
                    '--auth-user', 'alice', '--auth-password', SECRETS[0], '--from', 'alice@example.test',
                    '--to', 'after-%s@far.test' % token)
    assert rc == 0, out
    assert wait_until(lambda: sink_count('after-%s@far' % token) == 1, 60)
    case.evidence('the run failed ("Postfix refuses the new configuration"), main.cf kept message_size_limit = %s, postfix check '
                  'passes; after a reload a message sent over SMTP reached the next hop'
                  % host.check_output('postconf -h message_size_limit'))


# ---------------------------------------------------------------- load

def sink_files(rcpt):
    """The sink's files of the messages to ``rcpt``, with their modification times (seconds, float)."""
    out = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r stat -c '%%.9Y %%n'", '<%s>' % rcpt).stdout
    return [(float(line.split(' ', 1)[0]), line.split(' ', 1)[1]) for line in out.splitlines() if line.strip()]


def load(host, sessions, messages):
    """smtp-source on the server to itself, relayed to the client's smtp-sink.

    Returns (arrived, distinct queue ids, seconds from the start of smtp-source to the last message
    written by the sink). Both times are read from the one kernel clock the containers share: the
    start on the server, in the shell that runs smtp-source, the end as the sink file's mtime.
    """
    token = uuid.uuid4().hex[:10]
    rcpt = 'load-%s@far.test' % token
    started = float(host.check_output('date +%%s.%%N && /usr/sbin/smtp-source -s %s -m %s -f load@example.test -t %s '
                                      '127.0.0.1:25 >&2', str(sessions), str(messages), rcpt))
    # Every message has arrived and the server's queue is empty: no more can come (no sleep needed).
    assert wait_until(lambda: len(sink_files(rcpt)) >= messages and queue_empty(host), 600, step=1), \
        '%d of %d messages arrived' % (len(sink_files(rcpt)), messages)
    files = sink_files(rcpt)
    ids = CLIENT.run("grep -l -r -F -e %s /srv/sink | xargs -r grep -h -o -E 'with ESMTP id [A-Za-z0-9]+' | sort",
                     '<%s>' % rcpt).stdout.split('\n')
    return len(files), len(set(i for i in ids if i)), max(t for t, dummy in files) - started


def test_small_load(host, case):
    case('L01', 'Load: smtp-source with 5 sessions sending 100 messages in all to the server, relayed to smtp-sink '
                'on the client; the messages at the destination counted')
    count, unique, seconds = load(host, 5, 100)
    assert (count, unique) == (100, 100)
    assert queue_empty(host)
    assert seconds > 0
    case.evidence('100 sent, %d arrived, %d distinct queue ids (no duplicate), queue empty; the last one written by '
                  'the sink %.2f s after smtp-source started (%.0f messages/s end to end, from the sink\'s file '
                  'times)' % (count, unique, seconds, count / seconds))


def tasks_run(out):
    """(task name, what follows its header) for every task of a run's output."""
    return re.findall(r'^TASK \[([^\]]+)\][^\n]*\n(.*?)(?=^TASK \[|^PLAY RECAP|\Z)', out, re.M | re.S)


def recap_changed(out):
    """changed= of every server in a run's PLAY RECAP."""
    return [int(m) for m in re.findall(r'^security-(?:bookworm|trixie)\s+:.*?changed=(\d+)', out, re.M)]


def test_noop_run_skips_configuration(host, case, faults):
    case('M05', 'A run with nothing to do, right after runs that changed things: every role finds its '
                'converged-state record holding and ends at its first task')
    out = faults['noop']['out']
    assert faults['noop']['rc'] == 0, out[-3000:]
    assert recap_changed(out) == [0, 0], out[-2000:]
    ran = sorted(set(name for name, body in tasks_run(out)
                     if name.startswith('estafeta.postfix.') and ' : ' in name
                     and not name.split(' : ')[1].startswith(('Validating arguments', 'End here'))
                     and re.search(r'^(ok|changed|included): ', body, re.M)))
    assert ran == ['estafeta.postfix.common : Read the converged-state records'], ran
    # Each role ends at its first task (meta: end_role, evaluated on the controller): a skipped
    # end would print "skipping:" under the task.
    ends = [(name, body) for name, body in tasks_run(out) if name.endswith(' : End here when the host is already as this role leaves it')]
    ended = sorted(set(name.split(' : ')[0].split('.')[-1] for name, body in ends))
    assert ended == ['anti_relay', 'base', 'smarthost', 'tls', 'transport'], ended
    assert not [name for name, body in ends if re.search(r'^skipping: ', body, re.M)]
    case.evidence('changed=0 on both servers; the roles %s ended at their first task, on the controller; no task '
                  'ran on the servers but the one that read the records' % ', '.join(ended))


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
    case.evidence('the anti_relay and smarthost records no longer held, so both roles ran in full: '
                  'smtpd_helo_required is %s again and the relay password table is mode 600 again (changed=%s)'
                  % (before[0], recap_changed(out)))
