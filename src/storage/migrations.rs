//! LangGraph's schema migrations, embedded, recorded in LangGraph's own `checkpoint_migrations`.
//!
//! The runner follows `PostgresSaver.setup()`: create the version table, read the highest
//! version, apply each later migration and record it. It adds what a shared service needs: an
//! advisory lock so replicas starting together migrate once, a transaction around each
//! non-concurrent migration and its version row, and repair of an index that a failed
//! `CREATE INDEX CONCURRENTLY` left invalid.

use diesel::dsl::max;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::storage::pool::{ConnectError, Pool};
use crate::storage::schema::checkpoint_migrations;
use crate::storage::statement::Statement;

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version LangGraph records for it.
    pub version: i32,
    /// Its file under `migrations/`.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

impl Migration {
    /// `CREATE INDEX CONCURRENTLY` cannot run inside a transaction.
    fn concurrent(&self) -> bool {
        self.sql.contains("CONCURRENTLY")
    }
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration { version: $version, name: $name, sql: include_str!(concat!("../../migrations/", $name, ".sql")) }
    };
}

/// Every migration, in order; the index is the version.
pub const MIGRATIONS: [Migration; 10] = [
    migration!(0, "0000_checkpoint_migrations"),
    migration!(1, "0001_checkpoints"),
    migration!(2, "0002_checkpoint_blobs"),
    migration!(3, "0003_checkpoint_writes"),
    migration!(4, "0004_blobs_nullable"),
    migration!(5, "0005_noop"),
    migration!(6, "0006_checkpoints_thread_id_idx"),
    migration!(7, "0007_checkpoint_blobs_thread_id_idx"),
    migration!(8, "0008_checkpoint_writes_thread_id_idx"),
    migration!(9, "0009_checkpoint_writes_task_path"),
];

/// Indexes of checkpointd's own (see `migrations/README.md`): created after LangGraph's
/// migrations on every run, never recorded in `checkpoint_migrations`.
pub const SERVICE_INDEXES: [Migration; 1] = [Migration {
    version: -1,
    name: "service/checkpoints_run_id_idx",
    sql: include_str!("../../migrations/service/checkpoints_run_id_idx.sql"),
}];

/// The latest version this binary knows.
pub const LATEST_VERSION: i32 = 9;

/// Arbitrary key of the advisory lock held while migrating ("ckptmig" in ASCII).
const LOCK_KEY: i64 = 0x0063_6b70_746d_6967;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied now.
    pub applied: Vec<i32>,
    /// Indexes rebuilt because they were invalid.
    pub repaired_indexes: Vec<String>,
    /// The highest version recorded afterwards (above [`LATEST_VERSION`] when a newer
    /// LangGraph migrated the database).
    pub version: i32,
}

/// A migration that failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// No connection.
    #[error("cannot connect to the database to migrate it: {0}")]
    Connect(#[from] ConnectError),
    /// A statement failed.
    #[error("migration {step} failed: {message}")]
    Statement {
        /// Which step.
        step: String,
        /// The database's message.
        message: String,
    },
}

fn failed(step: impl Into<String>) -> impl FnOnce(diesel::result::Error) -> MigrationError {
    let step = step.into();
    move |e| MigrationError::Statement { step, message: e.to_string() }
}

/// Brings the schema up to date on a dedicated connection.
pub async fn run(pool: &Pool) -> Result<MigrationReport, MigrationError> {
    let mut conn = pool.dedicated().await?;
    let conn: &mut AsyncPgConnection = &mut conn;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})")).await.map_err(failed("lock"))?;
    let result = migrate(conn).await;
    let unlocked = conn.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})")).await;
    let report = result?;
    unlocked.map_err(failed("unlock"))?;
    Ok(report)
}

async fn migrate(conn: &mut AsyncPgConnection) -> Result<MigrationReport, MigrationError> {
    conn.batch_execute(MIGRATIONS[0].sql).await.map_err(failed(MIGRATIONS[0].name))?;
    let current = current_version(conn).await?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        apply(conn, migration).await?;
        applied.push(migration.version);
    }
    for index in &SERVICE_INDEXES {
        conn.batch_execute(index.sql).await.map_err(failed(index.name))?;
    }
    let repaired_indexes = repair_invalid_indexes(conn).await?;
    let version = current_version(conn).await?;
    if version > LATEST_VERSION {
        tracing::warn!(version, known = LATEST_VERSION, "the database schema is newer than this checkpointd knows");
    }
    Ok(MigrationReport { applied, repaired_indexes, version })
}

/// The highest recorded version, -1 for none (as LangGraph reads it).
async fn current_version(conn: &mut AsyncPgConnection) -> Result<i32, MigrationError> {
    let version: Option<i32> = checkpoint_migrations::table
        .select(max(checkpoint_migrations::v))
        .get_result(conn)
        .await
        .map_err(failed("reading checkpoint_migrations"))?;
    Ok(version.unwrap_or(-1))
}

async fn record(conn: &mut AsyncPgConnection, version: i32) -> QueryResult<usize> {
    diesel::insert_into(checkpoint_migrations::table)
        .values(checkpoint_migrations::v.eq(version))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

async fn apply(conn: &mut AsyncPgConnection, migration: &Migration) -> Result<(), MigrationError> {
    tracing::info!(version = migration.version, name = migration.name, "applying migration");
    if migration.concurrent() {
        conn.batch_execute(migration.sql).await.map_err(failed(migration.name))?;
        record(conn, migration.version).await.map_err(failed(migration.name))?;
        return Ok(());
    }
    conn.transaction(async |conn: &mut AsyncPgConnection| {
        conn.batch_execute(migration.sql).await?;
        record(conn, migration.version).await.map(drop)
    })
    .await
    .map_err(failed(migration.name))
}

#[derive(QueryableByName)]
struct IndexState {
    #[diesel(sql_type = Bool)]
    invalid: bool,
}

/// Rebuilds any of LangGraph's indexes that an interrupted concurrent build left invalid (a
/// later `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would silently keep it).
async fn repair_invalid_indexes(conn: &mut AsyncPgConnection) -> Result<Vec<String>, MigrationError> {
    let mut repaired = Vec::new();
    for migration in MIGRATIONS.iter().chain(&SERVICE_INDEXES).filter(|m| m.concurrent()) {
        let Some(index) = index_name(migration.sql) else { continue };
        let state: Vec<IndexState> = Statement::new(
            "SELECT NOT i.indisvalid AS invalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1 AND pg_table_is_visible(c.oid)",
        )
        .bind::<Text, _>(index)
        .load(conn)
        .await
        .map_err(failed("checking indexes"))?;
        if state.iter().any(|s| s.invalid) {
            tracing::warn!(index, "rebuilding an invalid index");
            let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {index}");
            conn.batch_execute(&drop).await.map_err(failed(migration.name))?;
            conn.batch_execute(migration.sql).await.map_err(failed(migration.name))?;
            repaired.push(index.to_owned());
        }
    }
    Ok(repaired)
}

/// The index name in `CREATE INDEX CONCURRENTLY IF NOT EXISTS <name> ON …`.
fn index_name(sql: &str) -> Option<&str> {
    sql.split_whitespace().skip_while(|w| *w != "EXISTS").nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_their_position_and_langgraph_numbering() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i);
            assert!(m.name.starts_with(&format!("{i:04}_")), "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }

    #[test]
    fn only_the_index_migrations_run_outside_a_transaction() {
        let concurrent: Vec<i32> = MIGRATIONS.iter().filter(|m| m.concurrent()).map(|m| m.version).collect();
        assert_eq!(concurrent, [6, 7, 8]);
    }

    #[test]
    fn index_names_are_read_from_the_sql() {
        let names: Vec<_> = MIGRATIONS.iter().filter(|m| m.concurrent()).filter_map(|m| index_name(m.sql)).collect();
        assert_eq!(
            names,
            ["checkpoints_thread_id_idx", "checkpoint_blobs_thread_id_idx", "checkpoint_writes_thread_id_idx"]
        );
    }
}
