//! Kubernetes state from the API server: kube-runtime watchers on Pods, Services,
//! EndpointSlices, Nodes, Namespaces, Ingresses and NetworkPolicies, turned into the
//! recording's object events.
//!
//! Each (kind, namespace scope) is listed, then watched from the list's
//! resourceVersion with bookmarks; a dropped stream resumes from the last
//! resourceVersion seen, a 410 Gone relists and records the difference (deletions
//! missed while disconnected included), other errors are retried with jittered
//! exponential backoff. 401, 403 and 404 cannot be fixed by retrying: on a kind the
//! map needs they end the source with an error naming the verb and the resource; on one
//! it can do without (namespaces, Ingresses, NetworkPolicies) they stop that kind's
//! watch only, with a warning saying what is missing, and the rest goes on.
//!
//! The first list of every scope is returned by [`KubeWatch::start`] as snapshot rows
//! stamped with the time each list completed; every later change comes from
//! [`KubeWatch::next`] stamped with the time it was received.

mod error;
mod resources;
mod tracker;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DynamicObject;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{watcher, WatchStreamExt};
use smap_replay::ObjectEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use error::K8sApiError;
pub use resources::{WatchedKind, WATCHED};

use crate::clock::Clock;
use resources::{plan, Scope};
use tracker::Tracker;

/// Names the kubeconfig file(s) to use, as kubectl reads it.
pub const ENV_KUBECONFIG: &str = "KUBECONFIG";
/// Set by the kubelet in every pod: the API server's in-cluster address.
pub const ENV_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";

/// Namespaces Kubernetes itself runs in, excluded by default.
pub use smap_analyze::config::SYSTEM_NAMESPACES;

/// Batches of changes buffered between the watch task and the capture loop; a slow
/// consumer makes the watch task wait, not drop.
const CHANNEL_BATCHES: usize = 1024;

/// How the API is reached and what is watched.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeOptions {
    /// Kubeconfig file; `None`: `$KUBECONFIG` or `~/.kube/config`, else the pod's
    /// service account (in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; `None`: the current context.
    pub context: Option<String>,
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// Namespaces not to watch (filtered by the API server).
    pub exclude_namespaces: Vec<String>,
    /// First delay before retrying a failed list or watch; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// How long [`KubeWatch::start`] waits for every initial list.
    pub sync_timeout: Duration,
    /// What object events are stamped with: the capture's clock, shared with the kernel
    /// events.
    pub clock: Clock,
}

impl Default for KubeOptions {
    /// All namespaces but the system ones; client-go's retry delays (800 ms to 30 s).
    fn default() -> Self {
        KubeOptions {
            kubeconfig: None,
            context: None,
            namespaces: Vec::new(),
            exclude_namespaces: SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect(),
            retry_min: Duration::from_millis(800),
            retry_max: Duration::from_secs(30),
            sync_timeout: Duration::from_secs(60),
            clock: Clock::measure(),
        }
    }
}

impl KubeOptions {
    /// Whether a cluster can be found without flags: smap runs in a pod (the kubelet
    /// sets `KUBERNETES_SERVICE_HOST`), or `$KUBECONFIG` or `~/.kube/config` exists.
    pub fn cluster_configured() -> bool {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let home_config =
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config")).is_some_and(|p| p.is_file());
        set(ENV_SERVICE_HOST) || set(ENV_KUBECONFIG) || home_config
    }

    /// The client configuration: the kubeconfig given, else the default kubeconfig
    /// (with the context given), else the pod's service account.
    pub async fn client_config(&self) -> Result<kube::Config, K8sApiError> {
        let options = KubeConfigOptions { context: self.context.clone(), ..KubeConfigOptions::default() };
        match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|source| K8sApiError::Kubeconfig { path: path.clone(), source })?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|source| K8sApiError::Kubeconfig { path: path.clone(), source })
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|source| K8sApiError::Context { context: self.context.clone(), source }),
            (None, None) => kube::Config::infer().await.map_err(K8sApiError::NoConfig),
        }
    }
}

/// What the watch has survived so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeCounters {
    /// Relists after the API server expired a watch's resourceVersion (410 Gone).
    pub relists: u64,
    /// Failed lists and watches that were retried (dropped streams, API unavailable).
    pub retried_errors: u64,
    /// Objects that could not be turned into rows (no name), skipped.
    pub unparsable: u64,
    /// Watches of kinds the map can do without that the API server refused (403, or
    /// 404 for a kind it does not serve), stopped for good.
    pub kinds_refused: u64,
}

#[derive(Default)]
struct SharedCounters {
    relists: AtomicU64,
    retried_errors: AtomicU64,
    unparsable: AtomicU64,
    kinds_refused: AtomicU64,
}

/// How far the initial lists are, for the timeout message.
#[derive(Default)]
struct Progress {
    pending: BTreeSet<String>,
    last_error: Option<String>,
}

/// What the watch task hands to [`KubeWatch`].
enum Update {
    Objects(Vec<ObjectEvent>),
    /// Every scope has completed its first list.
    Synced,
    Failed(K8sApiError),
}

/// A running watch of the cluster. Dropping it stops the watch.
pub struct KubeWatch {
    updates: mpsc::Receiver<Update>,
    task: JoinHandle<()>,
    counters: Arc<SharedCounters>,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeWatch {
    /// Connects as `options` say, lists everything and starts watching. Returns once
    /// every initial list is in, with their rows (and any change that arrived
    /// meanwhile, in order).
    pub async fn start(options: KubeOptions) -> Result<(Self, Vec<ObjectEvent>), K8sApiError> {
        let config = options.client_config().await?;
        tracing::info!("Kubernetes API: {}", config.cluster_url);
        let client = kube::Client::try_from(config).map_err(K8sApiError::Client)?;
        Self::start_with_client(client, options).await
    }

    /// [`KubeWatch::start`] with a client built by the caller; `options.kubeconfig`
    /// and `options.context` are not used.
    pub async fn start_with_client(
        client: kube::Client,
        options: KubeOptions,
    ) -> Result<(Self, Vec<ObjectEvent>), K8sApiError> {
        let scopes = plan(&options.namespaces, &options.exclude_namespaces);
        tracing::info!(
            "watching {} ({} list/watch streams)",
            WATCHED.iter().map(WatchedKind::rbac_name).collect::<Vec<_>>().join(", "),
            scopes.len()
        );
        let counters = Arc::new(SharedCounters::default());
        let progress =
            Arc::new(Mutex::new(Progress { pending: scopes.iter().map(Scope::name).collect(), last_error: None }));
        let (sender, updates) = mpsc::channel(CHANNEL_BATCHES);
        let task = tokio::spawn(run(client, scopes, options.clone(), sender, counters.clone(), progress.clone()));
        // Built before waiting, so an early return aborts the task (Drop).
        let mut watch = KubeWatch { updates, task, counters };
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + options.sync_timeout;
        let mut snapshot = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, watch.updates.recv()).await {
                Ok(Some(Update::Objects(mut rows))) => snapshot.append(&mut rows),
                Ok(Some(Update::Synced)) => break,
                Ok(Some(Update::Failed(error))) => return Err(error),
                Ok(None) => return Err(K8sApiError::Stopped),
                Err(_elapsed) => {
                    let (pending, last_error) = match progress.lock() {
                        Ok(p) => (p.pending.iter().cloned().collect::<Vec<_>>().join(", "), p.last_error.clone()),
                        Err(_) => (String::from("some resources"), None),
                    };
                    return Err(K8sApiError::SyncTimeout { waited: options.sync_timeout, pending, last_error });
                }
            }
        }
        tracing::info!("Kubernetes snapshot: {} objects in {:.1}s", snapshot.len(), started.elapsed().as_secs_f64());
        Ok((watch, snapshot))
    }

    /// The next batch of changes, stamped with the time they were received. Waits
    /// until there is one; cancel-safe, so it can sit in a `select!`. An error ends
    /// the watch.
    pub async fn next(&mut self) -> Result<Vec<ObjectEvent>, K8sApiError> {
        match self.updates.recv().await {
            Some(Update::Objects(rows)) => Ok(rows),
            // Sent once, before start returned; never seen here.
            Some(Update::Synced) => Ok(Vec::new()),
            Some(Update::Failed(error)) => Err(error),
            None => Err(K8sApiError::Stopped),
        }
    }

    /// What the watch has survived so far.
    pub fn counters(&self) -> KubeCounters {
        KubeCounters {
            relists: self.counters.relists.load(Ordering::Relaxed),
            retried_errors: self.counters.retried_errors.load(Ordering::Relaxed),
            unparsable: self.counters.unparsable.load(Ordering::Relaxed),
            kinds_refused: self.counters.kinds_refused.load(Ordering::Relaxed),
        }
    }
}

/// What to do about a watcher error.
enum Verdict {
    /// Retrying cannot help.
    Fatal(K8sApiError),
    /// The resourceVersion expired: the watcher relists by itself.
    Gone,
    /// Retry after backoff.
    Retry,
}

/// The verb and status of an API error, if it is one.
fn api_status(error: &watcher::Error) -> Option<(&'static str, &kube::core::Status)> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => Some(("list", status)),
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(("watch", status)),
        watcher::Error::WatchError(status) => Some(("watch", status)),
        _ => None,
    }
}

/// The status code of an error retrying cannot fix: 401, 403, 404 on a list.
fn refusal(error: &watcher::Error) -> Option<u16> {
    let (verb, status) = api_status(error)?;
    match status.code {
        401 | 403 => Some(status.code),
        404 if verb == "list" => Some(404),
        _ => None,
    }
}

fn judge(error: &watcher::Error, scope: &Scope) -> Verdict {
    let Some((verb, status)) = api_status(error) else { return Verdict::Retry };
    let resource = scope.watched.rbac_name();
    let message = status.message.clone();
    match status.code {
        401 => Verdict::Fatal(K8sApiError::Unauthorized { verb, resource, message }),
        403 => Verdict::Fatal(K8sApiError::Forbidden { verb, resource, scope: scope.describe(), message }),
        404 if verb == "list" => Verdict::Fatal(K8sApiError::NotServed { verb, resource, message }),
        410 => Verdict::Gone,
        _ => Verdict::Retry,
    }
}

/// The watch task: every scope's watcher merged into one stream, turned into rows.
async fn run(
    client: kube::Client,
    scopes: Vec<Scope>,
    options: KubeOptions,
    sender: mpsc::Sender<Update>,
    counters: Arc<SharedCounters>,
    progress: Arc<Mutex<Progress>>,
) {
    let streams = scopes.iter().enumerate().map(|(index, scope)| {
        let resource = scope.watched.api_resource();
        let api: Api<DynamicObject> = match &scope.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &scope.field_selector {
            config = config.fields(selector);
        }
        // client-go's policy: back off exponentially, and only forget the backoff after
        // two quiet minutes, so a server that fails right after each success is not
        // hammered.
        let backoff =
            ResetTimerBackoff::new(Jittered::new(options.retry_min, options.retry_max), Duration::from_secs(120));
        // A refusal ends the stream after it is reported: retrying cannot help, and an
        // optional kind's watch must not keep knocking.
        watcher(api, config)
            .backoff(backoff)
            .scan(false, |refused, item| {
                if *refused {
                    return futures::future::ready(None);
                }
                *refused = matches!(&item, Err(e) if refusal(e).is_some());
                futures::future::ready(Some(item))
            })
            .map(move |item| (index, item))
            .boxed()
    });
    let mut merged = futures::stream::select_all(streams);
    let mut trackers: Vec<Tracker> = scopes.iter().map(|s| Tracker::new(s.watched.kind)).collect();
    let mut failing = vec![false; scopes.len()];
    let mut synced = false;
    while let Some((index, item)) = merged.next().await {
        let (Some(scope), Some(tracker)) = (scopes.get(index), trackers.get_mut(index)) else { continue };
        let update = match item {
            Ok(event) => {
                if std::mem::take(&mut failing[index]) {
                    tracing::info!("{}: recovered", scope.name());
                }
                let was_synced = tracker.synced;
                let before = tracker.unparsable;
                let rows = tracker.handle(event, options.clock.now());
                counters.unparsable.fetch_add(tracker.unparsable - before, Ordering::Relaxed);
                if !was_synced && tracker.synced {
                    if let Ok(mut p) = progress.lock() {
                        p.pending.remove(&scope.name());
                    }
                }
                Update::Objects(rows)
            }
            Err(error) => match judge(&error, scope) {
                Verdict::Fatal(error)
                    if !scope.watched.needed && !matches!(error, K8sApiError::Unauthorized { .. }) =>
                {
                    counters.kinds_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{}: {error}; going on without {} (the map does not need them)",
                        scope.name(),
                        scope.watched.rbac_name()
                    );
                    tracker.synced = true;
                    if let Ok(mut p) = progress.lock() {
                        p.pending.remove(&scope.name());
                    }
                    Update::Objects(Vec::new())
                }
                Verdict::Fatal(error) => {
                    // The receiver may be gone already; there is nobody else to tell.
                    let _ = sender.send(Update::Failed(error)).await;
                    return;
                }
                Verdict::Gone => {
                    counters.relists.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("{}: resourceVersion expired (410 Gone), relisting", scope.name());
                    continue;
                }
                Verdict::Retry => {
                    counters.retried_errors.fetch_add(1, Ordering::Relaxed);
                    // Once per streak at warn: errors repeat at most once per backoff
                    // delay, and the first says what is wrong.
                    if !std::mem::replace(&mut failing[index], true) {
                        tracing::warn!("{}: {error}; retrying", scope.name());
                    } else {
                        tracing::debug!("{}: {error}; retrying", scope.name());
                    }
                    if let Ok(mut p) = progress.lock() {
                        p.last_error = Some(error.to_string());
                    }
                    continue;
                }
            },
        };
        if matches!(&update, Update::Objects(rows) if !rows.is_empty()) && sender.send(update).await.is_err() {
            return;
        }
        if !synced && trackers.iter().all(|t| t.synced) {
            synced = true;
            if sender.send(Update::Synced).await.is_err() {
                return;
            }
        }
    }
}

/// Exponential backoff with "equal jitter" (half fixed, half random): DaemonSet pods
/// on every node reconnecting after an API server restart spread out instead of
/// arriving together.
struct Jittered {
    min: Duration,
    max: Duration,
    attempt: u32,
    random: RandomState,
}

impl Jittered {
    fn new(min: Duration, max: Duration) -> Self {
        Jittered { min, max: max.max(min), attempt: 0, random: RandomState::new() }
    }
}

impl Iterator for Jittered {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let full = self.min.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        // A fraction in [0, 1) from a randomly keyed hash: no rand dependency needed.
        let fraction = (self.random.hash_one(self.attempt) >> 11) as f64 / (1u64 << 53) as f64;
        Some(half + half.mul_f64(fraction))
    }
}

impl Backoff for Jittered {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Jittered::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<Duration> = (0..6).map(|_| b.next().unwrap_or_default()).collect();
        let caps = [100, 200, 400, 800, 1000, 1000];
        for (delay, cap) in delays.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*delay >= cap / 2 && *delay <= cap, "{delay:?} not in [{:?}, {cap:?}]", cap / 2);
        }
        b.reset();
        assert!(b.next().unwrap_or_default() <= Duration::from_millis(100));
    }

    #[test]
    fn default_options_exclude_the_system_namespaces() {
        let options = KubeOptions::default();
        assert_eq!(options.exclude_namespaces, ["kube-system", "kube-public", "kube-node-lease"]);
        assert!(options.namespaces.is_empty());
    }
}
