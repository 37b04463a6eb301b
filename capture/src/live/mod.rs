//! What runs on the live sources: [`record`] merges them into one time-ordered stream,
//! records it and hands it to a consumer; [`watch`] is the consumer of `smap watch`
//! (change events, live state) and [`serve`] its HTTP endpoints (accepted within
//! [`http_server`]'s limits, the map readable by the tokens [`access`] allows), with
//! [`graph_metrics`] its per-dependency series and [`otlp`] their push to a collector.
//!
//! Apart from the sources (`kernel`, `k8s_api`, `kubectl_file`), which use nothing of the
//! engine but its list of system namespaces. It stays in this crate rather than in the binary so that the whole live
//! path, sources to served map, is tested as a library against the loopback API server
//! and the namespace cluster, and `smap` stays a thin layer of flags.

pub mod access;
mod background;
mod error;
pub mod graph_metrics;
pub mod http_server;
pub mod otlp;
pub mod record;
pub mod serve;
mod sink;
pub mod watch;

pub use error::CaptureError;
