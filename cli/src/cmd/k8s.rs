//! Where `smap capture` and `smap watch` get Kubernetes state from: one rule for both,
//! resolved from the flags and the config before anything starts.

use smap_analyze::Config;
use smap_capture::k8s_api::KubeOptions;
use smap_capture::live::record::K8sSource;

use crate::cli::K8sArgs;

/// `--k8s-from FILE` wins; `--k8s-api`, `--kubeconfig` or `--context` ask for the API;
/// without flags the API is watched when a cluster can be found (in a pod, or a
/// kubeconfig exists) and the config's `enable_k8s_discovery` is on; else nothing, with
/// a warning. The config's namespace filter is applied by the API server.
pub fn source(args: &K8sArgs, config: &Config) -> K8sSource {
    if let Some(path) = &args.k8s_from {
        return K8sSource::KubectlFile(path.clone());
    }
    let asked = args.k8s_api || args.kubeconfig.is_some() || args.context.is_some();
    if asked || (config.enable_k8s_discovery && KubeOptions::cluster_configured()) {
        return K8sSource::Api(KubeOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            namespaces: config.namespaces.clone(),
            exclude_namespaces: config.excluded_namespaces().into_iter().collect(),
            ..KubeOptions::default()
        });
    }
    tracing::warn!(
        "no Kubernetes state: no cluster found (not in a pod, no kubeconfig) and no --k8s-from; \
         connections are recorded with IPs only (give --k8s-from FILE later to `smap build`)"
    );
    K8sSource::None
}
