#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prove that ansible-doc lists and renders every module and filter plugin of the collection."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def plugins(kind):
    directory = os.path.join(ROOT, 'plugins', kind)
    if not os.path.isdir(directory):
        return []
    return sorted(f[:-3] for f in os.listdir(directory) if f.endswith('.py') and not f.startswith('_'))


def main():
    failures = []
    total = 0
    for kind, doc_type in (('modules', 'module'), ('filter', 'filter')):
        names = plugins(kind)
        total += len(names)
        listed = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', doc_type, '-l', 'estafeta.postfix'],
                                capture_output=True, text=True, check=True).stdout
        for name in names:
            fqcn = 'estafeta.postfix.%s' % name
            if fqcn not in listed:
                failures.append('%s %s is not listed by ansible-doc -t %s -l' % (doc_type, fqcn, doc_type))
                continue
            proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', doc_type, fqcn], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0 or 'EXAMPLES' not in proc.stdout or 'RETURN VALUES' not in proc.stdout:
                failures.append('ansible-doc -t %s %s failed: %s' % (doc_type, fqcn, proc.stderr.strip()[:500]))
    for line in failures:
        print('FAIL: ' + line)
    print('ansible-doc renders %d of %d modules and filters' % (total - len(failures), total))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
