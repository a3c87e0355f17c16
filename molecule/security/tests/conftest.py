# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Record this scenario's reliability cases (the shared recorder is tests/molecule_reliability.py)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests'))

from molecule_reliability import case, pytest_collection_finish, pytest_runtest_logreport, pytest_sessionfinish  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
