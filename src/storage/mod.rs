//! Storage: LangGraph's tables in PostgreSQL, behind [`Store`], the only API handlers use.
//!
//! Only this module touches diesel, diesel-async, bb8 and tokio-postgres. Operations (`ops`) are
//! idempotent SQL; `runner` executes them in transactions with retries; `pool` owns connections;
//! `migrations` creates the schema; `monitor` watches the database for the health service.

mod coalesce;
mod error;
mod json;
mod list_stream;
pub mod migrations;
pub(crate) mod monitor;
mod ops;
pub(crate) mod pool;
mod reference;
mod retry_loop;
mod runner;
mod schema;
mod statement;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

pub use coalesce::CoalescingStatus;
pub use error::StorageError;
pub use pool::{Pool, PoolStatus};
pub use reference::{ReferenceSql, ReferenceTransaction};

use crate::config::Config;
use crate::domain::{
    CheckpointConfig, CheckpointTuple, CopyThread, DeleteForRuns, DeltaChannelHistory, DeltaHistoryQuery, GetTuple,
    ListQuery, PruneRequest, PruneStrategy, PutCheckpoint, PutWrites,
};
use crate::retry::{ErrorClass, RetryBudget};
use coalesce::PutCoalescer;
use ops::{
    CopyThreadOp, DeleteForRunsOp, DeleteThreadOp, DeltaHistoryOp, GetTupleOp, PruneDeleteOp, PruneKeepLatestOp, PutOp,
    PutWritesOp, RefuseDeltaThreadsOp,
};
use runner::{Runner, TransactionLimits};

/// What the store knows about its database connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// The monitor's latest verdict.
    pub database_reachable: bool,
    /// The pool.
    pub pool: PoolStatus,
    /// Retries since start, by class.
    pub retries_by_class: Vec<(ErrorClass, u64)>,
    /// Calls that failed after their last attempt, by class.
    pub failures_by_class: Vec<(ErrorClass, u64)>,
    /// The latest failed attempt's class and age.
    pub last_error: Option<(ErrorClass, Duration)>,
    /// Tokens left in the retry budget.
    pub retry_budget: f64,
    /// Put coalescing, when on.
    pub put_coalescing: Option<CoalescingStatus>,
}

/// The checkpoint store.
#[derive(Debug)]
pub struct Store {
    runner: Arc<Runner>,
    coalescer: Option<Arc<PutCoalescer>>,
    list_page_size: u64,
    default_deadline: Duration,
}

impl Store {
    /// A store over `pool`, with the storage settings, the database's timeouts and the default
    /// deadline of `config`; `database_up` comes from the [`monitor`].
    pub fn new(pool: Arc<Pool>, config: &Config, database_up: watch::Receiver<bool>) -> Self {
        let (storage, database) = (&config.storage, &config.database);
        let runner = Runner {
            pool,
            policy: storage.retry.clone(),
            budget: RetryBudget::new(storage.retry_budget_tokens, storage.retry_budget_ratio),
            limits: TransactionLimits {
                statement_timeout: database.statement_timeout,
                idle_in_transaction_timeout: database.idle_in_transaction_timeout,
            },
            database_up,
            stats: stats::CallStats::default(),
            schema_ready: std::sync::atomic::AtomicBool::new(false),
        };
        Self {
            runner: Arc::new(runner),
            coalescer: storage.put_coalescing.map(|c| Arc::new(PutCoalescer::new(c))),
            list_page_size: storage.list_page_size.max(1),
            default_deadline: config.default_deadline,
        }
    }

    /// Lets calls reach the database: the schema is migrated (or is someone else's to migrate).
    /// Until then every call fails at once with UNAVAILABLE, which clients retry, instead of
    /// reaching tables that do not exist yet.
    pub fn set_schema_ready(&self) {
        self.runner.schema_ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The pool, for diagnostics.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.runner.pool
    }

    /// A snapshot of pool, retries and monitor state. Never touches the database.
    pub fn diagnostics(&self) -> Diagnostics {
        let stats = &self.runner.stats;
        Diagnostics {
            database_reachable: *self.runner.database_up.borrow(),
            pool: self.runner.pool.status(),
            retries_by_class: stats.retries(),
            failures_by_class: stats.failures(),
            last_error: stats.last_error(),
            retry_budget: self.runner.budget.tokens(),
            put_coalescing: self.coalescer.as_ref().map(|c| c.status()),
        }
    }

    /// Saves a checkpoint and returns where it was stored, once it is durable.
    pub async fn put(&self, put: PutCheckpoint, deadline: Instant) -> Result<CheckpointConfig, StorageError> {
        let stored = CheckpointConfig {
            thread_id: put.thread_id.clone(),
            checkpoint_ns: put.checkpoint_ns.clone(),
            checkpoint_id: put.checkpoint_id.clone(),
        };
        match &self.coalescer {
            Some(coalescer) => coalescer.put(&self.runner, put, deadline).await?,
            None => self.runner.run(&PutOp(&put), deadline).await?,
        }
        Ok(stored)
    }

    /// Saves a task's pending writes. An empty list touches nothing.
    pub async fn put_writes(&self, writes: &PutWrites, deadline: Instant) -> Result<(), StorageError> {
        if writes.writes.is_empty() {
            return Ok(());
        }
        self.runner.run(&PutWritesOp(writes), deadline).await
    }

    /// Reads one checkpoint; `None` when there is none.
    pub async fn get_tuple(&self, get: &GetTuple, deadline: Instant) -> Result<Option<CheckpointTuple>, StorageError> {
        self.runner.run(&GetTupleOp(get), deadline).await
    }

    /// The seed and writes a DeltaChannel needs for each channel; no channels read nothing.
    pub async fn get_delta_channel_history(
        &self,
        query: &DeltaHistoryQuery,
        deadline: Instant,
    ) -> Result<Vec<DeltaChannelHistory>, StorageError> {
        if query.channels.is_empty() {
            return Ok(Vec::new());
        }
        self.runner.run(&DeltaHistoryOp(query), deadline).await
    }

    /// Streams matching checkpoints newest first through one server-side cursor (see
    /// `list_stream`). Each transaction must end before `deadline` (the call's), or within the
    /// default deadline when the call has none.
    pub fn list(
        &self,
        query: ListQuery,
        deadline: Option<Instant>,
    ) -> impl Stream<Item = Result<CheckpointTuple, StorageError>> + Send + 'static {
        let settings =
            list_stream::ListStreamSettings { page_size: self.list_page_size, default_deadline: self.default_deadline };
        list_stream::list_stream(self.runner.clone(), query, deadline, settings)
    }

    /// Deletes a thread.
    pub async fn delete_thread(&self, thread_id: &str, deadline: Instant) -> Result<(), StorageError> {
        self.runner.run(&DeleteThreadOp(thread_id), deadline).await
    }

    /// Deletes the checkpoints of some runs.
    pub async fn delete_for_runs(&self, delete: &DeleteForRuns, deadline: Instant) -> Result<(), StorageError> {
        if delete.run_ids.is_empty() {
            return Ok(());
        }
        self.runner.run(&DeleteForRunsOp(delete), deadline).await
    }

    /// Copies a thread.
    pub async fn copy_thread(&self, copy: &CopyThread, deadline: Instant) -> Result<(), StorageError> {
        self.runner.run(&CopyThreadOp(copy), deadline).await
    }

    /// Prunes threads.
    pub async fn prune(&self, prune: &PruneRequest, deadline: Instant) -> Result<(), StorageError> {
        if prune.thread_ids.is_empty() {
            return Ok(());
        }
        if prune.strategy == PruneStrategy::Delete {
            return self.runner.run(&PruneDeleteOp(&prune.thread_ids), deadline).await;
        }
        let delta = self.runner.run(&RefuseDeltaThreadsOp(&prune.thread_ids), deadline).await?;
        if !delta.is_empty() {
            return Err(delta_refusal(&delta));
        }
        for thread_id in &prune.thread_ids {
            let outcome = self.runner.run(&PruneKeepLatestOp(thread_id), deadline).await?;
            if outcome == ops::KeepLatestOutcome::UsesDeltaChannel {
                return Err(delta_refusal(std::slice::from_ref(thread_id)));
            }
        }
        Ok(())
    }
}

fn delta_refusal(threads: &[String]) -> StorageError {
    StorageError::Precondition(format!(
        "keep_latest can't prune threads that use a DeltaChannel: {}",
        threads.join(", ")
    ))
}
