#!/usr/bin/env bash
# Build (once) and cache a bootable Debian root filesystem for qemu test VMs.
#
# The image is keyed by a hash of the recipe below, cached outside the repository under
#   ${GVL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gaudi-vllm-lmcache}/vm/<key>/
# and holds base.raw (ext4 root fs), vmlinuz, initrd.img and an ssh key pair (id_ed25519)
# whose public half is root's authorized key inside the image. Tests boot copy-on-write
# overlays of base.raw (scripts/vm-up.sh), so the cached image itself is never modified.
#
# Prints the cache directory on the last line of stdout. Installs the host tools it needs
# (mmdebstrap, qemu-system-x86, qemu-utils, e2fsprogs, openssh-client) with apt when missing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

suite="${GVL_VM_SUITE:-bookworm}"
mirror="${GVL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
size="${GVL_VM_DISK_SIZE:-3G}"
packages="systemd,systemd-sysv,udev,python3,python3-apt,openssh-server,nfs-kernel-server,nfs-common,linux-image-cloud-amd64,initramfs-tools,iproute2,kmod,procps"
recipe_version=3
key="$(printf '%s|%s|%s|%s|v%s' "$suite" "$mirror" "$packages" "$size" "$recipe_version" | sha256sum | cut -c1-12)"
dir="$CACHE_DIR/vm/$key"

ensure_host_tools() {
  local missing=()
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
  command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
  command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
  command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
  if ((${#missing[@]})); then
    echo "Installing host tools: ${missing[*]}" >&2
    apt_get_install --no-install-recommends "${missing[@]}" >&2
  fi
}

ensure_host_tools

if [[ -s "$dir/base.raw" && -s "$dir/vmlinuz" && -s "$dir/initrd.img" && -s "$dir/id_ed25519" ]]; then
  echo "VM image $key is cached" >&2
  echo "$dir"
  exit 0
fi

started=$SECONDS
mkdir -p "$dir"
work="$(mktemp -d "$dir/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

[[ -s "$dir/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -C "gvl-test-vm-$key" -f "$dir/id_ed25519"

echo "Building VM image $key with mmdebstrap ($suite)" >&2
# The hooks are run by mmdebstrap, which sets "$1" to the root directory.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --customize-hook='echo kvstorage-vm > "$1/etc/hostname"' \
  --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 kvstorage-vm\n" > "$1/etc/hosts"' \
  --customize-hook='printf "/dev/vda / ext4 defaults 0 1\n" > "$1/etc/fstab"' \
  --customize-hook='printf "nameserver 10.0.2.3\n" > "$1/etc/resolv.conf"' \
  --customize-hook='mkdir -p "$1/etc/systemd/network" && printf "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/10-eth0.network"' \
  --customize-hook="mkdir -p \"\$1/root/.ssh\" && cp '$dir/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\" && chmod 700 \"\$1/root/.ssh\" && chmod 600 \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh >/dev/null 2>&1' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service >/dev/null 2>&1 || true' \
  --customize-hook='chroot "$1" systemctl mask getty.target getty-static.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount fstrim.timer e2scrub_all.timer man-db.timer >/dev/null 2>&1 || true' \
  --customize-hook='printf "MODULES=list\n" > "$1/etc/initramfs-tools/conf.d/gvl-small.conf" && printf "virtio_pci\nvirtio_blk\n" >> "$1/etc/initramfs-tools/modules" && chroot "$1" update-initramfs -u -k all >/dev/null' \
  --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
  "$suite" "$work/root" "$mirror"

cp "$work"/root/boot/vmlinuz-* "$work/vmlinuz"
cp "$work"/root/boot/initrd.img-* "$work/initrd.img"
rm -f "$work/base.raw"
mkfs.ext4 -q -F -L gvl-root -d "$work/root" "$work/base.raw" "$size"
mv "$work/vmlinuz" "$work/initrd.img" "$dir/"
mv "$work/base.raw" "$dir/base.raw"
echo "VM image $key built in $((SECONDS - started)) s" >&2
echo "$dir"
