//! NetworkPolicy documents read strictly: YAML manifests (one or many documents),
//! `kubectl get networkpolicies -o json` lists, or objects from a recording, turned
//! into [`Policy`]s. A field Kubernetes does not define in a policy's spec, or a
//! selector operator it does not know, is an error naming the policy: a typo in a
//! policy must not read as "allows nothing" or "allows everything".

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::selector::{LabelSelector, Selector};

/// Why a NetworkPolicy document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is not YAML or JSON at all.
    #[error("{source_name}: not valid YAML or JSON: {reason}")]
    Syntax {
        /// The file (or recording) it came from.
        source_name: String,
        /// The parser's message.
        reason: String,
    },
    /// A policy's fields are not what `networking.k8s.io/v1` defines.
    #[error("{source_name}: NetworkPolicy {policy}: {reason}")]
    Invalid {
        /// The file (or recording) it came from.
        source_name: String,
        /// `namespace/name` of the policy.
        policy: String,
        /// What is wrong.
        reason: String,
    },
}

/// One NetworkPolicy, as evaluation needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Its namespace: it selects pods there only.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pods it selects.
    pub pod_selector: Selector,
    /// Ingress rules, when the policy isolates pods for ingress (`None`: it does not).
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, when the policy isolates pods for egress.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One ingress or egress rule: traffic from (or to) any of `peers` on any of `ports`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Peers; empty: every peer.
    pub peers: Vec<Peer>,
    /// Ports; empty: every port.
    pub ports: Vec<PortRule>,
}

/// Who a rule lets in or out.
#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// Pods matching `pods` in namespaces matching `namespaces`; `namespaces` `None`
    /// means the policy's own namespace.
    Pods {
        /// The pods (`Selector::everything()` when only a namespace selector is given).
        pods: Selector,
        /// The namespaces, `None`: the policy's.
        namespaces: Option<Selector>,
    },
    /// Addresses in `cidr` but not in any of `except`.
    IpBlock {
        /// The block.
        cidr: Cidr,
        /// Holes in it.
        except: Vec<Cidr>,
    },
}

/// A port a rule allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Which ports of that protocol.
    pub port: PortMatch,
}

/// Ports of one protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// Every port.
    Any,
    /// `port` to `end` inclusive (`end == port` without `endPort`).
    Range {
        /// First port.
        port: u16,
        /// Last port.
        end: u16,
    },
    /// A container port's name, resolved on the destination pod.
    Named(String),
}

/// An address block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Cidr { network, prefix })
    }

    /// Whether `ip` is in the block (an IPv4 address never is in an IPv6 block).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

/// A policy object. Its metadata is not looked into here (kubectl output carries much
/// more than smap needs, and the name and namespace are read before); its spec is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "kind, metadata and status are only allowed, not read")]
struct Document {
    api_version: Option<String>,
    kind: Option<serde::de::IgnoredAny>,
    metadata: Option<serde::de::IgnoredAny>,
    spec: Option<Spec>,
    status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    pod_selector: Option<LabelSelector>,
    policy_types: Option<Vec<String>>,
    ingress: Option<Vec<IngressRule>>,
    egress: Option<Vec<EgressRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngressRule {
    from: Option<Vec<PeerDoc>>,
    ports: Option<Vec<PortDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressRule {
    to: Option<Vec<PeerDoc>>,
    ports: Option<Vec<PortDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PeerDoc {
    pod_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    ip_block: Option<IpBlockDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpBlockDoc {
    cidr: String,
    except: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PortDoc {
    protocol: Option<String>,
    port: Option<Value>,
    end_port: Option<i64>,
}

/// Reads every NetworkPolicy in a file's text: YAML documents separated by `---`, or
/// JSON; each a NetworkPolicy or a List of them. Other kinds are skipped.
pub fn parse_policies(source_name: &str, text: &str) -> Result<Vec<Policy>, PolicyError> {
    let syntax = |reason: String| PolicyError::Syntax { source_name: source_name.to_owned(), reason };
    let mut values = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| syntax(e.to_string()))?;
        values.push(value);
    }
    let mut policies = Vec::new();
    while let Some(value) = values.pop() {
        match value.get("kind").and_then(Value::as_str) {
            Some(kind) if kind == "List" || kind.ends_with("List") => {
                let mut items = value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                // The API's own lists leave the kind out of their items.
                if kind == "NetworkPolicyList" {
                    for item in &mut items {
                        if item.get("kind").is_none() {
                            item["kind"] = Value::from("NetworkPolicy");
                        }
                    }
                }
                values.extend(items.into_iter().rev());
            }
            Some("NetworkPolicy") => policies.push(policy_from_value(source_name, value)?),
            // Null documents (a trailing `---`) and other kinds of a manifest directory.
            _ => {}
        }
    }
    policies.reverse();
    Ok(policies)
}

/// Reads one NetworkPolicy object (from a file or a recording).
pub fn policy_from_value(source_name: &str, value: Value) -> Result<Policy, PolicyError> {
    let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_owned();
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_owned();
    let invalid = |reason: String| PolicyError::Invalid {
        source_name: source_name.to_owned(),
        policy: format!("{namespace}/{name}"),
        reason,
    };
    let document: Document = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    if let Some(api_version) = &document.api_version {
        if api_version != "networking.k8s.io/v1" {
            return Err(invalid(format!("apiVersion {api_version} (expected networking.k8s.io/v1)")));
        }
    }
    let spec = document.spec.ok_or_else(|| invalid("no spec".into()))?;
    let pod_selector = match &spec.pod_selector {
        Some(selector) => Selector::from_doc(selector).map_err(invalid)?,
        None => Selector::everything(),
    };
    let ingress_rules = spec
        .ingress
        .unwrap_or_default()
        .into_iter()
        .map(|r| rule(r.from, r.ports))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let egress_rules = spec
        .egress
        .unwrap_or_default()
        .into_iter()
        .map(|r| rule(r.to, r.ports))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    // Kubernetes' defaults: Ingress always; Egress when the policy has egress rules.
    let (isolates_ingress, isolates_egress) = match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
        Some(types) => {
            for t in types {
                if t != "Ingress" && t != "Egress" {
                    return Err(invalid(format!("policyTypes: unknown type `{t}` (Ingress or Egress)")));
                }
            }
            (types.iter().any(|t| t == "Ingress"), types.iter().any(|t| t == "Egress"))
        }
        // Absent or empty, as the API server defaults it.
        None => (true, !egress_rules.is_empty()),
    };
    Ok(Policy {
        namespace,
        name,
        pod_selector,
        ingress: isolates_ingress.then_some(ingress_rules),
        egress: isolates_egress.then_some(egress_rules),
    })
}

fn rule(peers: Option<Vec<PeerDoc>>, ports: Option<Vec<PortDoc>>) -> Result<Rule, String> {
    let peers = peers.unwrap_or_default().iter().map(peer).collect::<Result<Vec<_>, _>>()?;
    let ports = ports.unwrap_or_default().iter().map(port_rule).collect::<Result<Vec<_>, _>>()?;
    Ok(Rule { peers, ports })
}

fn peer(doc: &PeerDoc) -> Result<Peer, String> {
    match (&doc.pod_selector, &doc.namespace_selector, &doc.ip_block) {
        (None, None, Some(block)) => {
            let cidr = Cidr::parse(&block.cidr).ok_or_else(|| format!("ipBlock: bad cidr `{}`", block.cidr))?;
            let except = block
                .except
                .iter()
                .flatten()
                .map(|e| Cidr::parse(e).ok_or_else(|| format!("ipBlock: bad except `{e}`")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Peer::IpBlock { cidr, except })
        }
        (_, _, Some(_)) => Err("a peer with ipBlock may have no pod or namespace selector".into()),
        (None, None, None) => Err("a peer needs podSelector, namespaceSelector or ipBlock".into()),
        (pods, namespaces, None) => Ok(Peer::Pods {
            pods: pods.as_ref().map(Selector::from_doc).transpose()?.unwrap_or_else(Selector::everything),
            namespaces: namespaces.as_ref().map(Selector::from_doc).transpose()?,
        }),
    }
}

fn port_rule(doc: &PortDoc) -> Result<PortRule, String> {
    let protocol = doc.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
    if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
        return Err(format!("ports: unknown protocol `{protocol}` (TCP, UDP or SCTP)"));
    }
    let number = |n: i64| u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| format!("ports: bad port {n}"));
    let port = match (&doc.port, doc.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return Err("ports: endPort without port".into()),
        (Some(Value::Number(n)), end) => {
            let port = number(n.as_i64().unwrap_or(-1))?;
            let end = end.map(number).transpose()?.unwrap_or(port);
            if end < port {
                return Err(format!("ports: endPort {end} is below port {port}"));
            }
            PortMatch::Range { port, end }
        }
        (Some(Value::String(name)), None) => match name.parse::<i64>() {
            Ok(n) => {
                let port = number(n)?;
                PortMatch::Range { port, end: port }
            }
            Err(_) => PortMatch::Named(name.clone()),
        },
        (Some(Value::String(_)), Some(_)) => return Err("ports: endPort needs a numeric port".into()),
        (Some(other), _) => return Err(format!("ports: bad port {other}")),
    };
    Ok(PortRule { protocol, port })
}
