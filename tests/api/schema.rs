//! The schema checkpointd creates is LangGraph's, recorded the way LangGraph records it.

use crate::helpers::*;

#[tokio::test]
async fn migrations_record_versions_zero_to_nine() {
    let app = spawn_app().await;
    let rows = app.sql().await.query("SELECT v FROM checkpoint_migrations ORDER BY v", &[]).await.expect("versions");
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (0..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn tables_columns_keys_and_indexes_are_langgraphs() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    let columns = sql
        .query(
            "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') \
             FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .expect("columns");
    let columns: Vec<String> = columns
        .iter()
        .map(|r| {
            format!(
                "{}.{} {} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(4)
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            "checkpoint_blobs.thread_id text NO ",
            "checkpoint_blobs.checkpoint_ns text NO ''::text",
            "checkpoint_blobs.channel text NO ",
            "checkpoint_blobs.version text NO ",
            "checkpoint_blobs.type text NO ",
            "checkpoint_blobs.blob bytea YES ",
            "checkpoint_migrations.v integer NO ",
            "checkpoint_writes.thread_id text NO ",
            "checkpoint_writes.checkpoint_ns text NO ''::text",
            "checkpoint_writes.checkpoint_id text NO ",
            "checkpoint_writes.task_id text NO ",
            "checkpoint_writes.idx integer NO ",
            "checkpoint_writes.channel text NO ",
            "checkpoint_writes.type text YES ",
            "checkpoint_writes.blob bytea NO ",
            "checkpoint_writes.task_path text NO ''::text",
            "checkpoints.thread_id text NO ",
            "checkpoints.checkpoint_ns text NO ''::text",
            "checkpoints.checkpoint_id text NO ",
            "checkpoints.parent_checkpoint_id text YES ",
            "checkpoints.type text YES ",
            "checkpoints.checkpoint jsonb NO ",
            "checkpoints.metadata jsonb NO '{}'::jsonb",
        ]
    );
    let indexes = sql
        .query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname", &[])
        .await
        .expect("indexes");
    let indexes: Vec<String> = indexes.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        indexes,
        [
            "CREATE UNIQUE INDEX checkpoint_blobs_pkey ON public.checkpoint_blobs USING btree (thread_id, checkpoint_ns, channel, version)",
            "CREATE INDEX checkpoint_blobs_thread_id_idx ON public.checkpoint_blobs USING btree (thread_id)",
            "CREATE UNIQUE INDEX checkpoint_migrations_pkey ON public.checkpoint_migrations USING btree (v)",
            "CREATE UNIQUE INDEX checkpoint_writes_pkey ON public.checkpoint_writes USING btree (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)",
            "CREATE INDEX checkpoint_writes_thread_id_idx ON public.checkpoint_writes USING btree (thread_id)",
            // checkpointd's own, for DeleteForRuns (migrations/service/).
            "CREATE INDEX checkpointd_checkpoints_run_id_idx ON public.checkpoints USING btree (((metadata ->> 'run_id'::text)))",
            "CREATE UNIQUE INDEX checkpoints_pkey ON public.checkpoints USING btree (thread_id, checkpoint_ns, checkpoint_id)",
            "CREATE INDEX checkpoints_thread_id_idx ON public.checkpoints USING btree (thread_id)",
        ]
    );
    let versions: Vec<i32> = sql
        .query("SELECT v FROM checkpoint_migrations ORDER BY v", &[])
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (0..=9).collect::<Vec<_>>(), "only LangGraph's versions are recorded");
}

/// DeleteForRuns finds a run's checkpoints through the run-id index, not by reading every
/// checkpoint's metadata.
#[tokio::test]
async fn delete_for_runs_finds_its_checkpoints_through_the_run_id_index() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    let plan: Vec<String> = sql
        .simple_query(
            "SET enable_seqscan = off; EXPLAIN DELETE FROM checkpoints WHERE metadata ->> 'run_id' = ANY(ARRAY['r1'])",
        )
        .await
        .expect("explain")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert!(plan.iter().any(|line| line.contains("checkpointd_checkpoints_run_id_idx")), "{plan:#?}");
}

#[tokio::test]
async fn an_invalid_index_left_by_an_interrupted_build_is_rebuilt() {
    let db = TestDb::create().await;
    let sql = db.client().await;
    let pool = checkpointd::storage::Pool::new(test_config(&db.url).database, test_config(&db.url).pool).expect("pool");
    checkpointd::storage::migrations::run(&pool).await.expect("migrate");
    sql.batch_execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'checkpoints_thread_id_idx'::regclass",
    )
    .await
    .expect("break the index");
    let report = checkpointd::storage::migrations::run(&pool).await.expect("migrate again");
    assert_eq!(report.applied, Vec::<i32>::new());
    assert_eq!(report.repaired_indexes, ["checkpoints_thread_id_idx"]);
    let valid: bool = sql
        .query_one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'checkpoints_thread_id_idx'::regclass", &[])
        .await
        .expect("index")
        .get(0);
    assert!(valid);
}
