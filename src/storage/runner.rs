//! Runs operations: checkout, one transaction with its timeouts, classification, and retries
//! with backoff inside the caller's deadline.
//!
//! Repeating a write is safe only because every operation is idempotent (see `storage::ops`);
//! that is what lets an ambiguous commit be retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, field};

use crate::retry::{ErrorClass, Failure, Phase, RetryBudget, RetryPolicy, SqlState, classify};
use crate::storage::StorageError;
use crate::storage::error::sqlstate_of;
use crate::storage::ops::{Access, Operation};
use crate::storage::pool::{CheckoutError, Pool, PooledConn};
use crate::storage::retry_loop::{AttemptFailure, Attempts, LoopError, RetryContext, retry};
use crate::storage::stats::CallStats;

/// How long a call waits for a connection while the database is known to be down.
const OUTAGE_CHECKOUT_WAIT: Duration = Duration::from_millis(250);

/// Session limits applied to every transaction with `SET LOCAL` (works through PgBouncer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransactionLimits {
    pub(crate) statement_timeout: Duration,
    pub(crate) idle_in_transaction_timeout: Duration,
}

/// Executes operations against the pool.
#[derive(Debug)]
pub(crate) struct Runner {
    pub(crate) pool: Arc<Pool>,
    pub(crate) policy: RetryPolicy,
    pub(crate) budget: RetryBudget,
    pub(crate) limits: TransactionLimits,
    pub(crate) database_up: watch::Receiver<bool>,
    pub(crate) stats: CallStats,
    /// False until the schema is migrated: calls fail at once as the server being unavailable.
    pub(crate) schema_ready: AtomicBool,
}

impl Runner {
    /// Runs `op` until it succeeds, fails for good, or `deadline` passes.
    pub(crate) async fn run<O: Operation>(&self, op: &O, deadline: Instant) -> Result<O::Output, StorageError> {
        let mut attempts = OpAttempts { runner: self, op, deadline: Some(deadline) };
        self.retry(&mut attempts).await.map_err(|e| e.into_storage_error(op.name()))
    }

    /// Runs `attempts` through the retry loop with this runner's policy, budget and pool.
    pub(crate) async fn retry<A: Attempts>(&self, attempts: &mut A) -> Result<A::Output, LoopError> {
        // While migrations run, calls would meet tables that do not exist yet. When the database
        // is known down, the attempt goes ahead instead, so the caller learns the real cause (a
        // refused connection, a wrong password).
        if !self.schema_is_ready() && self.database_is_up() {
            return Err(LoopError::Failed { failure: schema_not_ready(), attempts: 0 });
        }
        let database_up = || self.database_is_up();
        let on_attempt = |class| {
            self.pool.record_attempt(class);
        };
        let jitter = rand::random::<f64>;
        let context = RetryContext {
            policy: &self.policy,
            budget: &self.budget,
            stats: &self.stats,
            database_up: &database_up,
            on_attempt: &on_attempt,
            jitter: &jitter,
        };
        retry(&context, attempts).await
    }

    fn schema_is_ready(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
    }

    /// The monitor's latest verdict on the database.
    pub(crate) fn database_is_up(&self) -> bool {
        *self.database_up.borrow()
    }

    /// The longest wait for a pooled connection: shortened while the monitor knows the database
    /// is down, so calls fail fast instead of queueing behind an outage.
    pub(crate) fn checkout_wait(&self) -> Duration {
        let acquire = self.pool.acquire_timeout();
        if self.database_is_up() { acquire } else { acquire.min(OUTAGE_CHECKOUT_WAIT) }
    }

    /// One attempt at `op`: a checkout and one transaction, all ending by `deadline`.
    pub(crate) async fn attempt_once<O: Operation>(
        &self,
        op: &O,
        number: u32,
        deadline: Instant,
    ) -> Result<O::Output, AttemptFailure> {
        let span = attempt_span(op, number);
        let outcome = self.attempt(op, deadline).instrument(span.clone()).await;
        let outcome = outcome.map_err(|failure| self.before_migrations(failure));
        if let Err(failure) = &outcome {
            span.record("error.type", failure.class.as_str());
            span.record("db.retry", failure.class.is_retryable());
        }
        outcome
    }

    async fn attempt<O: Operation>(&self, op: &O, deadline: Instant) -> Result<O::Output, AttemptFailure> {
        let before_checkout = deadline.saturating_duration_since(Instant::now());
        let wait = before_checkout.min(self.checkout_wait());
        let checkout = self
            .pool
            .get(wait)
            .instrument(tracing::info_span!("pool.wait", pool.max_size = self.pool.status().max_size));
        let mut conn = match checkout.await {
            Ok(conn) => conn,
            Err(_) if wait == before_checkout => return Err(AttemptFailure::deadline(Phase::Checkout)),
            Err(e) => return Err(checkout_failure(e)),
        };
        // The transaction gets what is left of the caller's time after the checkout, not more.
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AttemptFailure::deadline(Phase::Checkout));
        }
        conn.begin_use();
        if op.is_one_statement() && self.pool.keeps_statements() {
            return self.autocommit(op, conn, deadline).await;
        }
        let begin = begin_sql(op.access(), self.limits, remaining);
        let outcome = tokio::time::timeout_at(deadline, transaction(&mut conn, op, &begin)).await;
        match outcome {
            // The connection is dropped while in use, so the pool discards it.
            Err(_) => Err(AttemptFailure::deadline(Phase::Statement)),
            Ok(Ok(output)) => {
                conn.finish_use();
                Ok(output)
            }
            Ok(Err(failed)) => {
                let broken = failed.session_unknown || PoolableConnection::is_broken(&mut **conn);
                if !broken {
                    conn.finish_use();
                }
                let phase = if failed.phase == Phase::Commit && op.access() != Access::ReadWrite {
                    Phase::Statement
                } else {
                    failed.phase
                };
                Err(database_failure(phase, &failed.error, broken))
            }
        }
    }
}

impl Runner {
    /// One statement alone in autocommit: one round trip (a cached prepared statement is Bind and
    /// Execute with one Sync). No `SET LOCAL` can bound it, so the call's own timer does: the
    /// deadline, and for a read also `statement_timeout`. A write's statement and its commit (with
    /// any wait for a synchronous standby) are one, and a transaction's COMMIT is bounded by the
    /// deadline alone, so a write is too. When the timer fires, a cancel request stops the statement on the server
    /// and its answer is awaited a little longer, so a write reported as timed out was cancelled
    /// rather than left running. A connection whose statement does not answer in time is
    /// dropped while in use, so the pool discards it. A write whose connection breaks before its
    /// answer has an unknown outcome, like an interrupted COMMIT.
    async fn autocommit<O: Operation>(
        &self,
        op: &O,
        mut conn: PooledConn,
        deadline: Instant,
    ) -> Result<O::Output, AttemptFailure> {
        let timer = match op.access() {
            Access::ReadWrite => deadline,
            Access::ReadOnly | Access::Snapshot => deadline.min(Instant::now() + self.limits.statement_timeout),
        };
        let cancel = conn.cancel_token();
        let answer = {
            let mut run = op.run(&mut conn);
            match tokio::time::timeout_at(timer, &mut run).await {
                Ok(outcome) => Ok(outcome.map_err(Stopped::from)),
                Err(_) => {
                    let cancelled = async {
                        self.pool.cancel(cancel).await;
                        run.await
                    };
                    let answered = tokio::time::timeout(CANCEL_GRACE, cancelled).await;
                    answered.map(|outcome| after_cancel(op, outcome, timer == deadline))
                }
            }
        };
        // No answer even after the cancel: the connection goes back in use, so it is discarded.
        let Ok(answer) = answer else { return Err(AttemptFailure::deadline(Phase::Statement)) };
        let broken = answer.is_err() && PoolableConnection::is_broken(&mut **conn);
        if !broken {
            conn.finish_use();
        }
        answer.map_err(|failure| match failure {
            Stopped::Failed(failure) => failure,
            Stopped::Database(error) => {
                let phase = if broken && op.access() == Access::ReadWrite { Phase::Commit } else { Phase::Statement };
                database_failure(phase, &error, broken)
            }
        })
    }
}

/// Why a statement run alone did not give its result.
enum Stopped {
    /// The database's error, to classify.
    Database(DieselError),
    /// Already classified.
    Failed(AttemptFailure),
}

impl From<DieselError> for Stopped {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

/// What a statement's answer means once its timer fired and a cancel request went out. A read's
/// result is still good. A write's success is never acknowledged: the cancel may have cut short
/// the wait for a synchronous standby, and PostgreSQL then reports success for a commit that is
/// only local ("committed locally, but might not have been replicated"). The write may have been
/// applied, so the caller hears its deadline passed (a write's timer is its deadline).
fn after_cancel<O: Operation>(
    op: &O,
    outcome: QueryResult<O::Output>,
    deadline_passed: bool,
) -> Result<O::Output, Stopped> {
    match outcome {
        Ok(output) if op.access() != Access::ReadWrite => Ok(output),
        Ok(_) => Err(Stopped::Failed(AttemptFailure::deadline(Phase::Commit))),
        Err(_) if deadline_passed => Err(Stopped::Failed(AttemptFailure::deadline(Phase::Statement))),
        Err(error) => Err(Stopped::Database(error)),
    }
}

/// How long a statement stopped by the call's timer has to answer once its cancel request is
/// sent, before its connection is given up.
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// A single operation with a fixed deadline, as most calls are.
struct OpAttempts<'a, O> {
    runner: &'a Runner,
    op: &'a O,
    deadline: Option<Instant>,
}

impl<O: Operation> Attempts for OpAttempts<'_, O> {
    type Output = O::Output;

    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn deadline(&mut self) -> Option<Instant> {
        self.deadline
    }

    async fn attempt(&mut self, number: u32, deadline: Instant) -> Result<O::Output, AttemptFailure> {
        self.runner.attempt_once(self.op, number, deadline).await
    }
}

fn attempt_span<O: Operation>(op: &O, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        "db.attempt",
        otel.name = format!("{} {}", op.db_operation(), op.collection()),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = op.db_operation(),
        db.collection.name = op.collection(),
        checkpointd.operation = op.name(),
        db.attempt = i64::from(attempt),
        error.type = field::Empty,
        db.retry = field::Empty,
    )
}

/// `BEGIN` with the transaction mode and the session limits, in one round trip.
///
/// JIT compilation is off: the planner's estimates for the per-row lookups of a read (blobs,
/// writes) make a list of a few thousand rows look expensive enough to compile, and compiling
/// took longer (about 1 s here) than running the query.
pub(crate) fn begin_sql(access: Access, limits: TransactionLimits, remaining: Duration) -> String {
    let begin = match access {
        Access::ReadOnly => "BEGIN READ ONLY",
        Access::ReadWrite => "BEGIN",
        Access::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ",
    };
    let statement_ms = limits.statement_timeout.min(remaining).as_millis().max(1);
    let idle_ms = limits.idle_in_transaction_timeout.as_millis().max(1);
    format!(
        "{begin}; SET LOCAL statement_timeout = {statement_ms}; SET LOCAL idle_in_transaction_session_timeout = {idle_ms}; SET LOCAL jit = off"
    )
}

/// `COMMIT` with the statement timeout cleared first, in one round trip. A statement timeout
/// that fired while COMMIT waits for a synchronous standby would cancel only the wait: PostgreSQL
/// then warns "committed locally, but might not have been replicated" and reports success, which
/// would acknowledge a write a failover can lose. The call's own timer bounds COMMIT instead, and
/// a COMMIT it interrupts is never acknowledged.
pub(crate) const COMMIT_SQL: &str = "SET LOCAL statement_timeout = 0; COMMIT";

/// A transaction that failed, and where.
struct TransactionFailure {
    phase: Phase,
    error: DieselError,
    /// True when even the ROLLBACK failed: the session's state is unknown.
    session_unknown: bool,
}

/// Runs `op` inside a transaction; on failure says in which phase.
///
/// Pipeline-free: `BEGIN` (one simple-query message with the `SET LOCAL` limits), each statement
/// and `COMMIT` are sent one after another, each only once the previous one answered, so a
/// connection never has two requests in flight.
async fn transaction<O: Operation>(
    conn: &mut AsyncPgConnection,
    op: &O,
    begin: &str,
) -> Result<O::Output, TransactionFailure> {
    let failed = |phase, error| TransactionFailure { phase, error, session_unknown: false };
    conn.batch_execute(begin).await.map_err(|e| failed(Phase::Statement, e))?;
    match op.run(conn).await {
        Ok(output) => {
            let commit = if op.access() == Access::ReadWrite { COMMIT_SQL } else { "COMMIT" };
            conn.batch_execute(commit).await.map_err(|e| failed(Phase::Commit, e))?;
            Ok(output)
        }
        Err(error) => {
            let session_unknown = conn.batch_execute("ROLLBACK").await.is_err();
            Err(TransactionFailure { phase: Phase::Statement, error, session_unknown })
        }
    }
}

impl Runner {
    /// A missing table before the schema is migrated means "not ready yet", not a broken schema.
    fn before_migrations(&self, failure: AttemptFailure) -> AttemptFailure {
        if failure.sqlstate == Some(SqlState::UNDEFINED_TABLE) && !self.schema_is_ready() {
            return schema_not_ready();
        }
        failure
    }
}

fn schema_not_ready() -> AttemptFailure {
    AttemptFailure {
        class: ErrorClass::ServerUnavailable,
        phase: Phase::Checkout,
        detail: "the database schema is still being migrated".into(),
        sqlstate: None,
    }
}

fn checkout_failure(error: CheckoutError) -> AttemptFailure {
    let class = match error {
        CheckoutError::Saturated(_) => ErrorClass::Overloaded,
        CheckoutError::Unreachable(class) => class,
    };
    AttemptFailure { class, phase: Phase::Checkout, detail: error.to_string(), sqlstate: None }
}

/// The facts of a diesel error: the server's SQLSTATE (diesel-async keeps it), its message and
/// whether the connection is gone.
fn database_failure(phase: Phase, error: &DieselError, broken: bool) -> AttemptFailure {
    let (message, sqlstate, lost) = match error {
        DieselError::DatabaseError(kind, info) => {
            let lost = matches!(kind, DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection);
            (info.message().to_owned(), sqlstate_of(info.as_ref()), lost)
        }
        DieselError::BrokenTransactionManager => ("the transaction state is broken".to_owned(), None, true),
        other => (other.to_string(), None, false),
    };
    let class = classify(&Failure {
        phase,
        sqlstate,
        message: &message,
        connection_broken: broken || lost,
        io_kind: None,
        timed_out: false,
    });
    AttemptFailure { class, phase, detail: message, sqlstate }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::DatabaseErrorInformation;

    #[test]
    fn begin_sets_the_mode_and_caps_the_statement_timeout_at_the_deadline() {
        let limits = TransactionLimits {
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
        };
        assert_eq!(
            begin_sql(Access::ReadOnly, limits, Duration::from_millis(1500)),
            "BEGIN READ ONLY; SET LOCAL statement_timeout = 1500; SET LOCAL idle_in_transaction_session_timeout = 60000; SET LOCAL jit = off"
        );
        assert!(
            begin_sql(Access::Snapshot, limits, Duration::from_secs(99))
                .starts_with("BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL statement_timeout = 30000;")
        );
        assert!(begin_sql(Access::ReadWrite, limits, Duration::ZERO).contains("statement_timeout = 1;"));
    }

    /// An operation that only says how it accesses the database.
    struct Accessing(Access);

    impl Operation for Accessing {
        type Output = u8;

        fn name(&self) -> &'static str {
            "test"
        }

        fn db_operation(&self) -> &'static str {
            "SELECT"
        }

        fn access(&self) -> Access {
            self.0
        }

        fn run<'c>(&'c self, _conn: &'c mut AsyncPgConnection) -> futures_util::future::BoxFuture<'c, QueryResult<u8>> {
            unreachable!("after_cancel never runs the operation")
        }
    }

    #[test]
    fn after_a_cancel_a_read_keeps_its_result_and_a_write_is_never_acknowledged() {
        use Access::{ReadOnly, ReadWrite};
        let cancelled = || Err(DieselError::RollbackTransaction);
        type Case = (&'static str, Access, QueryResult<u8>, bool, Result<u8, ErrorClass>);
        let cases: [Case; 5] = [
            ("a read that finished anyway", ReadOnly, Ok(7), true, Ok(7)),
            ("a read that finished at statement_timeout", ReadOnly, Ok(7), false, Ok(7)),
            ("a write that finished anyway", ReadWrite, Ok(7), true, Err(ErrorClass::Deadline)),
            ("a cancelled statement at the deadline", ReadWrite, cancelled(), true, Err(ErrorClass::Deadline)),
            ("a read cancelled at statement_timeout", ReadOnly, cancelled(), false, Err(ErrorClass::Internal)),
        ];
        for (case, access, outcome, deadline_passed, expected) in cases {
            let got = after_cancel(&Accessing(access), outcome, deadline_passed).map_err(|stopped| match stopped {
                Stopped::Failed(failure) => failure.class,
                Stopped::Database(error) => database_failure(Phase::Statement, &error, false).class,
            });
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn lost_connections_during_commit_are_ambiguous() {
        let error = DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new("connection closed".to_string()),
        );
        assert_eq!(database_failure(Phase::Commit, &error, true).class, ErrorClass::AmbiguousCommit);
        assert_eq!(database_failure(Phase::Statement, &error, true).class, ErrorClass::ConnectionLost);
    }

    /// A server error as diesel-async reports it: a translated message and the SQLSTATE.
    struct ServerError(&'static str, &'static str);

    impl DatabaseErrorInformation for ServerError {
        fn message(&self) -> &str {
            self.1
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
        fn sqlstate(&self) -> Option<diesel::result::SqlState> {
            self.0.parse().ok()
        }
    }

    #[test]
    fn the_sqlstate_diesel_reports_decides_whatever_the_language() {
        let error = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(ServerError("40P01", "Verklemmung (Deadlock) entdeckt")),
        );
        assert_eq!(database_failure(Phase::Statement, &error, false).class, ErrorClass::Contention);
    }
}
