#!/usr/bin/env bash
# kernel.sh: fetches a Debian distribution kernel for the VM matrix, checked against
# the suite's signed index, and unpacks and installs the modules a VM needs
# (modules.sh) so virtme-ng can boot it.
#
#   tests/vm/kernel.sh SUITE CACHE_DIR     prints the path of the kernel image
#
# SUITE: a Debian suite on deb.debian.org (bullseye: 5.10, bookworm: 6.1,
# bookworm-backports: 6.12). Takes the newest generic amd64 image of the suite (not
# cloud, rt or dbg): pinning a version would break when the mirror drops it.
# Those modules go to /lib/modules/<version> (virtme-ng loads 9p and virtio from there)
# and depmod runs; needs root, curl, gpgv, xz, dpkg-deb and kmod.
set -euo pipefail
suite=$1 cache=$2
mirror=http://deb.debian.org/debian
mkdir -p "$cache"
work=$(mktemp -d /tmp/smap-kernel.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The index is trusted through InRelease's signature, the package through the index.
curl -fsS --retry 3 -o "$work/InRelease" "$mirror/dists/$suite/InRelease"
gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output "$work/Release" \
	"$work/InRelease" 2>/dev/null
curl -fsS --retry 3 -o "$work/Packages.xz" "$mirror/dists/$suite/main/binary-amd64/Packages.xz"
want=$(awk '$3 ~ /main\/binary-amd64\/Packages.xz$/ && length($1) == 64 {print $1}' "$work/Release")
echo "$want  $work/Packages.xz" | sha256sum -c --quiet
xz -dc "$work/Packages.xz" > "$work/Packages"

# Newest "linux-image-<version>-amd64" stanza: its file name and checksum.
read -r name file sum < <(awk '
	/^Package: /  { pkg = $2 }
	/^Filename: / { file = $2 }
	/^SHA256: /   { sum = $2 }
	/^$/ {
		if (pkg ~ /^linux-image-[0-9][0-9.]*(-[0-9]+|\+deb[0-9]+)-amd64$/) print pkg, file, sum
		pkg = file = sum = ""
	}' "$work/Packages" | sort -V | tail -1)
[ -n "${name:-}" ] || { echo "kernel.sh: no amd64 kernel image in $suite" >&2; exit 1; }
version=${name#linux-image-}
deb="$cache/${file##*/}"
if ! echo "$sum  $deb" | sha256sum -c --quiet >/dev/null 2>&1; then
	curl -fsS --retry 3 -o "$deb" "$mirror/$file"
	echo "$sum  $deb" | sha256sum -c --quiet
fi

# Prints the modules, among NAMES and all they depend on, that are neither in MODDIR's
# tree nor built in.
missing_modules() {
	local moddir=$1 name f deps
	shift
	declare -A file=() seen=()
	while read -r f; do
		name=${f##*/}
		name=${name%%.ko*}
		file[${name//-/_}]=$f
	done < <(find "$moddir/kernel" -name '*.ko*')
	while read -r f; do
		name=${f##*/}
		name=${name%%.ko*}
		file[${name//-/_}]=builtin
	done < "$moddir/modules.builtin"
	local queue=("$@")
	while [ ${#queue[@]} -gt 0 ]; do
		name=${queue[0]//-/_}
		queue=("${queue[@]:1}")
		[ -z "${seen[$name]:-}" ] || continue
		seen[$name]=1
		f=${file[$name]:-}
		if [ -z "$f" ]; then
			printf '%s ' "$name"
		elif [ "$f" != builtin ]; then
			deps=$(modinfo -F depends "$f")
			[ -z "$deps" ] || queue+=(${deps//,/ })
		fi
	done
}

. "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
root="$cache/$version"
kernel="./lib/modules/$version/kernel"
# Only what a VM boot and the harness load, a seventh of the package: virtme-ng's
# initramfs (virtio, 9p, virtiofs, overlay, console, keyboard), veth and netfilter, and
# the libraries and crypto they pull in. CI machines can be short of disk.
wanted=(./boot "./lib/modules/$version/modules.builtin" "./lib/modules/$version/modules.order"
	"./lib/modules/$version/modules.builtin.modinfo"
	"$kernel/net" "$kernel/lib" "$kernel/crypto" "$kernel/arch"
	"$kernel/fs/9p" "$kernel/fs/netfs" "$kernel/fs/fscache" "$kernel/fs/fuse" "$kernel/fs/overlayfs"
	"$kernel/drivers/virtio" "$kernel/drivers/char" "$kernel/drivers/input" "$kernel/drivers/block"
	"$kernel/drivers/net/veth.ko" "$kernel/drivers/net/virtio_net.ko" "$kernel/drivers/net/net_failover.ko")
if [ ! -f "$root/.unpacked" ]; then
	rm -rf "$root"
	mkdir -p "$root"
	members=$(dpkg-deb --fsys-tarfile "$deb" | tar -t)
	present=()
	for w in "${wanted[@]}"; do
		# Suites differ in layout and in compressing modules (6.12: .ko.xz).
		m=$(grep -xF -e "$w" -e "$w/" -e "$w.xz" -e "$w.zst" <<<"$members" | head -1 || true)
		[ -z "$m" ] || present+=("$m")
	done
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" "${present[@]}"
	# virtme-ng builds its initramfs (9p, virtio) from /lib/modules/<version>, and masks
	# that directory inside the VM: the tests load veth and netfilter from the unpacked
	# tree instead (inside.sh, modprobe -d), which needs its own depmod.
	depmod -b "$root" "$version"
	# A module missing from the subset would only fail to load inside the VM.
	missing=$(missing_modules "$root/lib/modules/$version" $boot_modules $harness_modules)
	[ -z "$missing" ] || { echo "kernel.sh: $version: the unpacked subset lacks $missing" >&2; exit 1; }
	touch "$root/.unpacked"
fi
modules="$root/lib/modules/$version"
if [ ! -f "/lib/modules/$version/.smap-subset" ]; then
	rm -rf "/lib/modules/$version"
	mkdir -p /lib/modules
	cp -a "$modules" "/lib/modules/$version"
	depmod "$version"
	touch "/lib/modules/$version/.smap-subset"
fi
echo "$root/boot/vmlinuz-$version"
