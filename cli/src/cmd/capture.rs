//! `smap capture`: load the eBPF programs, follow Kubernetes state, record both.

use std::process::ExitCode;

use anyhow::Context;
use smap_capture::kernel::KernelConfig;
use smap_capture::live::record::{capture, CaptureOptions, NoConsumer, DEFAULT_REORDER_WINDOW};

use crate::cli::CaptureArgs;
use crate::cmd::build::load_config;

pub fn run(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::one_malloc_arena();
    let config = load_config(args.config.as_deref())?;
    let node = node_name(args.node.as_deref())?;
    let mut kernel = KernelConfig::new(node.as_str());
    kernel.cgroup_path = args.cgroup_path.clone();
    let max_connections = args.max_connections.unwrap_or(config.max_connections);
    kernel.max_connections = u32::try_from(max_connections).context("--max-connections is too large")?;
    kernel.progress_interval = config.progress_interval;
    kernel.ring_buffer_bytes = config.ring_buffer_bytes;
    kernel.netns_dir = Some(args.netns_dir.clone());
    let options = CaptureOptions {
        out: Some(args.out.clone()),
        duration: args.duration.map(Into::into),
        k8s: crate::cmd::k8s::source(&args.k8s, &config),
        kernel,
        checkpoint_every: args.checkpoint.into(),
        reorder_window: DEFAULT_REORDER_WINDOW,
        config: serde_json::to_value(&config).context("serializing config")?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting runtime")?;
    let shutdown = {
        let _inside = runtime.enter();
        shutdown_signal()
    };
    let summary = runtime
        .block_on(capture(options, shutdown, &mut NoConsumer))
        .with_context(|| format!("capturing into {}", args.out.display()))?;
    #[expect(clippy::print_stdout, reason = "the command's one-line result")]
    {
        println!(
            "captured {} events ({} connections, {} DNS answers, {} pod cgroups, {} Kubernetes objects) in {:.1}s into {}; dropped {}, evicted {}{}",
            summary.conn_events,
            summary.connections,
            summary.dns_answers,
            summary.pod_cgroups,
            summary.object_events,
            summary.elapsed.as_secs_f64(),
            args.out.display(),
            summary.dropped,
            summary.evicted,
            if summary.skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped hooks: {}", summary.skipped.iter().map(|s| s.hook).collect::<Vec<_>>().join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The node name to stamp on events: `--node`, else the hostname.
pub fn node_name(flag: Option<&str>) -> anyhow::Result<String> {
    match flag {
        Some(node) => Ok(node.to_owned()),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .context("reading the hostname (give --node)"),
    }
}

/// Resolves on SIGINT or SIGTERM: the capture then flushes and finishes the recording.
///
/// The handlers are installed when this is called, not when the future is first
/// polled: a signal that arrives while the programs load or the recording is created
/// must stop the capture cleanly, not kill the process. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
            // Without signal handlers the capture still ends on --duration; a signal then
            // kills the process, and the checkpointed segments survive.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}
