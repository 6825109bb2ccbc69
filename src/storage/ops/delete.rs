//! DeleteThread and DeleteForRuns.

use diesel::QueryResult;
use diesel::sql_types::{Array, Text};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// All three tables, every namespace, one statement.
const DELETE_THREAD_SQL: &str = r#"WITH deleted_checkpoints AS (
    DELETE FROM checkpoints WHERE thread_id = $1
), deleted_blobs AS (
    DELETE FROM checkpoint_blobs WHERE thread_id = $1
)
DELETE FROM checkpoint_writes WHERE thread_id = $1"#;

/// Removes a thread entirely.
pub(crate) struct DeleteThreadOp<'a>(pub(crate) &'a str);

impl Operation for DeleteThreadOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "delete_thread"
    }

    fn db_operation(&self) -> &'static str {
        "DELETE"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn is_one_statement(&self) -> bool {
        true
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let statement = Statement::new(DELETE_THREAD_SQL).bind::<Text, _>(self.0);
        statement.execute_on(conn)
    }
}

/// The checkpoints of the runs go with their writes; a surviving checkpoint whose parent went
/// loses its parent link (as Prune does), and blobs no surviving checkpoint of the namespace
/// refers to are removed. Every sub-statement sees the same snapshot, so survivors are told
/// apart by their run id rather than by the deletion. The run's checkpoints are found through
/// the run-id index and their children one thread at a time (`OFFSET 0` keeps that lookup per
/// thread instead of letting the planner hash the whole table).
const DELETE_FOR_RUNS_SQL: &str = r#"WITH doomed AS (
    DELETE FROM checkpoints
    WHERE metadata ->> 'run_id' = ANY($1)
      AND ($2::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest($2::text[]) AS p(prefix) WHERE starts_with(thread_id, p.prefix)))
    RETURNING thread_id, checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions' AS versions
), deleted_writes AS (
    DELETE FROM checkpoint_writes w USING doomed d
    WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns AND w.checkpoint_id = d.checkpoint_id
), orphaned AS (
    UPDATE checkpoints k SET parent_checkpoint_id = NULL
    FROM (SELECT DISTINCT thread_id, checkpoint_ns FROM doomed) t CROSS JOIN LATERAL (
        SELECT c.checkpoint_id FROM checkpoints c
        WHERE c.thread_id = t.thread_id AND c.checkpoint_ns = t.checkpoint_ns
          AND c.parent_checkpoint_id IN (
              SELECT d.checkpoint_id FROM doomed d WHERE d.thread_id = t.thread_id AND d.checkpoint_ns = t.checkpoint_ns
          )
          AND (c.metadata ->> 'run_id' = ANY($1)) IS NOT TRUE
        OFFSET 0
    ) child
    WHERE k.thread_id = t.thread_id AND k.checkpoint_ns = t.checkpoint_ns AND k.checkpoint_id = child.checkpoint_id
), freed AS (
    SELECT DISTINCT d.thread_id, d.checkpoint_ns, v.key AS channel, v.value AS version
    FROM doomed d CROSS JOIN LATERAL jsonb_each_text(d.versions) AS v
    WHERE jsonb_typeof(d.versions) = 'object'
)
DELETE FROM checkpoint_blobs b USING freed f
WHERE b.thread_id = f.thread_id AND b.checkpoint_ns = f.checkpoint_ns
  AND b.channel = f.channel AND b.version = f.version
  AND NOT EXISTS (
      SELECT 1 FROM checkpoints k
      WHERE k.thread_id = f.thread_id AND k.checkpoint_ns = f.checkpoint_ns
        AND k.checkpoint -> 'channel_versions' ->> f.channel = f.version
        AND (k.metadata ->> 'run_id' = ANY($1)) IS NOT TRUE
  )"#;

/// Removes the checkpoints of some runs (within the caller's threads, when scoped).
pub(crate) struct DeleteForRunsOp<'a>(pub(crate) &'a crate::domain::DeleteForRuns);

impl Operation for DeleteForRunsOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "delete_for_runs"
    }

    fn db_operation(&self) -> &'static str {
        "DELETE"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let statement = Statement::new(DELETE_FOR_RUNS_SQL)
            .bind::<Array<Text>, _>(&self.0.run_ids)
            .bind::<diesel::sql_types::Nullable<Array<Text>>, _>(self.0.thread_prefixes.as_deref());
        statement.execute_on(conn)
    }
}
