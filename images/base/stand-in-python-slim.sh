#!/usr/bin/env bash
# A STAND-IN for docker.io/library/python:3.11.11-slim-bookworm, for `make images-smoke` on a machine
# that has Debian's mirror but not Docker Hub: Debian bookworm (debootstrap, minbase) with Debian's
# python3 (3.11) and a virtual environment at /usr/local, so that `python`, `pip` and installed console
# scripts sit in /usr/local/bin as they do in the official image. It is NOT the official image
# (that one builds CPython 3.11.11 from source); the kind workflow pulls the real one.
#
# Cached twice: the image in the container storage (skipped when present) and the root file
# system's tarball under $IMAGES_CACHE (re-imported when the storage was wiped).
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11.11-slim-bookworm}
IMAGES_CACHE=${IMAGES_CACHE:-/var/tmp/tracemesh-images}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PODMAN=${PODMAN:-podman}

# The recipe's own hash names the tarball and labels the image: a changed recipe never reuses either.
recipe=$(sha256sum "$0" | cut -c1-12)
if [ "$($PODMAN image inspect --format '{{ index .Labels "tracemesh.stand-in" }}' "$BASE_IMAGE" 2>/dev/null)" = "$recipe" ]; then
  echo "base: $BASE_IMAGE is present (cached stand-in, not rebuilt)"
  exit 0
fi

tarball="$IMAGES_CACHE/python-slim-bookworm-$recipe.tar"
if [ ! -f "$tarball" ]; then
  mkdir -p "$IMAGES_CACHE"
  rootfs=$(mktemp -d "$IMAGES_CACHE/rootfs.XXXXXX")
  # Never rm -rf through a mounted /proc or /sys (debootstrap mounts both while it runs).
  trap 'for m in proc sys; do umount "$rootfs/$m" 2>/dev/null || true; done
        mountpoint -q "$rootfs/proc" || mountpoint -q "$rootfs/sys" || rm -rf "$rootfs"' EXIT
  # libpython3.11-dev: Python's headers, which the official image has too (mypyc compiles against them).
  echo "base: debootstrap bookworm (minbase + python3, python3-venv, libpython3.11-dev) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase --include=python3,python3-venv,libpython3.11-dev,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$IMAGES_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$IMAGES_CACHE/debootstrap.log"; exit 1; }
  # A TLS-intercepting egress (a CI sandbox's) signs with a local CA: the builds' pip and apt
  # must trust what the host trusts, or every download fails.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" update-ca-certificates >/dev/null
  # pip here is Debian's (python3-venv's ensurepip wheel); pip reads the system CA store through this.
  chroot "$rootfs" python3 -m venv /usr/local
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  umount "$rootfs/proc"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi

echo "base: importing $tarball as $BASE_IMAGE (a stand-in)"
$PODMAN import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL tracemesh.stand-in=$recipe" \
  --message "stand-in for python:3.11.11-slim-bookworm: debootstrap bookworm + Debian python3" \
  "$tarball" "$BASE_IMAGE" >/dev/null
