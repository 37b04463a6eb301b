//! `smap build`: the bundled recordings give reviewed topologies, deterministically, and
//! bad input fails cleanly.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::{assert_input_error, repo, smap, stderr, stdout};

const BOOKINFO: &str = "fixtures/recordings/bookinfo-simulated";
const SHOP: &str = "fixtures/recordings/shop-simulated";

#[test]
fn bookinfo_topology_json() {
    let out = smap(&["build", BOOKINFO]);
    assert!(out.status.success());
    insta::assert_snapshot!("bookinfo_json", stdout(&out));
}

/// Recordings `smap capture` made of real traffic between network-namespace pods
/// (see `e2e.rs`, which rewrites them with SMAP_UPDATE_FIXTURES=1).
#[test]
fn captured_recordings_replay_to_their_reviewed_topologies() {
    for name in ["captured-shop", "captured-ip-reuse"] {
        let out = smap(&["build", &format!("fixtures/recordings/{name}")]);
        assert!(out.status.success(), "{name}");
        insta::assert_snapshot!(name.replace('-', "_"), stdout(&out));
    }
}

#[test]
fn shop_topology_in_every_format() {
    let config = repo().join("fixtures/config/with-externals.yaml");
    let config = config.to_str().unwrap();
    for format in ["json", "dot", "mermaid"] {
        let out = smap(&["build", SHOP, "--config", config, "--format", format]);
        assert!(out.status.success(), "{format}");
        insta::assert_snapshot!(format!("shop_{format}"), stdout(&out));
    }
}

#[test]
fn the_same_recording_always_gives_the_same_bytes() {
    let first = smap(&["build", SHOP]);
    for _ in 0..3 {
        assert_eq!(smap(&["build", SHOP]).stdout, first.stdout);
    }
}

#[test]
fn k8s_from_supplies_state_a_recording_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let kubectl = dir.path().join("k8s.json");
    let (rec, kubectl) = (rec.to_str().unwrap(), kubectl.to_str().unwrap());
    let sim = smap(&[
        "simulate",
        "--scenario",
        "fixtures/scenarios/bookinfo.yaml",
        "--connections",
        "300",
        "--seed",
        "9",
        "--out",
        rec,
        "--kubectl-out",
        kubectl,
        "--k8s-out-only",
    ]);
    assert!(sim.status.success(), "{}", crate::stderr(&sim));
    let without = smap(&["build", rec]);
    let without: serde_json::Value = serde_json::from_slice(&without.stdout).unwrap();
    assert_eq!(without["edges"].as_array().unwrap().len(), 0, "no K8s state: every address is external");
    let with = smap(&["build", rec, "--k8s-from", kubectl]);
    let with: serde_json::Value = serde_json::from_slice(&with.stdout).unwrap();
    let edges: Vec<String> = with["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} -> {}", e["source"].as_str().unwrap(), e["destination"].as_str().unwrap()))
        .collect();
    assert_eq!(
        edges,
        [
            "default/productpage -> default/details",
            "default/productpage -> default/reviews",
            "default/reviews -> default/ratings"
        ]
    );
}

#[test]
fn logs_to_a_file_or_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    // `simulate -v` logs at info level; stderr is a pipe here, as in a log shipper.
    let out = smap(&["simulate", "--scenario", "fixtures/scenarios/shop.yaml", "--out", rec.to_str().unwrap(), "-v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("INFO"), "something was logged: {log}");
    assert!(!log.contains('\x1b'), "no ANSI escape codes: {log:?}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smap"))
        .args(["build", SHOP, "--format", "dot"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_fail_with_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let missing = smap(&["build", &path("missing")]);
    assert_input_error(&missing, "opening recording");
    assert_eq!(
        stderr(&missing).matches("No such file or directory").count(),
        1,
        "each cause once: {}",
        stderr(&missing)
    );
    assert_eq!(stderr(&missing).matches("missing").count(), 1, "the path once: {}", stderr(&missing));

    std::fs::create_dir(path("empty")).unwrap();
    assert_input_error(&smap(&["build", &path("empty")]), "not an smap recording");

    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for entry in std::fs::read_dir(repo().join(BOOKINFO)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        to
    };
    let truncated = copy("truncated");
    let segment = truncated.join("conn-000001.parquet");
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() / 3]).unwrap();
    assert_input_error(&smap(&["build", truncated.to_str().unwrap()]), "conn-000001.parquet");

    let future = copy("future");
    let meta = future.join("recording.json");
    let text = std::fs::read_to_string(&meta).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 5");
    std::fs::write(&meta, text).unwrap();
    assert_input_error(
        &smap(&["build", future.to_str().unwrap()]),
        "schema version 5 is not supported (this smap reads versions 1 to 4)",
    );

    std::fs::write(path("bad.json"), "{\"kind\": \"List\", \"items\": [").unwrap();
    assert_input_error(&smap(&["build", BOOKINFO, "--k8s-from", &path("bad.json")]), "not valid JSON");

    std::fs::write(path("bad.yaml"), "max_conections: 10\n").unwrap();
    assert_input_error(&smap(&["build", BOOKINFO, "--config", &path("bad.yaml")]), "unknown field `max_conections`");

    let usage = smap(&["build"]);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn flags_out_of_range_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["capture", "--out", out, "--checkpoint", "0s"], "'--checkpoint <DURATION>': must be longer than 0s"),
        (vec!["watch", "--checkpoint", "0s"], "'--checkpoint <DURATION>': must be longer than 0s"),
        (vec!["simulate", "--services", "4000000000", "--out", out], "4000000000 is not in 1..=1000000"),
        (vec!["simulate", "--services", "100000", "--pods-per-service", "20", "--out", out], "is 2000000 pods"),
    ] {
        let o = smap(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.path().join("rec").exists(), "nothing was written");
}
