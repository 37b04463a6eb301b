//! As root, inside the kernel matrix's VMs: the wall clock steps two hours forward in the
//! middle of `smap watch`, as NTP steps a node that booted with a wrong clock or a VM
//! resumed from pause. Nothing may expire or reorder because of it: a capture runs on
//! one clock (`smap_capture::clock`), not on the wall clock.
//!
//! Stepping the system clock would disturb the machine the tests run on, so the test
//! runs only where tests/vm/inside.sh says it is inside a VM (`SMAP_VM=1`), which the
//! kernel matrix in CI is; elsewhere it says so and skips.

use std::time::{Duration, Instant};

use serde_json::Value;
use smap_e2e::{require_root, say_skipped, Cluster, ServicePort};

use crate::e2e::{assert_replay_is_the_live_stream, kubectl_file, pod, service, wait_for_lines, Watch, ONE_AT_A_TIME};

/// Steps CLOCK_REALTIME by `by_s` seconds (negative: back).
fn step_wall_clock(by_s: i64) {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: both calls get a valid timespec; stepping the clock is this test's point
    // and happens only inside a throwaway VM.
    unsafe {
        assert_eq!(libc::clock_gettime(libc::CLOCK_REALTIME, &mut now), 0);
        now.tv_sec += by_s;
        assert_eq!(libc::clock_settime(libc::CLOCK_REALTIME, &now), 0, "clock_settime");
    }
}

/// Puts the clock back however the test ends.
struct StepBack(i64);

impl Drop for StepBack {
    fn drop(&mut self) {
        step_wall_clock(-self.0);
    }
}

#[test]
fn a_wall_clock_step_during_watch_expires_nothing_and_moves_no_event() {
    if !require_root("a_wall_clock_step_during_watch_expires_nothing_and_moves_no_event") {
        return;
    }
    if std::env::var_os("SMAP_VM").is_none() {
        say_skipped(
            "skipped: a_wall_clock_step_during_watch_expires_nothing_and_moves_no_event steps the system clock; \
             it runs inside the kernel matrix's VMs (tests/vm/matrix.sh)",
        );
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("clock").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let api_svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let _server = cluster.serve_tcp(&api, 8080).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let config = dir.path().join("config.yaml");
    // A dependency idle for a minute is gone: a two-hour step would expire it at once.
    std::fs::write(&config, "change_debounce: 100ms\nmin_emit_interval: 100ms\nconnection_ttl: 60s\n").unwrap();
    let started = Instant::now();
    let watch = Watch::start(dir.path(), &kubectl, &config, cluster.node_name());
    let (rec, events) = (watch.rec.clone(), watch.events.clone());
    assert!(cluster.tcp_call(&web, api_svc.addr(80), 100, 200).unwrap().is_ok());
    wait_for_lines(&events, "\"dependency_detected\"", 1);

    const STEP_S: i64 = 2 * 3600;
    step_wall_clock(STEP_S);
    let _back = StepBack(STEP_S);
    // Ticks every second: give several of them the stepped clock.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(cluster.tcp_call(&web, api_svc.addr(80), 100, 200).unwrap().is_ok());
    std::thread::sleep(Duration::from_millis(1500));
    watch.stop();
    let elapsed = started.elapsed();

    let live = std::fs::read_to_string(&events).unwrap();
    for gone in ["\"dependency_gone\"", "\"service_removed\""] {
        assert!(!live.contains(gone), "the step expired something: {live}");
    }
    // Every event is stamped within the run's real duration of the first one.
    let times: Vec<i64> = live
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["timestamp"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()))
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64)
        .collect();
    assert!(times.len() >= 3, "{live}");
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(span <= elapsed.as_nanos() as i64, "events span {span} ns in a {elapsed:?} run: {live}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "out of order: {live}");
    assert_replay_is_the_live_stream(&rec, &config, &events);
}
