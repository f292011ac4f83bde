#!/usr/bin/env bash
# A local Debian base image for `make image BASE=...` where no container registry can be reached
# (docs/DEPLOY.md): debootstrap a minimal Debian 12 root from the Debian archive and import it.
#   tools/docker_base.sh [NAME]        # default NAME: stvm-base:bookworm
# Needs root (debootstrap), docker and debootstrap (apt-get install docker.io debootstrap).
# Idempotent: an existing image of that name is kept.
set -euo pipefail
NAME=${1:-stvm-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
need() { command -v "$1" > /dev/null || { echo "docker_base.sh: '$1' not found; install it with: $2" >&2; exit 2; }; }
need docker "apt-get install docker.io (then start dockerd)"
need debootstrap "apt-get install debootstrap"
docker info > /dev/null 2>&1 || { echo "docker_base.sh: no Docker engine answers; start it (dockerd &, or systemctl start docker)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "docker_base.sh: debootstrap needs root; run it with sudo" >&2; exit 2; }
if docker image inspect "$NAME" > /dev/null 2>&1; then
  echo "docker_base.sh: $NAME exists"; exit 0
fi
ROOTFS=$(mktemp -d /var/tmp/stvm-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1 \
  || { tail -5 "$ROOTFS.log" >&2; echo "docker_base.sh: debootstrap failed (log: $ROOTFS.log)" >&2; exit 1; }
rm -f "$ROOTFS.log"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | docker import -c 'CMD ["/bin/bash"]' - "$NAME" > /dev/null
echo "docker_base.sh: imported $NAME ($(docker image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}'))"
