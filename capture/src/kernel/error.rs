//! Why loading, attaching or reading the kernel programs failed, in words that say
//! what to do about it.

use std::io;
use std::path::PathBuf;

/// The oldest kernel whose BPF helpers smap's required programs use (the socket
/// cookie in tracing programs, 5.12; the BTF task pointer, 5.11). Tested: docs/deploy.md.
pub const MINIMUM_KERNEL: &str = "5.12";

/// An error of the kernel capture.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The process lacks capabilities needed to load and attach the programs.
    #[error(
        "not privileged enough to load eBPF programs: missing {}; run as root, or grant \
         these capabilities (CAP_SYS_ADMIN also covers them on older kernels)",
        missing.join(", ")
    )]
    NotPrivileged {
        /// Names of the missing capabilities (CAP_BPF, CAP_PERFMON).
        missing: Vec<&'static str>,
    },

    /// The kernel exposes no BTF, so CO-RE relocation and BTF tracepoints cannot work.
    #[error(
        "no kernel BTF at {path}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y \
         (most distribution kernels since 5.4 are)"
    )]
    NoBtf {
        /// Where BTF was looked for.
        path: PathBuf,
    },

    /// tracefs is not mounted and could not be mounted.
    #[error(
        "tracefs is not mounted and mounting it at {} failed: {source}; mount it \
         (`mount -t tracefs nodev /sys/kernel/tracing`) or mount the host's \
         /sys/kernel/tracing into the container",
        dir.display()
    )]
    Tracefs {
        /// Where the mount was tried.
        dir: PathBuf,
        /// Why the mount failed.
        #[source]
        source: io::Error,
    },

    /// A tracepoint the TCP capture cannot do without does not exist in this kernel.
    #[error(
        "tracepoint {category}:{name} does not exist in this kernel (needed for {purpose}); \
         smap needs Linux {MINIMUM_KERNEL} or newer"
    )]
    TracepointMissing {
        /// Tracepoint category (`sock`, `syscalls`).
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
        /// What smap uses it for.
        purpose: &'static str,
    },

    /// A required program uses a helper this kernel does not have: the kernel is older
    /// than smap supports.
    #[error(
        "this kernel (Linux {release}) is too old for smap: it lacks a BPF helper that program \
         {program} calls (verifier: {missing}); smap needs Linux {MINIMUM_KERNEL} or newer"
    )]
    KernelTooOld {
        /// The running kernel's release (`uname -r`).
        release: String,
        /// Program name in the object.
        program: &'static str,
        /// What the verifier could not find, in its own words (`invalid func unknown#158`).
        missing: String,
    },

    /// The kernel verifier rejected a program.
    #[error("the kernel verifier rejected program {program}: {source}{}", log_suffix(.log))]
    Verifier {
        /// Program name in the object.
        program: &'static str,
        /// The error of the BPF_PROG_LOAD syscall.
        #[source]
        source: io::Error,
        /// The verifier's log.
        log: String,
    },

    /// Parsing the object or creating its maps failed.
    #[error("loading the smap eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),

    /// A program could not be loaded or attached for another reason than the above.
    #[error("program {program}: {what} failed: {source}")]
    Program {
        /// Program name in the object.
        program: &'static str,
        /// The step that failed (load, attach).
        what: &'static str,
        /// The underlying error.
        #[source]
        source: aya::programs::ProgramError,
    },

    /// A program or map the object must contain is absent: the object and this loader
    /// are out of step.
    #[error("the eBPF object has no {0}: rebuild it with ebpf/build.sh")]
    MissingFromObject(String),

    /// A map could not be opened or read.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: aya::maps::MapError,
    },

    /// Polling the ring buffer failed.
    #[error("waiting on the event ring buffer failed: {0}")]
    Poll(#[source] io::Error),

    /// The settings are inconsistent.
    #[error("invalid kernel capture settings: {0}")]
    Config(String),

    /// Started outside a Tokio runtime, which reading the ring buffer needs.
    #[error("the kernel capture must be started inside a Tokio runtime (with IO and time enabled)")]
    NoRuntime,

    /// No cgroup v2 directory to attach the socket hooks to.
    #[error("no cgroup v2 hierarchy to attach socket hooks to: {0}")]
    NoCgroup(String),

    /// A kernel function an optional program attaches to is not in the kernel's BTF
    /// (renamed, or inlined by the compiler).
    #[error("kernel function {function} is not in this kernel's BTF (used for {purpose})")]
    FunctionMissing {
        /// The function.
        function: &'static str,
        /// What smap uses it for.
        purpose: &'static str,
    },

    /// A host file could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The verifier's log on lines of its own, when it wrote one (a refusal before
/// verification, such as lockdown's EPERM, leaves it empty).
fn log_suffix(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("\nverifier log:\n{log}")
    }
}
