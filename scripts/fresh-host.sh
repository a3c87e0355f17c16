#!/usr/bin/env bash
# Bring this machine back to the state of a fresh one, as far as the harness is concerned, so that
# CI proves the set-up a new machine goes through (`.ci/run` calls this when CI=true):
#
#   * no Docker engine runs (a dockerd started by the harness is stopped);
#   * the host packages the harness installs are removed: docker.io (with containerd and runc),
#     debootstrap and the Postfix binaries.
#
# Removed, not purged: Docker's data (/var/lib/docker, so the test images stay cached and CI
# rebuilds them only when their recipe changes) and apt's downloaded packages stay, so setting
# the machine up again costs seconds, not a download. The docker client of the machine image,
# if any, is not a package and stays too.
#
#   scripts/fresh-host.sh --yes        do it (refused without --yes, unless CI=true)
#   scripts/fresh-host.sh --dry-run    print what would be done
set -euo pipefail

PKGS="docker.io containerd runc debootstrap postfix postfix-pcre postfix-lmdb postfix-cdb"
DOCKER_PIDFILE="${ESTAFETA_DOCKER_PIDFILE:-/var/run/docker.pid}"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

DRY_RUN=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    --yes) ;;
    "") [ "${CI:-}" = true ] || die "this stops Docker and removes packages: run it with --yes (or --dry-run)" ;;
    *) die "usage: $0 [--yes|--dry-run]" ;;
esac

run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "$*"
    else
        "$@"
    fi
}

installed=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && installed+=("$p")
done

pid=$(cat "$DOCKER_PIDFILE" 2>/dev/null || true)
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    say "stopping dockerd (pid $pid)"
    if [ "$DRY_RUN" = 1 ]; then
        echo "kill -TERM $pid"
    else
        if [ -d /run/systemd/system ]; then
            systemctl stop docker.socket docker.service >/dev/null 2>&1 || true
        fi
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            [ -d "/proc/$pid" ] || break
            sleep 1
        done
        [ ! -d "/proc/$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    fi
fi

if [ ${#installed[@]} -gt 0 ]; then
    say "removing ${installed[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get -q -o DPkg::Lock::Timeout=600 remove -y "${installed[@]}"
else
    say "none of the harness's host packages is installed"
fi

if [ "$DRY_RUN" = 0 ]; then
    for p in $PKGS; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            die "$p is still installed: not a fresh machine"
        fi
    done
    for cmd in /usr/sbin/dockerd /usr/bin/dockerd /usr/sbin/debootstrap /usr/sbin/postconf; do
        [ ! -e "$cmd" ] || die "$cmd is still there: not a fresh machine"
    done
    if docker info >/dev/null 2>&1; then
        # Not one this harness started (its pid file names no dockerd): leave it running.
        say "WARNING: a Docker engine that the harness did not start still answers; it is left running"
    else
        say "fresh: no Docker engine, no docker.io, debootstrap or Postfix binaries"
    fi
fi
