//! checkpointd running in the test process against a throwaway cluster, tuned to notice faults
//! within seconds.

use std::net::SocketAddr;
use std::time::Duration;

use checkpointd::app::{Application, ServeError};
use checkpointd::config::{Config, DatabaseFlags, Secret, resolve_database};
use checkpointd::grpc::pb;
use checkpointd::grpc::pb::diagnostics_service_client::DiagnosticsServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{channel, eventually, health_status, test_config};

/// The health name of the checkpoint service.
pub const SERVICE: &str = "checkpoint.v1.CheckpointService";

/// checkpointd's configuration for fault tests, connecting with `url`.
pub fn fault_config(url: &str) -> Config {
    let flags = DatabaseFlags {
        url: Some(Secret::new(url)),
        connect_timeout: Some(Duration::from_secs(2)),
        keepalives_idle: Some(Duration::from_secs(1)),
        keepalives_interval: Some(Duration::from_secs(1)),
        keepalives_retries: Some(2),
        tcp_user_timeout: Some(Duration::from_secs(2)),
        statement_timeout: Some(Duration::from_secs(5)),
        idle_in_transaction_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let database = resolve_database(&flags, &|_| None).expect("valid fault-test URL");
    let mut config = test_config("postgresql://unused@127.0.0.1/unused");
    config.storage.list_page_size = 64;
    config.pool.acquire_timeout = Duration::from_secs(2);
    config.pool.validation_timeout = Duration::from_millis(500);
    config.pool.validation_skip = Duration::from_millis(200);
    config.pool.recreation_cooldown = Duration::from_secs(2);
    config.database = database;
    config
}

/// A running checkpointd.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Service {
    /// Starts the service (it may report NOT_SERVING until the database answers).
    pub async fn start(config: Config) -> Service {
        crate::support::logs::capture();
        let application = Application::build(config).await.expect("build checkpointd");
        let addr = application.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Service { addr, stop: Some(stop), task: Some(task) }
    }

    /// Starts the service and waits until it serves.
    pub async fn start_serving(config: Config) -> Service {
        let service = Service::start(config).await;
        service.wait_until(ServingStatus::Serving, Duration::from_secs(30)).await;
        service
    }

    /// Waits until the checkpoint service reports `status`; returns how long it took.
    pub async fn wait_until(&self, status: ServingStatus, limit: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let addr = self.addr;
        eventually(limit, &format!("{SERVICE} to report {status:?}"), || async move {
            health_status(addr, SERVICE).await == Some(status)
        })
        .await;
        started.elapsed()
    }

    /// The checkpoint service's health.
    pub async fn health(&self) -> Option<ServingStatus> {
        health_status(self.addr, SERVICE).await
    }

    /// The process-level health ("").
    pub async fn liveness(&self) -> Option<ServingStatus> {
        health_status(self.addr, "").await
    }

    /// The diagnostics snapshot.
    pub async fn status(&self) -> pb::GetStatusResponse {
        let mut client = DiagnosticsServiceClient::new(channel(self.addr).await);
        client.get_status(pb::GetStatusRequest {}).await.expect("diagnostics").into_inner()
    }

    /// Stops the service gracefully.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("service task").expect("service stopped cleanly");
        }
    }
}
