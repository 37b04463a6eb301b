//! What log shippers and shells get from the binary: no escape byte in logs written to
//! a file or a pipe, one JSON object per line with `--log-format json` (the fatal error
//! too), completion scripts and a man page.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{repo, smap, stderr, stdout};

#[test]
fn logs_to_a_file_carry_no_colour_and_json_logs_parse_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smap.log");
    // A recording a crash left a segment unfinished in: smap builds what is there and
    // warns (through the log formatter, not the fatal-error line).
    let rec = dir.path().join("rec");
    let copy =
        Command::new("cp").arg("-r").arg(repo().join("fixtures/recordings/bookinfo-simulated")).arg(&rec).status();
    assert!(copy.unwrap().success());
    std::fs::write(rec.join("conn-999999.parquet.partial"), b"PAR1 half a segment").unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_smap"))
        .args(["-v", "build", rec.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read(&log).unwrap();
    assert!(status.success());
    let logged = String::from_utf8_lossy(&text);
    assert!(logged.contains("WARN") && logged.contains("unfinished segment"), "{logged}");
    assert!(!text.contains(&0x1b), "an escape byte in a log file: {}", String::from_utf8_lossy(&text));

    let out = smap(&["--log-format", "json", "-v", "build", rec.to_str().unwrap()]);
    let lines: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "{lines:?}");
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["message"].is_string(), "{line}");
    }

    // The fatal error is a JSON line too, each cause once.
    let missing = smap(&["--log-format", "json", "build", "/nonexistent-recording"]);
    assert_eq!(missing.status.code(), Some(2));
    let line: Value = serde_json::from_str(stderr(&missing).trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
    let message = line["message"].as_str().unwrap();
    assert_eq!(message, "opening recording: /nonexistent-recording: No such file or directory (os error 2)");
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let bash = smap(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(script.contains("_smap()"), "a bash completion function");
    for command in ["build", "simulate", "analyze", "capture", "watch"] {
        assert!(script.contains(command), "{command} missing from the completions");
    }
    for shell in ["zsh", "fish"] {
        let out = smap(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}: {}", stderr(&out));
    }
    let bad = smap(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");

    let man = smap(&["man"]);
    assert!(man.status.success(), "{}", stderr(&man));
    let page = stdout(&man);
    assert!(
        page.starts_with(".ie") || page.contains(".TH smap"),
        "roff with a title: {}",
        &page[..page.len().min(200)]
    );
    assert!(page.contains("watch") && page.contains("\\-\\-log\\-format"), "commands and global flags");
}
