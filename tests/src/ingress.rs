//! Ingresses: the objects (networking.k8s.io/v1, as the API returns them) and an
//! ingress controller in a pod that routes HTTP requests by their Host header, with
//! the client that calls it.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::ids::uid;
use crate::peer::CallReport;
use crate::spec::PodRef;
use crate::traffic::{run_call, Server};

/// One rule of an Ingress: requests for `host` under `path` go to a Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRule {
    /// The host matched.
    pub host: String,
    /// The path prefix matched.
    pub path: String,
    /// The backend Service's name (in the Ingress's namespace).
    pub service: String,
    /// The backend Service port.
    pub port: u16,
}

/// An Ingress to add with [`Cluster::add_ingress`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.ingressClassName`.
    pub class: String,
    /// Rules.
    pub rules: Vec<IngressRule>,
}

impl IngressSpec {
    /// An Ingress of class `nginx` without rules.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        IngressSpec { namespace: namespace.into(), name: name.into(), class: "nginx".to_owned(), rules: Vec::new() }
    }

    /// Routes `host` and `path` (a prefix) to `service:port`.
    pub fn rule(mut self, host: &str, path: &str, service: &str, port: u16) -> Self {
        self.rules.push(IngressRule { host: host.into(), path: path.into(), service: service.into(), port });
        self
    }
}

/// An Ingress as the cluster holds it.
#[derive(Clone, Debug)]
pub(crate) struct IngressState {
    pub(crate) spec: IngressSpec,
    pub(crate) uid: String,
    pub(crate) created: SystemTime,
}

impl Cluster {
    /// Adds an Ingress object (no traffic changes: routing is the controller's).
    pub fn add_ingress(&mut self, spec: IngressSpec) -> Result<()> {
        if self.ingresses.iter().any(|i| i.spec.namespace == spec.namespace && i.spec.name == spec.name) {
            return Err(HarnessError::Invalid(format!("Ingress {}/{} exists already", spec.namespace, spec.name)));
        }
        let uid = uid(&[&self.node_netns, "ingress", &spec.namespace, &spec.name]);
        self.ingresses.push(IngressState { spec, uid, created: SystemTime::now() });
        Ok(())
    }

    /// Starts an ingress controller in `pod` on `port`: each HTTP request goes to the
    /// backend its Host header names in `routes` (a `serve-tcp` peer, at a pod IP as
    /// ingress-nginx dials its endpoints), which is asked for `reply` bytes returned
    /// as the response body; an unknown host gets a 404.
    pub fn serve_ingress(
        &self,
        pod: &PodRef,
        port: u16,
        routes: &[(&str, SocketAddrV4)],
        reply: u64,
    ) -> Result<Server> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["serve-ingress", &port.to_string(), "--reply", &reply.to_string()]);
        cmd.args(routes.iter().map(|(host, target)| format!("{host}={target}")));
        Server::start(cmd)
    }

    /// From a pod, `GET /` on `target` with this Host header, reading the response; a
    /// status other than 200 is a failed report.
    pub fn http_get(&self, pod: &PodRef, target: SocketAddr, host: &str) -> Result<CallReport> {
        let mut cmd = self.peer_command(pod)?;
        cmd.args(["http-get", &target.to_string(), host]);
        run_call(cmd)
    }

    pub(crate) fn ingress_json(&self, ingress: &IngressState) -> Value {
        let spec = &ingress.spec;
        let rules: Vec<Value> = spec
            .rules
            .iter()
            .map(|r| {
                json!({
                    "host": r.host,
                    "http": {"paths": [{
                        "path": r.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": r.service, "port": {"number": r.port}}},
                    }]},
                })
            })
            .collect();
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "creationTimestamp": humantime::format_rfc3339_seconds(ingress.created).to_string(),
                "generation": 1,
                "name": spec.name,
                "namespace": spec.namespace,
                "resourceVersion": "1",
                "uid": ingress.uid,
            },
            "spec": {"ingressClassName": spec.class, "rules": rules},
            "status": {"loadBalancer": {"ingress": [{"ip": self.node_ip().to_string()}]}},
        })
    }
}
