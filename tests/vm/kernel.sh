#!/usr/bin/env bash
# kernel.sh: fetches a Debian distribution kernel for the VM matrix, checked against
# the suite's signed index, and installs its modules so virtme-ng can boot it.
#
#   tests/vm/kernel.sh SUITE CACHE_DIR     prints the path of the kernel image
#
# SUITE: a Debian suite on deb.debian.org (bullseye: 5.10, bookworm: 6.1,
# bookworm-backports: 6.12). Takes the newest generic amd64 image of the suite (not
# cloud, rt or dbg): pinning a version would break when the mirror drops it.
# The image's modules go to /lib/modules/<version> (virtme-ng loads 9p and virtio from
# there) and depmod runs; needs root, curl, gpgv, xz, dpkg-deb and kmod.
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

root="$cache/$version"
if [ ! -f "$root/boot/vmlinuz-$version" ]; then
	rm -rf "$root"
	dpkg-deb -x "$deb" "$root"
fi
# virtme-ng builds its initramfs (9p, virtio) from /lib/modules/<version>, and masks
# that directory inside the VM: the tests load veth and netfilter from the unpacked tree
# instead (inside.sh, modprobe -d), which needs its own depmod.
modules=$(find "$root" -maxdepth 4 -type d -path "*/lib/modules/$version" | head -1)
[ -f "$modules/modules.dep" ] || depmod -b "${modules%/lib/modules/$version}" "$version"
if [ ! -d "/lib/modules/$version/kernel" ]; then
	mkdir -p /lib/modules
	cp -a "$modules" "/lib/modules/$version"
	depmod "$version"
fi
echo "$root/boot/vmlinuz-$version"
