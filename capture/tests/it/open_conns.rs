//! Connections established before the capture starts: the enumeration at start finds
//! every one of them (more than the iterator's buffer holds at once), and the end of
//! the capture reports each still open, with the bytes it moved.
//!
//! Needs root, as the kernel tests do.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use smap_capture::kernel::{KernelCapture, KernelConfig};
use smap_replay::{ConnEvent, ConnKind, Side};

use crate::kernel::privileged_or_skip;

/// More than one iterator buffer of records (8 pages hold 240 of 136 bytes): the
/// records that do not fit are written on the kernel's second try. Both ends of each
/// are this process's descriptors.
const CONNECTIONS: usize = 400;

/// Raises the soft descriptor limit to the hard one (a VM's init may leave it low).
fn allow_descriptors(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit with a valid, writable rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(limit.rlim_cur >= needed, "the test needs {needed} descriptors, the hard limit is {}", limit.rlim_cur);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_open_at_start_is_found_once_and_reported_at_the_end() {
    if !privileged_or_skip() {
        return;
    }
    let _turn = crate::MACHINE_TURN.lock().await;
    allow_descriptors(2 * CONNECTIONS as u64 + 256);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut pairs: Vec<(TcpStream, TcpStream)> = (0..CONNECTIONS)
        .map(|_| {
            let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            (client, listener.accept().unwrap().0)
        })
        .collect();

    let mut capture = KernelCapture::start(KernelConfig::new("test-node")).expect("start the kernel capture");
    let ours = |e: &ConnEvent| e.dst_port == port;
    let mut batch = Vec::new();
    capture.next_batch(&mut batch).await.unwrap();
    let found: Vec<ConnEvent> = batch.drain(..).filter(|e| ours(e) && e.kind == ConnKind::TcpExisting).collect();
    // Both ends of each, each once, with its side told by the enumerated listener.
    let mut ends: HashMap<u16, Vec<Side>> = HashMap::new();
    for e in &found {
        ends.entry(e.src_port).or_default().push(e.side);
    }
    assert_eq!(found.len(), 2 * CONNECTIONS, "{} of {} ends found", found.len(), 2 * CONNECTIONS);
    assert!(ends
        .values()
        .all(|sides| sides.len() == 2 && sides.contains(&Side::Client) && sides.contains(&Side::Server)));

    // One of them moves bytes; then the capture stops with all of them open.
    let (client, server) = &mut pairs[0];
    let moved_port = client.local_addr().unwrap().port();
    client.write_all(&[7u8; 1000]).unwrap();
    let mut buf = [0u8; 1000];
    server.read_exact(&mut buf).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    capture.next_batch(&mut batch).await.unwrap();
    let more: Vec<ConnEvent> = batch.drain(..).filter(|e| ours(e) && e.kind == ConnKind::TcpExisting).collect();
    assert!(more.is_empty(), "moving bytes does not report a known socket again: {more:?}");
    capture.finish(&mut batch).unwrap();
    let at_end: Vec<&ConnEvent> = batch.iter().filter(|e| ours(e) && e.kind == ConnKind::TcpOpenAtEnd).collect();
    assert_eq!(at_end.len(), 2 * CONNECTIONS);
    let moved: Vec<(Side, u64, u64)> =
        at_end.iter().filter(|e| e.src_port == moved_port).map(|e| (e.side, e.bytes_sent, e.bytes_received)).collect();
    assert!(moved.contains(&(Side::Server, 0, 1000)), "the server end read 1000 bytes: {moved:?}");
    drop(pairs);
}
