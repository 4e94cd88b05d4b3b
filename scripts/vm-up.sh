#!/usr/bin/env bash
# Boot one throw-away Debian VM under qemu (TCG) from the cached image of scripts/vm-image.sh.
#
#   scripts/vm-up.sh NAME STATE_DIR
#
# The VM runs on a copy-on-write overlay (STATE_DIR/NAME.qcow2 backed by the cached base.raw),
# so every boot starts clean. SSH is forwarded from a free port on 127.0.0.1. The script waits
# until SSH answers and prints one JSON object (name, address, port, user, identity_file, pid,
# boot_s) on the last line. Console output: STATE_DIR/NAME.console. Stop it with vm-down.sh.
# KVM is not used: on the machines this is written for, /dev/kvm guests hang, TCG works.
# mitigations=off: page-table isolation makes every syscall expensive under TCG.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

name="${1:?usage: vm-up.sh NAME STATE_DIR}"
state="${2:?usage: vm-up.sh NAME STATE_DIR}"
mem="${GVL_VM_MEM:-2048}"
cpus="${GVL_VM_CPUS:-2}"
boot_timeout="${GVL_VM_BOOT_TIMEOUT:-600}"

image_dir="$("$(dirname "$0")/vm-image.sh" | tail -n 1)"
mkdir -p "$state"
overlay="$state/$name.qcow2"
pidfile="$state/$name.pid"
console="$state/$name.console"

if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  die "VM $name is already running (pid $(cat "$pidfile")); run vm-down.sh first"
fi

rm -f "$overlay" "$console"
qemu-img create -q -f qcow2 -b "$image_dir/base.raw" -F raw "$overlay"

# A free loopback port (the kernel picks it; a race with another process is unlikely and
# makes qemu fail to start, which is reported below).
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

started=$SECONDS
qemu-system-x86_64 -accel tcg -m "$mem" -smp "$cpus" -name "$name" \
  -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" \
  -append "console=ttyS0 root=/dev/vda rw net.ifnames=0 quiet mitigations=off" \
  -drive "file=$overlay,format=qcow2,if=virtio" \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
  -display none -serial "file:$console" -monitor none \
  -daemonize -pidfile "$pidfile"

ssh_opts=(-i "$image_dir/id_ed25519" -p "$port" -o BatchMode=yes -o ConnectTimeout=30
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
until ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null; do
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    tail -n 30 "$console" >&2 || true
    die "VM $name (qemu) exited during boot"
  fi
  if ((SECONDS - started > boot_timeout)); then
    tail -n 30 "$console" >&2 || true
    die "VM $name: no SSH on 127.0.0.1:$port within $boot_timeout s"
  fi
  sleep 2
done
boot_s=$((SECONDS - started))
echo "VM $name answers SSH on 127.0.0.1:$port after $boot_s s" >&2
printf '{"name": "%s", "address": "127.0.0.1", "port": %s, "user": "root", "identity_file": "%s", "pid": %s, "boot_s": %s}\n' \
  "$name" "$port" "$image_dir/id_ed25519" "$(cat "$pidfile")" "$boot_s"
