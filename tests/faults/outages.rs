//! The server goes away: restarts, a long outage, a server down at start, a commit whose outcome
//! is unknown, and a failover to a promoted replica.

use std::time::Duration;

use checkpointd::devdb::{ClusterOptions, LocalCluster};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::eventually;
use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report, sql};

async fn restart_under_load(mode: &str) {
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
    report(&format!("restart_{mode}"), &result, &verdict, Some(recovered_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_under_load_loses_nothing() {
    let _serial = serial().await;
    restart_under_load("fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_restart_with_crash_recovery_under_load_loses_nothing() {
    let _serial = serial().await;
    restart_under_load("immediate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_down_fails_fast_flips_health_both_ways_and_recovers() {
    let _serial = serial().await;
    let mut db = Db::start(DbOptions::default());
    let service = Service::start_serving(fault_config(&db.url())).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 150, "load before the outage").await;
    tokio::task::block_in_place(|| db.cluster.stop("fast")).expect("stop");
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
    tokio::task::block_in_place(|| db.cluster.stop("fast")).expect("stop");
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
    tokio::task::block_in_place(|| primary.cluster.stop("immediate")).expect("kill the primary");
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
