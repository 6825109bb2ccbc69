//! CopyThread: every row of one thread duplicated under another thread id, in one statement.

use diesel::QueryResult;
use diesel::sql_types::Text;
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;

use crate::domain::CopyThread;
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// Ids, parents, documents, metadata, blobs and writes are kept as they are. Rows the target
/// already has are left alone, so a repeated copy changes nothing.
const COPY_THREAD_SQL: &str = r#"WITH copied_checkpoints AS (
    INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
    SELECT $2, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
    FROM checkpoints WHERE thread_id = $1
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING
), copied_blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT $2, checkpoint_ns, channel, version, type, blob
    FROM checkpoint_blobs WHERE thread_id = $1
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT $2, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes WHERE thread_id = $1
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING"#;

/// Copies a thread.
pub(crate) struct CopyThreadOp<'a>(pub(crate) &'a CopyThread);

impl Operation for CopyThreadOp<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "copy_thread"
    }

    fn db_operation(&self) -> &'static str {
        "INSERT"
    }

    fn access(&self) -> Access {
        Access::ReadWrite
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> {
        let statement = Statement::new(COPY_THREAD_SQL)
            .bind::<Text, _>(&self.0.source_thread_id)
            .bind::<Text, _>(&self.0.target_thread_id);
        statement.execute_on(conn)
    }
}
