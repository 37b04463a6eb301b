#!/usr/bin/env bash
# Measures what BENCHMARKS.md reports: `smap build` time and peak RSS as recordings grow
# (memory must stay flat in events), on one thread and on every core (`--threads`, the
# two topologies compared byte for byte), bytes on disk per connection event, and the
# same GROUP BY in DuckDB over the same Parquet files, side by side in one run.
#
#   benches/run.sh [EVENTS...]     default: 1000000 10000000 50000000 (connection events)
#
# Needs: a release build (done here), GNU time (/usr/bin/time), python3 with duckdb for
# the comparison (skipped with a note when missing). Writes into target/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000 50000000)
cargo build --release -q -p smap
smap=target/release/smap
data=target/bench-data
mkdir -p "$data"

cores=$(nproc)
printf '%-12s %-12s %-12s %-10s %-10s %-10s %-10s %-14s %-10s %-10s\n' requested conn_events bytes/event build1_s "build${cores}_s" speedup peak_MiB events/s duckdb_s ratio
for n in "${sizes[@]}"; do
    rec="$data/events-$n"
    [ -f "$rec/recording.json" ] || "$smap" simulate --services 500 --pods-per-service 3 --events "$n" --churn 1 --seed 7 --out "$rec"
    events=$(python3 -c "import json;print(json.load(open('$rec/recording.json'))['counters']['conn_events'])")
    bytes=$(cat "$rec"/conn-*.parquet | wc -c)
    /usr/bin/time -f '%e %M' -o "$data/time.txt" "$smap" build "$rec" --threads 1 -o "$data/topology-$n-1.json"
    read -r secs1 _ < "$data/time.txt"
    /usr/bin/time -f '%e %M' -o "$data/time.txt" "$smap" build "$rec" --threads "$cores" -o "$data/topology-$n.json"
    read -r secs kib < "$data/time.txt"
    cmp -s "$data/topology-$n-1.json" "$data/topology-$n.json" || { echo "topologies on 1 and $cores threads differ" >&2; exit 1; }
    duck="-"
    ratio="-"
    if python3 -c 'import duckdb' 2>/dev/null; then
        duck=$(python3 - "$rec" "$cores" <<'PY'
import sys, time, duckdb
d = sys.argv[1]
con = duckdb.connect()
con.execute(f"SET threads TO {sys.argv[2]}")
t = time.perf_counter()
con.execute(f"""select src_ip, dst_ip, dst_port, count(*) from read_parquet('{d}/conn-*.parquet')
              where kind in ('tcp_connect','tcp_accept') group by all""").fetchall()
print(f"{time.perf_counter() - t:.2f}")
PY
)
        ratio=$(python3 -c "print(f'{$duck / $secs:.2f}')")
    fi
    python3 - "$n" "$events" "$bytes" "$secs1" "$secs" "$kib" "$duck" "$ratio" <<'PY'
import sys
n, events, size, secs1, secs, kib, duck, ratio = sys.argv[1:]
events, size, secs1, secs, kib = int(events), int(size), float(secs1), float(secs), int(kib)
speedup = secs1 / max(secs, 1e-9)
print(f"{n:<12} {events:<12} {size / events:<12.2f} {secs1:<10.2f} {secs:<10.2f} {speedup:<10.2f} {kib / 1024:<10.1f} {events / max(secs, 1e-9):<14.0f} {duck:<10} {ratio:<10}")
PY
done
echo "(ratio = DuckDB seconds / smap seconds, both on $cores threads: above 1 means smap is faster while resolving every connection)"
