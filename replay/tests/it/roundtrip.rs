//! What is written is read back exactly, across segments, and a crash loses at most the
//! open segment.

use smap_replay::writer::PARTIAL_SUFFIX;
use smap_replay::{
    ConnRecord, Event, LossCounters, MergedEvents, Recording, RecordingMeta, RecordingWriter, WriterOptions,
};

use crate::{conn, object};

fn small_segments() -> WriterOptions {
    WriterOptions { batch_rows: 64, segment_rows: 1000, row_group_rows: 256, ..WriterOptions::default() }
}

#[test]
fn events_round_trip_exactly_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer =
        RecordingWriter::create(&path, RecordingMeta::new("capture", "node-0", "6.18"), small_segments()).unwrap();
    let conns: Vec<_> = (0..5000).map(conn).collect();
    let objects: Vec<_> = (0..10).map(object).collect();
    for e in &conns {
        writer.write_conn(e).unwrap();
    }
    for o in &objects {
        writer.write_object(o).unwrap();
    }
    let losses = LossCounters { dropped: 3, evicted: 2, unparsed: 1 };
    let meta = writer.finish(&losses).unwrap();
    assert!(meta.complete);
    assert_eq!((meta.counters.conn_events, meta.counters.object_events), (5000, 10));
    assert_eq!((meta.counters.dropped, meta.counters.evicted, meta.counters.unparsed), (3, 2, 1));

    let recording = Recording::open(&path).unwrap();
    assert!(recording.warnings().is_empty(), "{:?}", recording.warnings());
    assert_eq!(recording.meta(), &meta);
    assert_eq!(recording.segments().count(), 6, "5 connection segments of 1000 rows and 1 object segment");
    let read: Vec<_> = recording.conn_events().map(Result::unwrap).collect();
    assert_eq!(read, conns);
    let facts: Vec<_> = recording.conn_facts().in_background(|f| f).unwrap().flat_map(Result::unwrap).collect();
    assert_eq!(facts, conns.iter().map(ConnRecord::facts).collect::<Vec<_>>(), "the engine's columns alone");
    let read: Vec<_> = recording.object_events().map(Result::unwrap).collect();
    assert_eq!(read, objects);
    assert_eq!(meta.start_ns, Some(conns[0].time_ns));
    assert_eq!(meta.end_ns, Some(objects[9].time_ns));
}

#[test]
fn merged_streams_are_in_time_order_objects_first_at_ties() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).unwrap();
    for i in 0..3000 {
        writer.write_conn(&conn(i)).unwrap();
    }
    for i in 0..5 {
        let mut o = object(i);
        o.time_ns = conn(i * 500).time_ns; // ties with connection events
        writer.write_object(&o).unwrap();
    }
    writer.finish(&LossCounters::default()).unwrap();
    let recording = Recording::open(&path).unwrap();
    let merged: Vec<_> = MergedEvents::new(&[recording], vec![]).unwrap().map(Result::unwrap).collect();
    assert_eq!(merged.len(), 3005);
    assert!(merged.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));
    let first_tie = merged.iter().position(|e| e.time_ns() == conn(500).time_ns).unwrap();
    assert!(matches!(merged[first_tie], smap_replay::Event::Object(_)), "state before the traffic it explains");
}

#[test]
fn a_crash_loses_only_the_open_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).unwrap();
    for i in 0..1500 {
        writer.write_conn(&conn(i)).unwrap();
    }
    writer.checkpoint(&LossCounters::default()).unwrap();
    for i in 1500..1700 {
        writer.write_conn(&conn(i)).unwrap();
    }
    // Dropping without finish() is what a crash leaves behind: an open `.partial`.
    drop(writer);
    let partial: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(PARTIAL_SUFFIX))
        .collect();
    assert_eq!(partial.len(), 1, "the open segment stays unfinished");

    let recording = Recording::open(&path).unwrap();
    let warnings = recording.warnings().join("\n");
    assert!(warnings.contains("was not finished"), "{warnings}");
    assert!(warnings.contains(&format!("skipping unfinished segment {}", partial[0])), "{warnings}");
    let read: Vec<_> = recording.conn_events().map(Result::unwrap).collect();
    assert_eq!(read, (0..1500).map(conn).collect::<Vec<_>>(), "everything up to the checkpoint survives");
}

#[test]
fn refuses_to_overwrite_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).unwrap();
    let err = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).err().unwrap();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn the_facts_merge_gives_the_full_merge_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    // Two nodes whose traffic interleaves, in runs of uneven length, with objects.
    let recordings: Vec<Recording> = (0..2)
        .map(|node| {
            let path = dir.path().join(format!("node-{node}"));
            let meta = RecordingMeta::new("capture", &format!("node-{node}"), "");
            let mut writer = RecordingWriter::create(&path, meta, small_segments()).unwrap();
            for i in (0..4000).filter(|i| (i / (7 + 5 * node)) % 2 == node) {
                writer.write_conn(&conn(i)).unwrap();
            }
            for i in 0..5 {
                let mut o = object(i + 10 * node);
                o.time_ns = conn(i * 700 + node).time_ns;
                writer.write_object(&o).unwrap();
            }
            writer.finish(&LossCounters::default()).unwrap();
            Recording::open(&path).unwrap()
        })
        .collect();
    let full: Vec<_> = MergedEvents::new(&recordings, vec![])
        .unwrap()
        .map(|e| match e.unwrap() {
            Event::Conn(c) => Event::Conn(c.facts()),
            Event::Object(o) => Event::Object(o),
            Event::Dns(d) => Event::Dns(d),
            Event::Cgroup(c) => Event::Cgroup(c),
        })
        .collect();
    let facts: Vec<_> = MergedEvents::facts(&recordings, vec![]).unwrap().map(Result::unwrap).collect();
    assert_eq!(full.len(), facts.len());
    assert!(full == facts, "same events in the same order");
    assert!(facts.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));
}

fn dns_answer(i: u64) -> smap_replay::DnsAnswer {
    use std::sync::Arc;
    smap_replay::DnsAnswer {
        time_ns: conn(i).time_ns,
        node: Arc::from("node-0"),
        client_ip: format!("10.244.1.{}", i % 200).parse().unwrap(),
        client_port: 40000 + (i % 1000) as u16,
        server_ip: "10.96.0.10".parse().unwrap(),
        socket_id: 7000 + i,
        query: Arc::from(format!("api-{}.example", i % 7)),
        cnames: Arc::from(if i.is_multiple_of(2) { "edge.cdn.example,pop.cdn.example" } else { "" }),
        address: if i.is_multiple_of(3) {
            "2001:db8::5".parse().unwrap()
        } else {
            format!("203.0.113.{}", i % 250).parse().unwrap()
        },
        ttl_s: (i % 600) as u32,
    }
}

#[test]
fn dns_answers_round_trip_and_merge_between_objects_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).unwrap();
    let answers: Vec<_> = (0..1500).map(dns_answer).collect();
    for a in &answers {
        writer.write_event(&Event::from(a.clone())).unwrap();
    }
    writer.write_conn(&conn(10)).unwrap();
    let mut o = object(0);
    o.time_ns = conn(10).time_ns;
    writer.write_object(&o).unwrap();
    let meta = writer.finish(&LossCounters::default()).unwrap();
    assert_eq!(meta.counters.dns_answers, 1500);
    assert_eq!(meta.schema_version, 4);

    let recording = Recording::open(&path).unwrap();
    assert_eq!(recording.segments().filter(|p| p.to_string_lossy().contains("/dns-")).count(), 2);
    let read: Vec<_> = recording.dns_answers().map(Result::unwrap).collect();
    assert_eq!(read, answers);
    // At one instant: the object, then the answer, then the connection.
    let merged: Vec<_> = MergedEvents::new(&[recording], vec![]).unwrap().map(Result::unwrap).collect();
    let at: Vec<u8> = merged.iter().filter(|e| e.time_ns() == conn(10).time_ns).map(Event::rank).collect();
    assert_eq!(at, [0, 2, 3]);
}

#[test]
fn pod_cgroups_round_trip_and_merge_before_the_traffic_they_explain() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), small_segments()).unwrap();
    let cgroups: Vec<_> = (0..1500)
        .map(|i| smap_replay::PodCgroup {
            time_ns: conn(i).time_ns,
            node: Arc::from(format!("node-{}", i % 3)),
            cgroup_id: 4000 + i,
            path: Arc::from(format!("/kubepods/besteffort/pod0f3c2a1e-5b6d-4e7f-8a9b-{i:012}/c{i}")),
        })
        .collect();
    for c in &cgroups {
        writer.write_event(&Event::from(c.clone())).unwrap();
    }
    // At one instant, written in the wrong order on purpose: the merge orders them.
    writer.write_conn(&conn(10)).unwrap();
    writer.write_dns(&dns_answer(10)).unwrap();
    let mut o = object(0);
    o.time_ns = conn(10).time_ns;
    writer.write_object(&o).unwrap();
    let meta = writer.finish(&LossCounters::default()).unwrap();
    assert_eq!(meta.counters.pod_cgroups, 1500);

    let recording = Recording::open(&path).unwrap();
    assert_eq!(recording.segments().filter(|p| p.to_string_lossy().contains("/cgroups-")).count(), 2);
    let read: Vec<_> = recording.pod_cgroups().map(Result::unwrap).collect();
    assert_eq!(read, cgroups);
    assert_eq!(read[7].pod_uid().as_deref(), Some("0f3c2a1e-5b6d-4e7f-8a9b-000000000007"));
    let merged: Vec<_> = MergedEvents::new(&[recording], vec![]).unwrap().map(Result::unwrap).collect();
    let at: Vec<u8> = merged.iter().filter(|e| e.time_ns() == conn(10).time_ns).map(Event::rank).collect();
    assert_eq!(at, [0, 1, 2, 3], "objects, the cgroup, the answer, then the connection");
}
