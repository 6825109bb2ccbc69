//! Prune: LangGraph 3.2.0's `delete` and `keep_latest` strategies, statement for statement.
//!
//! keep_latest runs one REPEATABLE READ transaction per thread, so whatever a run saves
//! meanwhile is neither seen nor deleted. Statements look rows up by key (`= ANY`, `<> ALL`)
//! rather than joining a thread's rows with each other, as LangGraph's do.

use std::collections::{BTreeMap, BTreeSet};

use diesel::QueryResult;
use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

const DELETE_THREADS_SQL: &str = r#"WITH deleted_checkpoints AS (
    DELETE FROM checkpoints WHERE thread_id = ANY($1)
), deleted_blobs AS (
    DELETE FROM checkpoint_blobs WHERE thread_id = ANY($1)
)
DELETE FROM checkpoint_writes WHERE thread_id = ANY($1)"#;

/// A DeltaChannel leaves update counters in metadata, or an inline `true` marker with a blob
/// behind it; LangGraph.js marks its DeltaChannel threads with `delta_writes_versioned`.
const DELTA_THREADS_SQL: &str = r#"SELECT thread_id FROM checkpoints
WHERE thread_id = ANY($1) AND (
    metadata ? 'counters_since_delta_snapshot'
    OR metadata ? 'delta_writes_versioned'
)
UNION
SELECT c.thread_id
FROM checkpoints c
CROSS JOIN LATERAL jsonb_each(c.checkpoint -> 'channel_values') AS v
CROSS JOIN LATERAL (
    SELECT 1 FROM checkpoint_blobs b
    WHERE b.thread_id = c.thread_id
    AND b.checkpoint_ns = c.checkpoint_ns
    AND b.channel = v.key
    AND b.version = c.checkpoint -> 'channel_versions' ->> v.key
    LIMIT 1
) AS snapshot
WHERE c.thread_id = ANY($1) AND v.value = 'true'::jsonb"#;

/// Per namespace: the latest checkpoint, the parent its pending sends live on (before v4), and
/// the root checkpoint a subgraph call started from, with whether that one is saved.
const HEADS_SQL: &str = r#"SELECT
    h.checkpoint_ns,
    h.checkpoint_id AS head,
    CASE WHEN (c.checkpoint ->> 'v')::int < 4 AND EXISTS (
        SELECT 1 FROM checkpoint_writes w
        WHERE w.thread_id = $1
        AND w.checkpoint_ns = h.checkpoint_ns
        AND w.checkpoint_id = c.parent_checkpoint_id
        AND w.channel = '__pregel_tasks'
    ) THEN c.parent_checkpoint_id END AS sends_parent,
    c.metadata -> 'parents' ->> '' AS root,
    EXISTS (
        SELECT 1 FROM checkpoints r
        WHERE r.thread_id = $1 AND r.checkpoint_ns = ''
        AND r.checkpoint_id = c.metadata -> 'parents' ->> ''
    ) AS root_saved
FROM (
    SELECT DISTINCT ON (checkpoint_ns) checkpoint_ns, checkpoint_id
    FROM checkpoints
    WHERE thread_id = $1
    ORDER BY checkpoint_ns DESC, checkpoint_id DESC
) AS h
CROSS JOIN LATERAL (
    SELECT checkpoint, parent_checkpoint_id, metadata FROM checkpoints
    WHERE thread_id = $1
    AND checkpoint_ns = h.checkpoint_ns
    AND checkpoint_id = h.checkpoint_id
) AS c"#;

const DELETE_CALLS_SQL: &str = r#"WITH deleted_checkpoints AS (
    DELETE FROM checkpoints WHERE thread_id = $1 AND checkpoint_ns = ANY($2)
), deleted_writes AS (
    DELETE FROM checkpoint_writes WHERE thread_id = $1 AND checkpoint_ns = ANY($2)
)
DELETE FROM checkpoint_blobs WHERE thread_id = $1 AND checkpoint_ns = ANY($2)"#;

/// Writes go by the checkpoints deleted: a run can save writes before their checkpoint.
const DELETE_UNKEPT_WRITES_SQL: &str = r#"DELETE FROM checkpoint_writes
WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id IN (
    SELECT checkpoint_id FROM checkpoints
    WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id <> ALL($3)
)"#;

const DELETE_UNKEPT_SQL: &str = r#"WITH deleted AS (
    DELETE FROM checkpoints
    WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id <> ALL($3)
    RETURNING checkpoint -> 'channel_versions' AS versions
)
SELECT DISTINCT v.key AS channel, v.value AS version
FROM deleted
CROSS JOIN LATERAL jsonb_each_text(deleted.versions) AS v"#;

const NULL_DANGLING_PARENTS_SQL: &str = r#"UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id = $1 AND checkpoint_ns = $2
AND checkpoint_id = ANY($3) AND parent_checkpoint_id <> ALL($3)"#;

const REFERENCED_BLOBS_SQL: &str = r#"SELECT DISTINCT v.key AS channel, v.value AS version
FROM checkpoints c
CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = $1 AND c.checkpoint_ns = $2"#;

const DELETE_BLOBS_SQL: &str = r#"DELETE FROM checkpoint_blobs
WHERE thread_id = $1 AND checkpoint_ns = $2 AND channel = $3 AND version = ANY($4)"#;

/// Deletes whole threads (strategy `delete`).
pub(crate) struct PruneDeleteOp<'a>(pub(crate) &'a [String]);

impl Operation for PruneDeleteOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "prune"
    }

    fn db_operation(&self) -> &'static str {
        "DELETE"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let statement = Statement::new(DELETE_THREADS_SQL).bind::<Array<Text>, _>(self.0);
        statement.execute_on(conn)
    }
}

#[derive(Debug, diesel::QueryableByName)]
struct ThreadRow {
    #[diesel(sql_type = Text)]
    thread_id: String,
}

/// Finds the threads that use a DeltaChannel, which keep_latest must not prune.
pub(crate) struct RefuseDeltaThreadsOp<'a>(pub(crate) &'a [String]);

impl Operation for RefuseDeltaThreadsOp<'_> {
    type Output = Vec<String>;

    fn name(&self) -> &'static str {
        "prune"
    }

    fn db_operation(&self) -> &'static str {
        "SELECT"
    }

    fn access(&self) -> Access {
        Access::ReadOnly
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<Vec<String>>> {
        async move { delta_threads(conn, self.0).await }.boxed()
    }
}

async fn delta_threads(conn: &mut AsyncPgConnection, thread_ids: &[String]) -> QueryResult<Vec<String>> {
    let rows: Vec<ThreadRow> = Statement::new(DELTA_THREADS_SQL).bind::<Array<Text>, _>(thread_ids).load(conn).await?;
    let mut threads: Vec<String> = rows.into_iter().map(|r| r.thread_id).collect();
    threads.sort();
    threads.dedup();
    Ok(threads)
}

/// The latest checkpoint of one namespace, as `HEADS_SQL` reads it.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub(crate) struct Head {
    #[diesel(sql_type = Text)]
    pub(crate) checkpoint_ns: String,
    #[diesel(sql_type = Text)]
    pub(crate) head: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) sends_parent: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) root: Option<String>,
    #[diesel(sql_type = Bool)]
    pub(crate) root_saved: bool,
}

/// What keep_latest keeps per namespace, and which subgraph-call namespaces it drops whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeepPlan {
    pub(crate) kept: BTreeMap<String, Vec<String>>,
    pub(crate) calls: BTreeSet<String>,
}

/// LangGraph's rule: keep each namespace's head (and its sends parent). A subgraph call's
/// namespace (a task id after ":") goes with the root checkpoint it started from, once that one
/// is saved and not kept.
pub(crate) fn plan_keep_latest(heads: &[Head]) -> KeepPlan {
    let kept: BTreeMap<String, Vec<String>> = heads
        .iter()
        .map(|h| {
            let ids = std::iter::once(h.head.clone()).chain(h.sends_parent.clone()).filter(|id| !id.is_empty());
            (h.checkpoint_ns.clone(), ids.collect())
        })
        .collect();
    let root_kept = kept.get("").cloned().unwrap_or_default();
    let calls = heads
        .iter()
        .filter(|h| h.checkpoint_ns.contains(':') && h.root_saved)
        .filter(|h| !h.root.as_ref().is_some_and(|root| root_kept.contains(root)))
        .map(|h| h.checkpoint_ns.clone())
        .collect();
    KeepPlan { kept, calls }
}

/// The outcome of keep_latest for one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepLatestOutcome {
    /// The thread was pruned.
    Pruned,
    /// The thread started using a DeltaChannel; nothing was changed.
    UsesDeltaChannel,
}

/// Keeps the latest checkpoint of every namespace of one thread.
pub(crate) struct PruneKeepLatestOp<'a>(pub(crate) &'a str);

impl Operation for PruneKeepLatestOp<'_> {
    type Output = KeepLatestOutcome;

    fn name(&self) -> &'static str {
        "prune"
    }

    fn db_operation(&self) -> &'static str {
        "DELETE"
    }

    fn access(&self) -> Access {
        Access::Snapshot
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<KeepLatestOutcome>> {
        async move { keep_latest(conn, self.0).await }.boxed()
    }
}

async fn keep_latest(conn: &mut AsyncPgConnection, thread_id: &str) -> QueryResult<KeepLatestOutcome> {
    let heads: Vec<Head> = Statement::new(HEADS_SQL).bind::<Text, _>(thread_id).load(conn).await?;
    if !delta_threads(conn, &[thread_id.to_owned()]).await?.is_empty() {
        return Ok(KeepLatestOutcome::UsesDeltaChannel);
    }
    let plan = plan_keep_latest(&heads);
    if !plan.calls.is_empty() {
        let calls: Vec<&str> = plan.calls.iter().map(String::as_str).collect();
        Statement::new(DELETE_CALLS_SQL).bind::<Text, _>(thread_id).bind::<Array<Text>, _>(calls).execute(conn).await?;
    }
    for (ns, ids) in plan.kept.iter().filter(|(ns, _)| !plan.calls.contains(*ns)) {
        prune_namespace(conn, thread_id, ns, ids).await?;
    }
    Ok(KeepLatestOutcome::Pruned)
}

#[derive(Debug, diesel::QueryableByName)]
struct BlobKey {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    version: String,
}

async fn prune_namespace(conn: &mut AsyncPgConnection, thread_id: &str, ns: &str, kept: &[String]) -> QueryResult<()> {
    let scoped = |sql: &'static str| Statement::new(sql).bind::<Text, _>(thread_id).bind::<Text, _>(ns);
    scoped(DELETE_UNKEPT_WRITES_SQL).bind::<Array<Text>, _>(kept).execute(conn).await?;
    let freed: Vec<BlobKey> = scoped(DELETE_UNKEPT_SQL).bind::<Array<Text>, _>(kept).load(conn).await?;
    scoped(NULL_DANGLING_PARENTS_SQL).bind::<Array<Text>, _>(kept).execute(conn).await?;
    if freed.is_empty() {
        return Ok(());
    }
    let referenced: Vec<BlobKey> = scoped(REFERENCED_BLOBS_SQL).load(conn).await?;
    for (channel, versions) in garbage_blobs(freed, referenced) {
        scoped(DELETE_BLOBS_SQL).bind::<Text, _>(channel).bind::<Array<Text>, _>(versions).execute(conn).await?;
    }
    Ok(())
}

/// Blobs a deleted checkpoint used and no kept one does, by channel.
fn garbage_blobs(freed: Vec<BlobKey>, referenced: Vec<BlobKey>) -> BTreeMap<String, Vec<String>> {
    let kept: BTreeSet<(String, String)> = referenced.into_iter().map(|k| (k.channel, k.version)).collect();
    let mut garbage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in freed {
        if !kept.contains(&(key.channel.clone(), key.version.clone())) {
            garbage.entry(key.channel).or_default().push(key.version);
        }
    }
    garbage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ns: &str, id: &str, sends_parent: Option<&str>, root: Option<&str>, root_saved: bool) -> Head {
        Head {
            checkpoint_ns: ns.into(),
            head: id.into(),
            sends_parent: sends_parent.map(Into::into),
            root: root.map(Into::into),
            root_saved,
        }
    }

    #[test]
    fn keeps_each_head_and_its_sends_parent() {
        let plan = plan_keep_latest(&[head("", "c3", Some("c2"), None, false), head("inner", "i1", None, None, false)]);
        assert_eq!(plan.kept[""], vec!["c3", "c2"]);
        assert_eq!(plan.kept["inner"], vec!["i1"]);
        assert!(plan.calls.is_empty());
    }

    #[test]
    fn a_call_started_from_a_deleted_saved_root_goes_whole() {
        let plan =
            plan_keep_latest(&[head("", "c3", None, None, false), head("child:t1", "x", None, Some("c1"), true)]);
        assert_eq!(plan.calls, BTreeSet::from(["child:t1".to_string()]));
    }

    #[test]
    fn a_call_from_the_kept_root_or_an_unsaved_root_stays() {
        let plan = plan_keep_latest(&[
            head("", "c3", None, None, false),
            head("child:t1", "x", None, Some("c3"), true),
            head("child:t2", "y", None, Some("c9"), false),
            head("persistent", "z", None, Some("c1"), true),
        ]);
        assert!(plan.calls.is_empty(), "{plan:?}");
    }

    #[test]
    fn garbage_is_what_was_freed_and_is_not_referenced() {
        let key = |c: &str, v: &str| BlobKey { channel: c.into(), version: v.into() };
        let garbage = garbage_blobs(vec![key("a", "1"), key("a", "2"), key("b", "1")], vec![key("a", "2")]);
        assert_eq!(garbage, BTreeMap::from([("a".into(), vec!["1".into()]), ("b".into(), vec!["1".into()])]));
    }
}
