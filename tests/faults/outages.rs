//! The server goes away: restarts, a long outage, a server down at start, a commit whose outcome
//! is unknown, and a failover to a promoted replica.

use std::time::Duration;

use checkpointd::devdb::{ClusterOptions, LocalCluster, ShutdownMode};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::eventually;
use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report, sql};

async fn restart_under_load(mode: ShutdownMode) {
    let mut db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 150, "load before the restart").await;
    tokio::task::block_in_place(|| db.cluster.restart(mode)).expect("restart");
    let restarted = tokio::time::Instant::now();
    progress(&running, 100, "load after the restart").await;
    let recovered_in = restarted.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    assert_eq!(service.health().await, Some(ServingStatus::Serving));
    report(&format!("restart_{}", mode.as_str()), &result, &verdict, Some(recovered_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_under_load_loses_nothing() {
    let _serial = serial().await;
    restart_under_load(ShutdownMode::Fast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_restart_with_crash_recovery_under_load_loses_nothing() {
    let _serial = serial().await;
    restart_under_load(ShutdownMode::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_down_fails_fast_flips_health_both_ways_and_recovers() {
    let _serial = serial().await;
    let mut db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 150, "load before the outage").await;
    tokio::task::block_in_place(|| db.cluster.stop(ShutdownMode::Fast)).expect("stop");
    let down_in = service.wait_until(ServingStatus::NotServing, Duration::from_secs(10)).await;
    assert_eq!(service.liveness().await, Some(ServingStatus::Serving), "liveness never depends on the database");
    // During the outage a call fails fast with UNAVAILABLE: it does not wait out its deadline.
    let probe = load::start(service.addr, LoadOptions { clients: 1, retries: 0, ..LoadOptions::standard() }).await;
    progress(&probe, 5, "calls during the outage").await;
    let during = probe.finish().await;
    assert!(during.calls.codes.contains_key("Unavailable"), "{:?}", during.calls.codes);
    assert!(during.calls.longest < Duration::from_secs(1), "a call during the outage took {:?}", during.calls.longest);
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_in)).await;
    tokio::task::block_in_place(|| db.cluster.start_server()).expect("start");
    let up_in = service.wait_until(ServingStatus::Serving, Duration::from_secs(15)).await;
    progress(&running, 100, "load after the outage").await;
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    println!("FAULT-DETAIL outage not_serving_after={down_in:?} serving_again_after={up_in:?}");
    report("down_10s", &result, &verdict, Some(up_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_at_start_becomes_serving_when_it_comes_up() {
    let _serial = serial().await;
    let mut db = Db::start(DbOptions::default());
    tokio::task::block_in_place(|| db.cluster.stop(ShutdownMode::Fast)).expect("stop");
    let service = Service::start(fault_config(&db.url())).await;
    eventually(Duration::from_secs(10), "the process to answer health checks", || async {
        service.liveness().await == Some(ServingStatus::Serving)
    })
    .await;
    assert_eq!(service.health().await, Some(ServingStatus::NotServing));
    tokio::task::block_in_place(|| db.cluster.start_server()).expect("start");
    let up_in = service.wait_until(ServingStatus::Serving, Duration::from_secs(20)).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load once the database is up").await;
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("down_at_start", &result, &verdict, Some(up_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_unknown_outcome_is_retried_to_exactly_one_copy() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    // Every commit now waits for a standby that does not exist.
    sql(&db, "ALTER SYSTEM SET synchronous_standby_names = 'phantom'");
    sql(&db, "SELECT pg_reload_conf()");
    let options = LoadOptions { deadline: Duration::from_secs(8), ..LoadOptions::standard() };
    let running = load::start(service.addr, options).await;
    eventually(Duration::from_secs(20), "commits to wait for the phantom standby", || async {
        sql(&db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").parse::<u32>().unwrap_or(0) >= 4
    })
    .await;
    // The commits are durable locally, but their sessions die before they can say so.
    let killed = tokio::task::block_in_place(|| db.terminate("wait_event = 'SyncRep'"));
    sql(&db, "ALTER SYSTEM RESET synchronous_standby_names");
    sql(&db, "SELECT pg_reload_conf()");
    progress(&running, 100, "load after the ambiguous commits").await;
    let result = running.finish().await;
    assert!(killed > 0);
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    let status = service.status().await;
    assert!(
        status.retries_by_class.get("ambiguous_commit").copied().unwrap_or(0) > 0,
        "the server classified the lost commits as ambiguous and retried them: {:?}",
        status.retries_by_class
    );
    report("commit_outcome_unknown", &result, &verdict, None);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_takes_over_when_the_primary_dies() {
    let _serial = serial().await;
    let mut primary = Db::start(DbOptions { settings: vec!["wal_level = replica".into()], ..Default::default() });
    let replica = tokio::task::block_in_place(|| {
        LocalCluster::start(ClusterOptions {
            standby_of: Some((primary.cluster.port(), "replica1".into())),
            ..Default::default()
        })
    })
    .expect("start the streaming replica");
    // Synchronous replication: an acknowledged commit is on the replica too.
    sql(&primary, "ALTER SYSTEM SET synchronous_standby_names = 'replica1'");
    sql(&primary, "SELECT pg_reload_conf()");
    let url = format!(
        "postgresql://app:{}@localhost:{},localhost:{}/ckpt?sslmode=verify-full&sslrootcert={}&target_session_attrs=read-write",
        primary.password,
        primary.cluster.port(),
        replica.port(),
        primary.ca_path().display()
    );
    let service = Service::start_serving(fault_config(&url)).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 150, "load on the primary").await;
    tokio::task::block_in_place(|| primary.cluster.stop(ShutdownMode::Immediate)).expect("kill the primary");
    let failed_over = tokio::time::Instant::now();
    tokio::task::block_in_place(|| replica.promote()).expect("promote the replica");
    progress(&running, 100, "load on the promoted replica").await;
    let recovered_in = failed_over.elapsed();
    let result = running.finish().await;
    // Verify against the new primary.
    let verdict = {
        let promoted = PromotedView { replica: &replica };
        result.verify_with(service.addr, &|statement| promoted.sql(statement)).await
    };
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("failover_to_replica", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

struct PromotedView<'a> {
    replica: &'a LocalCluster,
}

impl PromotedView<'_> {
    fn sql(&self, statement: &str) -> String {
        tokio::task::block_in_place(|| self.replica.psql("ckpt", statement))
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }
}

/// A server that speaks German (`lc_messages = 'de_DE.UTF-8'`): lock timeouts are recognised
/// as contention and retried, a restart as the server going away, each from its SQLSTATE; no
/// translated message surfaces as an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_speaking_server_is_classified_by_sqlstate_and_loses_nothing() {
    let _serial = serial().await;
    let mut db = Db::start(DbOptions { settings: vec!["lc_messages = 'de_DE.UTF-8'".into()], ..Default::default() });
    let german = tokio::task::block_in_place(|| db.cluster.psql("ckpt", "SELECT 1/0")).expect_err("division by zero");
    assert!(german.to_string().contains("Division durch Null"), "the server speaks German: {german}");
    sql(&db, "ALTER ROLE app SET lock_timeout = '200ms'");
    let service = Service::start_serving(fault_config(&db.url())).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load before the lock").await;
    let admin = crate::helpers::connect(&db.cluster.url("ckpt")).await;
    admin.batch_execute("BEGIN; LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE").await.expect("lock");
    eventually(Duration::from_secs(30), "lock timeouts to be retried as contention", || async {
        service.status().await.retries_by_class.get("contention").copied().unwrap_or(0) > 0
    })
    .await;
    admin.batch_execute("ROLLBACK").await.expect("unlock");
    progress(&running, 100, "load after the lock").await;
    tokio::task::block_in_place(|| db.cluster.restart(ShutdownMode::Fast)).expect("restart");
    let restarted = tokio::time::Instant::now();
    progress(&running, 100, "load after the restart").await;
    let recovered_in = restarted.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    assert_eq!(result.calls.codes.get("Internal"), None, "{:?}", result.calls.messages);
    let failures = service.status().await.retries_by_class;
    assert_eq!(failures.get("internal").copied().unwrap_or(0), 0, "{failures:?}");
    report("german_lock_timeout_and_restart", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

/// A synchronous standby that stops: COMMIT waits for it. Even with a statement timeout shorter
/// than the deadline, the wait is never cut short into a local-only commit that is acknowledged
/// (PostgreSQL would warn "committed locally, but might not have been replicated" and report
/// success): the call ends with DEADLINE_EXCEEDED, and succeeds once the standby is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_synchronous_standby_never_gets_a_write_acknowledged() {
    let _serial = serial().await;
    let primary = Db::start(DbOptions { settings: vec!["wal_level = replica".into()], ..Default::default() });
    let mut standby = tokio::task::block_in_place(|| {
        LocalCluster::start(ClusterOptions {
            standby_of: Some((primary.cluster.port(), "standby1".into())),
            ..Default::default()
        })
    })
    .expect("start the streaming standby");
    sql(&primary, "ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    sql(&primary, "SELECT pg_reload_conf()");
    let mut config = fault_config(&primary.url());
    config.database.statement_timeout = Duration::from_millis(500);
    let service = Service::start_serving(config).await;
    let deadline = Duration::from_secs(3);
    let mut client = load::client(service.addr, deadline).await;
    client.put(load::put_request("sync", 0, 1, None)).await.expect("a replicated write");
    tokio::task::block_in_place(|| standby.stop(ShutdownMode::Fast)).expect("stop the standby");
    let started = tokio::time::Instant::now();
    let status = client.put(load::put_request("sync", 0, 2, None)).await.expect_err("never acknowledged");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() <= deadline + MARGIN, "answered after {:?}", started.elapsed());
    tokio::task::block_in_place(|| standby.start_server()).expect("restart the standby");
    eventually(Duration::from_secs(30), "the write to succeed once the standby is back", || {
        let mut client = client.clone();
        async move { client.put(load::put_request("sync", 0, 2, None)).await.is_ok() }
    })
    .await;
    service.stop().await;
}
