//! The service around the API: health, reflection, deadlines and graceful shutdown.

use std::time::Duration;

use checkpointd::grpc::pb;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_the_process_and_the_checkpoint_service() {
    let app = spawn_app().await;
    assert_eq!(health_status(app.addr, "").await, Some(ServingStatus::Serving));
    assert_eq!(health_status(app.addr, "checkpoint.v1.CheckpointService").await, Some(ServingStatus::Serving));
    let mut health = app.health().await;
    let unknown = health.check(tonic_health::pb::HealthCheckRequest { service: "nope".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(channel(app.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(futures_util::stream::iter([request])).await.expect("reflection").into_inner();
    let response = responses.message().await.expect("stream").expect("one response");
    let Some(MessageResponse::ListServicesResponse(services)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    for expected in ["checkpoint.v1.CheckpointService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
}

#[tokio::test]
async fn an_expired_deadline_is_answered_with_deadline_exceeded() {
    let mut app = spawn_app().await;
    let mut request = tonic::Request::new(put("t", "", "c1", None));
    request.set_timeout(Duration::from_millis(300));
    // Hold the table lock so the write cannot finish before the deadline.
    let sql = app.sql().await;
    sql.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let status = app.client.put(request).await.expect_err("deadline");
    sql.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    app.client.put(put("t", "", "c1", None)).await.expect("the pool recovered");
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_lets_in_flight_calls_finish() {
    let mut app = spawn_app_with(|config| config.server.shutdown_delay = Duration::from_secs(3)).await;
    let sql = app.sql().await;
    sql.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let mut client = app.client.clone();
    let in_flight = tokio::spawn(async move { client.put(put("t", "", "c1", None)).await });
    eventually(Duration::from_secs(10), "the put to wait on the lock", || {
        let sql = &sql;
        async move {
            let row = sql.query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[]).await.expect("locks");
            row.get::<_, i64>(0) > 0
        }
    })
    .await;
    let addr = app.addr;
    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    eventually(Duration::from_secs(10), "health to turn NOT_SERVING", || async move {
        health_status(addr, "").await == Some(ServingStatus::NotServing)
    })
    .await;
    sql.batch_execute("ROLLBACK").await.expect("unlock");
    let response = in_flight.await.expect("task").expect("the in-flight put completed");
    assert_eq!(response.into_inner().config.map(|c| c.checkpoint_id), Some("c1".into()));
    let app = stopping.await.expect("stopped");
    assert!(health_status(app.addr, "").await.is_none(), "the listener is closed");
    let stored: i64 = app.sql().await.query_one("SELECT count(*) FROM checkpoints", &[]).await.expect("count").get(0);
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn the_service_starts_while_the_database_is_unreachable_and_reports_not_serving() {
    let db = TestDb::create().await;
    let mut config = test_config("postgresql://postgres@127.0.0.1:1/nowhere");
    config.pool.acquire_timeout = Duration::from_millis(300);
    let mut app = start(config, db).await;
    eventually(Duration::from_secs(10), "the process to serve its health service", || async move {
        health_status(app.addr, "").await == Some(ServingStatus::Serving)
    })
    .await;
    assert_eq!(health_status(app.addr, "checkpoint.v1.CheckpointService").await, Some(ServingStatus::NotServing));
    let started = tokio::time::Instant::now();
    let status = app
        .client
        .get_tuple(pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() })
        .await
        .expect_err("down");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast, took {:?}", started.elapsed());
    app.stop().await;
}

/// Responses travel uncompressed unless the server is told otherwise, even to a client that
/// advertises gzip (grpcio and grpc-js always do): on a fast network gzip costs more CPU than it
/// saves. `--response-compression gzip` turns it on.
#[tokio::test]
async fn responses_are_compressed_only_when_configured() {
    use tonic::codec::CompressionEncoding;
    for (configured, expected) in [(None, None), (Some(checkpointd::config::Compression::Gzip), Some("gzip"))] {
        let app = spawn_app_with(|c| c.server.response_compression = configured).await;
        let mut client = app.client.clone().accept_compressed(CompressionEncoding::Gzip);
        client.put(put("t", "", "c1", None)).await.expect("put");
        let request = pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() };
        let response = client.get_tuple(request).await.expect("get");
        let encoding = response.metadata().get("grpc-encoding").and_then(|v| v.to_str().ok());
        assert_eq!(encoding, expected, "configured {configured:?}");
    }
}

/// Until the schema is migrated, calls fail at once with UNAVAILABLE marked safe to retry (never
/// INTERNAL from tables that do not exist yet), and succeed once migrations finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_before_the_schema_is_migrated_are_unavailable_and_safe_to_retry() {
    let db = TestDb::create().await;
    let holder = db.client().await;
    // The advisory lock migrations take, so they wait.
    holder.batch_execute("SELECT pg_advisory_lock(27984153428191591)").await.expect("hold the migration lock");
    let app = start(test_config(&db.url), db).await;
    let status = app.client.clone().put(put("t", "", "c1", None)).await.expect_err("not migrated yet");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.metadata().get("checkpointd-retry-safe").and_then(|v| v.to_str().ok()), Some("true"));
    holder.batch_execute("SELECT pg_advisory_unlock(27984153428191591)").await.expect("release");
    wait_until_serving(app.addr).await;
    app.client.clone().put(put("t", "", "c1", None)).await.expect("served once migrated");
}

/// A call that waited for a pooled connection gets only what is left of its deadline for the
/// transaction: its statement leaves the database when its caller's deadline passes, not a whole
/// deadline after the checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_gets_only_what_is_left_of_the_deadline_after_the_checkout() {
    let app = spawn_app_with(|c| {
        c.pool.max_size = 1;
        c.storage.put_coalescing = None;
    })
    .await;
    let sql = app.sql().await;
    sql.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let waiting_on_the_lock =
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    // The first call holds the only connection, blocked on the lock, until its deadline.
    let mut first = tonic::Request::new(put("a", "", "c1", None));
    first.set_timeout(Duration::from_millis(1500));
    let mut client = app.client.clone();
    let holder = tokio::spawn(async move { client.put(first).await });
    eventually(Duration::from_secs(10), "the first call to wait on the lock", || async {
        sql.query_one(waiting_on_the_lock, &[]).await.expect("activity").get::<_, i64>(0) == 1
    })
    .await;
    // The second waits for that connection, gets it when the first gives up, then blocks too.
    let deadline = Duration::from_millis(2500);
    let mut second = tonic::Request::new(put("b", "", "c1", None));
    second.set_timeout(deadline);
    let started = tokio::time::Instant::now();
    let status = app.client.clone().put(second).await.expect_err("blocked by the lock");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(holder.await.expect("first").expect_err("blocked").code(), tonic::Code::DeadlineExceeded);
    eventually(Duration::from_secs(10), "the second call's statement to leave the database", || async {
        sql.query_one(waiting_on_the_lock, &[]).await.expect("activity").get::<_, i64>(0) == 0
    })
    .await;
    let gone_after = started.elapsed();
    sql.batch_execute("ROLLBACK").await.expect("unlock");
    assert!(gone_after < deadline + Duration::from_millis(700), "the statement outlived its caller: {gone_after:?}");
}
