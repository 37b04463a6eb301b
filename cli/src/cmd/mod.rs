//! One module per command; each turns parsed flags into library calls.

pub mod analyze;
pub mod build;
pub mod capture;
pub mod k8s;
pub mod netpol;
pub mod simulate;
pub mod watch;

/// Keeps a long-running agent (`smap capture`, `smap watch`) to one malloc arena.
/// glibc gives each thread that allocates its own arena and keeps what it freed there,
/// so every thread's busiest moment stays resident; the agent's threads allocate
/// little, and one arena kept its peak RSS at 10,000 connections/s 15 MiB lower
/// (BENCHMARKS.md). Must run before the runtime and the capture's threads start.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
