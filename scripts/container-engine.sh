#!/usr/bin/env bash
# Make sure a Docker engine answers, and build the local Debian systemd images the
# Molecule scenarios and the demo converge into.
#
#   scripts/container-engine.sh engine    # a Docker engine answers (installs/starts one if needed)
#   scripts/container-engine.sh images    # engine + estafeta/debian-systemd:{bookworm,trixie}
#
# Images are built with debootstrap + `docker import` (no registry needed), tagged with a hash
# of the recipe below and rebuilt only when the recipe changes. The stable tags
# estafeta/debian-systemd:bookworm and :trixie always point at the current build.
# Set ESTAFETA_BASE_IMAGE_FROM_REGISTRY=1 on a machine that reaches Docker Hub to start from
# the official debian images instead of debootstrap (never required).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE="${ESTAFETA_CACHE:-$ROOT/.cache}"
IMAGE_REPO="${ESTAFETA_IMAGE_REPO:-estafeta/debian-systemd}"
MIRROR="${ESTAFETA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITES="${ESTAFETA_SUITES:-bookworm trixie}"
DOCKERD_LOG="${ESTAFETA_DOCKERD_LOG:-/var/log/estafeta-dockerd.log}"

# What goes into every test image: systemd as PID 1, Python for Ansible, the tools the
# verifiers use (swaks with TLS support, openssl, ss, ps, dig/nslookup-free).
BASE_PACKAGES="python3,python3-apt,systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps,openssl,sudo"
EXTRA_PACKAGES="swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

# The pid file of a dockerd started here (dockerd's default, also used by Debian's service).
DOCKER_PIDFILE="${ESTAFETA_DOCKER_PIDFILE:-/var/run/docker.pid}"

# True when the pid file names a running dockerd.
dockerd_running() {
    local pid
    pid=$(cat "$DOCKER_PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

ensure_engine() {
    if engine_answers; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "No Docker engine answers. Start one (sudo systemctl start docker) or run as root so this script can install and start Debian's docker.io."
    # Installs docker.io (and debootstrap) when missing, in one apt transaction.
    "$HERE/host-deps.sh" containers
    if ! dockerd_running; then
        # A killed engine leaves its pid file behind, and dockerd refuses to start while the file
        # names a live process (any process, once the pid is reused).
        if [ -e "$DOCKER_PIDFILE" ]; then
            say "removing the stale pid file $DOCKER_PIDFILE (no dockerd runs)"
            rm -f "$DOCKER_PIDFILE"
        fi
        if [ -d /run/systemd/system ] && systemctl cat docker.service >/dev/null 2>&1; then
            systemctl start docker >/dev/null 2>&1 || true
        fi
    fi
    if ! engine_answers && ! dockerd_running; then
        say "starting dockerd in the background (log: $DOCKERD_LOG)"
        setsid nohup dockerd --pidfile "$DOCKER_PIDFILE" >"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
        engine_answers && { say "Docker engine is up"; return 0; }
        sleep 1
    done
    die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

recipe_hash() {
    # Everything that changes the image: this script's recipe lines and the suite name.
    {
        printf '%s\n' "$1" "$BASE_PACKAGES" "$EXTRA_PACKAGES" "$MIRROR"
        sed -n '/^build_rootfs()/,/^}/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-12
}

build_rootfs() {
    local suite=$1 rootfs=$2
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; die "debootstrap $suite failed (log: $rootfs.log)"; }
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    # Perl modules are installed after debootstrap: its resolver fails on virtual perlapi packages.
    chroot "$rootfs" /bin/sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $EXTRA_PACKAGES" \
        >>"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; die "installing test tools into $suite failed (log: $rootfs.log)"; }
    # A container has no consoles or udev: keep systemd quiet and quick.
    chroot "$rootfs" /bin/sh -c '
        systemctl mask getty@tty1.service serial-getty@.service systemd-udevd.service \
            systemd-logind.service console-getty.service systemd-firstboot.service >/dev/null 2>&1 || true
        systemctl set-default multi-user.target >/dev/null 2>&1 || true
        # Do not empty /tmp at boot: Ansible may already be running a module from there while
        # systemd is still starting (systemd-tmpfiles-setup would delete its files).
        printf "%s\n" "d /tmp 1777 root root -" >/etc/tmpfiles.d/tmp.conf
        printf "%s\n" "Acquire::Languages \"none\";" >/etc/apt/apt.conf.d/99estafeta-no-translations
        printf "%s\n" "Binary::apt::APT::Keep-Downloaded-Packages \"true\";" >/etc/apt/apt.conf.d/99estafeta-keep-debs
        apt-get clean; rm -rf /var/lib/apt/lists/* /var/lib/apt/periodic/update-success-stamp
        # Package lists are left out: an old timestamp makes apt (cache_valid_time) fetch fresh ones.
        touch -d @0 /var/lib/apt/lists
        : >/etc/machine-id'
    rm -f "$rootfs/etc/resolv.conf"
}

build_image() {
    local suite=$1
    local hash tag stable
    hash=$(recipe_hash "$suite")
    tag="$IMAGE_REPO:$suite-$hash"
    stable="$IMAGE_REPO:$suite"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        say "image $tag is current (recipe unchanged)"
    elif [ "${ESTAFETA_BASE_IMAGE_FROM_REGISTRY:-0}" = 1 ]; then
        say "building $tag from the official debian:$suite image"
        printf 'FROM debian:%s\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y %s %s && apt-get clean\nCMD ["/lib/systemd/systemd"]\n' \
            "$suite" "${BASE_PACKAGES//,/ }" "$EXTRA_PACKAGES" | docker build -t "$tag" - >/dev/null
    else
        [ "$(id -u)" = 0 ] || die "building images with debootstrap needs root"
        local work
        work=$(mktemp -d "${TMPDIR:-/tmp}/estafeta-rootfs.XXXXXX")
        say "building $tag with debootstrap (about a minute)"
        local start=$SECONDS
        build_rootfs "$suite" "$work/rootfs"
        tar -C "$work/rootfs" -c . | docker import \
            --change 'CMD ["/lib/systemd/systemd"]' --change 'ENV container=docker' \
            - "$tag" >/dev/null
        rm -rf "$work"
        say "built $tag in $((SECONDS - start)) s"
    fi
    docker tag "$tag" "$stable"
}

ensure_images() {
    # Host packages (docker.io, debootstrap) first, in one apt transaction, before anything runs
    # in parallel: two apt-get calls at the same time collide on the dpkg lock.
    "$HERE/host-deps.sh" containers
    ensure_engine
    # Packages downloaded inside test containers are kept per distribution and shared by every
    # scenario. As root the cache lives outside the checkout, so fresh clones (CI) reuse it too.
    if [ ! -e "$CACHE/apt" ]; then
        mkdir -p "$CACHE"
        if [ "$(id -u)" = 0 ]; then
            mkdir -p /var/cache/estafeta-apt
            ln -s /var/cache/estafeta-apt "$CACHE/apt"
        else
            mkdir -p "$CACHE/apt"
        fi
    fi
    # The builds run in parallel: nothing below may call apt-get on this machine (the builds'
    # own apt-get calls run inside their chroots).
    local pids=() suite
    for suite in $SUITES; do
        mkdir -p "$CACHE/apt/$suite/partial"
        build_image "$suite" &
        pids+=($!)
    done
    local rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    [ $rc = 0 ] || die "building the test images failed"
}

case "${1:-images}" in
    engine) ensure_engine ;;
    images) ensure_images ;;
    *) die "usage: $0 engine|images" ;;
esac
