//! Saturation and slowness: a pool with every connection busy, a server out of connection
//! slots, and statements slower than their deadline.

use std::time::Duration;

use crate::helpers::{eventually, put};
use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report, sql};

/// A superuser session over TCP, for holding locks and connection slots.
async fn superuser(db: &Db) -> tokio_postgres::Client {
    crate::helpers::connect(&db.cluster.url("ckpt")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_resource_exhausted_and_recovers() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let mut config = fault_config(&db.url());
    config.pool.max_size = 4;
    config.pool.acquire_timeout = Duration::from_millis(500);
    let service = Service::start_serving(config).await;
    let admin = superuser(&db).await;
    admin.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let running = load::start(service.addr, LoadOptions::standard()).await;
    eventually(Duration::from_secs(30), "callers to find the pool saturated", || async {
        running.calls.snapshot().codes.contains_key("ResourceExhausted")
    })
    .await;
    // Refused callers back off before they call again, so the queue is sampled until it shows.
    eventually(Duration::from_secs(30), "callers to be queued for connections or Put transactions", || async {
        let status = service.status().await;
        status.pool.map_or(0, |p| p.waiting) + status.put_coalescing.map_or(0, |c| c.queued) > 0
    })
    .await;
    admin.batch_execute("ROLLBACK").await.expect("unlock");
    let released = tokio::time::Instant::now();
    progress(&running, 200, "load after the pool frees up").await;
    let recovered_in = released.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    let pool = service.status().await.pool.expect("pool");
    assert_eq!(pool.waiting, 0, "nobody is left waiting");
    assert!(pool.connections <= 4);
    report("pool_exhausted", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_connection_slots_is_survived_without_a_connect_storm() {
    let _serial = serial().await;
    // 20 slots, 3 reserved for superusers: application roles get 17.
    let db = Db::start(DbOptions { settings: vec!["max_connections = 20".into()], ..Default::default() });
    let mut config = fault_config(&db.url());
    config.pool.min_idle = 1;
    let service = Service::start_serving(config).await;
    let warm = load::start(service.addr, LoadOptions { clients: 1, ..LoadOptions::standard() }).await;
    progress(&warm, 20, "a light load").await;
    drop(warm.finish().await);
    // Superuser sessions take every slot an application role may use.
    let used: usize =
        sql(&db, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").parse().unwrap_or(0);
    let mut fillers = Vec::new();
    for _ in used..17 {
        fillers.push(superuser(&db).await);
    }
    let failures_before = service.status().await.pool.map_or(0, |p| p.connect_failures);
    let running = load::start(service.addr, LoadOptions::standard()).await;
    eventually(Duration::from_secs(20), "the pool to be refused new connections", || async {
        service.status().await.pool.map_or(0, |p| p.connect_failures) > failures_before
    })
    .await;
    let refused_at = tokio::time::Instant::now();
    progress(&running, 50, "calls on the connections the pool still has").await;
    let failures = service.status().await.pool.map_or(0, |p| p.connect_failures) - failures_before;
    let per_second = failures as f64 / refused_at.elapsed().as_secs_f64().max(1.0);
    assert!(per_second < 50.0, "no reconnect storm: {failures} refused attempts ({per_second:.0}/s)");
    drop(fillers);
    let freed = tokio::time::Instant::now();
    eventually(Duration::from_secs(20), "the pool to grow once slots are free", || async {
        service.status().await.pool.map_or(0, |p| p.connections) >= 4
    })
    .await;
    let recovered_in = freed.elapsed();
    progress(&running, 100, "load with the full pool").await;
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("connection_slots_exhausted", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_slower_than_the_deadline_end_with_deadline_exceeded() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let admin = superuser(&db).await;
    admin.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    let deadline = Duration::from_millis(800);
    let mut client = crate::support::load::client(service.addr, deadline).await;
    let started = tokio::time::Instant::now();
    let status = client.put(put("slow", "", "c1", None)).await.expect_err("blocked by the lock");
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "DEADLINE_EXCEEDED, not CANCELLED: {status:?}");
    assert!(took <= deadline + MARGIN, "answered after {took:?}");
    eventually(Duration::from_secs(10), "the abandoned statement to leave the server", || async {
        sql(&db, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND wait_event_type = 'Lock'") == "0"
    })
    .await;
    admin.batch_execute("ROLLBACK").await.expect("unlock");
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load after the slow statement").await;
    let result = running.finish().await;
    assert_eq!(result.calls.errors, 0, "{:?}", result.calls.codes);
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("slow_statement", &result, &verdict, None);
    service.stop().await;
}
