//! Engine configuration: the YAML keys of the service-map collector config, resolved
//! into one struct before any work starts.
//!
//! A config file may be the collector's own shape (`collectors: [{name: service-map,
//! ...}]`) or just the keys at the top level. Unknown keys are errors, so a typo never
//! silently does nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topology::ServiceType;

/// Namespaces Kubernetes itself runs in.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The resolved configuration of the engine (and of the live sources, which read
/// their keys from here too so one file configures a whole deployment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Collector name (accepted for compatibility with the collector config).
    pub name: Option<String>,
    /// Whether the collector is enabled (accepted for compatibility).
    pub enabled: bool,
    /// Watch the Kubernetes API (live sources).
    pub enable_k8s_discovery: bool,
    /// Namespaces to include; empty means all.
    pub namespaces: Vec<String>,
    /// Namespaces to leave out.
    pub exclude_namespaces: Vec<String>,
    /// Accepted for compatibility with the collector config: the live commands always
    /// capture connections with eBPF.
    pub enable_ebpf: bool,
    /// Connections tracked at once; the least recently active are evicted (and counted).
    pub max_connections: usize,
    /// Nodes (services, workloads, externals) the engine tracks; past it, new outside
    /// addresses are counted together under `external/other`, so memory stays bounded.
    pub max_services: usize,
    /// A connection with no activity for this long is forgotten, and a dependency
    /// with no traffic for this long is gone (watch).
    #[serde(with = "humantime_serde_compat")]
    pub connection_ttl: Duration,
    /// Detect service types from ports, images, labels and annotations.
    pub auto_detect_type: bool,
    /// Leave out kube-system, kube-public and kube-node-lease.
    pub ignore_system_namespaces: bool,
    /// Keep edges to and from addresses outside the cluster (and nodes).
    pub include_external_services: bool,
    /// Leave out edges with fewer connections (established plus failed).
    pub min_connection_count: u64,
    /// Emit change events immediately on significant changes (watch).
    pub emit_on_change: bool,
    /// Batch minor changes for this long (watch).
    #[serde(with = "humantime_serde_compat")]
    pub change_debounce: Duration,
    /// Emit a full topology snapshot this often (watch).
    #[serde(with = "humantime_serde_compat")]
    pub full_snapshot_interval: Duration,
    /// Do not emit a snapshot when nothing changed (watch).
    pub skip_unchanged: bool,
    /// At most one event of a kind per service per this interval (watch).
    #[serde(with = "humantime_serde_compat")]
    pub min_emit_interval: Duration,
    /// The two ends of one connection seen within this time count once.
    #[serde(with = "humantime_serde_compat")]
    pub dedup_window: Duration,
    /// An open TCP connection that moved bytes is reported again this often (capture,
    /// watch), so its dependency stays current while it lives.
    #[serde(with = "humantime_serde_compat")]
    pub progress_interval: Duration,
    /// Bytes of the kernel's event ring buffer (capture, watch): a power of two of at
    /// least 4096. It absorbs bursts while user space is busy; events beyond it are
    /// dropped, and counted.
    pub ring_buffer_bytes: u32,
    /// How long the map keeps a dependency that has no traffic and no open connection
    /// (and a node left without dependencies, and a deleted Service's labels): past it
    /// they are forgotten, so a long `smap watch` over a churning cluster holds what it
    /// saw lately, not all it ever saw. At least `connection_ttl`. Unset: `smap watch`
    /// (and `smap build --events`, which replays it) use [`WATCH_MAP_RETENTION`], and
    /// `smap build` keeps everything its recordings hold.
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub map_retention: Option<Duration>,
    /// An outside address a client resolved by DNS is shown under that name while the
    /// answer's TTL lasts and this long after: clients that cache answers (the JVM
    /// does for 30 s) may connect a little past the TTL.
    #[serde(with = "humantime_serde_compat")]
    pub dns_name_grace: Duration,
    /// Service type rules checked before the built-in ones, first match wins.
    pub type_rules: Vec<TypeRule>,
}

/// The `map_retention` of `smap watch` when the config sets none.
pub const WATCH_MAP_RETENTION: Duration = Duration::from_secs(3600);

/// A user rule for service type detection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// The type to assign.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// Matches when a container image contains this text.
    #[serde(default)]
    pub image: Option<String>,
    /// Matches when the Service (or workload) exposes this port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Matches the Service (or workload) name exactly.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches when a label has this value (`key=value`) or is present (`key`).
    #[serde(default)]
    pub label: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            enabled: true,
            enable_k8s_discovery: true,
            namespaces: Vec::new(),
            exclude_namespaces: SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect(),
            enable_ebpf: true,
            max_connections: 100_000,
            max_services: 10_000,
            connection_ttl: Duration::from_secs(300),
            auto_detect_type: true,
            ignore_system_namespaces: true,
            include_external_services: false,
            min_connection_count: 1,
            emit_on_change: true,
            change_debounce: Duration::from_secs(5),
            full_snapshot_interval: Duration::from_secs(300),
            skip_unchanged: true,
            min_emit_interval: Duration::from_secs(5),
            dedup_window: Duration::from_secs(5),
            progress_interval: Duration::from_secs(10),
            ring_buffer_bytes: 4 << 20,
            map_retention: None,
            dns_name_grace: Duration::from_secs(30),
            type_rules: Vec::new(),
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The config file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid YAML, an unknown key, or a value of the wrong shape.
    #[error("{path}: {message}")]
    Invalid {
        /// The config file.
        path: String,
        /// What the parser reported (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Value {
        /// The config file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorsFile {
    collectors: Vec<serde_norway::Value>,
}

impl Config {
    /// Reads a YAML config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Config::from_yaml(&text).map_err(|e| match e {
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path: path.display().to_string(), message },
            ConfigError::Value { message, .. } => ConfigError::Value { path: path.display().to_string(), message },
            other => other,
        })
    }

    /// Parses YAML text: the collector shape or the keys at top level.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let invalid = |e: serde_norway::Error| ConfigError::Invalid { path: String::new(), message: e.to_string() };
        let value: serde_norway::Value = serde_norway::from_str(text).map_err(invalid)?;
        let is_collectors = value.as_mapping().is_some_and(|m| m.contains_key("collectors"));
        let section = if is_collectors {
            let file: CollectorsFile = serde_norway::from_value(value).map_err(invalid)?;
            let mut found = None;
            for collector in file.collectors {
                let name = collector.get("name").and_then(|n| n.as_str()).unwrap_or("");
                if name == "service-map" || name == "smap" {
                    found = Some(collector);
                    break;
                }
            }
            found.ok_or_else(|| ConfigError::Value {
                path: String::new(),
                message: "no collector named `service-map` under `collectors`".to_owned(),
            })?
        } else if value.is_null() {
            return Ok(Config::default());
        } else {
            value
        };
        let config: Config = serde_norway::from_value(section).map_err(invalid)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let value = |message: &str| ConfigError::Value { path: String::new(), message: message.to_owned() };
        if self.max_connections == 0 {
            return Err(value("max_connections must be at least 1"));
        }
        if self.max_services == 0 {
            return Err(value("max_services must be at least 1"));
        }
        if self.connection_ttl.is_zero() {
            return Err(value("connection_ttl must be longer than 0s"));
        }
        if self.progress_interval.is_zero() {
            return Err(value("progress_interval must be longer than 0s"));
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return Err(value("ring_buffer_bytes must be a power of two of at least 4096"));
        }
        if self.map_retention.is_some_and(|r| r < self.connection_ttl || r < self.dedup_window) {
            return Err(value("map_retention must be at least connection_ttl and dedup_window"));
        }
        for rule in &self.type_rules {
            if rule.image.is_none() && rule.port.is_none() && rule.name.is_none() && rule.label.is_none() {
                return Err(value("a type_rules entry needs at least one of image, port, name, label"));
            }
        }
        Ok(())
    }

    /// Whether objects and traffic of this namespace are kept.
    pub fn namespace_included(&self, namespace: &str) -> bool {
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == namespace) {
            return false;
        }
        if self.exclude_namespaces.iter().any(|n| n == namespace) {
            return false;
        }
        !(self.ignore_system_namespaces && SYSTEM_NAMESPACES.contains(&namespace))
    }

    /// Namespaces explicitly excluded (config plus system namespaces when ignored).
    pub fn excluded_namespaces(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.exclude_namespaces.iter().cloned().collect();
        if self.ignore_system_namespaces {
            out.extend(SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()));
        }
        out
    }
}

/// Durations as humantime strings (`5m`, `30s`), the collector config's notation.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

/// An optional duration, as a humantime string when present.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::humantime_serde_compat::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_compat::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLECTOR_README: &str = r#"
collectors:
  - name: service-map
    enabled: true
    enable_k8s_discovery: true
    namespaces: []  # Empty = all namespaces
    exclude_namespaces:
      - kube-system
      - kube-public
      - kube-node-lease
    enable_ebpf: true
    max_connections: 100000
    connection_ttl: 5m
    auto_detect_type: true
    ignore_system_namespaces: true
    include_external_services: false
    min_connection_count: 1
"#;

    #[test]
    fn the_collector_readme_config_parses_to_the_defaults() {
        let config = Config::from_yaml(COLLECTOR_README).unwrap();
        assert_eq!(Config { name: Some("service-map".into()), ..Config::default() }, config);
    }

    #[test]
    fn flat_keys_and_emission_keys_work() {
        let config = Config::from_yaml(
            "namespaces: [shop]\ninclude_external_services: true\nchange_debounce: 2s\nmin_emit_interval: 500ms\nfull_snapshot_interval: 1m\nskip_unchanged: false\nemit_on_change: true\n",
        )
        .unwrap();
        assert_eq!(config.namespaces, vec!["shop"]);
        assert!(config.include_external_services);
        assert_eq!(config.change_debounce, Duration::from_secs(2));
        assert_eq!(config.min_emit_interval, Duration::from_millis(500));
        assert!(config.namespace_included("shop"));
        assert!(!config.namespace_included("other"));
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let err = Config::from_yaml("max_conections: 5\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `max_conections`"), "{err}");
        let err = Config::from_yaml("connection_ttl: soon\n").unwrap_err().to_string();
        assert!(err.contains("`soon`"), "{err}");
        let err = Config::from_yaml("max_connections: 0\n").unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
        let err = Config::from_yaml("collectors: [{name: other}]\n").unwrap_err().to_string();
        assert!(err.contains("service-map"), "{err}");
        let err = Config::from_yaml("map_retention: 1m\n").unwrap_err().to_string();
        assert!(err.contains("at least connection_ttl"), "{err}");
    }

    #[test]
    fn map_retention_is_optional_and_round_trips() {
        assert_eq!(Config::from_yaml("connection_ttl: 1m\n").unwrap().map_retention, None);
        let config = Config::from_yaml("map_retention: 2h\n").unwrap();
        assert_eq!(config.map_retention, Some(Duration::from_secs(7200)));
        let again: Config = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn system_namespaces_follow_the_switch() {
        let config = Config { exclude_namespaces: vec![], ..Config::default() };
        assert!(!config.namespace_included("kube-system"));
        let config = Config { exclude_namespaces: vec![], ignore_system_namespaces: false, ..Config::default() };
        assert!(config.namespace_included("kube-system"));
    }
}
