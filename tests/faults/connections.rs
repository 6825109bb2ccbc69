//! Connections killed under the pool: idle ones, busy ones, and ones the server times out.

use std::time::Duration;

use checkpointd::devdb::{ClusterOptions, LocalCluster};

use crate::helpers::eventually;
use crate::support::certs::generate;
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
    // One statement per call in autocommit is short, so many kills land between calls (the pool
    // then drops the dead connection at checkout): keep killing until some landed mid-call.
    let retried = || async { service.status().await.retries_by_class.values().sum::<u64>() };
    let mut killed = 0;
    for round in 0.. {
        if round >= 6 && (retried().await > 0 || round >= 400) {
            break;
        }
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
    // The fault is time itself: every pooled session idles past the server's timeout, and the
    // server ends it (the monitor's own session, pinged every second, may survive).
    let pooled = sql(&db, "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = 'app'");
    eventually(Duration::from_secs(20), "the server to end the idle pooled sessions", || async {
        let left = format!("SELECT count(*) FROM pg_stat_activity WHERE pid IN ({pooled})");
        sql(&db, &left).parse::<u32>().unwrap_or(u32::MAX) <= 1
    })
    .await;
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

/// `sslmode=prefer` against a server that agrees to TLS and then fails the handshake (here it
/// speaks only TLS 1.1, which rustls refuses): as with libpq, the connection is made again
/// without TLS, and the service serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plaintext_when_the_tls_handshake_fails() {
    let _serial = serial().await;
    let certs = generate(&["localhost", "127.0.0.1"]);
    let cluster = tokio::task::block_in_place(|| {
        LocalCluster::start(ClusterOptions {
            settings: vec![
                "ssl = on".into(),
                "ssl_cert_file = 'server.crt'".into(),
                "ssl_key_file = 'server.key'".into(),
                "ssl_min_protocol_version = 'TLSv1'".into(),
                "ssl_max_protocol_version = 'TLSv1.1'".into(),
            ],
            hba: Some("local all all trust\nhost all all 127.0.0.1/32 trust\n".into()),
            files: vec![
                ("server.crt".into(), certs.cert_pem.clone().into_bytes(), 0o600),
                ("server.key".into(), certs.key_pem.clone().into_bytes(), 0o600),
            ],
            ..Default::default()
        })
    })
    .expect("start a cluster that only speaks TLS 1.1");
    let url = format!("postgresql://postgres@127.0.0.1:{}/postgres?sslmode=prefer", cluster.port());
    let service = Service::start_serving(fault_config(&url)).await;
    let mut client = load::client(service.addr, Duration::from_secs(5)).await;
    client.put(load::put_request("prefer", 0, 1, None)).await.expect("served without TLS");
    let ssl = tokio::task::block_in_place(|| {
        cluster.psql("postgres", "SELECT bool_or(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'postgres' AND client_addr IS NOT NULL")
    })
    .expect("pg_stat_ssl");
    assert_eq!(ssl, "f", "the connections are plaintext");
    service.stop().await;
}
