//! The Kubernetes API source against a loopback API server speaking the real
//! list/watch protocol: snapshots and changes of every kind, resuming a dropped
//! watch, bookmarks, 410 Gone relists, 401/403 errors, namespace filtering on the
//! server, and what the engine makes of the recorded history.

mod apiserver;
mod errors;
mod objects;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use smap_analyze::topology::{Health, ServiceType, Topology};
use smap_analyze::{Config, Engine};
use smap_capture::k8s_api::{K8sApiError, KubeOptions, KubeWatch};
use smap_replay::time::now_ns;
use smap_replay::{
    ConnEvent, ConnKind, Event, ObjectAction, ObjectEvent, ObjectKind, Recording, RecordingMeta, RecordingWriter, Side,
    WriterOptions,
};

use apiserver::{ApiServer, Op};
use objects::*;

/// Fast retries: the tests break connections on purpose.
fn options() -> KubeOptions {
    KubeOptions {
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(100),
        sync_timeout: Duration::from_secs(20),
        ..KubeOptions::default()
    }
}

/// A kubeconfig for the mock server, so tests go through smap's real config loading.
fn kubeconfig(dir: &Path, server: &ApiServer, token: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {}\n\
         users:\n- name: smap\n  user:\n    token: {token}\ncontexts:\n- name: mock\n  context:\n    \
         cluster: mock\n    user: smap\ncurrent-context: mock\n",
        server.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The shop: web -> api -> db, one ingress, one network policy, and CoreDNS in
/// kube-system (excluded by default).
fn shop(server: &ApiServer) {
    server.apply(namespace("shop"));
    server.apply(namespace("kube-system"));
    server.apply(node("node-1", "10.0.0.1"));
    server.apply(pod("shop", "web-1", "10.244.1.10", "web", "v1", "nginx:1.27", 8080));
    server.apply(pod("shop", "api-1", "10.244.2.20", "api", "v2", "registry.example/api:2.1", 8080));
    server.apply(pod("shop", "db-1", "10.244.3.30", "db", "16", "postgres:16", 5432));
    server.apply(pod("kube-system", "coredns-1", "10.244.0.5", "coredns", "1.11", "coredns/coredns:1.11", 53));
    server.apply(service("shop", "web", "10.96.0.10", 80, 8080));
    server.apply(service("shop", "api", "10.96.0.20", 80, 8080));
    server.apply(service("shop", "db", "10.96.0.30", 5432, 5432));
    server.apply(slice("shop", "web", 8080, &[("10.244.1.10", "web-1", true)]));
    server.apply(slice("shop", "api", 8080, &[("10.244.2.20", "api-1", true)]));
    server.apply(slice("shop", "db", 5432, &[("10.244.3.30", "db-1", true)]));
    server.apply(ingress("shop", "web", "web", 80));
    server.apply(network_policy("shop", "api-allow-web", "api"));
}

async fn start(
    server: &ApiServer,
    dir: &Path,
    options: KubeOptions,
) -> Result<(KubeWatch, Vec<ObjectEvent>), K8sApiError> {
    let options = KubeOptions { kubeconfig: Some(kubeconfig(dir, server, "good")), ..options };
    KubeWatch::start(options).await
}

/// Takes exactly `n` rows from the watch, then checks nothing more arrives for a
/// while: a doubled event would.
async fn take(watch: &mut KubeWatch, n: usize) -> Vec<ObjectEvent> {
    let mut rows = Vec::new();
    while rows.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(batch) => rows.extend(batch.unwrap()),
            Err(_) => panic!("waited 10s for {n} rows, got {}: {:#?}", rows.len(), names(&rows)),
        }
    }
    assert_eq!(rows.len(), n, "more rows than expected: {:#?}", names(&rows));
    quiet(watch).await;
    rows
}

/// Asserts no rows arrive for 300 ms.
async fn quiet(watch: &mut KubeWatch) {
    if let Ok(batch) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        panic!("unexpected rows: {:#?}", names(&batch.unwrap()));
    }
}

fn names(rows: &[ObjectEvent]) -> Vec<(&'static str, &'static str, String)> {
    rows.iter()
        .map(|r| {
            let id = if r.namespace.is_empty() { r.name.clone() } else { format!("{}/{}", r.namespace, r.name) };
            (r.kind.as_str(), r.action.as_str(), id)
        })
        .collect()
}

fn sorted(mut v: Vec<(&'static str, &'static str, String)>) -> Vec<(&'static str, &'static str, String)> {
    v.sort();
    v
}

fn owned(v: &[(&'static str, &'static str, &str)]) -> Vec<(&'static str, &'static str, String)> {
    v.iter().map(|(k, a, n)| (*k, *a, (*n).to_owned())).collect()
}

fn shop_snapshot() -> Vec<(&'static str, &'static str, String)> {
    sorted(owned(&[
        ("EndpointSlice", "snapshot", "shop/api-x7k2p"),
        ("EndpointSlice", "snapshot", "shop/db-x7k2p"),
        ("EndpointSlice", "snapshot", "shop/web-x7k2p"),
        ("Ingress", "snapshot", "shop/web"),
        ("Namespace", "snapshot", "shop"),
        ("NetworkPolicy", "snapshot", "shop/api-allow-web"),
        ("Node", "snapshot", "node-1"),
        ("Pod", "snapshot", "shop/api-1"),
        ("Pod", "snapshot", "shop/db-1"),
        ("Pod", "snapshot", "shop/web-1"),
        ("Service", "snapshot", "shop/api"),
        ("Service", "snapshot", "shop/db"),
        ("Service", "snapshot", "shop/web"),
    ]))
}

const MS: i64 = 1_000_000;

fn conn(kind: ConnKind, side: Side, src: &str, sport: u16, dst: &str, dport: u16, t: i64) -> ConnEvent {
    ConnEvent {
        time_ns: t,
        node: Arc::from("node-1"),
        kind,
        side,
        src_ip: src.parse().unwrap(),
        src_port: sport,
        dst_ip: dst.parse().unwrap(),
        dst_port: dport,
        pid: 1,
        comm: Arc::from("app"),
        cgroup_id: 1,
        netns: 1,
        socket_id: u64::from(sport),
        bytes_sent: 0,
        bytes_received: 0,
        retransmits: 0,
        error: 0,
    }
}

/// Writes the events to a recording (sorted as the live pipeline does), reads it back,
/// checks the round trip and folds it into a topology.
fn record_and_build(dir: &Path, mut events: Vec<Event>) -> Topology {
    events.sort_by_key(|e| (e.time_ns(), matches!(e, Event::Conn(_))));
    let out = dir.join("recording");
    let mut writer =
        RecordingWriter::create(&out, RecordingMeta::new("capture", "node-1", "test"), WriterOptions::default())
            .unwrap();
    for event in &events {
        writer.write_event(event).unwrap();
    }
    writer.finish(&smap_replay::LossCounters::default()).unwrap();
    let recording = Recording::open(&out).unwrap();
    let read: Vec<ObjectEvent> = recording.object_events().map(Result::unwrap).collect();
    let written: Vec<ObjectEvent> =
        events.iter().filter_map(|e| if let Event::Object(o) = e { Some((**o).clone()) } else { None }).collect();
    assert_eq!(read, written, "object events survive the recording unchanged");
    let mut engine = Engine::new(Config::default());
    for event in &events {
        engine.apply(event);
    }
    assert_eq!(engine.cluster().unparsed(), 0, "every recorded object parses");
    engine.topology()
}

fn edges(t: &Topology) -> Vec<(String, String, u16, u64)> {
    t.edges.iter().map(|e| (e.source.clone(), e.destination.clone(), e.port, e.connections)).collect()
}

fn object(row: &ObjectEvent) -> Value {
    serde_json::from_str(&row.object).unwrap()
}

#[tokio::test]
async fn every_kind_is_snapshotted_then_added_modified_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let before = now_ns();
    let (mut watch, snapshot) = start(&server, dir.path(), options()).await.unwrap();
    assert_eq!(sorted(names(&snapshot)), shop_snapshot(), "kube-system is left out");
    for row in &snapshot {
        assert!(row.time_ns >= before && row.time_ns <= now_ns(), "stamped when its list completed");
        assert!(!row.uid.is_empty() && !row.resource_version.is_empty());
        let json = object(row);
        assert_eq!(json["kind"], row.kind.as_str(), "list items get their kind back");
        assert!(json["metadata"].get("managedFields").is_none(), "managedFields are left out");
    }
    // Exclusion is done by the API server, on every namespaced kind and on Namespaces.
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.starts_with("GET /api/v1/pods?")
        && r.contains("fieldSelector=metadata.namespace!=kube-node-lease,metadata.namespace!=kube-public,metadata.namespace!=kube-system")));
    assert!(requests
        .iter()
        .any(|r| r.starts_with("GET /api/v1/namespaces?") && r.contains("metadata.name!=kube-system")));
    assert!(requests.iter().any(|r| r.starts_with("GET /apis/discovery.k8s.io/v1/endpointslices?")));
    assert!(requests.iter().any(|r| r.starts_with("GET /apis/networking.k8s.io/v1/networkpolicies?")));
    assert!(
        requests.iter().filter(|r| r.contains("watch=true")).all(|r| r.contains("allowWatchBookmarks=true")),
        "every watch asks for bookmarks"
    );

    // Add, modify, delete one object of each kind.
    let new_objects = [
        namespace("billing"),
        node("node-2", "10.0.0.2"),
        pod("shop", "cart-1", "10.244.4.40", "cart", "v1", "registry.example/cart:1.0", 8080),
        service("shop", "cart", "10.96.0.40", 80, 8080),
        slice("shop", "cart", 8080, &[("10.244.4.40", "cart-1", true)]),
        ingress("shop", "cart", "cart", 80),
        network_policy("shop", "cart-allow-web", "cart"),
    ];
    let mut changes = Vec::new();
    for new in new_objects {
        let kind = new["kind"].as_str().unwrap().to_owned();
        let ns = new["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
        let name = new["metadata"]["name"].as_str().unwrap().to_owned();
        server.apply(new.clone());
        let mut modified = new.clone();
        modified["metadata"]["labels"]["changed"] = Value::from("yes");
        server.apply(modified);
        server.delete(&kind, &ns, &name);
        let id = if ns.is_empty() { name.clone() } else { format!("{ns}/{name}") };
        let rows = take(&mut watch, 3).await;
        assert_eq!(
            names(&rows),
            vec![
                (rows[0].kind.as_str(), "added", id.clone()),
                (rows[0].kind.as_str(), "modified", id.clone()),
                (rows[0].kind.as_str(), "deleted", id.clone())
            ]
        );
        assert_eq!(rows[0].kind.as_str(), kind);
        assert_eq!(object(&rows[1])["metadata"]["labels"]["changed"], "yes");
        assert_eq!(object(&rows[2])["metadata"]["labels"]["changed"], "yes", "a delete carries the last state");
        assert!(rows.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        changes.extend(rows);
    }

    // Health over time: api's only endpoint turns unready.
    server.apply(slice("shop", "api", 8080, &[("10.244.2.20", "api-1", false)]));
    let unready = take(&mut watch, 1).await;
    assert_eq!(names(&unready), owned(&[("EndpointSlice", "modified", "shop/api-x7k2p")]));
    changes.extend(unready);
    assert_eq!(watch.counters().relists, 0);

    // The recording replays it: web calls api, api calls db; db is a database by its
    // image and port, api's version comes from its labels, and its health from the
    // slice's last readiness.
    let t0 = snapshot.iter().map(|r| r.time_ns).max().unwrap();
    let mut events: Vec<Event> = snapshot.into_iter().chain(changes).map(Event::from).collect();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, t0 + MS)));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.2.20",
        40001,
        "10.96.0.30",
        5432,
        t0 + MS,
    )));
    let topology = record_and_build(dir.path(), events);
    assert_eq!(
        edges(&topology),
        vec![
            ("shop/api".to_owned(), "shop/db".to_owned(), 5432, 1),
            ("shop/web".to_owned(), "shop/api".to_owned(), 80, 1)
        ]
    );
    assert_eq!(topology.services["shop/db"].service_type, ServiceType::Database);
    assert_eq!(topology.services["shop/api"].version.as_deref(), Some("v2"));
    assert_eq!(topology.services["shop/api"].health, Health::Down);
    assert_eq!(topology.services["shop/db"].health, Health::Healthy);
}

#[tokio::test]
async fn a_dropped_watch_resumes_from_its_resource_version_without_missing_or_doubling() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let (mut watch, _) = start(&server, dir.path(), options()).await.unwrap();
    server.watching(7).await;
    server.apply(pod("shop", "web-2", "10.244.1.11", "web", "v1", "nginx:1.27", 8080));
    assert_eq!(names(&take(&mut watch, 1).await), owned(&[("Pod", "added", "shop/web-2")]));
    let lists_before = server.requests().iter().filter(|r| !r.contains("watch=true")).count();
    let seen = server.resource_version();

    // Every stream is cut; meanwhile a pod changes, one is deleted, one is added.
    let mut web1 = pod("shop", "web-1", "10.244.1.10", "web", "v1", "nginx:1.27", 8080);
    web1["metadata"]["labels"]["version"] = Value::from("v1.1");
    server.while_disconnected(
        false,
        vec![
            Op::Apply(web1),
            Op::Delete("Pod", "shop".into(), "web-2".into()),
            Op::Apply(pod("shop", "web-3", "10.244.1.12", "web", "v1", "nginx:1.27", 8080)),
        ],
    );
    let rows = take(&mut watch, 3).await;
    assert_eq!(
        names(&rows),
        owned(&[("Pod", "modified", "shop/web-1"), ("Pod", "deleted", "shop/web-2"), ("Pod", "added", "shop/web-3")])
    );
    // Resumed with a watch from the last resourceVersion seen, not a relist.
    let requests = server.requests();
    assert_eq!(requests.iter().filter(|r| !r.contains("watch=true")).count(), lists_before, "no relist");
    assert!(
        requests.iter().any(|r| r.starts_with("GET /api/v1/pods?") && r.contains(&format!("resourceVersion={seen}"))),
        "the pod watch resumed from {seen}: {requests:#?}"
    );
    // A cut chunked stream ends like a server-side watch timeout: resumed, not an error.
    assert_eq!(watch.counters().relists, 0);
}

#[tokio::test]
async fn a_bookmark_moves_the_resume_point_past_compacted_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let (mut watch, _) = start(&server, dir.path(), options()).await.unwrap();
    server.watching(7).await;
    // The cluster moves on in things smap does not watch; a bookmark tells the watch.
    for _ in 0..5 {
        server.unrelated_change();
    }
    let bookmarked = server.bookmark();
    quiet(&mut watch).await;
    // History up to the bookmark is compacted: only a watch that took the bookmark's
    // resourceVersion can resume without a relist.
    server.while_disconnected(true, vec![]);
    server.apply(pod("shop", "web-2", "10.244.1.11", "web", "v1", "nginx:1.27", 8080));
    assert_eq!(names(&take(&mut watch, 1).await), owned(&[("Pod", "added", "shop/web-2")]));
    assert_eq!(watch.counters().relists, 0, "resumed from the bookmark");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.contains("watch=true") && r.contains(&format!("resourceVersion={bookmarked}"))));
}

#[tokio::test]
async fn gone_relists_and_reconciles_what_changed_while_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let (mut watch, snapshot) = start(&server, dir.path(), options()).await.unwrap();
    let web1_uid = snapshot.iter().find(|r| r.name == "web-1").unwrap().uid.clone();
    let mut db = service("shop", "db", "10.96.0.30", 5432, 5432);
    db["metadata"]["labels"]["tier"] = Value::from("data");
    // While disconnected: web-1 deleted (its DELETED event compacted away), api-1
    // deleted and recreated under the same name, db modified, cart added.
    server.while_disconnected(
        true,
        vec![
            Op::Delete("Pod", "shop".into(), "web-1".into()),
            Op::Delete("Pod", "shop".into(), "api-1".into()),
            Op::Apply(pod("shop", "api-1", "10.244.2.21", "api", "v2", "registry.example/api:2.1", 8080)),
            Op::Apply(db),
            Op::Apply(pod("shop", "cart-1", "10.244.4.40", "cart", "v1", "registry.example/cart:1.0", 8080)),
        ],
    );
    let rows = take(&mut watch, 5).await;
    assert_eq!(
        sorted(names(&rows)),
        sorted(owned(&[
            ("Pod", "deleted", "shop/web-1"),
            ("Pod", "deleted", "shop/api-1"),
            ("Pod", "added", "shop/api-1"),
            ("Pod", "added", "shop/cart-1"),
            ("Service", "modified", "shop/db"),
        ]))
    );
    let pods: Vec<_> = rows.iter().filter(|r| r.kind == ObjectKind::Pod).collect();
    assert!(
        pods.iter().position(|r| r.action == ObjectAction::Deleted && r.name == "api-1")
            < pods.iter().position(|r| r.action == ObjectAction::Added && r.name == "api-1"),
        "deletions first"
    );
    let tombstone = rows.iter().find(|r| r.name == "web-1").unwrap();
    assert_eq!(tombstone.uid, web1_uid);
    assert_eq!(object(tombstone)["metadata"]["name"], "web-1");
    assert!(watch.counters().relists >= 2, "pods and services relisted: {:?}", watch.counters());
    // The engine drops the deleted pod from a tombstone as from a full object.
    let mut events: Vec<Event> = snapshot.into_iter().chain(rows).map(Event::from).collect();
    let t = events.iter().map(Event::time_ns).max().unwrap();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, t + MS)));
    let topology = record_and_build(dir.path(), events);
    assert!(edges(&topology).iter().all(|(source, ..)| source != "shop/web"), "{:?}", edges(&topology));
}

#[tokio::test]
async fn a_pod_ip_reused_by_another_service_is_attributed_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let (mut watch, snapshot) = start(&server, dir.path(), options()).await.unwrap();
    let t0 = snapshot.iter().map(|r| r.time_ns).max().unwrap();
    // web-1 (10.244.1.10) calls api, then goes away and a new api pod gets its IP.
    server.delete("Pod", "shop", "web-1");
    server.apply(slice("shop", "web", 8080, &[]));
    let gone = take(&mut watch, 2).await;
    server.apply(pod("shop", "api-2", "10.244.1.10", "api", "v2", "registry.example/api:2.1", 8080));
    server.apply(slice("shop", "api", 8080, &[("10.244.2.20", "api-1", true), ("10.244.1.10", "api-2", true)]));
    let reused = take(&mut watch, 2).await;
    let t_deleted = gone[0].time_ns;
    let t_reused = reused.iter().map(|r| r.time_ns).max().unwrap();
    assert!(t0 < t_deleted && t_deleted <= t_reused);
    let mut events: Vec<Event> = snapshot.into_iter().chain(gone).chain(reused).map(Event::from).collect();
    // Before the deletion, 10.244.1.10 is web; after the reuse it is api calling db.
    let before = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, t_deleted - 1);
    let after = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40001, "10.96.0.30", 5432, t_reused + 1);
    events.push(Event::Conn(before));
    events.push(Event::Conn(after));
    let topology = record_and_build(dir.path(), events);
    assert_eq!(
        edges(&topology),
        vec![
            ("shop/api".to_owned(), "shop/db".to_owned(), 5432, 1),
            ("shop/web".to_owned(), "shop/api".to_owned(), 80, 1)
        ]
    );
}

#[tokio::test]
async fn included_namespaces_are_watched_through_their_own_paths() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    server.apply(namespace("other"));
    server.apply(pod("other", "x-1", "10.244.9.9", "x", "v1", "x:1", 80));
    let options = KubeOptions { namespaces: vec!["shop".into()], ..options() };
    let (mut watch, snapshot) = start(&server, dir.path(), options).await.unwrap();
    assert_eq!(sorted(names(&snapshot)), shop_snapshot());
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.starts_with("GET /api/v1/namespaces/shop/pods?")));
    assert!(requests.iter().any(|r| r.starts_with("GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?")));
    assert!(requests
        .iter()
        .any(|r| r.starts_with("GET /api/v1/namespaces?") && r.contains("fieldSelector=metadata.name=shop")));
    assert!(!requests.iter().any(|r| r.starts_with("GET /api/v1/pods?")), "no cluster-wide pod list");
    server.apply(pod("other", "x-2", "10.244.9.10", "x", "v1", "x:1", 80));
    server.apply(pod("shop", "web-2", "10.244.1.11", "web", "v1", "nginx:1.27", 8080));
    assert_eq!(names(&take(&mut watch, 1).await), owned(&[("Pod", "added", "shop/web-2")]));
}

/// Whether this process may load eBPF programs; under CI=true it must.
fn privileged_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but not root: {test} must run");
    eprintln!("skipped {test}: needs root (CAP_BPF) to load eBPF programs");
    false
}

/// The whole live pipeline (needs root for the kernel side): the API snapshot and a
/// change made mid-capture land in the recording, in time order.
#[tokio::test]
async fn a_capture_records_the_api_snapshot_and_changes() {
    use smap_capture::kernel::KernelConfig;
    use smap_capture::live::record::{capture, CaptureOptions, K8sSource, NoConsumer, DEFAULT_REORDER_WINDOW};

    if !privileged_or_skip("a_capture_records_the_api_snapshot_and_changes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let kube = KubeOptions { kubeconfig: Some(kubeconfig(dir.path(), &server, "good")), ..options() };
    let out = dir.path().join("rec");
    let options = CaptureOptions {
        out: Some(out.clone()),
        duration: Some(Duration::from_secs(3)),
        k8s: K8sSource::Api(kube),
        kernel: KernelConfig::new("node-1"),
        checkpoint_every: Duration::from_secs(1),
        reorder_window: DEFAULT_REORDER_WINDOW,
        config: Value::Null,
    };
    let change = async {
        server.watching(7).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.apply(pod("shop", "web-2", "10.244.1.11", "web", "v1", "nginx:1.27", 8080));
    };
    let mut consumer = NoConsumer;
    let (summary, ()) = tokio::join!(capture(options, std::future::pending(), &mut consumer), change);
    let summary = summary.unwrap();
    let recording = Recording::open(&out).unwrap();
    let rows: Vec<ObjectEvent> = recording.object_events().map(Result::unwrap).collect();
    assert_eq!(summary.object_events, rows.len() as u64);
    let (snapshot, changes): (Vec<ObjectEvent>, Vec<ObjectEvent>) =
        rows.into_iter().partition(|r| r.action == ObjectAction::Snapshot);
    assert_eq!(sorted(names(&snapshot)), shop_snapshot());
    assert_eq!(names(&changes), owned(&[("Pod", "added", "shop/web-2")]));
    assert!(snapshot.iter().all(|r| r.time_ns <= changes[0].time_ns));
}
