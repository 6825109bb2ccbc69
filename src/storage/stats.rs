//! Counters of retries and failures by error class, kept by the runner for diagnostics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::retry::ErrorClass;

const CLASSES: usize = ErrorClass::ALL.len();

/// Retries and final failures since start, and the latest failed attempt.
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    retries: [AtomicU64; CLASSES],
    failures: [AtomicU64; CLASSES],
    last_error: Mutex<Option<(ErrorClass, Instant)>>,
}

impl CallStats {
    /// A failed attempt of `class`; `retried` says whether another attempt follows.
    pub(crate) fn record(&self, class: ErrorClass, retried: bool) {
        let counters = if retried { &self.retries } else { &self.failures };
        counters[class.index()].fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some((class, Instant::now()));
        }
    }

    /// Retries by class, every class listed.
    pub(crate) fn retries(&self) -> Vec<(ErrorClass, u64)> {
        Self::snapshot(&self.retries)
    }

    /// Final failures by class, every class listed.
    pub(crate) fn failures(&self) -> Vec<(ErrorClass, u64)> {
        Self::snapshot(&self.failures)
    }

    /// The class of the latest failed attempt and how long ago it was.
    pub(crate) fn last_error(&self) -> Option<(ErrorClass, Duration)> {
        self.last_error.lock().ok().and_then(|last| last.map(|(class, at)| (class, at.elapsed())))
    }

    fn snapshot(counters: &[AtomicU64; CLASSES]) -> Vec<(ErrorClass, u64)> {
        ErrorClass::ALL.iter().map(|c| (*c, counters[c.index()].load(Ordering::Relaxed))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_retries_and_failures_separately_and_remembers_the_last() {
        let stats = CallStats::default();
        stats.record(ErrorClass::ConnectionLost, true);
        stats.record(ErrorClass::ConnectionLost, true);
        stats.record(ErrorClass::Deadline, false);
        let count = |list: Vec<(ErrorClass, u64)>, class| list.into_iter().find(|(c, _)| *c == class).map(|(_, n)| n);
        assert_eq!(count(stats.retries(), ErrorClass::ConnectionLost), Some(2));
        assert_eq!(count(stats.failures(), ErrorClass::Deadline), Some(1));
        assert_eq!(count(stats.failures(), ErrorClass::ConnectionLost), Some(0));
        assert_eq!(stats.last_error().map(|(c, _)| c), Some(ErrorClass::Deadline));
    }
}
