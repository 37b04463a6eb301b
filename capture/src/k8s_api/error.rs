//! Why watching the Kubernetes API failed, in words that say what to fix.

use std::path::PathBuf;
use std::time::Duration;

/// Why the Kubernetes API source could not start or had to stop.
///
/// Only what retrying cannot fix ends the source: a dropped stream, an API server
/// that is briefly down or an expired resourceVersion are retried with backoff (and
/// counted), never returned here.
#[derive(Debug, thiserror::Error)]
pub enum K8sApiError {
    /// The kubeconfig file given could not be read or lacks the context asked for.
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig (`$KUBECONFIG`, `~/.kube/config`) with the context asked for.
    #[error("loading the kubeconfig context {context:?}: {source}")]
    Context {
        /// The context asked for (`None`: the current context).
        context: Option<String>,
        /// What was wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no Kubernetes API to watch: no kubeconfig ($KUBECONFIG or ~/.kube/config) and not running \
         in a pod with a service account (KUBERNETES_SERVICE_HOST unset); give --kubeconfig, or \
         --k8s-from FILE for a kubectl JSON file: {0}"
    )]
    NoConfig(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration (TLS setup, proxy...).
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The API server refused smap's identity the permission to list or watch a
    /// resource: RBAC lacks the verb.
    #[error(
        "the Kubernetes API forbids {verb} on {resource} {scope} (403: {message}); grant the verbs \
         list and watch on {resource} to smap's identity, e.g. apply deploy/rbac.yaml (a \
         ClusterRole with list and watch on pods, services, nodes, namespaces, \
         endpointslices.discovery.k8s.io, ingresses and networkpolicies.networking.k8s.io, bound \
         to smap's ServiceAccount)"
    )]
    Forbidden {
        /// `list` or `watch`.
        verb: &'static str,
        /// The resource as RBAC names it (`pods`, `endpointslices.discovery.k8s.io`).
        resource: String,
        /// `at the cluster scope` or `in namespace NS`.
        scope: String,
        /// The API server's message.
        message: String,
    },
    /// The API server did not accept smap's credentials at all.
    #[error(
        "the Kubernetes API rejected smap's credentials when it tried to {verb} {resource} (401: \
         {message}); check the kubeconfig user or the pod's service account token"
    )]
    Unauthorized {
        /// `list` or `watch`.
        verb: &'static str,
        /// The resource as RBAC names it.
        resource: String,
        /// The API server's message.
        message: String,
    },
    /// The API server does not serve a resource smap watches (a cluster older than
    /// Kubernetes 1.21 has no discovery.k8s.io/v1 EndpointSlices).
    #[error(
        "the Kubernetes API does not serve {resource} (404 on {verb}: {message}); smap needs \
         Kubernetes 1.21 or newer"
    )]
    NotServed {
        /// `list` or `watch`.
        verb: &'static str,
        /// The resource as RBAC names it.
        resource: String,
        /// The API server's message.
        message: String,
    },
    /// The initial list of some resources did not complete in time.
    #[error(
        "the initial list of {pending} did not complete within {waited:?}{}; is the API server \
         reachable?",
        last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    SyncTimeout {
        /// How long smap waited.
        waited: Duration,
        /// The resources still listing, comma-separated.
        pending: String,
        /// The last retryable error seen, if any.
        last_error: Option<String>,
    },
    /// The watch task ended without saying why (it panicked).
    #[error("the Kubernetes watch task stopped unexpectedly")]
    Stopped,
}
