//! Bad recordings give typed errors naming the file, never a panic.

use std::path::Path;

use smap_replay::{LossCounters, Recording, RecordingMeta, RecordingWriter, ReplayError, WriterOptions};

use crate::conn;

fn write_recording(path: &Path, events: u64) {
    let options =
        WriterOptions { batch_rows: 64, segment_rows: 100_000, row_group_rows: 256, ..WriterOptions::default() };
    let mut writer = RecordingWriter::create(path, RecordingMeta::new("capture", "n", ""), options).unwrap();
    for i in 0..events {
        writer.write_conn(&conn(i)).unwrap();
    }
    writer.finish(&LossCounters::default()).unwrap();
}

fn read_all(path: &Path) -> Result<usize, ReplayError> {
    let recording = Recording::open(path)?;
    let mut n = 0;
    for event in recording.conn_events() {
        event?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn a_truncated_segment_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    write_recording(&path, 3000);
    let segment = path.join("conn-000001.parquet");
    let bytes = std::fs::read(&segment).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 3, 10] {
        std::fs::write(&segment, &bytes[..cut]).unwrap();
        let err = read_all(&path).unwrap_err();
        assert!(matches!(err, ReplayError::Parquet { .. }), "{err:?}");
        assert!(err.to_string().contains("conn-000001.parquet"), "{err}");
    }
}

#[test]
fn corrupt_pages_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    write_recording(&path, 3000);
    let segment = path.join("conn-000001.parquet");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip bytes in the data pages, leaving header and footer intact.
    for b in bytes.iter_mut().skip(64).take(2000) {
        *b ^= 0x5a;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let err = read_all(&path).unwrap_err();
    assert!(err.to_string().contains("conn-000001.parquet"), "{err}");
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    write_recording(&path, 10);
    let meta_path = path.join("recording.json");
    let current = format!("\"schema_version\": {}", smap_replay::SCHEMA_VERSION);
    let text = std::fs::read_to_string(&meta_path).unwrap().replace(&current, "\"schema_version\": 99");
    std::fs::write(&meta_path, text).unwrap();
    let err = Recording::open(&path).unwrap_err();
    assert!(matches!(err, ReplayError::SchemaVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("version 99 is not supported"), "{err}");
}

#[test]
fn a_foreign_parquet_file_is_refused_by_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    write_recording(&path, 10);
    // A k8s segment where a conn segment should be: valid Parquet, wrong columns.
    let other = dir.path().join("other");
    let mut writer =
        RecordingWriter::create(&other, RecordingMeta::new("capture", "n", ""), WriterOptions::default()).unwrap();
    writer.write_object(&crate::object(1)).unwrap();
    writer.finish(&LossCounters::default()).unwrap();
    std::fs::copy(other.join("k8s-000001.parquet"), path.join("conn-000001.parquet")).unwrap();
    let err = read_all(&path).unwrap_err();
    assert!(matches!(err, ReplayError::Schema { .. }), "{err:?}");
}

#[test]
fn an_empty_or_foreign_directory_is_not_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let err = Recording::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not an smap recording"), "{err}");
    let err = Recording::open(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, ReplayError::Io { .. }), "{err:?}");
    std::fs::write(dir.path().join("recording.json"), "{ not json").unwrap();
    let err = Recording::open(dir.path()).unwrap_err();
    assert!(matches!(err, ReplayError::Meta { .. }), "{err:?}");
}

#[test]
fn a_corrupt_segment_read_by_many_decoders_is_the_same_error_after_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let options =
        WriterOptions { batch_rows: 64, segment_rows: 1_000, row_group_rows: 256, ..WriterOptions::default() };
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), options).unwrap();
    for i in 0..3000 {
        writer.write_conn(&conn(i)).unwrap();
    }
    writer.finish(&LossCounters::default()).unwrap();
    let segment = path.join("conn-000002.parquet");
    let mut bytes = std::fs::read(&segment).unwrap();
    for b in bytes.iter_mut().skip(64).take(2000) {
        *b ^= 0x5a;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let recording = Recording::open(&path).unwrap();
    let read = |decoders: usize| {
        let decoders = std::num::NonZeroUsize::new(decoders).unwrap();
        let mut events = 0;
        for batch in recording.conn_facts().in_parallel(decoders, |f| f).unwrap() {
            match batch {
                Ok(batch) => events += batch.len(),
                Err(e) => return (events, e.to_string()),
            }
        }
        panic!("read {events} events and no error")
    };
    let (events, error) = read(1);
    assert!(error.contains("conn-000002.parquet"), "{error}");
    assert!((1000..3000).contains(&events), "the first segment's events come first: {events}");
    for decoders in 2..=4 {
        assert_eq!(read(decoders), (events, error.clone()), "with {decoders} decoders");
    }
}
