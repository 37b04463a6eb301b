//! The segment schemas: column names and Arrow types of connection, object, DNS and
//! pod cgroup segments.
//!
//! Documented for users in `docs/recording-format.md`; keep the two in step.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Key of the Parquet key-value metadata entry holding the schema version.
pub const VERSION_KEY: &str = "smap.schema_version";
/// Key of the Parquet key-value metadata entry naming the segment's stream.
pub const STREAM_KEY: &str = "smap.stream";

/// Which stream a segment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Connection events (`conn-NNNNNN.parquet`).
    Conn,
    /// Kubernetes object events (`k8s-NNNNNN.parquet`).
    Objects,
    /// DNS answers (`dns-NNNNNN.parquet`), since schema version 3.
    Dns,
    /// Pod cgroups (`cgroups-NNNNNN.parquet`), since schema version 4.
    Cgroups,
}

impl Stream {
    /// Every stream, in the order segments are listed.
    pub const ALL: [Stream; 4] = [Stream::Conn, Stream::Objects, Stream::Dns, Stream::Cgroups];
}

impl Stream {
    /// File-name prefix of this stream's segments.
    pub fn prefix(self) -> &'static str {
        match self {
            Stream::Conn => "conn",
            Stream::Objects => "k8s",
            Stream::Dns => "dns",
            Stream::Cgroups => "cgroups",
        }
    }

    /// The Arrow schema of this stream's segments.
    pub fn schema(self) -> SchemaRef {
        match self {
            Stream::Conn => conn_schema(),
            Stream::Objects => object_schema(),
            Stream::Dns => dns_schema(),
            Stream::Cgroups => cgroup_schema(),
        }
    }
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn dict(index: DataType) -> DataType {
    DataType::Dictionary(Box::new(index), Box::new(DataType::Utf8))
}

/// Schema of connection segments.
pub fn conn_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("node", dict(DataType::Int32), false),
        Field::new("kind", dict(DataType::Int8), false),
        Field::new("side", dict(DataType::Int8), false),
        Field::new("src_ip", dict(DataType::Int32), false),
        Field::new("src_port", DataType::UInt16, false),
        Field::new("dst_ip", dict(DataType::Int32), false),
        Field::new("dst_port", DataType::UInt16, false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("comm", dict(DataType::Int32), false),
        Field::new("cgroup_id", DataType::UInt64, false),
        Field::new("netns", DataType::UInt32, false),
        Field::new("socket_id", DataType::UInt64, false),
        Field::new("bytes_sent", DataType::UInt64, false),
        Field::new("bytes_received", DataType::UInt64, false),
        Field::new("retransmits", DataType::UInt32, false),
        Field::new("error", DataType::UInt16, false),
    ]))
}

/// Schema of Kubernetes object segments.
pub fn object_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("kind", dict(DataType::Int8), false),
        Field::new("action", dict(DataType::Int8), false),
        Field::new("uid", DataType::Utf8, false),
        Field::new("namespace", dict(DataType::Int32), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("resource_version", DataType::Utf8, false),
        Field::new("object", DataType::Utf8, false),
    ]))
}

/// Schema of DNS answer segments.
pub fn dns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("node", dict(DataType::Int32), false),
        Field::new("client_ip", dict(DataType::Int32), false),
        Field::new("client_port", DataType::UInt16, false),
        Field::new("server_ip", dict(DataType::Int32), false),
        Field::new("socket_id", DataType::UInt64, false),
        Field::new("query", dict(DataType::Int32), false),
        Field::new("cnames", dict(DataType::Int32), false),
        Field::new("address", dict(DataType::Int32), false),
        Field::new("ttl", DataType::UInt32, false),
    ]))
}

/// Schema of pod cgroup segments.
pub fn cgroup_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("node", dict(DataType::Int32), false),
        Field::new("cgroup_id", DataType::UInt64, false),
        Field::new("path", DataType::Utf8, false),
    ]))
}
