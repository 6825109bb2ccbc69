//! Plain configuration structs, built by `cli` from flags and the environment, or by hand in
//! tests. No `Default`: every setting is chosen on purpose in one place.

mod auth;
pub(crate) mod conninfo;
mod database;
mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{TokenEntry, TokenFileError, TokenListError, parse_tokens, read_token_file};
pub use database::{
    DatabaseConfig, DatabaseConfigError, DatabaseFlags, DatabaseTls, SslMode, TargetSession,
    resolve as resolve_database,
};
pub use secret::Secret;

use crate::domain::Limits;
use crate::retry::RetryPolicy;

/// The connection pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_size: u32,
    /// Idle connections kept ready.
    pub min_idle: u32,
    /// Longest wait for a free connection before the call fails.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_idle` close after this long.
    pub idle_timeout: Duration,
    /// Connections retire after this long (plus jitter): servers and proxies cut old ones.
    pub max_lifetime: Duration,
    /// Random extra lifetime, so connections do not all retire together.
    pub lifetime_jitter: Duration,
    /// Longest checkout ping; a slower connection is discarded.
    pub validation_timeout: Duration,
    /// Connections used more recently than this skip the checkout ping.
    pub validation_skip: Duration,
    /// Rebuild the pool after repeated connection failures (`ENABLE_POOL_RECREATION`).
    pub recreation_enabled: bool,
    /// Consecutive connection-class failures that trigger a rebuild.
    pub recreate_after_failures: u32,
    /// Least time between two rebuilds.
    pub recreation_cooldown: Duration,
}

/// How storage runs operations.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Backoff and attempts.
    pub retry: RetryPolicy,
    /// Size of the shared retry budget (gRPC A6 `maxTokens`).
    pub retry_budget_tokens: u32,
    /// Tokens earned back per success (gRPC A6 `tokenRatio`).
    pub retry_budget_ratio: f64,
    /// Most checkpoints read per List page.
    pub list_page_size: u64,
    /// Concurrent Puts share transactions (and commits); `None` runs each Put alone.
    pub put_coalescing: Option<CoalescingConfig>,
}

/// How the database is watched.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Whether to probe at all (`ENABLE_CONNECTION_MONITORING`); when off the database is assumed up.
    pub enabled: bool,
    /// Time between probes.
    pub interval: Duration,
    /// Time allowed for one probe, including reconnecting.
    pub probe_timeout: Duration,
    /// Consecutive failed probes before the database counts as down.
    pub failures_to_down: u32,
    /// Consecutive good probes before it counts as up again.
    pub successes_to_up: u32,
}

/// How concurrent Puts are coalesced into shared transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescingConfig {
    /// Most Put transactions at once (each may hold many Puts).
    pub max_transactions: usize,
    /// Most Puts in one transaction.
    pub max_batch: usize,
    /// Most payload bytes in one transaction; a single larger Put runs alone.
    pub max_batch_bytes: usize,
}

/// A gRPC message compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// gzip: widely supported; pays on slow links and large blobs.
    Gzip,
    /// zstd: faster and tighter than gzip, where the client supports it.
    Zstd,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// TLS on the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to; clients need none when `None`.
    pub client_ca: Option<PathBuf>,
}

/// Who may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Tokens given inline (`CHECKPOINTD_AUTH_TOKENS`).
    pub tokens: Vec<TokenEntry>,
    /// A token file, re-read when it changes or on SIGHUP.
    pub tokens_file: Option<PathBuf>,
    /// Health checks need no token.
    pub open_health: bool,
    /// Reflection needs no token.
    pub open_reflection: bool,
}

impl AuthConfig {
    /// Whether any token source is configured (authentication is on).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.tokens_file.is_some()
    }
}

/// The gRPC server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address of the Prometheus scrape endpoint (`/metrics`); none when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// At shutdown, time spent reporting NOT_SERVING while still serving, so load balancers
    /// stop sending calls before the listener closes.
    pub shutdown_delay: Duration,
    /// Longest wait for in-flight calls at shutdown, after the delay.
    pub shutdown_grace: Duration,
    /// Serve gRPC reflection.
    pub reflection: bool,
    /// Compress responses for clients that accept it; `None` sends them as they are.
    pub response_compression: Option<Compression>,
    /// Field limits.
    pub limits: Limits,
    /// TLS (and mutual TLS); plaintext when `None`.
    pub tls: Option<ServerTls>,
    /// A plaintext listener serving only `grpc.health.v1.Health` (for kubelet probes).
    pub health_listen: Option<SocketAddr>,
    /// Bearer-token authentication.
    pub auth: AuthConfig,
    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How often certificate and token files are checked for changes.
    pub reload_interval: Duration,
}

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A database setting.
    #[error(transparent)]
    Database(#[from] DatabaseConfigError),
    /// The inline token list (`CHECKPOINTD_AUTH_TOKENS`).
    #[error("CHECKPOINTD_AUTH_TOKENS: {0}")]
    Tokens(#[from] TokenListError),
}

/// Everything `checkpointd serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database is.
    pub database: DatabaseConfig,
    /// The pool.
    pub pool: PoolConfig,
    /// Operations.
    pub storage: StorageConfig,
    /// The database monitor.
    pub monitor: MonitorConfig,
    /// The gRPC server.
    pub server: ServerConfig,
    /// Deadline of a call whose client sets none (for a List stream: of each page it waits for).
    pub default_deadline: Duration,
    /// Apply migrations before serving.
    pub migrate_on_start: bool,
}
