//! Decodes a stream on its own thread, a few batches ahead, so Parquet decoding
//! overlaps whatever consumes the events (the engine's fold, on the other core).

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use crate::error::{ReplayError, Result};
use crate::reader::StreamEvents;

/// Batches decoded ahead of the consumer. Two are enough to keep both threads busy;
/// each holds at most one batch of rows, so memory stays bounded.
const AHEAD: usize = 2;

/// Batches of events decoded on a background thread, in order.
pub struct Background<U> {
    batches: Receiver<Result<Vec<U>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> StreamEvents<T> {
    /// Moves decoding to a thread of its own, which also turns each event into what
    /// the consumer wants (`Event::Conn`, say), so the consumer's thread does not.
    pub fn in_background<U: Send + 'static>(mut self, convert: fn(T) -> U) -> Result<Background<U>> {
        let (sender, batches) = sync_channel(AHEAD);
        let thread = std::thread::Builder::new()
            .name("smap-decode".to_owned())
            .spawn(move || {
                while let Some(batch) = self.next_batch() {
                    let batch = batch.map(|events| events.into_iter().map(convert).collect());
                    let failed = batch.is_err();
                    // A closed channel means the consumer stopped early: nothing to do.
                    if sender.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| ReplayError::Thread { reason: e.to_string() })?;
        Ok(Background { batches, thread: Some(thread) })
    }
}

impl<U> Iterator for Background<U> {
    type Item = Result<Vec<U>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.batches.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // The decoder finished, or died: a panic must not pass for the end.
                let thread = self.thread.take()?;
                match thread.join() {
                    Ok(()) => None,
                    Err(_) => Some(Err(ReplayError::Thread { reason: "the decoding thread panicked".to_owned() })),
                }
            }
        }
    }
}
