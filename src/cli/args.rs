//! Command-line flags (each with its environment variable), turned into `config` structs.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, FromArgMatches, Parser, Subcommand};

use crate::config::{
    AuthConfig, CoalescingConfig, Compression, Config, ConfigError, DatabaseConfig, DatabaseConfigError, DatabaseFlags,
    LogFormat, MonitorConfig, PoolConfig, Secret, ServerConfig, ServerTls, SslMode, StorageConfig, TargetSession,
    parse_tokens, resolve_database,
};
use crate::domain::Limits;
use crate::retry::RetryPolicy;
use crate::telemetry::LogConfig;

const ENVIRONMENT_HELP: &str = "\
Database settings are taken, each, from the first of: its flag (or the flag's variable),
DATABASE_URL, its libpq variable (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE,
PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGAPPNAME, PGCONNECT_TIMEOUT, PGTARGETSESSIONATTRS), the
original deployment's variable (host, port, user, password, dbname), and the default
(postgres@localhost:5432/postgres). Passwords are read from DATABASE_URL, PGPASSWORD, password or
--db-password-file, never from a flag of their own, and never logged.

Logging: RUST_LOG (a tracing filter, e.g. info,checkpointd=debug), DEBUG=1 (debug level for
checkpointd), VERBOSE_SSL_LOGGING=true (debug level for TLS and the connection pool).";

/// Reads one environment variable by name.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// checkpointd stores LangGraph checkpoints in PostgreSQL behind a gRPC API.
#[derive(Debug, Parser)]
#[command(name = "checkpointd", version, after_long_help = ENVIRONMENT_HELP)]
pub struct Cli {
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (migrating the database first unless --migrate=false).
    #[command(after_long_help = ENVIRONMENT_HELP)]
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    #[command(after_long_help = ENVIRONMENT_HELP)]
    Migrate(Box<MigrateArgs>),
    /// Ask a running server whether it is serving; exit 0 only when SERVING.
    Health(HealthArgs),
    /// Show a running server's pool, retries and database state (exit 1 when the database is unreachable).
    Status(StatusArgs),
    /// Start a private throwaway PostgreSQL, migrate it and serve; Ctrl-C stops everything.
    Dev(Box<DevArgs>),
}

/// Logging flags.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "CHECKPOINTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", global = true)]
    pub log_filter: Option<String>,
    /// Debug logging for checkpointd (the original deployment's DEBUG=1).
    #[arg(long, env = "DEBUG", value_parser = BoolishValueParser::new(), default_value_t = false, global = true, hide_env_values = true)]
    pub debug: bool,
    /// Debug logging for TLS and the connection pool (the original deployment's VERBOSE_SSL_LOGGING).
    #[arg(long, env = "VERBOSE_SSL_LOGGING", value_parser = BoolishValueParser::new(), default_value_t = false, global = true)]
    pub verbose_ssl_logging: bool,
}

impl LogArgs {
    /// The logging configuration.
    pub fn config(&self) -> LogConfig {
        LogConfig {
            format: self.log_format,
            filter: self.log_filter.clone(),
            debug: self.debug,
            verbose_tls: self.verbose_ssl_logging,
        }
    }
}

/// Parses `30s`, `250ms`, `2m`, or a bare number of seconds (`1.5`, as the original deployment wrote them).
fn duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// Parses a byte size: `4194304`, `64MiB`, `1GiB`, `512KiB`.
fn byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, multiplier) = [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .iter()
        .find_map(|(suffix, m)| text.strip_suffix(suffix).map(|d| (d.trim(), *m)))
        .unwrap_or((text, 1));
    let n: usize = digits.parse().map_err(|_| format!("{text:?} is not a size like 4194304 or 64MiB"))?;
    n.checked_mul(multiplier).ok_or_else(|| "size too large".to_owned())
}

/// PostgreSQL takes no protocol message over 1 GiB: a larger request could only fail there, as a
/// dropped connection, after it was accepted.
const POSTGRES_MAX_MESSAGE: usize = 1 << 30;

/// Parses the largest message size: a byte size no larger than PostgreSQL's 1 GiB.
fn message_size(text: &str) -> Result<usize, String> {
    let size = byte_size(text)?;
    if size > POSTGRES_MAX_MESSAGE {
        return Err(format!("{text:?} is larger than 1GiB, PostgreSQL's largest message"));
    }
    Ok(size)
}

/// gRPC server flags.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "CHECKPOINTD_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at http://<address>/metrics (off when unset).
    #[arg(long, env = "CHECKPOINTD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request or response message (bytes, or with KiB/MiB/GiB).
    #[arg(long, env = "CHECKPOINTD_MAX_MESSAGE_SIZE", default_value = "64MiB", value_parser = message_size)]
    pub max_message_size: usize,
    /// Deadline for calls that set none (and for each List page).
    #[arg(long, env = "CHECKPOINTD_DEFAULT_DEADLINE", default_value = "30s", value_parser = duration)]
    pub default_deadline: Duration,
    /// At shutdown, keep serving this long while reporting NOT_SERVING (lets load balancers drain).
    #[arg(long, env = "CHECKPOINTD_SHUTDOWN_DELAY", default_value = "0s", value_parser = duration)]
    pub shutdown_delay: Duration,
    /// Longest wait for in-flight calls at shutdown, after the delay.
    #[arg(long, env = "CHECKPOINTD_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Compress responses (gzip or zstd) for clients that accept it. Off by default: on a fast
    /// network compressing costs both sides more CPU than it saves; it pays on slow links and
    /// for large blobs. Compressed requests are always accepted.
    #[arg(long, env = "CHECKPOINTD_RESPONSE_COMPRESSION", value_enum)]
    pub response_compression: Option<Compression>,
    /// Serve gRPC reflection (v1 and v1alpha).
    #[arg(long, env = "CHECKPOINTD_REFLECTION", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub reflection: bool,
    /// Let concurrent Puts share transactions, so one commit makes several durable (each caller
    /// is answered after the commit holding its checkpoint).
    #[arg(long, env = "CHECKPOINTD_PUT_COALESCING", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub put_coalescing: bool,
    /// With coalescing: most Put transactions at once.
    #[arg(long, env = "CHECKPOINTD_PUT_TRANSACTIONS_MAX", default_value_t = 4)]
    pub put_transactions_max: usize,
    /// With coalescing: most Puts in one transaction.
    #[arg(long, env = "CHECKPOINTD_PUT_BATCH_MAX", default_value_t = 64)]
    pub put_batch_max: usize,
    /// With coalescing: most payload bytes in one Put transaction (a single larger Put still
    /// runs, alone).
    #[arg(long, env = "CHECKPOINTD_PUT_BATCH_MAX_BYTES", default_value = "32MiB", value_parser = byte_size)]
    pub put_batch_max_bytes: usize,
    /// Most checkpoints read from the database per List page.
    #[arg(long, env = "CHECKPOINTD_LIST_PAGE_SIZE", default_value_t = 256)]
    pub list_page_size: u64,
    /// PEM certificate chain: serve gRPC over TLS (re-read when the file changes or on SIGHUP).
    #[arg(long, env = "CHECKPOINTD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS certificate.
    #[arg(long, env = "CHECKPOINTD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mutual TLS).
    #[arg(long, env = "CHECKPOINTD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Also serve grpc.health.v1 alone, in plaintext, here (for kubelet probes, which cannot speak TLS).
    #[arg(long, env = "CHECKPOINTD_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// File of accepted bearer tokens, one per line: `<token> [name=<name>] [prefix=<thread-id prefix>]...`
    /// (re-read on change or SIGHUP). Tokens may also come from the CHECKPOINTD_AUTH_TOKENS
    /// variable (entries separated by newlines or `;`), never from a flag.
    #[arg(long, env = "CHECKPOINTD_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// With tokens configured, let health checks through without one.
    #[arg(long, env = "CHECKPOINTD_AUTH_OPEN_HEALTH", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub auth_open_health: bool,
    /// With tokens configured, let reflection through without one.
    #[arg(long, env = "CHECKPOINTD_AUTH_OPEN_REFLECTION", default_value_t = false, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub auth_open_reflection: bool,
    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED before any database work.
    #[arg(long, env = "CHECKPOINTD_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams per client connection.
    #[arg(long, env = "CHECKPOINTD_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// How often certificate and token files are checked for changes (SIGHUP reloads at once).
    #[arg(long, env = "CHECKPOINTD_RELOAD_INTERVAL", default_value = "5s", value_parser = duration)]
    pub reload_interval: Duration,
}

impl ServerArgs {
    fn tls(&self) -> Option<ServerTls> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(ServerTls { cert, key, client_ca: self.tls_client_ca.clone() })
    }

    fn auth(&self, env: Env<'_>) -> Result<AuthConfig, ConfigError> {
        let tokens = match env("CHECKPOINTD_AUTH_TOKENS") {
            Some(text) if !text.trim().is_empty() => parse_tokens(&text)?,
            _ => Vec::new(),
        };
        Ok(AuthConfig {
            tokens,
            tokens_file: self.auth_tokens_file.clone(),
            open_health: self.auth_open_health,
            open_reflection: self.auth_open_reflection,
        })
    }
}

/// Where the database is and how to reach it.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// PostgreSQL connection string (URL or key=value form, libpq meanings).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the database password (for container secrets).
    #[arg(long, env = "CHECKPOINTD_DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
    /// TLS to the database, with libpq's meanings [default: prefer].
    #[arg(long, env = "CHECKPOINTD_DB_SSLMODE", value_enum)]
    pub db_sslmode: Option<SslMode>,
    /// PEM file of the certificate authorities to trust [default: the system roots].
    #[arg(long, env = "CHECKPOINTD_DB_SSLROOTCERT")]
    pub db_sslrootcert: Option<PathBuf>,
    /// PEM client certificate.
    #[arg(long, env = "CHECKPOINTD_DB_SSLCERT")]
    pub db_sslcert: Option<PathBuf>,
    /// PEM client private key.
    #[arg(long, env = "CHECKPOINTD_DB_SSLKEY")]
    pub db_sslkey: Option<PathBuf>,
    /// application_name shown in pg_stat_activity [default: checkpointd].
    #[arg(long, env = "CHECKPOINTD_DB_APPLICATION_NAME")]
    pub db_application_name: Option<String>,
    /// Time to open one connection to one host [default: 10s].
    #[arg(long, env = "CHECKPOINTD_DB_CONNECT_TIMEOUT", value_parser = duration)]
    pub db_connect_timeout: Option<Duration>,
    /// Idle time before TCP keepalive probes start [default: 30s].
    #[arg(long, env = "CHECKPOINTD_DB_KEEPALIVES_IDLE", value_parser = duration)]
    pub db_keepalives_idle: Option<Duration>,
    /// Time between keepalive probes [default: 10s].
    #[arg(long, env = "CHECKPOINTD_DB_KEEPALIVES_INTERVAL", value_parser = duration)]
    pub db_keepalives_interval: Option<Duration>,
    /// Unanswered keepalive probes before the connection drops [default: 3].
    #[arg(long, env = "CHECKPOINTD_DB_KEEPALIVES_COUNT")]
    pub db_keepalives_count: Option<u32>,
    /// TCP_USER_TIMEOUT: how long sent data may go unacknowledged (catches half-open connections) [default: 30s].
    #[arg(long, env = "CHECKPOINTD_DB_TCP_USER_TIMEOUT", value_parser = duration)]
    pub db_tcp_user_timeout: Option<Duration>,
    /// Which host to accept when several are given [default: any].
    #[arg(long, env = "CHECKPOINTD_DB_TARGET_SESSION_ATTRS", value_enum)]
    pub db_target_session_attrs: Option<TargetSession>,
    /// statement_timeout set in every transaction, capped by the call's deadline [default: 30s].
    #[arg(long, env = "CHECKPOINTD_DB_STATEMENT_TIMEOUT", value_parser = duration)]
    pub db_statement_timeout: Option<Duration>,
    /// idle_in_transaction_session_timeout set in every transaction [default: 60s].
    #[arg(long, env = "CHECKPOINTD_DB_IDLE_IN_TRANSACTION_TIMEOUT", value_parser = duration)]
    pub db_idle_in_transaction_timeout: Option<Duration>,
    /// Keep prepared statements across transactions; set false behind PgBouncer or Supavisor in transaction mode [default: true].
    #[arg(long, env = "CHECKPOINTD_DB_STATEMENT_CACHE", value_parser = BoolishValueParser::new())]
    pub db_statement_cache: Option<bool>,
}

impl DbArgs {
    /// Resolves the database settings against the process environment.
    pub fn resolve(&self) -> Result<DatabaseConfig, DatabaseConfigError> {
        self.resolve_in(&process_env)
    }

    /// Resolves the database settings, reading libpq's variables through `env`.
    pub fn resolve_in(&self, env: Env<'_>) -> Result<DatabaseConfig, DatabaseConfigError> {
        let flags = DatabaseFlags {
            url: self.database_url.clone().map(Secret::new),
            password_file: self.db_password_file.clone(),
            ssl_mode: self.db_sslmode,
            ssl_root_cert: self.db_sslrootcert.clone(),
            ssl_cert: self.db_sslcert.clone(),
            ssl_key: self.db_sslkey.clone(),
            application_name: self.db_application_name.clone(),
            connect_timeout: self.db_connect_timeout,
            keepalives_idle: self.db_keepalives_idle,
            keepalives_interval: self.db_keepalives_interval,
            keepalives_retries: self.db_keepalives_count,
            tcp_user_timeout: self.db_tcp_user_timeout,
            target_session: self.db_target_session_attrs,
            statement_timeout: self.db_statement_timeout,
            idle_in_transaction_timeout: self.db_idle_in_transaction_timeout,
            statement_cache: self.db_statement_cache,
        };
        resolve_database(&flags, env)
    }
}

/// Connection pool and monitoring flags.
#[derive(Debug, Args, Clone)]
pub struct PoolArgs {
    /// Most database connections.
    #[arg(long, env = "CHECKPOINTD_POOL_MAX_SIZE", default_value_t = 16)]
    pub pool_max_size: u32,
    /// Idle connections kept open.
    #[arg(long, env = "CHECKPOINTD_POOL_MIN_IDLE", default_value_t = 2)]
    pub pool_min_idle: u32,
    /// Longest wait for a free connection.
    #[arg(long, env = "CHECKPOINTD_POOL_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub pool_acquire_timeout: Duration,
    /// Idle connections above the minimum close after this.
    #[arg(long, env = "CHECKPOINTD_POOL_IDLE_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub pool_idle_timeout: Duration,
    /// Connections retire after this (plus jitter), before servers and proxies cut them.
    #[arg(long, env = "CHECKPOINTD_POOL_MAX_LIFETIME", default_value = "30m", value_parser = duration)]
    pub pool_max_lifetime: Duration,
    /// Random extra lifetime, so connections do not all retire together.
    #[arg(long, env = "CHECKPOINTD_POOL_LIFETIME_JITTER", default_value = "2m", value_parser = duration)]
    pub pool_lifetime_jitter: Duration,
    /// Longest checkout ping before a connection is discarded.
    #[arg(long, env = "CHECKPOINTD_POOL_VALIDATION_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub pool_validation_timeout: Duration,
    /// Connections used within this are handed out without a ping.
    #[arg(long, env = "CHECKPOINTD_POOL_VALIDATION_SKIP", default_value = "1s", value_parser = duration)]
    pub pool_validation_skip: Duration,
    /// Rebuild the pool after repeated connection failures (the original ENABLE_POOL_RECREATION).
    #[arg(long, env = "ENABLE_POOL_RECREATION", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub pool_recreation: bool,
    /// Consecutive connection failures that rebuild the pool.
    #[arg(long, env = "CHECKPOINTD_POOL_RECREATE_AFTER", default_value_t = 3)]
    pub pool_recreate_after: u32,
    /// Least time between two rebuilds.
    #[arg(long, env = "CHECKPOINTD_POOL_RECREATION_COOLDOWN", default_value = "30s", value_parser = duration)]
    pub pool_recreation_cooldown: Duration,
    /// Probe the database and report it in the health service (the original ENABLE_CONNECTION_MONITORING).
    #[arg(long, env = "ENABLE_CONNECTION_MONITORING", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub monitor: bool,
    /// Time between database probes.
    #[arg(long, env = "CHECKPOINTD_MONITOR_INTERVAL", default_value = "2s", value_parser = duration)]
    pub monitor_interval: Duration,
    /// Time allowed for one probe.
    #[arg(long, env = "CHECKPOINTD_MONITOR_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub monitor_timeout: Duration,
    /// Failed probes before the service reports NOT_SERVING.
    #[arg(long, env = "CHECKPOINTD_MONITOR_FAILURES", default_value_t = 2)]
    pub monitor_failures: u32,
}

/// Retry flags; the original deployment's variable names are honoured.
#[derive(Debug, Args, Clone)]
pub struct RetryArgs {
    /// Retries of a failed transaction (the original CHECKPOINT_MAX_RETRIES).
    #[arg(long, env = "CHECKPOINT_MAX_RETRIES", default_value_t = 4)]
    pub max_retries: u32,
    /// First backoff after contention or overload (CHECKPOINT_RETRY_BASE_DELAY; seconds or 50ms).
    #[arg(long, env = "CHECKPOINT_RETRY_BASE_DELAY", default_value = "25ms", value_parser = duration)]
    pub retry_base_delay: Duration,
    /// First backoff after a lost connection or an unavailable server (SSL_RETRY_DELAY).
    #[arg(long, env = "SSL_RETRY_DELAY", default_value = "100ms", value_parser = duration)]
    pub retry_connection_delay: Duration,
    /// Backoff growth after a pooler lost its backend, e.g. Supavisor "DbHandler exited" (DBHANDLER_EXITED_DELAY_MULTIPLIER).
    #[arg(long, env = "DBHANDLER_EXITED_DELAY_MULTIPLIER", default_value_t = 3.0)]
    pub retry_pooler_multiplier: f64,
    /// Largest backoff.
    #[arg(long, env = "CHECKPOINTD_RETRY_MAX_DELAY", default_value = "2s", value_parser = duration)]
    pub retry_max_delay: Duration,
}

impl RetryArgs {
    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.retry_base_delay,
            connection_base_delay: self.retry_connection_delay,
            multiplier: 2.0,
            pooler_multiplier: self.retry_pooler_multiplier,
            max_delay: self.retry_max_delay,
        }
    }
}

/// `checkpointd serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// gRPC server.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Pool.
    #[command(flatten)]
    pub pool: PoolArgs,
    /// Retries.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Apply migrations before serving.
    #[arg(long, env = "CHECKPOINTD_MIGRATE", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub migrate: bool,
}

impl ServeArgs {
    /// `serve`'s flags alone, every flag not given at its documented default: no variable of
    /// the environment is read. With [`ServeArgs::config_in`] and no variables, this is how
    /// tests build the same configuration the command line does.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("serve"));
        let ids: Vec<clap::Id> = command.get_arguments().map(|arg| arg.get_id().clone()).collect();
        let command = ids.into_iter().fold(command, |command, id| command.mut_arg(id, |arg| arg.env(None)));
        let argv = std::iter::once(OsString::from("serve")).chain(flags.into_iter().map(Into::into));
        Self::from_arg_matches(&command.try_get_matches_from(argv)?)
    }

    /// The full configuration, with the process environment.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.config_in(&process_env)
    }

    /// The full configuration, reading variables (libpq's `PG*`, the inline token list) through `env`.
    pub fn config_in(&self, env: Env<'_>) -> Result<Config, ConfigError> {
        let database = self.db.resolve_in(env)?;
        self.config_for(database, env)
    }

    /// The configuration for an already resolved database: the one place a [`Config`] is assembled.
    pub fn config_for(&self, database: DatabaseConfig, env: Env<'_>) -> Result<Config, ConfigError> {
        let pool = &self.pool;
        Ok(Config {
            pool: PoolConfig {
                max_size: pool.pool_max_size.max(1),
                min_idle: pool.pool_min_idle,
                acquire_timeout: pool.pool_acquire_timeout,
                idle_timeout: pool.pool_idle_timeout,
                max_lifetime: pool.pool_max_lifetime,
                lifetime_jitter: pool.pool_lifetime_jitter,
                validation_timeout: pool.pool_validation_timeout,
                validation_skip: pool.pool_validation_skip,
                recreation_enabled: pool.pool_recreation,
                recreate_after_failures: pool.pool_recreate_after.max(1),
                recreation_cooldown: pool.pool_recreation_cooldown,
            },
            storage: StorageConfig {
                retry: self.retry.policy(),
                retry_budget_tokens: 100,
                retry_budget_ratio: 0.1,
                list_page_size: self.server.list_page_size.max(1),
                put_coalescing: self.server.put_coalescing.then_some(CoalescingConfig {
                    max_transactions: self.server.put_transactions_max.max(1),
                    max_batch: self.server.put_batch_max.max(1),
                    max_batch_bytes: self.server.put_batch_max_bytes.max(1),
                }),
            },
            monitor: MonitorConfig {
                enabled: pool.monitor,
                interval: pool.monitor_interval,
                probe_timeout: pool.monitor_timeout,
                failures_to_down: pool.monitor_failures.max(1),
                successes_to_up: 1,
            },
            server: ServerConfig {
                listen: self.server.listen,
                metrics_listen: self.server.metrics_listen,
                max_message_bytes: self.server.max_message_size,
                shutdown_delay: self.server.shutdown_delay,
                shutdown_grace: self.server.shutdown_grace,
                reflection: self.server.reflection,
                response_compression: self.server.response_compression,
                limits: Limits::DOCUMENTED,
                tls: self.server.tls(),
                health_listen: self.server.health_listen,
                auth: self.server.auth(env)?,
                max_concurrent_requests: self.server.max_concurrent_requests,
                max_concurrent_streams: self.server.max_concurrent_streams,
                reload_interval: self.server.reload_interval,
            },
            default_deadline: self.server.default_deadline,
            migrate_on_start: self.migrate,
            database,
        })
    }
}

/// `checkpointd migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Database.
    #[command(flatten)]
    pub db: DbArgs,
}

/// `checkpointd health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server to ask (`host:port` or a URL). When unset: this machine, on the port of CHECKPOINTD_HEALTH_LISTEN if
    /// that is set (plaintext, so it works when the main port uses TLS), else of
    /// CHECKPOINTD_LISTEN, else 50051.
    #[arg(long, env = "CHECKPOINTD_HEALTH_ADDRESS")]
    pub address: Option<String>,
    /// The service to ask about; "" is the process itself.
    #[arg(long, default_value = "checkpoint.v1.CheckpointService")]
    pub service: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
}

/// `checkpointd status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The server to ask (`host:port` or a URL).
    #[arg(long, env = "CHECKPOINTD_HEALTH_ADDRESS", default_value = "http://127.0.0.1:50051")]
    pub address: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// The address to ask, derived from the server's own settings when not given.
    pub fn address(&self) -> String {
        match &self.address {
            Some(address) => with_scheme(address),
            None => local_address(&|name| std::env::var(name).ok()),
        }
    }
}

impl StatusArgs {
    /// The address to ask, as a URL.
    pub fn address(&self) -> String {
        with_scheme(&self.address)
    }
}

/// `host:port` as `http://host:port`, as users type it (and as `serve --listen` takes it); a
/// URL with a scheme stays as it is.
fn with_scheme(address: &str) -> String {
    if address.contains("://") { address.to_owned() } else { format!("http://{address}") }
}

/// `http://127.0.0.1:<port>` for the health listener, else the main listener, of this machine.
fn local_address(env: &dyn Fn(&str) -> Option<String>) -> String {
    let port = ["CHECKPOINTD_HEALTH_LISTEN", "CHECKPOINTD_LISTEN"]
        .iter()
        .find_map(|name| env(name).and_then(|v| v.parse::<SocketAddr>().ok()))
        .map_or(50051, |address| address.port());
    format!("http://127.0.0.1:{port}")
}

/// `checkpointd dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Keep the throwaway database here (reused next time); a temporary directory when unset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Port of the throwaway PostgreSQL; a free one when unset.
    #[arg(long)]
    pub pg_port: Option<u16>,
    /// Everything `serve` takes (its database flags are ignored).
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_alone_give_the_documented_defaults_and_read_no_variable() {
        let args =
            ServeArgs::from_flags(["--database-url", "postgres://app@db.internal/agents", "--pool-max-size", "3"])
                .expect("valid flags");
        let asked = std::cell::RefCell::new(Vec::new());
        let config = args
            .config_in(&|name| {
                asked.borrow_mut().push(name.to_owned());
                None
            })
            .expect("valid configuration");
        assert_eq!(config.pool.max_size, 3);
        assert_eq!(config.pool.acquire_timeout, Duration::from_secs(5));
        assert_eq!(config.default_deadline, Duration::from_secs(30));
        assert_eq!(config.server.listen, "0.0.0.0:50051".parse().expect("address"));
        let coalescing = config.storage.put_coalescing.expect("coalescing on by default");
        assert_eq!((coalescing.max_transactions, coalescing.max_batch, coalescing.max_batch_bytes), (4, 64, 32 << 20));
        assert_eq!(config.database.hosts, vec!["db.internal".to_owned()]);
        assert!(asked.borrow().iter().any(|name| name == "CHECKPOINTD_AUTH_TOKENS"), "{:?}", asked.borrow());
    }

    #[test]
    fn inline_tokens_come_from_the_environment_given() {
        let args = ServeArgs::from_flags(["--database-url", "postgres://app@db/agents"]).expect("valid flags");
        let env =
            |name: &str| (name == "CHECKPOINTD_AUTH_TOKENS").then(|| "a-long-enough-secret-token name=ci".to_owned());
        let config = args.config_in(&env).expect("valid configuration");
        assert_eq!(config.server.auth.tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ci"]);
        assert!(config.server.auth.enabled());
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("soon").is_err());
    }

    #[test]
    fn the_health_check_asks_the_plaintext_health_port_when_there_is_one() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(local_address(&env(&[])), "http://127.0.0.1:50051");
        assert_eq!(local_address(&env(&[("CHECKPOINTD_LISTEN", "0.0.0.0:7000")])), "http://127.0.0.1:7000");
        let both = env(&[("CHECKPOINTD_LISTEN", "0.0.0.0:7000"), ("CHECKPOINTD_HEALTH_LISTEN", "0.0.0.0:7001")]);
        assert_eq!(local_address(&both), "http://127.0.0.1:7001");
    }

    #[test]
    fn an_address_without_a_scheme_is_plain_http() {
        assert_eq!(with_scheme("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(with_scheme("checkpointd:50051"), "http://checkpointd:50051");
        assert_eq!(with_scheme("https://checkpointd.example:443"), "https://checkpointd.example:443");
    }

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(byte_size("4194304"), Ok(4_194_304));
        assert!(byte_size("big").is_err());
    }

    #[test]
    fn a_message_limit_beyond_what_postgresql_takes_is_refused() {
        assert_eq!(message_size("1GiB"), Ok(1 << 30));
        assert!(message_size("2GiB").is_err_and(|e| e.contains("PostgreSQL")));
    }
}
