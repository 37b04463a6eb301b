//! Reads recordings back as streams of events, one batch in memory per stream, so
//! memory does not grow with the number of events.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::decode::{CgroupDecoder, ConnDecoder, Decoder, DnsDecoder, FactsDecoder, ObjectDecoder};
use crate::error::{ReplayError, Result};
use crate::event::{ConnEvent, ConnFacts, ConnRecord, DnsAnswer, ObjectEvent, PodCgroup};
use crate::journal::{journal_index, recover, Recovered, LAST_SEQ_KEY};
use crate::meta::{check_version, RecordingMeta, META_FILE};
use crate::schema::{Stream, VERSION_KEY};
use crate::writer::PARTIAL_SUFFIX;

/// Rows decoded per batch when reading.
const READ_BATCH_ROWS: usize = 8192;
/// Object rows decoded per batch: objects are about a kilobyte of JSON each, so a
/// connection-sized batch would hold some 10 MB at once (and leave the allocator
/// holding more).
const READ_OBJECT_BATCH_ROWS: usize = 512;

/// An opened recording directory: its metadata and its finalized segments.
#[derive(Clone, Debug)]
pub struct Recording {
    dir: PathBuf,
    meta: RecordingMeta,
    conn_segments: Vec<PathBuf>,
    object_segments: Vec<PathBuf>,
    dns_segments: Vec<PathBuf>,
    cgroup_segments: Vec<PathBuf>,
    /// What the journals of an unfinished live recording hold beyond its segments.
    recovered: std::sync::Arc<Recovered>,
    warnings: Vec<String>,
}

impl Recording {
    /// Opens a recording directory. Unfinished segments (a crash or a capture still
    /// running) are skipped and reported in [`Recording::warnings`].
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(ReplayError::io(dir))?;
        let mut conn_segments = Vec::new();
        let mut object_segments = Vec::new();
        let mut dns_segments = Vec::new();
        let mut cgroup_segments = Vec::new();
        let mut partial = Vec::new();
        let mut journals = Vec::new();
        let mut has_meta = false;
        for entry in entries {
            let entry = entry.map_err(ReplayError::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == META_FILE {
                has_meta = true;
            } else if name.ends_with(PARTIAL_SUFFIX) {
                partial.push(name);
            } else if let Some(index) = journal_index(&name) {
                journals.push((index, entry.path()));
            } else if let Some(stream) = segment_stream(&name) {
                match stream {
                    Stream::Conn => conn_segments.push(entry.path()),
                    Stream::Objects => object_segments.push(entry.path()),
                    Stream::Dns => dns_segments.push(entry.path()),
                    Stream::Cgroups => cgroup_segments.push(entry.path()),
                }
            }
        }
        if !has_meta {
            return Err(ReplayError::NotARecording { path: dir.to_owned() });
        }
        let meta = RecordingMeta::read(dir)?;
        // By number, not by name: `conn-1000000` follows `conn-999999`.
        conn_segments.sort_by_key(|p| segment_index(p));
        object_segments.sort_by_key(|p| segment_index(p));
        dns_segments.sort_by_key(|p| segment_index(p));
        cgroup_segments.sort_by_key(|p| segment_index(p));
        partial.sort();
        journals.sort();
        let journals: Vec<PathBuf> = journals.into_iter().map(|(_, path)| path).collect();
        let recovered = if journals.is_empty() {
            Recovered::default()
        } else {
            let last = |segments: &[PathBuf]| segments.last().map(|p| last_seq(p)).transpose();
            let finalized =
                [last(&conn_segments)?, last(&object_segments)?, last(&dns_segments)?, last(&cgroup_segments)?];
            recover(&journals, |stream| {
                let index = match stream {
                    Stream::Conn => 0,
                    Stream::Objects => 1,
                    Stream::Dns => 2,
                    Stream::Cgroups => 3,
                };
                finalized[index].unwrap_or(0)
            })?
        };
        let mut warnings = Vec::new();
        if !meta.complete {
            warnings.push(format!(
                "{}: recording was not finished (capture crashed or is still running); reading its finalized segments",
                dir.display()
            ));
        }
        if journals.is_empty() {
            for name in partial {
                warnings.push(format!("{}: skipping unfinished segment {name}", dir.display()));
            }
        } else {
            warnings.push(format!(
                "{}: recovered {} events from the journal past the finalized segments",
                dir.display(),
                recovered.events()
            ));
        }
        for (path, bytes) in &recovered.torn {
            warnings.push(format!("{}: dropped a torn journal tail of {bytes} bytes", path.display()));
        }
        Ok(Recording {
            dir: dir.to_owned(),
            meta,
            conn_segments,
            object_segments,
            dns_segments,
            cgroup_segments,
            recovered: std::sync::Arc::new(recovered),
            warnings,
        })
    }

    /// The recording directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its metadata.
    pub fn meta(&self) -> &RecordingMeta {
        &self.meta
    }

    /// Things a user should know about this recording (unfinished segments...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Finalized segment files: connection, then object, DNS and pod cgroup segments.
    pub fn segments(&self) -> impl Iterator<Item = &Path> {
        self.conn_segments
            .iter()
            .chain(&self.object_segments)
            .chain(&self.dns_segments)
            .chain(&self.cgroup_segments)
            .map(PathBuf::as_path)
    }

    /// Connection events in recorded order.
    pub fn conn_events(&self) -> ConnEvents {
        self.stream::<ConnDecoder>(Stream::Conn, &self.conn_segments, None, self.recovered.conns.clone())
    }

    /// Connection events in recorded order, reduced to what the engine folds: only
    /// those columns are read, and each dictionary (addresses, kinds) is parsed once
    /// per row group instead of once per batch.
    pub fn conn_facts(&self) -> StreamEvents<ConnFacts> {
        let tail = self.recovered.conns.iter().map(ConnRecord::facts).collect();
        self.stream::<FactsDecoder>(Stream::Conn, &self.conn_segments, Some(&FACT_COLUMNS), tail)
    }

    /// Kubernetes object events in recorded order.
    pub fn object_events(&self) -> ObjectEvents {
        self.stream::<ObjectDecoder>(Stream::Objects, &self.object_segments, None, self.recovered.objects.clone())
    }

    /// DNS answers in recorded order (none in recordings older than schema version 3).
    pub fn dns_answers(&self) -> DnsAnswers {
        self.stream::<DnsDecoder>(Stream::Dns, &self.dns_segments, None, self.recovered.dns.clone())
    }

    /// Pod cgroups in recorded order (none in recordings older than schema version 4).
    pub fn pod_cgroups(&self) -> PodCgroups {
        self.stream::<CgroupDecoder>(Stream::Cgroups, &self.cgroup_segments, None, self.recovered.cgroups.clone())
    }

    fn stream<D: Decoder>(
        &self,
        stream: Stream,
        segments: &[PathBuf],
        columns: Option<&'static [&'static str]>,
        tail: Vec<D::Event>,
    ) -> StreamEvents<D::Event> {
        StreamEvents {
            segments: SegmentBatches::new(stream, segments.to_vec(), columns),
            decode: boxed::<D>(),
            fresh: boxed::<D>,
            buffer: Vec::new().into_iter(),
            tail: Some(tail),
        }
    }

    /// Checks every segment's footer and schema without decoding rows.
    pub fn validate(&self) -> Result<()> {
        let streams = [
            (Stream::Conn, &self.conn_segments),
            (Stream::Objects, &self.object_segments),
            (Stream::Dns, &self.dns_segments),
            (Stream::Cgroups, &self.cgroup_segments),
        ];
        for (stream, paths) in streams {
            for path in paths {
                open_segment(stream, path, None, None)?;
            }
        }
        Ok(())
    }
}

/// The last sequence number a finalized segment holds (0 for segments written without
/// a journal).
fn last_seq(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(ReplayError::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(ReplayError::parquet(path))?;
    let value = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == LAST_SEQ_KEY))
        .and_then(|kv| kv.value.as_deref())
        .and_then(|v| v.parse().ok());
    Ok(value.unwrap_or(0))
}

fn segment_index(path: &Path) -> u64 {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".parquet").and_then(|stem| stem.rsplit_once('-')).and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

fn segment_stream(name: &str) -> Option<Stream> {
    let stem = name.strip_suffix(".parquet")?;
    let (prefix, index) = stem.rsplit_once('-')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Stream::ALL.into_iter().find(|s| s.prefix() == prefix)
}

/// The columns [`ConnFacts`] are decoded from.
const FACT_COLUMNS: [&str; 13] = [
    "time",
    "kind",
    "side",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "bytes_sent",
    "bytes_received",
    "retransmits",
    "error",
    "comm",
    "cgroup_id",
];

/// Opens a segment for reading after checking its schema: all of it, or only
/// `row_group` (for decoders that share a segment's row groups out).
pub(crate) fn open_segment(
    stream: Stream,
    path: &Path,
    columns: Option<&[&str]>,
    row_group: Option<usize>,
) -> Result<ParquetRecordBatchReader> {
    let file = File::open(path).map_err(ReplayError::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(ReplayError::parquet(path))?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == VERSION_KEY))
        .and_then(|kv| kv.value.clone());
    let parsed = version.as_deref().and_then(|v| v.parse::<u64>().ok());
    check_version(path, parsed, || version.clone().unwrap_or_else(|| "none".to_owned()))?;
    let expected = stream.schema();
    let found = builder.schema();
    for field in expected.fields() {
        match found.field_with_name(field.name()) {
            Ok(f) if f.data_type() == field.data_type() => {}
            Ok(f) => {
                return Err(ReplayError::Schema {
                    path: path.to_owned(),
                    column: field.name().clone(),
                    reason: format!("type {} where {} was expected", f.data_type(), field.data_type()),
                })
            }
            Err(_) => {
                return Err(ReplayError::Schema {
                    path: path.to_owned(),
                    column: field.name().clone(),
                    reason: "missing".to_owned(),
                })
            }
        }
    }
    let builder = match columns {
        Some(names) => {
            let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
            builder.with_projection(mask)
        }
        None => builder,
    };
    let builder = match row_group {
        Some(index) => builder.with_row_groups(vec![index]),
        None => builder,
    };
    let rows = match stream {
        Stream::Conn | Stream::Dns | Stream::Cgroups => READ_BATCH_ROWS,
        Stream::Objects => READ_OBJECT_BATCH_ROWS,
    };
    builder.with_batch_size(rows).build().map_err(ReplayError::parquet(path))
}

/// Record batches of a stream's segments, one segment open at a time.
pub(crate) struct SegmentBatches {
    pub(crate) stream: Stream,
    pub(crate) columns: Option<&'static [&'static str]>,
    pub(crate) pending: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, ParquetRecordBatchReader)>,
}

impl SegmentBatches {
    fn new(stream: Stream, paths: Vec<PathBuf>, columns: Option<&'static [&'static str]>) -> Self {
        SegmentBatches { stream, columns, pending: paths.into_iter(), current: None }
    }

    fn next_batch(&mut self) -> Option<Result<(PathBuf, RecordBatch)>> {
        loop {
            if let Some((path, reader)) = &mut self.current {
                match reader.next() {
                    Some(Ok(batch)) => return Some(Ok((path.clone(), batch))),
                    Some(Err(e)) => {
                        let path = path.clone();
                        self.current = None;
                        self.pending = Vec::new().into_iter();
                        return Some(Err(arrow_error(&path, e)));
                    }
                    None => self.current = None,
                }
            }
            let path = self.pending.next()?;
            match open_segment(self.stream, &path, self.columns, None) {
                Ok(reader) => self.current = Some((path, reader)),
                Err(e) => {
                    self.pending = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

pub(crate) fn arrow_error(path: &Path, e: ArrowError) -> ReplayError {
    // The Parquet reader reports decoding problems (a truncated page, bad
    // compression) through ArrowError::ParquetError / ExternalError.
    ReplayError::Arrow { path: path.to_owned(), source: e }
}

pub(crate) type Decode<T> = Box<dyn FnMut(&Path, &RecordBatch) -> Result<Vec<T>> + Send>;

fn boxed<D: Decoder>() -> Decode<D::Event> {
    let mut decoder = D::default();
    Box::new(move |path, batch| decoder.decode(path, batch))
}

/// Events of one stream, decoded a batch at a time.
pub struct StreamEvents<T> {
    pub(crate) segments: SegmentBatches,
    decode: Decode<T>,
    /// A new decoder, for decoding row groups on other threads.
    pub(crate) fresh: fn() -> Decode<T>,
    buffer: std::vec::IntoIter<T>,
    /// Recovered from the journal: after the segments.
    pub(crate) tail: Option<Vec<T>>,
}

impl<T> StreamEvents<T> {
    /// The next decoded batch, whole.
    pub fn next_batch(&mut self) -> Option<Result<Vec<T>>> {
        let (path, batch) = match self.segments.next_batch() {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Some(Err(e)),
            None => return self.tail.take().filter(|tail| !tail.is_empty()).map(Ok),
        };
        Some((self.decode)(&path, &batch))
    }
}

/// Iterator over a recording's connection events.
pub type ConnEvents = StreamEvents<ConnEvent>;
/// Iterator over a recording's Kubernetes object events.
pub type ObjectEvents = StreamEvents<ObjectEvent>;
/// Iterator over a recording's DNS answers.
pub type DnsAnswers = StreamEvents<DnsAnswer>;
/// Iterator over a recording's pod cgroups.
pub type PodCgroups = StreamEvents<PodCgroup>;

impl<T> Iterator for StreamEvents<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.buffer.next() {
                return Some(Ok(event));
            }
            match self.next_batch()? {
                Ok(events) => self.buffer = events.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
