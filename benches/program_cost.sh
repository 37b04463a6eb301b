#!/usr/bin/env bash
# What each of smap's eBPF programs costs under a connect-heavy load: with
# kernel.bpf_stats_enabled=1 the kernel counts each program's runs and run time; the
# difference across the load, per program, gives ns per run and runs per connection.
# Needs root and bpftool. Usage: benches/program_cost.sh [CONNECTIONS] (default 40000);
# SMAP=PATH measures another smap binary (an older build, say).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-40000}
cargo build --release -q -p smap -p smap-benches
smap=${SMAP:-target/release/smap}
load=target/release/smap-loadgen
out=target/bench-program-cost
rm -rf "$out"; mkdir -p "$out"

was=$(sysctl -n kernel.bpf_stats_enabled)
# Programs loaded before smap starts are not smap's (bpftool names no owner here).
bpftool -j prog show > "$out/others.json"
"$smap" capture --out "$out/rec" --node bench > "$out/summary.txt" 2> "$out/capture.err" &
cap=$!
restore() { kill -INT "$cap" 2>/dev/null || true; wait "$cap" 2>/dev/null || true; sysctl -qw "kernel.bpf_stats_enabled=$was"; }
trap restore EXIT
while [ ! -f "$out/rec/recording.json" ]; do sleep 0.1; done
sleep 0.5
sysctl -qw kernel.bpf_stats_enabled=1
bpftool -j prog show > "$out/before.json"
made=$("$load" "$n" 2 | awk '{print $1}')
bpftool -j prog show > "$out/after.json"
python3 - "$out/before.json" "$out/after.json" "$made" "$out/others.json" <<'PY'
import json, sys
before, after, made, others = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
not_ours = {p["id"] for p in json.load(open(others))}
def ours(path):
    return {p["id"]: p for p in json.load(open(path)) if p["id"] not in not_ours}
b, a = ours(before), ours(after)
rows = []
for id_, p in a.items():
    q = b.get(id_, {})
    runs = p.get("run_cnt", 0) - q.get("run_cnt", 0)
    ns = p.get("run_time_ns", 0) - q.get("run_time_ns", 0)
    rows.append((ns, p.get("name", "?"), p.get("type", "?"), runs))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
print(f"{made} loopback connections (both ends on this host), {len(rows)} programs of smap")
print(f"| program | type | runs per connection | ns per run | share of smap's kernel time |")
print(f"| --- | --- | --- | --- | --- |")
for ns, name, kind, runs in rows:
    if runs == 0:
        continue
    print(f"| {name} | {kind} | {runs / made:.2f} | {ns / runs:.0f} | {100 * ns / total:.1f}% |")
print(f"total: {total / made:.0f} ns of program time per connection")
PY
