//! Merges many time-ordered event streams (each recording's connection and object
//! streams, plus extra snapshots) into one time-ordered stream, streaming.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::event::{Event, ObjectEvent, TimeNs};
use crate::reader::Recording;

type Source = Box<dyn Iterator<Item = Result<Event>>>;

/// A k-way merge of event streams by time.
///
/// At equal times object events come before connection events (state first, then
/// the traffic it explains), then streams in the order given, so the merged order is
/// fully deterministic.
pub struct MergedEvents {
    sources: Vec<Source>,
    heads: Vec<Option<Event>>,
    heap: BinaryHeap<Reverse<(TimeNs, u8, usize)>>,
    failed: bool,
}

impl MergedEvents {
    /// Merges `snapshot` (e.g. objects from `--k8s-from`) with every stream of every
    /// recording.
    pub fn new(recordings: &[Recording], snapshot: Vec<ObjectEvent>) -> Result<Self> {
        let mut sources: Vec<Source> = Vec::new();
        sources.push(Box::new(snapshot.into_iter().map(|o| Ok(Event::Object(o)))));
        for recording in recordings {
            sources.push(Box::new(recording.object_events().map(|r| r.map(Event::Object))));
            sources.push(Box::new(recording.conn_events().map(|r| r.map(Event::Conn))));
        }
        Self::from_sources(sources)
    }

    /// Merges arbitrary sources, each in non-decreasing time order.
    pub fn from_sources(sources: Vec<Source>) -> Result<Self> {
        let mut merged = MergedEvents {
            heads: (0..sources.len()).map(|_| None).collect(),
            sources,
            heap: BinaryHeap::new(),
            failed: false,
        };
        for index in 0..merged.sources.len() {
            merged.refill(index)?;
        }
        Ok(merged)
    }

    fn refill(&mut self, index: usize) -> Result<()> {
        if let Some(next) = self.sources[index].next() {
            let event = next?;
            let rank = match event {
                Event::Object(_) => 0,
                Event::Conn(_) => 1,
            };
            self.heap.push(Reverse((event.time_ns(), rank, index)));
            self.heads[index] = Some(event);
        }
        Ok(())
    }
}

impl Iterator for MergedEvents {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let Reverse((_, _, index)) = self.heap.pop()?;
        let event = self.heads[index].take()?;
        if let Err(e) = self.refill(index) {
            self.failed = true;
            return Some(Err(e));
        }
        Some(Ok(event))
    }
}
