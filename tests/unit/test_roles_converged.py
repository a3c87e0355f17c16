# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' fast re-run path: the shape every role follows, and a record that leaves nothing out.

Shape (see roles/common/README.md):

- every role depends on ``common``, which alone defines handlers (one chain per play): the daemons
  next to Postfix, then ``postfix check`` before each reload or restart, and last the commit of the
  converged-state records;
- a role's ``main.yml`` ends the role early, at its first task, only through ``__<role>_converged`` (its
  record holds and ``__<role>_input`` is the same; secrets enter the input through a keyed digest);
- the role's last task queues ``__<role>_record`` (its name, ``__<role>_input`` and ``__<role>_managed``)
  and notifies the reload; the last handler writes the queued records after the reload.

Completeness: for every role, under several sets of variables (optional parts on and off), every
task the role would run is evaluated here as Ansible would evaluate it (loops, ``vars``, ``when``),
and what it manages - each main.cf parameter, restriction list, master.cf service, table, file,
package, unit, user - must be in the role's ``__<role>_managed`` rendered with the same variables.
A task added without its object in the record fails this test, so the fast path can never skip a
host where that object was edited by hand.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import pytest

from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
ROLES_DIR = os.path.join(ROOT, 'roles')
ROLES = sorted(r for r in os.listdir(ROLES_DIR) if r != 'common' and os.path.isdir(os.path.join(ROLES_DIR, r, 'tasks')))
RELOAD = 'estafeta.postfix : reload postfix'
RESTART = 'estafeta.postfix : restart postfix'
LOADER = DataLoader()

FACTS = {
    'inventory_hostname': 'mail.example.test',
    'ansible_facts': {'fqdn': 'mail.example.test', 'distribution_major_version': '12'},
    'ansible_run_tags': ['all'], 'ansible_skip_tags': [], 'ansible_check_mode': False,
    '__common_state': {'records': {}},
}

# Sets of variables under which every role's tasks are evaluated: each optional part is on in one.
VARIANTS = {
    'base': [{}, {'base_install_doc': True, 'base_extra_packages': ['postfix-lmdb'], 'base_mydomain': 'example.test',
                  'base_params': {'message_size_limit': 1000}}],
    'anti_relay': [{}, {
        'anti_relay_mynetworks': ['127.0.0.0/8'], 'anti_relay_submission_enabled': True,
        'anti_relay_submission_users': [{'name': 'alice', 'password': 'x'}],
        'anti_relay_sender_access': {'spam@example.test': 'REJECT'},
        'anti_relay_sender_whitelist_enabled': True, 'anti_relay_sender_whitelist': ['friend@example.test'],
        'anti_relay_dnsbl_zones': ['zen.spamhaus.org'], 'anti_relay_rhsbl_sender_zones': ['dbl.spamhaus.org'],
        'anti_relay_spf_enabled': True, 'anti_relay_spf_settings': {'Lookup_Time': 10}}],
    'smarthost': [{'smarthost_relayhost': 'relay.example.test'}, {
        'smarthost_relayhost': 'relay.example.test', 'smarthost_auth': True, 'smarthost_username': 'u',
        'smarthost_password': 'p', 'smarthost_params': {'smtp_connect_timeout': '20s'},
        'smarthost_sender_relays': [{'sender': '@example.test', 'relayhost': '[other.example.test]:587',
                                     'username': 'u2', 'password': 'p2'}]}],
    'tls': [{}, {'tls_certificate': 'CERT', 'tls_private_key': 'KEY', 'tls_params': {'tls_ssl_options': 'NO_RENEGOTIATION'}}],
    'virtual': [{'virtual_aliases': {'a@example.test': 'root'}, 'virtual_alias_domains': ['example.test']}],
    'transport': [{'transport_routes': [{'destination': 'example.test', 'nexthop': '192.0.2.1'}]}],
    'backup_mx': [{'backup_mx_domains': ['example.test'], 'backup_mx_recipients': ['@example.test'],
                   'backup_mx_primary': 'primary.example.test'}],
    'postgrey': [{}, {'postgrey_state': 'absent'}],
    'postscreen': [{}, {'postscreen_state': 'absent', 'postscreen_params': {'postscreen_greet_banner': 'x'}}, {
        'postscreen_dnsbl_sites': ['bl.example.test*3', 'weak.example.test'], 'postscreen_greet_wait': '3s',
        'postscreen_access': [{'network': '192.0.2.0/24', 'action': 'permit'}],
        'postscreen_access_path': '/etc/postfix/screen.cidr', 'postscreen_smtpd_options': {'syslog_name': 'x'},
        'postscreen_params': {'postscreen_greet_banner': 'x', 'postscreen_dnsbl_allowlist_threshold': -1}}],
    'dkim': [{'dkim_keys': [{'domain': 'example.test', 'selector': 's1'}]}, {
        'dkim_keys': [{'domain': 'example.test', 'selector': 's1'}, {'domain': 'example.test', 'selector': 's2'},
                      {'domain': 'other.test', 'selector': 'vault', 'private_key': 'KEY'}],
        'dkim_internal_hosts': ['192.0.2.0/24'], 'dkim_key_dir': '/etc/keys', 'dkim_port': 8892}],
    'content_filter': [{}, {
        'content_filter_guide_examples': True, 'content_filter_amavis_enabled': True,
        'content_filter_amavis_myhostname': 'mail.example.test', 'content_filter_amavis_spamassassin': True,
        'content_filter_amavis_clamav': True, 'content_filter_amavis_clamav_freshclam': False,
        'content_filter_amavis_clamav_local_signatures': [{'name': 'local.hdb', 'content': 'x'},
                                                          {'name': 'old.ndb', 'state': 'absent'}]}],
}

# Modules that manage nothing on the host (read-only, or controller-side).
READ_ONLY = {
    'ansible.builtin.meta', 'ansible.builtin.assert', 'ansible.builtin.debug', 'ansible.builtin.set_fact',
    'ansible.builtin.stat', 'ansible.builtin.find', 'ansible.builtin.package_facts', 'ansible.builtin.wait_for',
    'ansible.builtin.fail', 'community.crypto.x509_certificate_info', 'community.crypto.openssl_csr_pipe',
    'estafeta.postfix.converged_state', 'estafeta.postfix.postqueue', 'estafeta.postfix.postfix_info',
    'community.crypto.openssl_privatekey_info',
}
INCLUDES = ('ansible.builtin.import_tasks', 'ansible.builtin.include_tasks')
# Managed objects that need no fingerprint, with the reason.
EXEMPT = {
    'ansible.builtin.debconf': 'the answers matter only to the package installation, which the record covers',
}
# Tasks whose targets come from what an earlier task found on the host (registered), with the reason.
EXEMPT_TASKS = {
    ('content_filter', 'Stop freshclam'): 'stops the installed ones of __content_filter_freshclam_units, all recorded',
}


def load(path):
    return LOADER.load_from_file(path, trusted_as_template=True) or []


def role_vars(role, overrides):
    variables = {}
    for r in ('common', role):
        for sub in ('defaults', 'vars'):
            path = os.path.join(ROLES_DIR, r, sub, 'main.yml')
            if os.path.exists(path):
                variables.update(load(path))
    variables.update(FACTS)
    variables.update(overrides)
    return variables


def render(templar, value):
    if isinstance(value, str):
        return templar.template(trust_as_template(value))
    return templar.template(value)


def condition(templar, when):
    """Evaluate a task's ``when`` (a list or one expression); None when it cannot be told statically."""
    try:
        for expr in when if isinstance(when, list) else [when]:
            if isinstance(expr, bool):
                if not expr:
                    return False
                continue
            if not render(templar, '{{ (%s) | bool }}' % expr):
                return False
        return True
    except AnsibleError:
        return None


def module_of(task):
    keys = [k for k in task if '.' in k]
    assert len(keys) == 1, 'task %r: expected one fully qualified module, got %s' % (task.get('name'), keys)
    return keys[0]


def walk(role, tasks, filename, seen=(), inherited=()):
    """``(file, task, conditions)`` for ``tasks`` and the tasks of every file they import or include, in
    order; ``conditions`` are the ``when`` of the imports and includes around the task."""
    for task in tasks:
        module = module_of(task)
        yield filename, task, inherited
        if module in INCLUDES:
            args = task[module]
            inner = args['file'] if isinstance(args, dict) else args
            when = task.get('when')
            outer = inherited + ((tuple(when) if isinstance(when, list) else (when,)) if when is not None else ())
            if inner not in seen:
                yield from walk(role, load(os.path.join(ROLES_DIR, role, 'tasks', inner)), inner, seen + (inner,), outer)


def targets(module, args, task):
    """What one task (one loop item) manages, as spec items; None for what needs no fingerprint."""
    if module == 'estafeta.postfix.postconf_set':
        if args.get('service'):
            return ['service %s' % args['service']]
        return ['param %s' % name for name in (args.get('params') or {})]
    if module == 'estafeta.postfix.restrictions':
        return ['list %s %s' % (args['name'], args['owner'])]
    if module == 'estafeta.postfix.master_service':
        return ['service %s/%s' % (args['name'], args['type'])]
    if module == 'estafeta.postfix.postmap_file':
        kind = 'alias' if args.get('alias') else 'table'
        return ['%s %s %s' % (kind, args['path'], args.get('type', 'hash'))]
    if module in ('ansible.builtin.template', 'ansible.builtin.copy'):
        return ['file %s' % args['dest']]
    if module in ('ansible.builtin.lineinfile', 'ansible.builtin.file', 'community.crypto.openssl_privatekey',
                  'community.crypto.x509_certificate'):
        return ['file %s' % args['path']]
    if module == 'ansible.builtin.apt':
        names = args['name'] if isinstance(args['name'], list) else [args['name']]
        return ['package %s' % n for n in names]
    if module in ('ansible.builtin.service', 'ansible.builtin.systemd_service'):
        if 'name' not in args:
            return []  # daemon_reload only
        name = args['name']
        if name == 'postfix@-':
            return ['master']
        return ['unit %s' % (name if '.' in name else name + '.service')]
    if module == 'ansible.builtin.user':
        return ['user %s' % args['name']]
    if module == 'ansible.builtin.slurp':
        return []  # reads only
    raise AssertionError('task %r uses %s: teach tests/unit/test_roles_converged.py what it manages'
                         % (task.get('name'), module))


def managed_objects(role, overrides):
    """``(rendered __<role>_managed, [(task name, target)] the evaluated tasks manage)``."""
    variables = role_vars(role, overrides)
    templar = Templar(loader=LOADER, variables=variables)
    managed = render(templar, '{{ __%s_managed }}' % role)
    found = []
    main_tasks = load(os.path.join(ROLES_DIR, role, 'tasks', 'main.yml'))
    end = [i for i, t in enumerate(main_tasks) if t.get('ansible.builtin.meta') == 'end_role'][0]
    for filename, task, inherited in walk(role, main_tasks[end + 1:], 'main.yml'):
        module = module_of(task)
        if module in READ_ONLY or module in INCLUDES or module in EXEMPT or (role, task.get('name')) in EXEMPT_TASKS:
            continue
        if module == 'ansible.builtin.command' and task.get('changed_when') is False:
            continue  # reads only
        if task.get('delegate_to') == 'localhost':
            continue  # a file on the controller, not on the host
        loop = task.get('loop')
        items = [None]
        if loop is not None:
            items = render(templar, loop)
        for item in items:
            scoped = dict(variables, item=item)
            scoped.update(task.get('vars') or {})
            local = Templar(loader=LOADER, variables=scoped)
            when = list(inherited) + ([] if 'when' not in task else
                                      task['when'] if isinstance(task['when'], list) else [task['when']])
            if when and condition(local, when) is False:
                continue
            args = render(local, task[module])
            for target in targets(module, args, task):
                found.append((task.get('name'), target))
    return managed, found


@pytest.mark.parametrize('role, index', [(r, i) for r in ROLES for i in range(len(VARIANTS.get(r, [{}])))])
def test_record_covers_everything_the_role_manages(role, index):
    managed, found = managed_objects(role, VARIANTS.get(role, [{}])[index])
    assert found, '%s manages nothing?' % role
    missing = []
    for name, target in found:
        if target not in managed:
            missing.append('%s: %s' % (name, target))
    assert not missing, ('%s: __%s_managed leaves out what these tasks manage (a hand edit of it would be skipped '
                         'by the fast path):\n%s' % (role, role, '\n'.join(missing)))


@pytest.mark.parametrize('role', ROLES)
def test_depends_on_common_and_defines_no_handlers(role):
    meta = load(os.path.join(ROLES_DIR, role, 'meta', 'main.yml'))
    assert {'role': 'common'} in (meta.get('dependencies') or [])
    assert not os.path.exists(os.path.join(ROLES_DIR, role, 'handlers', 'main.yml')), \
        'handlers live in the common role only (one chain per play, the commit last)'


def test_common_handler_chain():
    handlers = load(os.path.join(ROLES_DIR, 'common', 'handlers', 'main.yml'))
    names = [h['name'] for h in handlers]
    topics = [h['listen'] if isinstance(h['listen'], list) else [h['listen']] for h in handlers]
    for topic in (RELOAD, RESTART):
        mine = [h['name'] for h, t in zip(handlers, topics) if topic in t]
        assert mine[0].startswith('Check the Postfix configuration'), mine
        assert mine[-2:] == ['Record the converged state of the roles that ran in full',
                             'Empty the queue of converged-state records'], mine
    assert names[-2:] == ['Record the converged state of the roles that ran in full',
                          'Empty the queue of converged-state records']
    record = handlers[-2]['estafeta.postfix.converged_state']
    assert record['action'] == 'record' and '__common_queue' in record['records']
    assert handlers[-1]['ansible.builtin.set_fact'] == {'__common_queue': {}}


@pytest.mark.parametrize('role', ROLES)
def test_role_shape(role):
    tasks = load(os.path.join(ROLES_DIR, role, 'tasks', 'main.yml'))
    variables = load(os.path.join(ROLES_DIR, role, 'vars', 'main.yml'))
    # The early end: the first task, the converged flag, nothing else.
    ends = [t for t in tasks if t.get('ansible.builtin.meta') == 'end_role']
    assert len(ends) == 1 and ends[0]['when'] == '__%s_converged | bool' % role and tasks[0] is ends[0]
    converged = variables['__%s_converged' % role]
    assert "__common_records.%s | default('') == __%s_input" % (role, role) in converged
    assert "estafeta.postfix.role_input('%s', __common_digest_key)" % role in variables['__%s_input' % role]
    assert '__%s_managed' % role in variables
    # The record: the last task queues it, for real runs that ran everything, and notifies the reload.
    last = tasks[-1]
    queued = last['ansible.builtin.set_fact']['__common_queue']
    assert queued == "{{ __common_queue | default({}) | combine({'%s': __%s_record}) }}" % (role, role)
    assert last['changed_when'] == "__common_records.%s | default('') != __%s_input" % (role, role)
    when = last['when'] if isinstance(last['when'], list) else [last['when']]
    assert when[0].startswith('__common_recording | bool')
    assert last['notify'] == RELOAD
    record = variables['__%s_record' % role]
    for part in ("'role': '%s'" % role, "'input': __%s_input" % role, "'spec': __%s_managed" % role):
        assert part in record


@pytest.mark.parametrize('role', ROLES)
def test_no_other_path_skips_work(role):
    """The converged flag is used by the early end and the secret imports only: no half-skipped role."""
    for path in sorted(os.listdir(os.path.join(ROLES_DIR, role, 'tasks'))):
        text = open(os.path.join(ROLES_DIR, role, 'tasks', path)).read()
        uses = len(re.findall(r'__%s_converged' % role, text))
        if path == 'main.yml':
            assert uses == 1, path
        else:
            assert uses == 0, path


def test_every_tag_of_the_roles_starts_with_postfix():
    """The common role tells a --skip-tags that leaves the roles whole by this prefix (roles/common/vars)."""
    for role in ROLES + ['common']:
        for path in sorted(os.listdir(os.path.join(ROLES_DIR, role, 'tasks'))):
            for task in load(os.path.join(ROLES_DIR, role, 'tasks', path)):
                for tag in task.get('tags') or []:
                    assert tag == 'always' or tag.startswith('postfix'), (role, path, task.get('name'), tag)
                for key in INCLUDES:
                    apply = task.get(key) if isinstance(task.get(key), dict) else {}
                    for tag in (apply.get('apply') or {}).get('tags') or []:
                        assert tag.startswith('postfix'), (role, path, task.get('name'), tag)


def test_no_two_roles_manage_one_object():
    """Only restriction lists (composed), packages and units may appear in two roles' records: anything else
    would be set by two roles, and the last one to run would decide it."""
    variables = {}
    for role in ROLES:
        variables.update(VARIANTS.get(role, [{}])[-1])
    owners = {}
    for role in ROLES:
        managed, dummy = managed_objects(role, variables)
        for item in managed:
            if not item.startswith(('list ', 'package ', 'unit ', 'master')):
                owners.setdefault(item, []).append(role)
    assert not dict((k, v) for k, v in owners.items() if len(v) > 1)
