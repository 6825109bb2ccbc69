//! The SQL each benchmarked operation sends, taken from the operations themselves, so the
//! pgbench reference (`checkpointd-bench --pgbench`) issues exactly what checkpointd issues.

use std::time::Duration;

use crate::domain::{ListQuery, WriteConflict};
use crate::storage::ops::{self, Access, ListSelect};
use crate::storage::runner::{TransactionLimits, begin_sql};

/// What one operation sends: a transaction of three round trips (the `BEGIN` batch, one
/// simple-query message; one statement with `$n` placeholders; `COMMIT`), or, for a
/// one-statement operation on a direct connection, the statement alone (no `begin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceTransaction {
    /// The commands of the `BEGIN` batch, in order; empty when the statement runs alone in
    /// autocommit, with no `COMMIT` either.
    pub begin: Vec<String>,
    /// The operation's statement.
    pub statement: String,
}

/// The transactions of Put, PutWrites (ordinary channels), GetTuple (latest of a namespace)
/// and List (the latest `list_limit` of one thread and namespace).
#[derive(Debug, Clone)]
pub struct ReferenceSql {
    /// Put: the statement alone.
    pub put: ReferenceTransaction,
    /// PutWrites of ordinary channels: the statement alone.
    pub put_writes: ReferenceTransaction,
    /// GetTuple of a namespace's latest checkpoint: the statement alone.
    pub get_tuple: ReferenceTransaction,
    /// One List page, in a read-only transaction.
    pub list: ReferenceTransaction,
}

impl ReferenceSql {
    /// The statements as the store sends them with these session limits, on a connection that
    /// keeps its prepared statements (Put, PutWrites and GetTuple then run alone).
    pub fn new(statement_timeout: Duration, idle_in_transaction_timeout: Duration, list_limit: u64) -> Self {
        let limits = TransactionLimits { statement_timeout, idle_in_transaction_timeout };
        let begin = |access| {
            begin_sql(access, limits, limits.statement_timeout).split("; ").map(str::to_owned).collect::<Vec<_>>()
        };
        let query = ListQuery {
            thread_id: Some(String::new()),
            checkpoint_ns: Some(String::new()),
            limit: Some(list_limit),
            ..ListQuery::default()
        };
        let list_page = ListSelect { query: &query, after: None, limit: Some(list_limit) }.select();
        Self {
            put: ReferenceTransaction { begin: Vec::new(), statement: ops::PUT_SQL.to_owned() },
            put_writes: ReferenceTransaction {
                begin: Vec::new(),
                statement: ops::put_writes_sql(WriteConflict::Ignore).to_owned(),
            },
            get_tuple: ReferenceTransaction { begin: Vec::new(), statement: ops::GET_LATEST_SQL.clone() },
            list: ReferenceTransaction { begin: begin(Access::ReadOnly), statement: list_page.sql().to_owned() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> ReferenceSql {
        ReferenceSql::new(Duration::from_secs(30), Duration::from_secs(60), 10)
    }

    #[test]
    fn one_statement_operations_run_alone_and_a_list_page_in_a_read_only_transaction() {
        let sql = reference();
        assert!(sql.put.begin.is_empty() && sql.put_writes.begin.is_empty() && sql.get_tuple.begin.is_empty());
        assert_eq!(sql.list.begin[0], "BEGIN READ ONLY");
        assert!(sql.list.begin[1].starts_with("SET LOCAL statement_timeout = "));
    }

    #[test]
    fn the_list_page_binds_thread_namespace_and_limit() {
        let sql = reference().list.statement;
        assert!(
            sql.contains("WHERE thread_id = $1 AND checkpoint_ns = $2 ORDER BY checkpoint_id DESC LIMIT $3"),
            "{sql}"
        );
        assert!(!sql.contains("$4"));
    }
}
