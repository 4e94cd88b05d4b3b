#!/usr/bin/env bash
# Build the systemd base image for Molecule from Debian packages (mmdebstrap + docker import).
# The image tag is a hash of the recipe, so a second run reuses it; the root-fs tarball is also
# cached so a restarted engine can re-import it without rebuilding.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

suite="${GVL_IMAGE_SUITE:-bookworm}"
mirror="${GVL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3,python3-apt,systemd,systemd-sysv,dbus,sudo,ca-certificates,iproute2,procps"
key="$(printf '%s|%s|%s|v1' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)"
image="$IMAGE_REPO:$key"
tarball="$CACHE_DIR/images/debian-$suite-systemd-$key.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "Base image $image is cached"
else
  if [[ ! -s "$tarball" ]]; then
    command -v mmdebstrap >/dev/null 2>&1 || apt_get_install mmdebstrap >/dev/null
    mkdir -p "$(dirname "$tarball")"
    echo "Building $image with mmdebstrap ($suite)"
    # The hooks are run by mmdebstrap, which sets "$1" to the root directory.
    # shellcheck disable=SC2016
    mmdebstrap --quiet --variant=minbase --include="$packages" \
      --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
      --customize-hook='chroot "$1" systemctl mask getty.target systemd-logind.service console-getty.service >/dev/null 2>&1 || true' \
      "$suite" "${tarball%.tar}.partial.tar" "$mirror"
    mv "${tarball%.tar}.partial.tar" "$tarball"
  fi
  echo "Importing $tarball as $image"
  docker import -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' "$tarball" "$image" >/dev/null
fi
docker tag "$image" "$IMAGE_REPO:latest"
echo "Image ready: $IMAGE_REPO:latest ($image)"
