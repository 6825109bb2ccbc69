//! What can stop a benchmark run, each cause with what it was doing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// A benchmark run that could not go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// The arguments do not say what to run against.
    #[error("{0}")]
    Usage(&'static str),
    /// The server this run was to start did not start.
    #[error("cannot start the server: {0}")]
    StartServer(#[source] std::io::Error),
    /// No connection to the server.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The server's address.
        target: SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server never reported SERVING.
    #[error("the server at {addr} did not become SERVING within {limit:?}")]
    NotServing {
        /// The server's address.
        addr: SocketAddr,
        /// How long the run waited.
        limit: Duration,
    },
    /// A call the run needs (seeding, streaming) failed.
    #[error("{call} failed: {status}")]
    Call {
        /// Which call.
        call: &'static str,
        /// The server's answer.
        #[source]
        status: tonic::Status,
    },
    /// pgbench exited with an error.
    #[error("pgbench failed ({status}): {stderr}")]
    Pgbench {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed to stderr.
        stderr: String,
    },
    /// A file or process the run uses.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What the run was doing (`write`, `read`, `run`, …).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A load task panicked or was cancelled.
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A soak interval's samples were left poisoned by a panicking task.
    #[error("a soak interval's samples were poisoned by a panicking task")]
    Poisoned,
    /// The JSON report could not be encoded.
    #[error("cannot encode the report: {0}")]
    Report(#[from] serde_json::Error),
}

impl BenchError {
    /// A file or process error, with what the run was doing.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }

    /// A failed call the run needs.
    pub(crate) fn call(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Call { call, status }
    }

    /// Whether the database refused a connection for lack of slots (pgbench then retries
    /// with fewer clients).
    pub(crate) fn is_too_many_clients(&self) -> bool {
        matches!(self, Self::Pgbench { stderr, .. } if stderr.contains("too many clients"))
    }
}
