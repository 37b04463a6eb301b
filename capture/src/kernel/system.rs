//! What the host must provide before the programs load: capabilities, kernel BTF,
//! tracefs, the cgroup2 mount, and the ephemeral port range.

use std::ffi::CString;
use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::error::KernelError;

/// Kernel BTF, needed for CO-RE relocation and the BTF tracepoints.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Where aya looks for tracefs, in its order; the first is where we mount it if needed.
const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities loading and attaching need that the process lacks, by name.
///
/// Each is also granted by CAP_SYS_ADMIN (kernels before 5.8 know only that one).
/// CAP_BPF: create maps and load programs. CAP_PERFMON: tracing programs and their
/// kernel memory reads. CAP_NET_ADMIN: load and attach the cgroup socket hooks.
pub(crate) fn missing_capabilities() -> Result<Vec<&'static str>, KernelError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|source| KernelError::Io { what: "reading /proc/self/status".into(), source })?;
    let eff = parse_cap_eff(&status).ok_or_else(|| KernelError::Io {
        what: "reading CapEff in /proc/self/status".into(),
        source: io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"),
    })?;
    Ok(missing_from(eff))
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn missing_from(eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| eff & (1u64 << cap) != 0 || eff & (1u64 << CAP_SYS_ADMIN) != 0;
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect()
}

/// One line of /proc/mounts: mount point and filesystem type.
fn mounts() -> Result<Vec<(PathBuf, String)>, KernelError> {
    let text = fs::read_to_string("/proc/mounts")
        .map_err(|source| KernelError::Io { what: "reading /proc/mounts".into(), source })?;
    Ok(parse_mounts(&text))
}

fn parse_mounts(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _device = fields.next()?;
            let dir = fields.next()?;
            let fstype = fields.next()?;
            Some((PathBuf::from(unescape_mount_path(dir)), fstype.to_owned()))
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c))).and_then(|d| {
            u8::try_from(u16::from(d[0] - b'0') * 64 + u16::from(d[1] - b'0') * 8 + u16::from(d[2] - b'0')).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first cgroup2 mount (on hybrid v1/v2 hosts often /sys/fs/cgroup/unified).
pub(crate) fn cgroup2_mount() -> Result<Option<PathBuf>, KernelError> {
    Ok(mounts()?.into_iter().find(|(_, fs)| fs == "cgroup2").map(|(dir, _)| dir))
}

/// Makes sure tracefs is mounted where aya reads tracepoint ids, mounting it at
/// /sys/kernel/tracing if it is nowhere. The mount is left in place: it is the kernel's
/// standard location, other tools expect it there, and it holds no state of ours.
pub(crate) fn ensure_tracefs() -> Result<PathBuf, KernelError> {
    let mounted = mounts()?;
    for dir in TRACEFS_DIRS {
        if mounted.iter().any(|(d, fs)| fs == "tracefs" && d == Path::new(dir)) {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = TRACEFS_DIRS[0];
    let c_target = CString::new(target).map_err(|e| KernelError::Tracefs {
        dir: target.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call,
    // and the data argument may be null for tracefs.
    let rc = unsafe { libc::mount(c"tracefs".as_ptr(), c_target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(KernelError::Tracefs { dir: target.into(), source: io::Error::last_os_error() });
    }
    tracing::info!(dir = target, "mounted tracefs");
    Ok(PathBuf::from(target))
}

/// The host's ephemeral (client) port range, `net.ipv4.ip_local_port_range`.
pub(crate) fn ephemeral_ports() -> RangeInclusive<u16> {
    const LINUX_DEFAULT: RangeInclusive<u16> = 32768..=60999;
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some(lo..=hi),
                _ => None,
            }
        })
        .unwrap_or(LINUX_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_of_root_and_of_nobody() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(missing_from(parse_cap_eff(root).unwrap_or(0)), Vec::<&str>::new());
        let nobody = "CapEff:\t0000000000000000\n";
        assert_eq!(
            missing_from(parse_cap_eff(nobody).unwrap_or(u64::MAX)),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]
        );
        // CAP_SYS_ADMIN alone stands in for all three.
        assert_eq!(missing_from(1 << CAP_SYS_ADMIN), Vec::<&str>::new());
        // CAP_BPF + CAP_NET_ADMIN without CAP_PERFMON.
        assert_eq!(missing_from((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)), vec!["CAP_PERFMON"]);
    }

    #[test]
    fn finds_cgroup2_among_v1_mounts_and_unescapes() {
        let text = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n\
                    cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
                    tmpfs /mnt/a\\040b tmpfs rw 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(
            m.iter().find(|(_, fs)| fs == "cgroup2").map(|(d, _)| d.clone()),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m[2].0, PathBuf::from("/mnt/a b"));
    }
}
