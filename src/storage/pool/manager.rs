//! Our bb8 connection manager: diesel-async connections over tokio-postgres and rustls, validated
//! on checkout with a bounded ping, and discarded whenever their state is in doubt.

use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::CacheSize;
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::retry::{ErrorClass, Failure, Phase, classify};
use crate::storage::pool::counters::{CloseCause, PoolCounters};

/// A pooled connection with the bookkeeping the pool needs.
pub struct PgConn {
    conn: AsyncPgConnection,
    expires_at: Instant,
    last_used: Instant,
    in_flight: bool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl PgConn {
    /// Marks the connection busy until [`PgConn::finish_use`]. A connection dropped while busy
    /// (a cancelled call, a timed-out statement) is discarded, never reused: its session state is
    /// unknown.
    pub fn begin_use(&mut self) {
        self.in_flight = true;
    }

    /// Marks the connection idle and fresh again.
    pub fn finish_use(&mut self) {
        self.in_flight = false;
        self.last_used = Instant::now();
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }
}

impl Deref for PgConn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// Why a connection could not be opened or kept, with what the classifier needs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// The server's or driver's message (never a password: tokio-postgres does not print one).
    pub message: String,
    /// The SQLSTATE, when the server sent an error.
    pub sqlstate: Option<String>,
    /// The IO error kind, when a socket failed.
    pub io_kind: Option<io::ErrorKind>,
    /// Where it failed.
    pub phase: Phase,
}

impl ConnectError {
    fn from_postgres(err: &tokio_postgres::Error) -> Self {
        let io_kind = std::iter::successors(std::error::Error::source(err), |e| e.source())
            .find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind));
        let message = match err.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => error_chain(err),
        };
        Self { message, sqlstate: err.code().map(|c| c.code().to_owned()), io_kind, phase: Phase::Connect }
    }

    fn validation(message: String) -> Self {
        Self { message, sqlstate: None, io_kind: None, phase: Phase::Checkout }
    }

    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        classify(&Failure {
            phase: self.phase,
            sqlstate: self.sqlstate.as_deref(),
            message: &self.message,
            connection_broken: true,
            io_kind: self.io_kind,
            timed_out: false,
        })
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Opens, checks and retires connections for bb8.
pub struct Manager {
    pg_config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    statement_cache: bool,
    validation_timeout: Duration,
    validation_skip: Duration,
    max_lifetime: Duration,
    lifetime_jitter: Duration,
    counters: Arc<PoolCounters>,
}

impl std::fmt::Debug for Manager {
    // tokio_postgres::Config's Debug redacts the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("pg_config", &self.pg_config).finish_non_exhaustive()
    }
}

/// How the manager treats connections.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Keep prepared statements across transactions.
    pub statement_cache: bool,
    /// The longest a checkout ping may take before the connection is discarded.
    pub validation_timeout: Duration,
    /// A connection used this recently is handed out without a ping.
    pub validation_skip: Duration,
    /// Connections are retired after this long…
    pub max_lifetime: Duration,
    /// …plus a random part of this, so they do not all expire together.
    pub lifetime_jitter: Duration,
}

impl Manager {
    /// A manager for the given connection settings.
    pub fn new(
        pg_config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        settings: &ManagerSettings,
        counters: Arc<PoolCounters>,
    ) -> Self {
        Self {
            pg_config,
            tls,
            statement_cache: settings.statement_cache,
            validation_timeout: settings.validation_timeout,
            validation_skip: settings.validation_skip,
            max_lifetime: settings.max_lifetime,
            lifetime_jitter: settings.lifetime_jitter,
            counters,
        }
    }

    /// Opens a connection outside any pool (migrations, the health monitor).
    pub async fn open(&self) -> Result<PgConn, ConnectError> {
        let (client, connection) = self.pg_config.connect(self.tls.clone()).await.map_err(|e| {
            self.counters.connect_failed();
            ConnectError::from_postgres(&e)
        })?;
        let mut conn = AsyncPgConnection::try_from_client_and_connection(client, connection).await.map_err(|e| {
            self.counters.connect_failed();
            ConnectError { message: error_chain(&e), sqlstate: None, io_kind: None, phase: Phase::Connect }
        })?;
        if !self.statement_cache {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        self.counters.created();
        self.counters.set_last_connect_error(None);
        let jitter = self.lifetime_jitter.mul_f64(rand::random::<f64>());
        let now = Instant::now();
        Ok(PgConn { conn, expires_at: now + self.max_lifetime + jitter, last_used: now, in_flight: false })
    }

    async fn ping(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        conn.begin_use();
        match tokio::time::timeout(self.validation_timeout, conn.conn.batch_execute("SELECT 1")).await {
            Ok(Ok(())) => {
                conn.finish_use();
                Ok(())
            }
            Ok(Err(e)) => Err(ConnectError::validation(format!("validation failed: {e}"))),
            Err(_) => {
                Err(ConnectError::validation(format!("validation took longer than {:?}", self.validation_timeout)))
            }
        }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgConn, ConnectError> {
        self.open().await
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        if conn.expired() {
            self.counters.closed(CloseCause::Lifetime);
            return Err(ConnectError::validation("connection reached its lifetime".into()));
        }
        if conn.last_used.elapsed() < self.validation_skip {
            return Ok(());
        }
        self.ping(conn).await.inspect_err(|_| self.counters.closed(CloseCause::FailedValidation))
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        let cause = if std::thread::panicking() || conn.in_flight {
            Some(CloseCause::Abandoned)
        } else if conn.conn.is_broken() {
            Some(CloseCause::Broken)
        } else if conn.expired() {
            Some(CloseCause::Lifetime)
        } else {
            None
        };
        if let Some(cause) = cause {
            self.counters.closed(cause);
        }
        cause.is_some()
    }
}
