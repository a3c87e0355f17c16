#!/usr/bin/env bash
# Install the Debian packages the harness needs on this machine, all in ONE apt transaction, before
# any step that runs in parallel (two apt-get calls at the same time collide on the dpkg lock).
#
#   scripts/host-deps.sh [--dry-run] [all|containers|unit]      (default: all)
#
#   containers  docker.io (unless a Docker engine answers or one is installed) and debootstrap
#               (unless ESTAFETA_BASE_IMAGE_FROM_REGISTRY=1): the test images and the demo
#   unit        the Postfix binaries the unit tests run against scratch directories; debconf
#               answers "No configuration", so nothing is configured or started on this machine
#   all         both (what `make test` needs)
#
# --dry-run prints what would be installed and the apt-get commands, and changes nothing.
# Another apt or dpkg run on the machine (unattended upgrades, another checkout) is waited for.
set -euo pipefail

DRY_RUN=0
if [ "${1:-}" = --dry-run ]; then DRY_RUN=1; shift; fi
PROFILE=${1:-all}
LOCK="${ESTAFETA_HOST_DEPS_LOCK:-${TMPDIR:-/tmp}/estafeta-host-deps.lock}"
APT_OPTS=(-q -o DPkg::Lock::Timeout=600)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

container_packages() {
    # A Docker engine: an answering one is used as it is; Debian's docker.io, Docker's docker-ce and
    # moby-engine all bring dockerd (scripts/container-engine.sh starts it).
    if ! docker info >/dev/null 2>&1 && ! installed docker.io && ! installed docker-ce && ! installed moby-engine; then
        echo docker.io
    fi
    [ "${ESTAFETA_BASE_IMAGE_FROM_REGISTRY:-0}" = 1 ] || echo debootstrap
}

unit_packages() { echo postfix postfix-pcre postfix-lmdb postfix-cdb; }

case "$PROFILE" in
    all) wanted="$(container_packages) $(unit_packages)" ;;
    containers) wanted="$(container_packages)" ;;
    unit) wanted="$(unit_packages)" ;;
    *) die "usage: $0 [--dry-run] all|containers|unit" ;;
esac

find_missing() {
    missing=()
    local p
    for p in $wanted; do
        installed "$p" || missing+=("$p")
    done
}

find_missing
if [ ${#missing[@]} = 0 ]; then
    say "host packages present ($PROFILE)"
    exit 0
fi

update=(apt-get "${APT_OPTS[@]}" update)
install=(apt-get "${APT_OPTS[@]}" install -y "${missing[@]}")
if [ "$DRY_RUN" = 1 ]; then
    echo "would install: ${missing[*]}"
    echo "${update[*]}"
    echo "${install[*]}"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})"
fi

export DEBIAN_FRONTEND=noninteractive
# Our own concurrent runs (two checkouts, two make targets) wait for each other here.
exec 9>"$LOCK"
flock 9
find_missing
[ ${#missing[@]} != 0 ] || { say "host packages present ($PROFILE)"; exit 0; }
install=(apt-get "${APT_OPTS[@]}" install -y "${missing[@]}")
say "installing ${missing[*]} (one apt transaction)"
if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi
"${update[@]}" >/dev/null || die "apt-get update failed: no Debian package mirror reachable?"
"${install[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
say "installed ${missing[*]}"
