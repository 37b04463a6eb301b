#!/usr/bin/env bash
# build.sh: regenerates the committed ebpf/smap.bpf.o from ebpf/src/smap.bpf.c.
#
#   ebpf/build.sh          rebuild ebpf/smap.bpf.o
#   ebpf/build.sh --check  rebuild into a temp file and fail if the committed object
#                          differs (CI runs this so the object never goes stale)
#
# Needs clang and llvm-strip (CLANG / LLVM_STRIP override the default clang-19 and
# llvm-strip-19) and libbpf's headers (Debian: libbpf-dev). The object is byte-identical
# whatever the working directory: paths are mapped to "." and strip -g drops the DWARF,
# keeping the BTF that CO-RE relocation needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
clang="${CLANG:-clang-19}"
strip="${LLVM_STRIP:-llvm-strip-19}"
committed="$here/smap.bpf.o"

compile() {
	local out="$1"
	# -ffile-prefix-map runs in $here so that the recorded source path is ./src/...
	(cd "$here" && "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 \
		-I/usr/include/x86_64-linux-gnu -ffile-prefix-map="$here"=. \
		-Wall -Werror -c src/smap.bpf.c -o "$out")
	"$strip" -g "$out"
}

case "${1:-}" in
--check)
	tmp="$(mktemp --suffix=.bpf.o)"
	trap 'rm -f "$tmp"' EXIT
	compile "$tmp"
	if ! cmp -s "$tmp" "$committed"; then
		echo "ebpf/smap.bpf.o is stale: run ebpf/build.sh and commit the result" >&2
		exit 1
	fi
	echo "ebpf/smap.bpf.o is up to date"
	;;
"")
	compile "$committed"
	echo "wrote $committed ($(stat -c %s "$committed") bytes)"
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
