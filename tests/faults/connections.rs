//! Connections killed under the pool: idle ones, busy ones, and ones the server times out.

use std::time::Duration;

use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report, sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_idle_pooled_backends_costs_no_failed_call() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let warm = load::start(service.addr, LoadOptions::standard()).await;
    progress(&warm, 200, "the pool to warm up").await;
    let warmed = warm.finish().await;

    let killed = tokio::task::block_in_place(|| db.terminate("state = 'idle'"));
    assert!(killed > 0, "there were idle pooled connections to kill");

    let after = load::start(service.addr, LoadOptions::standard()).await;
    progress(&after, 300, "calls after the kill").await;
    let result = after.finish().await;
    assert_eq!(result.calls.errors, 0, "no call failed after idle backends died: {:?}", result.calls.codes);
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    let closed = service.status().await.pool.map(|p| p.connections_closed).unwrap_or_default();
    assert!(closed.values().sum::<u64>() > 0, "dead connections were discarded: {closed:?}");
    report("idle_backends_killed", &result, &verdict, None);
    drop(warmed);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_backends_mid_read_and_mid_write_loses_no_acknowledged_write() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load before the kills").await;
    let mut killed = 0;
    for _ in 0..6 {
        killed += tokio::task::block_in_place(|| db.terminate("state <> 'idle'"));
        progress(&running, 40, "load between kills").await;
    }
    let result = running.finish().await;
    assert!(killed > 0, "busy backends were killed");
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    let status = service.status().await;
    let retries: u64 = status.retries_by_class.values().sum();
    assert!(retries > 0, "the server retried the killed transactions itself: {:?}", status.retries_by_class);
    report("backends_killed_mid_call", &result, &verdict, None);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_timeouts_cost_no_failed_call() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    sql(&db, "ALTER ROLE app SET idle_session_timeout = '1s'");
    let service = Service::start_serving(fault_config(&db.url())).await;
    let first = load::start(service.addr, LoadOptions::standard()).await;
    progress(&first, 100, "load before going idle").await;
    drop(first.finish().await);
    let created_before = service.status().await.pool.map_or(0, |p| p.connections_created);
    // The fault is time itself: every pooled session idles past the server's timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = load::start(service.addr, LoadOptions::standard()).await;
    progress(&after, 200, "load after the idle timeouts").await;
    let result = after.finish().await;
    assert_eq!(result.calls.errors, 0, "{:?}", result.calls.codes);
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    let created_after = service.status().await.pool.map_or(0, |p| p.connections_created);
    assert!(created_after > created_before, "timed-out sessions were replaced");
    report("idle_session_timeout", &result, &verdict, None);
    service.stop().await;
}
