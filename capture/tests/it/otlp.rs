//! `smap watch --otlp-endpoint`: receivers inside the test speak the real OTLP protocol
//! (a tonic gRPC server and an HTTP/protobuf endpoint on the `opentelemetry-proto`
//! types) and get one data point per dependency with the map's totals and smap's
//! resource attributes; a collector that is down and comes back loses nothing, and the
//! failed exports are counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use prost::Message;
use smap_analyze::events::EmitterOptions;
use smap_analyze::Config;
use smap_capture::live::otlp::{OtlpOptions, OtlpProtocol, OtlpPush};
use smap_capture::live::record::LiveConsumer;
use smap_capture::live::serve::LiveState;
use smap_capture::live::watch::WatchConsumer;
use smap_replay::{MergedEvents, Recording};

/// Every request a receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// (metric, client, server, connection_type, direction or reason) -> value, from the latest
/// request holding `traces_service_graph_request_total`.
type Points = BTreeMap<(String, String, String, String), u64>;

impl Received {
    fn latest(&self) -> Option<(Points, BTreeMap<String, String>)> {
        let requests = self.0.lock().unwrap();
        let request = requests.iter().rev().find(|r| {
            r.resource_metrics
                .iter()
                .flat_map(|m| &m.scope_metrics)
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "traces_service_graph_request_total")
        })?;
        let mut points = Points::new();
        let mut resource = BTreeMap::new();
        for metrics in &request.resource_metrics {
            for attribute in metrics.resource.iter().flat_map(|r| &r.attributes) {
                if let Some(AnyValue::StringValue(value)) = attribute.value.as_ref().and_then(|v| v.value.clone()) {
                    resource.insert(attribute.key.clone(), value);
                }
            }
            for metric in metrics.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let Some(Data::Sum(sum)) = &metric.data else { panic!("{} is not a sum", metric.name) };
                assert!(sum.is_monotonic, "{}", metric.name);
                assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32, "{}", metric.name);
                for point in &sum.data_points {
                    let label = |k: &str| {
                        point
                            .attributes
                            .iter()
                            .find(|a| a.key == k)
                            .and_then(|a| a.value.clone())
                            .and_then(|v| v.value)
                            .map(|v| match v {
                                AnyValue::StringValue(s) => s,
                                other => panic!("{other:?}"),
                            })
                    };
                    let kind = label("connection_type")
                        .or_else(|| label("direction"))
                        .or_else(|| label("reason"))
                        .unwrap_or_default();
                    let Some(Number::AsInt(value)) = point.value else { panic!("{point:?}") };
                    let key = (metric.name.clone(), label("client").unwrap(), label("server").unwrap(), kind);
                    points.insert(key, u64::try_from(value).unwrap());
                }
            }
        }
        Some((points, resource))
    }
}

/// The shop fixture through the live path, finished: the state a push reads.
fn live_state() -> (Arc<LiveState>, Points) {
    let state = LiveState::new();
    let mut consumer =
        WatchConsumer::new(Config::default(), EmitterOptions::default(), Box::new(std::io::sink()), state.clone())
            .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings/shop-simulated");
    let events: Vec<_> =
        MergedEvents::new(&[Recording::open(&root).unwrap()], Vec::new()).unwrap().map(Result::unwrap).collect();
    consumer.ready();
    consumer.events(&events);
    consumer.finish().unwrap();
    let mut want = Points::new();
    for d in state.graph().dependency_totals() {
        let (c, s) = (d.client.clone(), d.server.clone());
        let t = d.connection_type.to_owned();
        want.insert(("traces_service_graph_request_total".into(), c.clone(), s.clone(), t.clone()), d.requests);
        want.insert(("traces_service_graph_request_failed_total".into(), c.clone(), s.clone(), t), d.failed);
        want.insert(("smap_dependency_bytes_total".into(), c.clone(), s.clone(), "sent".into()), d.bytes_sent);
        want.insert(("smap_dependency_bytes_total".into(), c.clone(), s.clone(), "received".into()), d.bytes_received);
        for (metric, counts) in
            [("smap_dependency_failures_total", d.failures), ("smap_dependency_aborted_total", d.aborted)]
        {
            for (reason, n) in counts.by_reason().into_iter().filter(|(_, n)| *n > 0) {
                want.insert((metric.into(), c.clone(), s.clone(), reason.into()), n);
            }
        }
        if d.retransmits > 0 {
            want.insert(("smap_dependency_retransmits_total".into(), c, s, String::new()), d.retransmits);
        }
    }
    assert!(
        want.keys().any(|(metric, ..)| metric == "smap_dependency_failures_total"),
        "the fixture has failed connects by cause: {want:?}"
    );
    assert!(want.len() >= 12, "the fixture has dependencies: {want:?}");
    (state, want)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn serve_grpc(runtime: &tokio::runtime::Runtime, address: SocketAddr, received: Received) {
    runtime.spawn(tonic::transport::Server::builder().add_service(MetricsServiceServer::new(received)).serve(address));
}

fn serve_http(runtime: &tokio::runtime::Runtime, address: SocketAddr, received: Received) {
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received.0.lock().unwrap().push(ExportMetricsServiceRequest::decode(body).unwrap());
                let reply = ExportMetricsServiceResponse { partial_success: None }.encode_to_vec();
                ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], reply)
            }
        }),
    );
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

fn wait_for(received: &Received, want: &Points) -> BTreeMap<String, String> {
    let started = Instant::now();
    loop {
        if let Some((points, resource)) = received.latest() {
            if &points == want {
                return resource;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "got {points:?}\nwant {want:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no export arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn options(address: SocketAddr, protocol: OtlpProtocol) -> OtlpOptions {
    OtlpOptions {
        endpoint: format!("http://{address}"),
        protocol,
        interval: Duration::from_millis(300),
        node: "node-7".to_owned(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn grpc_and_http_receivers_get_a_point_per_dependency_with_the_resource() {
    let (state, want) = live_state();
    let runtime = runtime();
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
        let (address, received) = (free_port(), Received::default());
        let push = match protocol {
            OtlpProtocol::Grpc => {
                serve_grpc(&runtime, address, received.clone());
                let _inside = runtime.enter();
                OtlpPush::start(&options(address, protocol), state.clone()).unwrap()
            }
            OtlpProtocol::HttpProtobuf => {
                serve_http(&runtime, address, received.clone());
                OtlpPush::start(&options(address, protocol), state.clone()).unwrap()
            }
        };
        let resource = wait_for(&received, &want);
        assert_eq!(resource.get("service.name").map(String::as_str), Some("smap"), "{protocol:?}");
        assert_eq!(resource.get("k8s.node.name").map(String::as_str), Some("node-7"));
        assert!(resource.get("host.name").is_some_and(|h| !h.is_empty()), "{resource:?}");
        push.shutdown();
    }
}

#[test]
fn a_collector_down_then_back_loses_nothing_and_the_failures_are_counted() {
    let (state, want) = live_state();
    let runtime = runtime();
    let (address, received) = (free_port(), Received::default());
    let push = {
        let _inside = runtime.enter();
        OtlpPush::start(&options(address, OtlpProtocol::Grpc), state.clone()).unwrap()
    };
    let failures = || {
        let text = state.render_metrics().unwrap();
        let line = text.lines().find(|l| l.starts_with("smap_otlp_exports_failed_total")).unwrap().to_owned();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    let started = Instant::now();
    while failures() < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no failed export counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The collector comes up: the first export that gets through carries the totals.
    serve_grpc(&runtime, address, received.clone());
    wait_for(&received, &want);
    assert!(failures() >= 1.0);
    push.shutdown();
}
