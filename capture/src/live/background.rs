//! Output on a thread of its own, so that nothing slow stops the capture loop from
//! draining the kernel (which would then drop events): the recording writer (Parquet,
//! zstd, fsync, renames, on a disk that may stall) and `smap watch`'s change events (to
//! a pipe whose reader may stall). The loop only hands work over.
//!
//! Work waiting is bounded by a cost the caller gives (events, bytes): past the limit,
//! new work is dropped, counted, and warned about once per streak, never held in
//! unbounded memory. The first error of the thread stops its work and waits for the
//! loop to take it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

struct Shared<E> {
    pending: AtomicU64,
    dropped: AtomicU64,
    error: Mutex<Option<E>>,
}

/// A thread doing jobs of type `J` in order; see the module documentation.
pub(crate) struct Worker<J, E> {
    jobs: Option<mpsc::Sender<(J, u64)>>,
    shared: Arc<Shared<E>>,
    thread: Option<JoinHandle<()>>,
    limit: u64,
    /// Said when work is first dropped in a streak.
    overflow_warning: &'static str,
    overflowing: bool,
}

impl<J: Send + 'static, E: Send + 'static> Worker<J, E> {
    /// Starts the thread. `handle` does one job; `caught_up` runs whenever no job is
    /// waiting (a flush, so a reader sees each batch at once). After an error neither
    /// runs again.
    pub(crate) fn start(
        name: &str,
        limit: u64,
        overflow_warning: &'static str,
        mut handle: impl FnMut(J) -> Result<(), E> + Send + 'static,
        mut caught_up: impl FnMut() -> Result<(), E> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<(J, u64)>();
        let shared =
            Arc::new(Shared { pending: AtomicU64::new(0), dropped: AtomicU64::new(0), error: Mutex::new(None) });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            let shared = thread_shared;
            let mut failed = false;
            let fail = |e: E| {
                if let Ok(mut slot) = shared.error.lock() {
                    slot.get_or_insert(e);
                }
            };
            while let Ok(first) = queue.recv() {
                let mut next = Some(first);
                while let Some((job, cost)) = next.take() {
                    if !failed {
                        if let Err(e) = handle(job) {
                            failed = true;
                            fail(e);
                        }
                    }
                    shared.pending.fetch_sub(cost, Ordering::Relaxed);
                    next = queue.try_recv().ok();
                }
                if !failed {
                    if let Err(e) = caught_up() {
                        failed = true;
                        fail(e);
                    }
                }
            }
        })?;
        Ok(Worker { jobs: Some(jobs), shared, thread: Some(thread), limit, overflow_warning, overflowing: false })
    }

    /// Hands a job over unless the work waiting would pass the limit; a dropped job's
    /// cost is counted.
    pub(crate) fn submit(&mut self, job: J, cost: u64) {
        if self.shared.pending.load(Ordering::Relaxed) + cost > self.limit {
            self.shared.dropped.fetch_add(cost, Ordering::Relaxed);
            if !std::mem::replace(&mut self.overflowing, true) {
                tracing::warn!("{}", self.overflow_warning);
            }
            return;
        }
        self.overflowing = false;
        self.shared.pending.fetch_add(cost, Ordering::Relaxed);
        self.send(job, cost);
    }

    /// Hands over a job that must not be dropped (a checkpoint, the end); it costs
    /// nothing against the limit.
    pub(crate) fn submit_always(&self, job: J) {
        self.send(job, 0);
    }

    /// The cost of the work dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The thread's first error, once.
    pub(crate) fn take_error(&self) -> Option<E> {
        self.shared.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Waits until every job handed over is done. Returns false if the thread panicked.
    pub(crate) fn join(&mut self) -> bool {
        self.jobs = None;
        self.thread.take().is_none_or(|t| t.join().is_ok())
    }

    fn send(&self, job: J, cost: u64) {
        if let Some(jobs) = &self.jobs {
            // Fails only once the thread is gone, which join reports.
            let _ = jobs.send((job, cost));
        }
    }
}

impl<J, E> Drop for Worker<J, E> {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
