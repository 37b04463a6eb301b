//! `smap-watch-latency [CLIENTS] [SMAP]`: how long `smap watch` takes from a connect()
//! to the `dependency_detected` event it causes, on real pods (network namespaces)
//! calling a real ClusterIP. Needs root. Prints p50, p99 and max over CLIENTS first
//! calls (default 60), each from its own workload so each is a new dependency.
//!
//! Latency is the wall-clock time the event line arrived on the watch's stdout minus the
//! event's own time, which is the kernel's timestamp of the connect.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smap_e2e::{require_root, Cluster, PodSpec, ServicePort, ServiceSpec};

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128)
}

fn rfc3339_ns(text: &str) -> Option<i128> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128)
}

#[expect(clippy::print_stdout, clippy::print_stderr, reason = "a measuring tool's report")]
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let clients: u8 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60).min(200);
    let smap = args.next().unwrap_or_else(|| "target/release/smap".to_owned());
    if !require_root("smap-watch-latency") {
        return ExitCode::from(2);
    }
    match run(clients, &smap) {
        Ok(mut latencies) => {
            latencies.sort_unstable();
            let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] as f64 / 1e6;
            println!(
                "connect() -> dependency_detected over {} new dependencies: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                latencies.len(),
                pick(0.5),
                pick(0.99),
                pick(1.0)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(clients: u8, smap: &str) -> Result<Vec<i128>, Box<dyn std::error::Error>> {
    let mut cluster = Cluster::new("latency")?;
    let server =
        cluster.add_pod(PodSpec::for_deployment("bench", "api", Ipv4Addr::new(10, 244, 1, 2)).label("app", "api"))?;
    let service = cluster.add_service(
        ServiceSpec::new("bench", "api", Ipv4Addr::new(10, 96, 0, 2))
            .port(ServicePort::tcp(80, 8080))
            .selector("app", "api"),
    )?;
    let _server = cluster.serve_tcp(&server, 8080)?;
    let mut pods = Vec::new();
    for i in 0..clients {
        let ip = Ipv4Addr::new(10, 244, 2 + i / 200, 10 + i % 200);
        pods.push(cluster.add_pod(PodSpec::for_deployment("bench", &format!("client-{i}"), ip))?);
    }
    let dir = tempfile_dir()?;
    let kubectl = dir.join("k8s.json");
    std::fs::write(&kubectl, serde_json::to_string(&cluster.kubectl_json())?)?;
    let mut watch = Command::new(smap)
        .args(["watch", "--k8s-from"])
        .arg(&kubectl)
        .args(["--listen", "127.0.0.1:0", "--node", cluster.node_name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().ok_or("no stdout")?;
    let (lines, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send((now_ns(), line)).is_err() {
                break;
            }
        }
    });
    // Ready once the Services are discovered.
    wait_for(&arrivals, "service_discovered", Duration::from_secs(30))?;
    let mut latencies = Vec::new();
    for pod in &pods {
        let report = cluster.tcp_call(pod, service.addr(80), 10, 10)?;
        if !report.is_ok() {
            return Err(format!("call from {} failed: {report:?}", pod.name).into());
        }
        let (arrived, line) = wait_for(&arrivals, "dependency_detected", Duration::from_secs(10))?;
        let event: serde_json::Value = serde_json::from_str(&line)?;
        let at = event["timestamp"].as_str().and_then(rfc3339_ns).ok_or("event without timestamp")?;
        latencies.push(arrived - at);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(latencies)
}

fn wait_for(
    arrivals: &mpsc::Receiver<(i128, String)>,
    kind: &str,
    timeout: Duration,
) -> Result<(i128, String), Box<dyn std::error::Error>> {
    let needle = format!("\"event_type\":\"{kind}\"");
    loop {
        let (at, line) = arrivals.recv_timeout(timeout).map_err(|_| format!("no {kind} event within {timeout:?}"))?;
        if line.contains(&needle) {
            return Ok((at, line));
        }
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("smap-watch-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
