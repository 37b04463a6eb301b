//! Turns the Arrow batches of a segment into events: whole connection events, their
//! facts (the engine's columns), object events, DNS answers or pod cgroups. Dictionary columns (addresses,
//! kinds, names) are parsed once per dictionary, not once per row.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, DictionaryArray, PrimitiveArray, RecordBatch, StringArray};

use crate::error::{ReplayError, Result};
use crate::event::{
    ConnEvent, ConnFacts, ConnKind, DnsAnswer, ObjectAction, ObjectEvent, ObjectKind, PodCgroup, ProcessName, Side,
};

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

/// Turns a segment's batches into events of one kind; a fresh decoder starts each
/// reading of a segment or row group, so decoders can run side by side.
pub(crate) trait Decoder: Default + Send + 'static {
    /// What it decodes to.
    type Event;
    /// Decodes one batch of `path`.
    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<Self::Event>>;
}

fn wrong_type(path: &Path, name: &str) -> ReplayError {
    ReplayError::Schema { path: path.to_owned(), column: name.to_owned(), reason: "unexpected type".to_owned() }
}

/// The columns a connection event and its facts share, parsed once per dictionary; `C`
/// is how the process name is held.
struct ConnColumns<C> {
    kind: ParsedDict<ConnKind>,
    side: ParsedDict<Side>,
    src_ip: ParsedDict<IpAddr>,
    dst_ip: ParsedDict<IpAddr>,
    comm: ParsedDict<C>,
}

impl<C> Default for ConnColumns<C> {
    fn default() -> Self {
        ConnColumns {
            kind: ParsedDict::default(),
            side: ParsedDict::default(),
            src_ip: ParsedDict::default(),
            dst_ip: ParsedDict::default(),
            comm: ParsedDict::default(),
        }
    }
}

/// One batch's shared columns, every dictionary key checked, so indexing cannot fail.
struct ConnRows<'a, C> {
    columns: &'a ConnColumns<C>,
    time: &'a [i64],
    kind: &'a [i8],
    side: &'a [i8],
    src_ip: &'a [i32],
    dst_ip: &'a [i32],
    comm: &'a [i32],
    src_port: &'a [u16],
    dst_port: &'a [u16],
    bytes_sent: &'a [u64],
    bytes_received: &'a [u64],
    retransmits: &'a [u32],
    error: &'a [u16],
    cgroup_id: &'a [u64],
}

impl<C> ConnColumns<C> {
    fn rows<'a>(
        &'a mut self,
        path: &Path,
        batch: &'a RecordBatch,
        parse_comm: impl Fn(&str) -> Option<C>,
    ) -> Result<ConnRows<'a, C>> {
        let kind = self.kind.keys::<Int8Type>(path, batch, "kind", ConnKind::parse)?;
        let side = self.side.keys::<Int8Type>(path, batch, "side", Side::parse)?;
        let src_ip = self.src_ip.keys::<Int32Type>(path, batch, "src_ip", |s| s.parse().ok())?;
        let dst_ip = self.dst_ip.keys::<Int32Type>(path, batch, "dst_ip", |s| s.parse().ok())?;
        let comm = self.comm.keys::<Int32Type>(path, batch, "comm", parse_comm)?;
        Ok(ConnRows {
            columns: self,
            time: primitive::<TimestampNanosecondType>(path, batch, "time")?.values(),
            kind,
            side,
            src_ip,
            dst_ip,
            comm,
            src_port: primitive::<UInt16Type>(path, batch, "src_port")?.values(),
            dst_port: primitive::<UInt16Type>(path, batch, "dst_port")?.values(),
            bytes_sent: primitive::<UInt64Type>(path, batch, "bytes_sent")?.values(),
            bytes_received: primitive::<UInt64Type>(path, batch, "bytes_received")?.values(),
            retransmits: primitive::<UInt32Type>(path, batch, "retransmits")?.values(),
            error: primitive::<UInt16Type>(path, batch, "error")?.values(),
            cgroup_id: primitive::<UInt64Type>(path, batch, "cgroup_id")?.values(),
        })
    }
}

impl<C: Clone> ConnRows<'_, C> {
    /// Row `row`'s facts and its process name as `C`; the facts' own `comm` is left
    /// empty, for a caller that wants the name as a [`ProcessName`] to fill in.
    fn facts(&self, row: usize) -> (ConnFacts, &C) {
        let c = self.columns;
        let comm = &c.comm.values[self.comm[row] as usize];
        let facts = ConnFacts {
            time_ns: self.time[row],
            kind: c.kind.values[self.kind[row] as usize],
            side: c.side.values[self.side[row] as usize],
            src_ip: c.src_ip.values[self.src_ip[row] as usize],
            src_port: self.src_port[row],
            dst_ip: c.dst_ip.values[self.dst_ip[row] as usize],
            dst_port: self.dst_port[row],
            bytes_sent: self.bytes_sent[row],
            bytes_received: self.bytes_received[row],
            retransmits: self.retransmits[row],
            error: self.error[row],
            comm: ProcessName::default(),
            cgroup_id: self.cgroup_id[row],
        };
        (facts, comm)
    }
}

/// Decodes whole [`ConnEvent`]s: the shared columns and the ones only they carry.
#[derive(Default)]
pub(crate) struct ConnDecoder {
    shared: ConnColumns<Arc<str>>,
    node: ParsedDict<Arc<str>>,
}

impl Decoder for ConnDecoder {
    type Event = ConnEvent;

    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<ConnEvent>> {
        let node = self.node.keys::<Int32Type>(path, batch, "node", |s| Some(Arc::from(s)))?;
        let pid = primitive::<UInt32Type>(path, batch, "pid")?.values();
        let netns = primitive::<UInt32Type>(path, batch, "netns")?.values();
        let socket_id = primitive::<UInt64Type>(path, batch, "socket_id")?.values();
        let nodes = &self.node.values;
        let rows = self.shared.rows(path, batch, |s| Some(Arc::from(s)))?;
        let mut out = Vec::with_capacity(batch.num_rows());
        out.extend((0..batch.num_rows()).map(|row| {
            let (f, comm) = rows.facts(row);
            ConnEvent {
                time_ns: f.time_ns,
                node: Arc::clone(&nodes[node[row] as usize]),
                kind: f.kind,
                side: f.side,
                src_ip: f.src_ip,
                src_port: f.src_port,
                dst_ip: f.dst_ip,
                dst_port: f.dst_port,
                pid: pid[row],
                comm: Arc::clone(comm),
                cgroup_id: f.cgroup_id,
                netns: netns[row],
                socket_id: socket_id[row],
                bytes_sent: f.bytes_sent,
                bytes_received: f.bytes_received,
                retransmits: f.retransmits,
                error: f.error,
            }
        }));
        Ok(out)
    }
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

impl<V> ParsedDict<V> {
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

/// Decodes [`ConnFacts`]: the shared columns only.
#[derive(Default)]
pub(crate) struct FactsDecoder {
    shared: ConnColumns<ProcessName>,
}

impl Decoder for FactsDecoder {
    type Event = ConnFacts;

    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<ConnFacts>> {
        let rows = self.shared.rows(path, batch, |s| Some(ProcessName::new(s)))?;
        let mut out = Vec::with_capacity(batch.num_rows());
        out.extend((0..batch.num_rows()).map(|row| {
            let (facts, &comm) = rows.facts(row);
            ConnFacts { comm, ..facts }
        }));
        Ok(out)
    }
}

/// Decodes [`ObjectEvent`]s, keeping parsed dictionaries across batches.
#[derive(Default)]
pub(crate) struct ObjectDecoder {
    kind: ParsedDict<ObjectKind>,
    action: ParsedDict<ObjectAction>,
    namespace: ParsedDict<Arc<str>>,
}

impl Decoder for ObjectDecoder {
    type Event = ObjectEvent;

    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<ObjectEvent>> {
        let time = primitive::<TimestampNanosecondType>(path, batch, "time")?.values();
        let kind = self.kind.keys::<Int8Type>(path, batch, "kind", ObjectKind::parse)?;
        let action = self.action.keys::<Int8Type>(path, batch, "action", ObjectAction::parse)?;
        let namespace = self.namespace.keys::<Int32Type>(path, batch, "namespace", |s| Some(Arc::from(s)))?;
        let uid = strings(path, batch, "uid")?;
        let name = strings(path, batch, "name")?;
        let resource_version = strings(path, batch, "resource_version")?;
        let object = strings(path, batch, "object")?;
        // Every key was checked against its dictionary: indexing cannot fail.
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            out.push(ObjectEvent {
                time_ns: time[row],
                kind: self.kind.values[kind[row] as usize],
                action: self.action.values[action[row] as usize],
                uid: uid.value(row).to_owned(),
                namespace: self.namespace.values[namespace[row] as usize].to_string(),
                name: name.value(row).to_owned(),
                resource_version: resource_version.value(row).to_owned(),
                object: object.value(row).to_owned(),
            });
        }
        Ok(out)
    }
}

/// Decodes [`DnsAnswer`]s, keeping parsed dictionaries across batches.
#[derive(Default)]
pub(crate) struct DnsDecoder {
    node: ParsedDict<Arc<str>>,
    client_ip: ParsedDict<IpAddr>,
    server_ip: ParsedDict<IpAddr>,
    query: ParsedDict<Arc<str>>,
    cnames: ParsedDict<Arc<str>>,
    address: ParsedDict<IpAddr>,
}

impl Decoder for DnsDecoder {
    type Event = DnsAnswer;

    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<DnsAnswer>> {
        let time = primitive::<TimestampNanosecondType>(path, batch, "time")?.values();
        let node = self.node.keys::<Int32Type>(path, batch, "node", |s| Some(Arc::from(s)))?;
        let client_ip = self.client_ip.keys::<Int32Type>(path, batch, "client_ip", |s| s.parse().ok())?;
        let server_ip = self.server_ip.keys::<Int32Type>(path, batch, "server_ip", |s| s.parse().ok())?;
        let query = self.query.keys::<Int32Type>(path, batch, "query", |s| Some(Arc::from(s)))?;
        let cnames = self.cnames.keys::<Int32Type>(path, batch, "cnames", |s| Some(Arc::from(s)))?;
        let address = self.address.keys::<Int32Type>(path, batch, "address", |s| s.parse().ok())?;
        let client_port = primitive::<UInt16Type>(path, batch, "client_port")?.values();
        let socket_id = primitive::<UInt64Type>(path, batch, "socket_id")?.values();
        let ttl = primitive::<UInt32Type>(path, batch, "ttl")?.values();
        // Every key was checked against its dictionary: indexing cannot fail.
        let rows = batch.num_rows();
        let mut out = Vec::with_capacity(rows);
        out.extend((0..rows).map(|row| DnsAnswer {
            time_ns: time[row],
            node: Arc::clone(&self.node.values[node[row] as usize]),
            client_ip: self.client_ip.values[client_ip[row] as usize],
            client_port: client_port[row],
            server_ip: self.server_ip.values[server_ip[row] as usize],
            socket_id: socket_id[row],
            query: Arc::clone(&self.query.values[query[row] as usize]),
            cnames: Arc::clone(&self.cnames.values[cnames[row] as usize]),
            address: self.address.values[address[row] as usize],
            ttl_s: ttl[row],
        }));
        Ok(out)
    }
}

/// Decodes [`PodCgroup`]s.
#[derive(Default)]
pub(crate) struct CgroupDecoder {
    node: ParsedDict<Arc<str>>,
}

impl Decoder for CgroupDecoder {
    type Event = PodCgroup;

    fn decode(&mut self, path: &Path, batch: &RecordBatch) -> Result<Vec<PodCgroup>> {
        let time = primitive::<TimestampNanosecondType>(path, batch, "time")?.values();
        let node = self.node.keys::<Int32Type>(path, batch, "node", |s| Some(Arc::from(s)))?;
        let cgroup_id = primitive::<UInt64Type>(path, batch, "cgroup_id")?.values();
        let paths = strings(path, batch, "path")?;
        Ok((0..batch.num_rows())
            .map(|row| PodCgroup {
                time_ns: time[row],
                node: Arc::clone(&self.node.values[node[row] as usize]),
                cgroup_id: cgroup_id[row],
                path: Arc::from(paths.value(row)),
            })
            .collect())
    }
}
