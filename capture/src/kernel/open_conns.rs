//! Connections that were open before the capture started, and those still open when it
//! stops: the enumeration of each reachable network namespace at start (the `iter/tcp`
//! program), and the end-of-capture report read from the kernel's `conns` map; and
//! how many entries that map evicted.
//!
//! A connection that moves bytes is found by the data-path programs on its own; the
//! enumeration adds the idle ones (a database pool between queries) and the listeners,
//! which tell the side of every connection the kernel did not see opening. An
//! `iter/tcp` iterator lists the namespace of the task that creates it, so a worker
//! thread enters each namespace in turn: the node's own, then every entry of
//! [`KernelConfig::netns_dir`](super::KernelConfig::netns_dir) (where container
//! runtimes and `ip netns` pin pod namespaces), which needs CAP_SYS_ADMIN.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::iter::{Iter, IterLink};
use aya::{Btf, Ebpf};
use smap_ebpf::{programs, ConnState, Event};

/// What the enumeration at start found.
#[derive(Debug, Default)]
pub(crate) struct Enumeration {
    /// Listener and connection records, in namespace order.
    pub(crate) records: Vec<Event>,
    /// Namespaces listed.
    pub(crate) namespaces: u64,
    /// Namespaces that could not be entered or listed, with why (the first few).
    pub(crate) failed: Vec<(PathBuf, String)>,
    /// Namespaces that could not be entered or listed.
    pub(crate) failed_count: u64,
}

/// Failures kept for the log; the rest are only counted.
const FAILURES_KEPT: usize = 4;

/// Lists the TCP sockets of this task's namespace and of every namespace pinned under
/// `netns_dir`. `Err` when the iterator program cannot run at all (kernel before 5.9,
/// no BTF for it, not permitted); the capture goes on without the enumeration.
pub(crate) fn enumerate(ebpf: &mut Ebpf, btf: &Btf, netns_dir: Option<&Path>) -> Result<Enumeration, String> {
    let program = ebpf.program_mut(programs::ITER_TCP).ok_or("the object has no iter/tcp program")?;
    let iter: &mut Iter = program.try_into().map_err(|e: aya::programs::ProgramError| e.to_string())?;
    iter.load("tcp", btf).map_err(|e| format!("loading iter/tcp: {e}"))?;

    let own = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    let mut seen: HashSet<u64> = own.into_iter().collect();
    let mut targets: Vec<(PathBuf, File)> = Vec::new();
    let mut out = Enumeration::default();
    if let Some(dir) = netns_dir {
        // A missing directory is a node without pinned namespaces, not an error.
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        paths.sort();
        for path in paths {
            match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m.ino()))) {
                Ok((file, ino)) if seen.insert(ino) => targets.push((path, file)),
                Ok(_) => {}
                Err(e) => note_failure(&mut out, path, e.to_string()),
            }
        }
    }

    // The node's own namespace first, in this thread's namespace.
    out.records.extend(list_current(iter).map_err(|e| format!("listing this namespace: {e}"))?);
    out.namespaces += 1;
    if targets.is_empty() {
        return Ok(out);
    }
    let links: Vec<Result<IterLink, String>> = targets.iter().map(|_| new_link(iter)).collect();
    // setns changes the calling thread only: a scoped worker enters each namespace.
    let results = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                targets
                    .iter()
                    .zip(links)
                    .map(|((_, file), link)| {
                        let link = link?;
                        // SAFETY: setns on a namespace file descriptor that stays open for
                        // the call; it changes only this worker thread's namespace.
                        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            return Err(format!("entering it: {}", std::io::Error::last_os_error()));
                        }
                        read_link(link).map_err(|e| format!("listing it: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap_or_default()
    });
    for ((path, _), result) in targets.into_iter().zip(results) {
        match result {
            Ok(records) => {
                out.records.extend(records);
                out.namespaces += 1;
            }
            Err(e) => note_failure(&mut out, path, e),
        }
    }
    Ok(out)
}

fn note_failure(out: &mut Enumeration, path: PathBuf, reason: String) {
    out.failed_count += 1;
    if out.failed.len() < FAILURES_KEPT {
        out.failed.push((path, reason));
    }
}

fn new_link(iter: &mut Iter) -> Result<IterLink, String> {
    let id = iter.attach().map_err(|e| e.to_string())?;
    iter.take_link(id).map_err(|e| e.to_string())
}

fn list_current(iter: &mut Iter) -> Result<Vec<Event>, String> {
    read_link(new_link(iter)?)
}

/// Creates an iterator of `link` in the calling thread's namespace and reads it out.
fn read_link(link: IterLink) -> Result<Vec<Event>, String> {
    let mut file = link.into_file().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes.chunks_exact(Event::SIZE).filter_map(Event::from_bytes).collect())
}

/// The report of every connection still in the kernel's table, as of boot time
/// `now_ns`; entries still in their handshake are skipped.
pub(crate) fn open_at_end(conns: &BpfHashMap<MapData, u64, ConnState>, now_ns: u64) -> Vec<Event> {
    // Iteration can revisit keys when entries vanish under it: report each socket once.
    let mut seen = HashSet::new();
    conns
        .iter()
        .filter_map(Result::ok)
        .filter(|(key, _)| seen.insert(*key))
        .filter_map(|(_, state)| state.open_at_end(now_ns))
        .collect()
}

/// Evictions from the connection table that certainly happened, from the inserts
/// counted before listing it, the deletes counted after, and the entries listed.
///
/// Connections close while the table is listed: with the deletes counted before, each
/// such close would pass for an eviction, and the running maximum would keep it. Inserts
/// during the listing can only make this smaller: it never over-counts.
pub(super) fn evictions_at_least(inserts_before: u64, deletes_after: u64, listed: usize) -> u64 {
    inserts_before.saturating_sub(deletes_after).saturating_sub(listed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_closing_while_the_table_is_listed_are_not_evictions() {
        // 10 opened, none closed when the counters are read; 3 close during the listing,
        // which finds the other 7: nothing was evicted.
        assert_eq!(evictions_at_least(10, 3, 7), 0);
        // 2 evicted before the listing and 1 closed during it: at least 2.
        assert_eq!(evictions_at_least(10, 1, 7), 2);
        // 4 opened during the listing and seen by it: still no invented eviction.
        assert_eq!(evictions_at_least(10, 0, 14), 0);
    }
}
