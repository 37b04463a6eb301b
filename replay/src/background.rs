//! Decodes a stream on threads of its own, a few batches ahead, so Parquet decoding
//! overlaps whatever consumes the events (the engine's fold) and, with more than one
//! decoder, several row groups are decoded at once. Events come out in recorded order
//! whatever the number of decoders: each decoder takes the next row group in turn and
//! the consumer reads the row groups back in order.

use std::collections::BTreeMap;
use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{ReplayError, Result};
use crate::reader::{arrow_error, open_segment, Decode, StreamEvents};
use crate::schema::Stream;

/// Batches decoded ahead of the consumer per row group being decoded. Two are enough
/// to keep a decoder busy; each holds at most one batch of rows, so memory stays
/// bounded by the number of decoders, not the size of the recording.
const AHEAD: usize = 2;

/// What a decoder sends for its row group: batches, then `None` when it is whole, so
/// a decoder that died mid-way is not taken for the end of its row group.
type Message<U> = Option<Result<Vec<U>>>;

/// Batches of events decoded on background threads, in recorded order.
pub struct Background<U> {
    /// Row groups (segment and index) in recorded order.
    units: usize,
    /// The row group being read, and where its batches arrive.
    next_unit: usize,
    current: Option<Receiver<Message<U>>>,
    /// Row groups a decoder has started, announced with where their batches arrive.
    announced: Receiver<(usize, Receiver<Message<U>>)>,
    started: BTreeMap<usize, Receiver<Message<U>>>,
    tail: Option<Vec<U>>,
    stop: Arc<AtomicBool>,
    failed: bool,
}

/// The shared work of a stream's decoders.
struct Work<T, U> {
    stream: Stream,
    columns: Option<&'static [&'static str]>,
    units: Vec<(PathBuf, usize)>,
    claimed: AtomicUsize,
    stop: Arc<AtomicBool>,
    fresh: fn() -> Decode<T>,
    convert: fn(T) -> U,
}

impl<T: Send + 'static> StreamEvents<T> {
    /// Moves decoding to one thread of its own, which also turns each event into what
    /// the consumer wants (`Event::Conn`, say), so the consumer's thread does not.
    pub fn in_background<U: Send + 'static>(self, convert: fn(T) -> U) -> Result<Background<U>> {
        self.in_parallel(NonZeroUsize::MIN, convert)
    }

    /// Like [`StreamEvents::in_background`], with `decoders` threads each decoding one
    /// row group at a time; the events come out in the same order.
    pub fn in_parallel<U: Send + 'static>(self, decoders: NonZeroUsize, convert: fn(T) -> U) -> Result<Background<U>> {
        let mut units = Vec::new();
        for path in self.segments.pending {
            let file = File::open(&path).map_err(ReplayError::io(&path))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(ReplayError::parquet(&path))?;
            let groups = builder.metadata().num_row_groups();
            units.extend((0..groups).map(|index| (path.clone(), index)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (announce, announced) = channel();
        let count = units.len();
        let work = Arc::new(Work {
            stream: self.segments.stream,
            columns: self.segments.columns,
            units,
            claimed: AtomicUsize::new(0),
            stop: Arc::clone(&stop),
            fresh: self.fresh,
            convert,
        });
        for _ in 0..decoders.get().min(count) {
            let work = Arc::clone(&work);
            let announce = announce.clone();
            std::thread::Builder::new()
                .name("smap-decode".to_owned())
                .spawn(move || work.run(&announce))
                .map_err(|e| ReplayError::Thread { reason: e.to_string() })?;
        }
        let tail = self.tail.map(|tail| tail.into_iter().map(convert).collect());
        Ok(Background {
            units: count,
            next_unit: 0,
            current: None,
            announced,
            started: BTreeMap::new(),
            tail,
            stop,
            failed: false,
        })
    }
}

impl<T, U> Work<T, U> {
    /// Decodes row groups, the next unclaimed one each time, until none is left, the
    /// consumer is gone or a row group failed.
    fn run(&self, announce: &Sender<(usize, Receiver<Message<U>>)>) {
        while !self.stop.load(Ordering::Relaxed) {
            let unit = self.claimed.fetch_add(1, Ordering::Relaxed);
            let Some((path, index)) = self.units.get(unit) else { return };
            let (sender, batches) = sync_channel(AHEAD);
            if announce.send((unit, batches)).is_err() {
                return;
            }
            // A failed row group ends this decoder; the consumer stops at its error
            // when it gets there, so the others need not stop before.
            if !self.decode(path, *index, &sender) {
                return;
            }
        }
    }

    /// Sends one row group's batches; false when decoding must stop.
    fn decode(&self, path: &Path, index: usize, sender: &SyncSender<Message<U>>) -> bool {
        let mut reader = match open_segment(self.stream, path, self.columns, Some(index)) {
            Ok(reader) => reader,
            Err(e) => {
                let _ = sender.send(Some(Err(e)));
                return false;
            }
        };
        let mut decode = (self.fresh)();
        for batch in &mut reader {
            let events = batch
                .map_err(|e| arrow_error(path, e))
                .and_then(|batch| decode(path, &batch))
                .map(|events| events.into_iter().map(self.convert).collect());
            let failed = events.is_err();
            // A closed channel means the consumer stopped early: nothing to do.
            if sender.send(Some(events)).is_err() || failed {
                return false;
            }
        }
        sender.send(None).is_ok()
    }
}

impl<U> Background<U> {
    /// Where the batches of the row group to read next arrive, once a decoder has
    /// started it; `None` when every decoder is gone without starting it.
    fn receiver_of_next(&mut self) -> Option<Receiver<Message<U>>> {
        loop {
            if let Some(receiver) = self.started.remove(&self.next_unit) {
                return Some(receiver);
            }
            let (unit, receiver) = self.announced.recv().ok()?;
            self.started.insert(unit, receiver);
        }
    }

    fn died() -> ReplayError {
        ReplayError::Thread { reason: "a decoding thread panicked".to_owned() }
    }
}

impl<U> Iterator for Background<U> {
    type Item = Result<Vec<U>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.next_unit < self.units {
            if self.current.is_none() {
                match self.receiver_of_next() {
                    Some(receiver) => self.current = Some(receiver),
                    None => {
                        self.failed = true;
                        return Some(Err(Self::died()));
                    }
                }
            }
            match self.current.as_ref().map(Receiver::recv) {
                Some(Ok(Some(batch))) => {
                    self.failed = batch.is_err();
                    return Some(batch);
                }
                Some(Ok(None)) => {
                    self.current = None;
                    self.next_unit += 1;
                }
                Some(Err(_)) | None => {
                    self.failed = true;
                    return Some(Err(Self::died()));
                }
            }
        }
        self.tail.take().filter(|tail| !tail.is_empty()).map(Ok)
    }
}

impl<U> Drop for Background<U> {
    /// Decoders still running stop at their next batch: their receivers are dropped
    /// with this, and they claim no more row groups.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
