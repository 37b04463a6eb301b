#!/usr/bin/env bash
# matrix.sh: the kernel matrix. Runs the end-to-end capture tests inside VMs booted with
# Debian's own kernels (tests/vm/kernel.sh fetches them, run.sh boots them with this
# machine's root filesystem), and says per kernel what passed. .ci/run runs it.
#
#   tests/vm/matrix.sh [SUITE...]     default: bookworm bookworm-backports bullseye
#
# bookworm is Debian 12's 6.1 (also Amazon Linux 2023's and COS's line), bookworm-
# backports its 6.12, bullseye Debian 11's 5.10: older than smap's minimum, where the
# capture must refuse in one line. Needs root, qemu-system-x86, busybox-static, kmod,
# virtme-ng (PyPI); results in target/vm-matrix/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm bookworm-backports bullseye)
out="$repo/target/vm-matrix"
# Inside the repository: virtme-ng hides parts of /var in the VM, not the repository.
cache="$repo/target/vm-kernels"
mkdir -p "$out" "$cache"

# The test executables, as `cargo test --workspace` (README's command) builds them, with
# the binaries they run (smap, smap-e2e-peer): the same features, so nothing is built
# twice. DIR: the package's directory.
artifacts=$(cargo test -q --workspace --no-run --message-format=json 2>/dev/null)
executable() {
	python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "it"
            and m["manifest_path"].endswith("/" + sys.argv[1] + "/Cargo.toml")):
        print(m["executable"])' "$1" <<<"$artifacts"
}
cli=$(executable cli)
capture=$(executable capture)
[ -n "$cli" ] && [ -n "$capture" ] || { echo "matrix.sh: test executables not found" >&2; exit 1; }

# What a supported kernel must pass: the capture of every kind of traffic smap maps.
supported="$out/supported.txt"
cat > "$supported" <<LIST
$capture:kernel::
$capture:open_conns::
$cli:kernels::
$cli:udp::
$cli:e2e::capture_records_clusterip_pod_ip_failed_and_udp_traffic_exactly
$cli:e2e::watch_streams_events_serves_metrics_and_map_and_replays_the_same
$cli:long_lived::connections_open_before_the_capture_and_at_its_end_are_each_counted_once
$cli:long_lived::a_connected_udp_socket_older_than_the_capture_is_a_flow_from_its_first_datagram
$cli:long_lived::one_client_port_carrying_two_connections_at_once_maps_each_with_its_bytes
$cli:clock_step::
$cli:dns::
$cli:aborts::
$cli:host_network::
LIST
# Older than the minimum: the one-line refusal.
too_old="$out/too-old.txt"
echo "$cli:kernels::" > "$too_old"

failed=0
summary=()
for suite in "${suites[@]}"; do
	vmlinuz=$(bash "$here/kernel.sh" "$suite" "$cache")
	version=${vmlinuz##*/vmlinuz-}
	list=$supported
	[ "$suite" = bullseye ] && list=$too_old
	start=$SECONDS
	# Distribution kernels run without lockdown: the kernel function hooks must attach.
	if SMAP_EXPECT_UDP_PATH=functions bash "$here/run.sh" "$vmlinuz" "$list" "$out/$version.out" \
		> "$out/$version.log" 2>&1; then
		result=passed
	else
		result=FAILED
		failed=1
		cat "$out/$version.log"
	fi
	passed=$(grep -c '^test .* ok$' "$out/$version.out" 2>/dev/null || true)
	summary+=("$(printf '%-24s %-20s %s (%s tests ok, %ss)' "$version" "$suite" "$result" "$passed" $((SECONDS - start)))")
done
echo "== kernel matrix"
printf '%s\n' "${summary[@]}"
exit $failed
