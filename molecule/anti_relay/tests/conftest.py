# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the anti_relay scenario's verifiers: the mail server under test and the outside client."""

import pytest
import testinfra

CLIENT = "anti_relay-client"


@pytest.fixture
def server(host):
    if "mailservers" not in host.ansible.get_variables().get("group_names", []):
        pytest.skip("runs on the mail servers")
    return host


@pytest.fixture
def client():
    return testinfra.get_host("docker://" + CLIENT)
