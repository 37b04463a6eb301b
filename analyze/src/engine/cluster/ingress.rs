//! Ingress rules as routes to Services: which host and path of which Ingress send
//! traffic to a Service port, so an ingress controller's calls to its backends can say
//! what they serve.

use std::collections::BTreeSet;

use hashbrown::HashMap;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{key, Key, ServiceInfo};
use crate::topology::IngressRoute;

/// Where a route sends traffic: a Service port, by number or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BackendPort {
    Number(u16),
    Name(String),
    /// No port given: any port of the Service.
    Any,
}

/// A route and the backend it sends to.
#[derive(Clone, Debug)]
struct Routed {
    route: IngressRoute,
    service: Key,
    port: BackendPort,
}

/// The routes of every Ingress, by backend Service.
#[derive(Debug, Default)]
pub(crate) struct IngressRoutes {
    by_ingress: HashMap<Key, Vec<Routed>>,
    by_service: HashMap<Key, BTreeSet<Key>>,
}

fn backend(namespace: &str, backend: &IngressBackend) -> Option<(Key, BackendPort)> {
    let service = backend.service.as_ref()?;
    let port = match &service.port {
        Some(port) => match (port.number.and_then(|n| u16::try_from(n).ok()), &port.name) {
            (Some(number), _) => BackendPort::Number(number),
            (None, Some(name)) => BackendPort::Name(name.clone()),
            (None, None) => BackendPort::Any,
        },
        None => BackendPort::Any,
    };
    Some((key(namespace, &service.name), port))
}

fn routes(ingress_key: &Key, ingress: &Ingress) -> Vec<Routed> {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    let Some(spec) = &ingress.spec else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |host: &str, path: &str, to: Option<(Key, BackendPort)>| {
        if let Some((service, port)) = to {
            let route = IngressRoute { ingress: ingress_key.to_string(), host: host.to_owned(), path: path.to_owned() };
            out.push(Routed { route, service, port });
        }
    };
    if let Some(default) = &spec.default_backend {
        push("*", "/", backend(namespace, default));
    }
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.as_deref().unwrap_or("*");
        for path in rule.http.iter().flat_map(|http| &http.paths) {
            push(host, path.path.as_deref().unwrap_or("/"), backend(namespace, &path.backend));
        }
    }
    out
}

impl IngressRoutes {
    /// Applies an Ingress as it now is (`None`: deleted).
    pub(crate) fn apply(&mut self, ingress_key: &Key, ingress: Option<&Ingress>) {
        if let Some(old) = self.by_ingress.remove(ingress_key) {
            for routed in old {
                if let Some(ingresses) = self.by_service.get_mut(&routed.service) {
                    ingresses.remove(ingress_key);
                    if ingresses.is_empty() {
                        self.by_service.remove(&routed.service);
                    }
                }
            }
        }
        let Some(ingress) = ingress else { return };
        let new = routes(ingress_key, ingress);
        for routed in &new {
            self.by_service.entry(routed.service.clone()).or_default().insert(ingress_key.clone());
        }
        if !new.is_empty() {
            self.by_ingress.insert(ingress_key.clone(), new);
        }
    }

    /// The routes that send traffic to this port of this Service, sorted.
    pub(crate) fn to(&self, service: &ServiceInfo, port: u16) -> Vec<IngressRoute> {
        let Some(ingresses) = self.by_service.get(&service.key) else { return Vec::new() };
        let named = |name: &String| service.ports.iter().any(|p| &p.name == name && p.port == port);
        let mut out: Vec<IngressRoute> = ingresses
            .iter()
            .filter_map(|i| self.by_ingress.get(i))
            .flatten()
            .filter(|r| r.service == service.key)
            .filter(|r| match &r.port {
                BackendPort::Number(n) => *n == port,
                BackendPort::Name(name) => named(name),
                BackendPort::Any => true,
            })
            .map(|r| r.route.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Ingresses held.
    pub(crate) fn len(&self) -> usize {
        self.by_ingress.len()
    }
}
