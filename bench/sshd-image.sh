#!/usr/bin/env bash
# Build the benchmark's fleet image estafeta/bench-sshd:SUITE from the local
# estafeta/debian-systemd:SUITE image: openssh-server installed, root login by key only,
# package lists removed and dated long ago (a fresh host whose lists are stale).
# No Dockerfile: a container, apt-get, docker commit.
# Rebuilt only when the base image or this recipe changed (kept as a label).
set -euo pipefail
SUITE=${1:-bookworm}
BASE=estafeta/debian-systemd:$SUITE
IMAGE=estafeta/bench-sshd:$SUITE
# The base image's id and this recipe's checksum: rebuild when either changes.
STAMP="$(docker image inspect -f '{{.Id}}' "$BASE")-$(sha256sum "$0" | cut -c1-12)"
if [ "$(docker image inspect -f '{{index .Config.Labels "bench.stamp"}}' "$IMAGE" 2>/dev/null || true)" = "$STAMP" ]; then
    echo "$IMAGE is up to date"
    exit 0
fi
NAME=bench-image-build-$$
trap 'docker rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$NAME" "$BASE" sleep infinity >/dev/null
docker exec -e DEBIAN_FRONTEND=noninteractive "$NAME" sh -c '
    apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends openssh-server >/dev/null &&
    printf "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n" > /etc/ssh/sshd_config.d/bench.conf &&
    systemctl enable ssh >/dev/null 2>&1 &&
    apt-get clean && rm -rf /var/lib/apt/lists/* /var/lib/apt/periodic/update-success-stamp &&
    touch -d 2000-01-01 /var/lib/apt/lists'
docker commit --change 'CMD ["/lib/systemd/systemd"]' --change "LABEL bench.stamp=$STAMP" "$NAME" "$IMAGE" >/dev/null
echo "built $IMAGE"
