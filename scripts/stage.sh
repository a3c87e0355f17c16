#!/usr/bin/env bash
# Run one stage of a make target and print how long it took.
#   stage.sh NAME COMMAND...   run COMMAND, record NAME's duration
#   stage.sh --summary         print every recorded stage of this run
set -uo pipefail
LOG="${ESTAFETA_STAGE_LOG:-${TMPDIR:-/tmp}/estafeta-stages}"
mkdir -p "$(dirname "$LOG")"
if [ "${1:-}" = "--summary" ]; then
    echo "==== stage times ===="
    [ -f "$LOG" ] && column -t "$LOG" 2>/dev/null || cat "$LOG"
    rm -f "$LOG"
    exit 0
fi
name=$1; shift
echo "==== $name ===="
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
status=ok; [ $rc = 0 ] || status=FAILED
printf '%s %ss %s\n' "$name" "$secs" "$status" >>"$LOG"
echo "==== $name: $status in ${secs}s ===="
if [ $rc != 0 ]; then
    echo "==== stage times ===="; cat "$LOG"; rm -f "$LOG"
fi
exit $rc
