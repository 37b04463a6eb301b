//! The journal of a live recording: a writer killed at any moment loses nothing it
//! committed, nothing is read twice, and a torn tail is dropped and counted.

use std::path::{Path, PathBuf};

use smap_replay::{Event, LossCounters, Recording, RecordingMeta, RecordingWriter, WriterOptions};

use crate::{conn, object};

fn live() -> WriterOptions {
    WriterOptions { batch_rows: 64, segment_rows: 1000, row_group_rows: 256, ..WriterOptions::live() }
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "smj"))
        .collect();
    found.sort();
    found
}

/// Writes `n` connection events (a checkpoint after every `every`) and one object,
/// commits, and "dies": no checkpoint, no finish, no destructor.
fn killed_writer(path: &Path, n: u64, every: u64) {
    let mut writer = RecordingWriter::create(path, RecordingMeta::new("capture", "n", ""), live()).unwrap();
    writer.write_object(&object(0)).unwrap();
    for i in 0..n {
        writer.write_conn(&conn(i)).unwrap();
        if (i + 1) % every == 0 {
            writer.checkpoint(&LossCounters::default()).unwrap();
        }
    }
    writer.commit().unwrap();
    std::mem::forget(writer);
}

#[test]
fn a_killed_writer_loses_nothing_it_committed_and_nothing_is_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    // Checkpoints at 1500 and 3000; the rest only in the journal and a partial segment.
    killed_writer(&path, 3700, 1500);
    assert_eq!(journals(&path).len(), 1, "each checkpoint removes the journal it covered");
    let recording = Recording::open(&path).unwrap();
    let warnings = recording.warnings().join("\n");
    assert!(warnings.contains("recovered 700 events from the journal"), "{warnings}");
    let read: Vec<_> = recording.conn_events().map(Result::unwrap).collect();
    assert_eq!(read, (0..3700).map(conn).collect::<Vec<_>>());
    let objects: Vec<_> = recording.object_events().map(Result::unwrap).collect();
    assert_eq!(objects, [object(0)], "finalized at the first checkpoint, not read again");
    let merged = smap_replay::MergedEvents::facts(&[recording], vec![]).unwrap().count();
    assert_eq!(merged, 3701);
}

#[test]
fn a_journal_the_checkpoint_did_not_get_to_remove_adds_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), live()).unwrap();
    for i in 0..800 {
        writer.write_conn(&conn(i)).unwrap();
    }
    writer.commit().unwrap();
    // Killed after the checkpoint finalized the segments, before it removed the
    // journal: put the journal back as it was.
    let old = journals(&path).remove(0);
    let saved = std::fs::read(&old).unwrap();
    writer.checkpoint(&LossCounters::default()).unwrap();
    std::fs::write(&old, saved).unwrap();
    for i in 800..900 {
        writer.write_conn(&conn(i)).unwrap();
    }
    writer.commit().unwrap();
    std::mem::forget(writer);
    let recording = Recording::open(&path).unwrap();
    let read: Vec<_> = recording.conn_events().map(Result::unwrap).collect();
    assert_eq!(read, (0..900).map(conn).collect::<Vec<_>>());
}

#[test]
fn a_journal_torn_at_any_byte_of_its_last_record_keeps_every_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    killed_writer(&path, 40, 1000);
    let journal = journals(&path).remove(0);
    let whole = std::fs::read(&journal).unwrap();
    // The length of the last record: what a journal of one event fewer lacks.
    let shorter = dir.path().join("shorter");
    killed_writer(&shorter, 39, 1000);
    let without_last = std::fs::read(journals(&shorter).remove(0)).unwrap().len();
    assert!(without_last < whole.len());
    for cut in without_last..=whole.len() {
        std::fs::write(&journal, &whole[..cut]).unwrap();
        let recording = Recording::open(&path).unwrap();
        let read: Vec<_> = recording.conn_events().map(Result::unwrap).collect();
        let expected = if cut == whole.len() { 40 } else { 39 };
        assert_eq!(read, (0..expected).map(conn).collect::<Vec<_>>(), "cut at {cut}");
        let torn = recording.warnings().iter().any(|w| w.contains("torn journal tail"));
        assert_eq!(torn, cut != without_last && cut != whole.len(), "cut at {cut}: {:?}", recording.warnings());
    }
    // A flipped byte inside a record ends the journal there, as a torn tail does.
    let mut flipped = whole.clone();
    let at = without_last + 12;
    flipped[at] ^= 0xff;
    std::fs::write(&journal, &flipped).unwrap();
    let recording = Recording::open(&path).unwrap();
    assert_eq!(recording.conn_events().count(), 39);
}

#[test]
fn a_finished_recording_keeps_no_journal_and_reads_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec");
    let mut writer = RecordingWriter::create(&path, RecordingMeta::new("capture", "n", ""), live()).unwrap();
    for i in 0..2500 {
        writer.write_event(&Event::Conn(conn(i))).unwrap();
    }
    writer.checkpoint(&LossCounters::default()).unwrap();
    writer.write_conn(&conn(2500)).unwrap();
    writer.finish(&LossCounters::default()).unwrap();
    assert!(journals(&path).is_empty());
    let recording = Recording::open(&path).unwrap();
    assert!(recording.warnings().is_empty(), "{:?}", recording.warnings());
    assert_eq!(recording.conn_events().count(), 2501);
}
