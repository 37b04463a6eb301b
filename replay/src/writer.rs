//! Writes recordings: time-ordered events into Parquet segments that are finalized as
//! they are written, so a crash loses at most the open segment.
//!
//! A segment is written as `NAME.parquet.partial` and renamed to `NAME.parquet` only
//! after its footer is on disk (and synced). Readers skip `.partial` files with a
//! warning, which is exactly "everything up to the open segment"; a live recording's
//! journal ([`crate::journal`]) holds the open segment's events meanwhile.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::dict_builder::{TypedDict, MAX_ROWS};
use crate::error::{ReplayError, Result};
use crate::event::{ConnEvent, DnsAnswer, Event, ObjectEvent, PodCgroup, TimeNs};
use crate::journal::{JournalWriter, Journaled, LAST_SEQ_KEY};
use crate::meta::{Counters, RecordingMeta, SCHEMA_VERSION};
use crate::schema::{Stream, STREAM_KEY, VERSION_KEY};

/// Suffix of a segment still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// How a recording is cut into batches and segments.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rows buffered in memory before they are handed to Parquet.
    pub batch_rows: usize,
    /// Rows after which a segment is finalized and a new one started.
    pub segment_rows: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Journal every event, synced this often at most (`None`: no journal, for
    /// recordings written at once, such as simulations).
    pub journal_sync: Option<std::time::Duration>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { batch_rows: 8192, segment_rows: 2_000_000, row_group_rows: 256 * 1024, journal_sync: None }
    }
}

impl WriterOptions {
    /// A live capture's: the defaults, with a journal synced every second.
    pub fn live() -> Self {
        WriterOptions { journal_sync: Some(std::time::Duration::from_secs(1)), ..WriterOptions::default() }
    }
}

/// Writes one recording directory.
///
/// Events of each stream must be written in non-decreasing time order; the streams
/// are independent.
pub struct RecordingWriter {
    dir: PathBuf,
    meta: RecordingMeta,
    conn: SegmentWriter<ConnRows>,
    objects: SegmentWriter<ObjectRows>,
    dns: SegmentWriter<DnsRows>,
    cgroups: SegmentWriter<CgroupRows>,
    journal: Option<JournalWriter>,
}

impl RecordingWriter {
    /// Creates `dir` (which must not hold a recording yet) and writes its metadata,
    /// marked incomplete until [`RecordingWriter::finish`].
    pub fn create(dir: &Path, meta: RecordingMeta, options: WriterOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(ReplayError::io(dir))?;
        let existing = std::fs::read_dir(dir).map_err(ReplayError::io(dir))?.next().is_some();
        if existing {
            return Err(ReplayError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "directory is not empty; give a new directory for the recording",
                ),
            });
        }
        let meta = RecordingMeta { complete: false, schema_version: SCHEMA_VERSION, ..meta };
        meta.write(dir)?;
        let journal = options.journal_sync.map(|every| JournalWriter::create(dir, every)).transpose()?;
        Ok(RecordingWriter {
            journal,
            dir: dir.to_owned(),
            meta,
            conn: SegmentWriter::new(dir, Stream::Conn, options.clone(), ConnRows::default()),
            objects: SegmentWriter::new(dir, Stream::Objects, options.clone(), ObjectRows::default()),
            dns: SegmentWriter::new(dir, Stream::Dns, options.clone(), DnsRows::default()),
            cgroups: SegmentWriter::new(dir, Stream::Cgroups, options, CgroupRows::default()),
        })
    }

    /// The recording directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a connection event.
    pub fn write_conn(&mut self, event: &ConnEvent) -> Result<()> {
        self.note_time(event.time_ns);
        self.meta.counters.conn_events += 1;
        self.conn.rows.push(event);
        let seq = self.conn.pushed();
        self.journal(seq, Journaled::Conn(event))?;
        self.conn.after_push()
    }

    /// Appends a Kubernetes object event.
    pub fn write_object(&mut self, event: &ObjectEvent) -> Result<()> {
        self.note_time(event.time_ns);
        self.meta.counters.object_events += 1;
        self.objects.rows.push(event);
        let seq = self.objects.pushed();
        self.journal(seq, Journaled::Object(event))?;
        self.objects.after_push()
    }

    /// Appends an event to its stream.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::Conn(c) => self.write_conn(c),
            Event::Object(o) => self.write_object(o),
            Event::Dns(d) => self.write_dns(d),
            Event::Cgroup(c) => self.write_cgroup(c),
        }
    }

    /// Appends a pod cgroup.
    pub fn write_cgroup(&mut self, cgroup: &PodCgroup) -> Result<()> {
        self.note_time(cgroup.time_ns);
        self.meta.counters.pod_cgroups += 1;
        self.cgroups.rows.push(cgroup);
        let seq = self.cgroups.pushed();
        self.journal(seq, Journaled::Cgroup(cgroup))?;
        self.cgroups.after_push()
    }

    /// Appends a DNS answer.
    pub fn write_dns(&mut self, answer: &DnsAnswer) -> Result<()> {
        self.note_time(answer.time_ns);
        self.meta.counters.dns_answers += 1;
        self.dns.rows.push(answer);
        let seq = self.dns.pushed();
        self.journal(seq, Journaled::Dns(answer))?;
        self.dns.after_push()
    }

    /// Finalizes the open segments so everything written so far survives a crash.
    /// Live writers call this on a timer.
    pub fn checkpoint(&mut self, counters: &LossCounters) -> Result<()> {
        self.conn.finish_segment()?;
        self.objects.finish_segment()?;
        self.dns.finish_segment()?;
        self.cgroups.finish_segment()?;
        self.apply_losses(counters);
        self.meta.write(&self.dir)?;
        // Every event journaled so far is in a finalized segment now.
        match self.journal.as_mut() {
            Some(journal) => journal.rotate(),
            None => Ok(()),
        }
    }

    /// Hands the journaled events to the kernel, so a killed process loses none of
    /// them, and syncs them to the disk at most every `journal_sync`. Live writers call
    /// this after each batch of events and on a timer.
    pub fn commit(&mut self) -> Result<()> {
        match self.journal.as_mut() {
            Some(journal) => journal.commit(),
            None => Ok(()),
        }
    }

    fn journal(&mut self, seq: u64, event: Journaled<'_>) -> Result<()> {
        match self.journal.as_mut() {
            Some(journal) => journal.append(seq, event),
            None => Ok(()),
        }
    }

    /// Notes a live session's clock tick (see [`RecordingMeta::last_tick_ns`]); stored
    /// at the next checkpoint or at the finish.
    pub fn note_tick(&mut self, now: TimeNs) {
        self.meta.last_tick_ns = Some(self.meta.last_tick_ns.map_or(now, |t| t.max(now)));
    }

    /// Finalizes all segments and marks the recording complete.
    pub fn finish(mut self, counters: &LossCounters) -> Result<RecordingMeta> {
        self.conn.finish_segment()?;
        self.objects.finish_segment()?;
        self.dns.finish_segment()?;
        self.cgroups.finish_segment()?;
        self.apply_losses(counters);
        self.meta.complete = true;
        self.meta.write(&self.dir)?;
        if let Some(journal) = self.journal.take() {
            journal.remove()?;
        }
        Ok(self.meta)
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.meta.counters
    }

    fn apply_losses(&mut self, losses: &LossCounters) {
        self.meta.counters.dropped = losses.dropped;
        self.meta.counters.evicted = losses.evicted;
        self.meta.counters.unparsed = losses.unparsed;
    }

    fn note_time(&mut self, t: TimeNs) {
        self.meta.start_ns = Some(self.meta.start_ns.map_or(t, |s| s.min(t)));
        self.meta.end_ns = Some(self.meta.end_ns.map_or(t, |e| e.max(t)));
    }
}

/// Losses the producer of a recording counted, stored in its metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounters {
    /// Kernel events lost.
    pub dropped: u64,
    /// Connections evicted from bounded tables.
    pub evicted: u64,
    /// Inputs that could not be parsed.
    pub unparsed: u64,
}

/// Rows of one stream being accumulated into an Arrow batch.
trait Rows {
    fn len(&self) -> usize;
    fn finish(&mut self) -> std::result::Result<Vec<ArrayRef>, ArrowError>;
}

struct SegmentWriter<R: Rows> {
    dir: PathBuf,
    stream: Stream,
    options: WriterOptions,
    rows: R,
    open: Option<OpenSegment>,
    next_index: u32,
    /// Sequence number of the last event pushed (the first is 1).
    seq: u64,
}

struct OpenSegment {
    partial: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: usize,
}

impl<R: Rows> SegmentWriter<R> {
    fn new(dir: &Path, stream: Stream, options: WriterOptions, rows: R) -> Self {
        SegmentWriter { dir: dir.to_owned(), stream, options, rows, open: None, next_index: 1, seq: 0 }
    }

    /// Counts an event pushed; its sequence number.
    fn pushed(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn after_push(&mut self) -> Result<()> {
        if self.rows.len() >= self.options.batch_rows.min(MAX_ROWS) {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        let n = self.rows.len();
        if n == 0 {
            return Ok(());
        }
        let segment = match self.open.take() {
            Some(open) => open,
            None => self.open_segment()?,
        };
        let segment = self.open.insert(segment);
        let columns = self.rows.finish().map_err(ReplayError::arrow(&segment.partial))?;
        let batch =
            RecordBatch::try_new(self.stream.schema(), columns).map_err(ReplayError::arrow(&segment.partial))?;
        segment.writer.write(&batch).map_err(ReplayError::parquet(&segment.partial))?;
        segment.rows += n;
        if segment.rows >= self.options.segment_rows {
            self.close_segment()?;
        }
        Ok(())
    }

    fn finish_segment(&mut self) -> Result<()> {
        self.flush_batch()?;
        self.close_segment()
    }

    fn open_segment(&mut self) -> Result<OpenSegment> {
        let name = format!("{}-{:06}.parquet", self.stream.prefix(), self.next_index);
        self.next_index += 1;
        let path = self.dir.join(&name);
        let partial = self.dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let file = File::create(&partial).map_err(ReplayError::io(&partial))?;
        let writer = ArrowWriter::try_new(file, self.stream.schema(), Some(self.properties()))
            .map_err(ReplayError::parquet(&partial))?;
        Ok(OpenSegment { partial, path, writer, rows: 0 })
    }

    fn close_segment(&mut self) -> Result<()> {
        let Some(mut segment) = self.open.take() else {
            return Ok(());
        };
        // Every event pushed is in the segment by now (it closes after a flush).
        segment.writer.append_key_value_metadata(KeyValue::new(LAST_SEQ_KEY.to_owned(), self.seq.to_string()));
        let file = segment.writer.into_inner().map_err(ReplayError::parquet(&segment.partial))?;
        file.sync_all().map_err(ReplayError::io(&segment.partial))?;
        std::fs::rename(&segment.partial, &segment.path).map_err(ReplayError::io(&segment.path))?;
        Ok(())
    }

    fn properties(&self) -> WriterProperties {
        // Times are nearly sorted: delta encoding turns them into a few bits each,
        // where a dictionary would only bloat.
        let time = ColumnPath::from("time");
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_dictionary_enabled(true)
            .set_max_row_group_row_count(Some(self.options.row_group_rows))
            .set_column_dictionary_enabled(time.clone(), false)
            .set_column_encoding(time, Encoding::DELTA_BINARY_PACKED)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string()),
                KeyValue::new(STREAM_KEY.to_owned(), self.stream.prefix().to_owned()),
            ]));
        if self.stream == Stream::Conn {
            for column in ["socket_id", "bytes_sent", "bytes_received"] {
                builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
            }
            // Socket cookies come from a kernel counter: rising, so deltas are small.
            builder = builder.set_column_encoding(ColumnPath::from("socket_id"), Encoding::DELTA_BINARY_PACKED);
        }
        builder.build()
    }
}

impl<R: Rows> Drop for SegmentWriter<R> {
    fn drop(&mut self) {
        // An unfinished writer leaves its open segment as `.partial`, as a crash would:
        // readers skip it with a warning. Nothing to do here but not to pretend.
        if self.open.is_some() {
            tracing::debug!(stream = self.stream.prefix(), "recording writer dropped with an open segment");
        }
    }
}

#[derive(Default)]
struct ConnRows {
    time: TimestampNanosecondBuilder,
    node: TypedDict<Arc<str>>,
    kind: StringDictionaryBuilder<Int8Type>,
    side: StringDictionaryBuilder<Int8Type>,
    src_ip: TypedDict<IpAddr>,
    src_port: UInt16Builder,
    dst_ip: TypedDict<IpAddr>,
    dst_port: UInt16Builder,
    pid: UInt32Builder,
    comm: TypedDict<Arc<str>>,
    cgroup_id: UInt64Builder,
    netns: UInt32Builder,
    socket_id: UInt64Builder,
    bytes_sent: UInt64Builder,
    bytes_received: UInt64Builder,
    retransmits: UInt32Builder,
    error: UInt16Builder,
}

impl ConnRows {
    fn push(&mut self, e: &ConnEvent) {
        self.time.append_value(e.time_ns);
        self.node.append(Arc::clone(&e.node), Arc::clone);
        self.kind.append_value(e.kind.as_str());
        self.side.append_value(e.side.as_str());
        self.src_ip.append(e.src_ip, IpAddr::to_string);
        self.src_port.append_value(e.src_port);
        self.dst_ip.append(e.dst_ip, IpAddr::to_string);
        self.dst_port.append_value(e.dst_port);
        self.pid.append_value(e.pid);
        self.comm.append(Arc::clone(&e.comm), Arc::clone);
        self.cgroup_id.append_value(e.cgroup_id);
        self.netns.append_value(e.netns);
        self.socket_id.append_value(e.socket_id);
        self.bytes_sent.append_value(e.bytes_sent);
        self.bytes_received.append_value(e.bytes_received);
        self.retransmits.append_value(e.retransmits);
        self.error.append_value(e.error);
    }
}

impl Rows for ConnRows {
    fn len(&self) -> usize {
        self.time.len()
    }

    fn finish(&mut self) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            self.node.finish()?,
            Arc::new(self.kind.finish()),
            Arc::new(self.side.finish()),
            self.src_ip.finish()?,
            Arc::new(self.src_port.finish()),
            self.dst_ip.finish()?,
            Arc::new(self.dst_port.finish()),
            Arc::new(self.pid.finish()),
            self.comm.finish()?,
            Arc::new(self.cgroup_id.finish()),
            Arc::new(self.netns.finish()),
            Arc::new(self.socket_id.finish()),
            Arc::new(self.bytes_sent.finish()),
            Arc::new(self.bytes_received.finish()),
            Arc::new(self.retransmits.finish()),
            Arc::new(self.error.finish()),
        ])
    }
}

#[derive(Default)]
struct ObjectRows {
    time: TimestampNanosecondBuilder,
    kind: StringDictionaryBuilder<Int8Type>,
    action: StringDictionaryBuilder<Int8Type>,
    uid: StringBuilder,
    namespace: StringDictionaryBuilder<Int32Type>,
    name: StringBuilder,
    resource_version: StringBuilder,
    object: StringBuilder,
}

impl ObjectRows {
    fn push(&mut self, e: &ObjectEvent) {
        self.time.append_value(e.time_ns);
        self.kind.append_value(e.kind.as_str());
        self.action.append_value(e.action.as_str());
        self.uid.append_value(&e.uid);
        self.namespace.append_value(&e.namespace);
        self.name.append_value(&e.name);
        self.resource_version.append_value(&e.resource_version);
        self.object.append_value(&e.object);
    }
}

impl Rows for ObjectRows {
    fn len(&self) -> usize {
        self.time.len()
    }

    fn finish(&mut self) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.kind.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.resource_version.finish()),
            Arc::new(self.object.finish()),
        ])
    }
}

#[derive(Default)]
struct DnsRows {
    time: TimestampNanosecondBuilder,
    node: TypedDict<Arc<str>>,
    client_ip: TypedDict<IpAddr>,
    client_port: UInt16Builder,
    server_ip: TypedDict<IpAddr>,
    socket_id: UInt64Builder,
    query: TypedDict<Arc<str>>,
    cnames: TypedDict<Arc<str>>,
    address: TypedDict<IpAddr>,
    ttl: UInt32Builder,
}

impl DnsRows {
    fn push(&mut self, a: &DnsAnswer) {
        self.time.append_value(a.time_ns);
        self.node.append(Arc::clone(&a.node), Arc::clone);
        self.client_ip.append(a.client_ip, IpAddr::to_string);
        self.client_port.append_value(a.client_port);
        self.server_ip.append(a.server_ip, IpAddr::to_string);
        self.socket_id.append_value(a.socket_id);
        self.query.append(Arc::clone(&a.query), Arc::clone);
        self.cnames.append(Arc::clone(&a.cnames), Arc::clone);
        self.address.append(a.address, IpAddr::to_string);
        self.ttl.append_value(a.ttl_s);
    }
}

impl Rows for DnsRows {
    fn len(&self) -> usize {
        self.time.len()
    }

    fn finish(&mut self) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            self.node.finish()?,
            self.client_ip.finish()?,
            Arc::new(self.client_port.finish()),
            self.server_ip.finish()?,
            Arc::new(self.socket_id.finish()),
            self.query.finish()?,
            self.cnames.finish()?,
            self.address.finish()?,
            Arc::new(self.ttl.finish()),
        ])
    }
}

#[derive(Default)]
struct CgroupRows {
    time: TimestampNanosecondBuilder,
    node: TypedDict<Arc<str>>,
    cgroup_id: UInt64Builder,
    path: StringBuilder,
}

impl CgroupRows {
    fn push(&mut self, c: &PodCgroup) {
        self.time.append_value(c.time_ns);
        self.node.append(Arc::clone(&c.node), Arc::clone);
        self.cgroup_id.append_value(c.cgroup_id);
        self.path.append_value(&c.path);
    }
}

impl Rows for CgroupRows {
    fn len(&self) -> usize {
        self.time.len()
    }

    fn finish(&mut self) -> std::result::Result<Vec<ArrayRef>, ArrowError> {
        Ok(vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            self.node.finish()?,
            Arc::new(self.cgroup_id.finish()),
            Arc::new(self.path.finish()),
        ])
    }
}
