//! Event-time formatting: nanoseconds since the epoch to RFC 3339 and back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::TimeNs;

/// Formats event time as RFC 3339 UTC with nanoseconds (`2026-01-02T03:04:05.000000006Z`).
pub fn format_rfc3339(t: TimeNs) -> String {
    let system = if t >= 0 {
        UNIX_EPOCH + Duration::from_nanos(t.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(t.unsigned_abs())
    };
    humantime::format_rfc3339_nanos(system).to_string()
}

/// Parses an RFC 3339 timestamp into event time.
pub fn parse_rfc3339(s: &str) -> Option<TimeNs> {
    let system = humantime::parse_rfc3339_weak(s).ok()?;
    let d = system.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// The current wall-clock time as event time. Only live sources call this: the engine
/// never reads the clock.
pub fn now_ns() -> TimeNs {
    SystemTime::now().duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_nanos()).ok()).unwrap_or(0)
}
