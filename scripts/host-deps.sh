#!/usr/bin/env bash
# Install the Debian packages the test harness needs on the control node, when missing:
# image and VM builds (mmdebstrap, qemu), the signed stand-in repository (gnupg, dpkg-dev),
# ssh to the test VMs, promtool for the observability rules' tests.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

declare -A need=(
  [mmdebstrap]=mmdebstrap
  [gpg]=gnupg
  [dpkg-scanpackages]=dpkg-dev
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [curl]=curl
  [promtool]=prometheus
  [shellcheck]=shellcheck
)
missing=()
for tool in "${!need[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${need[$tool]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "Installing host packages: ${missing[*]}"
  apt_get_install --no-install-recommends "${missing[@]}" >/dev/null
  # Only promtool is wanted from the prometheus package: no server keeps running on the host.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    pkill -x prometheus 2>/dev/null || true
  fi
else
  echo "Host packages present"
fi
