//! How long to wait before the next attempt, and whether to make one at all.
//!
//! Pure arithmetic plus a shared retry budget (the gRPC A6 token bucket), so an outage cannot turn
//! every call into a retry storm. Sleeping is the caller's job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::retry::ErrorClass;

/// When and how often failed transactions are repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`CHECKPOINT_MAX_RETRIES`).
    pub max_retries: u32,
    /// First backoff ceiling for contention and overload (`CHECKPOINT_RETRY_BASE_DELAY`).
    pub base_delay: Duration,
    /// First backoff ceiling after a lost connection or an unavailable server (`SSL_RETRY_DELAY`).
    pub connection_base_delay: Duration,
    /// Growth of the ceiling per retry.
    pub multiplier: f64,
    /// Growth per retry after a pooler lost its backend (`DBHANDLER_EXITED_DELAY_MULTIPLIER`).
    pub pooler_multiplier: f64,
    /// No ceiling grows beyond this.
    pub max_delay: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// Stop and report the failure.
    GiveUp(GiveUpReason),
}

/// Why no further attempt is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The class of failure is not worth repeating.
    NotRetryable,
    /// `max_retries` were spent.
    AttemptsExhausted,
    /// The next attempt could not finish before the caller's deadline.
    DeadlineTooClose,
    /// The shared retry budget is spent: the database is failing for everyone.
    BudgetExhausted,
}

impl RetryPolicy {
    /// The backoff ceiling before retry number `retry` (1-based), without jitter.
    pub fn ceiling(&self, class: ErrorClass, retry: u32) -> Duration {
        let (base, growth) = match class {
            ErrorClass::PoolerBackendLost => (self.connection_base_delay, self.pooler_multiplier),
            ErrorClass::ConnectionLost | ErrorClass::AmbiguousCommit | ErrorClass::ServerUnavailable => {
                (self.connection_base_delay, self.multiplier)
            }
            _ => (self.base_delay, self.multiplier),
        };
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = base.as_secs_f64() * growth.max(1.0).powi(exponent);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay).min(self.max_delay)
    }

    /// Decides about retry number `retry` (1-based) after a failure of `class`.
    ///
    /// `jitter` in [0, 1) picks the delay uniformly below the ceiling ("full jitter"), and
    /// `remaining` is the caller's time left, if it set a deadline.
    pub fn decide(
        &self,
        class: ErrorClass,
        retry: u32,
        remaining: Option<Duration>,
        budget: &RetryBudget,
        jitter: f64,
    ) -> Decision {
        if !class.is_retryable() {
            return Decision::GiveUp(GiveUpReason::NotRetryable);
        }
        if retry > self.max_retries {
            return Decision::GiveUp(GiveUpReason::AttemptsExhausted);
        }
        let delay = self.ceiling(class, retry).mul_f64(jitter.clamp(0.0, 1.0));
        if remaining.is_some_and(|left| delay >= left) {
            return Decision::GiveUp(GiveUpReason::DeadlineTooClose);
        }
        if !budget.try_spend() {
            return Decision::GiveUp(GiveUpReason::BudgetExhausted);
        }
        Decision::Retry(delay)
    }
}

/// A token bucket shared by all calls (gRPC A6 `retryThrottling`): each failure costs a token,
/// each success earns back `token_ratio`, and retries stop while fewer than half remain.
#[derive(Debug)]
pub struct RetryBudget {
    milli_tokens: AtomicU64,
    max_milli_tokens: u64,
    milli_ratio: u64,
}

impl RetryBudget {
    /// A full bucket of `max_tokens`, earning back `token_ratio` per success.
    pub fn new(max_tokens: u32, token_ratio: f64) -> Self {
        let max_milli_tokens = u64::from(max_tokens) * 1000;
        let milli_ratio = (token_ratio.clamp(0.0, 1.0) * 1000.0).round() as u64;
        Self { milli_tokens: AtomicU64::new(max_milli_tokens), max_milli_tokens, milli_ratio }
    }

    /// Records a failed attempt and says whether a retry may follow.
    pub fn try_spend(&self) -> bool {
        let before = self.update(|tokens| tokens.saturating_sub(1000));
        before.saturating_sub(1000) > self.max_milli_tokens / 2
    }

    /// Records a successful attempt.
    pub fn record_success(&self) {
        self.update(|tokens| (tokens + self.milli_ratio).min(self.max_milli_tokens));
    }

    /// The tokens left, for diagnostics.
    pub fn tokens(&self) -> f64 {
        self.milli_tokens.load(Ordering::Relaxed) as f64 / 1000.0
    }

    fn update(&self, f: impl Fn(u64) -> u64) -> u64 {
        let mut current = self.milli_tokens.load(Ordering::Relaxed);
        loop {
            match self.milli_tokens.compare_exchange_weak(current, f(current), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(previous) => return previous,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            connection_base_delay: Duration::from_millis(100),
            multiplier: 2.0,
            pooler_multiplier: 6.0,
            max_delay: Duration::from_secs(2),
        }
    }

    fn full_budget() -> RetryBudget {
        RetryBudget::new(100, 0.1)
    }

    #[test]
    fn ceilings_grow_per_class_and_stop_at_the_maximum() {
        let cases = [
            (Contention, 1, 10),
            (Contention, 2, 20),
            (Contention, 3, 40),
            (Overloaded, 2, 20),
            (ConnectionLost, 1, 100),
            (ConnectionLost, 3, 400),
            (AmbiguousCommit, 2, 200),
            (ServerUnavailable, 2, 200),
            (PoolerBackendLost, 1, 100),
            (PoolerBackendLost, 2, 600),
            (PoolerBackendLost, 3, 2000),
            (ConnectionLost, 30, 2000),
        ];
        for (class, retry, millis) in cases {
            assert_eq!(policy().ceiling(class, retry), Duration::from_millis(millis), "{class} retry {retry}");
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let budget = full_budget();
        assert_eq!(policy().decide(ConnectionLost, 2, None, &budget, 0.0), Decision::Retry(Duration::ZERO));
        assert_eq!(policy().decide(ConnectionLost, 2, None, &budget, 0.5), Decision::Retry(Duration::from_millis(100)));
    }

    #[test]
    fn permanent_failures_are_never_retried() {
        for class in [Deadline, Rejected, Misconfigured, Internal] {
            assert_eq!(
                policy().decide(class, 1, None, &full_budget(), 0.5),
                Decision::GiveUp(GiveUpReason::NotRetryable),
                "{class}"
            );
        }
    }

    #[test]
    fn attempts_are_bounded() {
        assert!(matches!(policy().decide(Contention, 3, None, &full_budget(), 0.5), Decision::Retry(_)));
        assert_eq!(
            policy().decide(Contention, 4, None, &full_budget(), 0.5),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
    }

    #[test]
    fn a_retry_that_cannot_finish_before_the_deadline_is_not_made() {
        let left = Some(Duration::from_millis(50));
        assert_eq!(
            policy().decide(ConnectionLost, 1, left, &full_budget(), 0.9),
            Decision::GiveUp(GiveUpReason::DeadlineTooClose)
        );
        assert!(matches!(policy().decide(ConnectionLost, 1, left, &full_budget(), 0.1), Decision::Retry(_)));
    }

    #[test]
    fn the_budget_stops_retries_when_half_is_spent_and_refills_on_success() {
        let budget = RetryBudget::new(10, 0.5);
        let allowed = (0..10).filter(|_| budget.try_spend()).count();
        assert_eq!(allowed, 4, "tokens 9..=6 are above half of 10");
        assert_eq!(policy().decide(Overloaded, 1, None, &budget, 0.5), Decision::GiveUp(GiveUpReason::BudgetExhausted));
        for _ in 0..20 {
            budget.record_success();
        }
        assert_eq!(budget.tokens(), 10.0);
        assert!(budget.try_spend());
    }
}
