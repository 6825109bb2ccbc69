//! The retry loop: attempt, classify, decide, back off, inside the caller's deadline.
//!
//! Everything around it comes in through [`Attempts`] and [`RetryContext`]: the attempt itself,
//! the deadline (which may shrink between attempts, as callers leave a coalesced batch), the
//! database's known state, the jitter source and what each attempt reports to the pool. So the
//! loop is unit-tested under `tokio::time::pause()` with no database, and `storage::runner` and
//! `storage::coalesce` share one loop.

use std::future::Future;

use tokio::time::Instant;

use crate::retry::{Decision, ErrorClass, GiveUpReason, Phase, RetryBudget, RetryPolicy, SqlState};
use crate::storage::StorageError;
use crate::storage::stats::CallStats;

/// One failed attempt, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptFailure {
    pub(crate) class: ErrorClass,
    pub(crate) phase: Phase,
    pub(crate) detail: String,
    pub(crate) sqlstate: Option<SqlState>,
}

impl AttemptFailure {
    /// The caller's time ran out during `phase`.
    pub(crate) fn deadline(phase: Phase) -> Self {
        Self { class: ErrorClass::Deadline, phase, detail: "the call's deadline passed".into(), sqlstate: None }
    }
}

/// The work the loop repeats.
pub(crate) trait Attempts {
    /// What a successful attempt returns.
    type Output;

    /// The operation's name, for errors and logs.
    fn name(&self) -> &'static str;

    /// The deadline of the next attempt, asked before every attempt; `None` once nobody waits
    /// for the outcome any more, which ends the loop without another attempt.
    fn deadline(&mut self) -> Option<Instant>;

    /// Makes attempt number `number` (1-based), which must end by `deadline`.
    fn attempt(
        &mut self,
        number: u32,
        deadline: Instant,
    ) -> impl Future<Output = Result<Self::Output, AttemptFailure>> + Send;
}

/// What the loop needs besides the attempt.
pub(crate) struct RetryContext<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) budget: &'a RetryBudget,
    pub(crate) stats: &'a CallStats,
    /// The monitor's latest verdict: while the database is known down, a failed checkout ends
    /// the call at once instead of queueing more waits behind the outage.
    pub(crate) database_up: &'a (dyn Fn() -> bool + Sync),
    /// Told the outcome of every attempt (`None` for success): the pool counts path failures
    /// towards its recreation.
    pub(crate) on_attempt: &'a (dyn Fn(Option<ErrorClass>) + Sync),
    /// A number in [0, 1) per retry, for full jitter.
    pub(crate) jitter: &'a (dyn Fn() -> f64 + Sync),
}

/// Why the loop ended without an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoopError {
    /// The last attempt's failure, not retried; the call reports it.
    Failed { failure: AttemptFailure, attempts: u32 },
    /// Nobody waits for the outcome any more.
    Abandoned { attempts: u32 },
}

impl LoopError {
    /// The storage error a caller sees.
    pub(crate) fn into_storage_error(self, operation: &'static str) -> StorageError {
        match self {
            LoopError::Failed { failure, attempts } => StorageError::Database {
                operation,
                class: failure.class,
                attempts,
                detail: failure.detail,
                sqlstate: failure.sqlstate,
            },
            LoopError::Abandoned { attempts } => StorageError::Database {
                operation,
                class: ErrorClass::Deadline,
                attempts,
                detail: "every caller gave up before the work was done".into(),
                sqlstate: None,
            },
        }
    }
}

/// Runs `attempts` until one succeeds, a failure is final, or nobody waits any more.
pub(crate) async fn retry<A: Attempts>(context: &RetryContext<'_>, attempts: &mut A) -> Result<A::Output, LoopError> {
    let mut number = 0;
    loop {
        let Some(deadline) = attempts.deadline() else {
            return Err(LoopError::Abandoned { attempts: number });
        };
        number += 1;
        let failure = match attempts.attempt(number, deadline).await {
            Ok(output) => {
                context.budget.record_success();
                (context.on_attempt)(None);
                return Ok(output);
            }
            Err(failure) => failure,
        };
        (context.on_attempt)(Some(failure.class));
        let decision = decide(context, &failure, number, deadline);
        context.stats.record(failure.class, matches!(decision, Decision::Retry(_)));
        match decision {
            Decision::Retry(delay) => {
                tracing::info!(operation = attempts.name(), attempt = number, error_class = %failure.class, error = %failure.detail, ?delay, "retrying database operation");
                tokio::time::sleep(delay).await;
            }
            Decision::GiveUp(reason) => {
                tracing::debug!(operation = attempts.name(), attempt = number, ?reason, "giving up");
                return Err(LoopError::Failed { failure, attempts: number });
            }
        }
    }
}

fn decide(context: &RetryContext<'_>, failure: &AttemptFailure, attempt: u32, deadline: Instant) -> Decision {
    if failure.phase == Phase::Checkout && !(context.database_up)() {
        return Decision::GiveUp(GiveUpReason::NotRetryable);
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    context.policy.decide(failure.class, attempt, Some(remaining), context.budget, (context.jitter)())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Attempts that play back a script of outcomes, each taking `took`, and record when each
    /// started.
    struct Script {
        outcomes: VecDeque<Result<u32, AttemptFailure>>,
        took: Duration,
        deadline: Option<Instant>,
        started: Vec<Instant>,
    }

    impl Script {
        fn new(outcomes: Vec<Result<u32, AttemptFailure>>, deadline_in: Duration) -> Self {
            let outcomes = outcomes.into();
            Script { outcomes, took: Duration::ZERO, deadline: Some(Instant::now() + deadline_in), started: Vec::new() }
        }
    }

    impl Attempts for Script {
        type Output = u32;
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn deadline(&mut self) -> Option<Instant> {
            self.deadline
        }
        async fn attempt(&mut self, _number: u32, deadline: Instant) -> Result<u32, AttemptFailure> {
            self.started.push(Instant::now());
            let outcome = self.outcomes.pop_front().expect("an attempt the script did not plan");
            if Instant::now() + self.took > deadline {
                tokio::time::sleep_until(deadline).await;
                return Err(AttemptFailure::deadline(Phase::Statement));
            }
            tokio::time::sleep(self.took).await;
            outcome
        }
    }

    fn failure(class: ErrorClass, phase: Phase) -> Result<u32, AttemptFailure> {
        Err(AttemptFailure { class, phase, detail: format!("{class}"), sqlstate: None })
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            connection_base_delay: Duration::from_millis(200),
            multiplier: 2.0,
            pooler_multiplier: 3.0,
            max_delay: Duration::from_secs(2),
        }
    }

    /// A context whose jitter is always the top of the range, so delays equal their ceilings.
    struct Fixture {
        policy: RetryPolicy,
        budget: RetryBudget,
        stats: CallStats,
        up: AtomicBool,
        reported: Mutex<Vec<Option<ErrorClass>>>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                policy: policy(),
                budget: RetryBudget::new(10, 0.1),
                stats: CallStats::default(),
                up: AtomicBool::new(true),
                reported: Mutex::new(Vec::new()),
            }
        }

        async fn run(&self, script: &mut Script) -> Result<u32, LoopError> {
            let database_up = || self.up.load(Ordering::SeqCst);
            let on_attempt = |class| self.reported.lock().expect("reported").push(class);
            let jitter = || 0.999_999;
            let context = RetryContext {
                policy: &self.policy,
                budget: &self.budget,
                stats: &self.stats,
                database_up: &database_up,
                on_attempt: &on_attempt,
                jitter: &jitter,
            };
            retry(&context, script).await
        }
    }

    fn attempts_of(result: &Result<u32, LoopError>) -> u32 {
        match result {
            Ok(_) => 0,
            Err(LoopError::Failed { attempts, .. } | LoopError::Abandoned { attempts }) => *attempts,
        }
    }

    use ErrorClass::*;
    use Phase::{Checkout, Commit, Statement};

    /// A script's name, its outcomes, and the output or the final class and attempt count.
    type Case = (&'static str, Vec<Result<u32, AttemptFailure>>, Result<u32, (ErrorClass, u32)>);

    /// Scripted outcomes and what the loop must make of them.
    #[tokio::test(start_paused = true)]
    async fn each_script_ends_as_the_policy_says() {
        let ok = Ok(7);
        let cases: Vec<Case> = vec![
            ("success at once", vec![ok.clone()], Ok(7)),
            ("a lost connection, then success", vec![failure(ConnectionLost, Statement), ok.clone()], Ok(7)),
            ("an ambiguous commit is retried", vec![failure(AmbiguousCommit, Commit), ok.clone()], Ok(7)),
            ("rejected data is final", vec![failure(Rejected, Statement)], Err((Rejected, 1))),
            ("a deadline is final", vec![failure(Deadline, Statement)], Err((Deadline, 1))),
            (
                "retries run out after max_retries",
                vec![
                    failure(Contention, Statement),
                    failure(Contention, Statement),
                    failure(Contention, Statement),
                    failure(Contention, Statement),
                ],
                Err((Contention, 4)),
            ),
        ];
        for (name, outcomes, expected) in cases {
            let fixture = Fixture::new();
            let mut script = Script::new(outcomes, Duration::from_secs(60));
            let result = fixture.run(&mut script).await;
            let got = result.clone().map_err(|e| match e {
                LoopError::Failed { failure, attempts } => (failure.class, attempts),
                LoopError::Abandoned { attempts } => (Deadline, attempts),
            });
            assert_eq!(got, expected, "{name}");
            assert!(script.outcomes.is_empty(), "{name}: every scripted attempt was made");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_by_class_between_attempts() {
        let fixture = Fixture::new();
        let outcomes = vec![failure(Contention, Statement), failure(Contention, Statement), Ok(1)];
        let mut script = Script::new(outcomes, Duration::from_secs(60));
        fixture.run(&mut script).await.expect("third attempt succeeds");
        let gaps: Vec<u128> = script.started.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(gaps, [100, 200], "the ceilings 100 ms and 200 ms, at the top of the jitter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_checkout_fails_fast_while_the_database_is_known_down() {
        let fixture = Fixture::new();
        fixture.up.store(false, Ordering::SeqCst);
        let mut script = Script::new(vec![failure(ServerUnavailable, Checkout)], Duration::from_secs(60));
        let started = Instant::now();
        let result = fixture.run(&mut script).await;
        assert_eq!(attempts_of(&result), 1);
        assert_eq!(started.elapsed(), Duration::ZERO, "no backoff, no second attempt");
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_when_its_backoff_would_pass_the_deadline() {
        let fixture = Fixture::new();
        let mut script = Script::new(vec![failure(ConnectionLost, Statement)], Duration::from_millis(150));
        let started = Instant::now();
        let result = fixture.run(&mut script).await;
        assert!(
            matches!(result, Err(LoopError::Failed { ref failure, attempts: 1 }) if failure.class == ConnectionLost)
        );
        assert!(started.elapsed() < Duration::from_millis(150), "gave up at once, before the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_slower_than_the_deadline_ends_at_the_deadline() {
        let fixture = Fixture::new();
        let mut script = Script::new(vec![Ok(1)], Duration::from_millis(300));
        script.took = Duration::from_secs(5);
        let started = Instant::now();
        let result = fixture.run(&mut script).await;
        assert!(matches!(result, Err(LoopError::Failed { ref failure, .. }) if failure.class == Deadline));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_retry_budget_stops_retries_for_everyone() {
        let fixture = Fixture::new();
        fixture.budget_spent();
        let mut script = Script::new(vec![failure(ConnectionLost, Statement)], Duration::from_secs(60));
        let result = fixture.run(&mut script).await;
        assert_eq!(attempts_of(&result), 1, "the budget allowed no retry");
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_is_reported_to_the_pool_and_counted() {
        let fixture = Fixture::new();
        let outcomes = vec![failure(ConnectionLost, Statement), failure(ServerUnavailable, Statement), Ok(1)];
        let mut script = Script::new(outcomes, Duration::from_secs(60));
        fixture.run(&mut script).await.expect("success");
        assert_eq!(*fixture.reported.lock().expect("reported"), [Some(ConnectionLost), Some(ServerUnavailable), None]);
        let retries: Vec<_> = fixture.stats.retries().into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(retries, [(ConnectionLost, 1), (ServerUnavailable, 1)]);
        assert!(fixture.stats.failures().iter().all(|(_, n)| *n == 0), "nothing failed for good");
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_nobody_waits_for_makes_no_further_attempt() {
        let fixture = Fixture::new();
        let mut script = Script::new(vec![failure(ConnectionLost, Statement)], Duration::from_secs(60));
        script.deadline = None;
        assert_eq!(fixture.run(&mut script).await, Err(LoopError::Abandoned { attempts: 0 }));
    }

    impl Fixture {
        fn budget_spent(&self) {
            while self.budget.try_spend() {}
        }
    }
}
