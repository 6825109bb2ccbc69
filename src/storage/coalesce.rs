//! Put coalescing: concurrent Puts share one transaction, so one commit (one WAL flush) makes
//! several checkpoints durable. Each caller is answered only after the commit that holds its
//! own checkpoint.
//!
//! Puts wait in a queue. While fewer than `max_transactions` batches run, a Put starts a drain
//! task; a drain takes every queued Put (up to `max_batch`, with distinct keys), runs them as
//! one statement in one transaction, answers each caller, and repeats until the queue is empty.
//! Batching is natural: a lone Put runs at once as a batch of one, with no waiting window, and
//! Puts arriving while a commit is in flight form the next batch. Drains are spawned tasks, so a
//! caller that goes away never abandons the others' checkpoints half-way.
//!
//! Backpressure stays as without coalescing: a Put not taken into a batch within the pool's
//! checkout wait leaves the queue and fails as overloaded (RESOURCE_EXHAUSTED), and while the
//! monitor knows the database is down, Puts bypass the queue and fail fast on their own.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::CoalescingConfig;
use crate::domain::PutCheckpoint;
use crate::retry::ErrorClass;
use crate::storage::StorageError;
use crate::storage::ops::{PutManyOp, PutOp};
use crate::storage::runner::Runner;

/// One Put waiting for a commit.
struct Pending {
    id: u64,
    put: PutCheckpoint,
    deadline: Instant,
    span: tracing::Span,
    answer: oneshot::Sender<Result<(), StorageError>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    drains: usize,
    next_id: u64,
}

/// The shared queue of Puts and its drains.
pub(crate) struct PutCoalescer {
    queue: Mutex<Queue>,
    config: CoalescingConfig,
    batches: AtomicU64,
    puts: AtomicU64,
    overloaded: AtomicU64,
}

/// What the coalescer has done, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoalescingStatus {
    /// Puts waiting for a batch now.
    pub queued: u64,
    /// Batches run since start.
    pub batches: u64,
    /// Puts those batches held.
    pub puts: u64,
    /// Puts that found no free transaction in time.
    pub overloaded: u64,
}

impl std::fmt::Debug for PutCoalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutCoalescer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl PutCoalescer {
    pub(crate) fn new(config: CoalescingConfig) -> Self {
        let config =
            CoalescingConfig { max_transactions: config.max_transactions.max(1), max_batch: config.max_batch.max(1) };
        Self {
            queue: Mutex::new(Queue::default()),
            config,
            batches: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
        }
    }

    /// A snapshot of the queue and the counters.
    pub(crate) fn status(&self) -> CoalescingStatus {
        let queued = self.queue.lock().unwrap_or_else(|e| e.into_inner()).waiting.len();
        CoalescingStatus {
            queued: queued as u64,
            batches: self.batches.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
        }
    }

    /// Saves `put` in some batch's transaction and returns once that transaction committed.
    pub(crate) async fn put(
        self: &Arc<Self>,
        runner: &Arc<Runner>,
        put: PutCheckpoint,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        if !runner.database_is_up() {
            return runner.run(&PutOp(&put), deadline).await;
        }
        let (answer, mut answered) = oneshot::channel();
        let (id, start_drain) = self.enqueue(put, deadline, answer);
        if start_drain {
            tokio::spawn(self.clone().drain(runner.clone()));
        }
        let queue_wait = deadline.min(Instant::now() + runner.checkout_wait());
        if let Ok(outcome) = tokio::time::timeout_at(queue_wait, &mut answered).await {
            return outcome.unwrap_or_else(|_| Err(lost_batch()));
        }
        if self.withdraw(id) {
            if Instant::now() >= deadline {
                return Err(deadline_passed());
            }
            self.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(overloaded());
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(outcome) => outcome.unwrap_or_else(|_| Err(lost_batch())),
            Err(_) => Err(deadline_passed()),
        }
    }

    /// Queues a Put; returns its id and whether the caller must start a drain.
    fn enqueue(
        &self,
        put: PutCheckpoint,
        deadline: Instant,
        answer: oneshot::Sender<Result<(), StorageError>>,
    ) -> (u64, bool) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.next_id += 1;
        let id = queue.next_id;
        queue.waiting.push_back(Pending { id, put, deadline, span: tracing::Span::current(), answer });
        let start = queue.drains < self.config.max_transactions;
        if start {
            queue.drains += 1;
        }
        (id, start)
    }

    /// Takes a Put no batch has taken yet out of the queue; false when a batch already holds it.
    fn withdraw(&self, id: u64) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let before = queue.waiting.len();
        queue.waiting.retain(|p| p.id != id);
        queue.waiting.len() < before
    }

    /// Runs batches until the queue is empty.
    async fn drain(self: Arc<Self>, runner: Arc<Runner>) {
        let mut guard = DrainGuard { coalescer: &self, done: false };
        loop {
            let batch = guard.next_batch();
            if batch.is_empty() {
                return;
            }
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.puts.fetch_add(batch.len() as u64, Ordering::Relaxed);
            let span = batch_span(&batch);
            run_batch(&runner, batch).instrument(span).await;
        }
    }

    /// Takes up to `max_batch` queued Puts with distinct keys (a repeated key waits for the next
    /// batch) whose callers are still waiting.
    fn take_batch(&self, queue: &mut Queue) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut keys = HashSet::new();
        let mut kept = VecDeque::new();
        while let Some(pending) = queue.waiting.pop_front() {
            if batch.len() == self.config.max_batch {
                kept.push_back(pending);
                continue;
            }
            if pending.answer.is_closed() {
                continue;
            }
            let put = &pending.put;
            if keys.insert((put.thread_id.clone(), put.checkpoint_ns.clone(), put.checkpoint_id.clone())) {
                batch.push(pending);
            } else {
                kept.push_back(pending);
            }
        }
        queue.waiting = kept;
        batch
    }
}

/// Ends a drain: takes the next batch, and counts the drain out when there is none (or when the
/// task ends any other way), so new Puts start a fresh one.
struct DrainGuard<'a> {
    coalescer: &'a PutCoalescer,
    done: bool,
}

impl DrainGuard<'_> {
    fn next_batch(&mut self) -> Vec<Pending> {
        let mut queue = self.coalescer.queue.lock().unwrap_or_else(|e| e.into_inner());
        let batch = self.coalescer.take_batch(&mut queue);
        if batch.is_empty() {
            queue.drains -= 1;
            self.done = true;
        }
        batch
    }
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut queue = self.coalescer.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.drains -= 1;
        }
    }
}

/// The span a batch's database work runs in. A batch of one runs in its Put's own call span; a
/// larger batch in a `put.batch` span under the first Put's call, which every other Put's call
/// span links to (a span link), so each caller's trace leads to the shared commit.
fn batch_span(batch: &[Pending]) -> tracing::Span {
    let Some((first, others)) = batch.split_first() else { return tracing::Span::none() };
    if others.is_empty() {
        return first.span.clone();
    }
    let span = tracing::info_span!(parent: &first.span, "put.batch", checkpointd.batch_size = i64::try_from(batch.len()).unwrap_or(i64::MAX));
    for pending in others {
        pending.span.follows_from(&span);
    }
    span
}

/// Runs one batch and answers every caller in it. When the database refuses the batch itself,
/// each Put runs alone, so one bad checkpoint fails only its own caller.
async fn run_batch(runner: &Runner, batch: Vec<Pending>) {
    let deadline = batch.iter().map(|p| p.deadline).max().unwrap_or_else(Instant::now);
    let outcome = match batch.as_slice() {
        [one] => runner.run(&PutOp(&one.put), deadline).await,
        many => {
            let puts: Vec<&PutCheckpoint> = many.iter().map(|p| &p.put).collect();
            runner.run(&PutManyOp(&puts), deadline).await
        }
    };
    let refused =
        matches!(outcome, Err(StorageError::Database { class: ErrorClass::Rejected | ErrorClass::Internal, .. }));
    if refused && batch.len() > 1 {
        for pending in batch {
            let outcome = runner.run(&PutOp(&pending.put), pending.deadline).await;
            let _ = pending.answer.send(outcome);
        }
        return;
    }
    for pending in batch {
        let _ = pending.answer.send(outcome.clone());
    }
}

fn lost_batch() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Internal,
        attempts: 0,
        detail: "the batch holding this checkpoint ended without an answer".into(),
    }
}

fn overloaded() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Overloaded,
        attempts: 0,
        detail: "no Put transaction was free within the pool's checkout wait".into(),
    }
}

fn deadline_passed() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Deadline,
        attempts: 0,
        detail: "the call's deadline passed while its batch was committing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JsonDocument;

    fn pending(thread: &str, id: &str) -> (Pending, oneshot::Receiver<Result<(), StorageError>>) {
        let document = JsonDocument::parse(br#"{}"#.to_vec(), 8).expect("json");
        let put = PutCheckpoint {
            thread_id: thread.into(),
            checkpoint_ns: String::new(),
            checkpoint_id: id.into(),
            parent_checkpoint_id: None,
            checkpoint: document.clone(),
            metadata: document,
            blobs: Vec::new(),
        };
        let (answer, answered) = oneshot::channel();
        (Pending { id: 0, put, deadline: Instant::now(), span: tracing::Span::none(), answer }, answered)
    }

    fn coalescer(max_batch: usize) -> PutCoalescer {
        PutCoalescer::new(CoalescingConfig { max_transactions: 2, max_batch })
    }

    fn ids(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.put.checkpoint_id.as_str()).collect()
    }

    #[test]
    fn a_batch_takes_distinct_keys_up_to_its_size_in_arrival_order() {
        let coalescer = coalescer(3);
        let mut queue = Queue::default();
        let mut receivers = Vec::new();
        for (thread, id) in [("t", "a"), ("t", "a"), ("t", "b"), ("u", "a"), ("t", "c")] {
            let (p, r) = pending(thread, id);
            queue.waiting.push_back(p);
            receivers.push(r);
        }
        let first = coalescer.take_batch(&mut queue);
        assert_eq!(ids(&first), ["a", "b", "a"], "the repeated key and the overflow wait");
        let second = coalescer.take_batch(&mut queue);
        assert_eq!(ids(&second), ["a", "c"]);
        assert!(coalescer.take_batch(&mut queue).is_empty());
    }

    #[test]
    fn puts_whose_callers_left_are_dropped_from_the_queue() {
        let coalescer = coalescer(8);
        let mut queue = Queue::default();
        let (gone, gone_receiver) = pending("t", "gone");
        let (kept, _kept_receiver) = pending("t", "kept");
        queue.waiting.extend([gone, kept]);
        drop(gone_receiver);
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["kept"]);
    }

    #[test]
    fn a_put_starts_a_drain_only_while_fewer_than_the_limit_run() {
        let coalescer = coalescer(8);
        let starts: Vec<bool> = (0..3)
            .map(|n| {
                let (p, _) = pending("t", &n.to_string());
                coalescer.enqueue(p.put, p.deadline, p.answer).1
            })
            .collect();
        assert_eq!(starts, [true, true, false]);
    }

    #[test]
    fn a_put_withdraws_only_while_no_batch_holds_it() {
        let coalescer = coalescer(8);
        let (p, _answered) = pending("t", "a");
        let (first, _) = coalescer.enqueue(p.put, p.deadline, p.answer);
        let (p, _answered_too) = pending("t", "b");
        let (second, _) = coalescer.enqueue(p.put, p.deadline, p.answer);
        assert!(coalescer.withdraw(second));
        let mut queue = coalescer.queue.lock().expect("queue");
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["a"]);
        drop(queue);
        assert!(!coalescer.withdraw(first), "a batch holds it");
    }
}
