//! `smap watch`: the live pipeline through the change tracker, change events to stdout
//! (or a file), HTTP endpoints on loopback, and optionally a recording of it all.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use smap_analyze::config::WATCH_MAP_RETENTION;
use smap_analyze::events::EmitterOptions;
use smap_capture::k8s_api::KubeOptions;
use smap_capture::kernel::KernelConfig;
use smap_capture::live::access::{Access, KubeAccess, TokenFile};
use smap_capture::live::otlp::{OtlpOptions, OtlpProtocol, OtlpPush};
use smap_capture::live::record::{capture, CaptureOptions, DEFAULT_REORDER_WINDOW};
use smap_capture::live::serve::{serve, serve_probes, serve_restricted, LiveState};
use smap_capture::live::watch::WatchConsumer;

use crate::cli::{Auth, OtlpProtocolArg, WatchArgs};
use crate::cmd::build::load_config;
use crate::cmd::capture::shutdown_signal;

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::one_malloc_arena();
    let mut config = load_config(args.config.as_deref())?;
    if let Some(max) = args.max_connections {
        config.max_connections = max.max(1);
    }
    // A live map holds what it saw lately, so a long session stays the size it was.
    config.map_retention.get_or_insert(WATCH_MAP_RETENTION);
    let node = crate::cmd::capture::node_name(args.node.as_deref())?;
    let mut kernel = KernelConfig::new(node.as_str());
    // A new dependency is reported within about two drain intervals plus the reorder
    // window: draining every 10 ms keeps that near 40 ms, at 100 cheap timer wakeups a
    // second.
    kernel.drain_interval = std::time::Duration::from_millis(10);
    kernel.cgroup_path = args.cgroup_path.clone();
    kernel.max_connections = u32::try_from(config.max_connections).context("--max-connections is too large")?;
    kernel.progress_interval = config.progress_interval;
    kernel.ring_buffer_bytes = config.ring_buffer_bytes;
    kernel.netns_dir = Some(args.netns_dir.clone());
    let options = CaptureOptions {
        out: args.record.clone(),
        duration: args.duration.map(Into::into),
        k8s: crate::cmd::k8s::source(&args.k8s, &config),
        kernel,
        checkpoint_every: args.checkpoint.into(),
        reorder_window: DEFAULT_REORDER_WINDOW,
        config: serde_json::to_value(&config).context("serializing config")?,
    };
    let sink: Box<dyn Write + Send> = if args.events.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            fs_err::File::create(&args.events)
                .with_context(|| format!("creating --events {}", args.events.display()))?,
        )
    };
    let state = LiveState::new();
    let emitter = EmitterOptions { debug_connections: args.debug_connections };
    let mut consumer =
        WatchConsumer::new(config, emitter, sink, state.clone()).context("starting the change-event writer")?;
    let stop = consumer.stop_signal();

    // Two workers: the pipeline on one, so HTTP requests never wait for a batch.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting runtime")?;
    let signal = {
        let _inside = runtime.enter();
        shutdown_signal()
    };
    let otlp = start_otlp(&args, &runtime, &node, &state)?;
    let summary = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {} (give --listen)", args.listen))?;
        let address = listener.local_addr().context("reading the listening address")?;
        tracing::info!("serving / /healthz /readyz /metrics /map /stats on http://{address}");
        let (stop_server, server_stopped) = tokio::sync::watch::channel(false);
        let stopped = |mut seen: tokio::sync::watch::Receiver<bool>| async move {
            let _ = seen.wait_for(|stop| *stop).await;
        };
        let probes = match args.probe_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("listening on {address} (give --probe-listen)"))?;
                tracing::info!("serving /healthz /readyz on http://{address}");
                Some(tokio::spawn(serve_probes(listener, state.clone(), stopped(server_stopped.clone()))))
            }
            None => None,
        };
        let server = match access(&args).await? {
            None => tokio::spawn(serve(listener, state.clone(), stopped(server_stopped))),
            Some(access) => tokio::spawn(serve_restricted(listener, state.clone(), access, stopped(server_stopped))),
        };
        let shutdown = async move {
            tokio::select! {
                () = signal => {}
                () = stop.notified() => {}
            }
        };
        let summary = capture(options, shutdown, &mut consumer).await;
        // Flush pending changes and the final snapshot whatever ended the capture.
        let finished = consumer.finish();
        let _ = stop_server.send(true);
        for server in std::iter::once(server).chain(probes) {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!("HTTP server: {error}"),
                Err(error) => tracing::warn!("HTTP server task: {error}"),
            }
        }
        let summary = summary.context("watching")?;
        finished.context("writing change events")?;
        anyhow::Ok(summary)
    });
    // Outside the runtime: the HTTP exporter's client blocks.
    if let Some(otlp) = otlp {
        otlp.shutdown();
    }
    let summary = summary?;
    let emitter = consumer.tracker().emitter();
    let (counters, gauges) = (emitter.counters(), emitter.gauges());
    tracing::info!(
        "watched {} connection events and {} Kubernetes objects in {:.1}s: {} services, {} dependencies; dropped {}, evicted {}",
        counters.conn_events.values().sum::<u64>(),
        counters.object_events.values().sum::<u64>(),
        summary.elapsed.as_secs_f64(),
        gauges.services.values().sum::<u64>(),
        gauges.dependencies,
        summary.dropped,
        summary.evicted,
    );
    if let Some(record) = &args.record {
        tracing::info!("recorded into {}", record.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the OTLP push when `--otlp-endpoint` is given: gRPC inside the runtime (its
/// channel runs there), HTTP outside it (its client blocks).
fn start_otlp(
    args: &WatchArgs,
    runtime: &tokio::runtime::Runtime,
    node: &str,
    state: &Arc<LiveState>,
) -> anyhow::Result<Option<OtlpPush>> {
    let Some(endpoint) = &args.otlp_endpoint else { return Ok(None) };
    let protocol = match args.otlp_protocol {
        Some(OtlpProtocolArg::Grpc) => OtlpProtocol::Grpc,
        Some(OtlpProtocolArg::HttpProtobuf) => OtlpProtocol::HttpProtobuf,
        None if endpoint.trim_end_matches('/').ends_with(":4318") => OtlpProtocol::HttpProtobuf,
        None => OtlpProtocol::Grpc,
    };
    let options = OtlpOptions {
        endpoint: endpoint.clone(),
        protocol,
        interval: args.otlp_interval.into(),
        node: node.to_owned(),
    };
    let push = match protocol {
        OtlpProtocol::Grpc => {
            let _inside = runtime.enter();
            OtlpPush::start(&options, state.clone())
        }
        OtlpProtocol::HttpProtobuf => OtlpPush::start(&options, state.clone()),
    };
    let push = push.context("starting the OTLP push")?;
    tracing::info!("pushing metrics every {} to {endpoint} over OTLP", args.otlp_interval);
    Ok(Some(push))
}

/// Who may read the map, as `--auth` says: `None` for anyone.
async fn access(args: &WatchArgs) -> anyhow::Result<Option<Arc<Access>>> {
    let access = match (args.auth, &args.token_file) {
        (Auth::None, _) => return Ok(None),
        (Auth::Kubernetes, _) => {
            let options = KubeOptions {
                kubeconfig: args.k8s.kubeconfig.clone(),
                context: args.k8s.context.clone(),
                ..KubeOptions::default()
            };
            tracing::info!("/ /map /stats need a bearer token the Kubernetes API allows");
            Access::Kubernetes(KubeAccess::connect(&options).await.context("--auth kubernetes")?)
        }
        (Auth::TokenFile, Some(path)) => {
            tracing::info!("/ /map /stats need a bearer token of {}", path.display());
            Access::Tokens(TokenFile::read(path)?)
        }
        (Auth::TokenFile, None) => anyhow::bail!("--auth token-file needs --token-file"),
    };
    Ok(Some(Arc::new(access)))
}
