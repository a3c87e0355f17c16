# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role variable and every module option is used by a test (or listed below with the reason).

What is listed:

* role variables: every option of every entry point of ``roles/<role>/meta/argument_specs.yml``,
  except the ``common`` role's (see EXCLUDED_ROLES);
* module options: every option (and sub-option, as ``option.sub``) a module documents, with the
  doc fragments it extends, and every key of the ``argument_spec`` it gives AnsibleModule.

What counts as used ("referenced"):

* a role variable: its name appears as a word in a test, that is in a Molecule scenario's own
  files (``molecule/<scenario>/``: molecule.yml with its inventory variables, converge, prepare,
  side effect, and the verifier under ``tests/``), in the ``group_vars`` a scenario links into its
  inventory, or in a unit test under ``tests/unit/``. Two files do not count: this one, and
  ``tests/unit/reliability/test_roles.py``, whose wrongly typed variables prove the argument
  validation, not an effect.
* a module option: its name is set in a test that uses the module, that is in a unit test or a
  Molecule file that names the module: as a key (``'name':``, ``name:``) or a keyword argument
  or ad hoc argument (``name=``).

A name in ALLOWED (with the reason it is not exercised) passes; an ALLOWED name that is used,
or that no longer exists, fails too, so the list only shrinks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import glob
import importlib
import os
import re

import pytest
import yaml

from ansible.module_utils import basic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.abspath(__file__)

# The common role (handlers, the host probe behind fast re-runs) is being renamed and replaced:
# its variables (common_host_probe) join this check with the new role.
EXCLUDED_ROLES = {'common'}
# Files whose mentions do not count (see the module docstring).
NOT_COUNTED = {HERE, os.path.join(ROOT, 'tests', 'unit', 'reliability', 'test_roles.py')}

# Not exercised by any test yet, and why. Role variables by name; module options as module.option.
ALLOWED = {
    'anti_relay_submission_tls_cert': 'the anti_relay servers have only the snakeoil certificate, which port 25 '
                                      'presents too: a separate one for port 587 would need a second certificate '
                                      'there to be observable; not set up yet',
    'anti_relay_submission_tls_key': 'see anti_relay_submission_tls_cert',
    'backup_mx_primary_mx_lookup': 'finding the primary by MX needs a name whose MX is the primary alone (example.com '
                                   'lists the backup too) in the scenario\'s DNS; not set up yet',
    'backup_mx_transport': 'another transport needs its own master.cf service on the backups; not set up yet',
    'backup_mx_recipient_map_path': 'the recipient table is proved at its default path (postmap -q, 550 at RCPT); '
                                    'not moved yet',
    'backup_mx_recipient_map_type': 'the recipient table is proved as a hash table; another type not tried yet',
    'base_relay_restrictions': 'the base role\'s share of smtpd_relay_restrictions: changing it is proved through '
                               'the anti_relay override of the same list; not varied on its own yet',
    'base_maillog_file': 'null logs to syslog, and the containers run no syslog daemon: the log checks of every '
                         'scenario read the file',
    'content_filter_header_checks_type': 'the scenario has the guide\'s examples on, and the role refuses them '
                                         'with any table type but pcre; not set up without them yet',
    'content_filter_mime_header_checks_type': 'the guide\'s MIME rules use PCRE syntax (\\b, \\s) that a regexp '
                                              'table refuses; another type needs rules of its own; not set up yet',
    'content_filter_body_checks_type': 'see content_filter_mime_header_checks_type (the body rules are PCRE)',
    'content_filter_postfix_config_dir': 'a second Postfix instance (postmulti) in a scenario; not set up',
    'postgrey_auto_whitelist_clients': 'the effect shows after N deliveries from one client address, and the '
                                       'postgrey tests share the container\'s one outside address: a whitelisted '
                                       'client would change the answers of the other tests',
    'postgrey_restriction_list': 'the policy check in another restriction list; not varied yet',
    'postgrey_postfix_config_dir': 'a second Postfix instance (postmulti) in a scenario; not set up',
    'transport_map_path': 'the transport scenario\'s stale-route check needs the table at its default path',
}


# ---------------------------------------------------------------- what is listed

def role_variables(root):
    """{variable: role} from every role's meta/argument_specs.yml (EXCLUDED_ROLES left out)."""
    names = {}
    for path in sorted(glob.glob(os.path.join(root, 'roles', '*', 'meta', 'argument_specs.yml'))):
        role = path.split(os.sep)[-3]
        if role in EXCLUDED_ROLES:
            continue
        with open(path) as f:
            specs = yaml.safe_load(f) or {}
        for entry in (specs.get('argument_specs') or {}).values():
            for name in (entry.get('options') or {}):
                names[name] = role
    return names


def _options(options, prefix=''):
    for name, spec in (options or {}).items():
        yield prefix + name
        if isinstance(spec, dict):
            yield from _options(spec.get('suboptions') or spec.get('options'), prefix + name + '.')


def _documentation(path):
    """The DOCUMENTATION of a module file, parsed."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'DOCUMENTATION' for t in node.targets):
            return yaml.safe_load(node.value.value) or {}
    return {}


def _fragment_options(name):
    """Options of a doc fragment named like estafeta.postfix.postfix or estafeta.postfix.postfix.check."""
    parts = name.split('.')
    if parts[:2] != ['estafeta', 'postfix']:
        return []
    module = importlib.import_module('ansible_collections.estafeta.postfix.plugins.doc_fragments.' + parts[2])
    text = getattr(module.ModuleDocFragment, parts[3].upper() if len(parts) > 3 else 'DOCUMENTATION')
    return list(_options((yaml.safe_load(text) or {}).get('options')))


class _Spec(Exception):
    def __init__(self, spec):
        super(_Spec, self).__init__('argument_spec')
        self.spec = spec


def argument_spec(module_name):
    """The argument_spec a module gives AnsibleModule (its main() is stopped right there)."""
    module = importlib.import_module('ansible_collections.estafeta.postfix.plugins.modules.' + module_name)
    original = basic.AnsibleModule.__init__

    def capture(self, argument_spec=None, *args, **kwargs):
        raise _Spec(argument_spec or {})

    basic.AnsibleModule.__init__ = capture
    try:
        module.main()
    except _Spec as exc:
        return exc.spec
    finally:
        basic.AnsibleModule.__init__ = original
    raise AssertionError('%s: main() made no AnsibleModule' % module_name)


def module_options(root):
    """{"module.option": module} from the modules' documentation, doc fragments and argument_spec."""
    names = {}
    for path in sorted(glob.glob(os.path.join(root, 'plugins', 'modules', '*.py'))):
        module = os.path.splitext(os.path.basename(path))[0]
        if module.startswith('_') or module == '__init__':
            continue
        doc = _documentation(path)
        found = set(_options(doc.get('options')))
        fragments = doc.get('extends_documentation_fragment') or []
        for fragment in [fragments] if isinstance(fragments, str) else fragments:
            found.update(_fragment_options(fragment))
        found.update(_options(argument_spec(module)))
        for option in found:
            names['%s.%s' % (module, option)] = module
    return names


# ---------------------------------------------------------------- what counts as a use

def _read(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return f.read()


def counted_files(root):
    """{path: text} of the files that count as tests (see the module docstring)."""
    paths = set()
    for scenario in glob.glob(os.path.join(root, 'molecule', '*', 'molecule.yml')):
        directory = os.path.dirname(scenario)
        paths.update(p for p in glob.glob(os.path.join(directory, '**', '*'), recursive=True)
                     if p.endswith(('.yml', '.yaml', '.py')))
        with open(scenario) as f:
            config = yaml.safe_load(f) or {}
        links = (((config.get('provisioner') or {}).get('inventory') or {}).get('links') or {})
        for link in links.values():
            target = os.path.normpath(os.path.join(directory, link))
            paths.update(glob.glob(os.path.join(target, '**', '*.yml'), recursive=True) if os.path.isdir(target)
                         else [target])
    paths.update(glob.glob(os.path.join(root, 'tests', 'unit', '**', '*.py'), recursive=True))
    return dict((p, _read(p)) for p in sorted(paths) if os.path.isfile(p) and os.path.abspath(p) not in NOT_COUNTED)


def unused_role_variables(names, files):
    corpus = '\n'.join(files.values())
    return sorted(n for n in names if not re.search(r'(?<![\w.])%s(?!\w)' % re.escape(n), corpus))


def unused_module_options(names, files):
    unused = []
    for qualified, module in sorted(names.items()):
        option = qualified.split('.')[-1]
        setting = re.compile(r'''(['"]%s['"]\s*:|(?<![\w.])%s\s*[:=])''' % (re.escape(option), re.escape(option)))
        users = [text for text in files.values() if re.search(r'(?<!\w)%s(?!\w)' % re.escape(module), text)]
        if not any(setting.search(text) for text in users):
            unused.append(qualified)
    return unused


# ---------------------------------------------------------------- the checks

@pytest.fixture(scope='module')
def inventory():
    files = counted_files(ROOT)
    roles, modules = role_variables(ROOT), module_options(ROOT)
    return {'files': files, 'roles': roles, 'modules': modules,
            'unused': set(unused_role_variables(roles, files) + unused_module_options(modules, files))}


def test_the_lists_are_found(inventory):
    """The check looks at the real roles and modules (not an empty glob)."""
    assert len(inventory['roles']) > 100 and {'base', 'tls', 'anti_relay', 'smarthost'} <= set(inventory['roles'].values())
    assert 'postconf_set.params' in inventory['modules'] and 'postmap_file.config_dir' in inventory['modules']
    assert any(p.endswith(os.path.join('molecule', 'tls', 'tests', 'test_tls.py')) for p in inventory['files'])
    assert not [n for n, role in inventory['roles'].items() if role in EXCLUDED_ROLES]


def test_every_option_is_exercised(inventory):
    missing = sorted(inventory['unused'] - set(ALLOWED))
    assert not missing, ('no test uses these role variables / module options: %s. Set each one in a Molecule '
                         'scenario or a unit test that proves its effect (or list it in ALLOWED with the '
                         'reason).' % ', '.join(missing))


def test_allow_list_is_current(inventory):
    known = set(inventory['roles']) | set(inventory['modules'])
    gone = sorted(set(ALLOWED) - known)
    assert not gone, 'ALLOWED names what no role or module has any more: %s' % ', '.join(gone)
    used = sorted(set(ALLOWED) - inventory['unused'])
    assert not used, 'ALLOWED names what a test now uses (remove it from ALLOWED): %s' % ', '.join(used)
    assert all(len(reason) > 10 for reason in ALLOWED.values())


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_what_no_test_uses(tmp_path):
    _write(tmp_path / 'roles' / 'demo' / 'meta' / 'argument_specs.yml',
           'argument_specs:\n  main:\n    options:\n      demo_used: {type: str}\n      demo_linked: {type: str}\n'
           '      demo_unused: {type: str}\n      demo_prefix: {type: str}\n')
    _write(tmp_path / 'roles' / 'common' / 'meta' / 'argument_specs.yml',
           'argument_specs:\n  main:\n    options:\n      common_whatever: {type: bool}\n')
    _write(tmp_path / 'molecule' / 'one' / 'molecule.yml',
           'provisioner:\n  inventory:\n    links:\n      group_vars: ../../inventory/group_vars/\n'
           '    group_vars:\n      all:\n        demo_used: x\n        demo_prefix_longer: y\n')
    _write(tmp_path / 'inventory' / 'group_vars' / 'all.yml', 'demo_linked: z\n')
    # A mention outside the test files does not count.
    _write(tmp_path / 'docs' / 'demo.yml', 'demo_unused: 1\n')
    files = counted_files(str(tmp_path))
    names = role_variables(str(tmp_path))
    assert set(names) == {'demo_used', 'demo_linked', 'demo_unused', 'demo_prefix'}
    assert unused_role_variables(names, files) == ['demo_prefix', 'demo_unused']


def test_checker_wants_module_options_set_where_the_module_is_used():
    files = {
        'a.py': "run_module(postconf_set, {'name': 'biff', 'value': False})",
        'b.yml': "- estafeta.postfix.postmap_file:\n    path: /etc/postfix/access\n",
        'c.py': "# mentions exclusive but not the module\nexclusive = True\n",
    }
    names = {'postconf_set.name': 'postconf_set', 'postconf_set.value': 'postconf_set',
             'postconf_set.allow_unknown': 'postconf_set', 'postmap_file.path': 'postmap_file',
             'postmap_file.exclusive': 'postmap_file'}
    assert unused_module_options(names, files) == ['postconf_set.allow_unknown', 'postmap_file.exclusive']
