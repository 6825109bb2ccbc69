//! PgBouncer 1.18 in transaction mode between checkpointd and PostgreSQL: named prepared
//! statements would break across transactions, session settings would leak, and a backend dying
//! behind the pooler arrives as `server conn crashed?`.

use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::pgbouncer::PgBouncer;
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_transaction_mode_serves_every_call_and_survives_backend_deaths() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let bouncer = tokio::task::block_in_place(|| PgBouncer::start(&db));
    let url = format!(
        "postgresql://app:{}@127.0.0.1:{}/ckpt?sslmode=disable&prepare_threshold=none",
        db.password, bouncer.port
    );
    let config = fault_config(&url);
    assert!(!config.database.statement_cache, "prepare_threshold=none turns the statement cache off");
    let service = Service::start_serving(config).await;
    // Counted from here: a connect PgBouncer refused while still starting is not a set-up failure.
    let failures_before = service.status().await.pool.map_or(0, |p| p.connect_failures);
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 300, "load through PgBouncer").await;
    let clean = running.calls.snapshot();
    assert_eq!(
        clean.errors, 0,
        "no prepared-statement or session errors through PgBouncer: {:?} {:?}",
        clean.codes, clean.messages
    );
    // Every new connection's set-up is pooler-safe: none failed with "prepared statement does
    // not exist" (before backends are killed below, which may legitimately kill a set-up).
    let setup_failures = service.status().await.pool.map_or(u64::MAX, |p| p.connect_failures) - failures_before;
    let logs = crate::support::logs::text();
    let failures: Vec<&str> =
        logs.lines().filter(|line| line.contains("database connection failed")).rev().take(5).collect();
    assert_eq!(setup_failures, 0, "connection set-ups failed behind PgBouncer (latest log lines): {failures:#?}");
    for _ in 0..4 {
        tokio::task::block_in_place(|| db.terminate("state <> 'idle'"));
        progress(&running, 40, "load between backend deaths").await;
    }
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    // A List stream's server-side cursor lives in one transaction, which PgBouncer keeps on one
    // backend: every checkpoint of every thread streams through.
    let stored: usize =
        tokio::task::block_in_place(|| db.sql("SELECT count(*) FROM checkpoints")).parse().expect("count");
    let mut client = load::client(service.addr, std::time::Duration::from_secs(20)).await;
    let mut stream = client.list(checkpointd::grpc::pb::ListRequest::default()).await.expect("list").into_inner();
    let mut listed = 0;
    while stream.message().await.expect("a List through PgBouncer").is_some() {
        listed += 1;
    }
    assert_eq!(listed, stored, "every stored checkpoint listed once through PgBouncer");
    let internal = result.calls.codes.get("Internal").copied().unwrap_or(0);
    assert_eq!(internal, 0, "backend deaths are retried, never internal errors: {:?}", result.calls.messages);
    report("pgbouncer_transaction_mode", &result, &verdict, None);
    service.stop().await;
    drop(bouncer);
}
