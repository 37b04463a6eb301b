# modules.sh: the kernel modules a VM of the matrix needs from a distribution kernel,
# sourced by kernel.sh (unpacks them, checks their dependencies) and inside.sh (loads
# the harness's). POSIX sh: inside.sh runs under the VM's /bin/sh.
# Module names as modinfo and modprobe use them, '-' written '_'.

# virtme-ng's initramfs (its virtmods.py aliases): 9p root, virtiofs, console, keyboard.
# Not unix: always built in, and since 6.11 no longer listed in modules.builtin.
boot_modules="9p 9pnet_virtio virtiofs virtio_console virtio_pci virtio_mmio overlay i8042 atkbd"
# The harness: veth pairs for pods, the nat table and matches for ClusterIPs.
harness_modules="veth iptable_nat iptable_filter nf_nat xt_nat xt_comment xt_statistic"
