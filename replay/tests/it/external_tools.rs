//! Recordings are plain Parquet: pyarrow and DuckDB read them without smap.
//!
//! Needs python3 with pyarrow and duckdb (`.ci/run` installs them). Skipped with a
//! printed reason elsewhere; under CI=true a missing tool fails the test.

use std::process::Command;

use smap_replay::simulate::{simulate, Scenario, SimOptions};

fn python_has_tools() -> bool {
    Command::new("python3").args(["-c", "import pyarrow, duckdb"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn pyarrow_and_duckdb_read_a_recording() {
    if !python_has_tools() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI must have python3 with pyarrow and duckdb");
        eprintln!("skipped: needs python3 with pyarrow and duckdb (pip install pyarrow duckdb)");
        return;
    }
    let scenario_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios/bookinfo.yaml");
    let scenario = Scenario::from_file(&scenario_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let outcome = simulate(&scenario, &SimOptions { connections: 500, ..SimOptions::default() }, &out).unwrap();
    let script = r#"
import sys, glob, pyarrow.parquet as pq, duckdb
d = sys.argv[1]
conn_table = pq.read_table(glob.glob(d + "/conn-*.parquet"))
conn = conn_table.drop_columns(["time"]).to_pylist()
k8s = pq.read_table(glob.glob(d + "/k8s-*.parquet")).drop_columns(["time"]).to_pylist()
kinds = sorted({r["kind"] for r in conn})
first_second = conn_table.column("time")[0].value // 1_000_000_000
flows = duckdb.sql(f"select count(*) from read_parquet('{d}/conn-*.parquet') where kind = 'tcp_connect'").fetchall()[0][0]
print(len(conn), len(k8s), ",".join(kinds), flows, first_second, k8s[0]["kind"])
"#;
    let output = Command::new("python3").args(["-c", script]).arg(&out).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let counters = &outcome.meta.counters;
    let expected = format!(
        "{} {} tcp_accept,tcp_close,tcp_connect 500 1767225600 Node\n",
        counters.conn_events, counters.object_events
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}
