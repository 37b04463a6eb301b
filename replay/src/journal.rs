//! The journal: every event a live recording writes, appended as it is written and
//! synced at most a second apart, so a capture that is killed (kill -9, the OOM
//! killer, an eviction, power loss) loses about a second, where the Parquet segments
//! alone lose the open one (up to a checkpoint interval).
//!
//! `journal-NNNNNN.smj` holds the events written since the last checkpoint: each
//! checkpoint finalizes the segments, starts a new journal and deletes the old one,
//! and a finished recording has none. Every event carries its stream's sequence
//! number, and each finalized segment records the last one it holds
//! (`smap.last_seq`), so a reader replays exactly the journaled events no finalized
//! segment has, whatever moment the writer was killed at.
//!
//! Format: the 8 bytes `SMAPJNL1`, then records: payload length (u32, little endian),
//! CRC-32 of the payload (u32, little endian), payload (postcard: the sequence number,
//! then the event). A record cut short or failing its checksum ends the journal: what
//! follows is a torn tail, dropped and counted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};
use crate::event::{ConnEvent, DnsAnswer, ObjectEvent, PodCgroup};
use crate::schema::Stream;

/// File-name prefix of journals.
pub const JOURNAL_PREFIX: &str = "journal-";
/// File-name suffix of journals.
pub const JOURNAL_SUFFIX: &str = ".smj";
/// Parquet key-value metadata: the last sequence number a segment holds.
pub const LAST_SEQ_KEY: &str = "smap.last_seq";
const MAGIC: &[u8; 8] = b"SMAPJNL1";
/// A record longer than this is no record (a torn length).
const MAX_RECORD: u32 = 64 << 20;

#[derive(Serialize)]
enum EntryRef<'a> {
    Conn(&'a ConnEvent),
    Object(&'a ObjectEvent),
    Dns(&'a DnsAnswer),
    Cgroup(&'a PodCgroup),
}

/// A journaled event, as read back (same variants, in the same order, as written).
#[derive(Deserialize)]
enum Entry {
    Conn(ConnEvent),
    Object(ObjectEvent),
    Dns(DnsAnswer),
    Cgroup(PodCgroup),
}

/// The events of one stream, to journal.
#[derive(Clone, Copy)]
pub(crate) enum Journaled<'a> {
    /// A connection event.
    Conn(&'a ConnEvent),
    /// A Kubernetes object event.
    Object(&'a ObjectEvent),
    /// A DNS answer.
    Dns(&'a DnsAnswer),
    /// A pod cgroup.
    Cgroup(&'a PodCgroup),
}

/// Writes the journal of a live recording.
pub(crate) struct JournalWriter {
    dir: PathBuf,
    index: u32,
    path: PathBuf,
    file: BufWriter<File>,
    sync_every: Duration,
    last_sync: Instant,
    payload: Vec<u8>,
}

impl JournalWriter {
    /// Starts `journal-000001.smj` in `dir`.
    pub(crate) fn create(dir: &Path, sync_every: Duration) -> Result<Self> {
        let (path, file) = open(dir, 1)?;
        Ok(JournalWriter {
            dir: dir.to_owned(),
            index: 1,
            path,
            file,
            sync_every,
            last_sync: Instant::now(),
            payload: Vec::new(),
        })
    }

    /// Appends an event with its stream's sequence number (kept in memory until
    /// [`JournalWriter::commit`]).
    pub(crate) fn append(&mut self, seq: u64, event: Journaled<'_>) -> Result<()> {
        let entry = match event {
            Journaled::Conn(e) => EntryRef::Conn(e),
            Journaled::Object(e) => EntryRef::Object(e),
            Journaled::Dns(e) => EntryRef::Dns(e),
            Journaled::Cgroup(e) => EntryRef::Cgroup(e),
        };
        self.payload.clear();
        let payload = postcard::to_extend(&(seq, entry), std::mem::take(&mut self.payload))
            .map_err(|e| ReplayError::io(&self.path)(std::io::Error::other(e)))?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let written = self.file.write_all(&header).and_then(|()| self.file.write_all(&payload));
        self.payload = payload;
        written.map_err(ReplayError::io(&self.path))
    }

    /// Hands what was appended to the kernel (a killed process loses none of it), and
    /// syncs it to the disk when the last sync is `sync_every` old (power loss).
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.file.flush().map_err(ReplayError::io(&self.path))?;
        if self.last_sync.elapsed() >= self.sync_every {
            self.file.get_ref().sync_data().map_err(ReplayError::io(&self.path))?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// After a checkpoint finalized every segment: a new journal, and the old one gone.
    pub(crate) fn rotate(&mut self) -> Result<()> {
        let (path, file) = open(&self.dir, self.index + 1)?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.index += 1;
        std::fs::remove_file(&old).map_err(ReplayError::io(&old))
    }

    /// The recording is complete: no journal is left.
    pub(crate) fn remove(self) -> Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path).map_err(ReplayError::io(&self.path))
    }
}

fn open(dir: &Path, index: u32) -> Result<(PathBuf, BufWriter<File>)> {
    let path = dir.join(format!("{JOURNAL_PREFIX}{index:06}{JOURNAL_SUFFIX}"));
    let file = File::create(&path).map_err(ReplayError::io(&path))?;
    let mut file = BufWriter::with_capacity(256 * 1024, file);
    file.write_all(MAGIC).and_then(|()| file.flush()).map_err(ReplayError::io(&path))?;
    Ok((path, file))
}

/// Events read back from journals, beyond what finalized segments hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    /// Connection events, in written order.
    pub conns: Vec<ConnEvent>,
    /// Object events.
    pub objects: Vec<ObjectEvent>,
    /// DNS answers.
    pub dns: Vec<DnsAnswer>,
    /// Pod cgroups.
    pub cgroups: Vec<PodCgroup>,
    /// Records read that a finalized segment already held (skipped).
    pub already_finalized: u64,
    /// Torn tails dropped: (journal, bytes).
    pub torn: Vec<(PathBuf, u64)>,
}

impl Recovered {
    /// Events recovered.
    pub fn events(&self) -> usize {
        self.conns.len() + self.objects.len() + self.dns.len() + self.cgroups.len()
    }
}

/// Reads `journals` (in order), keeping each stream's events past `finalized` (the last
/// sequence number of that stream's finalized segments).
pub fn recover(journals: &[PathBuf], finalized: impl Fn(Stream) -> u64) -> Result<Recovered> {
    let mut recovered = Recovered::default();
    for path in journals {
        let bytes = std::fs::read(path).map_err(ReplayError::io(path))?;
        let mut at = MAGIC.len().min(bytes.len());
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            recovered.torn.push((path.clone(), bytes.len() as u64));
            continue;
        }
        while at < bytes.len() {
            let Some(entry) = record(&bytes[at..]) else {
                recovered.torn.push((path.clone(), (bytes.len() - at) as u64));
                break;
            };
            let (len, (seq, entry)) = entry;
            at += len;
            let stream = match &entry {
                Entry::Conn(_) => Stream::Conn,
                Entry::Object(_) => Stream::Objects,
                Entry::Dns(_) => Stream::Dns,
                Entry::Cgroup(_) => Stream::Cgroups,
            };
            if seq <= finalized(stream) {
                recovered.already_finalized += 1;
                continue;
            }
            match entry {
                Entry::Conn(e) => recovered.conns.push(e),
                Entry::Object(e) => recovered.objects.push(e),
                Entry::Dns(e) => recovered.dns.push(e),
                Entry::Cgroup(e) => recovered.cgroups.push(e),
            }
        }
    }
    Ok(recovered)
}

/// One whole record at the start of `bytes`: its length in bytes and its content.
fn record(bytes: &[u8]) -> Option<(usize, (u64, Entry))> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(8..8 + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let content = postcard::from_bytes(payload).ok()?;
    Some((8 + len as usize, content))
}

/// Whether a file name is a journal's; its index.
pub(crate) fn journal_index(name: &str) -> Option<u64> {
    let index = name.strip_prefix(JOURNAL_PREFIX)?.strip_suffix(JOURNAL_SUFFIX)?;
    (!index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())).then(|| index.parse().ok()).flatten()
}
