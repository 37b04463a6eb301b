//! As root: the recording's disk stalls for seconds in the middle of a busy capture, as a
//! node's root volume does under another pod's I/O or a network disk does when its
//! path fails over. The capture must keep draining the kernel: no event dropped, every
//! connection recorded once the disk is back.
//!
//! The stall is real: an ext4 filesystem on a loop device, frozen with `fsfreeze` (every
//! write and fsync blocks until it is thawed). Needs root, losetup, mkfs.ext4 and
//! fsfreeze (util-linux, e2fsprogs); skipped with a printed reason elsewhere.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_e2e::{require_root, say_skipped};
use smap_replay::{ConnKind, Recording};

use crate::e2e::{Capture, ONE_AT_A_TIME};

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
    let kubectl = fs.mount.join("k8s.json");
    std::fs::write(&kubectl, r#"{"apiVersion":"v1","kind":"List","items":[]}"#).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
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
