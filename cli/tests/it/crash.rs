//! End to end, as root: `smap capture` killed with SIGKILL mid-traffic (200
//! connections a second), at moments before and after its first checkpoint. The
//! recording opens, says what it recovered, and holds every connection completed more
//! than a second before the kill.
//!
//! Needs root, iproute2 and iptables; skipped with a printed reason elsewhere, and a
//! failure under CI=true.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smap_e2e::{require_root, CallReport, Cluster, ServicePort};
use smap_replay::{ConnKind, Recording};

use crate::e2e::{kubectl_file, pod, service, Capture, ONE_AT_A_TIME};
use crate::{smap, stderr};

#[test]
fn a_capture_killed_with_sigkill_keeps_all_but_its_last_second() {
    if !require_root("a_capture_killed_with_sigkill_keeps_all_but_its_last_second") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("crash").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api_pod = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let api = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let _server = cluster.serve_tcp(&api_pod, 8080).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);

    // Before the first checkpoint (5 s): all in the journal; after it: segments too.
    for (round, kill_after) in
        [Duration::from_millis(2300), Duration::from_millis(4700), Duration::from_millis(7300)].into_iter().enumerate()
    {
        let round_dir = dir.path().join(format!("round-{round}"));
        std::fs::create_dir(&round_dir).unwrap();
        let capture = Capture::start(&round_dir, &kubectl, cluster.node_name());
        let mut load = cluster
            .command_in(&web, smap_e2e::peer_binary().unwrap())
            .unwrap()
            .args(["tcp-loop", &api.addr(80).to_string(), "200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let completed: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
        let reader = {
            let completed = Arc::clone(&completed);
            let stdout = load.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let report: CallReport = serde_json::from_str(&line).unwrap();
                    if let (true, Some(local)) = (report.is_ok(), report.local) {
                        completed.lock().unwrap().push((Instant::now(), local.port()));
                    }
                }
            })
        };
        std::thread::sleep(kill_after);
        let killed_at = Instant::now();
        let recording = capture.kill();
        load.kill().unwrap();
        load.wait().unwrap();
        reader.join().unwrap();

        let opened = Recording::open(&recording).unwrap();
        assert!(
            opened.warnings().iter().any(|w| w.contains("from the journal")),
            "round {round}: {:?}",
            opened.warnings()
        );
        let recorded: BTreeSet<u16> = opened
            .conn_events()
            .map(Result::unwrap)
            .filter(|e| e.kind == ConnKind::TcpConnect)
            .map(|e| e.src_port)
            .collect();
        let completed = completed.lock().unwrap();
        let due: Vec<u16> = completed
            .iter()
            .filter(|(at, _)| killed_at.duration_since(*at) > Duration::from_secs(1))
            .map(|(_, port)| *port)
            .collect();
        assert!(due.len() > 150, "round {round}: the load ran ({} calls due)", due.len());
        let missing: Vec<u16> = due.iter().copied().filter(|p| !recorded.contains(p)).collect();
        assert!(missing.is_empty(), "round {round}: {} of {} lost: {missing:?}", missing.len(), due.len());
        // And smap build reads it, saying it recovered.
        let out = smap(&["build", recording.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("from the journal"), "{}", stderr(&out));
    }
}
