//! The listener's defences: TLS and mutual TLS (with rotation), bearer tokens and tenant scopes
//! (with rotation), the in-flight limit, malformed messages, and no token in any log line.

#[path = "faults/support/certs.rs"]
mod certs;
#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use checkpointd::app::Application;
use checkpointd::config::{Config, ServerTls, parse_tokens};
use checkpointd::grpc::pb;
use checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient;
use checkpointd::grpc::pb::diagnostics_service_client::DiagnosticsServiceClient;
use tonic::Code;
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

use helpers::*;

const OPS_TOKEN: &str = "ops-token-4f1d2c3b5a6e7d8c";
const TENANT_A_TOKEN: &str = "tenant-a-token-9e8d7c6b5a4f3e2d";

/// Every log line of this test binary, to check that no token reaches one.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,h2=info,hyper=info,tower=info")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_token_logged(tokens: &[&str]) {
    let text = String::from_utf8_lossy(&logs().lock().expect("logs")).into_owned();
    assert!(!text.is_empty(), "logs were captured");
    for token in tokens {
        assert!(!text.contains(token), "a bearer token reached the logs");
    }
}

/// Sends `authorization: Bearer <token>` on every call.
#[derive(Debug, Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        Ok(request)
    }
}

type Client = CheckpointServiceClient<InterceptedService<Channel, Bearer>>;

fn client(channel: Channel, token: Option<&str>) -> Client {
    CheckpointServiceClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
}

/// Starts the app with a plaintext health listener, waiting for SERVING there.
async fn spawn_secured(adjust: impl FnOnce(&mut Config)) -> (TestApp, SocketAddr) {
    logs();
    let db = TestDb::create().await;
    let mut config = test_config(&db.url);
    config.server.health_listen = Some("127.0.0.1:0".parse().expect("address"));
    adjust(&mut config);
    let application = Application::build(config).await.expect("build");
    let health = application.health_addr().expect("health listener");
    let app = start_built(application, db).await;
    wait_until_serving(health).await;
    (app, health)
}

struct TlsFiles {
    dir: tempfile::TempDir,
    certs: certs::TestCertificates,
}

impl TlsFiles {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = TlsFiles { dir, certs: certs::generate(&["localhost"]) };
        files.write();
        files
    }

    fn write(&self) {
        std::fs::write(self.path("server.pem"), &self.certs.cert_pem).expect("cert");
        std::fs::write(self.path("server.key"), &self.certs.key_pem).expect("key");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, client_ca: Option<&Path>) -> ServerTls {
        ServerTls {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: client_ca.map(Path::to_owned),
        }
    }
}

async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", addr.port())).expect("uri").tls_config(tls)?.connect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_is_served_over_tls_and_plaintext_is_refused() {
    let files = TlsFiles::new();
    let (app, health) = spawn_secured(|c| c.server.tls = Some(files.server(None))).await;
    let channel = tls_channel(app.addr, &files.certs.ca_pem, None).await.expect("TLS handshake");
    let mut secure = client(channel, None);
    secure.put(put("t", "", "c1", None)).await.expect("put over TLS");
    assert_eq!(health_status(health, "checkpoint.v1.CheckpointService").await, Some(ServingStatus::Serving));
    let mut plaintext = client(channel_to(app.addr).await, None);
    let refused = plaintext
        .get_tuple(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() })
        .await
        .expect_err("plaintext is refused");
    assert_refused_by_the_transport(&refused);
}

/// The call never reached a service: the connection itself was refused, so no gRPC status came
/// back from the server, only a transport error (which code the client then reports depends on
/// where the connection broke: a reset, a broken pipe, or an HTTP/2 error).
fn assert_refused_by_the_transport(status: &tonic::Status) {
    let transport = std::error::Error::source(status).is_some_and(|e| e.is::<tonic::transport::Error>());
    assert!(transport, "refused by the transport, not by a service: {status:?}");
}

async fn channel_to(addr: SocketAddr) -> Channel {
    channel(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let files = TlsFiles::new();
    let client_certs = certs::generate(&["agent"]);
    std::fs::write(files.path("clients-ca.pem"), &client_certs.ca_pem).expect("client CA");
    let (app, _) = spawn_secured(|c| c.server.tls = Some(files.server(Some(&files.path("clients-ca.pem"))))).await;

    // TLS 1.3 finishes the client's side of the handshake before the server checks the client
    // certificate, so the refusal arrives with the first call.
    if let Ok(channel) = tls_channel(app.addr, &files.certs.ca_pem, None).await {
        let refused = client(channel, None)
            .get_tuple(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() })
            .await
            .expect_err("a client without a certificate is refused");
        assert_refused_by_the_transport(&refused);
    }

    let identity = Identity::from_pem(&client_certs.cert_pem, &client_certs.key_pem);
    let channel = tls_channel(app.addr, &files.certs.ca_pem, Some(identity)).await.expect("mutual TLS handshake");
    client(channel, None).put(put("t", "", "c1", None)).await.expect("put with a client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_without_dropping_open_ones() {
    let mut files = TlsFiles::new();
    let (app, _) = spawn_secured(|c| c.server.tls = Some(files.server(None))).await;
    let old_ca = files.certs.ca_pem.clone();
    let mut open = client(tls_channel(app.addr, &old_ca, None).await.expect("TLS"), None);
    open.put(put("t", "", "c1", None)).await.expect("put before rotation");

    files.certs = certs::generate(&["localhost"]);
    files.write();
    let new_ca = files.certs.ca_pem.clone();
    eventually(Duration::from_secs(10), "new connections to get the new certificate", || {
        let new_ca = new_ca.clone();
        async move {
            match tls_channel(app.addr, &new_ca, None).await {
                Ok(channel) => client(channel, None)
                    .get_tuple(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() })
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    open.put(put("t", "", "c2", None)).await.expect("the connection opened before rotation still works");
    assert!(tls_channel(app.addr, &old_ca, None).await.is_err(), "the old certificate is no longer served");
}

fn with_tokens(config: &mut Config) {
    config.server.auth.tokens =
        parse_tokens(&format!("{OPS_TOKEN} name=ops\n{TENANT_A_TOKEN} name=tenant-a prefix=a/")).expect("tokens");
    config.server.auth.open_reflection = false;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated_and_health_stays_open() {
    let (app, _) = spawn_secured(with_tokens).await;
    for token in [None, Some("wrong-token-0000000000000000")] {
        let status = client(channel(app.addr).await, token).put(put("a/t", "", "c1", None)).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}: {status:?}");
        assert!(!status.message().contains("wrong-token"));
    }
    assert_eq!(health_status(app.addr, "").await, Some(ServingStatus::Serving), "health needs no token");
    client(channel(app.addr).await, Some(OPS_TOKEN)).put(put("a/t", "", "c1", None)).await.expect("a valid token");
    let rows: i64 = app.sql().await.query_one("SELECT count(*) FROM checkpoints", &[]).await.expect("count").get(0);
    assert_eq!(rows, 1, "refused calls wrote nothing");
    assert_no_token_logged(&[OPS_TOKEN, TENANT_A_TOKEN, "wrong-token-0000000000000000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_cannot_read_write_or_list_another_tenants_threads() {
    let (app, _) = spawn_secured(with_tokens).await;
    let mut ops = client(channel(app.addr).await, Some(OPS_TOKEN));
    let mut tenant = client(channel(app.addr).await, Some(TENANT_A_TOKEN));
    for thread in ["a/one", "b/two"] {
        let mut request = put(thread, "", "c1", None);
        request.metadata_json = br#"{"run_id": "shared-run"}"#.to_vec();
        ops.put(request).await.expect("seed");
    }
    tenant.put(put("a/three", "", "c1", None)).await.expect("its own thread");
    let denied = [
        tenant.put(put("b/two", "", "c2", None)).await.err(),
        tenant.get_tuple(pb::GetTupleRequest { thread_id: "b/two".into(), ..Default::default() }).await.err(),
        tenant.list(pb::ListRequest { thread_id: Some("b/two".into()), ..Default::default() }).await.err(),
        tenant.delete_thread(pb::DeleteThreadRequest { thread_id: "b/two".into() }).await.err(),
        tenant
            .copy_thread(pb::CopyThreadRequest { source_thread_id: "b/two".into(), target_thread_id: "a/copy".into() })
            .await
            .err(),
        tenant.prune(pb::PruneRequest { thread_ids: vec!["a/one".into(), "b/two".into()], strategy: 2 }).await.err(),
    ];
    for (i, status) in denied.into_iter().enumerate() {
        assert_eq!(status.map(|s| s.code()), Some(Code::PermissionDenied), "call {i}");
    }
    let mut stream = tenant.list(pb::ListRequest::default()).await.expect("list").into_inner();
    let mut threads = Vec::new();
    while let Some(item) = stream.message().await.expect("item") {
        threads.push(item.tuple.and_then(|t| t.config).map(|c| c.thread_id).unwrap_or_default());
    }
    threads.sort();
    assert_eq!(threads, ["a/one", "a/three"], "a list without a thread sees only the tenant's threads");
    tenant.delete_for_runs(pb::DeleteForRunsRequest { run_ids: vec!["shared-run".into()] }).await.expect("delete runs");
    assert!(get_with(&mut ops, "b/two").await.is_some(), "another tenant's run survives");
    assert!(get_with(&mut ops, "a/one").await.is_none(), "the tenant's own run is deleted");
    let diagnostics =
        DiagnosticsServiceClient::with_interceptor(channel(app.addr).await, Bearer(Some(TENANT_A_TOKEN.into())))
            .get_status(pb::GetStatusRequest {})
            .await
            .expect_err("scoped tokens may not read diagnostics");
    assert_eq!(diagnostics.code(), Code::PermissionDenied);
    assert_no_token_logged(&[OPS_TOKEN, TENANT_A_TOKEN]);
}

async fn get_with(client: &mut Client, thread: &str) -> Option<pb::CheckpointTuple> {
    let request = pb::GetTupleRequest { thread_id: thread.into(), ..Default::default() };
    client.get_tuple(request).await.expect("get").into_inner().tuple
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_token_file_revokes_the_old_token_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("# rotation test\n{OPS_TOKEN} name=ops\n")).expect("tokens");
    let tokens_file = file.clone();
    let (app, _) = spawn_secured(move |c| c.server.auth.tokens_file = Some(tokens_file)).await;
    client(channel(app.addr).await, Some(OPS_TOKEN)).put(put("t", "", "c1", None)).await.expect("old token");

    let next = "rotated-token-1a2b3c4d5e6f7a8b";
    std::fs::write(&file, format!("{next} name=ops-2\n")).expect("rotate");
    eventually(Duration::from_secs(10), "the old token to be revoked", || async {
        let status = client(channel(app.addr).await, Some(OPS_TOKEN)).put(put("t", "", "c2", None)).await;
        status.is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await;
    client(channel(app.addr).await, Some(next)).put(put("t", "", "c3", None)).await.expect("the new token");
    assert_no_token_logged(&[OPS_TOKEN, next]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_in_flight_limit_calls_are_refused_before_any_database_work() {
    let (app, health) = spawn_secured(|c| c.server.max_concurrent_requests = 1).await;
    let sql = app.sql().await;
    sql.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let mut first = client(channel(app.addr).await, None);
    let held = tokio::spawn(async move { first.put(put("t", "", "c1", None)).await });
    eventually(Duration::from_secs(10), "the first call to hold the only slot", || {
        let sql = &sql;
        async move {
            sql.query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[]).await.expect("locks").get::<_, i64>(0)
                > 0
        }
    })
    .await;
    let status = client(channel(app.addr).await, None).put(put("t", "", "c2", None)).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
    assert_eq!(status.metadata().get("checkpointd-retry-safe").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(health_status(app.addr, "").await, Some(ServingStatus::Serving), "health is never refused");
    sql.batch_execute("ROLLBACK").await.expect("unlock");
    held.await.expect("task").expect("the first call completes");
    assert_eq!(health_status(health, "").await, Some(ServingStatus::Serving));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument() {
    let (app, _) = spawn_secured(|_| {}).await;
    let mut grpc = tonic::client::Grpc::new(channel(app.addr).await);
    grpc.ready().await.expect("ready");
    // Field 1 (thread_id, a string) holding bytes that are not UTF-8.
    let malformed = vec![0x0a, 0x02, 0xff, 0xfe];
    let path = http::uri::PathAndQuery::from_static("/checkpoint.v1.CheckpointService/GetTuple");
    let status = grpc.unary(tonic::Request::new(malformed), path, RawCodec).await.expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

/// Sends raw bytes as a request and ignores the response body.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let bytes = buf.copy_to_bytes(buf.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// A List holds its in-flight slot while it streams, not only until its first page: a reader
/// that is slow to drain a long history counts against the limit until it finishes or leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_holds_its_in_flight_slot_until_it_ends() {
    let (app, _health) = spawn_secured(|c| c.server.max_concurrent_requests = 1).await;
    let mut writer = client(channel(app.addr).await, None);
    for step in 0..200u32 {
        let id = format!("c{step:04}");
        let mut request = put("long", "", &id, None);
        request.checkpoint_json = document(&id, serde_json::json!({}), serde_json::json!({"big": "1"}));
        request.blobs = vec![blob("big", "1", &vec![7u8; 128 << 10])];
        writer.put(request).await.expect("put");
    }
    let mut reader = client(channel(app.addr).await, None);
    let list = pb::ListRequest { thread_id: Some("long".into()), ..Default::default() };
    let mut stream = reader.list(list).await.expect("list").into_inner();
    stream.message().await.expect("first item").expect("an item");
    let status = writer.put(put("other", "", "c1", None)).await.expect_err("the list holds the only slot");
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(stream);
    eventually(Duration::from_secs(10), "the slot to be free once the reader leaves", || {
        let mut writer = writer.clone();
        async move { writer.put(put("other", "", "c1", None)).await.is_ok() }
    })
    .await;
}
