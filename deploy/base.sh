#!/usr/bin/env bash
# Builds the Debian bookworm base image from Debian packages alone (debootstrap, then `docker import`), for
# machines that reach Debian's mirror and PyPI but no container registry (this project's CI). Users with a
# registry never need it: every Dockerfile here defaults to a public base image.
# Usage: deploy/base.sh [TAG] [MIRROR]; does nothing when TAG exists already (the build takes minutes).
set -euo pipefail
tag="${1:-aisle-base:bookworm}"
mirror="${2:-${AISLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
# minbase: apt, dpkg and essentials, no init system: what a container runs on (about 80 MB).
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
SOURCES
# Images are built from it again and again: keep apt's caches out of their layers.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "built $tag from $mirror"
