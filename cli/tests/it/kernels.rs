//! As root: on the kernel it runs on, `smap capture` either captures or says in one
//! line that the kernel is too old, never a verifier log or a panic. tests/vm runs this
//! under distribution kernels older and newer than smap's minimum.

use smap_capture::kernel::MINIMUM_KERNEL;
use smap_e2e::require_root;

use crate::e2e::{empty_kubectl, ONE_AT_A_TIME};
use crate::{assert_input_error, smap, stderr};

/// (major, minor) of a release such as `6.1.0-50-amd64` or `6.12.95+deb12-amd64`.
fn major_minor(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn capture_runs_or_says_in_one_line_that_the_kernel_is_too_old() {
    if !require_root("capture_runs_or_says_in_one_line_that_the_kernel_is_too_old") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    // An empty cluster: without Kubernetes state the capture warns, which is another line.
    let kubectl = empty_kubectl(dir.path());
    let o =
        smap(&["capture", "--out", out.to_str().unwrap(), "--duration", "1s", "--k8s-from", kubectl.to_str().unwrap()]);
    if major_minor(&release) < major_minor(MINIMUM_KERNEL) {
        assert_input_error(&o, &format!("this kernel (Linux {release}) is too old for smap"));
        assert!(stderr(&o).contains(&format!("smap needs Linux {MINIMUM_KERNEL} or newer")), "{}", stderr(&o));
        assert!(!out.exists(), "no empty recording left behind");
    } else {
        assert!(o.status.success(), "Linux {release}: {}", stderr(&o));
        assert!(out.join("recording.json").exists(), "a recording");
    }
}

#[test]
fn releases_compare_by_major_and_minor() {
    assert_eq!(major_minor("5.10.0-32-amd64"), (5, 10));
    assert_eq!(major_minor("6.12.95+deb12-amd64"), (6, 12));
    assert!(major_minor("5.10.0-32-amd64") < major_minor(MINIMUM_KERNEL));
    assert!(major_minor("6.1.0-50-amd64") > major_minor(MINIMUM_KERNEL));
}
