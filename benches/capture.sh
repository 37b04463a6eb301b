#!/usr/bin/env bash
# Capture overhead, measured side by side in one run (this machine is noisy, so each
# figure is a ratio against a baseline taken minutes apart at most):
# - connect() throughput on loopback without a tracer, with `smap capture`, and with
#   libbpf-tools `tcplife` (Debian package libbpf-tools) on the same load;
# - events dropped at full speed (the highest rate with 0 drops is the full speed when
#   drops stay 0);
# - peak and current RSS of `smap capture` idle, and its CPU and RSS at 1k and 10k connections/s;
# - bytes on disk per connection event.
# Needs root. Usage: benches/capture.sh [CONNECTIONS [ROUNDS]] (default 40000 5).
# SMAP_COMPARE=PATH also runs another smap binary (an older build, say) in each round.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-40000}
rounds=${2:-5}
cargo build --release -q -p smap -p smap-benches
smap=target/release/smap
load=target/release/smap-loadgen
out=target/bench-capture
rm -rf "$out"; mkdir -p "$out"

rate() { "$load" "$@" | awk '{print $3}'; }
start_capture() {
    rm -rf "$out/rec"
    "${1:-$smap}" capture --out "$out/rec" --node bench > "$out/summary.txt" 2> "$out/capture.err" &
    cap=$!
    while [ ! -f "$out/rec/recording.json" ]; do sleep 0.1; done
    sleep 0.5
}
stop_capture() { kill -INT "$cap"; wait "$cap"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One round: no tracer, smap capture, tcplife, each right after the other, so each
# round's ratios share its conditions; the medians of several rounds are reported.
has_tcplife=false
command -v tcplife >/dev/null && has_tcplife=true
smap_ratios=(); tcplife_ratios=(); compare_ratios=(); bases=()
for round in $(seq "$rounds"); do
    base=$(rate "$n" 2)
    bases+=("$base")
    if [ -n "${SMAP_COMPARE:-}" ]; then
        start_capture "$SMAP_COMPARE"
        with=$(rate "$n" 2)
        stop_capture
        compare_ratios+=("$(python3 -c "print($with / $base)")")
    fi
    start_capture
    with=$(rate "$n" 2)
    stop_capture
    smap_ratios+=("$(python3 -c "print($with / $base)")")
    if $has_tcplife; then
        tcplife > /dev/null 2>&1 &
        tl=$!
        sleep 2
        tl_rate=$(rate "$n" 2)
        kill -INT "$tl"; wait "$tl" 2>/dev/null || true
        tcplife_ratios+=("$(python3 -c "print($tl_rate / $base)")")
    fi
done
summarize() { python3 -c "import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f'median {100*statistics.median(v):.1f}% of baseline (rounds: ' + ', '.join(f'{100*x:.1f}%' for x in v) + ')')" "$@"; }
summary=$(cat "$out/summary.txt")
events=$(python3 -c "import json;print(json.load(open('$out/rec/recording.json'))['counters']['conn_events'])")
bytes=$(cat "$out"/rec/conn-*.parquet | wc -c)
echo "connect() throughput, $n loopback connections, 2 threads, $rounds rounds"
echo "  no tracer:      ${bases[*]} conn/s"
echo "  smap capture:   $(summarize "${smap_ratios[@]}")"
$has_tcplife && echo "  tcplife:        $(summarize "${tcplife_ratios[@]}")"
[ -n "${SMAP_COMPARE:-}" ] && echo "  $SMAP_COMPARE: $(summarize "${compare_ratios[@]}")"
echo "  last capture: $summary"
echo "  bytes on disk per connection event: $(python3 -c "print(f'{$bytes/$events:.2f}')") ($bytes bytes, $events events)"

hz=$(getconf CLK_TCK)
start_capture
sleep 5
# Peak (VmHWM) and current (VmRSS) apart: the peak is reached while the programs load.
mib() { echo $(( $(awk -v k="$1:" '$1 == k {print $2}' "/proc/$cap/status") / 1024 )); }
echo "idle for 5 s: smap capture peak RSS $(mib VmHWM) MiB, RSS now $(mib VmRSS) MiB"
stop_capture
for r in 1000 10000; do
    start_capture
    before=$(cpu_ticks "$cap")
    "$load" $(( r * 10 )) 2 "$r" > /dev/null
    after=$(cpu_ticks "$cap")
    peak=$(mib VmHWM) now=$(mib VmRSS)
    stop_capture
    echo "at $r conn/s for 10 s: smap capture CPU $(python3 -c "print(f'{100*($after-$before)/$hz/10:.1f}')")% of one core, peak RSS $peak MiB, RSS at the end $now MiB; $(cat "$out/summary.txt")"
done
