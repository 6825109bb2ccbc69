//! One type per database operation: its SQL, its binds and how its rows become domain values.
//!
//! Every operation runs inside a transaction that `storage::runner` opens (with its timeouts)
//! and commits, or, when it is one statement, alone in autocommit; it may run more than once:
//! each must be idempotent, which the SQL guarantees (upserts and insert-if-absent keyed by the
//! client's ids).

mod copy;
mod delete;
mod delta;
mod list;
mod prune;
mod put;
mod read;
mod writes;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

pub(crate) use copy::CopyThreadOp;
pub(crate) use delete::{DeleteForRunsOp, DeleteThreadOp};
pub(crate) use delta::DeltaHistoryOp;
pub(crate) use list::{ListScanOp, ListSelect, PageSender, ScanOutcome, ScanPacing};
pub(crate) use prune::{KeepLatestOutcome, PruneDeleteOp, PruneKeepLatestOp, RefuseDeltaThreadsOp};
pub(crate) use put::{PUT_SQL, PutManyOp, PutOp};
pub(crate) use read::{GET_LATEST_SQL, GetTupleOp};
pub(crate) use writes::{PutWritesOp, put_writes_sql};

/// How a transaction reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `READ ONLY`, read committed.
    ReadOnly,
    /// Read committed, may write.
    ReadWrite,
    /// `REPEATABLE READ`: every statement sees one snapshot.
    Snapshot,
}

/// A database operation the runner can execute (and repeat): inside one transaction, or, for one
/// statement on a connection that keeps its prepared statements, alone in autocommit.
pub(crate) trait Operation: Sync {
    /// What a successful run returns.
    type Output: Send;

    /// The name of the operation, for logs, spans and metrics (`put`, `get_tuple`, …).
    fn name(&self) -> &'static str;

    /// The SQL verb of its main statement (`db.operation.name`).
    fn db_operation(&self) -> &'static str;

    /// The table it is mainly about (`db.collection.name`).
    fn collection(&self) -> &'static str {
        "checkpoints"
    }

    /// The transaction mode it needs.
    fn access(&self) -> Access;

    /// True when `run` sends exactly one statement, atomic on its own (data-modifying CTEs are):
    /// the runner may then send it in autocommit, one round trip instead of three.
    fn is_one_statement(&self) -> bool {
        false
    }

    /// Runs the statements, one at a time, inside a transaction (do not commit), or alone in
    /// autocommit when [`Operation::is_one_statement`].
    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<Self::Output>>;
}
