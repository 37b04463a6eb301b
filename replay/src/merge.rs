//! Merges many time-ordered event streams (each recording's connection and object
//! streams, plus extra snapshots) into one time-ordered stream, streaming.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::event::{ConnEvent, ConnFacts, ConnRecord, Event, ObjectEvent, TimeNs};
use crate::reader::Recording;

type Source<C> = Box<dyn Iterator<Item = Result<Event<C>>>>;
/// Merge order: time, then objects before connections, then the stream's position.
type Position = (TimeNs, u8, usize);

/// A k-way merge of event streams by time.
///
/// At equal times object events come before connection events (state first, then
/// the traffic it explains), then streams in the order given, so the merged order is
/// fully deterministic.
pub struct MergedEvents<C = ConnEvent> {
    sources: Vec<Source<C>>,
    heads: Vec<Option<Event<C>>>,
    heap: BinaryHeap<Reverse<Position>>,
    /// A stream whose head is known to come first, kept out of the heap: streams
    /// run in long stretches (a node's traffic between two Kubernetes changes), and
    /// those then cost one comparison per event instead of a heap pop and push.
    first: Option<usize>,
    failed: bool,
}

impl MergedEvents<ConnEvent> {
    /// Merges `snapshot` (e.g. objects from `--k8s-from`) with every stream of every
    /// recording. Connection streams are decoded on threads of their own.
    pub fn new(recordings: &[Recording], snapshot: Vec<ObjectEvent>) -> Result<Self> {
        let mut sources: Vec<Source<ConnEvent>> = vec![snapshot_source(snapshot)];
        for recording in recordings {
            sources.push(Box::new(recording.object_events().map(|r| r.map(|o| Event::Object(Box::new(o))))));
            sources.push(Box::new(recording.conn_events().in_background()?.map(|r| r.map(Event::Conn))));
        }
        Self::from_sources(sources)
    }
}

impl MergedEvents<ConnFacts> {
    /// Like [`MergedEvents::new`], with connection events reduced to what the engine
    /// folds: the fast path for building a topology.
    pub fn facts(recordings: &[Recording], snapshot: Vec<ObjectEvent>) -> Result<Self> {
        let mut sources: Vec<Source<ConnFacts>> = vec![snapshot_source(snapshot)];
        for recording in recordings {
            sources.push(Box::new(recording.object_events().map(|r| r.map(|o| Event::Object(Box::new(o))))));
            sources.push(Box::new(recording.conn_facts().in_background()?.map(|r| r.map(Event::Conn))));
        }
        Self::from_sources(sources)
    }
}

fn snapshot_source<C: 'static>(snapshot: Vec<ObjectEvent>) -> Source<C> {
    Box::new(snapshot.into_iter().map(|o| Ok(Event::Object(Box::new(o)))))
}

impl<C: ConnRecord> MergedEvents<C> {
    /// Merges arbitrary sources, each in non-decreasing time order.
    pub fn from_sources(sources: Vec<Source<C>>) -> Result<Self> {
        let mut merged = MergedEvents {
            heads: (0..sources.len()).map(|_| None).collect(),
            sources,
            heap: BinaryHeap::new(),
            first: None,
            failed: false,
        };
        for index in 0..merged.sources.len() {
            if let Some(position) = merged.advance(index)? {
                merged.heap.push(Reverse(position));
            }
        }
        Ok(merged)
    }

    /// Reads the stream's next event into its head.
    fn advance(&mut self, index: usize) -> Result<Option<Position>> {
        let Some(next) = self.sources[index].next() else { return Ok(None) };
        let event = next?;
        let rank = match event {
            Event::Object(_) => 0,
            Event::Conn(_) => 1,
        };
        let position = (event.time_ns(), rank, index);
        self.heads[index] = Some(event);
        Ok(Some(position))
    }
}

impl<C: ConnRecord> Iterator for MergedEvents<C> {
    type Item = Result<Event<C>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let index = match self.first.take() {
            Some(index) => index,
            None => self.heap.pop()?.0 .2,
        };
        let event = self.heads[index].take()?;
        match self.advance(index) {
            Ok(Some(position)) => {
                if self.heap.peek().is_none_or(|Reverse(top)| position < *top) {
                    self.first = Some(index);
                } else {
                    self.heap.push(Reverse(position));
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        Some(Ok(event))
    }
}
