//! The emitter's timers: debounce windows, rate limits, TTL expiry and snapshots, due in
//! event time and fired strictly after it.

use smap_replay::TimeNs;

use crate::events::model::{
    ChangeData, ChangeEvent, ConnectionStats, EndpointsChanged, GoneReason, HealthChanged, SnapshotReason, Traffic,
    VersionChanged,
};
use crate::topology::Health;

use super::{Emitter, PairIdx, Timer};

impl Emitter {
    /// When a report may go out: now (immediate) or after the debounce window, and no
    /// sooner than `min_emit_interval` after the previous report of the same kind.
    pub(super) fn due(&self, now: TimeNs, last: Option<TimeNs>, immediate: bool) -> TimeNs {
        let wanted = if immediate { now } else { now.saturating_add(self.debounce) };
        match last {
            Some(last) => wanted.max(last.saturating_add(self.min_emit)),
            None => wanted,
        }
    }

    /// Sets a report's timer to `due`, unless one is already set no later. Timers due
    /// now still wait for time to move on, so changes of one instant come out together.
    pub(super) fn schedule(&mut self, timer: Timer, due: TimeNs) {
        let slot_due = match timer {
            Timer::Health(v) => &mut self.views[v as usize].health.due,
            Timer::Version(v) => &mut self.views[v as usize].version.due,
            Timer::Endpoints(v) => &mut self.views[v as usize].endpoints.due,
            Timer::Stats(p) => &mut self.pairs[p as usize].stats.due,
            Timer::Expire(p) => &mut self.pairs[p as usize].expiry,
            Timer::Snapshot => &mut self.snapshot_due,
            Timer::Periodic => &mut self.periodic_due,
        };
        match *slot_due {
            Some(current) if current <= due => return,
            Some(current) => {
                self.timers.remove(&(current, timer));
            }
            None => {}
        }
        *slot_due = Some(due);
        self.timers.insert((due, timer));
    }

    pub(super) fn cancel(&mut self, timer: Timer) {
        let slot_due = match timer {
            Timer::Health(v) => self.views[v as usize].health.due.take(),
            Timer::Version(v) => self.views[v as usize].version.due.take(),
            Timer::Endpoints(v) => self.views[v as usize].endpoints.due.take(),
            Timer::Stats(p) => self.pairs[p as usize].stats.due.take(),
            Timer::Expire(p) => self.pairs[p as usize].expiry.take(),
            Timer::Snapshot => self.snapshot_due.take(),
            Timer::Periodic => self.periodic_due.take(),
        };
        if let Some(due) = slot_due {
            self.timers.remove(&(due, timer));
        }
    }

    pub(super) fn schedule_periodic(&mut self, due: TimeNs) {
        self.cancel(Timer::Periodic);
        self.schedule(Timer::Periodic, due);
    }

    /// Services or dependencies came or went: a snapshot follows once this instant is
    /// over, rate limit allowing.
    pub(super) fn significant(&mut self) {
        self.generation += 1;
        if !self.config.emit_on_change {
            return;
        }
        let due = self.due(self.now(), self.last_snapshot_at, true);
        self.schedule(Timer::Snapshot, due);
    }

    pub(super) fn fire(&mut self, timer: Timer, at: TimeNs, out: &mut Vec<ChangeEvent>) {
        match timer {
            Timer::Health(v) => {
                let view = &mut self.views[v as usize];
                view.health.due = None;
                let (from, to) = (view.health.reported, view.details.health);
                if view.present && from != to {
                    view.health.reported = to;
                    view.health.last = Some(at);
                    let data = HealthChanged {
                        service: view.id.clone(),
                        from,
                        to,
                        critical: from == Health::Down || to == Health::Down,
                        endpoints: view.details.endpoints,
                    };
                    self.emit(out, at, ChangeData::HealthChanged(data));
                }
            }
            Timer::Version(v) => {
                let view = &mut self.views[v as usize];
                view.version.due = None;
                if view.present && view.details.version.is_some() && view.version.reported != view.details.version {
                    let to = view.details.version.clone();
                    let from = std::mem::replace(&mut view.version.reported, to.clone());
                    view.version.last = Some(at);
                    let data = VersionChanged { service: view.id.clone(), from, to };
                    self.emit(out, at, ChangeData::VersionChanged(data));
                }
            }
            Timer::Endpoints(v) => {
                let view = &mut self.views[v as usize];
                view.endpoints.due = None;
                let (from, to) = (view.endpoints.reported, view.details.endpoints);
                if view.present && from != to {
                    view.endpoints.reported = to;
                    view.endpoints.last = Some(at);
                    let data = EndpointsChanged { service: view.id.clone(), from, to };
                    self.emit(out, at, ChangeData::EndpointsChanged(data));
                }
            }
            Timer::Stats(p) => self.fire_stats(p, at, out),
            Timer::Expire(p) => {
                let state = &mut self.pairs[p as usize];
                state.expiry = None;
                if !state.active {
                    return;
                }
                let deadline = state.last_seen.saturating_add(self.ttl);
                if deadline > at {
                    // Traffic since the timer was set: the dependency lives on.
                    self.schedule(Timer::Expire(p), deadline);
                    return;
                }
                let ends = self.deactivate(p, GoneReason::Idle, at, out);
                for end in ends {
                    self.check_idle(end, out);
                }
            }
            Timer::Snapshot => {
                self.snapshot_due = None;
                if self.emit_snapshot(SnapshotReason::TopologyChanged, at, out) {
                    self.schedule_periodic(at.saturating_add(self.snapshot_every));
                }
            }
            Timer::Periodic => {
                self.periodic_due = None;
                self.emit_snapshot(SnapshotReason::Periodic, at, out);
                self.schedule_periodic(at.saturating_add(self.snapshot_every));
            }
        }
    }

    pub(super) fn fire_stats(&mut self, pair: PairIdx, at: TimeNs, out: &mut Vec<ChangeEvent>) {
        let state = &mut self.pairs[pair as usize];
        state.stats.due = None;
        let delta = state.traffic.since(&state.reported);
        if !state.active || delta == Traffic::default() {
            return;
        }
        let interval = at.saturating_sub(state.reported_at);
        let seconds = interval as f64 / 1e9;
        // Rounded to thousandths: plenty for rates, and the JSON reads back exactly.
        let per_second = |n: u64| if interval > 0 { (n as f64 / seconds * 1000.0).round() / 1000.0 } else { 0.0 };
        let data = ConnectionStats {
            source: self.views[state.source as usize].id.clone(),
            destination: self.views[state.destination as usize].id.clone(),
            total: state.traffic,
            delta,
            interval_seconds: seconds,
            connections_per_second: per_second(delta.connections),
            bytes_per_second: per_second(delta.bytes_sent + delta.bytes_received),
        };
        state.reported = state.traffic;
        state.reported_at = at;
        state.stats.last = Some(at);
        self.emit(out, at, ChangeData::ConnectionStats(data));
    }

    /// Emits a `service_map`, unless `skip_unchanged` and it equals the previous one.
    /// Returns whether one was emitted.
    pub(super) fn emit_snapshot(&mut self, reason: SnapshotReason, at: TimeNs, out: &mut Vec<ChangeEvent>) -> bool {
        let skip = self.config.skip_unchanged;
        if skip && self.snapshot_generation == Some(self.generation) {
            return false;
        }
        let map = self.map(reason);
        self.snapshot_generation = Some(self.generation);
        if skip
            && self
                .last_map
                .as_ref()
                .is_some_and(|last| last.services == map.services && last.connections == map.connections)
        {
            return false;
        }
        self.last_snapshot_at = Some(at);
        self.last_map = Some(map.clone());
        self.emit(out, at, ChangeData::ServiceMap(map));
        true
    }
}
