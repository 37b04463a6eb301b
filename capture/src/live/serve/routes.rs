//! The routes of `smap watch`'s endpoints and their handlers, the map's behind a bearer
//! token check when access is restricted, and the listeners that serve them.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use smap_analyze::html::{Page, Source};

use super::LiveState;
use crate::live::access::{Access, Verdict};
use crate::live::http_server::{serve_bounded, Limits};

/// How often the live page asks for `/map` and `/stats`, in milliseconds.
pub const PAGE_POLL_MS: u64 = 2000;

/// The endpoints' router, open to every client.
pub fn router(state: Arc<LiveState>) -> Router {
    map_routes().merge(open_routes()).with_state(state)
}

/// The endpoints' router where the map (`/`, `/map`, `/stats`) is served only to
/// requests whose bearer token `access` allows; `/metrics` and the probes stay open
/// for Prometheus and the kubelet.
pub fn restricted_router(state: Arc<LiveState>, access: Arc<Access>) -> Router {
    let map = map_routes().route_layer(axum::middleware::from_fn_with_state(access, require_access));
    map.merge(open_routes()).with_state(state)
}

/// What shows the cluster's architecture.
fn map_routes() -> Router<Arc<LiveState>> {
    let source = Source::Live { map: "/map", stats: "/stats", interval_ms: PAGE_POLL_MS };
    let page = Bytes::from(Page { title: "smap watch", source, report: None }.render());
    Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page) }
            }),
        )
        .route("/map", get(map))
        .route("/stats", get(stats))
}

fn open_routes() -> Router<Arc<LiveState>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn require_access(
    State(access): State<Arc<Access>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        // The scheme is case-insensitive (RFC 9110).
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()));
    match access.check(token, request.uri().path()).await {
        Verdict::Allowed => next.run(request).await,
        Verdict::Unauthenticated => {
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid bearer token is needed\n")
                .into_response()
        }
        Verdict::Forbidden => (StatusCode::FORBIDDEN, "this token may not read this path\n").into_response(),
        Verdict::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "the Kubernetes API could not check the token\n").into_response()
        }
    }
}

/// Serves the endpoints on `listener` until `shutdown` resolves, within
/// [`Limits::ENDPOINTS`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<LiveState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, state.clone(), router(state), shutdown).await
}

/// Like [`serve`], with the map restricted to the tokens `access` allows.
pub async fn serve_restricted(
    listener: tokio::net::TcpListener,
    state: Arc<LiveState>,
    access: Arc<Access>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, state.clone(), restricted_router(state, access), shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    state: Arc<LiveState>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.connection_metrics("endpoints");
    serve_bounded(listener, router, Limits::ENDPOINTS, metrics, shutdown).await
}

/// Serves only `/healthz` and `/readyz` on `listener`, within [`Limits::PROBES`]: for
/// the kubelet, on a port of their own, so that clients filling the endpoints' cap
/// cannot fail the agent's probes.
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    state: Arc<LiveState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.connection_metrics("probes");
    let probes = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(state);
    serve_bounded(listener, probes, Limits::PROBES, metrics, shutdown).await
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<LiveState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: kernel programs or Kubernetes state not in yet\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<LiveState>>) -> Response {
    state.fresh().await;
    match state.render_metrics() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n").into_response(),
    }
}

async fn map(State(state): State<Arc<LiveState>>) -> Response {
    state.fresh().await;
    let map = state.published().map.clone();
    ([(header::CONTENT_TYPE, "application/json")], map).into_response()
}

async fn stats(State(state): State<Arc<LiveState>>) -> Response {
    let mut text = serde_json::to_string_pretty(&state.stats()).unwrap_or_default();
    text.push('\n');
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}
