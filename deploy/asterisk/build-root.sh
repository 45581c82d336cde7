#!/usr/bin/env bash
# The Asterisk image's root file system: Debian unstable's Asterisk 22 (it needs a newer libc
# than the bookworm base), debootstrapped and `docker import`ed, as no image can be pulled.
# Idempotent: skipped when the image is there. As root (debootstrap); ~2 min, ~500 MB.
#   deploy/asterisk/build-root.sh [IMAGE]
set -euo pipefail
image=${1:-voice-agent-asterisk-root:sid}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "[asterisk] $image is there"
    exit 0
fi
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
command -v debootstrap >/dev/null || { $sudo apt-get update -qq && $sudo apt-get install -y -qq debootstrap >/dev/null; }
root=$(mktemp -d)
trap '$sudo rm -rf "$root"' EXIT
echo "[asterisk] debootstrap of Debian sid with Asterisk into $root (about 2 min; progress follows)"
# debootstrap's own lines, one in ten of the package steps.
$sudo debootstrap --variant=minbase \
    --include=asterisk,asterisk-modules,asterisk-config,asterisk-core-sounds-en \
    sid "$root" 2>&1 | awk '/^I: (Retrieving|Validating|Unpacking|Configuring)/ { if (n++ % 10) next } { print "[asterisk] " $0; fflush() }'
$sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "[asterisk] importing $image"
$sudo tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["asterisk", "-f"]' - "$image" >/dev/null
echo "[asterisk] $image ready"
