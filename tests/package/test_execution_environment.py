# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An execution environment with the collection can be built.

* The collection's own dependency file (meta/execution-environment.yml, version 1) is what
  ansible-builder's introspection reads from every collection of an EE: it must name the
  collection's Python and system requirements, and the introspection must not crash on it.
* ee/execution-environment.yml (the complete EE) turns into a build context with
  ``ansible-builder create``, with the built tarball inside the context, and the build's galaxy
  step installs the collection from there.

Building the image itself needs the base image's registry; the steps of the build that concern
the collection (galaxy install, then introspection of what was installed) are run here as the
image build runs them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import filecmp
import os
import sys

import pytest
import yaml


def _requirement_names(path):
    names = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                names.append(line.split('[')[0].split(' ')[0].split('<')[0].split('>')[0].split('=')[0].lower())
    return names


@pytest.fixture(scope='module')
def context(tmp_path_factory, tarball, helpers):
    """The build context of ee/execution-environment.yml."""
    ctx = tmp_path_factory.mktemp('ee') / 'context'
    env = dict(os.environ)
    helpers.run([os.path.join(helpers.bin, 'ansible-builder'), 'create', '-f',
                 os.path.join(helpers.root, 'ee', 'execution-environment.yml'), '-c', str(ctx)], env, helpers.root)
    return ctx


def test_collection_metadata_is_a_version_1_dependency_file(helpers):
    root = helpers.root
    with open(os.path.join(root, 'meta', 'execution-environment.yml')) as f:
        meta = yaml.safe_load(f)
    assert meta['version'] == 1
    assert sorted(meta['dependencies']) == ['python', 'system']
    for path in meta['dependencies'].values():
        assert not os.path.isabs(path) and os.path.exists(os.path.join(root, path)), path
    assert 'passlib' in _requirement_names(os.path.join(root, meta['dependencies']['python']))


def test_build_context_holds_the_collection(context, tarball, helpers):
    version = helpers.galaxy()['version']
    containerfile = [p for p in ('Containerfile', 'Dockerfile') if (context / p).exists()]
    assert containerfile, 'ansible-builder create wrote no Containerfile'
    text = (context / containerfile[0]).read_text()
    assert 'COPY _build /build' in text and 'WORKDIR /build' in text
    assert 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml' in text
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    entries = {c['name']: c for c in requirements['collections']}
    tarballs = [c for c in entries.values() if c.get('type') == 'file']
    assert len(tarballs) == 1, requirements
    source = context / '_build' / tarballs[0]['name']
    assert source.name == os.path.basename(tarball), \
        'ee/ names %s, but `make build` wrote %s (version %s)' % (source.name, os.path.basename(tarball), version)
    assert source.exists() and filecmp.cmp(str(source), tarball, shallow=False)


def test_build_installs_and_introspects_the_collection(context, tmp_path, dependency_sources, helpers):
    """Replay the build's galaxy step (in the context's _build, as WORKDIR /build) and its introspection."""
    collections = str(tmp_path / 'collections')
    env = helpers.isolated_env(str(tmp_path / 'home'), collections)
    # The build's requirements, plus local copies of the dependencies that Galaxy would provide.
    requirements = yaml.safe_load((context / '_build' / 'requirements.yml').read_text())
    requirements['collections'] += [{'name': path, 'type': 'dir'} for path in dependency_sources]
    (tmp_path / 'requirements.yml').write_text(yaml.safe_dump(requirements))
    helpers.run([os.path.join(helpers.bin, 'ansible-galaxy'), 'collection', 'install', '--offline',
                 '-r', str(tmp_path / 'requirements.yml'), '--collections-path', collections],
                env, str(context / '_build'))
    assert os.path.exists(os.path.join(collections, 'ansible_collections', 'estafeta', 'postfix', 'MANIFEST.json'))

    # The introspection script the image build runs, from the build context.
    pip_out, bindep_out = tmp_path / 'requirements.txt', tmp_path / 'bindep.txt'
    proc = helpers.run([sys.executable, str(context / '_build' / 'scripts' / 'introspect.py'), 'introspect',
                        collections, '--write-pip', str(pip_out), '--write-bindep', str(bindep_out)],
                       env, str(tmp_path))
    assert 'passlib' in _requirement_names(str(pip_out)), proc.stdout
    # The same through ansible-builder's command, as a collection maintainer checks it.
    proc = helpers.run([os.path.join(helpers.bin, 'ansible-builder'), 'introspect', collections],
                       env, str(tmp_path))
    data = yaml.safe_load(proc.stdout)
    assert any(line.startswith('passlib') and 'estafeta.postfix' in line for line in data['python']), proc.stdout
