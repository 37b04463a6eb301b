//! The accept loop of `smap watch`'s endpoints, bounded against clients that connect and
//! stall: at most [`Limits::max_connections`] at once (the excess closed at accept,
//! before a byte is read), request headers within [`Limits::header_timeout`] and at
//! most 16 KiB, and no connection older than [`Limits::max_connection_age`]. The
//! node's pods can reach the agent's port; none of them can make it hold more than the
//! cap, so its memory for connections stays near `max_connections` x 16 KiB of buffers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// How much a listener admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, also between requests on a
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// Age at which a connection is closed after its current request.
    pub max_connection_age: Duration,
}

impl Limits {
    /// For the endpoints: Prometheus, browsers, `curl`.
    pub const ENDPOINTS: Limits = Limits {
        max_connections: 256,
        header_timeout: Duration::from_secs(5),
        max_connection_age: Duration::from_secs(60),
    };
    /// For the probe listener, which only the kubelet should use.
    pub const PROBES: Limits = Limits {
        max_connections: 16,
        header_timeout: Duration::from_secs(2),
        max_connection_age: Duration::from_secs(60),
    };
}

/// Bytes of request headers a connection may buffer (hyper's minimum is 8 KiB).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long connections may take to finish their request once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a listener counts, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ConnectionMetrics {
    /// Connections closed at accept because `max_connections` were open.
    pub refused: Counter,
    /// Connections open now.
    pub open: Gauge,
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets
/// open connections finish their request for up to five seconds.
pub async fn serve_bounded(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_seen) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_transient(&error) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let (mut stopped, open) = (stop_seen.clone(), metrics.open.clone());
        open.inc();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEADER_BYTES);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let finished = tokio::select! {
                _ = connection.as_mut() => true,
                () = tokio::time::sleep(limits.max_connection_age) => false,
                _ = stopped.wait_for(|stop| *stop) => false,
            };
            if !finished {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every permit back: every connection done (or the grace is over).
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all)).await;
    Ok(())
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: out of descriptors or memory for a moment.
        || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
