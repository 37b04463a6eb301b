#!/usr/bin/env bash
# vendor.sh: regenerates analyze/web/vendor/ (the graph libraries the HTML map inlines)
# from the npm registry at the versions pinned below, each with its licence.
#
#   analyze/web/vendor.sh           rewrite vendor/
#   analyze/web/vendor.sh --check   fail if vendor/ differs from what the pins give
#
# `cargo build` never runs this: the files are committed and embedded with
# include_str!. Needs npm (the registry only; no Node code runs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check=false
[ "${1:-}" = --check ] && check=true

# package@version  file in its tarball  name under vendor/
pins=(
	"cytoscape@3.35.0 dist/cytoscape.min.js cytoscape.min.js"
	"layout-base@2.0.1 layout-base.js layout-base.js"
	"cose-base@2.2.0 cose-base.js cose-base.js"
	"cytoscape-fcose@2.2.0 cytoscape-fcose.js cytoscape-fcose.js"
)

work=$(mktemp -d /tmp/smap-vendor.XXXXXX)
trap 'rm -rf "$work"' EXIT
out="$work/vendor"
mkdir -p "$out"
{
	echo "# The libraries the HTML map inlines, as vendor.sh fetched them: package@version,"
	echo "# the npm tarball's integrity, licence. Regenerate with analyze/web/vendor.sh."
} > "$out/VERSIONS"
for pin in "${pins[@]}"; do
	read -r spec file name <<<"$pin"
	package=${spec%@*}
	tarball=$(cd "$work" && npm pack -q "$spec" 2>/dev/null | tail -1)
	integrity=$(npm view "$spec" dist.integrity 2>/dev/null)
	license=$(npm view "$spec" license 2>/dev/null)
	mkdir -p "$work/$package"
	tar -xzf "$work/$tarball" -C "$work/$package"
	cp "$work/$package/package/$file" "$out/$name"
	cp "$work/$package/package/LICENSE" "$out/$package.LICENSE"
	echo "$spec $integrity $license" >> "$out/VERSIONS"
done

if $check; then
	if ! diff -r "$out" "$here/vendor" >/dev/null; then
		echo "analyze/web/vendor/ does not match the pinned packages; run analyze/web/vendor.sh" >&2
		diff -rq "$out" "$here/vendor" >&2 || true
		exit 1
	fi
	echo "analyze/web/vendor/ matches its pins"
else
	rm -rf "$here/vendor"
	cp -r "$out" "$here/vendor"
fi
