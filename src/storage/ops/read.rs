//! Reading checkpoints back: the row shape shared by GetTuple and List, and GetTuple itself.
//!
//! One statement per page of checkpoints returns each row with its blob values, its pending
//! writes and (for pre-v4 documents) its parent's pending sends, as parallel arrays.

use std::sync::LazyLock;

use diesel::QueryResult;
use diesel::sql_types::{Array, Bytea, Int4, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::domain::{ChannelBlob, CheckpointConfig, CheckpointTuple, GetTuple, PendingWrite, TypedValue};
use crate::storage::json::StoredJson;
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// The columns selected from `checkpoints` by every page query.
pub(crate) const CHECKPOINT_COLUMNS: &str =
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata";

/// Wraps a page query (which selects [`CHECKPOINT_COLUMNS`]) so each row also carries its blobs,
/// writes and legacy sends; `order` repeats the page's ORDER BY for the outer query.
///
/// Each blob is fetched by its primary key: `LIMIT 1` (the key is unique) keeps the planner from
/// flattening the lookup into a hash of every blob of the thread, which made reading the latest
/// checkpoint of a long thread cost time in proportion to the thread's length.
///
/// Writes are ordered `COLLATE "C"` (code point order, as LangGraph's Python sort); legacy
/// sends use the database collation, as LangGraph's own SQL does.
pub(crate) fn tuple_query(page: &str, order: &str) -> String {
    format!(
        r#"SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata,
       b.channels AS blob_channels, b.versions AS blob_versions, b.types AS blob_types, b.data AS blob_data,
       w.task_ids AS write_task_ids, w.channels AS write_channels, w.types AS write_types,
       w.data AS write_data, w.task_paths AS write_task_paths, w.idxs AS write_idxs,
       s.types AS send_types, s.data AS send_data
FROM ({page}) AS c
LEFT JOIN LATERAL (
    SELECT array_agg(bl.channel ORDER BY bl.channel) AS channels,
           array_agg(bl.version ORDER BY bl.channel) AS versions,
           array_agg(bl.type ORDER BY bl.channel) AS types,
           array_agg(bl.blob ORDER BY bl.channel) AS data
    FROM jsonb_each_text(c.checkpoint -> 'channel_versions') AS cv
    CROSS JOIN LATERAL (
        SELECT bl.channel, bl.version, bl.type, bl.blob FROM checkpoint_blobs bl
        WHERE bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns
          AND bl.channel = cv.key AND bl.version = cv.value
        LIMIT 1
    ) AS bl
) AS b ON true
LEFT JOIN LATERAL (
    SELECT array_agg(cw.task_id ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS task_ids,
           array_agg(cw.channel ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS channels,
           array_agg(cw.type ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS types,
           array_agg(cw.blob ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS data,
           array_agg(cw.task_path ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS task_paths,
           array_agg(cw.idx ORDER BY cw.task_path COLLATE "C", cw.task_id COLLATE "C", cw.idx) AS idxs
    FROM checkpoint_writes cw
    WHERE cw.thread_id = c.thread_id AND cw.checkpoint_ns = c.checkpoint_ns AND cw.checkpoint_id = c.checkpoint_id
) AS w ON true
LEFT JOIN LATERAL (
    SELECT array_agg(sw.type ORDER BY sw.task_path, sw.task_id, sw.idx) AS types,
           array_agg(sw.blob ORDER BY sw.task_path, sw.task_id, sw.idx) AS data
    FROM checkpoint_writes sw
    WHERE c.parent_checkpoint_id <> ''
      AND jsonb_typeof(c.checkpoint -> 'v') = 'number' AND (c.checkpoint ->> 'v')::numeric < 4
      AND sw.thread_id = c.thread_id AND sw.checkpoint_id = c.parent_checkpoint_id
      AND sw.channel = '__pregel_tasks'
) AS s ON true
ORDER BY {order}"#
    )
}

/// One checkpoint row with everything a tuple needs, as parallel arrays.
#[derive(Debug, diesel::QueryableByName)]
pub(crate) struct TupleRow {
    #[diesel(sql_type = Text)]
    pub(crate) thread_id: String,
    #[diesel(sql_type = Text)]
    pub(crate) checkpoint_ns: String,
    #[diesel(sql_type = Text)]
    pub(crate) checkpoint_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    parent_checkpoint_id: Option<String>,
    #[diesel(sql_type = Jsonb)]
    checkpoint: StoredJson,
    #[diesel(sql_type = Jsonb)]
    metadata: StoredJson,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    blob_channels: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    blob_versions: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    blob_types: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Nullable<Bytea>>>)]
    blob_data: Option<Vec<Option<Vec<u8>>>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    write_task_ids: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    write_channels: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Nullable<Text>>>)]
    write_types: Option<Vec<Option<String>>>,
    #[diesel(sql_type = Nullable<Array<Bytea>>)]
    write_data: Option<Vec<Vec<u8>>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    write_task_paths: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Int4>>)]
    write_idxs: Option<Vec<i32>>,
    #[diesel(sql_type = Nullable<Array<Nullable<Text>>>)]
    send_types: Option<Vec<Option<String>>>,
    #[diesel(sql_type = Nullable<Array<Bytea>>)]
    send_data: Option<Vec<Vec<u8>>>,
}

impl TupleRow {
    /// Assembles the domain tuple. The arrays of one aggregate always have the same length.
    pub(crate) fn into_tuple(self) -> CheckpointTuple {
        let channel_values = self
            .blob_channels
            .unwrap_or_default()
            .into_iter()
            .zip(self.blob_versions.unwrap_or_default())
            .zip(self.blob_types.unwrap_or_default())
            .zip(self.blob_data.unwrap_or_default())
            .map(|(((channel, version), type_tag), data)| ChannelBlob {
                channel,
                version,
                value: TypedValue { type_tag, data },
            })
            .collect();
        let pending_writes = self
            .write_task_ids
            .unwrap_or_default()
            .into_iter()
            .zip(self.write_channels.unwrap_or_default())
            .zip(self.write_types.unwrap_or_default())
            .zip(self.write_data.unwrap_or_default())
            .zip(self.write_task_paths.unwrap_or_default())
            .zip(self.write_idxs.unwrap_or_default())
            .map(|(((((task_id, channel), type_tag), data), task_path), idx)| PendingWrite {
                task_id,
                channel,
                value: TypedValue { type_tag: type_tag.unwrap_or_default(), data: Some(data) },
                task_path,
                idx,
            })
            .collect();
        let pending_sends = self
            .send_types
            .unwrap_or_default()
            .into_iter()
            .zip(self.send_data.unwrap_or_default())
            .map(|(type_tag, data)| TypedValue { type_tag: type_tag.unwrap_or_default(), data: Some(data) })
            .collect();
        CheckpointTuple {
            config: CheckpointConfig {
                thread_id: self.thread_id,
                checkpoint_ns: self.checkpoint_ns,
                checkpoint_id: self.checkpoint_id,
            },
            checkpoint_json: self.checkpoint.0,
            metadata_json: self.metadata.0,
            parent_checkpoint_id: self.parent_checkpoint_id.filter(|p| !p.is_empty()),
            channel_values,
            pending_writes,
            pending_sends,
        }
    }
}

pub(crate) static GET_LATEST_SQL: LazyLock<String> = LazyLock::new(|| {
    let page = format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE thread_id = $1 AND checkpoint_ns = $2 \
         ORDER BY checkpoint_id DESC LIMIT 1"
    );
    tuple_query(&page, "c.checkpoint_id DESC")
});

static GET_BY_ID_SQL: LazyLock<String> = LazyLock::new(|| {
    let page = format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints \
         WHERE thread_id = $1 AND checkpoint_ns = $2 AND checkpoint_id = $3"
    );
    tuple_query(&page, "c.checkpoint_id DESC")
});

/// Reads one checkpoint: a specific one, or the latest of its namespace.
pub(crate) struct GetTupleOp<'a>(pub(crate) &'a GetTuple);

impl GetTupleOp<'_> {
    fn sql(&self) -> &'static str {
        match self.0.checkpoint_id {
            Some(_) => GET_BY_ID_SQL.as_str(),
            None => GET_LATEST_SQL.as_str(),
        }
    }
}

impl Operation for GetTupleOp<'_> {
    type Output = Option<CheckpointTuple>;

    fn name(&self) -> &'static str {
        "get_tuple"
    }

    fn db_operation(&self) -> &'static str {
        "SELECT"
    }

    fn access(&self) -> Access {
        Access::ReadOnly
    }

    fn is_one_statement(&self) -> bool {
        true
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<Self::Output>> {
        let get = self.0;
        let statement = Statement::new(self.sql()).bind::<Text, _>(&get.thread_id).bind::<Text, _>(&get.checkpoint_ns);
        let statement = match &get.checkpoint_id {
            Some(id) => statement.bind::<Text, _>(id),
            None => statement,
        };
        async move {
            let rows: Vec<TupleRow> = statement.load(conn).await?;
            Ok(rows.into_iter().next().map(TupleRow::into_tuple))
        }
        .boxed()
    }
}
