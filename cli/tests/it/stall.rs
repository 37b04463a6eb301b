//! As root: what smap writes to stalls for seconds in the middle of a busy capture. The
//! recording's disk, as a node's root volume does under another pod's I/O or a network
//! disk does when its path fails over; `smap watch`'s change-event reader, as a paused
//! terminal or a stuck log shipper does. The capture must keep draining the kernel: no
//! event dropped, everything written once the output moves again.
//!
//! The stalls are real: an ext4 filesystem on a loop device frozen with `fsfreeze`
//! (every write and fsync blocks until it is thawed), and a pipe of one page that the
//! test stops reading. Needs root; the disk test also losetup, mkfs.ext4 and fsfreeze
//! (util-linux, e2fsprogs). Skipped with a printed reason elsewhere.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_e2e::{require_root, say_skipped};
use smap_replay::{ConnKind, Recording};

use crate::e2e::{empty_kubectl, Capture, ONE_AT_A_TIME};

/// The kernel's ring buffer for this test, bytes.
const RING_BYTES: u64 = 256 << 10;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An ext4 filesystem on a loop device, mounted; thawed, unmounted and detached on drop.
struct LoopFs {
    device: String,
    mount: PathBuf,
}

impl LoopFs {
    fn new(dir: &Path) -> LoopFs {
        let image = dir.join("disk.img");
        std::fs::File::create(&image).unwrap().set_len(256 << 20).unwrap();
        let device = run("losetup", &["--find", "--show", image.to_str().unwrap()]);
        let fs = LoopFs { device, mount: dir.join("mnt") };
        run("mkfs.ext4", &["-q", "-F", &fs.device]);
        std::fs::create_dir(&fs.mount).unwrap();
        run("mount", &[&fs.device, fs.mount.to_str().unwrap()]);
        fs
    }

    fn freeze(&self, frozen: bool) {
        run("fsfreeze", &[if frozen { "--freeze" } else { "--unfreeze" }, self.mount.to_str().unwrap()]);
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let m = self.mount.to_str().unwrap_or_default();
        let _ = Command::new("fsfreeze").args(["--unfreeze", m]).output();
        let _ = Command::new("umount").arg(m).output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

/// A loopback TCP server that accepts and closes every connection; its port.
fn loopback_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    port
}

/// Connects to `port` on loopback and closes, about a thousand times a second (what a
/// debug build of smap keeps up with on two cores), until `stop`.
fn churn(port: u16, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                made.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

#[test]
fn a_disk_that_stalls_for_seconds_loses_no_event_of_a_busy_capture() {
    if !require_root("a_disk_that_stalls_for_seconds_loses_no_event_of_a_busy_capture") {
        return;
    }
    let missing: Vec<&str> = ["losetup", "mkfs.ext4", "fsfreeze"]
        .into_iter()
        .filter(|p| Command::new(p).arg("--version").output().is_err())
        .collect();
    if !missing.is_empty() || !Path::new("/dev/loop-control").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true lacks {missing:?} or loop devices");
        say_skipped(&format!("skipped: the disk-stall test needs loop devices and {missing:?}"));
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let fs = LoopFs::new(dir.path());
    let kubectl = empty_kubectl(&fs.mount);

    let port = loopback_server();
    // A small ring, which four seconds of this traffic overflow many times over unless
    // the capture keeps draining it; checkpoints every second, so that the writer also
    // fsyncs and renames inside the stall.
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("ring_buffer_bytes: {RING_BYTES}\n")).unwrap();
    let args = ["--checkpoint", "1s", "--config", config.to_str().unwrap()];
    let capture = Capture::start_with(&fs.mount, &kubectl, "stall-node", &args);
    let (stop, made) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let client = churn(port, stop.clone(), made.clone());
    std::thread::sleep(Duration::from_secs(1));
    fs.freeze(true);
    let (frozen_at, before) = (Instant::now(), made.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(4));
    let during = made.load(Ordering::Relaxed) - before;
    fs.freeze(false);
    let stalled = frozen_at.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, summary) = capture.stop();

    assert!(summary.contains("dropped 0,"), "{summary}");
    let made = made.load(Ordering::Relaxed);
    let recorded = Recording::open(&recording)
        .unwrap()
        .conn_events()
        .map(Result::unwrap)
        .filter(|e| e.kind == ConnKind::TcpConnect && e.dst_port == port)
        .count() as u64;
    assert_eq!(recorded, made, "{made} connections ({during} during the {stalled:?} stall): {summary}");
    // The stall must have been long and busy enough to overflow the ring if the capture
    // had waited for the disk: four 136-byte records a connection.
    assert!(during * 4 * 136 > 2 * RING_BYTES, "only {during} connections during the stall: the test proves nothing");
}

#[test]
fn a_change_event_reader_that_stops_reading_loses_no_event_of_a_busy_watch() {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::Stdio;

    if !require_root("a_change_event_reader_that_stops_reading_loses_no_event_of_a_busy_watch") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let kubectl = empty_kubectl(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, format!("ring_buffer_bytes: {RING_BYTES}\n")).unwrap();
    let rec = dir.path().join("rec");

    // A one-page pipe: a few change events fill it, then every write blocks.
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own; F_SETPIPE_SZ only resizes.
    let (read_end, write_end) = unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert!(libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) >= 4096);
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let port = loopback_server();
    let http = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // Every connection event becomes a change event (--debug-connections), as much as
    // a busy node writes.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_smap"))
        .args(["watch", "--k8s-from", kubectl.to_str().unwrap(), "--record", rec.to_str().unwrap()])
        .args(["--events", "-", "--debug-connections", "--config", config.to_str().unwrap()])
        .args(["--listen", &http.to_string(), "--node", "stall-node"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !rec.join("recording.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "watch did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stop, made) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let client = churn(port, stop.clone(), made.clone());
    // Nobody reads for four seconds.
    std::thread::sleep(Duration::from_secs(4));
    let during = made.load(Ordering::Relaxed);
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::fs::File::from(read_end).read_to_string(&mut text).unwrap();
        text
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = i32::try_from(watch.id()).unwrap();
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = watch.wait().unwrap();
    let mut stderr = String::new();
    watch.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let events = reader.join().unwrap();

    let recording = Recording::open(&rec).unwrap();
    assert_eq!(recording.meta().counters.dropped, 0, "{stderr}");
    let made = made.load(Ordering::Relaxed);
    let connects = |e: &&str| e.contains("\"kind\":\"tcp_connect\"") && e.contains(&format!("\"dest_port\":{port},"));
    assert_eq!(events.lines().filter(connects).count() as u64, made, "every connection in the change events");
    assert!(during * 4 * 136 > 2 * RING_BYTES, "only {during} connections while nobody read: the test proves nothing");
}
