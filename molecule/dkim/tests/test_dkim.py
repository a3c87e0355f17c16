# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""DKIM signing proved at the sink, with the public keys the role returned, served by the suite's DNS.

* mail from a local program (sendmail) and from a user who authenticated on port 587 arrives at the
  sink with exactly one DKIM-Signature, which dkimpy's dkimverify verifies through DNS; on Debian 12 the
  mail went through amavisd-new first (its Received line) and is still signed once;
* the provided key signs its domain; the generated key signs the other;
* mail from outside that did not authenticate is not signed on Debian 12; on Debian 13, whose
  dkim_internal_hosts holds the scenario's network, it is (the control);
* the keys: an existing valid key is kept (Debian 12, not the role's size), a missing one is generated
  with dkim_key_size (Debian 13), a provided key replaces the stale key; mode 0600, owner opendkim;
* the zone file on the controller holds, for every key, the public half of the key on the host, in
  strings DNS can hold;
* the milter lists: the signer after a milter that was there (Debian 13), with its own default action;
  the re-injection service of amavisd-new calls no milter; OpenDKIM listens on the loopback only.
"""

import email
import email.policy
import os
import re
import uuid

import pytest
import testinfra
from molecule_helpers import address, swaks, wait_until

SINK = testinfra.get_host('docker://dkim-sink')
EPHEMERAL = os.environ.get('MOLECULE_EPHEMERAL_DIRECTORY', '')
PASSWORD = 'molecule-dkim-secret'

# Per server: the selector of example.test, the milter port, its default action, the key directory,
# whether amavisd-new runs, whether the sink's network is among the hosts whose mail is signed.
SERVERS = {
    'dkim-bookworm': dict(selector='bookworm', port=8891, action='accept', keys='/etc/dkimkeys', amavis=True,
                          internal=False, existing_milters=[]),
    'dkim-trixie': dict(selector='trixie', port=8893, action='tempfail', keys='/etc/opendkim/keys', amavis=False,
                        internal=True, existing_milters=['{ inet:127.0.0.1:9999, default_action=accept }']),
}


@pytest.fixture
def server(host):
    if host.backend.get_hostname() not in SERVERS:
        pytest.skip('runs on the mail servers')
    return host


def conf(host):
    return SERVERS[host.backend.get_hostname()]


def key_path(host, domain, selector):
    return '%s/%s._domainkey.%s.private' % (conf(host)['keys'], selector, domain)


def controller_key(name):
    with open(os.path.join(EPHEMERAL, 'keys', name + '.key')) as f:
        return f.read()


def at_sink(token):
    """The file at the sink that holds the message with ``token``."""
    def files():
        return SINK.run('grep -l -F -e %s /var/sink/*.eml', token).stdout.split()

    found = wait_until(files, 120, what='the message %s reaching the sink' % token)
    assert len(found) == 1, found
    return found[0]


def signatures(text):
    """The tags of each DKIM-Signature header of a message, as dicts."""
    message = email.message_from_string(text, policy=email.policy.compat32)
    found = []
    for value in message.get_all('DKIM-Signature') or []:
        tags = {}
        for part in re.sub(r'\s+', '', value).split(';'):
            if '=' in part:
                name, dummy, tag = part.partition('=')
                tags[name] = tag
        found.append(tags)
    return found


def assert_signed_once(host, path, domain, selector):
    text = SINK.file(path).content_string
    found = signatures(text)
    assert len(found) == 1, 'expected one DKIM-Signature, found %d:\n%s' % (len(found), text[:3000])
    assert (found[0]['d'], found[0]['s']) == (domain, selector), found[0]
    assert found[0]['a'] == 'rsa-sha256', found[0]
    # On Debian 12 the message went through amavisd-new (and back in through the re-injection smtpd).
    assert ('(amavis, port 10024)' in text) == conf(host)['amavis'], text[:3000]
    verified = SINK.run('dkimverify < %s', path)
    assert verified.rc == 0 and 'signature ok' in verified.stdout, (verified.stdout, verified.stderr, text[:3000])


def sendmail(host, sender, token):
    message = ('From: Local program <%s>\nTo: rcpt-%s@sink.test\nSubject: local %s\n'
               'Message-ID: <%s@%s>\n\nSent by a local program, %s.\n'
               % (sender, token, token, token, sender.split('@')[1], token))
    host.run_expect([0], "printf '%%s' %s | /usr/sbin/sendmail -t -f %s", message, sender)


def test_local_program_mail_is_signed_once(server):
    token = uuid.uuid4().hex
    sendmail(server, 'app@example.test', token)
    assert_signed_once(server, at_sink(token), 'example.test', conf(server)['selector'])


def test_authenticated_submission_mail_is_signed_once(server):
    token = uuid.uuid4().hex
    rc, out = swaks(SINK, '--server', address(server), '--port', '587', '--tls', '--auth', 'PLAIN',
                    '--auth-user', 'ana', '--auth-password', PASSWORD, '--from', 'ana@example.test',
                    '--to', 'rcpt-%s@sink.test' % token, '--header', 'Subject: submission %s' % token,
                    '--body', 'Sent by an authenticated user, %s.' % token)
    assert rc == 0 and re.search(r'<~  250 .*queued as', out), out
    assert_signed_once(server, at_sink(token), 'example.test', conf(server)['selector'])


def test_provided_key_signs_its_domain(server):
    token = uuid.uuid4().hex
    sendmail(server, 'app@provided.test', token)
    assert_signed_once(server, at_sink(token), 'provided.test', 'vault')


def test_mail_from_outside_is_signed_only_from_internal_hosts(server):
    """The sink sends to a local mailbox without authenticating: signed only where its network is internal."""
    token = uuid.uuid4().hex
    rcpt = 'alice@' + server.check_output('postconf -h myhostname')
    rc, out = swaks(SINK, '--server', address(server), '--from', 'stranger@example.test', '--to', rcpt,
                    '--header', 'Subject: outside %s' % token, '--body', 'From outside, %s.' % token)
    assert rc == 0, out
    wait_until(lambda: token in server.run('cat /var/mail/alice').stdout, 120, what='the message in /var/mail/alice')
    script = ('import mailbox, sys\n'
              'for m in mailbox.mbox("/var/mail/alice"):\n'
              '    if sys.argv[1] in (m["Subject"] or ""):\n'
              '        print(m.as_string())\n')
    text = server.check_output('python3 -c %s %s', script, token)
    found = signatures(text)
    if conf(server)['internal']:
        assert [(s['d'], s['s']) for s in found] == [('example.test', conf(server)['selector'])], text[:3000]
    else:
        assert found == [], text[:3000]


def test_keys(server):
    keys = server.file(conf(server)['keys'])
    assert keys.is_directory and keys.user == 'opendkim' and keys.mode == 0o700
    own = key_path(server, 'example.test', conf(server)['selector'])
    provided = key_path(server, 'provided.test', 'vault')
    for path in (own, provided):
        key = server.file(path)
        assert key.user == 'opendkim' and key.group == 'opendkim' and key.mode == 0o600, path
    # The provided key replaced the stale one prepare.yml left there.
    assert server.file(provided).content_string.strip() == controller_key('provided').strip()
    assert server.file(provided).content_string.strip() != controller_key('stale').strip()
    bits = server.check_output('openssl pkey -in %s -noout -text | head -n 1', own)
    if server.backend.get_hostname() == 'dkim-bookworm':
        # The key that was there is kept byte for byte, although dkim_key_size says 2048.
        assert server.file(own).content_string == controller_key('existing')
        assert '1024 bit' in bits, bits
    else:
        assert '3072 bit' in bits, bits


def test_zone_file_on_the_controller_holds_the_hosts_public_keys(server):
    with open(os.path.join(EPHEMERAL, 'dkim', server.backend.get_hostname() + '.zone')) as f:
        zone = f.read()
    records = dict((m.group(1), m.group(2)) for m in re.finditer(r'^(\S+)\. IN TXT \( (.*) \)$', zone, re.M))
    selector = conf(server)['selector']
    assert sorted(records) == sorted(['%s._domainkey.example.test' % selector, 'vault._domainkey.provided.test'])
    for name, domain, sel in ((n, n.split('._domainkey.')[1], n.split('.')[0]) for n in records):
        strings = re.findall(r'"([^"]*)"', records[name])
        assert all(len(s) <= 255 for s in strings), strings
        public = server.check_output('openssl pkey -in %s -pubout', key_path(server, domain, sel))
        body = ''.join(line for line in public.splitlines() if not line.startswith('-----'))
        assert ''.join(strings) == 'v=DKIM1; k=rsa; p=' + body, name
    # The 3072-bit key of Debian 13 needs more than one string.
    if server.backend.get_hostname() == 'dkim-trixie':
        assert len(re.findall(r'"', records['trixie._domainkey.example.test'])) >= 6


def test_milter_lists(server):
    signer = '{ inet:127.0.0.1:%d, default_action=%s }' % (conf(server)['port'], conf(server)['action'])
    assert server.check_output('postconf -h smtpd_milters') == ', '.join(conf(server)['existing_milters'] + [signer])
    assert server.check_output('postconf -h non_smtpd_milters') == signer
    # The main.cf default for every other milter is left alone.
    assert server.check_output('postconf -n milter_default_action') == ''
    if conf(server)['amavis']:
        # The re-injection service of amavisd-new calls no milter (the signed-once proof is in the mail above).
        override = server.check_output("postconf -P '127.0.0.1:10025/inet/receive_override_options'")
        assert 'no_milters' in override.split('=', 1)[1].replace(',', ' ').split(), override


def test_opendkim_listens_on_the_loopback_only(server):
    service = server.service('opendkim')
    assert service.is_running and service.is_enabled
    port = conf(server)['port']
    assert server.socket('tcp://127.0.0.1:%d' % port).is_listening
    assert not server.socket('tcp://0.0.0.0:%d' % port).is_listening
    conf_text = server.file('/etc/opendkim.conf').content_string
    assert re.search(r'^Mode\s+s$', conf_text, re.M) and re.search(r'^Socket\s+inet:%d@127\.0\.0\.1$' % port, conf_text, re.M)
