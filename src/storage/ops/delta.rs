//! GetDeltaChannelHistory: walk a checkpoint's ancestors for each channel's seed, then fetch the
//! writes along each walk and the seeds, in one snapshot.
//!
//! As LangGraph's Postgres saver does it, in two statements: the chain of ancestors from the target,
//! saying per channel its version, whether a blob is stored at that version and its inline value,
//! read until every channel has its seed or the chain ends (one recursive query, where LangGraph
//! reads pages of the whole namespace); then one statement returns the walks' writes and the seed
//! blobs.

use std::collections::HashMap;

use diesel::QueryResult;
use diesel::sql_types::{Array, Bool, Bytea, Int4, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::domain::{DeltaChannelHistory, DeltaHistoryQuery, DeltaSeed, PendingWrite, TypedValue};
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// What one checkpoint of the walk says about each requested channel (`$4`), in request order:
/// its version, whether a blob is stored at that version, its inline value, and whether the
/// channel's walk has ended here or below (`prior` is the ended flags of the child).
/// `OFFSET 0` keeps `x` a subquery of its own, so each row's blob probe and inline value are
/// computed once: pulled up, they were computed again for `ended` (twice the index lookups; the
/// walk of 150 checkpoints took 4.6 ms to execute, 2.3 ms with it).
fn channel_info(prior: &str) -> String {
    format!(
        r#"CROSS JOIN LATERAL (
    SELECT array_agg(x.version ORDER BY x.i) AS versions,
           array_agg(x.has_blob ORDER BY x.i) AS has_blob,
           array_agg(x.inline ORDER BY x.i) AS inline,
           array_agg({prior} OR x.has_blob OR coalesce(x.inline <> 'null', false) ORDER BY x.i) AS ended
    FROM (
        SELECT ch.i::int AS i, c.checkpoint -> 'channel_versions' ->> ch.name AS version,
               EXISTS (
                   SELECT 1 FROM checkpoint_blobs b
                   WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = ch.name
                     AND b.version = c.checkpoint -> 'channel_versions' ->> ch.name AND b.type <> 'empty'
               ) AS has_blob,
               (c.checkpoint -> 'channel_values' -> ch.name)::text AS inline
        FROM unnest($4::text[]) WITH ORDINALITY AS ch(name, i)
        OFFSET 0
    ) AS x
) AS info"#
    )
}

/// The walk as one recursive query: the target (`$3`, or the namespace's latest), then parent
/// after parent while some channel's walk is still open. Only the chain is read, never the rest of
/// the thread. A parent must be older than its child (LangGraph's ids are time-ordered), which
/// also ends a walk over parents that form a cycle. `LIMIT 1` keeps each parent a lookup by key:
/// joined plainly, a thread the statistics do not know yet is planned as one row and every step
/// scanned the whole thread; `ORDER BY … LIMIT 1` rather than `max()` for the same reason.
fn walk_sql() -> String {
    let base = channel_info("false");
    let step = channel_info("w.ended[x.i]");
    format!(
        r#"WITH RECURSIVE walk AS (
    SELECT c.checkpoint_id, c.parent_checkpoint_id, 0 AS depth,
           info.versions, info.has_blob, info.inline,
           array_fill(false, ARRAY[cardinality($4::text[])]) AS ended
    FROM checkpoints c
    {base}
    WHERE c.thread_id = $1 AND c.checkpoint_ns = $2
      AND c.checkpoint_id = coalesce($3, (
          SELECT checkpoint_id FROM checkpoints WHERE thread_id = $1 AND checkpoint_ns = $2
          ORDER BY checkpoint_id DESC LIMIT 1))
    UNION ALL
    SELECT c.checkpoint_id, c.parent_checkpoint_id, w.depth + 1,
           info.versions, info.has_blob, info.inline, info.ended
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT p.thread_id, p.checkpoint_ns, p.checkpoint_id, p.parent_checkpoint_id, p.checkpoint
        FROM checkpoints p
        WHERE p.thread_id = $1 AND p.checkpoint_ns = $2 AND p.checkpoint_id = w.parent_checkpoint_id
          AND p.checkpoint_id < w.checkpoint_id
        LIMIT 1
    ) AS c
    {step}
    WHERE false = ANY(w.ended)
)
SELECT checkpoint_id, versions, has_blob, inline FROM walk ORDER BY depth"#
    )
}

/// The writes of each walk (pairs of checkpoint and channel) and the seed blobs (pairs of
/// channel and version), each a lookup by key (`OFFSET 0` keeps the planner from joining a whole
/// thread it has no statistics for yet).
const HISTORY_SQL: &str = r#"SELECT 'w' AS kind, cw.channel, cw.checkpoint_id, cw.task_id, cw.task_path, cw.idx,
       cw.type, cw.blob, NULL::text AS version
FROM unnest($3::text[], $4::text[]) AS want(checkpoint_id, channel)
CROSS JOIN LATERAL (
    SELECT * FROM checkpoint_writes w
    WHERE w.thread_id = $1 AND w.checkpoint_ns = $2 AND w.checkpoint_id = want.checkpoint_id
      AND w.channel = want.channel
    OFFSET 0
) AS cw
UNION ALL
SELECT 'b', bl.channel, NULL, NULL, NULL, NULL, bl.type, bl.blob, bl.version
FROM unnest($5::text[], $6::text[]) AS seed(channel, version)
CROSS JOIN LATERAL (
    SELECT * FROM checkpoint_blobs b
    WHERE b.thread_id = $1 AND b.checkpoint_ns = $2 AND b.channel = seed.channel AND b.version = seed.version
    OFFSET 0
) AS bl"#;

/// One checkpoint of the walk (the target first, then its ancestors in order), with one entry per
/// requested channel in each array.
#[derive(Debug, diesel::QueryableByName)]
struct WalkRow {
    #[diesel(sql_type = Text)]
    checkpoint_id: String,
    #[diesel(sql_type = Array<Nullable<Text>>)]
    versions: Vec<Option<String>>,
    #[diesel(sql_type = Array<Bool>)]
    has_blob: Vec<bool>,
    #[diesel(sql_type = Array<Nullable<Text>>)]
    inline: Vec<Option<String>>,
}

/// A write along a walk (`kind` 'w') or a seed blob (`kind` 'b').
#[derive(Debug, diesel::QueryableByName)]
struct HistoryRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Nullable<Text>)]
    checkpoint_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    task_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    task_path: Option<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    idx: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    r#type: Option<String>,
    #[diesel(sql_type = Nullable<Bytea>)]
    blob: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
}

impl WalkRow {
    /// The inline value of channel `i`, unless absent or JSON null.
    fn inline_value(&self, i: usize) -> Option<&str> {
        self.inline.get(i).and_then(Option::as_deref).filter(|v| *v != "null")
    }
}

/// Where one channel's walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seed {
    /// A blob at this version.
    Blob(String),
    /// An inline JSON value.
    Inline(String),
}

/// One channel's walk: the checkpoints visited, newest first, and its seed.
#[derive(Debug, Clone, Default)]
struct ChannelWalk {
    chain: Vec<String>,
    seed: Option<Seed>,
}

/// Channel `i`'s walk over `ancestors` (the target's parent first, as the walk query returns
/// them): it ends at the first checkpoint that stores a value for the channel, or with the chain.
fn walk_channel(ancestors: &[WalkRow], i: usize) -> ChannelWalk {
    let mut walk = ChannelWalk::default();
    for row in ancestors {
        walk.chain.push(row.checkpoint_id.clone());
        let version = row.versions.get(i).cloned().flatten();
        // A blob wins: for a delta snapshot the inline reading is only a marker.
        if row.has_blob.get(i).copied().unwrap_or(false) {
            walk.seed = version.map(Seed::Blob);
            break;
        }
        if let Some(value) = row.inline_value(i) {
            // As LangGraph's saver: the walk ends at any inline value, but the value seeds only
            // when the checkpoint has a version for the channel.
            walk.seed = version.map(|_| Seed::Inline(value.to_owned()));
            break;
        }
    }
    walk
}

/// Reads the delta history of some channels.
pub(crate) struct DeltaHistoryOp<'a>(pub(crate) &'a DeltaHistoryQuery);

impl DeltaHistoryOp<'_> {
    /// Walks the ancestors in one query, one walk per channel; `None` when the target does not
    /// exist.
    async fn walk(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<Vec<ChannelWalk>>> {
        let query = self.0;
        let rows: Vec<WalkRow> = Statement::new(walk_sql())
            .bind::<Text, _>(&query.thread_id)
            .bind::<Text, _>(&query.checkpoint_ns)
            .bind::<Nullable<Text>, _>(query.checkpoint_id.clone())
            .bind::<Array<Text>, _>(&query.channels)
            .load(conn)
            .await?;
        let Some((_target, ancestors)) = rows.split_first() else {
            return Ok(None);
        };
        Ok(Some((0..query.channels.len()).map(|i| walk_channel(ancestors, i)).collect()))
    }

    /// The writes and seed blobs of the walks, assembled per channel.
    async fn history(
        &self,
        conn: &mut AsyncPgConnection,
        walks: Vec<ChannelWalk>,
    ) -> QueryResult<Vec<DeltaChannelHistory>> {
        let query = self.0;
        let mut want_checkpoints = Vec::new();
        let mut want_channels = Vec::new();
        let mut seed_channels = Vec::new();
        let mut seed_versions = Vec::new();
        for (channel, walk) in query.channels.iter().zip(&walks) {
            for id in &walk.chain {
                want_checkpoints.push(id.clone());
                want_channels.push(channel.clone());
            }
            if let Some(Seed::Blob(version)) = &walk.seed {
                seed_channels.push(channel.clone());
                seed_versions.push(version.clone());
            }
        }
        let rows: Vec<HistoryRow> = if want_checkpoints.is_empty() && seed_channels.is_empty() {
            Vec::new()
        } else {
            Statement::new(HISTORY_SQL)
                .bind::<Text, _>(&query.thread_id)
                .bind::<Text, _>(&query.checkpoint_ns)
                .bind::<Array<Text>, _>(want_checkpoints)
                .bind::<Array<Text>, _>(want_channels)
                .bind::<Array<Text>, _>(seed_channels)
                .bind::<Array<Text>, _>(seed_versions)
                .load(conn)
                .await?
        };
        Ok(assemble(&query.channels, walks, rows))
    }
}

/// Per channel: the writes of its walk, oldest checkpoint first and in write order within each,
/// and its seed.
fn assemble(channels: &[String], walks: Vec<ChannelWalk>, rows: Vec<HistoryRow>) -> Vec<DeltaChannelHistory> {
    let mut writes: HashMap<(String, String), Vec<PendingWrite>> = HashMap::new();
    let mut blobs: HashMap<(String, String), TypedValue> = HashMap::new();
    for row in rows {
        let value = TypedValue { type_tag: row.r#type.unwrap_or_default(), data: row.blob };
        if row.kind == "b" {
            blobs.insert((row.channel, row.version.unwrap_or_default()), value);
            continue;
        }
        let write = PendingWrite {
            task_id: row.task_id.unwrap_or_default(),
            channel: row.channel.clone(),
            value,
            task_path: row.task_path.unwrap_or_default(),
            idx: row.idx.unwrap_or_default(),
        };
        writes.entry((row.channel, row.checkpoint_id.unwrap_or_default())).or_default().push(write);
    }
    channels
        .iter()
        .zip(walks)
        .map(|(channel, walk)| {
            let mut history = Vec::new();
            for id in walk.chain.iter().rev() {
                let mut at = writes.remove(&(channel.clone(), id.clone())).unwrap_or_default();
                at.sort_by(|a, b| (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx)));
                history.extend(at);
            }
            let seed = match walk.seed {
                Some(Seed::Blob(version)) => blobs
                    .remove(&(channel.clone(), version))
                    .filter(|blob| blob.type_tag != "empty")
                    .map(DeltaSeed::Blob),
                Some(Seed::Inline(json)) => Some(DeltaSeed::Inline(json)),
                None => None,
            };
            DeltaChannelHistory { channel: channel.clone(), writes: history, seed }
        })
        .collect()
}

/// Every channel with no writes and no seed: the target does not exist.
fn empty_histories(channels: &[String]) -> Vec<DeltaChannelHistory> {
    channels
        .iter()
        .map(|channel| DeltaChannelHistory { channel: channel.clone(), writes: Vec::new(), seed: None })
        .collect()
}

impl Operation for DeltaHistoryOp<'_> {
    type Output = Vec<DeltaChannelHistory>;

    fn name(&self) -> &'static str {
        "get_delta_channel_history"
    }

    fn db_operation(&self) -> &'static str {
        "SELECT"
    }

    fn access(&self) -> Access {
        Access::Snapshot
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<Self::Output>> {
        async move {
            match self.walk(conn).await? {
                Some(walks) => self.history(conn, walks).await,
                None => Ok(empty_histories(&self.0.channels)),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, blob: bool, inline: Option<&str>) -> WalkRow {
        WalkRow {
            checkpoint_id: id.into(),
            versions: vec![Some(format!("v-{id}"))],
            has_blob: vec![blob],
            inline: vec![inline.map(Into::into)],
        }
    }

    /// The walk of the only channel from `rows[0]`, the target, over its ancestors.
    fn walk(rows: Vec<WalkRow>, target: &str) -> ChannelWalk {
        assert_eq!(rows[0].checkpoint_id, target);
        walk_channel(&rows[1..], 0)
    }

    #[test]
    fn the_walk_starts_at_the_parent_and_ends_at_the_first_stored_value() {
        let rows =
            vec![row("c4", true, None), row("c3", false, None), row("c2", true, Some("true")), row("c1", true, None)];
        let walk = walk(rows, "c4");
        assert_eq!(walk.chain, ["c3", "c2"]);
        assert_eq!(walk.seed, Some(Seed::Blob("v-c2".into())), "a blob wins over the inline marker");
    }

    #[test]
    fn an_inline_null_is_no_value_and_a_root_ends_the_walk_without_a_seed() {
        let rows = vec![row("c3", false, None), row("c2", false, Some("null")), row("c1", false, None)];
        let walk = walk(rows, "c3");
        assert_eq!(walk.chain, ["c2", "c1"]);
        assert_eq!(walk.seed, None);
    }

    #[test]
    fn an_inline_primitive_is_a_seed() {
        let walk = walk(vec![row("c2", false, None), row("c1", false, Some("7"))], "c2");
        assert_eq!(walk.seed, Some(Seed::Inline("7".into())));
    }

    #[test]
    fn an_inline_value_without_a_version_ends_the_walk_without_a_seed() {
        let mut unversioned = row("c1", false, Some("\"hello\""));
        unversioned.versions = vec![None];
        let walk = walk(vec![row("c2", false, None), unversioned], "c2");
        assert_eq!(walk.chain, ["c1"]);
        assert_eq!(walk.seed, None);
    }

    #[test]
    fn writes_come_oldest_checkpoint_first_in_write_order() {
        let channels = vec!["m".to_owned()];
        let walks = vec![ChannelWalk { chain: vec!["c3".into(), "c2".into()], ..Default::default() }];
        let write = |checkpoint: &str, task: &str, idx: i32| HistoryRow {
            kind: "w".into(),
            channel: "m".into(),
            checkpoint_id: Some(checkpoint.into()),
            task_id: Some(task.into()),
            task_path: Some(String::new()),
            idx: Some(idx),
            r#type: Some("msgpack".into()),
            blob: Some(vec![]),
            version: None,
        };
        let rows = vec![write("c3", "a", 0), write("c2", "b", 1), write("c2", "b", 0), write("c2", "a", 0)];
        let history = assemble(&channels, walks, rows);
        let order: Vec<(String, i32)> = history[0].writes.iter().map(|w| (w.task_id.clone(), w.idx)).collect();
        assert_eq!(order, [("a".into(), 0), ("b".into(), 0), ("b".into(), 1), ("a".into(), 0)]);
    }
}
