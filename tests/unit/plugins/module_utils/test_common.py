# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared write machinery: text checks, line splitting, symbolic links, all-or-nothing replacement."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import subprocess

import pytest

from ansible_collections.estafeta.postfix.plugins.module_utils import common
from ansible_collections.estafeta.postfix.plugins.module_utils.common import PostfixError

# Every character Python's str.splitlines() ends a line at; Postfix ends a line at "\n" only.
SEPARATORS = ['\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029']
CONTROLS = [chr(c) for c in range(0x20)] + ['\x7f'] + [chr(c) for c in range(0x80, 0xa0)]


@pytest.mark.parametrize('char', CONTROLS, ids=lambda c: 'U+%04X' % ord(c))
def test_every_control_character_is_refused(char):
    assert common.bad_char('ok' + char + 'ok') == char
    with pytest.raises(PostfixError) as exc:
        common.check_text('The value', 'a' + char + 'b')
    assert 'U+%04X' % ord(char) in exc.value.msg or repr(char) in exc.value.msg
    assert 'Nothing was changed' in exc.value.msg


@pytest.mark.parametrize('text', ['a\u2028b', 'a\u2029b', 'a\u00a0b', 'ñandú', '\u3000x', 'a\u200bb'])
def test_other_unicode_is_text(text):
    assert common.bad_char(text) is None
    common.check_text('The value', text)


def test_lone_surrogate_is_refused():
    with pytest.raises(PostfixError) as exc:
        common.check_text('The value', 'a\udc80b')
    assert 'surrogate' in exc.value.msg


@pytest.mark.parametrize('sep', SEPARATORS, ids=lambda c: 'U+%04X' % ord(c))
def test_split_lines_only_on_line_feed(sep):
    text = 'a%sb\nc\n' % sep
    assert common.split_lines(text) == ['a%sb' % sep, 'c']
    assert common.split_lines(text, keepends=True) == ['a%sb\n' % sep, 'c\n']
    assert ''.join(common.split_lines(text, keepends=True)) == text


def test_split_lines_edges():
    assert common.split_lines('') == []
    assert common.split_lines('\n') == ['']
    assert common.split_lines('a') == ['a']
    assert common.split_lines('a\nb', keepends=True) == ['a\n', 'b']


def test_pstrip_is_ascii_only():
    assert common.pstrip(' \t\x0b\x0c\r\nx \n') == 'x'
    assert common.pstrip('\u00a0x\u2028') == '\u00a0x\u2028'


def test_real_target_follows_links(tmp_path):
    real = tmp_path / 'elsewhere' / 'file'
    real.parent.mkdir()
    real.write_text('x')
    link = tmp_path / 'link'
    link.symlink_to(real)
    assert common.real_target(str(link)) == str(real)
    assert common.real_target(str(real)) == str(real)
    chain = tmp_path / 'chain'
    chain.symlink_to(link)
    assert common.real_target(str(chain)) == str(real)


@pytest.mark.parametrize('kind', ['dangling', 'loop', 'directory'])
def test_real_target_refuses_what_cannot_be_written(tmp_path, kind):
    link = tmp_path / 'link'
    if kind == 'dangling':
        link.symlink_to(tmp_path / 'missing')
    elif kind == 'loop':
        link.symlink_to(tmp_path / 'other')
        (tmp_path / 'other').symlink_to(link)
    else:
        link.symlink_to(tmp_path)
    with pytest.raises(PostfixError) as exc:
        common.real_target(str(link))
    assert str(link) in exc.value.msg and 'Nothing was changed' in exc.value.msg


def test_atomic_write_through_link_keeps_link(tmp_path):
    real = tmp_path / 'elsewhere' / 'main.cf'
    real.parent.mkdir()
    real.write_text('old\n')
    os.chmod(str(real), 0o640)
    link = tmp_path / 'main.cf'
    link.symlink_to(real)
    common.atomic_write(str(link), 'new\n')
    assert os.path.islink(str(link)) and real.read_text() == 'new\n'
    assert os.stat(str(real)).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(str(real.parent))) == ['main.cf']


def _files(directory):
    result = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), 'rb') as f:
            result[name] = f.read()
    return result


def _three(tmp_path):
    d = tmp_path / 'd'
    d.mkdir()
    for name in ('a', 'b'):
        (d / name).write_text('old %s\n' % name)
    return str(d), [(str(d / 'a'), 'new a\n', None, False), (str(d / 'b'), 'new b\n', None, True),
                    (str(d / 'c'), 'new c\n', 0o600, False)]


def test_install_files_all(tmp_path):
    d, files = _three(tmp_path)
    common.install_files(files)
    assert _files(d) == {'a': b'new a\n', 'b': b'new b\n', 'c': b'new c\n'}
    assert os.stat(os.path.join(d, 'c')).st_mode & 0o777 == 0o600


@pytest.mark.parametrize('step', ['link', 'stage', 'rename1', 'rename2', 'rename3', 'after'])
def test_install_files_nothing_on_failure(tmp_path, monkeypatch, step):
    """A failure at any step leaves every file as it was, and no file behind."""
    d, files = _three(tmp_path)
    before = _files(d)
    calls = {'rename': 0}
    real_rename, real_link, real_mkstemp = os.rename, os.link, common.tempfile.mkstemp

    def rename(src, dst):
        if os.path.dirname(dst) == d and not os.path.basename(src).endswith('.keep'):
            calls['rename'] += 1
            if step == 'rename%d' % calls['rename']:
                raise OSError(errno.EIO, 'Input/output error', dst)
        return real_rename(src, dst)

    def link(src, dst):
        if step == 'link' and os.path.basename(src) == 'b':
            raise OSError(errno.EPERM, 'Operation not permitted', src)
        return real_link(src, dst)

    def mkstemp(**kw):
        if step == 'stage' and kw.get('prefix') == '.c.':
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_mkstemp(**kw)

    def after():
        raise PostfixError('postfix check failed after the change, so the previous configuration was restored: x')

    monkeypatch.setattr(os, 'rename', rename)
    monkeypatch.setattr(os, 'link', link)
    monkeypatch.setattr(common.tempfile, 'mkstemp', mkstemp)
    with pytest.raises(PostfixError) as exc:
        common.install_files(files, after=after if step == 'after' else None)
    assert _files(d) == before, exc.value.msg
    assert 'Traceback' not in exc.value.msg
    if step == 'link':
        assert 'immutable' in exc.value.msg and os.path.join(d, 'b') in exc.value.msg


def test_install_files_put_back_by_content_without_hard_links(tmp_path, monkeypatch):
    d, files = _three(tmp_path)
    before = _files(d)

    def link(src, dst):
        raise OSError(errno.EOPNOTSUPP, 'Operation not supported', src)

    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(dst) == 'c':
            raise OSError(errno.EIO, 'Input/output error', dst)
        return real_rename(src, dst)

    monkeypatch.setattr(os, 'link', link)
    monkeypatch.setattr(os, 'rename', rename)
    with pytest.raises(PostfixError):
        common.install_files(files)
    assert _files(d) == before


def _chattr(flag, path):
    try:
        return subprocess.run(['chattr', flag, path], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def test_keep_link_refuses_immutable_file(tmp_path):
    path = tmp_path / 'f'
    path.write_text('x')
    if not _chattr('+i', str(path)):
        pytest.skip('chattr +i is not supported here')
    try:
        with pytest.raises(PostfixError) as exc:
            common.keep_link(str(path))
        assert 'immutable' in exc.value.msg and 'Nothing was changed' in exc.value.msg
        assert os.listdir(str(tmp_path)) == ['f']
    finally:
        _chattr('-i', str(path))


def test_install_files_says_when_putting_back_failed(tmp_path, monkeypatch):
    d, files = _three(tmp_path)
    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(dst) == 'c' or (os.path.basename(dst) == 'a' and src.endswith('.keep')):
            raise OSError(errno.EIO, 'Input/output error', dst)
        return real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', rename)
    with pytest.raises(PostfixError) as exc:
        common.install_files(files)
    assert 'Putting back the previous content failed for %s' % os.path.join(d, 'a') in exc.value.msg
    assert 'run the task again' in exc.value.msg
    monkeypatch.setattr(os, 'rename', real_rename)
    assert _files(d)['b'] == b'old b\n'
