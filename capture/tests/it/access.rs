//! `smap watch --auth kubernetes`: the map's paths answer only requests whose bearer
//! token a Kubernetes API server authenticates (TokenReview) and authorizes for the
//! path (SubjectAccessReview); `/metrics` and the probes stay open. And `--auth
//! token-file`, for clusters without those reviews. The API server is a
//! loopback stand-in answering both reviews with real object JSON, reached through a
//! kubeconfig as the agent reaches the real one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use smap_capture::k8s_api::KubeOptions;
use smap_capture::live::access::{Access, KubeAccess, TokenFile};
use smap_capture::live::serve::{serve_restricted, LiveState};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The token of a user RBAC lets read the map, of one it does not, and the agent's own.
const READER: &str = "reader-token";
const STRANGER: &str = "stranger-token";
const AGENT: &str = "agent-token";
/// The path a reader may `get`, as a ClusterRole's nonResourceURLs grant it.
const READABLE: [&str; 3] = ["/", "/map", "/stats"];

/// Serves TokenReview and SubjectAccessReview creations; records each review it was
/// asked for as `kind body`.
async fn api_server(listener: TcpListener, asked: Arc<Mutex<Vec<String>>>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { return };
        let asked = asked.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(socket);
            let (mut request_line, mut length, mut authorized) = (String::new(), 0usize, false);
            reader.read_line(&mut request_line).await.unwrap();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                authorized |= lower.trim() == format!("authorization: bearer {AGENT}");
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            let review: Value = serde_json::from_slice(&body).unwrap();
            let target = request_line.split_whitespace().nth(1).unwrap_or_default();
            let path = target.split('?').next().unwrap_or_default().to_owned();
            let (code, answer) = if !authorized {
                (401, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 401}))
            } else if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
                asked.lock().unwrap().push(format!("TokenReview {}", review["spec"]["token"]));
                (201, token_review(&review))
            } else if path == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
                let spec = &review["spec"];
                asked
                    .lock()
                    .unwrap()
                    .push(format!("SubjectAccessReview {} {}", spec["user"], spec["nonResourceAttributes"]));
                (201, access_review(&review))
            } else {
                (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}))
            };
            let text = answer.to_string();
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            );
            let mut socket = reader.into_inner();
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(text.as_bytes()).await.unwrap();
            let _ = socket.shutdown().await;
        });
    }
}

fn token_review(review: &Value) -> Value {
    let user = match review["spec"]["token"].as_str() {
        Some(READER) => Some(("system:serviceaccount:monitoring:grafana", "monitoring-readers")),
        Some(STRANGER) => Some(("system:serviceaccount:default:web", "system:serviceaccounts")),
        _ => None,
    };
    let status = match user {
        Some((name, group)) => json!({"authenticated": true,
            "user": {"username": name, "uid": "5d1c7a9e-3b0f-4c1e-9a57-1f2e3d4c5b6a", "groups": [group, "system:authenticated"]},
            "audiences": ["https://kubernetes.default.svc"]}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
           "spec": review["spec"], "status": status})
}

fn access_review(review: &Value) -> Value {
    let spec = &review["spec"];
    let attributes = &spec["nonResourceAttributes"];
    let allowed = spec["user"] == "system:serviceaccount:monitoring:grafana"
        && spec["groups"].as_array().is_some_and(|g| g.iter().any(|g| g == "monitoring-readers"))
        && attributes["verb"] == "get"
        && READABLE.iter().any(|p| attributes["path"] == *p);
    let reason = if allowed { "RBAC: allowed by ClusterRoleBinding \"smap-map-readers\"" } else { "" };
    json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
           "metadata": {"creationTimestamp": null}, "spec": spec, "status": {"allowed": allowed, "reason": reason}})
}

fn kubeconfig(dir: &Path, api: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{api}\n\
         users:\n- name: smap\n  user:\n    token: {AGENT}\ncontexts:\n- name: mock\n  context:\n    \
         cluster: mock\n    user: smap\ncurrent-context: mock\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The status of a GET, with a bearer token if given.
async fn status(address: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    status_with(address, path, token.map(|t| format!("Bearer {t}")).as_deref()).await
}

/// The status of a GET with this Authorization header, if any.
async fn status_with(address: SocketAddr, path: &str, authorization: Option<&str>) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: smap\r\n{auth}Connection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.unwrap();
    reply.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The endpoints with the map behind `access`, on a free loopback port, until dropped.
struct Endpoints {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Endpoints {
    async fn start(access: Access) -> Endpoints {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_restricted(listener, LiveState::new(), Arc::new(access), async move {
            let _ = stopped.await;
        }));
        Endpoints { address, stop: Some(stop), server }
    }

    /// Stops the server and checks it stopped cleanly.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        (&mut self.server).await.unwrap().unwrap();
    }
}

#[test]
fn the_map_answers_only_tokens_the_kubernetes_api_allows() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_at = api.local_addr().unwrap();
        tokio::spawn(api_server(api, asked.clone()));
        let dir = tempfile::tempdir().unwrap();
        let options = KubeOptions { kubeconfig: Some(kubeconfig(dir.path(), api_at)), ..KubeOptions::default() };
        let access = Access::Kubernetes(KubeAccess::connect(&options).await.unwrap());

        let endpoints = Endpoints::start(access).await;
        let address = endpoints.address;

        for path in ["/", "/map", "/stats"] {
            assert_eq!(status(address, path, None).await, 401, "{path} without a token");
            assert_eq!(status(address, path, Some("forged")).await, 401, "{path} with a token nobody issued");
            assert_eq!(status(address, path, Some(STRANGER)).await, 403, "{path} for a pod RBAC does not let read it");
            assert_eq!(status(address, path, Some(READER)).await, 200, "{path} for a reader");
        }
        // Prometheus and the kubelet need no token.
        for path in ["/metrics", "/healthz"] {
            assert_eq!(status(address, path, None).await, 200, "{path} stays open");
        }
        // A reader polling is answered from the cache, not by new reviews. (`/stats`:
        // `/map` would wait for a pipeline this test does not run.)
        let reviews = asked.lock().unwrap().len();
        for _ in 0..5 {
            assert_eq!(status(address, "/stats", Some(READER)).await, 200);
        }
        assert_eq!(asked.lock().unwrap().len(), reviews, "cached answers");
        let asked = asked.lock().unwrap().clone();
        assert!(
            asked.contains(&format!(
                "SubjectAccessReview \"system:serviceaccount:monitoring:grafana\" {}",
                json!({"path": "/map", "verb": "get"})
            )),
            "the review names the user and the path: {asked:?}"
        );
        assert!(asked.iter().all(|a| !a.contains("/metrics") && !a.contains("/healthz")), "{asked:?}");
        endpoints.stop().await;
    });
}

#[test]
fn an_unreachable_api_server_refuses_the_map_rather_than_opening_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = KubeOptions { kubeconfig: Some(kubeconfig(dir.path(), closed)), ..KubeOptions::default() };
        let access = Access::Kubernetes(KubeAccess::connect(&options).await.unwrap());
        let endpoints = Endpoints::start(access).await;
        let address = endpoints.address;
        assert_eq!(status(address, "/map", Some(READER)).await, 503);
        assert_eq!(status(address, "/map", None).await, 401, "no token: refused without asking");
        assert_eq!(status(address, "/metrics", None).await, 200);
        endpoints.stop().await;
    });
}

#[test]
fn a_token_file_lets_only_its_tokens_read_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, "# readers of the map\ngrafana-2f9c\n\n  ci-7d1e  \n").unwrap();
    let tokens = TokenFile::read(&path).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "# nobody yet\n\n").unwrap();
    let error = TokenFile::read(&empty).err().unwrap().to_string();
    assert!(error.contains("holds no token"), "{error}");
    assert!(TokenFile::read(&dir.path().join("missing")).is_err());

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let access = Access::Tokens(tokens);
        let endpoints = Endpoints::start(access).await;
        let address = endpoints.address;
        for path in ["/", "/stats"] {
            assert_eq!(status(address, path, None).await, 401, "{path} without a token");
            assert_eq!(status(address, path, Some("grafana-2f9")).await, 401, "{path}: a prefix is not the token");
            assert_eq!(
                status(address, path, Some("# readers of the map")).await,
                401,
                "{path}: comments are not tokens"
            );
            assert_eq!(status(address, path, Some("grafana-2f9c")).await, 200, "{path}");
            assert_eq!(status(address, path, Some("ci-7d1e")).await, 200, "{path}: trimmed");
        }
        assert_eq!(status_with(address, "/stats", Some("bearer ci-7d1e")).await, 200, "the scheme in any case");
        assert_eq!(status_with(address, "/stats", Some("Basic ci-7d1e")).await, 401, "only bearer tokens");
        assert_eq!(status(address, "/healthz", None).await, 200);
        endpoints.stop().await;
    });
}
