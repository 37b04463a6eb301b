#!/usr/bin/env bash
# run.sh: runs built test binaries under another kernel, in a VM booted with this
# machine's own root filesystem (virtme-ng over qemu; software emulation, since KVM
# trips over an MSR here). matrix.sh runs it for each kernel of the CI matrix.
#
#   tests/vm/run.sh VMLINUZ TESTS_FILE OUT_FILE
#
# VMLINUZ: a distribution kernel as kernel.sh unpacks it (ROOT/boot/vmlinuz-VER beside
# ROOT/lib/modules/VER, installed in /lib/modules too).
# TESTS_FILE: lines of "BINARY:FILTER", BINARY a test executable under target/ (built
# beforehand, e.g. `cargo test -p smap --test it --no-run`), FILTER a test name filter.
# Needs qemu-system-x86 and busybox-static (Debian) and virtme-ng (PyPI).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
vmlinuz=$1 tests=$(realpath "$2") out=$(realpath -m "$3")
env_file=$(mktemp /tmp/smap-vm-env.XXXXXX)
# The VM writes only under /tmp; the results are moved to OUT_FILE afterwards.
# Not created here: on 5.10, 9p does not let the VM truncate a file the host created.
vm_out=$(mktemp -u /tmp/smap-vm-out.XXXXXX)
trap 'rm -f "$env_file" "$vm_out" "$vm_out.modprobe"' EXIT
# kernel.sh unpacks a package as ROOT/boot/vmlinuz-VER beside ROOT/lib/modules/VER.
modroot=$(cd "$(dirname "$vmlinuz")/.." && pwd)
# SMAP_EXPECT_UDP_PATH, when set, is checked by the kernel test inside.
printf 'export SMAP_VM_TESTS=%q SMAP_VM_OUT=%q SMAP_VM_REPO=%q SMAP_VM_MODROOT=%q SMAP_EXPECT_UDP_PATH=%q\n. %q\n' \
	"$tests" "$vm_out" "$repo" "$modroot" "${SMAP_EXPECT_UDP_PATH:-}" "$here/inside.sh" > "$env_file"
rm -f "$out"
# vng's own status is the VM's power-off, not the tests': those are in $out. /etc is
# writable inside (an overlay) for the pods' resolv.conf under /etc/netns.
vng --run "$vmlinuz" --force-initramfs --disable-monitor --disable-kvm --memory 3G --cpus 2 \
	--rwdir /tmp --overlay-rwdir /etc --exec "sh $env_file" || true
[ -s "$vm_out" ] || { echo "the VM wrote no results" >&2; exit 1; }
{ cat "$vm_out"; cat "$vm_out.modprobe" 2>/dev/null || true; } > "$out"
grep -E '^(kernel|==|exit|test )' "$out"
! grep -qE '^exit [1-9]' "$out"
