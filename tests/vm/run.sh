#!/usr/bin/env bash
# run.sh: runs built test binaries under another kernel, in a VM booted with this
# machine's own root filesystem (virtme-ng over qemu; software emulation, since KVM
# trips over an MSR here). Not part of .ci/run yet.
#
#   tests/vm/run.sh VMLINUZ TESTS_FILE OUT_FILE
#
# VMLINUZ: a distribution kernel, e.g. from `apt-get download linux-image-6.1.0-50-amd64`
# unpacked with `dpkg-deb -x` (copy its lib/modules/<ver> to /lib/modules and depmod).
# TESTS_FILE: lines of "BINARY:FILTER", BINARY a test executable under target/ (built
# beforehand, e.g. `cargo test -p smap --test it --no-run`), FILTER a test name filter.
# Needs qemu-system-x86 and busybox-static (Debian) and virtme-ng (PyPI).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
vmlinuz=$1 tests=$(realpath "$2") out=$(realpath -m "$3")
env_file=$(mktemp /tmp/smap-vm-env.XXXXXX)
trap 'rm -f "$env_file"' EXIT
# The VM sees /tmp read-write; the rest of the root read-only.
# kernel.sh unpacks a package as ROOT/boot/vmlinuz-VER beside ROOT/lib/modules/VER.
modroot=$(cd "$(dirname "$vmlinuz")/.." && pwd)
printf 'export SMAP_VM_TESTS=%q SMAP_VM_OUT=%q SMAP_VM_REPO=%q SMAP_VM_MODROOT=%q\n. %q\n' \
	"$tests" "$out" "$repo" "$modroot" "$here/inside.sh" > "$env_file"
rm -f "$out"
# vng's own status is the VM's power-off, not the tests': those are in $out.
vng --run "$vmlinuz" --force-initramfs --disable-monitor --disable-kvm --memory 3G --cpus 2 \
	--rwdir /tmp --exec "sh $env_file" || true
[ -f "$out" ] || { echo "the VM wrote no results" >&2; exit 1; }
grep -E '^(kernel|==|exit|test )' "$out"
! grep -qE '^exit [1-9]' "$out"
