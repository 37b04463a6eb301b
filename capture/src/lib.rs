//! smap's live sources: every input that comes from a running system rather than a file.
//!
//! [`kernel`] loads smap's eBPF programs and turns the kernel's connection events into
//! [`smap_replay::ConnEvent`]s; [`kubectl_file`] follows Kubernetes state in a kubectl
//! JSON file; [`record`] merges them into one time-ordered stream, records it and hands
//! it to a live consumer.

pub mod kernel;
pub mod kubectl_file;
pub mod record;
