//! What the Kubernetes source says when the API server refuses it (a verb forbidden at
//! list, at watch or later; bad credentials), cannot be reached, or has no kubeconfig:
//! errors that name what is missing, and kinds the map can do without costing only
//! themselves.

use std::collections::BTreeSet;
use std::time::Duration;

use smap_capture::k8s_api::{K8sApiError, KubeOptions, KubeWatch};
use smap_replay::ObjectKind;

use super::apiserver::ApiServer;
use super::{kubeconfig, options, shop, start};

#[tokio::test]
async fn forbidden_list_names_the_verb_and_resource() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    server.forbid("endpointslices", "list");
    let error = start(&server, dir.path(), options()).await.err().expect("403 must fail the start");
    assert!(
        matches!(&error, K8sApiError::Forbidden { verb: "list", resource, .. } if resource == "endpointslices.discovery.k8s.io"),
        "{error:?}"
    );
    let message = error.to_string();
    for needed in
        ["forbids list on endpointslices.discovery.k8s.io", "grant the verbs list and watch", "deploy/rbac.yaml"]
    {
        assert!(message.contains(needed), "{message:?} lacks {needed:?}");
    }
}

#[tokio::test]
async fn a_forbidden_kind_the_map_can_do_without_costs_that_kind_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    // A cluster whose RBAC was written before smap watched NetworkPolicies.
    server.forbid("networkpolicies", "list");
    let (watch, snapshot) = start(&server, dir.path(), options()).await.expect("the watch goes on");
    let kinds: BTreeSet<ObjectKind> = snapshot.iter().map(|o| o.kind).collect();
    assert!(!kinds.contains(&ObjectKind::NetworkPolicy));
    for needed in [ObjectKind::Pod, ObjectKind::Service, ObjectKind::EndpointSlice, ObjectKind::Ingress] {
        assert!(kinds.contains(&needed), "{needed:?} in {kinds:?}");
    }
    assert_eq!(watch.counters().kinds_refused, 1);
    // Refused once, then left alone: retrying cannot fix RBAC.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = server.requests().iter().filter(|r| r.contains("networkpolicies")).count();
    assert_eq!(asked, 1, "{:?}", server.requests());
}

#[tokio::test]
async fn forbidden_watch_ends_the_watch_naming_the_verb_and_resource() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    server.forbid("pods", "watch");
    // The lists succeed, so the snapshot is in; the first watch request is refused.
    let (mut watch, _) = start(&server, dir.path(), options()).await.unwrap();
    let error = next_error(&mut watch).await;
    assert!(
        matches!(&error, K8sApiError::Forbidden { verb: "watch", resource, .. } if resource == "pods"),
        "{error:?}"
    );
    assert!(error.to_string().contains("forbids watch on pods in all namespaces"), "{error}");
}

/// The error that ends the watch, skipping any rows before it.
async fn next_error(watch: &mut KubeWatch) -> K8sApiError {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(error) = watch.next().await {
                return error;
            }
        }
    })
    .await
    .expect("the watch did not fail")
}

#[tokio::test]
async fn forbidden_after_start_ends_the_watch_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    let (mut watch, _) = start(&server, dir.path(), options()).await.unwrap();
    // RBAC revoked, then the stream breaks: the re-watch is refused.
    server.forbid("services", "watch");
    server.while_disconnected(false, vec![]);
    let error = next_error(&mut watch).await;
    assert!(
        matches!(&error, K8sApiError::Forbidden { verb: "watch", resource, .. } if resource == "services"),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_credentials_are_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    shop(&server);
    server.require_token("other");
    let error = start(&server, dir.path(), options()).await.err().expect("401 must fail the start");
    assert!(matches!(error, K8sApiError::Unauthorized { verb: "list", .. }), "{error:?}");
    assert!(error.to_string().contains("rejected smap's credentials"), "{error}");
}

#[tokio::test]
async fn an_unreachable_api_server_times_out_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    let config = kubeconfig(dir.path(), &server, "good");
    drop(server);
    let options = KubeOptions { kubeconfig: Some(config), sync_timeout: Duration::from_millis(500), ..options() };
    let error = KubeWatch::start(options).await.err().expect("nothing listens");
    let message = error.to_string();
    assert!(matches!(error, K8sApiError::SyncTimeout { .. }), "{error:?}");
    assert!(message.contains("pods in all namespaces") && message.contains("last error"), "{message}");
}

#[tokio::test]
async fn a_missing_kubeconfig_is_named() {
    let options = KubeOptions { kubeconfig: Some("/nonexistent/kubeconfig".into()), ..options() };
    let error = KubeWatch::start(options).await.err().expect("no such file");
    assert!(error.to_string().starts_with("reading kubeconfig /nonexistent/kubeconfig"), "{error}");
}
