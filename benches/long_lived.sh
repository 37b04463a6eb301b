#!/usr/bin/env bash
# What following open connections costs, measured side by side in one run (this machine
# is noisy: each figure is a ratio against a baseline taken seconds apart):
# - connect() throughput on loopback (as capture.sh): rounds of no tracer, a baseline
#   smap without the open-connection programs (SMAP_BASELINE: a release build of an
#   earlier commit), and this smap;
# - bulk throughput of a few long connections (smap-longload bulk), rounds likewise:
#   tcp_probe runs on every segment received, tcp_rcv_space_adjust on every read;
# - the enumeration at start with 10k and 100k established loopback connections open
#   (its elapsed time, as `smap capture` logs it; run alone: `ENUMERATION_ONLY=1`).
# Needs root. Usage: SMAP_BASELINE=/path/to/smap benches/long_lived.sh [ROUNDS] (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
baseline=${SMAP_BASELINE:?set SMAP_BASELINE to a release smap binary to compare with}
cargo build --release -q -p smap -p smap-benches
smap=target/release/smap
load=target/release/smap-loadgen
longload=target/release/smap-longload
out=target/bench-long-lived
rm -rf "$out"; mkdir -p "$out"

start() { # start BINARY: a capture, once its programs are attached
    rm -rf "$out/rec"
    RUST_LOG=info "$1" capture --out "$out/rec" --node bench > "$out/summary.txt" 2> "$out/capture.err" &
    cap=$!
    while [ ! -f "$out/rec/recording.json" ]; do
        kill -0 "$cap" 2>/dev/null || { echo "$1 capture failed:" >&2; cat "$out/capture.err" >&2; exit 1; }
        sleep 0.1
    done
    sleep 0.5
}
stop() { kill -INT "$cap"; wait "$cap"; }
summarize() { python3 -c "import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f'median {100*statistics.median(v):.1f}% of no tracer (rounds: ' + ', '.join(f'{100*x:.1f}%' for x in v) + ')')" "$@"; }
ratio() { python3 -c "print($1 / $2)"; }

# measure NAME COMMAND...: rounds of none / baseline / smap on one load; the load prints
# its rate as the third field.
measure() {
    local name=$1; shift
    local base_r=() new_r=() none=()
    for _ in $(seq "$rounds"); do
        n=$("$@" | awk '{print $3}'); none+=("$n")
        start "$baseline"; b=$("$@" | awk '{print $3}'); stop
        start "$smap"; s=$("$@" | awk '{print $3}'); stop
        base_r+=("$(ratio "$b" "$n")"); new_r+=("$(ratio "$s" "$n")")
    done
    echo "$name, $rounds rounds"
    echo "  no tracer:      ${none[*]}"
    echo "  smap before:    $(summarize "${base_r[@]}")"
    echo "  smap now:       $(summarize "${new_r[@]}")"
}

if [ -z "${ENUMERATION_ONLY:-}" ]; then
    measure "connect() throughput (conn/s), 40000 loopback connections, 2 threads" "$load" 40000 2
    measure "bulk throughput (MiB/s), 4 connections x 512 MiB" "$longload" bulk 4 512
fi
fds=()

# A process may hold about 20,000 descriptors here (and cannot raise its limit): each
# holder process keeps 9,000 connections, both ends.
per_holder=9000
for n in 10000 100000; do
    holders=()
    for i in $(seq $(( (n + per_holder - 1) / per_holder ))); do
        take=$(( n - (i - 1) * per_holder )); [ "$take" -gt "$per_holder" ] && take=$per_holder
        fifo="$out/hold-$i"; rm -f "$fifo"; mkfifo "$fifo"
        "$longload" hold "$take" < "$fifo" > "$out/hold-$i.out" &
        holders+=("$!")
        exec {fd}>"$fifo"; fds+=("$fd")
    done
    for i in $(seq ${#holders[@]}); do
        until grep -q ready "$out/hold-$i.out" 2>/dev/null; do sleep 0.2; done
    done
    start "$smap"
    stop
    for fd in "${fds[@]}"; do exec {fd}>&-; done
    fds=()
    wait "${holders[@]}" || true
    line=$(grep "open connections enumerated" "$out/capture.err" | tail -1)
    echo "enumeration with $n loopback connections open: $(echo "$line" | grep -o 'connections=[0-9]*') sockets found (both ends of each), $(echo "$line" | grep -o 'elapsed_ms=[0-9]*')"
done
