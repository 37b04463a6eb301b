#!/bin/sh
# inside.sh: runs inside a virtme-ng VM (see run.sh). Mounts what smap and `ip netns`
# need on a fresh kernel, then runs each "BINARY:FILTER" line of $SMAP_VM_TESTS,
# appending the output to $SMAP_VM_OUT.
mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount -t tmpfs tmpfs /etc/netns 2>/dev/null
grep -q cgroup2 /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
# Distribution kernels build these as modules; the harness needs them (veth pairs for
# pods, the nat table for ClusterIPs). virtme-ng masks /lib/modules/VER in the VM, so
# they come from the unpacked package (kernel.sh).
export PATH="/usr/sbin:/sbin:$PATH"
. "$SMAP_VM_REPO/tests/vm/modules.sh"
for m in $harness_modules; do
	modprobe -d "$SMAP_VM_MODROOT" "$m" 2>> "$SMAP_VM_OUT.modprobe"
done
echo "kernel $(uname -r)" > "$SMAP_VM_OUT"
cd "$SMAP_VM_REPO" || exit 1
# insta finds its snapshots through cargo, which the VM's PATH may lack.
# SMAP_VM: tests that disturb the whole machine (stepping the clock) run only here.
export CI=true RUST_BACKTRACE=0 INSTA_WORKSPACE_ROOT="$SMAP_VM_REPO" SMAP_VM=1
while read -r t; do
	[ -n "$t" ] || continue
	bin=${t%%:*}
	filter=${t#*:}
	echo "== $bin $filter" >> "$SMAP_VM_OUT"
	timeout 600 "$bin" "$filter" --test-threads 1 >> "$SMAP_VM_OUT" 2>&1
	echo "exit $?" >> "$SMAP_VM_OUT"
done < "$SMAP_VM_TESTS"
