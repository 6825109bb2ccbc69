//! PutWrites: one task's pending writes, inserted with LangGraph's conflict rule.

use std::sync::LazyLock;

use diesel::QueryResult;
use diesel::sql_types::{Array, Bytea, Int4, Text};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use crate::domain::{PutWrites, WriteConflict};
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

const INSERT_WRITES: &str = r#"INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT $1, $2, $3, $4, $5, w.idx, w.channel, w.type, w.blob
FROM unnest($6::int4[], $7::text[], $8::text[], $9::bytea[]) AS w(idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) "#;

static INSERT_OR_IGNORE: LazyLock<String> = LazyLock::new(|| format!("{INSERT_WRITES}DO NOTHING"));
static INSERT_OR_REPLACE: LazyLock<String> = LazyLock::new(|| {
    format!("{INSERT_WRITES}DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob")
});

/// Only special-channel batches replace stored writes; everything else keeps the first.
pub(crate) fn put_writes_sql(conflict: WriteConflict) -> &'static str {
    match conflict {
        WriteConflict::Ignore => &INSERT_OR_IGNORE,
        WriteConflict::Replace => &INSERT_OR_REPLACE,
    }
}

/// Saves the pending writes of one task.
pub(crate) struct PutWritesOp<'a>(pub(crate) &'a PutWrites);

impl Operation for PutWritesOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "put_writes"
    }

    fn db_operation(&self) -> &'static str {
        "INSERT"
    }

    fn collection(&self) -> &'static str {
        "checkpoint_writes"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn is_one_statement(&self) -> bool {
        true
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let put = self.0;
        let writes = &put.writes;
        let statement = Statement::new(put_writes_sql(put.conflict))
            .bind::<Text, _>(&put.thread_id)
            .bind::<Text, _>(&put.checkpoint_ns)
            .bind::<Text, _>(&put.checkpoint_id)
            .bind::<Text, _>(&put.task_id)
            .bind::<Text, _>(&put.task_path)
            .bind::<Array<Int4>, _>(writes.iter().map(|w| w.idx).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(writes.iter().map(|w| w.channel.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(writes.iter().map(|w| w.value.type_tag.as_str()).collect::<Vec<_>>())
            .bind::<Array<Bytea>, _>(
                writes.iter().map(|w| w.value.data.as_deref().unwrap_or_default()).collect::<Vec<_>>(),
            );
        statement.execute_on(conn)
    }
}
