//! Reads recordings back as streams of events, one batch in memory per stream, so
//! memory does not grow with the number of events.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, DictionaryArray, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use crate::error::{ReplayError, Result};
use crate::event::{ConnEvent, ConnFacts, ConnKind, ObjectAction, ObjectEvent, ObjectKind, Side};
use crate::meta::{RecordingMeta, META_FILE, SCHEMA_VERSION};
use crate::schema::{Stream, VERSION_KEY};
use crate::writer::PARTIAL_SUFFIX;

/// Rows decoded per batch when reading.
const READ_BATCH_ROWS: usize = 8192;

/// An opened recording directory: its metadata and its finalized segments.
#[derive(Clone, Debug)]
pub struct Recording {
    dir: PathBuf,
    meta: RecordingMeta,
    conn_segments: Vec<PathBuf>,
    object_segments: Vec<PathBuf>,
    warnings: Vec<String>,
}

impl Recording {
    /// Opens a recording directory. Unfinished segments (a crash or a capture still
    /// running) are skipped and reported in [`Recording::warnings`].
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(ReplayError::io(dir))?;
        let mut conn_segments = Vec::new();
        let mut object_segments = Vec::new();
        let mut partial = Vec::new();
        let mut has_meta = false;
        for entry in entries {
            let entry = entry.map_err(ReplayError::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == META_FILE {
                has_meta = true;
            } else if name.ends_with(PARTIAL_SUFFIX) {
                partial.push(name);
            } else if let Some(stream) = segment_stream(&name) {
                match stream {
                    Stream::Conn => conn_segments.push(entry.path()),
                    Stream::Objects => object_segments.push(entry.path()),
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
        partial.sort();
        let mut warnings = Vec::new();
        if !meta.complete {
            warnings.push(format!(
                "{}: recording was not finished (capture crashed or is still running); reading its finalized segments",
                dir.display()
            ));
        }
        for name in partial {
            warnings.push(format!("{}: skipping unfinished segment {name}", dir.display()));
        }
        Ok(Recording { dir: dir.to_owned(), meta, conn_segments, object_segments, warnings })
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

    /// Finalized segment files, connection segments first.
    pub fn segments(&self) -> impl Iterator<Item = &Path> {
        self.conn_segments.iter().chain(&self.object_segments).map(PathBuf::as_path)
    }

    /// Connection events in recorded order.
    pub fn conn_events(&self) -> ConnEvents {
        StreamEvents {
            segments: SegmentBatches::new(Stream::Conn, self.conn_segments.clone(), None),
            decode: Box::new(decode_conn_batch),
            buffer: Vec::new().into_iter(),
        }
    }

    /// Connection events in recorded order, reduced to what the engine folds: only
    /// those columns are read, and each dictionary (addresses, kinds) is parsed once
    /// per row group instead of once per batch.
    pub fn conn_facts(&self) -> StreamEvents<ConnFacts> {
        let mut decoder = FactsDecoder::default();
        StreamEvents {
            segments: SegmentBatches::new(Stream::Conn, self.conn_segments.clone(), Some(&FACT_COLUMNS)),
            decode: Box::new(move |path, batch| decoder.decode(path, batch)),
            buffer: Vec::new().into_iter(),
        }
    }

    /// Kubernetes object events in recorded order.
    pub fn object_events(&self) -> ObjectEvents {
        StreamEvents {
            segments: SegmentBatches::new(Stream::Objects, self.object_segments.clone(), None),
            decode: Box::new(decode_object_batch),
            buffer: Vec::new().into_iter(),
        }
    }

    /// Checks every segment's footer and schema without decoding rows.
    pub fn validate(&self) -> Result<()> {
        for (stream, paths) in [(Stream::Conn, &self.conn_segments), (Stream::Objects, &self.object_segments)] {
            for path in paths {
                open_segment(stream, path, None)?;
            }
        }
        Ok(())
    }
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
    [Stream::Conn, Stream::Objects].into_iter().find(|s| s.prefix() == prefix)
}

/// The columns [`ConnFacts`] are decoded from.
const FACT_COLUMNS: [&str; 9] =
    ["time", "kind", "side", "src_ip", "src_port", "dst_ip", "dst_port", "bytes_sent", "bytes_received"];

fn open_segment(stream: Stream, path: &Path, columns: Option<&[&str]>) -> Result<ParquetRecordBatchReader> {
    let file = File::open(path).map_err(ReplayError::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(ReplayError::parquet(path))?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == VERSION_KEY))
        .and_then(|kv| kv.value.clone());
    if version.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
        return Err(ReplayError::SchemaVersion {
            path: path.to_owned(),
            found: version.unwrap_or_else(|| "none".to_owned()),
            supported: SCHEMA_VERSION,
        });
    }
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
    builder.with_batch_size(READ_BATCH_ROWS).build().map_err(ReplayError::parquet(path))
}

/// Record batches of a stream's segments, one segment open at a time.
struct SegmentBatches {
    stream: Stream,
    columns: Option<&'static [&'static str]>,
    pending: std::vec::IntoIter<PathBuf>,
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
            match open_segment(self.stream, &path, self.columns) {
                Ok(reader) => self.current = Some((path, reader)),
                Err(e) => {
                    self.pending = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

fn arrow_error(path: &Path, e: ArrowError) -> ReplayError {
    // The Parquet reader reports decoding problems (a truncated page, bad
    // compression) through ArrowError::ParquetError / ExternalError.
    ReplayError::Arrow { path: path.to_owned(), source: e }
}

type Decode<T> = Box<dyn FnMut(&Path, &RecordBatch) -> Result<Vec<T>> + Send>;

/// Events of one stream, decoded a batch at a time.
pub struct StreamEvents<T> {
    segments: SegmentBatches,
    decode: Decode<T>,
    buffer: std::vec::IntoIter<T>,
}

impl<T> StreamEvents<T> {
    /// The next decoded batch, whole.
    pub fn next_batch(&mut self) -> Option<Result<Vec<T>>> {
        let (path, batch) = match self.segments.next_batch()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some((self.decode)(&path, &batch))
    }
}

/// Iterator over a recording's connection events.
pub type ConnEvents = StreamEvents<ConnEvent>;
/// Iterator over a recording's Kubernetes object events.
pub type ObjectEvents = StreamEvents<ObjectEvent>;

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

fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch.column_by_name(name).map(|c| c.as_ref()).ok_or_else(|| ReplayError::Schema {
        path: path.to_owned(),
        column: name.to_owned(),
        reason: "missing".to_owned(),
    })
}

fn primitive<'a, T: ArrowPrimitiveType>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>> {
    column(path, batch, name)?.as_primitive_opt::<T>().ok_or_else(|| wrong_type(path, name))
}

fn strings<'a>(path: &Path, batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    column(path, batch, name)?.as_string_opt::<i32>().ok_or_else(|| wrong_type(path, name))
}

fn wrong_type(path: &Path, name: &str) -> ReplayError {
    ReplayError::Schema { path: path.to_owned(), column: name.to_owned(), reason: "unexpected type".to_owned() }
}

/// A dictionary column decoded once per batch: values parsed, then indexed per row.
struct Dict<V> {
    keys: Vec<usize>,
    values: Vec<V>,
}

impl<V: Clone> Dict<V> {
    fn get(&self, row: usize) -> V {
        self.values[self.keys[row]].clone()
    }
}

fn dict<K, V>(
    path: &Path,
    batch: &RecordBatch,
    name: &'static str,
    parse: impl Fn(&str) -> Option<V>,
) -> Result<Dict<V>>
where
    K: arrow_array::types::ArrowDictionaryKeyType,
    K::Native: TryInto<usize>,
{
    let array = column(path, batch, name)?;
    let array: &DictionaryArray<K> = array.as_dictionary_opt::<K>().ok_or_else(|| wrong_type(path, name))?;
    let values = array.values();
    if values.data_type() != &DataType::Utf8 {
        return Err(wrong_type(path, name));
    }
    let values = values.as_string::<i32>();
    let mut parsed = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let text = values.value(i);
        match parse(text) {
            Some(v) => parsed.push(v),
            None => return Err(ReplayError::BadValue { path: path.to_owned(), column: name, value: text.to_owned() }),
        }
    }
    let mut keys = Vec::with_capacity(array.len());
    for key in array.keys().iter() {
        let key = key
            .and_then(|k| k.try_into().ok())
            .filter(|k: &usize| *k < parsed.len())
            .ok_or_else(|| ReplayError::BadValue { path: path.to_owned(), column: name, value: "null".to_owned() })?;
        keys.push(key);
    }
    Ok(Dict { keys, values: parsed })
}

fn decode_conn_batch(path: &Path, batch: &RecordBatch) -> Result<Vec<ConnEvent>> {
    let time = primitive::<TimestampNanosecondType>(path, batch, "time")?;
    let node = dict::<Int32Type, Arc<str>>(path, batch, "node", |s| Some(Arc::from(s)))?;
    let kind = dict::<Int8Type, ConnKind>(path, batch, "kind", ConnKind::parse)?;
    let side = dict::<Int8Type, Side>(path, batch, "side", Side::parse)?;
    let src_ip = dict::<Int32Type, IpAddr>(path, batch, "src_ip", |s| s.parse().ok())?;
    let dst_ip = dict::<Int32Type, IpAddr>(path, batch, "dst_ip", |s| s.parse().ok())?;
    let comm = dict::<Int32Type, Arc<str>>(path, batch, "comm", |s| Some(Arc::from(s)))?;
    let src_port = primitive::<UInt16Type>(path, batch, "src_port")?;
    let dst_port = primitive::<UInt16Type>(path, batch, "dst_port")?;
    let pid = primitive::<UInt32Type>(path, batch, "pid")?;
    let cgroup_id = primitive::<UInt64Type>(path, batch, "cgroup_id")?;
    let netns = primitive::<UInt32Type>(path, batch, "netns")?;
    let socket_id = primitive::<UInt64Type>(path, batch, "socket_id")?;
    let bytes_sent = primitive::<UInt64Type>(path, batch, "bytes_sent")?;
    let bytes_received = primitive::<UInt64Type>(path, batch, "bytes_received")?;
    let retransmits = primitive::<UInt32Type>(path, batch, "retransmits")?;
    let error = primitive::<UInt16Type>(path, batch, "error")?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        out.push(ConnEvent {
            time_ns: time.value(row),
            node: node.get(row),
            kind: kind.get(row),
            side: side.get(row),
            src_ip: src_ip.get(row),
            src_port: src_port.value(row),
            dst_ip: dst_ip.get(row),
            dst_port: dst_port.value(row),
            pid: pid.value(row),
            comm: comm.get(row),
            cgroup_id: cgroup_id.value(row),
            netns: netns.value(row),
            socket_id: socket_id.value(row),
            bytes_sent: bytes_sent.value(row),
            bytes_received: bytes_received.value(row),
            retransmits: retransmits.value(row),
            error: error.value(row),
        });
    }
    Ok(out)
}

/// A dictionary column's values, parsed once and reused while the reader hands out
/// the same dictionary (it does for every batch of a row group).
struct ParsedDict<V> {
    source: Option<ArrayRef>,
    values: Vec<V>,
}

impl<V> Default for ParsedDict<V> {
    fn default() -> Self {
        ParsedDict { source: None, values: Vec::new() }
    }
}

impl<V: Copy> ParsedDict<V> {
    /// Refreshes the parsed values for this batch's dictionary and returns its keys,
    /// each checked to index [`ParsedDict::values`].
    fn keys<'a, K>(
        &mut self,
        path: &Path,
        batch: &'a RecordBatch,
        name: &'static str,
        parse: impl Fn(&str) -> Option<V>,
    ) -> Result<&'a [K::Native]>
    where
        K: arrow_array::types::ArrowDictionaryKeyType,
        K::Native: TryInto<usize>,
    {
        let array = column(path, batch, name)?;
        let array: &DictionaryArray<K> = array.as_dictionary_opt::<K>().ok_or_else(|| wrong_type(path, name))?;
        if array.null_count() > 0 {
            return Err(ReplayError::BadValue { path: path.to_owned(), column: name, value: "null".to_owned() });
        }
        let values = array.values();
        if !self.source.as_ref().is_some_and(|source| Arc::ptr_eq(source, values)) {
            let strings = values.as_string_opt::<i32>().ok_or_else(|| wrong_type(path, name))?;
            self.values.clear();
            for text in strings.iter() {
                let text = text.unwrap_or_default();
                match parse(text) {
                    Some(v) => self.values.push(v),
                    None => {
                        self.source = None;
                        return Err(ReplayError::BadValue {
                            path: path.to_owned(),
                            column: name,
                            value: text.to_owned(),
                        });
                    }
                }
            }
            self.source = Some(Arc::clone(values));
        }
        let keys = array.keys().values();
        let len = self.values.len();
        if !keys.iter().all(|&k| k.try_into().is_ok_and(|k: usize| k < len)) {
            return Err(ReplayError::BadValue {
                path: path.to_owned(),
                column: name,
                value: "dictionary key out of range".to_owned(),
            });
        }
        Ok(keys)
    }
}

/// Decodes [`ConnFacts`], keeping parsed dictionaries across batches.
#[derive(Default)]
struct FactsDecoder {
    kind: ParsedDict<ConnKind>,
    side: ParsedDict<Side>,
    src_ip: ParsedDict<IpAddr>,
    dst_ip: ParsedDict<IpAddr>,
}

impl FactsDecoder {
    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<ConnFacts>> {
        let time = primitive::<TimestampNanosecondType>(path, batch, "time")?.values();
        let kind = self.kind.keys::<Int8Type>(path, batch, "kind", ConnKind::parse)?;
        let side = self.side.keys::<Int8Type>(path, batch, "side", Side::parse)?;
        let src_ip = self.src_ip.keys::<Int32Type>(path, batch, "src_ip", |s| s.parse().ok())?;
        let dst_ip = self.dst_ip.keys::<Int32Type>(path, batch, "dst_ip", |s| s.parse().ok())?;
        let src_port = primitive::<UInt16Type>(path, batch, "src_port")?.values();
        let dst_port = primitive::<UInt16Type>(path, batch, "dst_port")?.values();
        let bytes_sent = primitive::<UInt64Type>(path, batch, "bytes_sent")?.values();
        let bytes_received = primitive::<UInt64Type>(path, batch, "bytes_received")?.values();
        // Every key was checked against its dictionary: indexing cannot fail.
        let (kinds, sides) = (&self.kind.values, &self.side.values);
        let (src_ips, dst_ips) = (&self.src_ip.values, &self.dst_ip.values);
        let rows = batch.num_rows();
        let mut out = Vec::with_capacity(rows);
        out.extend((0..rows).map(|row| ConnFacts {
            time_ns: time[row],
            kind: kinds[kind[row] as usize],
            side: sides[side[row] as usize],
            src_ip: src_ips[src_ip[row] as usize],
            src_port: src_port[row],
            dst_ip: dst_ips[dst_ip[row] as usize],
            dst_port: dst_port[row],
            bytes_sent: bytes_sent[row],
            bytes_received: bytes_received[row],
        }));
        Ok(out)
    }
}

fn decode_object_batch(path: &Path, batch: &RecordBatch) -> Result<Vec<ObjectEvent>> {
    let time = primitive::<TimestampNanosecondType>(path, batch, "time")?;
    let kind = dict::<Int8Type, ObjectKind>(path, batch, "kind", ObjectKind::parse)?;
    let action = dict::<Int8Type, ObjectAction>(path, batch, "action", ObjectAction::parse)?;
    let namespace = dict::<Int32Type, Arc<str>>(path, batch, "namespace", |s| Some(Arc::from(s)))?;
    let uid = strings(path, batch, "uid")?;
    let name = strings(path, batch, "name")?;
    let resource_version = strings(path, batch, "resource_version")?;
    let object = strings(path, batch, "object")?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        out.push(ObjectEvent {
            time_ns: time.value(row),
            kind: kind.get(row),
            action: action.get(row),
            uid: uid.value(row).to_owned(),
            namespace: namespace.get(row).to_string(),
            name: name.value(row).to_owned(),
            resource_version: resource_version.value(row).to_owned(),
            object: object.value(row).to_owned(),
        });
    }
    Ok(out)
}
