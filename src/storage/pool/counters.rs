//! Counters of connection churn, kept by the manager and read by diagnostics and metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::retry::ErrorClass;

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The socket closed or its transaction state was broken.
    Broken,
    /// It was returned while a statement or transaction was still in flight (a cancelled call).
    Abandoned,
    /// It reached its (jittered) maximum lifetime.
    Lifetime,
    /// Its checkout ping failed or timed out.
    FailedValidation,
}

impl CloseCause {
    /// Every cause, for reporting.
    pub const ALL: [CloseCause; 4] =
        [CloseCause::Broken, CloseCause::Abandoned, CloseCause::Lifetime, CloseCause::FailedValidation];

    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Broken => "broken",
            CloseCause::Abandoned => "abandoned",
            CloseCause::Lifetime => "lifetime",
            CloseCause::FailedValidation => "failed_validation",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Monotonic counters shared by every generation of the pool.
#[derive(Debug, Default)]
pub struct PoolCounters {
    created: AtomicU64,
    connect_failures: AtomicU64,
    closed: [AtomicU64; 4],
    recreations: AtomicU64,
    last_connect_error: Mutex<Option<ErrorClass>>,
}

impl PoolCounters {
    pub(crate) fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, cause: CloseCause) {
        self.closed[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recreated(&self) {
        self.recreations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_last_connect_error(&self, class: Option<ErrorClass>) {
        if let Ok(mut last) = self.last_connect_error.lock() {
            *last = class;
        }
    }

    /// Connections opened.
    pub fn connections_created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Connection attempts that failed.
    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    /// Connections closed for `cause`.
    pub fn connections_closed(&self, cause: CloseCause) -> u64 {
        self.closed[cause.index()].load(Ordering::Relaxed)
    }

    /// Times the pool was rebuilt.
    pub fn recreations(&self) -> u64 {
        self.recreations.load(Ordering::Relaxed)
    }

    /// The class of the latest failed connection attempt, cleared by a successful one.
    pub fn last_connect_error(&self) -> Option<ErrorClass> {
        self.last_connect_error.lock().ok().and_then(|last| *last)
    }
}
