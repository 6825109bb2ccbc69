//! Put: the blob values of new channel versions, then the checkpoint row, in one statement.

use std::borrow::Cow;

use diesel::QueryResult;
use diesel::sql_types::{Array, Bytea, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::domain::PutCheckpoint;
use crate::storage::json::JsonText;
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// Blobs are insert-if-absent (the first value of a channel version wins); the checkpoint is an
/// upsert that replaces the document and metadata but never the parent. Both are one statement,
/// so they commit together, and repeating it leaves the same rows.
pub(crate) const PUT_SQL: &str = r#"WITH new_blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT $1, $2, b.channel, b.version, b.type, b.blob
    FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[]) AS b(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES ($1, $2, $7, $8, $9, $10)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata"#;

/// Saves one checkpoint with its blobs.
pub(crate) struct PutOp<'a>(pub(crate) &'a PutCheckpoint);

impl Operation for PutOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "put"
    }

    fn db_operation(&self) -> &'static str {
        "INSERT"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn sole_statement(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(PUT_SQL))
    }

    fn run<'c>(&'c self, mut conn: &'c AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let put = self.0;
        let blobs = &put.blobs;
        let statement = Statement::new(PUT_SQL)
            .bind::<Text, _>(&put.thread_id)
            .bind::<Text, _>(&put.checkpoint_ns)
            .bind::<Array<Text>, _>(blobs.iter().map(|b| b.channel.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(blobs.iter().map(|b| b.version.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(blobs.iter().map(|b| b.value.type_tag.as_str()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Bytea>>, _>(blobs.iter().map(|b| b.value.data.as_deref()).collect::<Vec<_>>())
            .bind::<Text, _>(&put.checkpoint_id)
            .bind::<Nullable<Text>, _>(put.parent_checkpoint_id.as_deref())
            .bind::<Jsonb, _>(JsonText(put.checkpoint.as_str()))
            .bind::<Jsonb, _>(JsonText(put.metadata.as_str()));
        async move { statement.execute(&mut conn).await.map(drop) }.boxed()
    }
}
