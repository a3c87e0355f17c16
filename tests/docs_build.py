# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate the reference documentation under docs/reference/ and docs/guide-mapping.md.

The reference is built from the sources, so it cannot drift from them:

* every module in plugins/modules/*.py: its DOCUMENTATION, EXAMPLES and RETURN strings (read
  with ``ast`` and ``yaml.safe_load``, without importing the module or Ansible's plugin loader),
  with the collection's documentation fragments merged in as ansible-doc merges them;
* every role in roles/*/: meta/argument_specs.yml, the first paragraph of its README.md, and a
  check that defaults/main.yml and argument_specs.yml declare the same public variables with the
  same defaults;
* docs/guide-mapping.yml, the map from the sections of the source guide to the roles, variables
  and modules of today; every role, variable and module it names must exist.

Usage (from the repository root, with the project's virtualenv)::

    python tests/docs_build.py           # write the generated files
    python tests/docs_build.py --check   # exit 1 when a generated file is out of date

The check also verifies that every relative link in docs/**/*.md points at an existing file
(and, for links into generated pages, at an existing anchor).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import ast
import difflib
import glob
import importlib.util
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = 'estafeta'
COLLECTION = 'postfix'
FQCN_PREFIX = '%s.%s.' % (NAMESPACE, COLLECTION)
GENERATOR = 'tests/docs_build.py'


class DocsError(Exception):
    """A source that cannot be documented, or a mapping that names something that does not exist."""


# ---------------------------------------------------------------------------------------------
# Reading the sources


def read_text(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def string_assignments(path, names):
    """Top-level ``NAME = '...'`` string assignments of a Python file (module or class body)."""
    tree = ast.parse(read_text(path), filename=path)
    found = {}

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name) and (names is None or target.id in names):
                        found[prefix + target.id] = node.value.value
            elif isinstance(node, ast.ClassDef) and not prefix:
                visit(node.body, node.name + '.')

    visit(tree.body, '')
    return found


def load_yaml(text, what):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DocsError('%s is not valid YAML: %s' % (what, exc))


def builtin_fragment_path(name):
    spec = importlib.util.find_spec('ansible.plugins.doc_fragments')
    if spec is None or not spec.submodule_search_locations:
        raise DocsError('ansible-core is not importable, so the fragment ansible.builtin.%s cannot be read' % name)
    return os.path.join(list(spec.submodule_search_locations)[0], name + '.py')


def load_fragment(root, ref):
    """The YAML of a documentation fragment reference such as ``estafeta.postfix.postfix.check``."""
    parts = ref.split('.')
    if ref.startswith(FQCN_PREFIX) and len(parts) in (3, 4):
        path = os.path.join(root, 'plugins', 'doc_fragments', parts[2] + '.py')
        attr = parts[3].upper() if len(parts) == 4 else 'DOCUMENTATION'
    elif ref.startswith('ansible.builtin.') and len(parts) in (3, 4):
        path = builtin_fragment_path(parts[2])
        attr = parts[3].upper() if len(parts) == 4 else 'DOCUMENTATION'
    elif len(parts) in (1, 2):
        path = builtin_fragment_path(parts[0])
        attr = parts[1].upper() if len(parts) == 2 else 'DOCUMENTATION'
    else:
        raise DocsError('documentation fragment %s: only this collection\'s and ansible.builtin fragments are supported' % ref)
    if not os.path.exists(path):
        raise DocsError('documentation fragment %s: %s does not exist' % (ref, os.path.relpath(path, root)))
    strings = string_assignments(path, None)
    text = strings.get('ModuleDocFragment.' + attr)
    if text is None:
        raise DocsError('documentation fragment %s: ModuleDocFragment has no %s' % (ref, attr))
    return load_yaml(text, 'fragment %s' % ref) or {}


def merge_fragment(doc, fragment):
    """Merge a fragment into a DOCUMENTATION dict the way ansible-doc does; the module wins."""
    for key, value in fragment.items():
        if key in doc:
            if isinstance(doc[key], dict):
                merged = dict(doc[key])
                for k, v in value.items():
                    merged.setdefault(k, v)
                doc[key] = merged
            elif isinstance(doc[key], list):
                doc[key] = doc[key] + [v for v in value if v not in doc[key]]
            else:
                raise DocsError('fragment key %s cannot be merged into a %s' % (key, type(doc[key]).__name__))
        else:
            doc[key] = value


def load_module(root, path):
    name = os.path.splitext(os.path.basename(path))[0]
    rel = os.path.relpath(path, root)
    strings = string_assignments(path, ('DOCUMENTATION', 'EXAMPLES', 'RETURN'))
    if 'DOCUMENTATION' not in strings:
        raise DocsError('%s has no DOCUMENTATION string' % rel)
    doc = load_yaml(strings['DOCUMENTATION'], '%s DOCUMENTATION' % rel) or {}
    if doc.get('module') != name:
        raise DocsError('%s: DOCUMENTATION says module %r, expected %r' % (rel, doc.get('module'), name))
    fragments = doc.pop('extends_documentation_fragment', None) or []
    if isinstance(fragments, str):
        fragments = [fragments]
    for ref in fragments:
        merge_fragment(doc, load_fragment(root, ref))
    returns = load_yaml(strings.get('RETURN', ''), '%s RETURN' % rel) or {}
    return {
        'name': name,
        'source': rel,
        'doc': doc,
        'examples': strings.get('EXAMPLES', '').strip('\n'),
        'returns': returns,
    }


def readme_first_paragraph(path):
    """The first paragraph of a README that is not a heading, a badge or an HTML comment.

    A paragraph that ends with a colon introduces a list: the list is kept too.
    """
    if not os.path.exists(path):
        return None
    blocks = []
    current = []
    in_comment = False
    for line in read_text(path).splitlines():
        stripped = line.strip()
        if in_comment:
            in_comment = '-->' not in stripped
            continue
        if stripped.startswith('<!--'):
            in_comment = '-->' not in stripped
            continue
        if not stripped:
            if current:
                blocks.append(current)
                current = []
                if len(blocks) == 2 or not blocks[0][-1].endswith(':'):
                    break
            continue
        if not blocks and not current and (stripped.startswith('#') or stripped.startswith('[![')):
            continue
        if stripped.startswith('#'):
            break
        current.append(line.rstrip())
    if current and len(blocks) < 2:
        blocks.append(current)
    if not blocks:
        return None
    text = ' '.join(part.strip() for part in blocks[0])
    if len(blocks) == 2 and text.endswith(':') and blocks[1][0].lstrip()[:2] in ('- ', '* '):
        text += '\n\n' + '\n'.join(blocks[1])
    return text


def load_role(root, role_dir):
    name = os.path.basename(role_dir)
    spec_path = os.path.join(role_dir, 'meta', 'argument_specs.yml')
    rel = os.path.relpath(spec_path, root)
    if not os.path.exists(spec_path):
        raise DocsError('role %s has no meta/argument_specs.yml' % name)
    specs = (load_yaml(read_text(spec_path), rel) or {}).get('argument_specs')
    if not isinstance(specs, dict) or not specs:
        raise DocsError('%s has no argument_specs entry points' % rel)
    defaults_path = os.path.join(role_dir, 'defaults', 'main.yml')
    defaults = None
    if os.path.exists(defaults_path):
        defaults = load_yaml(read_text(defaults_path), os.path.relpath(defaults_path, root)) or {}
    readme = os.path.join(role_dir, 'README.md')
    return {
        'name': name,
        'specs': specs,
        'defaults': defaults,
        'readme': os.path.relpath(readme, root) if os.path.exists(readme) else None,
        'intro': readme_first_paragraph(readme),
    }


def check_role_defaults(role):
    """defaults/main.yml and argument_specs.yml (entry point main) must declare the same variables."""
    defaults = role['defaults']
    main = role['specs'].get('main')
    if defaults is None or main is None:
        return []
    options = main.get('options') or {}
    problems = []
    for var, value in defaults.items():
        if var.startswith('__'):
            continue
        if var not in options:
            problems.append('roles/%s: variable %s is in defaults/main.yml but not in meta/argument_specs.yml'
                            % (role['name'], var))
        elif 'default' in options[var] and options[var]['default'] != value:
            problems.append('roles/%s: variable %s defaults to %r in defaults/main.yml but %r in meta/argument_specs.yml'
                            % (role['name'], var, value, options[var]['default']))
    for var, spec in options.items():
        if var not in defaults and spec.get('default') is not None and not spec.get('required'):
            problems.append('roles/%s: variable %s has a default in meta/argument_specs.yml but none in defaults/main.yml'
                            % (role['name'], var))
    return problems


# ---------------------------------------------------------------------------------------------
# Semantic markup -> Markdown

MARKUP_START = re.compile(r'\b(RV|HORIZONTALLINE|[IBCVOEMULRP])(\()?')
PLAIN_ESCAPE = re.compile(r'([\\*<>\[\]`])')


def code(text):
    text = str(text)
    if '`' in text:
        return '`` %s ``' % text
    return '`%s`' % text


def option_anchor(path, entry_point=None):
    slug = re.sub(r'[^A-Za-z0-9_]+', '-', path).strip('-')
    if entry_point and entry_point != 'main':
        slug = entry_point + '--' + slug
    return 'option-' + slug


def return_anchor(path):
    return 'return-' + re.sub(r'[^A-Za-z0-9_]+', '-', path).strip('-')


class Context:
    """What the markup of one page may link to."""

    def __init__(self, page_dir, options=(), returns=(), modules=(), entry_point=None):
        self.page_dir = page_dir  # relative to docs/reference
        self.options = set(options)
        self.returns = set(returns)
        self.modules = set(modules)
        self.entry_point = entry_point

    def module_link(self, fqcn):
        name = fqcn[len(FQCN_PREFIX):] if fqcn.startswith(FQCN_PREFIX) else None
        if name and name in self.modules:
            target = 'modules/%s.md' % name
            rel = target if self.page_dir == '' else os.path.relpath(target, self.page_dir)
            return '[%s](%s)' % (code(fqcn), rel.replace(os.sep, '/'))
        return code(fqcn)


def _closing_paren(text, start):
    """Index of the parenthesis closing the one just before ``start`` (nested pairs allowed)."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == '\\' and i + 1 < len(text):
            i += 2
            continue
        if ch == '(':
            depth += 1
        elif ch == ')':
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _unescape(text):
    return re.sub(r'\\(.)', r'\1', text)


def _option_path(name):
    """``transport_routes[].nexthop`` / ``a.b`` / ``name=value`` -> (path used in anchors, shown text)."""
    shown = name
    if '=' in name:
        name = name.split('=', 1)[0]
    path = re.sub(r'\[[^\]]*\]', '', name)
    return path, shown


def convert(text, ctx):
    """Convert Ansible's documentation markup in ``text`` to Markdown."""
    out = []
    pos = 0
    while True:
        m = MARKUP_START.search(text, pos)
        if not m:
            break
        kind = m.group(1)
        if kind == 'HORIZONTALLINE':
            out.append(PLAIN_ESCAPE.sub(r'\\\1', text[pos:m.start()]))
            out.append('<hr>')
            pos = m.end(1)
            continue
        if not m.group(2):
            out.append(PLAIN_ESCAPE.sub(r'\\\1', text[pos:m.end()]))
            pos = m.end()
            continue
        end = _closing_paren(text, m.end())
        if end < 0:
            out.append(PLAIN_ESCAPE.sub(r'\\\1', text[pos:m.end()]))
            pos = m.end()
            continue
        out.append(PLAIN_ESCAPE.sub(r'\\\1', text[pos:m.start()]))
        arg = text[m.end():end]
        pos = end + 1
        if kind == 'I':
            out.append('*%s*' % PLAIN_ESCAPE.sub(r'\\\1', arg))
        elif kind == 'B':
            out.append('**%s**' % PLAIN_ESCAPE.sub(r'\\\1', arg))
        elif kind in ('C', 'V', 'E'):
            out.append(code(_unescape(arg)))
        elif kind == 'O':
            arg = _unescape(arg)
            if '#' in arg or ':' in arg.split('=')[0]:
                # O(fqcn#type:name): an option of another plugin.
                out.append(code(arg.split(':', 1)[-1]))
                continue
            path, shown = _option_path(arg)
            if path in ctx.options:
                out.append('[%s](#%s)' % (code(shown), option_anchor(path, ctx.entry_point)))
            else:
                out.append(code(shown))
        elif kind == 'RV':
            arg = _unescape(arg)
            path, shown = _option_path(arg)
            if path in ctx.returns:
                out.append('[%s](#%s)' % (code(shown), return_anchor(path)))
            else:
                out.append(code(shown))
        elif kind == 'M':
            out.append(ctx.module_link(_unescape(arg)))
        elif kind == 'P':
            out.append(code(_unescape(arg).split('#')[0]))
        elif kind == 'U':
            out.append('<%s>' % arg)
        elif kind == 'L':
            label, _sep, url = arg.rpartition(',')
            out.append('[%s](%s)' % (PLAIN_ESCAPE.sub(r'\\\1', label.strip()), url.strip()))
        elif kind == 'R':
            label = arg.rpartition(',')[0]
            out.append(PLAIN_ESCAPE.sub(r'\\\1', label.strip()))
    out.append(PLAIN_ESCAPE.sub(r'\\\1', text[pos:]))
    return ''.join(out)


def paragraphs(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def cell(text):
    """Make text safe inside a Markdown table cell."""
    return ' '.join(text.split('\n')).replace('|', '\\|').strip()


def yaml_value(value):
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (int, float)):
        return str(value)
    return yaml.safe_dump(value, default_flow_style=True, width=100000, sort_keys=False).strip()


def type_text(spec):
    kind = spec.get('type', 'str')
    if spec.get('elements'):
        kind = '%s / elements=%s' % (kind, spec['elements'])
    return kind


# ---------------------------------------------------------------------------------------------
# Rendering


def option_rows(options, ctx, prefix='', depth=0, key='suboptions'):
    rows = []
    for name, spec in options.items():
        spec = spec or {}
        path = prefix + name
        indent = '&nbsp;&nbsp;' * depth * 2
        label = '%s<a id="%s"></a>%s' % (indent, option_anchor(path, ctx.entry_point), code(name if depth else path))
        desc = [convert(p, ctx) for p in paragraphs(spec.get('description'))]
        if spec.get('aliases'):
            desc.append('Aliases: %s.' % ', '.join(code(a) for a in spec['aliases']))
        if spec.get('version_added') and spec['version_added'] != '0.1.0':
            desc.append('Added in version %s.' % spec['version_added'])
        default = code(yaml_value(spec['default'])) if 'default' in spec else ''
        choices = ', '.join(code(yaml_value(c)) for c in spec.get('choices') or [])
        rows.append('| %s | %s | %s | %s | %s | %s |' % (
            cell(label), cell(type_text(spec)), 'yes' if spec.get('required') else '',
            cell(default), cell(choices), cell('<br>'.join(desc))))
        children = spec.get(key) or spec.get('options') or spec.get('suboptions')
        if children:
            rows.extend(option_rows(children, ctx, path + '.', depth + 1, key))
    return rows


def option_paths(options, prefix=''):
    paths = []
    for name, spec in (options or {}).items():
        spec = spec or {}
        paths.append(prefix + name)
        children = spec.get('options') or spec.get('suboptions')
        if children:
            paths.extend(option_paths(children, prefix + name + '.'))
    return paths


def options_table(options, ctx, key='suboptions'):
    lines = [
        '| Option | Type | Required | Default | Choices | Description |',
        '|---|---|---|---|---|---|',
    ]
    lines.extend(option_rows(options, ctx, key=key))
    return lines


def return_paths(returns, prefix=''):
    paths = []
    for name, spec in (returns or {}).items():
        paths.append(prefix + name)
        if (spec or {}).get('contains'):
            paths.extend(return_paths(spec['contains'], prefix + name + '.'))
    return paths


def return_rows(returns, ctx, prefix='', depth=0):
    rows = []
    for name, spec in returns.items():
        spec = spec or {}
        path = prefix + name
        indent = '&nbsp;&nbsp;' * depth * 2
        label = '%s<a id="%s"></a>%s' % (indent, return_anchor(path), code(name if depth else path))
        desc = [convert(p, ctx) for p in paragraphs(spec.get('description'))]
        if 'sample' in spec and not spec.get('contains'):
            desc.append('Sample: %s' % code(yaml_value(spec['sample'])))
        rows.append('| %s | %s | %s | %s |' % (
            cell(label), cell(type_text(spec) if spec.get('type') else ''),
            cell(convert(str(spec.get('returned', '')), ctx)), cell('<br>'.join(desc))))
        if spec.get('contains'):
            rows.extend(return_rows(spec['contains'], ctx, path + '.', depth + 1))
    return rows


def generated_header(sources):
    return '<!-- Generated by %s from %s. Do not edit: change the source and run `python %s`. -->' % (
        GENERATOR, ', '.join(sources), GENERATOR)


def render_module(module, module_names):
    doc = module['doc']
    options = doc.get('options') or {}
    ctx = Context('modules', option_paths(options), return_paths(module['returns']), module_names)
    fqcn = FQCN_PREFIX + module['name']
    lines = [generated_header([module['source']]), '', '# %s' % fqcn, '']
    lines += [convert(doc.get('short_description', ''), ctx), '']
    if doc.get('version_added'):
        lines += ['Added in version %s of the collection.' % doc['version_added'], '']
    lines += ['## Synopsis', '']
    lines += ['- %s' % convert(p, ctx) for p in paragraphs(doc.get('description'))] + ['']
    if doc.get('requirements'):
        lines += ['## Requirements', '']
        lines += ['- %s' % convert(p, ctx) for p in paragraphs(doc['requirements'])] + ['']
    lines += ['## Options', '']
    if options:
        lines += options_table(options, ctx) + ['']
    else:
        lines += ['This module takes no options.', '']
    for key in ('mutually_exclusive', 'required_if', 'required_one_of', 'required_together'):
        if doc.get(key):
            lines += ['%s: %s' % (key, code(yaml_value(doc[key]))), '']
    if doc.get('attributes'):
        lines += ['## Attributes', '', '| Attribute | Support | Description |', '|---|---|---|']
        for name, spec in doc['attributes'].items():
            support = spec.get('support', '')
            details = paragraphs(spec.get('details'))
            text = ' '.join(paragraphs(spec.get('description')) + details)
            lines.append('| %s | %s | %s |' % (code(name), cell(support), cell(convert(text, ctx))))
        lines.append('')
    if doc.get('notes'):
        lines += ['## Notes', '']
        lines += ['- %s' % convert(p, ctx) for p in paragraphs(doc['notes'])] + ['']
    if doc.get('seealso'):
        lines += ['## See also', '']
        for item in doc['seealso']:
            desc = convert(item.get('description', ''), ctx)
            if 'module' in item:
                entry = ctx.module_link(item['module'])
            elif 'plugin' in item:
                entry = code(item['plugin'])
            elif 'link' in item:
                entry = '[%s](%s)' % (PLAIN_ESCAPE.sub(r'\\\1', item.get('name', item['link'])), item['link'])
            else:
                entry = PLAIN_ESCAPE.sub(r'\\\1', item.get('name', item.get('ref', '')))
            lines.append('- %s%s' % (entry, (': ' + desc) if desc else ''))
        lines.append('')
    if module['examples']:
        lines += ['## Examples', '', '```yaml', module['examples'], '```', '']
    if module['returns']:
        lines += ['## Return values', '', '| Key | Type | Returned | Description |', '|---|---|---|---|']
        lines += return_rows(module['returns'], ctx) + ['']
    if doc.get('author'):
        lines += ['## Authors', '']
        lines += ['- %s' % PLAIN_ESCAPE.sub(r'\\\1', a) for a in paragraphs(doc['author'])] + ['']
    return '\n'.join(lines).rstrip('\n') + '\n'


def entry_points(role):
    names = sorted(role['specs'])
    if 'main' in names:
        names.remove('main')
        names.insert(0, 'main')
    return names


def render_role(role, module_names):
    fqcn = FQCN_PREFIX + role['name']
    sources = ['roles/%s/meta/argument_specs.yml' % role['name']]
    if role['readme']:
        sources.append(role['readme'])
    lines = [generated_header(sources), '', '# %s (role)' % fqcn, '']
    if role['intro']:
        lines += [role['intro'], '']
    if role['readme']:
        lines += ['The role\'s [README](../../../%s) has worked examples.' % role['readme'], '']
    lines += ['Use it as `%s` in a play\'s `roles:` or with `ansible.builtin.include_role`.' % fqcn, '']
    for ep in entry_points(role):
        spec = role['specs'][ep] or {}
        options = spec.get('options') or {}
        ctx = Context('roles', option_paths(options), (), module_names, entry_point=ep)
        lines += ['## Entry point `%s`' % ep, '']
        if spec.get('short_description'):
            lines += ['%s.' % convert(spec['short_description'], ctx).rstrip('.'), '']
        lines += ['- %s' % convert(p, ctx) for p in paragraphs(spec.get('description'))]
        lines.append('')
        if ep != 'main':
            lines += ['Run it with `tasks_from: %s`.' % ep, '']
        if options:
            lines += ['### Variables', ''] + options_table(options, ctx, key='options') + ['']
        else:
            lines += ['This entry point takes no variables.', '']
    return '\n'.join(lines).rstrip('\n') + '\n'


def first_sentence(text):
    return text.strip().rstrip('.')


def render_index(modules, roles, action_groups):
    lines = [generated_header(['plugins/modules/*.py', 'roles/*/meta/argument_specs.yml']), '',
             '# Reference', '',
             'Generated from the modules\' documentation and the roles\' argument specifications, so it always',
             'matches the code. The guides are listed in [the documentation map](../index.md).', '',
             '## Modules', '', '| Module | Description |', '|---|---|']
    names = [m['name'] for m in modules]
    for module in modules:
        ctx = Context('', modules=names)
        lines.append('| [%s](modules/%s.md) | %s |' % (
            code(FQCN_PREFIX + module['name']), module['name'],
            cell(convert(first_sentence(module['doc'].get('short_description', '')), ctx))))
    lines.append('')
    for group, members in sorted(action_groups.items()):
        listed = [m for m in members if isinstance(m, str)]
        lines += ['Action group `group/%s%s` (for `module_defaults`): %s.' % (
            FQCN_PREFIX, group, ', '.join('[%s](modules/%s.md)' % (code(m), m) if m in names else code(m) for m in listed)), '']
    lines += ['## Roles', '', '| Role | Description | Entry points |', '|---|---|---|']
    for role in roles:
        main = role['specs'].get('main') or role['specs'][entry_points(role)[0]]
        ctx = Context('', modules=names)
        lines.append('| [%s](roles/%s.md) | %s | %s |' % (
            code(FQCN_PREFIX + role['name']), role['name'],
            cell(convert(first_sentence(main.get('short_description', '')), ctx)),
            ', '.join(code(ep) for ep in entry_points(role))))
    return '\n'.join(lines).rstrip('\n') + '\n'


# ---------------------------------------------------------------------------------------------
# Guide mapping


def variable_known(role, var):
    """``var``, ``var.sub`` or ``var[].sub`` declared in any entry point of the role."""
    parts = re.sub(r'\[[^\]]*\]', '', var).split('.')
    for spec in role['specs'].values():
        options = (spec or {}).get('options') or {}
        for i, part in enumerate(parts):
            if part not in options:
                break
            if i == len(parts) - 1:
                return True
            options = (options[part] or {}).get('options') or {}
    return False


def render_guide_mapping(mapping, roles, module_names, source='docs/guide-mapping.yml', incomplete=()):
    """Render docs/guide-mapping.md from the mapping; fail on unknown roles, variables or modules."""
    roles_by_name = {r['name']: r for r in roles}
    problems = []

    def md(text):
        return cell(str(text or '').strip())

    def where(row, label):
        role_cells, var_cells, module_cells = [], [], []
        for entry in row.get('roles') or []:
            name = entry.get('role')
            variables = entry.get('variables') or []
            role = roles_by_name.get(name)
            if name in incomplete:
                # --skip-incomplete: a role still being written; its variables are not checked.
                role_cells.append(code(name))
                var_cells.extend(code(v) for v in variables)
                continue
            if role is None:
                if entry.get('planned'):
                    role_cells.append('%s (planned)' % code(name))
                    if variables:
                        problems.append('%s: %s names variables of the planned role %s; list them when the role exists'
                                        % (source, label, name))
                    continue
                problems.append('%s: %s names the role %s, which has no roles/%s/meta/argument_specs.yml'
                                % (source, label, name, name))
                continue
            if entry.get('planned'):
                problems.append('%s: %s marks the role %s as planned, but it exists; drop "planned: true"'
                                % (source, label, name))
            role_cells.append('[%s](reference/roles/%s.md)' % (code(name), name))
            for var in variables:
                if not variable_known(role, var):
                    problems.append('%s: %s names the variable %s, which roles/%s/meta/argument_specs.yml does not declare'
                                    % (source, label, var, name))
                    continue
                top = re.sub(r'\[[^\]]*\]', '', var)
                var_cells.append('[%s](reference/roles/%s.md#%s)' % (code(var), name, option_anchor(top)))
        for module in row.get('modules') or []:
            if module not in module_names:
                problems.append('%s: %s names the module %s, which is not in plugins/modules/' % (source, label, module))
                continue
            module_cells.append('[%s](reference/modules/%s.md)' % (code(module), module))
        return ', '.join(role_cells), ', '.join(var_cells), ', '.join(module_cells)

    lines = [generated_header([source]), '']
    lines += [mapping.get('intro', '').rstrip('\n'), '']
    lines += ['## Section by section', '',
              '| Section | The guide | Today | Roles | Variables | Modules |',
              '|---|---|---|---|---|---|']
    for row in mapping.get('sections') or []:
        label = 'section %s' % row.get('section')
        role_cell, var_cell, module_cell = where(row, label)
        lines.append('| %s | %s | %s | %s | %s | %s |' % (
            md('%s %s' % (row.get('section', ''), row.get('title', ''))), md(row.get('guide')), md(row.get('today')),
            role_cell, var_cell, module_cell))
    lines += ['']
    if mapping.get('obsolete'):
        lines += [mapping.get('obsolete_intro', '').rstrip('\n'), '',
                  '| Guide (obsolete) | Section | Today | Roles | Variables |',
                  '|---|---|---|---|---|']
        for row in mapping['obsolete']:
            label = 'obsolete setting %s' % row.get('guide')
            role_cell, var_cell, _modules = where(row, label)
            lines.append('| %s | %s | %s | %s | %s |' % (
                md(row.get('guide')), md(row.get('section')), md(row.get('today')), role_cell, var_cell))
        lines += ['']
    if mapping.get('outro'):
        lines += [mapping['outro'].rstrip('\n'), '']
    if problems:
        raise DocsError('\n'.join(problems))
    return '\n'.join(lines).rstrip('\n') + '\n'


# ---------------------------------------------------------------------------------------------
# Links


LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def heading_slugs(text):
    slugs = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith('```'):
            in_code = not in_code
            continue
        if in_code or not line.startswith('#'):
            continue
        title = line.lstrip('#').strip().lower()
        slug = re.sub(r'[^\w\- ]', '', title).replace(' ', '-')
        slugs.add(slug)
    return slugs


def check_links(root, pages):
    """Relative links in docs/**/*.md must point at existing files and anchors."""
    problems = []
    docs = os.path.join(root, 'docs')
    files = sorted(glob.glob(os.path.join(docs, '**', '*.md'), recursive=True))
    contents = {os.path.normpath(p): read_text(p) for p in files}
    for rel, text in pages.items():
        contents[os.path.normpath(os.path.join(root, rel))] = text
    for path, text in sorted(contents.items()):
        in_code = False
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.startswith('```'):
                in_code = not in_code
            if in_code:
                continue
            for m in LINK.finditer(line):
                target = m.group(1) or m.group(2)
                if re.match(r'^[a-z][a-z0-9+.-]*:', target):
                    continue
                file_part, _sep, anchor = target.partition('#')
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                where = '%s:%d' % (os.path.relpath(path, root), lineno)
                if not os.path.exists(dest) and dest not in contents:
                    problems.append('%s: link to %s, which does not exist' % (where, target))
                    continue
                if anchor and dest.endswith('.md'):
                    dest_text = contents.get(dest)
                    if dest_text is None:
                        dest_text = read_text(dest)
                    if anchor not in set(ANCHOR.findall(dest_text)) | heading_slugs(dest_text):
                        problems.append('%s: link to %s, which has no anchor #%s' % (where, file_part or 'this page', anchor))
    return problems


# ---------------------------------------------------------------------------------------------
# Main


def build(root=ROOT, skip_incomplete=False, out=sys.stdout):
    """All generated pages: {path relative to root: text}."""
    module_paths = sorted(p for p in glob.glob(os.path.join(root, 'plugins', 'modules', '*.py'))
                          if not os.path.basename(p).startswith('_'))
    modules = [load_module(root, p) for p in module_paths]
    module_names = [m['name'] for m in modules]
    role_dirs = sorted(d for d in glob.glob(os.path.join(root, 'roles', '*')) if os.path.isdir(d))
    incomplete = set()
    if skip_incomplete:
        for d in role_dirs:
            if not os.path.exists(os.path.join(d, 'meta', 'argument_specs.yml')):
                print('skipped role %s: no meta/argument_specs.yml yet' % os.path.basename(d), file=out)
                incomplete.add(os.path.basename(d))
        role_dirs = [d for d in role_dirs if os.path.basename(d) not in incomplete]
    roles = [load_role(root, d) for d in role_dirs]
    problems = []
    for role in roles:
        problems.extend(check_role_defaults(role))
    if problems:
        raise DocsError('\n'.join(problems))
    pages = {}
    for module in modules:
        pages['docs/reference/modules/%s.md' % module['name']] = render_module(module, module_names)
    for role in roles:
        pages['docs/reference/roles/%s.md' % role['name']] = render_role(role, module_names)
    runtime_path = os.path.join(root, 'meta', 'runtime.yml')
    runtime = load_yaml(read_text(runtime_path), 'meta/runtime.yml') if os.path.exists(runtime_path) else {}
    pages['docs/reference/index.md'] = render_index(modules, roles, (runtime or {}).get('action_groups') or {})
    mapping_path = os.path.join(root, 'docs', 'guide-mapping.yml')
    if os.path.exists(mapping_path):
        mapping = load_yaml(read_text(mapping_path), 'docs/guide-mapping.yml') or {}
        pages['docs/guide-mapping.md'] = render_guide_mapping(mapping, roles, module_names, incomplete=incomplete)
    return pages


def stale_files(root, pages):
    """Generated pages that differ from the files on disk, and generated files nothing generates any more."""
    stale = []
    for rel, text in sorted(pages.items()):
        path = os.path.join(root, rel)
        current = read_text(path) if os.path.exists(path) else None
        if current != text:
            stale.append((rel, current, text))
    for path in sorted(glob.glob(os.path.join(root, 'docs', 'reference', '**', '*.md'), recursive=True)):
        rel = os.path.relpath(path, root).replace(os.sep, '/')
        if rel not in pages:
            stale.append((rel, read_text(path), None))
    return stale


def main(argv=None, root=ROOT, out=sys.stdout):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 when a generated file is out of date or a link is broken')
    parser.add_argument('--skip-incomplete', action='store_true',
                        help='skip roles that have no meta/argument_specs.yml yet (work in progress) instead of failing')
    args = parser.parse_args(argv)
    try:
        pages = build(root, args.skip_incomplete, out)
    except DocsError as exc:
        print('ERROR: %s' % exc, file=out)
        return 1
    stale = stale_files(root, pages)
    if args.check:
        problems = check_links(root, pages)
        for rel, current, text in stale:
            if text is None:
                print('%s is no longer generated by anything: remove it (run python %s)' % (rel, GENERATOR), file=out)
            elif current is None:
                print('%s is missing: run python %s' % (rel, GENERATOR), file=out)
            else:
                print('%s is out of date: run python %s' % (rel, GENERATOR), file=out)
                diff = difflib.unified_diff(current.splitlines(), text.splitlines(), rel + ' (on disk)',
                                            rel + ' (generated)', lineterm='', n=1)
                for line in list(diff)[:40]:
                    print('    ' + line, file=out)
        for problem in problems:
            print('broken link: %s' % problem, file=out)
        if stale or problems:
            return 1
        print('docs are up to date: %d generated files' % len(pages), file=out)
        return 0
    for rel, _current, text in stale:
        path = os.path.join(root, rel)
        if text is None:
            os.remove(path)
            print('removed %s' % rel, file=out)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        print('wrote %s' % rel, file=out)
    problems = check_links(root, pages)
    for problem in problems:
        print('broken link: %s' % problem, file=out)
    print('%d generated files, %d updated' % (len(pages), len(stale)), file=out)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
