//! Our bb8 connection manager: diesel-async connections over tokio-postgres and rustls, validated
//! on checkout with a bounded ping, and discarded whenever their state is in doubt.

use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::CacheSize;
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::retry::{ErrorClass, Failure, Phase, SqlState, classify};
use crate::storage::error::sqlstate_of;
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
    pub sqlstate: Option<SqlState>,
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
        let sqlstate = err.code().and_then(|c| SqlState::parse(c.code()));
        Self { message, sqlstate, io_kind, phase: Phase::Connect }
    }

    fn validation(message: String) -> Self {
        Self { message, sqlstate: None, io_kind: None, phase: Phase::Checkout }
    }

    fn no_hosts() -> Self {
        Self { message: "no database host is configured".into(), sqlstate: None, io_kind: None, phase: Phase::Connect }
    }

    fn timed_out(limit: Duration) -> Self {
        Self {
            message: format!("connection set-up took longer than connect_timeout ({limit:?})"),
            sqlstate: None,
            io_kind: Some(io::ErrorKind::TimedOut),
            phase: Phase::Connect,
        }
    }

    fn closed_during_setup(error: Option<tokio_postgres::Error>) -> Self {
        match error {
            Some(error) => Self::from_postgres(&error),
            None => Self {
                message: "the server closed the connection during set-up".into(),
                sqlstate: None,
                io_kind: Some(io::ErrorKind::UnexpectedEof),
                phase: Phase::Connect,
            },
        }
    }

    /// A failure of diesel-async's session set-up.
    fn from_setup(error: &diesel::ConnectionError) -> Self {
        match error {
            diesel::ConnectionError::CouldntSetupConfiguration(query) => Self::from_setup_query(query),
            other => Self { message: error_chain(other), sqlstate: None, io_kind: None, phase: Phase::Connect },
        }
    }

    fn from_setup_query(error: &diesel::result::Error) -> Self {
        let sqlstate = match error {
            diesel::result::Error::DatabaseError(_, info) => sqlstate_of(info.as_ref()),
            _ => None,
        };
        Self { message: error.to_string(), sqlstate, io_kind: None, phase: Phase::Connect }
    }

    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        classify(&Failure {
            phase: self.phase,
            sqlstate: self.sqlstate,
            message: &self.message,
            connection_broken: true,
            io_kind: self.io_kind,
            timed_out: false,
        })
    }
}

/// A client and the connection that drives it, as tokio-postgres opens them.
type PgConnection = (
    tokio_postgres::Client,
    tokio_postgres::Connection<
        tokio_postgres::Socket,
        <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
    >,
);

/// Whether the TLS handshake itself failed (a rustls error anywhere in the chain).
fn is_tls_failure(err: &tokio_postgres::Error) -> bool {
    std::iter::successors(std::error::Error::source(err), |e| e.source()).any(|e| {
        e.downcast_ref::<rustls::Error>().is_some()
            || e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
    })
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
    hosts: Vec<tokio_postgres::Config>,
    connect_timeout: Duration,
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
        f.debug_struct("Manager").field("hosts", &self.hosts).finish_non_exhaustive()
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
    /// The longest one host's whole set-up may take (TCP, TLS, authentication, the read-write
    /// check, the session set-up); zero waits forever, as in libpq.
    pub connect_timeout: Duration,
}

impl Manager {
    /// A manager for the given connection settings.
    pub fn new(
        hosts: Vec<tokio_postgres::Config>,
        tls: MakeRustlsConnect,
        settings: &ManagerSettings,
        counters: Arc<PoolCounters>,
    ) -> Self {
        Self {
            hosts,
            connect_timeout: settings.connect_timeout,
            tls,
            statement_cache: settings.statement_cache,
            validation_timeout: settings.validation_timeout,
            validation_skip: settings.validation_skip,
            max_lifetime: settings.max_lifetime,
            lifetime_jitter: settings.lifetime_jitter,
            counters,
        }
    }

    /// Opens a connection (for the pool, migrations or the health monitor): each host in turn,
    /// each host's whole set-up bounded by `connect_timeout`, until one accepts.
    pub async fn open(&self) -> Result<PgConn, ConnectError> {
        let mut last = ConnectError::no_hosts();
        for host in &self.hosts {
            match self.open_bounded(host).await {
                Ok(conn) => {
                    self.counters.created();
                    self.counters.set_last_connect_error(None);
                    return Ok(self.pooled(conn));
                }
                Err(error) => {
                    self.counters.connect_failed();
                    last = error;
                }
            }
        }
        Err(last)
    }

    async fn open_bounded(&self, host: &tokio_postgres::Config) -> Result<AsyncPgConnection, ConnectError> {
        if self.connect_timeout.is_zero() {
            return self.establish(host).await;
        }
        tokio::time::timeout(self.connect_timeout, self.establish(host))
            .await
            .unwrap_or_else(|_| Err(ConnectError::timed_out(self.connect_timeout)))
    }

    /// Connects and runs diesel-async's session set-up inside a transaction. The set-up sends
    /// named prepared statements, concurrently; inside `BEGIN … COMMIT` a transaction-mode pooler
    /// (PgBouncer) keeps them on one server connection, so they cannot fail with "prepared
    /// statement does not exist". A connection that keeps its prepared statements (not behind
    /// such a pooler) also turns JIT off for its session, for the statements it runs in
    /// autocommit (transactions set it themselves; see `runner::begin_sql`).
    async fn establish(&self, host: &tokio_postgres::Config) -> Result<AsyncPgConnection, ConnectError> {
        let (client, mut connection) = self.connect(host).await.map_err(|e| ConnectError::from_postgres(&e))?;
        tokio::select! {
            begun = client.batch_execute("BEGIN") => begun.map_err(|e| ConnectError::from_postgres(&e))?,
            ended = &mut connection => return Err(ConnectError::closed_during_setup(ended.err())),
        }
        let mut conn = AsyncPgConnection::try_from_client_and_connection(client, connection)
            .await
            .map_err(|e| ConnectError::from_setup(&e))?;
        let commit = if self.statement_cache { "SET jit = off; COMMIT" } else { "COMMIT" };
        conn.batch_execute(commit).await.map_err(|e| ConnectError::from_setup_query(&e))?;
        if !self.statement_cache {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
        Ok(conn)
    }

    /// TCP, TLS and authentication. With `sslmode=prefer`, a server that agrees to TLS but fails
    /// the handshake is tried again without TLS, as libpq does.
    async fn connect(&self, host: &tokio_postgres::Config) -> Result<PgConnection, tokio_postgres::Error> {
        match host.connect(self.tls.clone()).await {
            Err(e) if host.get_ssl_mode() == SslMode::Prefer && is_tls_failure(&e) => {
                tracing::debug!(error = %e, "TLS handshake failed with sslmode=prefer; trying without TLS");
                let mut plain = host.clone();
                plain.ssl_mode(SslMode::Disable);
                plain.connect(self.tls.clone()).await
            }
            outcome => outcome,
        }
    }

    fn pooled(&self, conn: AsyncPgConnection) -> PgConn {
        let jitter = self.lifetime_jitter.mul_f64(rand::random::<f64>());
        let now = Instant::now();
        PgConn { conn, expires_at: now + self.max_lifetime + jitter, last_used: now, in_flight: false }
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
