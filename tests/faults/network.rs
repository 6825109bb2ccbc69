//! The network between checkpointd and PostgreSQL misbehaves: connections cut or refused, a
//! silent blackhole, a peer that accepts and never answers, and a real half-open connection.

use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::eventually;
use crate::support::cluster::{Db, DbOptions};
use crate::support::load::{self, LoadOptions};
use crate::support::netns::Netns;
use crate::support::proxy::{FaultProxy, Mode};
use crate::support::serial;
use crate::support::service::{Service, fault_config};
use crate::{MARGIN, progress, report};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_refused_connections_lose_nothing() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", db.cluster.port()).parse().expect("address")).await;
    let service = Service::start_serving(fault_config(&db.url_for("localhost", proxy.port))).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load through the proxy").await;
    for _ in 0..4 {
        proxy.cut_all();
        progress(&running, 40, "load between cuts").await;
    }
    proxy.set_latency(Duration::from_millis(100));
    progress(&running, 30, "load over a slow link").await;
    proxy.set_latency(Duration::ZERO);
    proxy.set_mode(Mode::Refuse);
    proxy.cut_all();
    eventually(Duration::from_secs(20), "the pool's reconnects to be refused", || async { proxy.refused() >= 3 }).await;
    proxy.set_mode(Mode::Pass);
    let healed = tokio::time::Instant::now();
    progress(&running, 100, "load after the proxy heals").await;
    let recovered_in = healed.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("tcp_cut_and_refused", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_blackhole_ends_calls_at_their_deadline_and_the_pool_heals() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", db.cluster.port()).parse().expect("address")).await;
    let service = Service::start_serving(fault_config(&db.url_for("localhost", proxy.port))).await;
    let options = LoadOptions { deadline: Duration::from_secs(2), ..LoadOptions::standard() };
    let running = load::start(service.addr, options).await;
    progress(&running, 100, "load before the blackhole").await;
    proxy.set_mode(Mode::Blackhole);
    service.wait_until(ServingStatus::NotServing, Duration::from_secs(10)).await;
    progress(&running, 20, "calls ending inside the blackhole").await;
    proxy.set_mode(Mode::Pass);
    let healed = tokio::time::Instant::now();
    service.wait_until(ServingStatus::Serving, Duration::from_secs(15)).await;
    progress(&running, 100, "load after the blackhole").await;
    let recovered_in = healed.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("blackhole", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

/// A hung pooler or load balancer: new connections are accepted and never answered (nor ever
/// closed) while every live connection is terminated. Each set-up must give up after
/// `connect_timeout`, so the pool never holds a slot it cannot use, and once new connections
/// work again the service is back within `connect_timeout` + 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_never_answers_holds_no_pool_slot() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", db.cluster.port()).parse().expect("address")).await;
    let mut config = fault_config(&db.url_for("localhost", proxy.port));
    // No rebuilt pool may be what frees the slots that hung set-ups hold.
    config.pool.recreation_enabled = false;
    let connect_timeout = config.database.connect_timeout;
    let max_size = u64::from(config.pool.max_size);
    let service = Service::start_serving(config).await;
    let running = load::start(service.addr, LoadOptions::standard()).await;
    progress(&running, 100, "load before the peer hangs").await;
    proxy.set_mode(Mode::Silent);
    tokio::task::block_in_place(|| db.terminate("true"));
    // More set-ups than the pool has slots: each hung set-up was given up and its slot reused.
    eventually(Duration::from_secs(60), "hung set-ups to be abandoned and retried", || async {
        proxy.silent() as u64 > max_size + 2
    })
    .await;
    proxy.set_mode(Mode::Pass);
    let healed = tokio::time::Instant::now();
    let back_in = first_success(service.addr).await;
    let recovered_in = healed.elapsed();
    progress(&running, 100, "load after the peer answers again").await;
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    assert!(
        back_in <= connect_timeout + Duration::from_secs(1) + MARGIN,
        "served again {back_in:?} after the peer healed (connect_timeout {connect_timeout:?})"
    );
    println!("FAULT-DETAIL silent_peer silent_sockets={} first_success_after={back_in:?}", proxy.silent());
    report("silent_peer", &result, &verdict, Some(recovered_in));
    service.stop().await;
}

/// How long until a Put with a short deadline succeeds, trying again at once after each failure.
async fn first_success(addr: std::net::SocketAddr) -> Duration {
    let started = tokio::time::Instant::now();
    let mut client = load::client(addr, Duration::from_millis(500)).await;
    for attempt in 0.. {
        let request = load::put_request("first-success", 0, attempt, None);
        if client.put(request).await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no call succeeded within 60 s");
    }
    unreachable!("the loop returns or panics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_fails_within_the_deadline_never_hangs() {
    let _serial = serial().await;
    let netns = tokio::task::block_in_place(Netns::create);
    let db = Db::start(DbOptions {
        listen_address: Some(netns.ns_ip.clone()),
        netns: Some(netns.name.clone()),
        ..Default::default()
    });
    let service = Service::start_serving(fault_config(&db.url_for(&netns.ns_ip, db.cluster.port()))).await;
    let options = LoadOptions { deadline: Duration::from_secs(3), ..LoadOptions::standard() };
    let running = load::start(service.addr, options).await;
    progress(&running, 100, "load before the partition").await;
    tokio::task::block_in_place(|| netns.blackhole());
    service.wait_until(ServingStatus::NotServing, Duration::from_secs(15)).await;
    progress(&running, 20, "calls ending inside the partition").await;
    tokio::task::block_in_place(|| netns.heal());
    let healed = tokio::time::Instant::now();
    service.wait_until(ServingStatus::Serving, Duration::from_secs(20)).await;
    progress(&running, 100, "load after the partition").await;
    let recovered_in = healed.elapsed();
    let result = running.finish().await;
    let verdict = result.verify(service.addr, &db).await;
    verdict.assert_nothing_lost(result.options.deadline, MARGIN);
    report("half_open_partition", &result, &verdict, Some(recovered_in));
    service.stop().await;
    drop(db);
    drop(netns);
}
