//! Wires the service together: pool, monitor, store, gRPC server, readiness and shutdown.
//!
//! [`Application::build`] binds the listener (port 0 in tests) without waiting for the
//! database; [`Application::run_until_stopped`] serves until the shutdown future resolves, then
//! reports NOT_SERVING, drains in-flight calls for at most the grace period, and closes the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::{AuthConfig, Config};
use crate::domain::Validator;
use crate::grpc::auth::{Authenticator, TokenFile};
use crate::grpc::tls::{ReloadableTls, ServerTlsError};
use crate::grpc::{self, CHECKPOINT_SERVICE_NAME, CheckpointGrpc, Services};
use crate::reload::{self, Reload};
use crate::storage::pool::PoolSetupError;
use crate::storage::{Pool, Store, migrations, monitor};
use crate::telemetry;

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pool settings are unusable.
    #[error(transparent)]
    Pool(#[from] PoolSetupError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The TLS certificate, key or client CA is unusable.
    #[error(transparent)]
    Tls(#[from] ServerTlsError),
    /// The bearer tokens are unusable.
    #[error(transparent)]
    Tokens(#[from] crate::config::TokenFileError),
}

impl From<(SocketAddr, std::io::Error)> for StartError {
    fn from((address, error): (SocketAddr, std::io::Error)) -> Self {
        StartError::Bind(address, error)
    }
}

/// The service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not be built.
    #[error(transparent)]
    Reflection(#[from] grpc::ReflectionError),
    /// The transport failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A built, not yet serving, checkpointd.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    metrics_listener: Option<TcpListener>,
    tls: Option<Arc<ReloadableTls>>,
    authenticator: Option<Arc<Authenticator>>,
    token_file: Option<Arc<TokenFile>>,
    prometheus: Option<prometheus::Registry>,
    config: Config,
    store: Arc<Store>,
    database_up: watch::Receiver<bool>,
    background: CancellationToken,
}

impl Application {
    /// Binds the listener and starts the pool and the database monitor.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let pool = Arc::new(Pool::new(config.database.clone(), config.pool.clone())?);
        let background = CancellationToken::new();
        let database_up = monitor::spawn(pool.clone(), config.monitor.clone(), background.clone());
        let store = Arc::new(Store::new(pool, &config, database_up.clone()));
        let server = &config.server;
        let tls = server.tls.clone().map(ReloadableTls::load).transpose()?.map(Arc::new);
        let (authenticator, token_file) = authentication(&server.auth)?;
        let listener = grpc::bind(server.listen).await?;
        let health_listener = bind_optional(server.health_listen).await?;
        let metrics_listener = bind_optional(server.metrics_listen).await?;
        telemetry::observe_store(store.clone());
        tracing::info!(
            database = %store.pool().describe(),
            tls = tls.is_some(),
            mutual_tls = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            tokens = authenticator.as_ref().map_or(0, |a| a.token_count()),
            "configured"
        );
        Ok(Self {
            listener,
            health_listener,
            metrics_listener,
            tls,
            authenticator,
            token_file,
            prometheus: None,
            config,
            store,
            database_up,
            background,
        })
    }

    /// Serves `registry` on the metrics listener (the registry the telemetry's Prometheus
    /// reader fills).
    pub fn with_prometheus(mut self, registry: Option<prometheus::Registry>) -> Self {
        self.prometheus = registry;
        self
    }

    /// The address of the Prometheus endpoint, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the plaintext health listener, when one is configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains for at most the grace period.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let server = self.config.server.clone();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status(CHECKPOINT_SERVICE_NAME, ServingStatus::NotServing).await;
        let services = Services {
            checkpoints: CheckpointGrpc::new(
                self.store.clone(),
                Validator::new(server.limits),
                self.config.default_deadline,
            ),
            diagnostics: grpc::DiagnosticsGrpc::new(self.store.clone()),
            health: health.clone(),
            authenticator: self.authenticator.clone(),
        };
        let router = grpc::router(services, &server)?;
        self.spawn_background(reporter.clone(), health);
        let draining = Arc::new(Notify::new());
        let signal = stop_serving(shutdown, reporter, server.shutdown_delay, self.background.clone(), draining.clone());
        tracing::info!(address = %self.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()), "serving gRPC");
        let listener = self.listener;
        tokio::select! {
            served = grpc::serve(router, listener, self.tls.clone(), signal) => served?,
            () = grace_expired(draining, server.shutdown_grace) => {
                tracing::warn!(grace = ?server.shutdown_grace, "shutdown grace expired; dropping the calls still running");
            }
        }
        self.background.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves when tonic should stop accepting calls: after the shutdown request and the delay
/// during which health already says NOT_SERVING.
impl Application {
    /// Readiness, the metrics and health listeners, and configuration reloads; all stop with
    /// `background`.
    fn spawn_background<H: tonic_health::pb::health_server::Health>(
        &mut self,
        reporter: HealthReporter,
        health: tonic_health::pb::health_server::HealthServer<H>,
    ) {
        if !self.config.migrate_on_start {
            self.store.set_schema_ready();
        }
        let readiness = Readiness {
            reporter,
            store: self.store.clone(),
            migrate: self.config.migrate_on_start,
            database_up: self.database_up.clone(),
            stop: self.background.clone(),
        };
        tokio::spawn(readiness.follow());
        if let Some(listener) = self.metrics_listener.take() {
            let registry = self.prometheus.clone().unwrap_or_default();
            tokio::spawn(telemetry::prometheus::serve(listener, registry, self.background.clone()));
        }
        if let Some(listener) = self.health_listener.take() {
            let stop = self.background.clone();
            tokio::spawn(async move {
                if let Err(e) = grpc::serve_health(health, listener, stop.cancelled_owned()).await {
                    tracing::error!(error = %e, "the health listener failed");
                }
            });
        }
        let mut targets: Vec<Arc<dyn Reload>> = Vec::new();
        if let Some(tls) = &self.tls {
            targets.push(tls.clone());
        }
        if let Some(tokens) = &self.token_file {
            targets.push(tokens.clone());
        }
        reload::spawn(targets, self.config.server.reload_interval, self.background.clone());
    }
}

async fn bind_optional(address: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
    match address {
        Some(address) => Ok(Some(grpc::bind(address).await?)),
        None => Ok(None),
    }
}

/// The authenticator (when tokens are configured) and the token file to watch.
type Authentication = (Option<Arc<Authenticator>>, Option<Arc<TokenFile>>);

fn authentication(config: &AuthConfig) -> Result<Authentication, StartError> {
    if !config.enabled() {
        return Ok((None, None));
    }
    let authenticator = Arc::new(Authenticator::new(&config.tokens, config.open_health, config.open_reflection));
    let token_file = match &config.tokens_file {
        Some(path) => {
            let file = TokenFile::new(path.clone(), config.tokens.clone(), authenticator.clone());
            authenticator.replace(&file.read().map_err(StartError::Tokens)?);
            Some(Arc::new(file))
        }
        None => None,
    };
    Ok((Some(authenticator), token_file))
}

async fn stop_serving(
    shutdown: impl Future<Output = ()>,
    reporter: HealthReporter,
    delay: Duration,
    background: CancellationToken,
    draining: Arc<Notify>,
) {
    shutdown.await;
    tracing::info!(?delay, "shutdown requested: reporting NOT_SERVING");
    background.cancel();
    reporter.set_service_status(CHECKPOINT_SERVICE_NAME, ServingStatus::NotServing).await;
    reporter.set_service_status("", ServingStatus::NotServing).await;
    tokio::time::sleep(delay).await;
    tracing::info!("closing the listener and draining in-flight calls");
    draining.notify_one();
}

async fn grace_expired(draining: Arc<Notify>, grace: Duration) {
    draining.notified().await;
    tokio::time::sleep(grace).await;
}

/// Keeps the health status of the checkpoint service equal to "migrated and reachable".
struct Readiness {
    reporter: HealthReporter,
    store: Arc<Store>,
    migrate: bool,
    database_up: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Readiness {
    async fn follow(mut self) {
        if self.migrate && !self.migrate_when_reachable().await {
            return;
        }
        loop {
            let up = *self.database_up.borrow_and_update();
            if self.stop.is_cancelled() {
                return;
            }
            let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
            self.reporter.set_service_status(CHECKPOINT_SERVICE_NAME, status).await;
            tokio::select! {
                changed = self.database_up.changed() => if changed.is_err() { return },
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// Runs migrations once the database answers, retrying until they succeed; false on shutdown.
    async fn migrate_when_reachable(&mut self) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *self.database_up.borrow() {
                match migrations::run(self.store.pool()).await {
                    Ok(report) => {
                        tracing::info!(applied = ?report.applied, version = report.version, "schema is current");
                        self.store.set_schema_ready();
                        return true;
                    }
                    Err(e) => tracing::error!(error = %e, "migration failed; retrying"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(5)),
                _ = self.database_up.changed() => {},
                () = self.stop.cancelled() => return false,
            }
        }
    }
}
