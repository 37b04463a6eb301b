//! The capture's one clock: `CLOCK_BOOTTIME` plus the wall clock's offset from it,
//! measured once at start. Kernel events, Kubernetes object events and idle ticks are
//! all stamped with it, so their order and spacing survive a wall-clock step (NTP, a VM
//! resumed from pause): the recording's times stay Unix-epoch nanoseconds, as of the
//! start, and an engine's TTLs measure real elapsed time.

use smap_replay::TimeNs;

/// Kernel `CLOCK_BOOTTIME` to Unix-epoch nanoseconds.
///
/// The programs stamp events with `bpf_ktime_get_boot_ns`; the offset to the wall clock
/// is taken once, at start, so that event order and spacing are the kernel's and a
/// wall-clock step (NTP) during capture does not reorder events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    offset_ns: i64,
}

impl Clock {
    /// Measures the offset, keeping the tightest of a few boottime/realtime/boottime
    /// samples so that a preemption between the reads does not skew it.
    pub fn measure() -> Self {
        let mut best: Option<(i64, i64)> = None;
        for _ in 0..5 {
            let b1 = clock_ns(libc::CLOCK_BOOTTIME);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b2 = clock_ns(libc::CLOCK_BOOTTIME);
            let gap = b2 - b1;
            let offset = r - (b1 + gap / 2);
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, offset));
            }
        }
        Self { offset_ns: best.map_or(0, |(_, o)| o) }
    }

    /// A clock with a given offset (tests, and replays of a known capture).
    pub fn with_offset(offset_ns: i64) -> Self {
        Self { offset_ns }
    }

    /// Now, in Unix-epoch nanoseconds as of the measurement.
    pub fn now(self) -> TimeNs {
        self.to_wall(Self::boot_now())
    }

    /// Converts a `CLOCK_BOOTTIME` reading to Unix-epoch nanoseconds.
    pub fn to_wall(self, boot_ns: u64) -> TimeNs {
        i64::try_from(boot_ns).unwrap_or(i64::MAX).saturating_add(self.offset_ns)
    }

    /// Now, in `CLOCK_BOOTTIME` nanoseconds.
    pub fn boot_now() -> u64 {
        u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec; BOOTTIME and REALTIME always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec.saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_realtime_minus_boottime() {
        let clock = Clock::measure();
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((real - clock.now()).abs() < 50_000_000, "{real} vs {}", clock.now());
    }
}
