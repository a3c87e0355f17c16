#!/usr/bin/env bash
# Run Molecule scenarios, several at a time, each with its own log; print a summary.
#   molecule-all.sh JOBS [SCENARIO...]      (default: every scenario under molecule/)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${1:-2}; shift || true
LOGS="$ROOT/.cache/molecule-logs"
mkdir -p "$LOGS"
cd "$ROOT"
if [ $# -gt 0 ]; then
    scenarios=("$@")
else
    mapfile -t scenarios < <(for f in molecule/*/molecule.yml; do basename "$(dirname "$f")"; done)
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "no Molecule scenario found" >&2; exit 1; }

run_one() {
    local s=$1 start rc
    start=$(date +%s)
    echo "---- molecule: $s started"
    # Container and network names are per scenario: one run of a scenario at a time on this machine
    # (another checkout may be running the same one).
    flock "${TMPDIR:-/tmp}/estafeta-molecule-$s.lock" molecule test -s "$s" >"$LOGS/$s.log" 2>&1
    rc=$?
    local secs=$(( $(date +%s) - start ))
    if [ $rc = 0 ]; then
        echo "---- molecule: $s passed in ${secs}s"
        echo "$s ${secs}s passed" >"$LOGS/$s.result"
    else
        echo "---- molecule: $s FAILED in ${secs}s (log: $LOGS/$s.log); last lines:"
        tail -n 60 "$LOGS/$s.log" | sed "s/^/[$s] /"
        echo "$s ${secs}s FAILED" >"$LOGS/$s.result"
    fi
    return $rc
}
export -f run_one
export LOGS
rm -f "$LOGS"/*.result
printf '%s\n' "${scenarios[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
rc=$?
echo "==== molecule summary ===="
cat "$LOGS"/*.result 2>/dev/null | column -t
exit $rc
