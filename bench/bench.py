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
                  header checks (bench/playbooks/comparable.yml): fresh converge, re-run
  3. complete     playbooks/complete_mailserver.yml with the demo inventory's settings
  4. modules      bench/module_bench.py (postconf_set vs lineinfile, 10,000-entry postmap_file)
  5. fleet        the comparable workload on N = 1, 4, 8, 16 fresh hosts, forks = N

Options: --only floor,comparable,complete,modules,fleet  --fleet 1,4,8,16  --suite bookworm
"""

import argparse
import datetime
import importlib
import importlib.util
import json
import os
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


def playbook(inventory, path, forks=1):
    """Run a playbook; return wall seconds and per-run figures from the json callback."""
    env = dict(os.environ)
    env.update({'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json', 'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
                'ANSIBLE_FORKS': str(forks), 'ANSIBLE_HOST_KEY_CHECKING': 'False'})
    start = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, path], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit('playbook %s failed' % path)
    with open(os.path.join(CACHE, 'last-%s.json' % os.path.basename(path)), 'w') as f:
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
    }


def best_runs(fn, count):
    runs = [fn() for dummy in range(count)]
    best = min(runs, key=lambda r: r['seconds'])
    best = dict(best)
    best['all_seconds'] = [r['seconds'] for r in runs]
    best['changed'] = max(r['changed'] for r in runs)
    best['handlers'] = sorted(set(h for r in runs for h in r['handlers']))
    best['changed_tasks'] = sorted(set(h for r in runs for h in r['changed_tasks']))
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


def bench_workload(fleet, label, play, group_vars, reps):
    """Fresh converge, idempotent re-runs and the floor, all on the same host."""
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
        'rerun_over_floor': round(rerun['seconds'] / floor['seconds'], 2),
        'packages': sorted(packages),
        'postfix_version': version,
        'apt_by_hand_seconds': by_hand,
        'converge_over_apt_by_hand': round(converge['seconds'] / by_hand, 2),
    }


def bench_fleet(fleet, sizes, comparable_vars):
    play = os.path.join(HERE, 'playbooks', 'comparable.yml')
    points = []
    for n in sizes:
        names = ['bench-fleet-%02d' % i for i in range(1, n + 1)]
        log('fleet: %d hosts' % n)
        hosts = fleet.start(names)
        try:
            inv = fleet.inventory(hosts, comparable_vars, 'fleet-%d' % n)
            converge = playbook(inv, play, forks=n)
            rerun = playbook(inv, play, forks=n)
        finally:
            fleet.stop(names)
        points.append({'hosts': n, 'converge_seconds': converge['seconds'], 'rerun_seconds': rerun['seconds'],
                       'rerun_changed': rerun['changed'], 'rerun_handlers': rerun['handlers']})
    base = points[0]
    for p in points:
        p['rerun_over_single'] = round(p['rerun_seconds'] / base['rerun_seconds'], 2)
        p['converge_over_single'] = round(p['converge_seconds'] / base['converge_seconds'], 2)
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
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(xs, [p['converge_seconds'] for p in pts], 'o-', label='first converge (fresh hosts)')
    ax.plot(xs, [p['rerun_seconds'] for p in pts], 's-', label='idempotent re-run')
    ax.plot(xs, [4 * pts[0]['rerun_seconds']] * len(xs), ':', color='grey', label='target: 4x single-host re-run')
    ax.set_xlabel('hosts (forks = hosts), over SSH')
    ax.set_ylabel('wall time (s)')
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title('estafeta.postfix: comparable workload against N hosts')
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    return True


# ----------------------------------------------------------------------------- report

def verdict(ok):
    return 'met' if ok else 'NOT met'


def targets(results):
    out = []
    for key, limit in (('comparable', 2.0), ('complete', 3.0)):
        w = results.get(key)
        if not w:
            continue
        out.append(('%s: idempotent re-run <= %gx the floor' % (key, limit), '%.2fx (%.1f s vs %.1f s)' % (
            w['rerun_over_floor'], w['rerun']['seconds'], w['floor']['seconds']), w['rerun_over_floor'] <= limit))
        out.append(('%s: zero changed and no handler on re-run' % key, 'changed %d, handlers %s' % (
            w['rerun']['changed'], ', '.join(w['rerun']['handlers']) or 'none'),
            w['rerun']['changed'] == 0 and not w['rerun']['handlers']))
        out.append(('%s: first converge <= 1.3x the same packages by hand' % key, '%.2fx (%.1f s vs %.1f s)' % (
            w['converge_over_apt_by_hand'], w['converge']['seconds'], w['apt_by_hand_seconds']), w['converge_over_apt_by_hand'] <= 1.3))
    m = results.get('modules')
    if m:
        p = m['postconf_set_vs_lineinfile']
        out.append(('200 parameters: postconf_set >= 20x faster than a lineinfile loop', '%.1fx (%.2f s vs %.1f s)' % (
            p['speedup'], p['postconf_set_seconds'], p['lineinfile_loop_seconds']), p['speedup'] >= 20))
        t = m['postmap_file_10000']
        out.append(('10,000-entry table: no-op re-run < 1 s of module time', '%.3f s module time (task %.2f s), changed %s' % (
            t['noop_module_seconds'], t['noop_seconds'], t['noop_changed']), t['noop_module_seconds'] < 1 and not t['noop_changed']))
    f = results.get('fleet')
    if f and len(f['points']) > 1:
        last = f['points'][-1]
        out.append(('fleet: %d hosts re-run <= 4x the single-host re-run' % last['hosts'], '%.2fx (%.1f s vs %.1f s)' % (
            last['rerun_over_single'], last['rerun_seconds'], f['points'][0]['rerun_seconds']), last['rerun_over_single'] <= 4))
        out.append(('fleet: zero changed on every re-run', ', '.join('N=%d: %d' % (p['hosts'], p['rerun_changed']) for p in f['points']),
                    all(p['rerun_changed'] == 0 and not p['rerun_handlers'] for p in f['points'])))
    return out


def markdown(results):
    lines = ['# Performance', '',
             '<!-- Generated by `make bench` (bench/bench.py): do not edit by hand. -->', '',
             'Measured %s on %s. %s' % (results['measured'], results['machine'], results.get('note', '')), '']
    runs = [results] + ([results['earlier_run']] if results.get('earlier_run') else [])
    for r in runs:
        lines.append('- Sections %s: run started %s, took %s s, load average %s at start and %s at end.' % (
            ', '.join(r.get('sections') or []), r.get('measured'), r.get('bench_seconds'),
            r.get('load_average_at_start'), r.get('load_average_at_end')))
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
              '| Changed (converge / re-run) | Same packages by hand (s) |',
              '|---|---|---|---|---|---|---|---|']
    for key, title in (('comparable', 'Comparable workload'), ('complete', 'Complete server')):
        w = results.get(key)
        if not w:
            continue
        lines.append('| %s | %.1f | %.1f (%s) | %.1f (%s) | %.2fx | %d (%d skipped) | %d / %d | %.1f |' % (
            title, w['converge']['seconds'], w['rerun']['seconds'], ', '.join('%.1f' % s for s in w['rerun']['all_seconds']),
            w['floor']['seconds'], ', '.join('%.1f' % s for s in w['floor']['all_seconds']), w['rerun_over_floor'],
            w['rerun']['tasks'], w['rerun']['skipped'], w['converge']['changed'], w['rerun']['changed'], w['apt_by_hand_seconds']))
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
              '  marked as manually installed (listed in performance.json).']
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
                  '| Hosts | First converge (s) | Re-run (s) | Re-run / single host | Changed on re-run |', '|---|---|---|---|---|']
        for pt in f['points']:
            lines.append('| %d | %.1f | %.1f | %.2fx | %d |' % (
                pt['hosts'], pt['converge_seconds'], pt['rerun_seconds'], pt['rerun_over_single'], pt['rerun_changed']))
        lines += ['', 'Marginal cost per extra host (least-squares slope): re-run %s s, first converge %s s.' % (
            f['marginal_rerun_seconds_per_host'], f['marginal_converge_seconds_per_host']), '',
            '![Wall time against the number of hosts](images/fleet-scaling.png)']
    if results.get('limits'):
        lines += ['', '## What limits the figures', ''] + ['- ' + x for x in results['limits']]
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', default='floor,comparable,complete,modules,fleet')
    parser.add_argument('--fleet', default='1,4,8,16')
    parser.add_argument('--suite', default='bookworm')
    parser.add_argument('--reps', type=int, default=3)
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
        if only & {'floor', 'comparable', 'complete', 'fleet'}:
            fleet.prepare()
        if only & {'floor', 'comparable'}:
            results['comparable'] = bench_workload(fleet, 'comparable', os.path.join(HERE, 'playbooks', 'comparable.yml'),
                                                   comparable_vars, args.reps)
        if 'complete' in only:
            results['complete'] = bench_workload(fleet, 'complete', os.path.join(ROOT, 'playbooks', 'complete_mailserver.yml'),
                                                 complete_vars, max(2, args.reps - 1))
        if 'modules' in only:
            log('modules')
            results['modules'] = module_bench.run_all()
        if 'fleet' in only:
            sizes = [int(x) for x in args.fleet.split(',')]
            results['fleet'] = bench_fleet(fleet, sizes, comparable_vars)
            plot_fleet(results['fleet'], os.path.join(args.output, 'images', 'fleet-scaling.png'))
    finally:
        fleet.cleanup()
    results['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    results['bench_seconds'] = round(time.monotonic() - started, 1)
    results['sections'] = sorted(only)
    if args.merge and os.path.exists(json_path):
        with open(json_path) as f:
            previous = json.load(f)
        for key in ('comparable', 'complete', 'modules', 'fleet'):
            if key in previous and key not in results:
                results[key] = previous[key]
        keep = ('measured', 'sections', 'bench_seconds', 'load_average_at_start', 'load_average_at_end')
        results['earlier_run'] = dict((k, previous.get(k)) for k in keep)
    return report(results, args.output)


def report(results, output):
    for key in ('comparable', 'complete'):
        w = results.get(key)
        if w:  # fastest of the repetitions (also for figures written by older versions of this script)
            w['rerun']['seconds'] = min(w['rerun']['all_seconds'])
            w['floor']['seconds'] = min(w['floor']['all_seconds'])
            w['rerun_over_floor'] = round(w['rerun']['seconds'] / w['floor']['seconds'], 2)
    results['targets'] = [{'target': n, 'measured': m, 'met': ok} for n, m, ok in targets(results)]
    limits_path = os.path.join(HERE, 'limits.md')
    if os.path.exists(limits_path):
        with open(limits_path) as f:
            results['limits'] = []
            for line in f:
                if line.startswith('- '):
                    results['limits'].append(line[2:].strip())
                elif line.startswith('  ') and results['limits'] and line.strip():
                    results['limits'][-1] += ' ' + line.strip()
    with open(os.path.join(output, 'performance.json'), 'w') as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write('\n')
    with open(os.path.join(output, 'performance.md'), 'w') as f:
        f.write(markdown(results))
    for name, measured, ok in targets(results):
        print('%-70s %-45s %s' % (name, measured, verdict(ok)))
    print('bench took %.0f s; results in %s/performance.md and performance.json' % (results['bench_seconds'], output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
