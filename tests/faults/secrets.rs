//! Secrets stay secret: after every scenario, neither the logs nor any message a client saw
//! contains the database password, including when the password is wrong.

use std::collections::BTreeSet;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{channel, eventually, get};
use crate::support::cluster::{Db, DbOptions, password};
use crate::support::serial;
use crate::support::service::{Service, fault_config};

/// Fails when the password appears in the captured logs or in `messages`.
pub fn assert_no_secret_leaked(messages: &BTreeSet<String>) {
    let secret = password();
    assert!(!crate::support::logs::text().contains(&secret), "the database password reached the logs");
    assert!(messages.iter().all(|m| !m.contains(&secret)), "the database password reached a client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_without_revealing_either_password() {
    let _serial = serial().await;
    let db = Db::start(DbOptions::default());
    let wrong = format!("{}-wrong", db.password);
    let url = db.url().replace(&db.password, &wrong);
    let service = Service::start(fault_config(&url)).await;
    eventually(Duration::from_secs(10), "the process to serve health", || async {
        service.liveness().await == Some(ServingStatus::Serving)
    })
    .await;
    assert_eq!(service.health().await, Some(ServingStatus::NotServing));
    let mut client = crate::support::load::client(service.addr, Duration::from_secs(2)).await;
    let status = client
        .get_tuple(checkpointd::grpc::pb::GetTupleRequest { thread_id: "t".into(), ..Default::default() })
        .await
        .expect_err("cannot reach the database");
    let logs = crate::support::logs::text();
    assert!(logs.contains("password authentication failed"), "the cause is logged");
    assert!(!logs.contains(&wrong) && !status.message().contains(&wrong), "the wrong password stays secret");
    assert_no_secret_leaked(&BTreeSet::from([status.message().to_owned()]));
    service.stop().await;

    let service = Service::start_serving(fault_config(&db.url())).await;
    let mut client =
        checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient::new(channel(service.addr).await);
    assert!(get(&mut client, "nobody", "", None).await.is_none(), "the right password works");
    assert_no_secret_leaked(&BTreeSet::new());
    service.stop().await;
}
