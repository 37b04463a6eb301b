//! A loopback stand-in for the Kubernetes API server that speaks the real list/watch
//! protocol over HTTP/1.1: JSON lists carrying `metadata.resourceVersion`, chunked
//! watch streams of ADDED / MODIFIED / DELETED / BOOKMARK lines replayed from a change
//! log from any resourceVersion still retained, an ERROR event with a 410 Status for
//! one that was compacted away, field selectors on `metadata.namespace` and
//! `metadata.name`, 401 and 403 Status bodies.
//!
//! Tests change the cluster through it and can cut every open watch stream
//! mid-response, as a restarting API server or a broken connection does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One entry of the change log, as a watch replays it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    resource: String,
    namespace: String,
    name: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    uids: u64,
    /// Current objects by (resource, namespace, name).
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Change>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    compacted: u64,
    /// Bumped to cut every open watch stream.
    drops: u64,
    /// Bumped to send a BOOKMARK at the current resourceVersion on every open watch.
    bookmarks: u64,
    /// Watch streams open now.
    watching: usize,
    /// (resource, verb) pairs answered with 403.
    forbidden: BTreeSet<(String, String)>,
    /// The bearer token required, if any (else 401).
    token: Option<String>,
    /// Every request line, in order.
    requests: Vec<String>,
}

/// The API server. Dropping it stops listening.
pub struct ApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resource (URL plural) of a kind.
pub fn resource_of(kind: &str) -> &'static str {
    match kind {
        "Pod" => "pods",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Node" => "nodes",
        "Namespace" => "namespaces",
        "Ingress" => "ingresses",
        "NetworkPolicy" => "networkpolicies",
        other => panic!("unknown kind {other}"),
    }
}

fn api_version_of(resource: &str) -> &'static str {
    match resource {
        "endpointslices" => "discovery.k8s.io/v1",
        "ingresses" | "networkpolicies" => "networking.k8s.io/v1",
        _ => "v1",
    }
}

fn list_kind_of(resource: &str) -> &'static str {
    match resource {
        "pods" => "PodList",
        "services" => "ServiceList",
        "endpointslices" => "EndpointSliceList",
        "nodes" => "NodeList",
        "namespaces" => "NamespaceList",
        "ingresses" => "IngressList",
        "networkpolicies" => "NetworkPolicyList",
        _ => "List",
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A parsed request: which objects it is about and how.
#[derive(Debug)]
struct Request {
    resource: String,
    /// From the path (`/api/v1/namespaces/NS/pods`).
    namespace: Option<String>,
    query: BTreeMap<String, String>,
    authorization: Option<String>,
}

impl Request {
    fn watch(&self) -> bool {
        matches!(self.query.get("watch").map(String::as_str), Some("true" | "1"))
    }

    fn verb(&self) -> &'static str {
        if self.watch() {
            "watch"
        } else {
            "list"
        }
    }

    /// Whether an object at (namespace, name) is in this request's scope.
    fn selects(&self, namespace: &str, name: &str) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        let Some(selector) = self.query.get("fieldSelector") else { return true };
        selector.split(',').filter(|t| !t.is_empty()).all(|term| {
            let (field, negate, value) = match term.split_once("!=") {
                Some((f, v)) => (f, true, v),
                None => {
                    let (f, v) = term.split_once('=').expect("field selector term");
                    (f, false, v.trim_start_matches('='))
                }
            };
            let actual = match field {
                "metadata.namespace" => namespace,
                "metadata.name" => name,
                other => panic!("unsupported field selector {other}"),
            };
            (actual == value) != negate
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("utf8");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf8")
}

fn parse_target(target: &str) -> Option<(String, Option<String>, BTreeMap<String, String>)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/apis/discovery.k8s.io/v1/"))
        .or_else(|| path.strip_prefix("/apis/networking.k8s.io/v1/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (resource, namespace) = match segments.as_slice() {
        [resource] => ((*resource).to_owned(), None),
        ["namespaces", ns, resource] => ((*resource).to_owned(), Some((*ns).to_owned())),
        _ => return None,
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some((resource, namespace, query))
}

impl ApiServer {
    /// Starts listening on 127.0.0.1 on a free port.
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { rv: 100, uids: 0, ..State::default() }));
        let (changed, _) = watch::channel(0u64);
        let task = {
            let state = state.clone();
            let changed = changed.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else { return };
                    tokio::spawn(serve(socket, state.clone(), changed.subscribe()));
                }
            })
        };
        ApiServer { addr, state, changed, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|g| *g += 1);
        out
    }

    /// Creates or replaces an object (kind from its `kind`), as kubectl apply would:
    /// a new resourceVersion, a uid on creation, an ADDED or MODIFIED change.
    pub fn apply(&self, object: Value) -> u64 {
        self.with(|s| apply(s, object))
    }

    /// Deletes an object; the DELETED change carries its last state.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> u64 {
        self.with(|s| delete(s, kind, namespace, name))
    }

    /// Changes the cluster while every watch is cut: the changes are made in the same
    /// critical section that cuts the streams, so no open stream sees them; watchers
    /// must find them on reconnecting. With `compact`, the change log up to now is
    /// forgotten, so resuming from an older resourceVersion gets 410 Gone.
    pub fn while_disconnected(&self, compact: bool, ops: Vec<Op>) {
        self.with(|s| {
            s.drops += 1;
            for op in ops {
                match op {
                    Op::Apply(object) => {
                        apply(s, object);
                    }
                    Op::Delete(kind, namespace, name) => {
                        delete(s, kind, &namespace, &name);
                    }
                }
            }
            if compact {
                s.compacted = s.rv;
                s.log.clear();
            }
        });
    }

    /// Sends a BOOKMARK with the current resourceVersion on every open watch that
    /// asked for bookmarks; returns that resourceVersion.
    pub fn bookmark(&self) -> u64 {
        self.with(|s| {
            s.bookmarks += 1;
            s.rv
        })
    }

    /// Bumps the resourceVersion with a change nobody watches (an Event object, say).
    pub fn unrelated_change(&self) -> u64 {
        self.with(|s| {
            s.rv += 1;
            s.rv
        })
    }

    /// Answers `verb` (list or watch) on `resource` with 403.
    pub fn forbid(&self, resource: &str, verb: &str) {
        self.with(|s| {
            s.forbidden.insert((resource.to_owned(), verb.to_owned()));
        });
    }

    /// Requires `Authorization: Bearer TOKEN` (else 401).
    pub fn require_token(&self, token: &str) {
        self.with(|s| s.token = Some(token.to_owned()));
    }

    /// Waits until `n` watch streams are open: the client lists, then watches, and a
    /// change made in between is seen by the list only.
    pub async fn watching(&self, n: usize) {
        for _ in 0..1000 {
            if self.state.lock().unwrap().watching >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{n} watches never opened: {:#?}", self.requests());
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    /// Request lines so far (`GET /api/v1/pods?...`), decoded.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// A change made while the watches are cut.
pub enum Op {
    /// Create or replace.
    Apply(Value),
    /// Delete (kind, namespace, name).
    Delete(&'static str, String, String),
}

fn apply(s: &mut State, mut object: Value) -> u64 {
    let resource = resource_of(object["kind"].as_str().expect("kind")).to_owned();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
    let name = object["metadata"]["name"].as_str().expect("name").to_owned();
    s.rv += 1;
    let key = (resource.clone(), namespace.clone(), name.clone());
    let existing = s.objects.get(&key);
    let uid = match existing {
        Some(old) => old["metadata"]["uid"].clone(),
        None => {
            s.uids += 1;
            Value::String(format!("00000000-0000-4000-8000-{:012}", s.uids))
        }
    };
    let kind = if existing.is_some() { "MODIFIED" } else { "ADDED" };
    object["metadata"]["uid"] = uid;
    object["metadata"]["resourceVersion"] = Value::String(s.rv.to_string());
    object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    // What server-side apply adds to every object; smap leaves it out of recordings.
    object["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1"}]);
    s.objects.insert(key, object.clone());
    s.log.push(Change { rv: s.rv, resource, namespace, name, kind, object });
    s.rv
}

fn delete(s: &mut State, kind: &str, namespace: &str, name: &str) -> u64 {
    let resource = resource_of(kind).to_owned();
    let key = (resource.clone(), namespace.to_owned(), name.to_owned());
    let mut object = s.objects.remove(&key).unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"));
    s.rv += 1;
    object["metadata"]["resourceVersion"] = Value::String(s.rv.to_string());
    s.log.push(Change {
        rv: s.rv,
        resource,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        kind: "DELETED",
        object,
    });
    s.rv
}

async fn serve(socket: TcpStream, state: Arc<Mutex<State>>, changed: watch::Receiver<u64>) {
    let mut reader = BufReader::new(socket);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let mut socket = reader.into_inner();
    let target = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    state.lock().unwrap().requests.push(format!("GET {}", percent_decode(&target)));
    let Some((resource, namespace, query)) = parse_target(&target) else {
        respond(&mut socket, 404, &status(404, "NotFound", "the server could not find the requested resource")).await;
        return;
    };
    let request = Request { resource, namespace, query, authorization };
    let refusal = {
        let s = state.lock().unwrap();
        let verb = request.verb();
        if s.token.as_ref().is_some_and(|t| request.authorization.as_deref() != Some(&format!("Bearer {t}"))) {
            Some((401, status(401, "Unauthorized", "Unauthorized")))
        } else if s.forbidden.contains(&(request.resource.clone(), verb.to_owned())) {
            let message = format!(
                "{} is forbidden: User \"system:serviceaccount:smap:smap\" cannot {verb} resource \"{}\" in API group \"{}\" {}",
                request.resource,
                request.resource,
                api_version_of(&request.resource).trim_end_matches("v1").trim_end_matches('/'),
                match &request.namespace {
                    Some(ns) => format!("in the namespace \"{ns}\""),
                    None => "at the cluster scope".to_owned(),
                }
            );
            Some((403, status(403, "Forbidden", &message)))
        } else {
            None
        }
    };
    if let Some((code, body)) = refusal {
        respond(&mut socket, code, &body).await;
        return;
    }
    if request.watch() {
        stream_watch(socket, &request, state, changed).await;
    } else {
        let body = {
            let s = state.lock().unwrap();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((r, ns, name), _)| *r == request.resource && request.selects(ns, name))
                .map(|(_, object)| {
                    // The API server leaves kind and apiVersion out of list items.
                    let mut item = object.clone();
                    item.as_object_mut().unwrap().remove("kind");
                    item.as_object_mut().unwrap().remove("apiVersion");
                    item
                })
                .collect();
            json!({"kind": list_kind_of(&request.resource), "apiVersion": api_version_of(&request.resource),
                   "metadata": {"resourceVersion": s.rv.to_string()}, "items": items})
        };
        respond(&mut socket, 200, &body).await;
    }
}

async fn respond(socket: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "Not Found",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn chunk(socket: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let data = format!("{line}\n");
    socket.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes()).await
}

/// Counts a watch stream as open until dropped.
struct Open(Arc<Mutex<State>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.watching -= 1;
        }
    }
}

/// A watch: replays retained changes after the requested resourceVersion, then
/// follows new ones until the stream is cut.
async fn stream_watch(
    mut socket: TcpStream,
    request: &Request,
    state: Arc<Mutex<State>>,
    mut changed: watch::Receiver<u64>,
) {
    let from: u64 = request.query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks_allowed = request.query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (drops, mut bookmarks, compacted) = {
        let mut s = state.lock().unwrap();
        s.watching += 1;
        (s.drops, s.bookmarks, s.compacted)
    };
    let _open = Open(state.clone());
    if from < compacted {
        let message = format!("too old resource version: {from} ({compacted})");
        let _ = chunk(&mut socket, &json!({"type": "ERROR", "object": status(410, "Expired", &message)})).await;
        let _ = socket.write_all(b"0\r\n\r\n").await;
        let _ = socket.shutdown().await;
        return;
    }
    let mut cursor = from;
    loop {
        let (lines, cut) = {
            let s = state.lock().unwrap();
            if s.drops != drops {
                (Vec::new(), true)
            } else {
                let mut lines: Vec<Value> = s
                    .log
                    .iter()
                    .filter(|c| {
                        c.rv > cursor && c.resource == request.resource && request.selects(&c.namespace, &c.name)
                    })
                    .map(|c| json!({"type": c.kind, "object": c.object}))
                    .collect();
                cursor = s.rv.max(cursor);
                if s.bookmarks != bookmarks {
                    bookmarks = s.bookmarks;
                    if bookmarks_allowed {
                        lines.push(json!({"type": "BOOKMARK", "object": {
                            "kind": list_kind_of(&request.resource).trim_end_matches("List"),
                            "apiVersion": api_version_of(&request.resource),
                            "metadata": {"resourceVersion": s.rv.to_string()}}}));
                    }
                }
                (lines, false)
            }
        };
        if cut {
            // Cut mid-response: no terminating chunk, as when a connection breaks.
            drop(socket);
            return;
        }
        for line in &lines {
            if chunk(&mut socket, line).await.is_err() {
                return;
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}
