//! Traces and metrics as an operator's backend receives them: a real OTLP/gRPC export into an
//! in-process collector, and a scrape of the Prometheus endpoint. One telemetry setup serves
//! the whole file (it is process-global); each test finds its own spans by trace id.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use checkpointd::app::Application;
use checkpointd::config::{CoalescingConfig, LogFormat};
use checkpointd::grpc::pb;
use checkpointd::telemetry::{LogConfig, Telemetry, TelemetryConfig, init_with_env};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use helpers::*;

/// A metric's name and the attribute keys of its data points.
type MetricKeys = (String, Vec<String>);

/// What the collector received.
#[derive(Debug, Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Vec<MetricKeys>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.spans.lock().expect("spans").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let metrics =
            request.into_inner().resource_metrics.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics);
        let mut names = self.metric_names.lock().expect("metrics");
        for metric in metrics {
            let keys: Vec<String> = match &metric.data {
                Some(Data::Histogram(h)) => {
                    h.data_points.iter().flat_map(|p| p.attributes.iter().map(|a| a.key.clone())).collect()
                }
                Some(Data::Sum(s)) => {
                    s.data_points.iter().flat_map(|p| p.attributes.iter().map(|a| a.key.clone())).collect()
                }
                Some(Data::Gauge(g)) => {
                    g.data_points.iter().flat_map(|p| p.attributes.iter().map(|a| a.key.clone())).collect()
                }
                _ => Vec::new(),
            };
            names.push((metric.name, keys));
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The collector and the process's telemetry, set up once.
struct Harness {
    received: Received,
    telemetry: Telemetry,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let (ready, wait) = std::sync::mpsc::channel();
        // The collector and the exporters' gRPC channels live on a runtime that outlives tests.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("collector runtime");
            runtime.block_on(async move {
                let received = Received::default();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
                let endpoint = format!("http://{}", listener.local_addr().expect("collector address"));
                let server = tonic::transport::Server::builder()
                    .add_service(
                        TraceServiceServer::new(received.clone())
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .add_service(
                        MetricsServiceServer::new(received.clone())
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
                tokio::spawn(server);
                let env: HashMap<&str, String> = HashMap::from([
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
                ]);
                let config = TelemetryConfig {
                    log: LogConfig {
                        format: LogFormat::Text,
                        filter: Some("warn".into()),
                        debug: false,
                        verbose_tls: false,
                    },
                    otlp: true,
                    prometheus: true,
                    logs_to_stderr: false,
                };
                let telemetry = init_with_env(&config, &|name| env.get(name).cloned()).expect("telemetry");
                let _ = ready.send(Harness { received, telemetry });
                std::future::pending::<()>().await;
            });
        });
        wait.recv().expect("harness ready")
    })
}

/// Exports everything recorded so far and returns the spans of `trace_id` once its server span
/// has arrived.
async fn spans_of(trace_id: &[u8]) -> Vec<Span> {
    let received = harness().received.clone();
    let of_trace = |spans: &[Span]| -> Vec<Span> { spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect() };
    eventually(Duration::from_secs(10), "the spans to reach the collector", || {
        let received = received.clone();
        async move {
            tokio::task::spawn_blocking(|| harness().telemetry.flush()).await.expect("flush");
            let spans = received.spans.lock().expect("spans");
            spans.iter().any(|s| s.trace_id == trace_id && s.kind == SpanKind::Server as i32)
        }
    })
    .await;
    of_trace(&received.spans.lock().expect("spans"))
}

fn attribute(span: &Span, key: &str) -> Option<any_value::Value> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v: AnyValue| v.value)
}

fn text(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => Some(format!("{other:?}")),
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        any_value::Value::IntValue(i) => Some(i),
        _ => None,
    }
}

/// A request carrying a fresh W3C traceparent; returns it with the trace and parent span ids.
fn traced<T>(message: T) -> (tonic::Request<T>, [u8; 16], [u8; 8]) {
    let trace: [u8; 16] = rand::random();
    let parent: [u8; 8] = rand::random();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut request = tonic::Request::new(message);
    let header = format!("00-{}-{}-01", hex(&trace), hex(&parent));
    request.metadata_mut().insert("traceparent", header.parse().expect("header"));
    (request, trace, parent)
}

async fn spawn_observed_app(adjust: impl FnOnce(&mut checkpointd::config::Config)) -> (TestApp, Option<SocketAddr>) {
    harness();
    let db = TestDb::create().await;
    let mut config = test_config(&db.url);
    config.server.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    adjust(&mut config);
    let application =
        Application::build(config).await.expect("build").with_prometheus(harness().telemetry.prometheus_registry());
    let metrics = application.metrics_addr();
    let app = start_built(application, db).await;
    (app, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_span_joins_the_callers_trace_and_contains_pool_and_database_spans() {
    let (mut app, _) = spawn_observed_app(|_| {}).await;
    wait_until_serving(app.addr).await;
    let (request, trace, parent) = traced(put("traced-thread", "ns", "c1", None));
    app.client.put(request).await.expect("put");

    let spans = spans_of(&trace).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("a server span");
    assert_eq!(server.name, "checkpoint.v1.CheckpointService/Put");
    assert_eq!(server.parent_span_id, parent.to_vec(), "the caller's span is the parent");
    assert_eq!(text(server, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(text(server, "rpc.service").as_deref(), Some("checkpoint.v1.CheckpointService"));
    assert_eq!(text(server, "rpc.method").as_deref(), Some("Put"));
    assert_eq!(int(server, "rpc.grpc.status_code"), Some(0));
    assert_eq!(text(server, "checkpointd.thread_id").as_deref(), Some("traced-thread"));
    assert_eq!(text(server, "checkpointd.checkpoint_ns").as_deref(), Some("ns"));

    let wait = spans.iter().find(|s| s.name == "pool.wait").expect("a pool wait span");
    let attempt = spans.iter().find(|s| s.name == "INSERT checkpoints").expect("a database attempt span");
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(text(attempt, "db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(text(attempt, "db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(text(attempt, "db.collection.name").as_deref(), Some("checkpoints"));
    assert_eq!(int(attempt, "db.attempt"), Some(1), "{:?}", attempt.attributes);
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(wait.parent_span_id, attempt.span_id);
    app.stop().await;
}

/// Puts that shared a commit: returns the server span of a Put that ran in another Put's batch,
/// and the spans of the trace holding that batch. Concurrent Puts with one transaction at a time
/// queue behind the running one, so some round forms a batch of several.
async fn a_put_that_shared_a_batch(app: &TestApp) -> (Span, Vec<Span>) {
    for round in 0..30 {
        let calls: Vec<_> = (0..8)
            .map(|agent| {
                let mut client = app.client.clone();
                let (request, trace, _) = traced(put(&format!("batched-{round}-{agent}"), "", "c1", None));
                tokio::spawn(async move { client.put(request).await.map(|_| trace) })
            })
            .collect();
        for call in calls {
            let trace = call.await.expect("caller").expect("put");
            let spans = spans_of(&trace).await;
            let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("a server span");
            if let Some(link) = server.links.first() {
                let batch_trace = spans_of(&link.trace_id).await;
                return (server.clone(), batch_trace);
            }
        }
    }
    panic!("no Put shared a batch in 30 rounds of 8 concurrent Puts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_shared_a_commit_links_to_the_batch_that_ran_it() {
    let (mut app, _) = spawn_observed_app(|config| {
        config.storage.put_coalescing =
            Some(CoalescingConfig { max_transactions: 1, max_batch: 64, max_batch_bytes: 32 << 20 });
    })
    .await;
    wait_until_serving(app.addr).await;
    let (server, batch_trace) = a_put_that_shared_a_batch(&app).await;

    let link = &server.links[0];
    assert_ne!(link.trace_id, server.trace_id, "the batch ran in another caller's trace");
    let batch = batch_trace.iter().find(|s| s.span_id == link.span_id).expect("the linked span");
    assert_eq!(batch.name, "put.batch");
    assert!(int(batch, "checkpointd.batch_size").is_some_and(|n| n >= 2), "{:?}", batch.attributes);
    let caller = batch_trace.iter().find(|s| s.kind == SpanKind::Server as i32).expect("the first caller's span");
    assert_eq!(batch.parent_span_id, caller.span_id, "the batch runs under the first Put's call");
    let attempt = batch_trace.iter().find(|s| s.parent_span_id == batch.span_id).expect("the shared attempt");
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(text(attempt, "db.system.name").as_deref(), Some("postgresql"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_call_shows_both_attempts_and_why_the_first_failed() {
    let (mut app, _) = spawn_observed_app(|config| {
        config.pool.max_size = 1;
        config.pool.min_idle = 1;
        config.pool.validation_skip = Duration::from_secs(3600);
    })
    .await;
    wait_until_serving(app.addr).await;
    app.client.put(put("t", "", "c1", None)).await.expect("warm the single connection");
    let killed = app
        .sql()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'checkpointd' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate")
        .get::<_, i64>(0);
    assert!(killed >= 1);
    let (request, trace, _) = traced(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() });
    assert!(app.client.get_tuple(request).await.expect("the retry succeeds").into_inner().tuple.is_some());

    let spans = spans_of(&trace).await;
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| s.name == "SELECT checkpoints").collect();
    attempts.sort_by_key(|s| int(s, "db.attempt"));
    assert!(attempts.len() >= 2, "{} attempts", attempts.len());
    let first = attempts[0];
    let class = text(first, "error.type").expect("the first attempt names its error class");
    assert!(["connection_lost", "server_unavailable"].contains(&class.as_str()), "{class}");
    assert_eq!(attribute(first, "db.retry"), Some(any_value::Value::BoolValue(true)));
    assert_eq!(text(attempts[attempts.len() - 1], "error.type"), None, "the last attempt succeeded");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_carry_their_status_and_classified_cause() {
    let (mut app, _) = spawn_observed_app(|_| {}).await;
    wait_until_serving(app.addr).await;
    let (request, trace, _) = traced(pb::GetTupleRequest::default());
    assert_eq!(app.client.get_tuple(request).await.expect_err("no thread").code(), tonic::Code::InvalidArgument);
    let spans = spans_of(&trace).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server span");
    assert_eq!(int(server, "rpc.grpc.status_code"), Some(3));
    assert_eq!(text(server, "error.type").as_deref(), Some("invalid_argument"));
    assert_ne!(server.status.as_ref().map(|s| s.code), Some(2), "a client mistake is not a server error");
    app.stop().await;

    let db = TestDb::create().await;
    let mut config = test_config("postgresql://postgres@127.0.0.1:1/nowhere");
    config.pool.acquire_timeout = Duration::from_millis(200);
    let mut down = start(config, db).await;
    let (request, trace, _) = traced(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() });
    assert_eq!(down.client.get_tuple(request).await.expect_err("down").code(), tonic::Code::Unavailable);
    let spans = spans_of(&trace).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32).expect("server span");
    assert_eq!(int(server, "rpc.grpc.status_code"), Some(14));
    assert_eq!(server.status.as_ref().map(|s| s.code), Some(2), "UNAVAILABLE is a server error");
    assert!(text(server, "error.type").is_some_and(|t| t.starts_with("server_unavailable") || t == "connection_lost"));
    down.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_over_otlp_and_scraped_by_prometheus() {
    let (mut app, metrics_addr) = spawn_observed_app(|_| {}).await;
    wait_until_serving(app.addr).await;
    for i in 0..5 {
        app.client.put(put("metrics", "", &format!("c{i}"), None)).await.expect("put");
    }
    assert!(get(&mut app.client, "metrics", "", None).await.is_some());

    let names = harness().received.metric_names.clone();
    eventually(Duration::from_secs(10), "metrics to reach the collector", || {
        let names = names.clone();
        async move {
            let names = names.lock().expect("names");
            ["rpc.server.call.duration", "db.client.connection.count", "checkpointd.db.retries", "checkpointd.db.up"]
                .iter()
                .all(|wanted| names.iter().any(|(name, _)| name == wanted))
        }
    })
    .await;
    let histogram_keys: Vec<String> = names
        .lock()
        .expect("names")
        .iter()
        .filter(|(n, _)| n == "rpc.server.call.duration")
        .flat_map(|(_, k)| k.clone())
        .collect();
    for key in ["rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code"] {
        assert!(histogram_keys.iter().any(|k| k == key), "{key} missing from {histogram_keys:?}");
    }

    let scraped = scrape(metrics_addr.expect("metrics endpoint")).await;
    for series in [
        "rpc_server_call_duration_seconds_bucket",
        "rpc_method=\"Put\"",
        "db_client_connection_count",
        "db_client_connection_max",
        "db_client_connection_pending_requests",
        "checkpointd_db_connections_created_total",
        "checkpointd_db_retries_total",
        "checkpointd_db_pool_recreations_total",
        "checkpointd_db_up",
    ] {
        assert!(scraped.contains(series), "{series} missing from the scrape:\n{scraped}");
    }
    app.stop().await;
}

async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to /metrics");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response");
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    response
}
