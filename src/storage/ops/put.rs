//! Put: the blob values of new channel versions, then the checkpoint row, in one statement.

use diesel::QueryResult;
use diesel::sql_types::{Array, Bytea, Jsonb, Nullable, Text};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use crate::domain::{ChannelBlob, PutCheckpoint};
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

    fn is_one_statement(&self) -> bool {
        true
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let put = self.0;
        let statement = Statement::new(PUT_SQL).bind::<Text, _>(&put.thread_id).bind::<Text, _>(&put.checkpoint_ns);
        let statement = bind_blob_columns(statement, put.blobs.iter())
            .bind::<Text, _>(&put.checkpoint_id)
            .bind::<Nullable<Text>, _>(put.parent_checkpoint_id.as_deref())
            .bind::<Jsonb, _>(JsonText(put.checkpoint.as_str()))
            .bind::<Jsonb, _>(JsonText(put.metadata.as_str()));
        statement.execute_on(conn)
    }
}

/// Several checkpoints with their blobs in one statement: [`PUT_SQL`] over arrays. Keys must be
/// distinct within a batch (an upsert cannot touch one row twice in one statement).
const PUT_MANY_SQL: &str = r#"WITH new_blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[])
        AS b(thread_id, checkpoint_ns, channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata
FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[])
    AS c(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata"#;

/// Saves several checkpoints (with distinct keys) and their blobs in one statement.
pub(crate) struct PutManyOp<'a>(pub(crate) &'a [&'a PutCheckpoint]);

impl Operation for PutManyOp<'_> {
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

    fn is_one_statement(&self) -> bool {
        true
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let puts = self.0;
        let blobs: Vec<(&PutCheckpoint, &ChannelBlob)> =
            puts.iter().flat_map(|put| put.blobs.iter().map(move |blob| (*put, blob))).collect();
        let statement = Statement::new(PUT_MANY_SQL)
            .bind::<Array<Text>, _>(blobs.iter().map(|(put, _)| put.thread_id.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(blobs.iter().map(|(put, _)| put.checkpoint_ns.as_str()).collect::<Vec<_>>());
        let statement = bind_blob_columns(statement, blobs.iter().map(|(_, b)| *b))
            .bind::<Array<Text>, _>(puts.iter().map(|p| p.thread_id.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(puts.iter().map(|p| p.checkpoint_ns.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(puts.iter().map(|p| p.checkpoint_id.as_str()).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(
                puts.iter().map(|p| p.parent_checkpoint_id.as_deref()).collect::<Vec<_>>(),
            )
            .bind::<Array<Jsonb>, _>(puts.iter().map(|p| JsonText(p.checkpoint.as_str())).collect::<Vec<_>>())
            .bind::<Array<Jsonb>, _>(puts.iter().map(|p| JsonText(p.metadata.as_str())).collect::<Vec<_>>());
        statement.execute_on(conn)
    }
}

/// Binds the blobs' columns as parallel arrays: channel, version, type, data.
fn bind_blob_columns<'a>(
    statement: Statement<'a>,
    blobs: impl Iterator<Item = &'a ChannelBlob> + Clone,
) -> Statement<'a> {
    statement
        .bind::<Array<Text>, _>(blobs.clone().map(|b| b.channel.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(blobs.clone().map(|b| b.version.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(blobs.clone().map(|b| b.value.type_tag.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Bytea>>, _>(blobs.map(|b| b.value.data.as_deref()).collect::<Vec<_>>())
}
