//! smap's engine and analyses: a pure fold from time-ordered events to a topology,
//! its renderings, and the graph analyses run on topologies.
//!
//! The flow: events (from `smap_replay`, recorded or live) -> [`engine`] (cluster state
//! and resolution, the connection table, classification, assembly of the topology) ->
//! [`topology`]. [`build`] drives the engine over recordings; [`events`] says what the
//! engine's changes mean live (the change events of `smap watch`); [`analysis`] and
//! [`netpol`] judge a finished topology or the observed traffic; [`render`],
//! [`export`] and [`html`] write them out.

pub mod analysis;
pub mod build;
pub mod config;
pub mod engine;
pub mod events;
pub mod export;
pub mod html;
pub mod netpol;
pub mod render;
pub mod topology;

pub use build::{build_topology, BuildError, BuildInput};
pub use config::Config;
pub use engine::Engine;
pub use topology::Topology;
