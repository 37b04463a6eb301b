//! Recording metadata (`recording.json`): versions, node, time span, counters, config.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};
use crate::event::TimeNs;

/// The schema version this build writes and reads. Bump it on any incompatible change
/// to the segment columns or to this metadata, and document the change in
/// `docs/recording-format.md`.
///
/// Version 2 added the connection kinds `tcp_existing`, `tcp_progress` and
/// `tcp_open_at_end`; version 3 the DNS answer stream (`dns-NNNNNN.parquet`) and
/// its counter; version 4 the pod cgroup stream (`cgroups-NNNNNN.parquet`) and its
/// counter. Older recordings read unchanged (without DNS answers or pod cgroups).
pub const SCHEMA_VERSION: u32 = 4;

/// The oldest schema version this build still reads.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// Checks that this build reads the schema version `path` declares (`found`: `None`
/// when it declares none, or no number); `shown` is how the error names what it found.
pub(crate) fn check_version(path: &Path, found: Option<u64>, shown: impl FnOnce() -> String) -> Result<()> {
    if found.is_some_and(|v| (u64::from(OLDEST_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&v)) {
        return Ok(());
    }
    Err(ReplayError::SchemaVersion {
        path: path.to_owned(),
        found: shown(),
        oldest: OLDEST_SCHEMA_VERSION,
        supported: SCHEMA_VERSION,
    })
}

/// Name of the metadata file inside a recording directory.
pub const META_FILE: &str = "recording.json";

/// What a recording says about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordingMeta {
    /// Segment schema version.
    pub schema_version: u32,
    /// Version of the smap that wrote it.
    pub smap_version: String,
    /// What produced it: `capture`, `watch` or `simulate`.
    pub source: String,
    /// Node the events were observed on.
    pub node: String,
    /// Kernel release of that node (empty for simulated recordings).
    pub kernel: String,
    /// Time of the first event, if any.
    pub start_ns: Option<TimeNs>,
    /// Time of the last event, if any.
    pub end_ns: Option<TimeNs>,
    /// Event time of the live session's last clock tick (its wall clock, once a
    /// second), if it ran any. Idle timers fire on those ticks live; a replay advances
    /// them as far, so it emits what the live session did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick_ns: Option<TimeNs>,
    /// True once the writer finished cleanly; false while capturing or after a crash.
    pub complete: bool,
    /// Event, loss and eviction counters.
    pub counters: Counters,
    /// The resolved configuration the recording was made with.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// Counters a recording carries so a reader knows what was lost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connection events written.
    pub conn_events: u64,
    /// Kubernetes object events written.
    pub object_events: u64,
    /// DNS answers written (one per address a reply gave).
    #[serde(default)]
    pub dns_answers: u64,
    /// Pod cgroups written (one per cgroup seen reporting connections).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pod_cgroups: u64,
    /// Kernel events lost (ring buffer full).
    pub dropped: u64,
    /// Connections evicted from bounded tables before they closed.
    pub evicted: u64,
    /// Objects or events that could not be parsed and were skipped.
    pub unparsed: u64,
}

impl RecordingMeta {
    /// Metadata for a new recording written by this build.
    pub fn new(source: &str, node: &str, kernel: &str) -> Self {
        RecordingMeta {
            schema_version: SCHEMA_VERSION,
            smap_version: env!("CARGO_PKG_VERSION").to_owned(),
            source: source.to_owned(),
            node: node.to_owned(),
            kernel: kernel.to_owned(),
            ..RecordingMeta::default()
        }
    }

    /// Reads `recording.json` from a recording directory and checks its version.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(ReplayError::io(&path))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ReplayError::Meta { path: path.clone(), source })?;
        let found = value.get("schema_version").cloned().unwrap_or(serde_json::Value::Null);
        check_version(&path, found.as_u64(), || found.to_string())?;
        serde_json::from_value(value).map_err(|source| ReplayError::Meta { path, source })
    }

    /// Writes `recording.json` atomically (temporary file, then rename), so a crash
    /// never leaves half a metadata file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(META_FILE);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let text =
            serde_json::to_string_pretty(self).map_err(|source| ReplayError::Meta { path: path.clone(), source })?;
        std::fs::write(&tmp, text + "\n").map_err(ReplayError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(ReplayError::io(&path))?;
        Ok(())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
