//! The one table diesel's query builder reads: LangGraph's migration ledger.
//!
//! The checkpoint tables (`checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) are reached
//! only through the raw SQL of `storage::ops`, so they have no `table!` here; their columns are
//! LangGraph's (`langgraph-checkpoint-postgres` 3.2.0 migrations v0..v9, see `migrations/`),
//! checked against a live database by `tests/api/schema.rs`.

diesel::table! {
    checkpoint_migrations (v) {
        v -> Int4,
    }
}
