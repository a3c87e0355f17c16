# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Options shared by the modules that edit a Postfix configuration directory.
    DOCUMENTATION = r'''
options:
  config_dir:
    description:
      - The Postfix configuration directory that holds C(main.cf) and C(master.cf).
      - Passed to the Postfix commands as C(-c), so a secondary instance (multi-instance
        set-ups) or a scratch directory can be targeted.
    type: path
    default: /etc/postfix
  backup:
    description:
      - Create a timestamped backup of each file before it is changed.
    type: bool
    default: false
requirements:
  - Postfix installed on the managed host (C(postconf), C(postmap) and C(postfix) in C(/usr/sbin)).
'''

    # Options of the modules that change main.cf/master.cf and can verify the result.
    CHECK = r'''
options:
  check:
    description:
      - After writing, make sure Postfix accepts the new configuration - the validation of every
        C(main.cf) parameter that each Postfix program makes before it runs, and the directories
        C(postfix check) requires. When Postfix refuses it, the previous files are restored and the
        task fails, so a broken configuration never stays in place.
      - The rest of C(postfix check) (ownership and permissions of the queue and of Postfix's own
        files, which a configuration change cannot break) is left to the handler that reloads Postfix;
        the collection's roles run it once per play.
    type: bool
    default: true
'''

    # The attributes block every module of the collection shares.
    ATTRIBUTES = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
'''
