//! smap's live sources: every input that comes from a running system rather than a file.
//!
//! Every live timestamp comes from one [`clock::Clock`].
//! [`kernel`] loads smap's eBPF programs and turns the kernel's connection events into
//! [`smap_replay::ConnEvent`]s; [`kubectl_file`] follows Kubernetes state in a kubectl
//! JSON file and [`k8s_api`] watches the Kubernetes API; [`record`] merges them into one
//! time-ordered stream, records it and hands it to a live consumer; [`watch`] is the
//! consumer of `smap watch` (change events, live state) and [`serve`] its HTTP endpoints
//! (accepted within [`http_server`]'s limits, the map readable by the tokens
//! [`access`] allows), with [`graph_metrics`] its per-dependency
//! series and [`otlp`] their push to a collector.

pub mod access;
mod background;
pub mod clock;
pub mod graph_metrics;
pub mod http_server;
pub mod k8s_api;
pub mod kernel;
pub mod kubectl_file;
pub mod netns_addr;
pub mod otlp;
pub mod pod_cgroups;
pub mod record;
pub mod serve;
mod sink;
pub mod watch;
