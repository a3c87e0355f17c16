#!/usr/bin/env python
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Check that the built collection tarball is clean: no virtualenv, caches or test output."""

import sys
import tarfile

FORBIDDEN = ('.venv/', '.cache/', 'tests/output/', '__pycache__', '.pyc', '.git/', '.pytest_cache', 'build/')
REQUIRED = ('MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'meta/runtime.yml', 'plugins/modules/postconf_set.py')


def main(path):
    with tarfile.open(path) as tar:
        names = tar.getnames()
    bad = [n for n in names if any(f in n + '/' for f in FORBIDDEN)]
    missing = [r for r in REQUIRED if r not in names]
    for n in bad:
        print('FAIL: %s should not be in the tarball' % n)
    for r in missing:
        print('FAIL: %s is missing from the tarball' % r)
    print('%s: %d files' % (path, len(names)))
    return 1 if bad or missing else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
