#!/usr/bin/env bash
# Install the Postfix binaries the unit tests run against scratch directories.
# Debconf answers "No configuration": nothing is configured or started on this machine.
set -euo pipefail
PKGS="postfix postfix-pcre postfix-lmdb postfix-cdb"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && { echo "Postfix binaries present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ERROR: the unit tests need:$missing (apt-get install$missing)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q >/dev/null
apt-get install -y -q $missing >/dev/null
echo "installed:$missing"
