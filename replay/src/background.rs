//! Decodes a stream on its own thread, a few batches ahead, so Parquet decoding
//! overlaps whatever consumes the events (the engine's fold, on the other core).

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use crate::error::{ReplayError, Result};
use crate::reader::StreamEvents;

/// Batches decoded ahead of the consumer. Two are enough to keep both threads busy;
/// each holds at most one batch of rows, so memory stays bounded.
const AHEAD: usize = 2;

/// Events decoded on a background thread, in order.
pub struct Background<T> {
    batches: Receiver<Result<Vec<T>>>,
    buffer: std::vec::IntoIter<T>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> StreamEvents<T> {
    /// Moves decoding to a thread of its own.
    pub fn in_background(mut self) -> Result<Background<T>> {
        let (sender, batches) = sync_channel(AHEAD);
        let thread = std::thread::Builder::new()
            .name("smap-decode".to_owned())
            .spawn(move || {
                while let Some(batch) = self.next_batch() {
                    let failed = batch.is_err();
                    // A closed channel means the consumer stopped early: nothing to do.
                    if sender.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| ReplayError::Thread { reason: e.to_string() })?;
        Ok(Background { batches, buffer: Vec::new().into_iter(), thread: Some(thread) })
    }
}

impl<T> Iterator for Background<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.buffer.next() {
                return Some(Ok(event));
            }
            match self.batches.recv() {
                Ok(Ok(batch)) => self.buffer = batch.into_iter(),
                Ok(Err(e)) => return Some(Err(e)),
                Err(_) => {
                    // The decoder finished, or died: a panic must not pass for the end.
                    let thread = self.thread.take()?;
                    return match thread.join() {
                        Ok(()) => None,
                        Err(_) => Some(Err(ReplayError::Thread { reason: "the decoding thread panicked".to_owned() })),
                    };
                }
            }
        }
    }
}
