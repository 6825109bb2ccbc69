//! Test support: a fresh database per test and the real server on port 0, with a gRPC client.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use checkpointd::app::Application;
use checkpointd::cli::ServeArgs;
use checkpointd::config::Config;
use checkpointd::grpc::pb;
use checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Where test databases are created: `TEST_DATABASE_URL`, or the local PostgreSQL.
static ADMIN_URL: LazyLock<String> = LazyLock::new(|| {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".to_owned())
});

/// Logs go to the test output only when `TEST_LOG` is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info,checkpointd=debug").with_test_writer().try_init();
    }
});

/// Connects to a database for setup and assertions.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// A database created for one test and dropped after it.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database on the admin server.
    pub async fn create() -> Self {
        Self::create_on(&ADMIN_URL).await
    }

    /// Creates an empty database on the server of `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("ckpt_test_{}", uuid::Uuid::new_v4().simple());
        connect(admin_url).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
        Self { url: format!("{base}/{name}"), name, admin_url: admin_url.to_owned() }
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// The configuration tests run with: small pool, quick monitor, fast retries, TCP to the test
/// database. Built as `checkpointd serve` builds it, from flags, with no environment variable read
/// (so `PG*` or `DATABASE_URL` in the test's environment change nothing).
pub fn test_config(database_url: &str) -> Config {
    let flags = [
        ("--database-url", database_url),
        ("--db-sslmode", "disable"),
        ("--listen", "127.0.0.1:0"),
        ("--pool-max-size", "8"),
        ("--pool-min-idle", "1"),
        ("--pool-idle-timeout", "60s"),
        ("--pool-max-lifetime", "10m"),
        ("--pool-lifetime-jitter", "10s"),
        ("--pool-validation-skip", "500ms"),
        ("--pool-recreation-cooldown", "5s"),
        ("--monitor-interval", "200ms"),
        ("--monitor-timeout", "1s"),
        ("--max-retries", "4"),
        ("--retry-base-delay", "10ms"),
        ("--retry-connection-delay", "50ms"),
        ("--retry-max-delay", "500ms"),
        ("--list-page-size", "7"),
        ("--max-message-size", "8MiB"),
        ("--default-deadline", "20s"),
        ("--shutdown-grace", "5s"),
        ("--reload-interval", "100ms"),
        ("--auth-open-reflection", "true"),
    ];
    let args = ServeArgs::from_flags(flags.iter().flat_map(|(flag, value)| [*flag, *value])).expect("valid test flags");
    args.config_in(&|_| None).expect("valid test configuration")
}

/// A running server on a fresh database.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: CheckpointServiceClient<Channel>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), checkpointd::app::ServeError>>>,
}

impl TestApp {
    /// Stops the server (graceful shutdown) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// Stops this server and starts a new one on the same database, with the test configuration.
    pub async fn restarted(mut self) -> TestApp {
        self.stop().await;
        let config = test_config(&self.db.url);
        let app = start(config, self.db).await;
        wait_until_serving(app.addr).await;
        app
    }

    /// A health client for this server.
    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(channel(self.addr).await)
    }

    /// A raw database client for assertions.
    pub async fn sql(&self) -> tokio_postgres::Client {
        self.db.client().await
    }

    /// The server's diagnostics snapshot.
    pub async fn status(&self) -> checkpointd::grpc::pb::GetStatusResponse {
        let mut client =
            checkpointd::grpc::pb::diagnostics_service_client::DiagnosticsServiceClient::new(channel(self.addr).await);
        client.get_status(checkpointd::grpc::pb::GetStatusRequest {}).await.expect("diagnostics").into_inner()
    }
}

/// Starts the server on a fresh database and waits until it serves.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server with an adjusted configuration and waits until it serves.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    let mut config = test_config(&db.url);
    adjust(&mut config);
    let app = start(config, db).await;
    wait_until_serving(app.addr).await;
    app
}

/// Starts the server without waiting for it to serve.
pub async fn start(config: Config, db: TestDb) -> TestApp {
    LazyLock::force(&TRACING);
    let application = Application::build(config).await.expect("build application");
    start_built(application, db).await
}

/// Runs an already built application until the test stops it.
pub async fn start_built(application: Application, db: TestDb) -> TestApp {
    let addr = application.local_addr().expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = CheckpointServiceClient::new(channel(addr).await);
    TestApp { addr, client, db, stop: Some(stop), server: Some(server) }
}

/// A lazily connecting channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy()
}

/// The health status of `service`, or None when the server does not answer.
pub async fn health_status(addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    let mut health = HealthClient::new(channel(addr).await);
    let response = health.check(HealthCheckRequest { service: service.to_owned() }).await.ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls until `condition` holds, failing the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the checkpoint service reports SERVING.
pub async fn wait_until_serving(addr: SocketAddr) {
    eventually(Duration::from_secs(30), "the checkpoint service to serve", || async move {
        health_status(addr, "checkpoint.v1.CheckpointService").await == Some(ServingStatus::Serving)
    })
    .await;
}

// ---- request builders --------------------------------------------------------------------

/// A typed value with the given bytes.
pub fn value(type_tag: &str, data: &[u8]) -> pb::TypedValue {
    pb::TypedValue { r#type: type_tag.to_owned(), data: Some(data.to_vec()) }
}

/// A msgpack-typed blob of `channel` at `version`.
pub fn blob(channel: &str, version: &str, data: &[u8]) -> pb::ChannelBlob {
    pb::ChannelBlob { channel: channel.to_owned(), version: version.to_owned(), value: Some(value("msgpack", data)) }
}

/// A v4 checkpoint document with the given inline values and channel versions.
pub fn document(id: &str, inline: serde_json::Value, versions: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "v": 4,
        "id": id,
        "ts": "2026-11-27T00:00:00+00:00",
        "channel_values": inline,
        "channel_versions": versions,
        "versions_seen": {},
        "updated_channels": null,
    })
    .to_string()
    .into_bytes()
}

/// A Put of checkpoint `id` in `thread`/`ns` with an optional parent and no blobs.
pub fn put(thread: &str, ns: &str, id: &str, parent: Option<&str>) -> pb::PutRequest {
    pb::PutRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: ns.to_owned(),
        checkpoint_id: id.to_owned(),
        parent_checkpoint_id: parent.map(str::to_owned),
        checkpoint_json: document(id, serde_json::json!({}), serde_json::json!({})),
        metadata_json: br#"{"source": "loop", "step": 0}"#.to_vec(),
        blobs: vec![],
    }
}

/// A write of `channel` with `data`.
pub fn write(channel: &str, data: &[u8]) -> pb::put_writes_request::Write {
    pb::put_writes_request::Write { channel: channel.to_owned(), value: Some(value("msgpack", data)) }
}

/// PutWrites of `writes` by `task` for checkpoint `id`.
pub fn put_writes(
    thread: &str,
    ns: &str,
    id: &str,
    task: &str,
    writes: Vec<pb::put_writes_request::Write>,
) -> pb::PutWritesRequest {
    pb::PutWritesRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: ns.to_owned(),
        checkpoint_id: id.to_owned(),
        task_id: task.to_owned(),
        task_path: String::new(),
        writes,
    }
}

/// The latest (or given) checkpoint of a thread/namespace.
pub async fn get(
    client: &mut CheckpointServiceClient<Channel>,
    thread: &str,
    ns: &str,
    id: Option<&str>,
) -> Option<pb::CheckpointTuple> {
    let request = pb::GetTupleRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: ns.to_owned(),
        checkpoint_id: id.map(str::to_owned),
    };
    client.get_tuple(request).await.expect("get_tuple").into_inner().tuple
}

/// Every tuple a List returns.
pub async fn list(client: &mut CheckpointServiceClient<Channel>, request: pb::ListRequest) -> Vec<pb::CheckpointTuple> {
    let mut stream = client.list(request).await.expect("list").into_inner();
    let mut tuples = Vec::new();
    while let Some(item) = stream.message().await.expect("list item") {
        tuples.push(item.tuple.expect("tuple set"));
    }
    tuples
}

/// The checkpoint ids of `tuples`, in order.
pub fn ids(tuples: &[pb::CheckpointTuple]) -> Vec<String> {
    tuples.iter().map(|t| t.config.as_ref().map(|c| c.checkpoint_id.clone()).unwrap_or_default()).collect()
}

/// Parses a JSON field of a tuple.
pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON from the server")
}
