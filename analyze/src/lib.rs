//! smap's engine and analyses: a pure fold from time-ordered events to a topology,
//! its renderings, and the graph analyses run on topologies.

pub mod analysis;
pub mod assemble;
pub mod build;
pub mod classify;
pub mod cluster;
pub mod config;
mod conn_table;
mod dns_names;
pub mod engine;
pub mod events;
pub mod export;
pub mod html;
pub mod netpol;
mod object_versions;
pub mod render;
pub mod resolve;
pub mod topology;

pub use build::{build_topology, BuildError, BuildInput};
pub use config::Config;
pub use engine::Engine;
pub use topology::Topology;
