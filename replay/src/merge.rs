//! Merges many time-ordered event streams (each recording's connection, object, DNS
//! and pod cgroup streams, plus extra snapshots) into one time-ordered stream, streaming.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroUsize;

use crate::error::Result;
use crate::event::{ConnEvent, ConnFacts, ConnRecord, Event, ObjectEvent, TimeNs};
use crate::reader::{Recording, StreamEvents};

/// A stream as batches of events in time order.
pub type Batches<C> = Box<dyn Iterator<Item = Result<Vec<Event<C>>>>>;
/// Merge order: time, then [`Event::rank`], then the stream's position.
type Position = (TimeNs, u8, usize);

/// A k-way merge of event streams by time.
///
/// At equal times events go by [`Event::rank`] (state, cgroups and names first, then
/// the traffic they explain), then by stream in the order given, so the merged order
/// is fully deterministic.
pub struct MergedEvents<C = ConnEvent> {
    sources: Vec<Batches<C>>,
    /// The batch each stream is in; its first element is the stream's head.
    current: Vec<std::vec::IntoIter<Event<C>>>,
    heap: BinaryHeap<Reverse<Position>>,
    /// A stream whose head is known to come first, kept out of the heap: streams
    /// run in long stretches (a node's traffic between two Kubernetes changes), and
    /// those then cost one comparison per event instead of a heap pop and push.
    first: Option<usize>,
    failed: bool,
}

/// How many threads a replay keeps busy: the one consuming the merged events (the
/// engine's fold) and the ones decoding connection segments for it. The merged order,
/// and so everything folded from it, is the same whatever the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads(NonZeroUsize);

impl Threads {
    /// Everything on the consumer's thread.
    pub const ONE: Threads = Threads(NonZeroUsize::MIN);

    /// `n` threads in all.
    pub fn new(n: NonZeroUsize) -> Self {
        Threads(n)
    }

    /// As many as the machine (or the container's CPU quota) gives this process.
    pub fn available() -> Self {
        Threads(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }

    /// The number of threads.
    pub fn get(self) -> usize {
        self.0.get()
    }

    /// Decoders for each recording's connection stream: none with one thread (the
    /// consumer decodes), otherwise the threads beyond the consumer's shared out, at
    /// least one per recording so no recording's decoding waits for another's.
    fn decoders_per_recording(self, recordings: usize) -> Option<NonZeroUsize> {
        let beyond = self.get().checked_sub(1).and_then(NonZeroUsize::new)?;
        NonZeroUsize::new(beyond.get() / recordings.max(1)).or(Some(NonZeroUsize::MIN))
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads::available()
    }
}

impl MergedEvents<ConnEvent> {
    /// Merges `snapshot` (e.g. objects from `--k8s-from`) with every stream of every
    /// recording. Connection streams are decoded on threads of their own.
    pub fn new(recordings: &[Recording], snapshot: Vec<ObjectEvent>) -> Result<Self> {
        Self::new_with_threads(recordings, snapshot, Threads::default())
    }

    /// Like [`MergedEvents::new`], on `threads` threads.
    pub fn new_with_threads(recordings: &[Recording], snapshot: Vec<ObjectEvent>, threads: Threads) -> Result<Self> {
        Self::of_recordings(recordings, snapshot, Recording::conn_events, threads)
    }
}

impl MergedEvents<ConnFacts> {
    /// Like [`MergedEvents::new`], with connection events reduced to what the engine
    /// folds: the fast path for building a topology.
    pub fn facts(recordings: &[Recording], snapshot: Vec<ObjectEvent>) -> Result<Self> {
        Self::facts_with_threads(recordings, snapshot, Threads::default())
    }

    /// Like [`MergedEvents::facts`], on `threads` threads.
    pub fn facts_with_threads(recordings: &[Recording], snapshot: Vec<ObjectEvent>, threads: Threads) -> Result<Self> {
        Self::of_recordings(recordings, snapshot, Recording::conn_facts, threads)
    }
}

fn snapshot_batches<C: 'static>(snapshot: Vec<ObjectEvent>) -> Batches<C> {
    Box::new(std::iter::once(Ok(snapshot.into_iter().map(Event::from).collect())))
}

/// A stream of anything that becomes an [`Event`] (objects, DNS answers), batch by batch.
fn event_batches<T: 'static, C: 'static>(mut events: StreamEvents<T>) -> Batches<C>
where
    Event<C>: From<T>,
{
    Box::new(std::iter::from_fn(move || {
        events.next_batch().map(|batch| batch.map(|events| events.into_iter().map(Event::from).collect()))
    }))
}

/// A connection stream decoded on the consumer's thread.
fn conn_batches<C: 'static>(mut events: StreamEvents<C>) -> Batches<C> {
    Box::new(std::iter::from_fn(move || {
        events.next_batch().map(|batch| batch.map(|events| events.into_iter().map(Event::Conn).collect()))
    }))
}

impl<C: ConnRecord + Send + 'static> MergedEvents<C> {
    fn of_recordings(
        recordings: &[Recording],
        snapshot: Vec<ObjectEvent>,
        conns: fn(&Recording) -> StreamEvents<C>,
        threads: Threads,
    ) -> Result<Self> {
        let mut sources = vec![snapshot_batches(snapshot)];
        for recording in recordings {
            sources.push(event_batches(recording.object_events()));
            sources.push(event_batches(recording.pod_cgroups()));
            sources.push(event_batches(recording.dns_answers()));
            let conns = conns(recording);
            match threads.decoders_per_recording(recordings.len()) {
                Some(decoders) => sources.push(Box::new(conns.in_parallel(decoders, Event::Conn)?)),
                None => sources.push(conn_batches(conns)),
            }
        }
        Self::from_batches(sources)
    }
}

impl<C: ConnRecord> MergedEvents<C> {
    /// Merges arbitrary streams, each in non-decreasing time order.
    pub fn from_batches(sources: Vec<Batches<C>>) -> Result<Self> {
        let mut merged = MergedEvents {
            current: (0..sources.len()).map(|_| Vec::new().into_iter()).collect(),
            sources,
            heap: BinaryHeap::new(),
            first: None,
            failed: false,
        };
        for index in 0..merged.sources.len() {
            if let Some(position) = merged.head(index)? {
                merged.heap.push(Reverse(position));
            }
        }
        Ok(merged)
    }

    /// Where the stream's next event goes, loading its next batch when needed.
    fn head(&mut self, index: usize) -> Result<Option<Position>> {
        loop {
            if let Some(event) = self.current[index].as_slice().first() {
                return Ok(Some((event.time_ns(), event.rank(), index)));
            }
            match self.sources[index].next() {
                Some(batch) => self.current[index] = batch?.into_iter(),
                None => return Ok(None),
            }
        }
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
        let event = self.current[index].next()?;
        match self.head(index) {
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
