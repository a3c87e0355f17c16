#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Module benchmarks (part of `make bench`; alone: `make bench-modules`).

1. 200 main.cf parameters: one estafeta.postfix.postconf_set task against a 200-iteration
   ansible.builtin.lineinfile loop, on two copies of the same scratch main.cf.
2. A 10,000-entry hash table with estafeta.postfix.postmap_file: first build, no-op re-run,
   one-entry change.

Both run on this machine (connection local) against scratch configuration directories with the
real Postfix binaries. Task times come from the ansible.posix.json callback (module time, not
ansible-playbook start-up). The no-op re-run of the 10,000-entry table is also timed as module
execution time: the module's main() run in-process with the same arguments, timed until it calls
exit_json (no Ansible transport, no argument templating). Run alone, the results are printed.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
BIN = os.path.dirname(sys.executable)
SHARE = '/usr/share/postfix'


def scratch_config(base):
    conf = os.path.join(base, 'postfix')
    os.makedirs(conf)
    main = os.path.join(SHARE, 'main.cf.debian')
    shutil.copy(main if os.path.exists(main) else os.path.join(SHARE, 'main.cf.dist'), os.path.join(conf, 'main.cf'))
    shutil.copy(os.path.join(SHARE, 'master.cf.dist'), os.path.join(conf, 'master.cf'))
    return conf


def pick_parameters(conf, count=200):
    """``count`` real parameters with simple single-token default values (set explicitly)."""
    out = subprocess.run(['postconf', '-c', conf, '-d'], capture_output=True, text=True, check=True).stdout
    params = {}
    for line in out.splitlines():
        name, dummy, value = line.partition(' = ')
        if not value or ' ' in value or '$' in value or ',' in value or name.startswith('_'):
            continue
        params[name] = value
        if len(params) == count:
            break
    return params


def run_playbook(playbook, extra_vars):
    env = dict(os.environ)
    env.update({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json', 'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
                'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg')})
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(extra_vars, f)
        vars_file = f.name
    try:
        proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=' + sys.executable,
                               '-e', '@' + vars_file, playbook], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    finally:
        os.unlink(vars_file)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit('benchmark playbook %s failed' % playbook)
    return json.loads(proc.stdout)


def task_seconds(result, task_name):
    for play in result['plays']:
        for task in play['tasks']:
            if task['task']['name'] == task_name:
                d = task['task']['duration']
                start = datetime.datetime.fromisoformat(d['start'].replace('Z', '+00:00'))
                end = datetime.datetime.fromisoformat(d['end'].replace('Z', '+00:00'))
                return (end - start).total_seconds(), task['hosts']['localhost'].get('changed', False)
    raise KeyError(task_name)


def write_playbook(base, name, tasks):
    path = os.path.join(base, name)
    with open(path, 'w') as f:
        f.write('---\n- name: Benchmark\n  hosts: localhost\n  gather_facts: false\n  tasks:\n' + tasks)
    return path


def bench_postconf(base):
    conf_a = scratch_config(os.path.join(base, 'a'))
    conf_b = scratch_config(os.path.join(base, 'b'))
    params = pick_parameters(conf_a)
    one = write_playbook(base, 'postconf_set.yml', '''
    - name: Set parameters with one postconf_set task
      estafeta.postfix.postconf_set:
        config_dir: "{{ conf }}"
        params: "{{ params }}"
''')
    loop = write_playbook(base, 'lineinfile.yml', '''
    - name: Set parameters with a lineinfile loop
      ansible.builtin.lineinfile:
        path: "{{ conf }}/main.cf"
        regexp: "^{{ item.key }}\\\\s*="
        line: "{{ item.key }} = {{ item.value }}"
      loop: "{{ params | dict2items }}"
''')
    t_one, changed_one = task_seconds(run_playbook(one, {'conf': conf_a, 'params': params}),
                                      'Set parameters with one postconf_set task')
    t_one_rerun, changed_rerun = task_seconds(run_playbook(one, {'conf': conf_a, 'params': params}),
                                              'Set parameters with one postconf_set task')
    t_loop, dummy = task_seconds(run_playbook(loop, {'conf': conf_b, 'params': params}),
                                 'Set parameters with a lineinfile loop')
    same = (subprocess.run(['postconf', '-c', conf_a, '-n'], capture_output=True, text=True, check=False).stdout
            == subprocess.run(['postconf', '-c', conf_b, '-n'], capture_output=True, text=True, check=False).stdout.replace(conf_b, conf_a))
    return {
        'parameters': len(params),
        'postconf_set_seconds': round(t_one, 3),
        'postconf_set_rerun_seconds': round(t_one_rerun, 3),
        'postconf_set_rerun_changed': changed_rerun,
        'lineinfile_loop_seconds': round(t_loop, 3),
        'speedup': round(t_loop / t_one, 1),
        'same_resulting_configuration': same,
        'first_run_changed': changed_one,
    }


class _Exit(Exception):
    def __init__(self, result):
        super(_Exit, self).__init__(result)
        self.result = result


def module_seconds(module_name, args):
    """Time a collection module's main() in-process (module execution time, no Ansible transport)."""
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    import importlib
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes
    module = importlib.import_module('ansible_collections.estafeta.postfix.plugins.modules.' + module_name)
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_remote_tmp='/tmp', _ansible_keep_remote_files=False)
    saved = (basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json, basic._ANSIBLE_ARGS, getattr(basic, '_ANSIBLE_PROFILE', None))

    def _exit(_self, **kwargs):
        raise _Exit(kwargs)

    def _fail(_self, msg, **_kwargs):
        raise SystemExit('%s failed: %s' % (module_name, msg))

    basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = _exit, _fail
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    basic._ANSIBLE_PROFILE = 'legacy'
    start = time.monotonic()
    try:
        module.main()
        raise SystemExit('%s did not exit' % module_name)
    except _Exit as exc:
        return time.monotonic() - start, exc.result.get('changed', False)
    finally:
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json, basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE = saved


def bench_postmap(base):
    conf = scratch_config(os.path.join(base, 'm'))
    table = os.path.join(base, 'm', 'big_access')
    entries = dict(('user%05d@example.com' % i, 'REJECT' if i % 2 else 'OK') for i in range(10000))
    pb = write_playbook(base, 'postmap.yml', '''
    - name: Build a 10000-entry table
      estafeta.postfix.postmap_file:
        config_dir: "{{ conf }}"
        path: "{{ table }}"
        type: hash
        entries: "{{ entries }}"
''')
    name = 'Build a 10000-entry table'
    build, c1 = task_seconds(run_playbook(pb, {'conf': conf, 'table': table, 'entries': entries}), name)
    noop, c2 = task_seconds(run_playbook(pb, {'conf': conf, 'table': table, 'entries': entries}), name)
    noop_module, c_module = module_seconds('postmap_file', {'config_dir': conf, 'path': table, 'type': 'hash', 'entries': entries})
    entries['user00000@example.com'] = 'REJECT changed'
    change, c3 = task_seconds(run_playbook(pb, {'conf': conf, 'table': table, 'entries': entries}), name)
    answer = subprocess.run(['postmap', '-c', conf, '-q', 'user00000@example.com', 'hash:' + table],
                            capture_output=True, text=True, check=False).stdout.strip()
    return {'entries': len(entries), 'build_seconds': round(build, 3), 'build_changed': c1,
            'noop_seconds': round(noop, 3), 'noop_changed': c2,
            'noop_module_seconds': round(noop_module, 3), 'noop_module_changed': c_module,
            'one_change_seconds': round(change, 3), 'one_change_changed': c3,
            'lookup_after_change': answer}


def run_all():
    base = tempfile.mkdtemp(prefix='estafeta-bench-')
    try:
        results = {'postconf_set_vs_lineinfile': bench_postconf(base), 'postmap_file_10000': bench_postmap(base)}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    version = subprocess.run(['postconf', '-d', '-h', 'mail_version'], capture_output=True, text=True, check=False).stdout.strip()
    results['machine'] = '%d cores, Postfix %s on this machine (connection local)' % (os.cpu_count(), version)
    return results


def main():
    results = run_all()
    print(json.dumps(results, indent=2, sort_keys=True))
    p = results['postconf_set_vs_lineinfile']
    print('200 parameters: postconf_set %.2fs, lineinfile loop %.2fs, ratio %.1fx' % (
        p['postconf_set_seconds'], p['lineinfile_loop_seconds'], p['speedup']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
