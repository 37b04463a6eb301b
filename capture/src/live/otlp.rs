//! OTLP push of the map's per-dependency metrics (`smap watch --otlp-endpoint`), with
//! the OpenTelemetry SDK: the series `/metrics` serves (see `graph_metrics.rs`), as
//! cumulative sums, to a collector over gRPC (4317) or HTTP/protobuf (4318), every
//! interval, with the resource attributes `service.name`, `service.version`,
//! `k8s.node.name` and `host.name`.
//!
//! A collector that is down costs no memory past the SDK's one set of aggregates, and
//! loses no counts: the sums are cumulative, so the first export that gets through
//! carries the totals. A failed export is retried twice within the interval, then
//! counted (`smap_otlp_exports_failed_total` on `/metrics`) and logged at most once a
//! minute.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{AsyncInstrument, MeterProvider as _, ObservableCounter};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource;

use smap_analyze::topology::Failures;

use crate::live::graph_metrics::DependencyTotals;
use crate::live::serve::LiveState;

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses before the retries of a failed export.
const RETRY_AFTER: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
/// How long an export waits for the pipeline to bring the map up to date.
const FRESH_WAIT: Duration = Duration::from_millis(1500);
/// At most one warning about failed exports per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC (the collector's port 4317).
    Grpc,
    /// HTTP with protobuf bodies (port 4318), to `ENDPOINT/v1/metrics`.
    HttpProtobuf,
}

/// Where and how often to push.
#[derive(Clone, Debug)]
pub struct OtlpOptions {
    /// `http://host:port` of the collector.
    pub endpoint: String,
    /// The transport.
    pub protocol: OtlpProtocol,
    /// Time between exports.
    pub interval: Duration,
    /// This node's name (`k8s.node.name`).
    pub node: String,
}

/// Why the push could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The SDK refused the endpoint or could not build its client.
    #[error("OTLP endpoint {endpoint}: {reason}")]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// What the SDK said.
        reason: String,
    },
}

/// The running push; [`OtlpPush::shutdown`] exports once more and stops.
pub struct OtlpPush {
    provider: SdkMeterProvider,
    _instruments: Vec<ObservableCounter<u64>>,
}

/// The exporter, with retries, failure counts and rate-limited warnings around it.
struct Retrying {
    inner: MetricExporter,
    state: Arc<LiveState>,
    last_warning: Mutex<Option<Instant>>,
}

impl PushMetricExporter for Retrying {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut result = self.inner.export(metrics).await;
        for pause in RETRY_AFTER {
            if result.is_ok() {
                return result;
            }
            // The reader's own thread: sleeping here delays nothing else.
            std::thread::sleep(pause);
            result = self.inner.export(metrics).await;
        }
        if let Err(error) = &result {
            self.state.metrics().otlp_export_failed();
            let mut last = self.last_warning.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                *last = Some(Instant::now());
                tracing::warn!("OTLP export failed (retried, counted in smap_otlp_exports_failed_total): {error}");
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// An attribute a sum's data point carries besides `client` and `server`.
type Attribute = Option<(&'static str, &'static str)>;
/// One per-dependency sum: its name, description and data points.
type Sum = (&'static str, &'static str, fn(&DependencyTotals) -> Vec<(u64, Attribute)>);

/// Data points by cause, only for causes that occurred (as on `/metrics`).
fn by_reason(counts: &Failures) -> Vec<(u64, Attribute)> {
    counts.by_reason().into_iter().filter(|(_, n)| *n > 0).map(|(reason, n)| (n, Some(("reason", reason)))).collect()
}

const SUMS: [Sum; 6] = [
    ("traces_service_graph_request_total", "Connections (TCP) and flows (UDP) from client to server", |d| {
        vec![(d.requests, Some(("connection_type", d.connection_type)))]
    }),
    ("traces_service_graph_request_failed_total", "Failed connection attempts from client to server", |d| {
        vec![(d.failed, Some(("connection_type", d.connection_type)))]
    }),
    ("smap_dependency_bytes_total", "Payload bytes between client and server, by direction", |d| {
        vec![(d.bytes_sent, Some(("direction", "sent"))), (d.bytes_received, Some(("direction", "received")))]
    }),
    ("smap_dependency_failures_total", "Failed connection attempts from client to server, by cause", |d| {
        by_reason(&d.failures)
    }),
    (
        "smap_dependency_aborted_total",
        "Established connections from client to server that ended without the FIN exchange, by cause",
        |d| by_reason(&d.aborted),
    ),
    (
        "smap_dependency_retransmits_total",
        "TCP segments retransmitted between client and server, counted when connections close",
        |d| if d.retransmits > 0 { vec![(d.retransmits, None)] } else { Vec::new() },
    ),
];

impl OtlpPush {
    /// Starts exporting every `options.interval`. gRPC needs a Tokio runtime entered;
    /// HTTP must be started (and shut down) outside one (its client blocks).
    pub fn start(options: &OtlpOptions, state: Arc<LiveState>) -> Result<Self, OtlpError> {
        let endpoint = options.endpoint.trim_end_matches('/').to_owned();
        let built = match options.protocol {
            OtlpProtocol::Grpc => {
                MetricExporter::builder().with_tonic().with_endpoint(&endpoint).with_timeout(EXPORT_TIMEOUT).build()
            }
            OtlpProtocol::HttpProtobuf => MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{endpoint}/v1/metrics"))
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
        };
        let inner = built.map_err(|e| OtlpError::Exporter { endpoint: endpoint.clone(), reason: e.to_string() })?;
        let exporter = Retrying { inner, state: state.clone(), last_warning: Mutex::new(None) };
        let reader = PeriodicReader::builder(exporter).with_interval(options.interval).build();
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "smap"),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("k8s.node.name", options.node.clone()),
                KeyValue::new("host.name", hostname()),
            ])
            .build();
        let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        let meter = provider.meter("smap");
        let instruments = SUMS
            .iter()
            .enumerate()
            .map(|(index, &(name, description, values))| {
                let state = state.clone();
                meter
                    .u64_observable_counter(name)
                    .with_description(description)
                    .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
                        if index == 0 {
                            // The first instrument of an export asks for the map as of now.
                            state.wait_fresh_blocking(FRESH_WAIT);
                        }
                        for dependency in state.graph().dependency_totals() {
                            for (value, attribute) in values(&dependency) {
                                let mut attributes = vec![
                                    KeyValue::new("client", dependency.client.clone()),
                                    KeyValue::new("server", dependency.server.clone()),
                                ];
                                attributes.extend(attribute.map(|(key, value)| KeyValue::new(key, value)));
                                observer.observe(value, &attributes);
                            }
                        }
                    })
                    .build()
            })
            .collect();
        Ok(OtlpPush { provider, _instruments: instruments })
    }

    /// Exports what is current once more and stops.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!("OTLP: the last export at shutdown failed: {error}");
        }
    }
}
