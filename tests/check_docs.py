#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prove that ansible-doc lists and renders every module of the collection."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def main():
    modules = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'plugins', 'modules'))
                     if f.endswith('.py') and not f.startswith('_'))
    listed = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-l', 'estafeta.postfix'],
                            capture_output=True, text=True, check=True).stdout
    failures = []
    for name in modules:
        fqcn = 'estafeta.postfix.%s' % name
        if fqcn not in listed:
            failures.append('%s is not listed by ansible-doc -l' % fqcn)
            continue
        proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), fqcn], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or 'EXAMPLES' not in proc.stdout or 'RETURN VALUES' not in proc.stdout:
            failures.append('ansible-doc %s failed: %s' % (fqcn, proc.stderr.strip()[:500]))
    for line in failures:
        print('FAIL: ' + line)
    print('ansible-doc renders %d of %d modules' % (len(modules) - len(failures), len(modules)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
