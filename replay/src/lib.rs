//! smap's recording format: the event model, the Parquet segment schema, the writer
//! and streaming reader, kubectl JSON snapshots, and the scenario simulator.
//!
//! No IO here beyond files: live sources live in `smap-capture`, the engine in
//! `smap-analyze`.

pub mod background;
pub mod cgroup;
mod decode;
mod dict_builder;
pub mod error;
pub mod event;
pub mod journal;
pub mod kubectl;
pub mod merge;
pub mod meta;
pub mod reader;
pub mod schema;
pub mod simulate;
pub mod time;
pub mod writer;

pub use error::{ReplayError, Result};
pub use event::{
    ConnEvent, ConnFacts, ConnKind, ConnRecord, DnsAnswer, Event, ObjectAction, ObjectEvent, ObjectKind, PodCgroup,
    ProcessName, Protocol, Side, TimeNs,
};
pub use merge::{MergedEvents, Threads};
pub use meta::{Counters, RecordingMeta, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION};
pub use reader::Recording;
pub use writer::{LossCounters, RecordingWriter, WriterOptions};
