//! LangGraph's four tables, as `diesel print-schema` would write them.
//!
//! Written by hand to match `langgraph-checkpoint-postgres` 3.2.0 migrations v0..v9 (see
//! `migrations/`); checked against a live database by `tests/api/schema.rs`. Do not change
//! a column here without a migration: LangGraph's own saver shares these tables.

diesel::table! {
    checkpoint_migrations (v) {
        v -> Int4,
    }
}

diesel::table! {
    checkpoints (thread_id, checkpoint_ns, checkpoint_id) {
        thread_id -> Text,
        checkpoint_ns -> Text,
        checkpoint_id -> Text,
        parent_checkpoint_id -> Nullable<Text>,
        #[sql_name = "type"]
        type_ -> Nullable<Text>,
        checkpoint -> Jsonb,
        metadata -> Jsonb,
    }
}

diesel::table! {
    checkpoint_blobs (thread_id, checkpoint_ns, channel, version) {
        thread_id -> Text,
        checkpoint_ns -> Text,
        channel -> Text,
        version -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        blob -> Nullable<Bytea>,
    }
}

diesel::table! {
    checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {
        thread_id -> Text,
        checkpoint_ns -> Text,
        checkpoint_id -> Text,
        task_id -> Text,
        idx -> Int4,
        channel -> Text,
        #[sql_name = "type"]
        type_ -> Nullable<Text>,
        blob -> Bytea,
        task_path -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(checkpoints, checkpoint_blobs, checkpoint_writes);
