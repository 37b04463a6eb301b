//! Scenario descriptions: the services, pods and calls a simulation plays out.
//!
//! Reads the scenario files of `shared/scenarios/` (Bookinfo) as they are, and
//! generates large clusters for benchmarks.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{ReplayError, Result};

/// A described application.
#[derive(Clone, Debug, Deserialize)]
pub struct Scenario {
    /// Application name.
    #[serde(default)]
    pub app: String,
    /// Namespace of the services; prose after the first word is ignored (the shared
    /// scenarios explain their namespace in words).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Services (or workloads without a Service).
    pub services: Vec<ScenarioService>,
    /// Who calls whom.
    #[serde(default)]
    pub calls: Vec<ScenarioCall>,
}

/// A service of a scenario.
#[derive(Clone, Debug, Deserialize)]
pub struct ScenarioService {
    /// Service (or workload) name.
    pub name: String,
    /// Namespace, overriding the scenario's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// api, database, cache, queue, proxy or other (what the service is; smap must
    /// detect it from ports, images and labels).
    #[serde(default)]
    pub kind: Option<String>,
    /// Container image; `a-v1/v2/v3:tag` with `version: v1|v2|v3` gives one image per
    /// workload.
    #[serde(default)]
    pub image: String,
    /// Pod labels; `version: v1|v2|v3` spreads versions over the workloads.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Service ports.
    #[serde(default)]
    pub ports: Vec<ScenarioPort>,
    /// Pods in all, spread over the workloads.
    #[serde(default = "one")]
    pub replicas: u32,
    /// ClusterIP (default), NodePort, LoadBalancer, Headless, or none (no Service).
    #[serde(default)]
    pub service_type: Option<String>,
    /// Service selector; defaults to `app: <name>`.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// Deployment names; defaults to the service name.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Pods that are not ready (health tests).
    #[serde(default)]
    pub unready: u32,
}

fn one() -> u32 {
    1
}

/// A Service port.
#[derive(Clone, Debug, Deserialize)]
pub struct ScenarioPort {
    /// The port clients dial.
    pub port: u16,
    /// The pod port.
    #[serde(default, rename = "targetPort")]
    pub target_port: Option<u16>,
    /// TCP or UDP.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Port name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One call relation.
#[derive(Clone, Debug, Deserialize)]
pub struct ScenarioCall {
    /// Caller name.
    pub from: String,
    /// Callee name (a service, or `ip:port` of an external endpoint).
    pub to: String,
    /// Port dialed.
    pub port: u16,
    /// tcp (default) or udp.
    #[serde(default)]
    pub transport: Option<String>,
    /// Only pods of these versions call.
    #[serde(default)]
    pub from_versions: Option<Vec<String>>,
    /// Dial pod IPs directly (headless, gRPC client-side balancing) instead of the ClusterIP.
    #[serde(default)]
    pub direct: bool,
    /// Relative weight of this call among all calls.
    #[serde(default = "weight")]
    pub weight: f64,
    /// Fraction of attempts that fail (refused).
    #[serde(default)]
    pub failure_rate: f64,
}

fn weight() -> f64 {
    1.0
}

impl Scenario {
    /// Reads a scenario YAML file.
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(ReplayError::io(path))?;
        Scenario::from_yaml(&text).map_err(|e| ReplayError::Scenario(format!("{}: {e}", path.display())))
    }

    /// Parses scenario YAML.
    pub fn from_yaml(text: &str) -> std::result::Result<Scenario, String> {
        let scenario: Scenario = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The default namespace of the scenario's services.
    pub fn default_namespace(&self) -> &str {
        self.namespace.as_deref().and_then(|n| n.split_whitespace().next()).unwrap_or("default")
    }

    fn validate(&self) -> std::result::Result<(), String> {
        for call in &self.calls {
            if !self.services.iter().any(|s| s.name == call.from) {
                return Err(format!("call from unknown service `{}`", call.from));
            }
            let external = call.to.parse::<std::net::SocketAddr>().is_ok();
            if !external && !self.services.iter().any(|s| s.name == call.to) {
                return Err(format!("call to unknown service `{}` (externals are written ip:port)", call.to));
            }
        }
        if self.services.iter().any(|s| s.replicas == 0) {
            return Err("every service needs at least one replica".to_owned());
        }
        Ok(())
    }

    /// A generated cluster of `services` services over several namespaces, with
    /// databases, caches and queues, Zipf-like call popularity, workloads without a
    /// Service, UDP telemetry and calls to `externals` external endpoints.
    pub fn generated(services: u32, pods_per_service: u32, externals: u32) -> Scenario {
        let services = services.max(2);
        let namespaces = services.div_ceil(25).max(1);
        let mut list = Vec::new();
        for i in 0..services {
            let (kind, image, port) = match i % 10 {
                0 => ("database", "postgres:16.4", 5432),
                1 => ("cache", "redis:7.4", 6379),
                2 => ("queue", "bitnami/kafka:3.8", 9092),
                _ => ("api", "registry.example/app:1.4.2", 8080),
            };
            let headless_worker = i % 20 == 19;
            list.push(ScenarioService {
                name: format!("svc-{i}"),
                namespace: Some(format!("ns-{}", i % namespaces)),
                kind: Some(kind.to_owned()),
                image: image.to_owned(),
                labels: BTreeMap::new(),
                ports: vec![ScenarioPort {
                    port,
                    target_port: Some(port),
                    protocol: None,
                    name: Some("main".to_owned()),
                }],
                replicas: pods_per_service.max(1),
                service_type: headless_worker.then(|| "none".to_owned()),
                selector: None,
                workloads: Vec::new(),
                unready: 0,
            });
        }
        let mut calls = Vec::new();
        for i in 0..services {
            if i % 10 < 3 {
                continue; // databases, caches and queues do not call out
            }
            // Zipf-like: lower-numbered services are called far more often.
            for k in 1..=3u32 {
                let target = (i * 7 + k * 13) % services;
                let target = if target == i { (target + 1) % services } else { target };
                if list[target as usize].service_type.as_deref() == Some("none") {
                    continue;
                }
                let port = list[target as usize].ports[0].port;
                calls.push(ScenarioCall {
                    from: format!("svc-{i}"),
                    to: format!("svc-{target}"),
                    port,
                    transport: None,
                    from_versions: None,
                    direct: false,
                    weight: 1.0 / f64::from(target + 1),
                    failure_rate: 0.01,
                });
            }
            if externals > 0 && i % 5 == 3 {
                calls.push(ScenarioCall {
                    from: format!("svc-{i}"),
                    to: format!("203.0.113.{}:443", 1 + (i % externals) % 250),
                    port: 443,
                    transport: None,
                    from_versions: None,
                    direct: false,
                    weight: 0.05,
                    failure_rate: 0.0,
                });
            }
        }
        Scenario { app: format!("generated-{services}"), namespace: Some("ns-0".to_owned()), services: list, calls }
    }
}
