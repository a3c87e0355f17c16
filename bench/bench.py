#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark suite behind `make bench` (a benchmark, not a timed test).

Every figure is measured in this run and printed; the results go to docs/performance.json and
docs/performance.md, the fleet plot to docs/images/fleet-scaling.png. Ratios compare figures of
the same run, because absolute times on a shared machine drift.

Targets are real hosts reached over SSH (pipelining and ControlPersist on), as a fleet is
reached: systemd containers of the image estafeta/bench-sshd (bench/sshd-image.sh) on the docker
network bench-net, with a key pair made for this run under .cache/bench/. Every container and
network made here is named bench-*.

  1. floor        gather facts and read `postconf -n` once (bench/playbooks/floor.yml)
  2. comparable   smarthost + SASL + TLS encrypt, mynetworks, virtual aliases, transport routes,
                  header checks (bench/playbooks/comparable.yml): fresh converge, re-runs, a full converge
                  of the configuration (bench/playbooks/reset.yml first), hand edits (bench/playbooks/drift.yml)
                  and the run that repairs them
  3. complete     playbooks/complete_mailserver.yml with the demo inventory's settings
  4. modules      bench/module_bench.py (postconf_set vs lineinfile, 10,000-entry postmap_file)
  5. fleet        the comparable workload on N = 1, 4, 8, 16 fresh hosts, forks = N
  6. peer         (with --peer-role DIR) the comparable workload's first converge with the Oefenweb postfix
                  role, on fresh hosts, alternating with ours
  7. mitogen      the comparable workload (fresh converge, re-runs) and the floor with Mitogen for
                  Ansible's mitogen_linear strategy on one fresh host and with the default strategy
                  on another, in the same run; checks that our modules give the same results with it

Options: --only floor,comparable,complete,modules,fleet,mitogen  --fleet 1,4,8,16  --suite bookworm
Mitogen comes from bench/requirements.txt (installed by `make bench`, not by `make test`).
"""

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, '.cache', 'bench')
BIN = os.path.dirname(sys.executable)
NETWORK = 'bench-net'


def _load_module_bench():
    spec = importlib.util.spec_from_file_location('module_bench', os.path.join(HERE, 'module_bench.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


module_bench = _load_module_bench()


def log(msg):
    sys.stderr.write('[bench %s] %s\n' % (datetime.datetime.now().strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def run(cmd, check=True, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise SystemExit('command failed (%s): %s\n%s%s' % (proc.returncode, ' '.join(cmd), proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


# ----------------------------------------------------------------------------- containers

class Fleet(object):
    """Fresh systemd containers with sshd, reached by IP over the bench-net network."""

    def __init__(self, suite):
        self.suite = suite
        self.image = 'estafeta/bench-sshd:%s' % suite
        self.key = os.path.join(CACHE, 'id_ed25519')
        self.names = []

    def prepare(self):
        os.makedirs(os.path.join(CACHE, 'cp'), exist_ok=True)
        run([os.path.join(HERE, 'sshd-image.sh'), self.suite])
        if not os.path.exists(self.key):
            run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'estafeta-bench', '-f', self.key])
        if run(['docker', 'network', 'inspect', NETWORK], check=False).returncode != 0:
            run(['docker', 'network', 'create', NETWORK])

    def start(self, names):
        for name in names:
            run(['docker', 'rm', '-f', name], check=False)
            run(['docker', 'run', '-d', '--name', name, '--hostname', name, '--network', NETWORK,
                 '--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined',
                 '--tmpfs', '/run', '--tmpfs', '/run/lock', '--tmpfs', '/tmp',
                 '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--cgroupns', 'host', self.image, '/lib/systemd/systemd'])
            self.names.append(name)
        with open(self.key + '.pub') as f:
            pub = f.read()
        hosts = {}
        for name in names:
            run(['docker', 'exec', name, 'systemctl', 'is-system-running', '--wait'], check=False)
            run(['docker', 'exec', '-i', name, 'sh', '-c',
                 'mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys'], input=pub)
            ip = run(['docker', 'inspect', '-f', '{{(index .NetworkSettings.Networks "%s").IPAddress}}' % NETWORK, name]).stdout.strip()
            hosts[name] = ip
        for name, ip in hosts.items():
            for dummy in range(60):
                if run(['ssh'] + self.ssh_args() + ['root@' + ip, 'true'], check=False).returncode == 0:
                    break
                time.sleep(1)
            else:
                raise SystemExit('no SSH to %s (%s)' % (name, ip))
        return hosts

    def ssh_args(self):
        return ['-i', self.key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
                '-o', 'ControlMaster=auto', '-o', 'ControlPersist=120s', '-o', 'ControlPath=%s/cp/%%C' % CACHE]

    def inventory(self, hosts, group_vars, name):
        common = ' '.join(self.ssh_args()[2:])
        inv = {'all': {'children': {'mailservers': {
            'hosts': dict((h, {'ansible_host': ip}) for h, ip in hosts.items()),
            'vars': group_vars}},
            'vars': {'ansible_user': 'root', 'ansible_ssh_private_key_file': self.key, 'ansible_ssh_common_args': common,
                     'ansible_ssh_pipelining': True, 'ansible_python_interpreter': '/usr/bin/python3'}}}
        path = os.path.join(CACHE, 'inventory-%s.yml' % name)
        with open(path, 'w') as f:
            yaml.safe_dump(inv, f)
        return path

    def stop(self, names=None):
        for name in list(names or self.names):
            run(['docker', 'rm', '-f', name], check=False)
            if name in self.names:
                self.names.remove(name)

    def cleanup(self):
        self.stop()
        # Fails (harmlessly) while another bench run still has containers on it.
        run(['docker', 'network', 'rm', NETWORK], check=False)


# ----------------------------------------------------------------------------- playbook runs

def handler_names():
    names = set()
    for role in os.listdir(os.path.join(ROOT, 'roles')):
        path = os.path.join(ROOT, 'roles', role, 'handlers', 'main.yml')
        if os.path.exists(path):
            with open(path) as f:
                for handler in yaml.safe_load(f) or []:
                    names.add(handler['name'])
    return names


HANDLERS = handler_names()


class PlaybookFailed(SystemExit):
    """A playbook or ad hoc run that failed; `failures` names the failed tasks and their messages."""

    def __init__(self, what, failures, output):
        SystemExit.__init__(self, '%s failed: %s' % (what, '; '.join(failures) or output[-1500:]))
        self.failures = failures
        self.output = output


def failed_tasks(result):
    """'task: message' for every failed or unreachable host result of a json callback result."""
    out = []
    for p in (result or {}).get('plays', []):
        for t in p['tasks']:
            for host, r in t['hosts'].items():
                if r.get('failed') or r.get('unreachable'):
                    out.append('%s (%s): %s' % (t['task']['name'], host, str(r.get('msg', ''))[:300]))
    return out


def ansible_run(cmd, forks=1, env_extra=None):
    """Run ansible or ansible-playbook with the json callback; return (wall seconds, parsed result or None, process)."""
    env = dict(os.environ)
    env.update({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json', 'ANSIBLE_LOAD_CALLBACK_PLUGINS': 'True',
                'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
                'ANSIBLE_FORKS': str(forks), 'ANSIBLE_HOST_KEY_CHECKING': 'False'})
    env.update(env_extra or {})
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    return wall, result, proc


def warnings_of(stderr):
    return sorted(set(line.strip() for line in stderr.splitlines() if line.startswith(('[WARNING]', '[DEPRECATION WARNING]'))))


def playbook(inventory, path, forks=1, env_extra=None, tag='', extra_args=()):
    """Run a playbook; return wall seconds and per-run figures from the json callback.

    env_extra: more environment (e.g. the Mitogen strategy); tag: suffix of the saved json result.
    """
    wall, result, proc = ansible_run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, path] + list(extra_args),
                                     forks, env_extra)
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise PlaybookFailed('playbook %s%s' % (os.path.basename(path), ' (%s)' % tag if tag else ''),
                             failed_tasks(result), proc.stdout[-3000:] + proc.stderr[-3000:])
    with open(os.path.join(CACHE, 'last-%s%s.json' % (os.path.basename(path), '-' + tag if tag else '')), 'w') as f:
        json.dump(result, f)
    stats = result['stats']
    handlers = sorted(set(t['task']['name'] for p in result['plays'] for t in p['tasks']
                          if t['task']['name'] in HANDLERS and any(not h.get('skipped') for h in t['hosts'].values())))
    changed_tasks = sorted(set(t['task']['name'] for p in result['plays'] for t in p['tasks']
                               if any(h.get('changed') for h in t['hosts'].values())))
    host = sorted(stats)[0]
    return {
        'seconds': round(wall, 2),
        'tasks': stats[host]['ok'],
        'skipped': stats[host]['skipped'],
        'changed': sum(s['changed'] for s in stats.values()),
        'changed_tasks': changed_tasks,
        'handlers': handlers,
        'hosts': len(stats),
        'failures': sum(st['failures'] + st['unreachable'] for st in stats.values()),
        'modules_run': sorted(set(h['action'] for p in result['plays'] for t in p['tasks'] for h in t['hosts'].values()
                                  if h.get('action', '').startswith('estafeta.postfix.') and not h.get('skipped'))),
        'warnings': warnings_of(proc.stderr),
    }


def best_runs(fn, count):
    runs = [fn() for dummy in range(count)]
    best = min(runs, key=lambda r: r['seconds'])
    best = dict(best)
    best['all_seconds'] = [r['seconds'] for r in runs]
    best['changed'] = max(r['changed'] for r in runs)
    best['handlers'] = sorted(set(h for r in runs for h in r['handlers']))
    best['changed_tasks'] = sorted(set(h for r in runs for h in r['changed_tasks']))
    best['failures'] = max(r.get('failures', 0) for r in runs)
    return best


def manual_packages(name):
    return set(run(['docker', 'exec', name, 'apt-mark', 'showmanual']).stdout.split())


def apt_by_hand(fleet, packages, name):
    """A fresh host, the same Debian packages installed by hand: the first-converge yardstick."""
    fleet.start([name])
    try:
        start = time.monotonic()
        run(['docker', 'exec', '-e', 'DEBIAN_FRONTEND=noninteractive', name, 'sh', '-c',
             'apt-get update -q && apt-get install -y -q ' + ' '.join(sorted(packages))])
        return round(time.monotonic() - start, 2)
    finally:
        fleet.stop([name])


def bench_workload(fleet, label, play, group_vars, reps, drift_play=None):
    """Fresh converge, idempotent re-runs and the floor, a full converge of the configuration and a drift repair, on one host."""
    name = 'bench-%s' % label
    hosts = fleet.start([name])
    base_packages = manual_packages(name)
    inv = fleet.inventory(hosts, group_vars, label)
    try:
        log('%s: first converge' % label)
        converge = playbook(inv, play)
        packages = manual_packages(name) - base_packages
        version = run(['docker', 'exec', name, 'postconf', '-h', 'mail_version'], check=False).stdout.strip()
        floors, reruns = [], []
        for i in range(reps):
            log('%s: re-run %d and floor %d' % (label, i + 1, i + 1))
            reruns.append(playbook(inv, play))
            floors.append(playbook(inv, os.path.join(HERE, 'playbooks', 'floor.yml')))
        # A full converge of the configuration: Debian's configuration back, the packages left in place.
        log('%s: full converge of the configuration (after bench/playbooks/reset.yml)' % label)
        playbook(inv, os.path.join(HERE, 'playbooks', 'reset.yml'))
        full = playbook(inv, play, tag='full')
        playbook(inv, play, tag='after-full')
        drift = None
        if drift_play:
            log('%s: hand edits, then the run that repairs them' % label)
            playbook(inv, drift_play)
            drift = playbook(inv, play, tag='drift')
            drift['after'] = playbook(inv, play, tag='after-drift')
    finally:
        fleet.stop([name])
    log('%s: the same packages by hand' % label)
    by_hand = apt_by_hand(fleet, packages, name + '-apt')
    rerun = best_runs(lambda: reruns.pop(0), reps)
    floor = best_runs(lambda: floors.pop(0), reps)
    return {
        'converge': converge,
        'rerun': rerun,
        'floor': floor,
        'full_configuration': full,
        'drift_repair': drift,
        'rerun_over_floor': round(rerun['seconds'] / floor['seconds'], 2),
        'packages': sorted(packages),
        'postfix_version': version,
        'apt_by_hand_seconds': by_hand,
        'converge_over_apt_by_hand': round(converge['seconds'] / by_hand, 2),
    }


# ----------------------------------------------------------------------------- Mitogen

MITOGEN_STRATEGY = 'mitogen_linear'

# Our modules that the comparable workload does not run, ad hoc on the converged hosts after the
# timed runs: read-only, or in check mode (nothing written).
MODULE_CHECKS = (
    ('postfix_info', 'estafeta.postfix.postfix_info', {}, False),
    ('postqueue list', 'estafeta.postfix.postqueue', {'action': 'list'}, False),
    ('master_service in check mode', 'estafeta.postfix.master_service',
     {'name': 'benchcheck', 'type': 'unix', 'unpriv': 'n', 'chroot': 'n', 'command': 'pipe',
      'args': ['flags=F', 'user=nobody', 'argv=/bin/true']}, True),
)


def collection_snapshot():
    """A copy of the collection (galaxy.yml, meta, plugins, roles) under .cache/bench, and the collections path to it.

    Both strategies converge this copy, so that edits to the working tree during the section cannot make
    them run different code.
    """
    top = os.path.join(CACHE, 'mitogen-collection')
    dest = os.path.join(top, 'ansible_collections', 'estafeta', 'postfix')
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(dest)
    shutil.copy2(os.path.join(ROOT, 'galaxy.yml'), dest)
    for sub in ('meta', 'plugins', 'roles'):
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(dest, sub), ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    site = [p for p in sys.path if p.endswith('site-packages') and os.path.isdir(os.path.join(p, 'ansible_collections'))]
    return os.pathsep.join([top] + site)


def mitogen_environment():
    """Mitogen's version and the environment that selects its strategy; SystemExit when it is not installed."""
    spec = importlib.util.find_spec('ansible_mitogen')
    if spec is None:
        raise SystemExit('Mitogen is not installed: %s -m pip install -r bench/requirements.txt (make bench does it)' % sys.executable)
    return importlib.metadata.version('mitogen'), {
        'ANSIBLE_STRATEGY_PLUGINS': os.path.join(os.path.dirname(spec.origin), 'plugins', 'strategy'),
        'ANSIBLE_STRATEGY': MITOGEN_STRATEGY,
    }


def adhoc(inventory, module, module_args, env_extra=None, check=False):
    """One module ad hoc against the inventory's host; its result without the invocation and internal keys."""
    cmd = [os.path.join(BIN, 'ansible'), '-i', inventory, 'mailservers', '-m', module]
    if module_args:
        cmd += ['-a', json.dumps(module_args)]
    if check:
        cmd += ['--check', '--diff']
    dummy, result, proc = ansible_run(cmd, env_extra=env_extra)
    if proc.returncode != 0 or result is None:
        raise PlaybookFailed('ansible -m %s' % module, failed_tasks(result), proc.stdout[-3000:] + proc.stderr[-3000:])
    host_result = list(result['plays'][0]['tasks'][0]['hosts'].values())[0]
    return dict((k, v) for k, v in host_result.items() if k != 'invocation' and not k.startswith('_'))


def config_files(name):
    """sha256 of every file under /etc/postfix (but the binary databases of indexed tables), /etc/mailname and /etc/aliases.

    main.cf counts as its sorted lines: `postconf -e` appends new parameters in an order that changes from
    one run to the next (Postfix's hash table order), with any strategy.
    """
    out = run(['docker', 'exec', name, 'sh', '-c',
               "find /etc/postfix /etc/mailname /etc/aliases -type f ! -name '*.db' ! -name '*.lmdb' ! -name '*.cdb'"
               " ! -path /etc/postfix/main.cf -print0 | xargs -0 sha256sum"
               " && echo \"$(sort /etc/postfix/main.cf | sha256sum | cut -d' ' -f1)  /etc/postfix/main.cf (sorted lines)\""]).stdout
    files = {}
    for line in out.splitlines():
        digest, path = line.split(None, 1)
        files[path] = digest
    return files


def bench_mitogen(fleet, play, group_vars, reps):
    """The comparable workload and the floor with Mitogen and with the default strategy, each on its own fresh host.

    Both run the same copy of the collection (collection_snapshot). Mitogen converges first, so that a
    package mirror warmed by the first converge favours the default strategy, not Mitogen; the re-runs and
    floors alternate the order. A run that fails with Mitogen is recorded (the section then says it did not
    work) instead of ending the benchmark.
    """
    version, mitogen_env = mitogen_environment()
    code = {'ANSIBLE_COLLECTIONS_PATH': collection_snapshot()}
    mitogen_env.update(code)
    floor_play = os.path.join(HERE, 'playbooks', 'floor.yml')
    setups = (('mitogen', 'bench-mitogen-linear', mitogen_env), ('default', 'bench-mitogen-default', code))
    load_start = [round(x, 2) for x in os.getloadavg()]
    hosts = fleet.start([name for dummy, name, dummy2 in setups])
    inv = dict((label, fleet.inventory({name: hosts[name]}, group_vars, name)) for label, name, dummy in setups)
    runs = dict((label, {'reruns': [], 'floors': [], 'checks': {}}) for label, dummy, dummy2 in setups)
    broken = {}

    def measure(label, what, fn, *args, **kwargs):
        if label in broken:
            return None
        try:
            return fn(*args, **kwargs)
        except PlaybookFailed as e:
            if label != 'mitogen':
                raise
            broken[label] = '%s: %s' % (what, '; '.join(e.failures) or e.output[-1500:])
            log('mitogen: %s FAILED with Mitogen: %s' % (what, broken[label]))
            return None

    try:
        for label, name, extra in setups:
            log('mitogen: first converge, %s strategy' % label)
            runs[label]['converge'] = measure(label, 'first converge', playbook, inv[label], play, env_extra=extra, tag=name)
        for i in range(reps):
            for label, name, extra in (setups if i % 2 == 0 else setups[::-1]):
                log('mitogen: re-run %d and floor %d, %s strategy' % (i + 1, i + 1, label))
                for key, path, what in (('reruns', play, 're-run'), ('floors', floor_play, 'floor')):
                    r = measure(label, '%s %d' % (what, i + 1), playbook, inv[label], path, env_extra=extra, tag=name)
                    if r:
                        runs[label][key].append(r)
        for label, name, extra in setups:
            log('mitogen: our other modules ad hoc, %s strategy' % label)
            for check_name, module, module_args, check_mode in MODULE_CHECKS:
                runs[label]['checks'][check_name] = measure(label, 'ansible -m %s' % module, adhoc, inv[label], module,
                                                            module_args, env_extra=extra, check=check_mode)
            runs[label]['files'] = config_files(name)
            runs[label]['process'] = measure(label, 'ansible -m ansible.builtin.command', adhoc, inv[label], 'ansible.builtin.command',
                                             {'argv': ['sh', '-c', "tr '\\0' ' ' < /proc/$PPID/cmdline"]}, env_extra=extra)
    finally:
        fleet.stop([name for dummy, name, dummy2 in setups])
        shutil.rmtree(os.path.join(CACHE, 'mitogen-collection'), ignore_errors=True)

    out = {'mitogen_version': version, 'ansible_core_version': importlib.metadata.version('ansible-core'),
           'strategy': MITOGEN_STRATEGY, 'error': broken.get('mitogen'),
           'load_average_at_start': load_start, 'load_average_at_end': [round(x, 2) for x in os.getloadavg()]}
    for label, dummy, dummy2 in setups:
        r = runs[label]
        w = {'converge': r.get('converge'),
             'rerun': best_runs(iter(r['reruns']).__next__, len(r['reruns'])) if r['reruns'] else None,
             'floor': best_runs(iter(r['floors']).__next__, len(r['floors'])) if r['floors'] else None}
        if w['rerun'] and w['floor']:
            w['rerun_over_floor'] = round(w['rerun']['seconds'] / w['floor']['seconds'], 2)
        out[label] = w
    m, d = out['mitogen'], out['default']
    out['speedup'] = dict((key, round(d[key]['seconds'] / m[key]['seconds'], 2) if m[key] else None)
                          for key in ('converge', 'rerun', 'floor'))
    # The same from the medians of the repetitions: on a busy machine, a second view of the same runs.
    out['speedup_median'] = dict((key, round(statistics.median(d[key]['all_seconds']) / statistics.median(m[key]['all_seconds']), 2)
                                  if m[key] else None) for key in ('rerun', 'floor'))
    mruns = [x for x in (m['converge'], m['rerun'], m['floor']) if x]
    out['modules_run'] = sorted(set(x for r in mruns for x in r['modules_run']) |
                                set(module for name, module, dummy, dummy2 in MODULE_CHECKS if runs['mitogen']['checks'].get(name)))
    out['warnings_with_mitogen_only'] = sorted(set(x for r in mruns for x in r['warnings'] if 'can be disabled by setting' not in x) -
                                               set(x for r in (d['converge'], d['rerun'], d['floor']) for x in r['warnings']))

    checks = []

    def check(name, ok, detail):
        checks.append({'check': name, 'ok': bool(ok), 'detail': detail})

    check('every run with Mitogen ends without a failed task or unreachable host',
          not broken and all(r['failures'] == 0 for r in mruns), broken.get('mitogen') or 'failures %d' % sum(r['failures'] for r in mruns))
    if runs['mitogen'].get('process'):
        names = dict((label, re.sub(r'\(mitogen:[^)]*\)', '(mitogen:...)', runs[label]['process'].get('stdout', '').strip()))
                     for label in ('mitogen', 'default'))
        check("modules run in Mitogen's interpreter on the host, not in a new one",
              '(mitogen:' in names['mitogen'] and '(mitogen:' not in names['default'],
              'parent process of a command task: %s with Mitogen, %s without' % (names['mitogen'], names['default']))
    if m['converge']:
        check('first converge: the same changed tasks as the default strategy',
              m['converge']['changed'] == d['converge']['changed'] and m['converge']['changed_tasks'] == d['converge']['changed_tasks'],
              'changed %d with Mitogen, %d without; changed tasks that differ: %s' % (
                  m['converge']['changed'], d['converge']['changed'],
                  ', '.join(sorted(set(m['converge']['changed_tasks']) ^ set(d['converge']['changed_tasks']))) or 'none'))
    if m['rerun']:
        check('zero changed and no handler on every re-run with Mitogen', m['rerun']['changed'] == 0 and not m['rerun']['handlers'],
              'changed %d, handlers %s' % (m['rerun']['changed'], ', '.join(m['rerun']['handlers']) or 'none'))
    if 'files' in runs['mitogen']:
        differ = sorted(p for p in set(runs['mitogen']['files']) | set(runs['default']['files'])
                        if runs['mitogen']['files'].get(p) != runs['default']['files'].get(p))
        check('the same files under /etc/postfix, /etc/mailname and /etc/aliases as the default strategy', not differ,
              '%d files compared; differ: %s' % (len(runs['default']['files']), ', '.join(differ) or 'none'))
    for check_name, dummy, dummy2, dummy3 in MODULE_CHECKS:
        got = runs['mitogen']['checks'].get(check_name)
        if got is None:
            continue
        want = runs['default']['checks'][check_name]
        check('%s: the same result as with the default strategy' % check_name, got == want,
              'changed %s; %s' % (got.get('changed'), 'identical' if got == want else 'differ in: ' + ', '.join(
                  sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k)))))
    out['checks'] = checks
    out['worked'] = not broken and all(c['ok'] for c in checks)
    return out


def bench_peer(fleet, role_dir, reps):
    """The comparable workload's first converge with another Postfix role, on fresh hosts of the same image.

    ``role_dir`` is a checkout of the peer role (bench/vars/peer-oefenweb.yml holds the workload in its
    variables); it is run, never copied into this repository. Each repetition uses a fresh host; the
    converge of our comparable workload is repeated as often, alternating, so both see the same machine.
    """
    with open(os.path.join(HERE, 'vars', 'peer-oefenweb.yml')) as f:
        peer_vars = yaml.safe_load(f)
    with open(os.path.join(HERE, 'vars', 'comparable.yml')) as f:
        ours_vars = yaml.safe_load(f)
    # The peer's playbook names its role, so it is written for this run (a role named by a variable fails
    # ansible-lint's syntax check).
    peer_play = os.path.join(CACHE, 'peer.yml')
    with open(peer_play, 'w') as f:
        yaml.safe_dump([{'name': 'Comparable workload, peer role', 'hosts': 'mailservers', 'gather_facts': True,
                         'roles': [{'role': os.path.basename(os.path.abspath(role_dir))}]}], f)
    env = {'ANSIBLE_ROLES_PATH': os.path.dirname(os.path.abspath(role_dir))}
    runs = {'peer': [], 'ours': []}
    for i in range(reps):
        for who in ('peer', 'ours') if i % 2 == 0 else ('ours', 'peer'):
            name = 'bench-first-%s-%d' % (who, i)
            hosts = fleet.start([name])
            try:
                if who == 'peer':
                    inv = fleet.inventory(hosts, peer_vars, name)
                    log('peer: first converge %d with %s' % (i + 1, role_dir))
                    runs['peer'].append(playbook(inv, peer_play, env_extra=env, tag='peer'))
                else:
                    inv = fleet.inventory(hosts, ours_vars, name)
                    log('peer: our first converge %d' % (i + 1))
                    runs['ours'].append(playbook(inv, os.path.join(HERE, 'playbooks', 'comparable.yml'), tag='first'))
            finally:
                fleet.stop([name])
    peer = best_runs(lambda: runs['peer'].pop(0), reps)
    ours = best_runs(lambda: runs['ours'].pop(0), reps)
    revision = run(['git', '-C', role_dir, 'rev-parse', '--short', 'HEAD'], check=False).stdout.strip()
    return {'role': 'Oefenweb/ansible-postfix' + (' at %s' % revision if revision else ''),
            'peer_seconds': peer['seconds'], 'peer_all_seconds': peer['all_seconds'],
            'ours_seconds': ours['seconds'], 'ours_all_seconds': ours['all_seconds'],
            'ours_over_peer': round(ours['seconds'] / peer['seconds'], 2)}


def bench_fleet(fleet, sizes, comparable_vars, reps=3):
    play = os.path.join(HERE, 'playbooks', 'comparable.yml')
    points = []
    for n in sizes:
        names = ['bench-fleet-%02d' % i for i in range(1, n + 1)]
        log('fleet: %d hosts' % n)
        hosts = fleet.start(names)
        try:
            inv = fleet.inventory(hosts, comparable_vars, 'fleet-%d' % n)
            converge = playbook(inv, play, forks=n)
            # Re-runs alternate with the floor on the same N hosts (what facts and one command cost at
            # this fleet size); the fastest of each counts, as for the single-host figures.
            reruns, floors = [], []
            for dummy in range(reps):
                reruns.append(playbook(inv, play, forks=n))
                floors.append(playbook(inv, os.path.join(HERE, 'playbooks', 'floor.yml'), forks=n))
        finally:
            fleet.stop(names)
        rerun = best_runs(lambda: reruns.pop(0), reps)
        floor = best_runs(lambda: floors.pop(0), reps)
        points.append({'hosts': n, 'converge_seconds': converge['seconds'], 'rerun_seconds': rerun['seconds'],
                       'rerun_all_seconds': rerun['all_seconds'], 'rerun_changed': rerun['changed'],
                       'rerun_handlers': rerun['handlers'], 'floor_seconds': floor['seconds'],
                       'floor_all_seconds': floor['all_seconds']})
    base = points[0]
    for p in points:
        p['rerun_over_single'] = round(p['rerun_seconds'] / base['rerun_seconds'], 2)
        p['converge_over_single'] = round(p['converge_seconds'] / base['converge_seconds'], 2)
        # How the floor itself grows with the fleet: no playbook that gathers facts scales better.
        p['floor_over_single'] = round(p['floor_seconds'] / base['floor_seconds'], 2)
    xs = [p['hosts'] for p in points]

    def slope(key):
        if len(xs) < 2:
            return None
        ys = [p[key] for p in points]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs), 2)

    return {'points': points, 'marginal_rerun_seconds_per_host': slope('rerun_seconds'),
            'marginal_converge_seconds_per_host': slope('converge_seconds')}


def plot_fleet(fleet_result, path):
    try:
        matplotlib = importlib.import_module('matplotlib')
        matplotlib.use('Agg')
        plt = importlib.import_module('matplotlib.pyplot')
    except ImportError:
        log('matplotlib missing: no plot')
        return False
    pts = fleet_result['points']
    xs = [p['hosts'] for p in pts]
    # Two panels: the first converge takes minutes, the re-run seconds.
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4))
    left.plot(xs, [p['converge_seconds'] for p in pts], 'o-', label='first converge (fresh hosts)')
    left.set_title('first converge')
    right.plot(xs, [p['rerun_seconds'] for p in pts], 's-', color='tab:orange', label='idempotent re-run')
    if all(p.get('floor_seconds') for p in pts):
        right.plot(xs, [p['floor_seconds'] for p in pts], '^--', color='tab:green', label='floor (facts + one command)')
    right.plot(xs, [4 * pts[0]['rerun_seconds']] * len(xs), ':', color='grey', label='target: 4x single-host re-run')
    right.set_title('idempotent re-run')
    for ax in (left, right):
        ax.set_xlabel('hosts (forks = hosts), over SSH')
        ax.set_ylabel('wall time (s)')
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle('estafeta.postfix: comparable workload against N hosts')
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


# ----------------------------------------------------------------------------- report

def verdict(ok):
    return 'met' if ok else 'NOT met'


def targets(results):
    out = []
    for key, limit in (('comparable', 1.5), ('complete', 2.0)):
        w = results.get(key)
        if not w:
            continue
        out.append(('%s: idempotent re-run <= %gx the floor' % (key, limit), '%.2fx (%.1f s vs %.1f s)' % (
            w['rerun_over_floor'], w['rerun']['seconds'], w['floor']['seconds']), w['rerun_over_floor'] <= limit))
        out.append(('%s: zero changed and no handler on re-run' % key, 'changed %d, handlers %s' % (
            w['rerun']['changed'], ', '.join(w['rerun']['handlers']) or 'none'),
            w['rerun']['changed'] == 0 and not w['rerun']['handlers']))
        d, full = w.get('drift_repair'), w.get('full_configuration')
        if d and full:
            out.append(('%s: a re-run after hand edits repairs them (changed, then zero changed) in at most the time of '
                        'a full converge of the configuration' % key, '%.1f s vs %.1f s; changed %d, then %d' % (
                            d['seconds'], full['seconds'], d['changed'], d['after']['changed']),
                        d['seconds'] <= full['seconds'] and d['changed'] > 0 and d['after']['changed'] == 0))
    pe = results.get('peer')
    if pe:
        out.append(('comparable: first converge no slower than %s' % pe['role'], '%.2fx (%.1f s vs %.1f s)' % (
            pe['ours_over_peer'], pe['ours_seconds'], pe['peer_seconds']), pe['ours_over_peer'] <= 1.0))
    m = results.get('modules')
    if m:
        p = m['postconf_set_vs_lineinfile']
        out.append(('200 parameters: postconf_set >= 20x faster than a lineinfile loop', '%.1fx (%.2f s vs %.1f s)' % (
            p['speedup'], p['postconf_set_seconds'], p['lineinfile_loop_seconds']), p['speedup'] >= 20))
        t = m['postmap_file_10000']
        out.append(('10,000-entry table: no-op re-run < 1 s of module time', '%.3f s module time (task %.2f s), changed %s' % (
            t['noop_module_seconds'], t['noop_seconds'], t['noop_changed']), t['noop_module_seconds'] < 1 and not t['noop_changed']))
    f = results.get('fleet')
    if f:
        ratios = ['N=%d: %.2fx' % (p['hosts'], p['rerun_seconds'] / p['floor_seconds']) for p in f['points'] if p.get('floor_seconds')]
        out.append(('fleet: re-run <= 1.2x the floor at every N', ', '.join(ratios),
                    all(p['rerun_seconds'] <= 1.2 * p['floor_seconds'] for p in f['points'] if p.get('floor_seconds'))))
        out.append(('fleet: zero changed on every re-run', ', '.join('N=%d: %d' % (p['hosts'], p['rerun_changed']) for p in f['points']),
                    all(p['rerun_changed'] == 0 and not p['rerun_handlers'] for p in f['points'])))
    return out


def earlier_runs(results):
    """The runs whose sections --merge kept, newest first (older results have one `earlier_run`)."""
    if 'earlier_runs' in results:
        return results['earlier_runs']
    return [results['earlier_run']] if results.get('earlier_run') else []


def markdown(results):
    lines = ['# Performance', '',
             '<!-- Generated by `make bench` (bench/bench.py): do not edit by hand. -->', '',
             'Measured %s on %s. %s' % (results['measured'], results['machine'], results.get('note', '')), '']
    runs = [results] + earlier_runs(results)
    for r in runs:
        lines.append('- Sections %s: run started %s, took %s s, load average %s at start and %s at end.%s' % (
            ', '.join(r.get('sections') or []), r.get('measured'), r.get('bench_seconds'),
            r.get('load_average_at_start'), r.get('load_average_at_end'),
            ' ' + r['note'] if r is not results and r.get('note') else ''))
    lines += ['',
              'All playbook times are wall-clock times of `ansible-playbook` (start-up included) against',
              'systemd containers reached over SSH (pipelining and ControlPersist on), as a real fleet is',
              'reached. Ratios compare figures of the same run. Re-run and floor figures are the fastest of',
              'the repetitions listed in brackets (each re-run was followed at once by a floor run on the same',
              'host); on a loaded machine the fastest run is the one least disturbed by other work.', '',
              '## Targets', '', '| Target | Measured | Verdict |', '|---|---|---|']
    for name, measured, ok in targets(results):
        lines.append('| %s | %s | %s |' % (name, measured, verdict(ok)))
    lines += ['', '## Playbooks', '',
              '| Workload | Fresh converge (s) | Re-run (s) | Floor (s) | Re-run / floor | Tasks run (re-run) '
              '| Changed (converge / re-run) | Full converge of the configuration (s) | Drift repair (s) | Same packages by hand (s) |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for key, title in (('comparable', 'Comparable workload'), ('complete', 'Complete server')):
        w = results.get(key)
        if not w:
            continue
        full, drift = w.get('full_configuration'), w.get('drift_repair')
        lines.append('| %s | %.1f | %.1f (%s) | %.1f (%s) | %.2fx | %d (%d skipped) | %d / %d | %s | %s | %.1f |' % (
            title, w['converge']['seconds'], w['rerun']['seconds'], ', '.join('%.1f' % s for s in w['rerun']['all_seconds']),
            w['floor']['seconds'], ', '.join('%.1f' % s for s in w['floor']['all_seconds']), w['rerun_over_floor'],
            w['rerun']['tasks'], w['rerun']['skipped'], w['converge']['changed'], w['rerun']['changed'],
            '%.1f' % full['seconds'] if full else '-',
            '%.1f (changed %d)' % (drift['seconds'], drift['changed']) if drift else '-', w['apt_by_hand_seconds']))
    versions = sorted(set(results[k].get('postfix_version') or '?' for k in ('comparable', 'complete') if results.get(k)))
    lines += ['',
              '- Postfix on the targets: %s.' % ', '.join(versions),
              '- Floor: `bench/playbooks/floor.yml` (gather facts, `postconf -n` once) on the same host, right after each re-run.',
              '- Comparable workload: `bench/playbooks/comparable.yml` with `bench/vars/comparable.yml` (smarthost',
              '  `[smtp.example.com]:587` with SASL and `smtp_tls_security_level = encrypt`, three mynetworks, three virtual',
              '  aliases, three transport routes, two header checks; roles base, smarthost, virtual, transport, content_filter).',
              '- Complete server: `playbooks/complete_mailserver.yml` with `playbooks/inventories/demo/group_vars/mailservers.yml`',
              '  (as `make demo` converges it: amavisd-new, postgrey, TLS, anti-relay, virtual aliases).',
              '- Same packages by hand: a fresh host, `apt-get update && apt-get install -y` of the packages the converge',
              '  marked as manually installed (listed in performance.json).',
              '- Full converge of the configuration: `bench/playbooks/reset.yml` puts back Debian\'s configuration (packages',
              '  left in place), then the workload runs: every role runs every task and changes what it manages.',
              '- Drift repair (comparable workload): after `bench/playbooks/drift.yml` edited by hand one object of each',
              '  role, the run that repairs them all; the run after it changed nothing.']
    pe = results.get('peer')
    if pe:
        lines += ['', '## First converge against another role', '',
                  'The comparable workload on fresh hosts of the same image, with %s (its variables in' % pe['role'],
                  '`bench/vars/peer-oefenweb.yml`; the role is run from a checkout given with `--peer-role`, not part of',
                  'this repository) and with this collection, alternating, fastest of each.', '',
                  '| Role | First converge (s) |', '|---|---|',
                  '| %s | %.1f (%s) |' % (pe['role'], pe['peer_seconds'], ', '.join('%.1f' % x for x in pe['peer_all_seconds'])),
                  '| estafeta.postfix | %.1f (%s) |' % (pe['ours_seconds'], ', '.join('%.1f' % x for x in pe['ours_all_seconds']))]
    m = results.get('modules')
    if m:
        p, t = m['postconf_set_vs_lineinfile'], m['postmap_file_10000']
        lines += ['', '## Modules', '',
                  'Connection local against scratch configuration directories with the real Postfix binaries',
                  '(`bench/module_bench.py`). Task times come from the ansible.posix.json callback; module time is',
                  "the module's `main()` timed in-process with the same arguments (no Ansible transport or",
                  'argument templating).', '',
                  '| Case | Seconds | Changed |', '|---|---|---|',
                  '| %d parameters, one postconf_set task | %.2f | %s |' % (p['parameters'], p['postconf_set_seconds'], p['first_run_changed']),
                  '| same, re-run | %.2f | %s |' % (p['postconf_set_rerun_seconds'], p['postconf_set_rerun_changed']),
                  '| %d parameters, lineinfile loop | %.2f | - |' % (p['parameters'], p['lineinfile_loop_seconds']),
                  '| %d-entry table, first build (task) | %.2f | %s |' % (t['entries'], t['build_seconds'], t['build_changed']),
                  '| same, no-op re-run (task) | %.2f | %s |' % (t['noop_seconds'], t['noop_changed']),
                  '| same, no-op re-run (module time) | %.3f | %s |' % (t['noop_module_seconds'], t['noop_module_changed']),
                  '| same, one entry changed (task) | %.2f | %s |' % (t['one_change_seconds'], t['one_change_changed']),
                  '', 'Both ways give the same `postconf -n`: %s.' % p['same_resulting_configuration']]
    f = results.get('fleet')
    if f:
        lines += ['', '## Fleet scaling', '',
                  'The comparable workload against N fresh hosts at once, `forks = N`.', '',
                  '| Hosts | First converge (s) | Re-run (s) | Re-run / single host | Floor at N hosts (s) | '
                  'Floor / single-host floor | Re-run / floor | Changed on re-run |', '|---|---|---|---|---|---|---|---|']
        for pt in f['points']:
            floor = pt.get('floor_seconds')
            lines.append('| %d | %.1f | %.1f%s | %.2fx | %s | %s | %s | %d |' % (
                pt['hosts'], pt['converge_seconds'], pt['rerun_seconds'],
                ' (%s)' % ', '.join('%.1f' % x for x in pt['rerun_all_seconds']) if pt.get('rerun_all_seconds') else '',
                pt['rerun_over_single'],
                ('%.1f' % floor + (' (%s)' % ', '.join('%.1f' % x for x in pt['floor_all_seconds']) if pt.get('floor_all_seconds') else ''))
                if floor else '-',
                '%.2fx' % pt['floor_over_single'] if pt.get('floor_over_single') else '-',
                '%.2fx' % (pt['rerun_seconds'] / floor) if floor else '-', pt['rerun_changed']))
        lines += ['', 'Marginal cost per extra host (least-squares slope): re-run %s s, first converge %s s.' % (
            f['marginal_rerun_seconds_per_host'], f['marginal_converge_seconds_per_host']), '',
            '![Wall time against the number of hosts](images/fleet-scaling.png)']
    lines += mitogen_markdown(results.get('mitogen'))
    if results.get('limits'):
        lines += ['', '## What limits the figures (commentary)', '',
                  'Written by hand (`bench/limits.md`), not measured by `make bench`. Each item says when it was',
                  'written. A figure in bold is this page\'s own measurement, put in when the page is written; every',
                  'other figure in an item is an observation of that date, not measured again since.', '']
        lines += ['- *(commentary of %s)* %s' % (item['date'], render_limit(item['text'], results)) for item in results['limits']]
    return '\n'.join(lines) + '\n'


# A commentary item of bench/limits.md: "- (YYYY-MM-DD) text", text continued on indented lines.
LIMIT_ITEM = re.compile(r'^\((\d{4}-\d{2}-\d{2})\) (.+)$', re.S)
# A measured figure in a commentary item: {{ name }}, one of measured_figures().
PLACEHOLDER = re.compile(r'\{\{\s*([a-z_.]+)\s*\}\}')


def read_limits(path):
    """The commentary items of bench/limits.md: [{'date':, 'text':}]. Raises ValueError on an undated item."""
    items = []
    with open(path) as f:
        for line in f:
            if line.startswith('- '):
                items.append(line[2:].strip())
            elif line.startswith('  ') and items and line.strip():
                items[-1] += ' ' + line.strip()
    result = []
    for item in items:
        match = LIMIT_ITEM.match(item)
        if not match:
            raise ValueError('bench/limits.md: an item must start with the date it was written, as '
                             '"- (2026-11-25) ...": %s' % item[:80])
        result.append({'date': match.group(1), 'text': match.group(2)})
    return result


def measured_figures(results):
    """The figures a commentary item may quote from the measurements, by name."""
    figures = {}
    c = results.get('comparable')
    if c:
        figures['comparable.converge_s'] = '%.1f s' % c['converge']['seconds']
        figures['comparable.apt_by_hand_s'] = '%.1f s' % c['apt_by_hand_seconds']
        figures['comparable.rerun_over_floor'] = '%.2fx' % c['rerun_over_floor']
    f = results.get('fleet')
    points = [p for p in (f or {}).get('points') or [] if p.get('floor_seconds')]
    if points:
        largest = max(points, key=lambda p: p['hosts'])
        figures['fleet.largest'] = '%d' % largest['hosts']
        figures['fleet.floor_over_single_largest'] = '%.2f times' % largest['floor_over_single']
        ratios = [p['rerun_seconds'] / p['floor_seconds'] for p in points]
        figures['fleet.rerun_over_floor_range'] = '%.2fx to %.2fx' % (min(ratios), max(ratios))
    return figures


def render_limit(text, results):
    """A commentary item with its measured figures put in (bold); KeyError names one the results lack."""
    figures = measured_figures(results)
    return PLACEHOLDER.sub(lambda m: '**%s**' % figures[m.group(1)], text)


def mitogen_markdown(mg):
    if not mg:
        return []
    lines = ['', '## Mitogen', '',
             'The comparable workload and the floor with Mitogen for Ansible %s (strategy `%s`, ansible-core %s)' % (
                 mg['mitogen_version'], mg['strategy'], mg['ansible_core_version']),
             'on one fresh host, next to the default strategy (`linear`) on another fresh host, in the same run,',
             'both from the same copy of the collection (`--only mitogen --merge` measures this section alone).',
             'The Mitogen host converged first; the re-runs and floors alternated the order. Load average %s' % (
                 ', '.join('%.2f' % x for x in mg['load_average_at_start'])),
             'at the start of the section, %s at its end.' % ', '.join('%.2f' % x for x in mg['load_average_at_end']), '',
             'Worked with our modules: **%s**.' % ('yes' if mg['worked'] else 'no'), '']
    if mg.get('error'):
        lines += ['Failed with Mitogen: %s' % mg['error'], '']
    lines += ['| Strategy | Fresh converge (s) | Re-run (s) | Floor (s) | Re-run / floor | Changed (converge / re-run) |',
              '|---|---|---|---|---|---|']

    def cell(w, key):
        r = w.get(key)
        if not r:
            return '-'
        if 'all_seconds' in r:
            return '%.1f (%s)' % (r['seconds'], ', '.join('%.1f' % x for x in r['all_seconds']))
        return '%.1f' % r['seconds']

    for label, title in (('default', 'default (`linear`)'), ('mitogen', 'Mitogen (`%s`)' % mg['strategy'])):
        w = mg[label]
        lines.append('| %s | %s | %s | %s | %s | %s / %s |' % (
            title, cell(w, 'converge'), cell(w, 'rerun'), cell(w, 'floor'),
            '%.2fx' % w['rerun_over_floor'] if w.get('rerun_over_floor') else '-',
            w['converge']['changed'] if w.get('converge') else '-', w['rerun']['changed'] if w.get('rerun') else '-'))
    sp, med = mg['speedup'], mg.get('speedup_median') or {}
    lines.append('| speed-up with Mitogen (default time / Mitogen time) | %s | %s | %s | | |' % tuple(
        '%.2fx' % sp[k] if sp.get(k) else '-' for k in ('converge', 'rerun', 'floor')))
    lines.append('| the same from the medians of the repetitions | | %s | %s | | |' % tuple(
        '%.2fx' % med[k] if med.get(k) else '-' for k in ('rerun', 'floor')))
    lines += ['', '| Check | Result | Verdict |', '|---|---|---|']
    for c in mg['checks']:
        lines.append('| %s | %s | %s |' % (c['check'], c['detail'].replace('|', '/'), 'ok' if c['ok'] else 'FAILED'))
    lines += ['',
              '- Our modules run with Mitogen: %s' % (', '.join('`%s`' % x.split('.')[-1] for x in mg['modules_run']) or 'none'),
              '  (the comparable workload, then the others ad hoc on the converged host: read-only, or in check mode).',
              '- Files compared: everything under `/etc/postfix` but the binary databases of indexed tables (`postfix_info`',
              '  reports whether they are current), `/etc/mailname`, `/etc/aliases`; `main.cf` as its sorted lines, because',
              '  `postconf -e` appends new parameters in an order that changes from run to run, with either strategy.']
    for x in mg.get('warnings_with_mitogen_only') or []:
        lines.append('- Only with Mitogen, ansible-core warns: %s' % x)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', default='floor,comparable,complete,modules,fleet,mitogen')
    parser.add_argument('--peer-role', default=os.environ.get('BENCH_PEER_ROLE', ''),
                        help='a checkout of the Oefenweb postfix role: adds the first-converge comparison (section peer)')
    parser.add_argument('--fleet', default='1,4,8,16')
    parser.add_argument('--suite', default='bookworm')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--mitogen-reps', type=int, default=5, help='repetitions of each re-run and floor of the mitogen section')
    parser.add_argument('--note', default=os.environ.get('BENCH_NOTE', ''))
    parser.add_argument('--output', default=os.path.join(ROOT, 'docs'))
    parser.add_argument('--merge', action='store_true',
                        help='keep the sections of the existing performance.json that this run does not measure')
    parser.add_argument('--render', action='store_true', help='only write performance.md again from performance.json')
    args = parser.parse_args()
    only = set(args.only.split(','))
    started = time.monotonic()
    json_path = os.path.join(args.output, 'performance.json')
    if args.render:
        with open(json_path) as f:
            results = json.load(f)
        return report(results, args.output)

    with open(os.path.join(HERE, 'vars', 'comparable.yml')) as f:
        comparable_vars = yaml.safe_load(f)
    with open(os.path.join(ROOT, 'playbooks', 'inventories', 'demo', 'group_vars', 'mailservers.yml')) as f:
        complete_vars = yaml.safe_load(f)

    results = {
        'measured': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'machine': '%d cores, %s GB RAM, Debian %s targets' % (
            os.cpu_count(), round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30), args.suite),
        'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
        'note': args.note,
    }
    fleet = Fleet(args.suite)
    try:
        if 'mitogen' in only:
            mitogen_environment()  # before any container starts: fails at once when Mitogen is missing
        if only & {'floor', 'comparable', 'complete', 'fleet', 'mitogen'} or args.peer_role:
            fleet.prepare()
        if only & {'floor', 'comparable'}:
            results['comparable'] = bench_workload(fleet, 'comparable', os.path.join(HERE, 'playbooks', 'comparable.yml'),
                                                   comparable_vars, args.reps, os.path.join(HERE, 'playbooks', 'drift.yml'))
        if args.peer_role:
            only.add('peer')
            results['peer'] = bench_peer(fleet, args.peer_role, args.reps)
        if 'mitogen' in only:
            results['mitogen'] = bench_mitogen(fleet, os.path.join(HERE, 'playbooks', 'comparable.yml'), comparable_vars, args.mitogen_reps)
        if 'complete' in only:
            results['complete'] = bench_workload(fleet, 'complete', os.path.join(ROOT, 'playbooks', 'complete_mailserver.yml'),
                                                 complete_vars, max(2, args.reps - 1))
        if 'modules' in only:
            log('modules')
            results['modules'] = module_bench.run_all()
        if 'fleet' in only:
            sizes = [int(x) for x in args.fleet.split(',')]
            results['fleet'] = bench_fleet(fleet, sizes, comparable_vars, args.reps)
            plot_fleet(results['fleet'], os.path.join(args.output, 'images', 'fleet-scaling.png'))
    finally:
        fleet.cleanup()
    results['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    results['bench_seconds'] = round(time.monotonic() - started, 1)
    results['sections'] = sorted(only)
    if args.merge and os.path.exists(json_path):
        with open(json_path) as f:
            previous = json.load(f)
        for key in ('comparable', 'complete', 'modules', 'fleet', 'mitogen', 'peer'):
            if key in previous and key not in results:
                results[key] = previous[key]
        keep = ('measured', 'sections', 'bench_seconds', 'load_average_at_start', 'load_average_at_end', 'note')
        # A run stays listed while a section it measured is shown and was not measured again since.
        covered = set('comparable' if x == 'floor' else x for x in only)
        results['earlier_runs'] = []
        for r in [dict((k, previous.get(k)) for k in keep)] + earlier_runs(previous):
            sections = set('comparable' if x == 'floor' else x for x in r.get('sections') or [])
            if sections - covered:
                results['earlier_runs'].append(r)
            covered |= sections
    return report(results, args.output)


def prepare_results(results):
    """Derived figures, the targets and the commentary of bench/limits.md, before the page is written."""
    for key in ('comparable', 'complete'):
        w = results.get(key)
        if w:  # fastest of the repetitions (also for figures written by older versions of this script)
            w['rerun']['seconds'] = min(w['rerun']['all_seconds'])
            w['floor']['seconds'] = min(w['floor']['all_seconds'])
            w['rerun_over_floor'] = round(w['rerun']['seconds'] / w['floor']['seconds'], 2)
    results['targets'] = [{'target': n, 'measured': m, 'met': ok} for n, m, ok in targets(results)]
    limits_path = os.path.join(HERE, 'limits.md')
    if os.path.exists(limits_path):
        results['limits'] = read_limits(limits_path)
        for item in results['limits']:
            render_limit(item['text'], results)  # every quoted figure must be measured
    return results


def report(results, output):
    prepare_results(results)
    with open(os.path.join(output, 'performance.json'), 'w') as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write('\n')
    with open(os.path.join(output, 'performance.md'), 'w') as f:
        f.write(markdown(results))
    for name, measured, ok in targets(results):
        print('%-70s %-45s %s' % (name, measured, verdict(ok)))
    mg = results.get('mitogen')
    if mg:
        print('Mitogen %s (%s): worked %s; speed-up converge %s, re-run %s, floor %s (medians: re-run %s, floor %s)' % (
            mg['mitogen_version'], mg['strategy'], 'yes' if mg['worked'] else 'NO',
            mg['speedup']['converge'], mg['speedup']['rerun'], mg['speedup']['floor'],
            (mg.get('speedup_median') or {}).get('rerun'), (mg.get('speedup_median') or {}).get('floor')))
        for c in mg['checks']:
            print('  %-100s %s' % (c['check'], 'ok' if c['ok'] else 'FAILED: ' + c['detail']))
    print('bench took %.0f s; results in %s/performance.md and performance.json' % (results['bench_seconds'], output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
