#!/usr/bin/env bash
# Run `ansible-test sanity` on the working copy.
#
# ansible-test needs the collection at a path ending in ansible_collections/estafeta/postfix,
# so the tracked and new (not ignored) files are copied into .cache/sanity/ first. The copy
# is a git repository of its own, so ansible-test sees exactly the files of the working copy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
DEST="$ROOT/.cache/sanity/ansible_collections/estafeta/postfix"
PY=3.11

# ansible-test bootstraps pip in each test virtualenv with a "get-pip" script that it downloads,
# or takes from its cache when a copy is there. Machines without access to that download get this
# stand-in in the cache: it does the same job with the interpreter's own ensurepip (run in a
# child process, so pip keeps the machine's CA settings), then installs what was asked.
install_get_pip_standin() {
    local cache="$HOME/.ansible/test/cache"
    local version
    # The pip version this ansible-test asks for (24.2 for ansible-core 2.19).
    version=$(grep -oP "pip='\K[0-9.]+" "$VENV"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
    version=${version:-24.2}
    version=${version//./_}
    local target="$cache/get_pip_${version}.py"
    [ -s "$target" ] && return 0
    mkdir -p "$cache"
    cat >"$target" <<'EOF'
"""Stand-in for get-pip.py: bootstrap pip with ensurepip, then install what was asked."""
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
if args:
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
EOF
}

install_get_pip_standin

rm -rf "$DEST"
mkdir -p "$DEST"
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$DEST"
cd "$DEST"
git init -q . && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity --no-verify
"$VENV/bin/ansible-test" sanity --venv --python "$PY" --color no "$@"
