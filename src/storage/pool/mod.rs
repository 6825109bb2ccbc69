//! The connection pool: bb8 over our own manager, behind a handle that can rebuild it.
//!
//! Rebuilding (after repeated failures on the path to the database) swaps in a fresh bb8 pool
//! built from the same settings, re-reading the TLS files and resolving host names again, so
//! failovers, DNS changes and rotated certificates are picked up. Calls already holding a
//! connection of the old pool finish on it; the old pool closes when its last connection returns.

mod connect;
mod counters;
mod manager;
mod tls;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bb8::{ErrorSink, QueueStrategy, RunError};

pub(crate) use counters::{CloseCause, PoolCounters};
pub(crate) use manager::{ConnectError, Manager, ManagerSettings, PgConn};
pub(crate) use tls::TlsSetupError;

use crate::config::{DatabaseConfig, PoolConfig};
use crate::retry::ErrorClass;

/// A connection checked out of the pool; it goes back (or is discarded) when dropped.
pub(crate) type PooledConn = bb8::PooledConnection<'static, Manager>;

/// Why no connection was handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutError {
    /// Every connection is in use and none came back in time.
    #[error("all {0} database connections are busy")]
    Saturated(u32),
    /// New connections cannot be opened; carries the class of the latest connect failure.
    #[error("the database cannot be reached ({0})")]
    Unreachable(ErrorClass),
}

/// A snapshot of the pool, for diagnostics and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    /// The configured maximum.
    pub max_size: u32,
    /// Open connections.
    pub connections: u32,
    /// Idle connections.
    pub idle: u32,
    /// Callers waiting for a connection.
    pub waiting: u64,
    /// Checkouts that found no idle connection, since start.
    pub waited: u64,
    /// Checkouts that timed out, since start.
    pub timed_out: u64,
    /// Times the pool was rebuilt.
    pub recreations: u64,
    /// Connections opened since start.
    pub connections_created: u64,
    /// Failed connection attempts since start.
    pub connect_failures: u64,
    /// Connections closed since start, by cause.
    pub connections_closed: Vec<(CloseCause, u64)>,
}

/// The pool handle shared by the whole service.
#[derive(Debug)]
pub struct Pool {
    current: ArcSwap<bb8::Pool<Manager>>,
    database: DatabaseConfig,
    config: PoolConfig,
    counters: Arc<PoolCounters>,
    consecutive_path_failures: AtomicU32,
    last_recreation: Mutex<Option<Instant>>,
    checkouts: CheckoutCounters,
}

/// Checkouts counted here rather than by bb8, whose statistics miss a wait that the caller's own
/// deadline ends.
#[derive(Debug, Default)]
struct CheckoutCounters {
    waiting: AtomicU64,
    waited: AtomicU64,
    timed_out: AtomicU64,
}

/// Decrements the waiting count however the checkout ends, including by cancellation.
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool could not be set up (bad TLS files, impossible settings).
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    /// A TLS file is unusable.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

impl Pool {
    /// Builds the pool without waiting for the database: connections open in the background, so
    /// the service starts (and reports NOT_SERVING) while the database is down.
    pub fn new(database: DatabaseConfig, config: PoolConfig) -> Result<Self, PoolSetupError> {
        let counters = Arc::new(PoolCounters::default());
        let first = build(&database, &config, &counters)?;
        Ok(Self {
            current: ArcSwap::from_pointee(first),
            database,
            config,
            counters,
            consecutive_path_failures: AtomicU32::new(0),
            last_recreation: Mutex::new(None),
            checkouts: CheckoutCounters::default(),
        })
    }

    /// Whether connections keep their prepared statements (off behind a transaction-mode
    /// pooler): only then is a statement one round trip outside a transaction.
    pub fn keeps_statements(&self) -> bool {
        self.database.statement_cache
    }

    /// Asks the server to cancel what the connection of `token` is running, over a new
    /// connection with the connections' TLS settings (read afresh, as a rebuilt pool would),
    /// within the connect timeout. Best effort: the statement may finish first.
    pub async fn cancel(&self, token: tokio_postgres::CancelToken) {
        let tls = match tls::client_config(&self.database.tls) {
            Ok(config) => tokio_postgres_rustls::MakeRustlsConnect::new(config),
            Err(error) => return tracing::warn!(%error, "cannot send a cancel request"),
        };
        let cancel = token.cancel_query(tls);
        let bound = match self.database.connect_timeout {
            t if t.is_zero() => Duration::from_secs(5),
            t => t,
        };
        match tokio::time::timeout(bound, cancel).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "cancel request failed"),
            Err(_) => tracing::debug!("cancel request timed out"),
        }
    }

    /// The longest a checkout waits, unless the caller's deadline is sooner.
    pub fn acquire_timeout(&self) -> Duration {
        self.config.acquire_timeout
    }

    /// Checks a connection out, waiting at most `wait`.
    pub async fn get(&self, wait: Duration) -> Result<PooledConn, CheckoutError> {
        let pool = self.current.load_full();
        if pool.state().idle_connections == 0 {
            self.checkouts.waited.fetch_add(1, Ordering::Relaxed);
        }
        self.checkouts.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.checkouts.waiting);
        match tokio::time::timeout(wait, pool.get_owned()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(RunError::User(e))) => Err(CheckoutError::Unreachable(e.class())),
            Ok(Err(RunError::TimedOut)) | Err(_) => {
                self.checkouts.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(self.explain_timeout(&pool))
            }
        }
    }

    fn explain_timeout(&self, pool: &bb8::Pool<Manager>) -> CheckoutError {
        let state = pool.state();
        let last_error = self.counters.last_connect_error();
        if state.connections >= self.config.max_size && state.idle_connections == 0 && last_error.is_none() {
            return CheckoutError::Saturated(self.config.max_size);
        }
        CheckoutError::Unreachable(last_error.unwrap_or(ErrorClass::ServerUnavailable))
    }

    /// Opens a connection outside the pool, for migrations and the health monitor.
    pub async fn dedicated(&self) -> Result<PgConn, ConnectError> {
        self.current.load_full().dedicated_connection().await
    }

    /// Records how an attempt ended; repeated failures on the path to the database rebuild the
    /// pool (at most once per cooldown). Returns true when this call rebuilt it.
    pub fn record_attempt(&self, failure: Option<ErrorClass>) -> bool {
        match failure {
            None => {
                self.consecutive_path_failures.store(0, Ordering::Relaxed);
                false
            }
            Some(class) if class.suggests_pool_recreation() => {
                let failures = self.consecutive_path_failures.fetch_add(1, Ordering::Relaxed) + 1;
                failures >= self.config.recreate_after_failures && self.recreate(class)
            }
            Some(_) => false,
        }
    }

    /// Rebuilds the pool now unless disabled or within the cooldown. Single flight: concurrent
    /// callers see the cooldown and return false.
    pub fn recreate(&self, reason: ErrorClass) -> bool {
        if !self.config.recreation_enabled {
            return false;
        }
        let Ok(mut last) = self.last_recreation.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < self.config.recreation_cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        self.consecutive_path_failures.store(0, Ordering::Relaxed);
        match build(&self.database, &self.config, &self.counters) {
            Ok(fresh) => {
                self.current.store(Arc::new(fresh));
                self.counters.recreated();
                tracing::warn!(target: "checkpointd::pool", reason = %reason, "database connection pool recreated");
                true
            }
            Err(e) => {
                tracing::error!(target: "checkpointd::pool", error = %e, "could not recreate the connection pool");
                false
            }
        }
    }

    /// The pool's current state.
    pub fn status(&self) -> PoolStatus {
        let state = self.current.load().state();
        PoolStatus {
            max_size: self.config.max_size,
            connections: state.connections,
            idle: state.idle_connections,
            waiting: self.checkouts.waiting.load(Ordering::Relaxed),
            waited: self.checkouts.waited.load(Ordering::Relaxed),
            timed_out: self.checkouts.timed_out.load(Ordering::Relaxed),
            recreations: self.counters.recreations(),
            connections_created: self.counters.connections_created(),
            connect_failures: self.counters.connect_failures(),
            connections_closed: CloseCause::ALL.iter().map(|c| (*c, self.counters.connections_closed(*c))).collect(),
        }
    }

    /// Where the pool connects, for logs (no password).
    pub fn describe(&self) -> String {
        self.database.describe()
    }
}

fn build(
    database: &DatabaseConfig,
    config: &PoolConfig,
    counters: &Arc<PoolCounters>,
) -> Result<bb8::Pool<Manager>, PoolSetupError> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&database.tls)?);
    let settings = ManagerSettings {
        statement_cache: database.statement_cache,
        validation_timeout: config.validation_timeout,
        validation_skip: config.validation_skip,
        max_lifetime: config.max_lifetime,
        lifetime_jitter: config.lifetime_jitter,
        connect_timeout: database.connect_timeout,
    };
    let manager = Manager::new(connect::host_configs(database), tls, &settings, counters.clone());
    Ok(bb8::Pool::builder()
        .max_size(config.max_size.max(1))
        .min_idle(Some(config.min_idle.min(config.max_size)))
        .max_lifetime(None)
        .idle_timeout(Some(config.idle_timeout))
        .connection_timeout(config.acquire_timeout)
        .test_on_check_out(true)
        .retry_connection(true)
        .queue_strategy(QueueStrategy::Lifo)
        .error_sink(Box::new(LoggingSink { counters: counters.clone() }))
        .build_unchecked(manager))
}

/// Where bb8 reports connect and validation failures (callers only ever see a timeout).
#[derive(Debug, Clone)]
struct LoggingSink {
    counters: Arc<PoolCounters>,
}

impl ErrorSink<ConnectError> for LoggingSink {
    fn sink(&self, error: ConnectError) {
        let class = error.class();
        if error.phase == crate::retry::Phase::Connect {
            self.counters.set_last_connect_error(Some(class));
        }
        tracing::warn!(target: "checkpointd::pool", error_class = %class, error = %error.message, "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<ConnectError>> {
        Box::new(self.clone())
    }
}
