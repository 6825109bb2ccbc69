//! Put coalescing: concurrent Puts share one transaction, so one commit (one WAL flush) makes
//! several checkpoints durable. Each caller is answered only after the commit that holds its
//! own checkpoint.
//!
//! Puts wait in a queue. While fewer than `max_transactions` batches run, a Put starts a drain
//! task; a drain takes every queued Put (up to `max_batch` and `max_batch_bytes`, with distinct
//! keys none of which another batch is writing), runs them as one statement in one transaction,
//! answers each caller, and repeats until the queue is empty.
//!
//! A batch runs under the smallest deadline among its members. Before every attempt and retry
//! it withdraws the members whose callers gave up (deadline passed, call cancelled), so a Put
//! its caller was told had failed is never applied later; members that still have time when
//! another member's deadline ends an attempt go back to the queue for the next batch.
//! Batching is natural: a lone Put runs at once as a batch of one, with no waiting window, and
//! Puts arriving while a commit is in flight form the next batch. Drains are spawned tasks, so a
//! caller that goes away never abandons the others' checkpoints half-way.
//!
//! Backpressure stays as without coalescing: a Put not taken into a batch within the pool's
//! checkout wait leaves the queue and fails as overloaded (RESOURCE_EXHAUSTED), and while the
//! monitor knows the database is down, Puts bypass the queue and fail fast on their own.

use std::collections::{HashSet, VecDeque};
use std::mem;
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
use crate::storage::retry_loop::{AttemptFailure, Attempts, LoopError};
use crate::storage::runner::Runner;

/// A checkpoint's primary key: (thread, namespace, checkpoint id).
type Key = (String, String, String);

/// One Put waiting for a commit.
struct Pending {
    id: u64,
    put: PutCheckpoint,
    deadline: Instant,
    span: tracing::Span,
    answer: oneshot::Sender<Result<(), StorageError>>,
}

impl Pending {
    fn key(&self) -> Key {
        (self.put.thread_id.clone(), self.put.checkpoint_ns.clone(), self.put.checkpoint_id.clone())
    }

    /// Whether the caller still waits for the answer.
    fn caller_waits(&self) -> bool {
        !self.answer.is_closed() && self.deadline > Instant::now()
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    /// Keys some batch is writing now: a later Put of the same key waits for it.
    running: HashSet<Key>,
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
        let config = CoalescingConfig {
            max_transactions: config.max_transactions.max(1),
            max_batch: config.max_batch.max(1),
            max_batch_bytes: config.max_batch_bytes.max(1),
        };
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
        // A handler dropped while waiting (its call cancelled) leaves nothing queued.
        let queued = Withdraw { coalescer: self, id };
        if start_drain {
            tokio::spawn(self.clone().drain(runner.clone()));
        }
        let queue_wait = deadline.min(Instant::now() + runner.checkout_wait());
        if let Ok(outcome) = tokio::time::timeout_at(queue_wait, &mut answered).await {
            return outcome.unwrap_or_else(|_| Err(lost_batch()));
        }
        if queued.now() {
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
        let mut guard = DrainGuard { coalescer: &self, done: false, finished: Vec::new(), requeued: Vec::new() };
        loop {
            let batch = guard.next_batch();
            if batch.is_empty() {
                return;
            }
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.puts.fetch_add(batch.len() as u64, Ordering::Relaxed);
            guard.finished = batch.iter().map(Pending::key).collect();
            let span = batch_span(&batch);
            guard.requeued = run_batch(&runner, batch).instrument(span).await;
        }
    }

    /// Takes up to `max_batch` queued Puts of at most `max_batch_bytes` in all (one larger Put
    /// runs alone), with distinct keys no running batch holds, whose callers are still waiting.
    /// Their keys count as running until the batch ends.
    fn take_batch(&self, queue: &mut Queue) -> Vec<Pending> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut kept = VecDeque::new();
        while let Some(pending) = queue.waiting.pop_front() {
            if pending.answer.is_closed() {
                continue;
            }
            let size = pending.put.payload_bytes();
            let full =
                batch.len() == self.config.max_batch || !batch.is_empty() && bytes + size > self.config.max_batch_bytes;
            if full || !queue.running.insert(pending.key()) {
                kept.push_back(pending);
                continue;
            }
            bytes += size;
            batch.push(pending);
        }
        queue.waiting = kept;
        batch
    }
}

/// Withdraws a queued Put when its handler stops waiting, unless a batch holds it already.
struct Withdraw<'a> {
    coalescer: &'a PutCoalescer,
    id: u64,
}

impl Withdraw<'_> {
    /// Withdraws now; true when the Put was still queued.
    fn now(self) -> bool {
        let withdrawn = self.coalescer.withdraw(self.id);
        mem::forget(self);
        withdrawn
    }
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.coalescer.withdraw(self.id);
    }
}

/// Ends a drain: releases the keys of the batch that finished, puts back its members that still
/// have time, takes the next batch, and counts the drain out when there is none (or when the task
/// ends any other way), so new Puts start a fresh one.
struct DrainGuard<'a> {
    coalescer: &'a PutCoalescer,
    done: bool,
    finished: Vec<Key>,
    requeued: Vec<Pending>,
}

impl DrainGuard<'_> {
    fn next_batch(&mut self) -> Vec<Pending> {
        let mut queue = self.coalescer.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.release(&mut queue);
        let batch = self.coalescer.take_batch(&mut queue);
        if batch.is_empty() {
            queue.drains -= 1;
            self.done = true;
        }
        batch
    }

    fn release(&mut self, queue: &mut Queue) {
        for key in self.finished.drain(..) {
            queue.running.remove(&key);
        }
        for pending in self.requeued.drain(..).rev() {
            queue.waiting.push_front(pending);
        }
    }
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        let mut queue = self.coalescer.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.release(&mut queue);
        if !self.done {
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

/// The members of one batch, attempted together under the smallest of their deadlines.
struct BatchAttempts<'a> {
    runner: &'a Runner,
    members: Vec<Pending>,
}

impl Attempts for BatchAttempts<'_> {
    type Output = ();

    fn name(&self) -> &'static str {
        "put"
    }

    fn deadline(&mut self) -> Option<Instant> {
        withdraw_gone(&mut self.members)
    }

    async fn attempt(&mut self, number: u32, deadline: Instant) -> Result<(), AttemptFailure> {
        match self.members.as_slice() {
            [one] => self.runner.attempt_once(&PutOp(&one.put), number, deadline).await,
            many => {
                let puts: Vec<&PutCheckpoint> = many.iter().map(|p| &p.put).collect();
                self.runner.attempt_once(&PutManyOp(&puts), number, deadline).await
            }
        }
    }
}

/// Runs one batch and answers every caller in it; returns the members to queue again (those
/// that still had time when another member's deadline ended the batch). When the database
/// refuses the batch itself, each Put runs alone, so one bad checkpoint fails only its own caller.
async fn run_batch(runner: &Runner, mut members: Vec<Pending>) -> Vec<Pending> {
    // One order for every batch's rows, so concurrent batches lock rows in the same order.
    members.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    let mut attempts = BatchAttempts { runner, members };
    let outcome = runner.retry(&mut attempts).await;
    let members = attempts.members;
    match outcome {
        Ok(()) => answer_all(members, &Ok(())),
        Err(LoopError::Abandoned { .. }) => {}
        Err(LoopError::Failed { failure, .. }) if failure.class == ErrorClass::Deadline => {
            let (later, due): (Vec<_>, Vec<_>) = members.into_iter().partition(Pending::caller_waits);
            answer_all(due, &Err(deadline_passed()));
            return later;
        }
        Err(LoopError::Failed { failure, .. })
            if members.len() > 1 && matches!(failure.class, ErrorClass::Rejected | ErrorClass::Internal) =>
        {
            for pending in members {
                let outcome = runner.run(&PutOp(&pending.put), pending.deadline).await;
                let _ = pending.answer.send(outcome);
            }
        }
        Err(error) => answer_all(members, &Err(error.into_storage_error("put"))),
    }
    Vec::new()
}

/// Withdraws the members whose callers gave up (telling them so, should they still listen), then
/// returns the smallest deadline left; `None` when nobody is left.
fn withdraw_gone(members: &mut Vec<Pending>) -> Option<Instant> {
    let (waiting, gone): (Vec<_>, Vec<_>) = mem::take(members).into_iter().partition(Pending::caller_waits);
    for pending in gone {
        let _ = pending.answer.send(Err(deadline_passed()));
    }
    *members = waiting;
    members.iter().map(|p| p.deadline).min()
}

fn key_of(pending: &Pending) -> (&str, &str, &str) {
    (&pending.put.thread_id, &pending.put.checkpoint_ns, &pending.put.checkpoint_id)
}

fn answer_all(members: Vec<Pending>, outcome: &Result<(), StorageError>) {
    for pending in members {
        let _ = pending.answer.send(outcome.clone());
    }
}

fn lost_batch() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Internal,
        attempts: 0,
        detail: "the batch holding this checkpoint ended without an answer".into(),
        sqlstate: None,
    }
}

fn overloaded() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Overloaded,
        attempts: 0,
        detail: "no Put transaction was free within the pool's checkout wait".into(),
        sqlstate: None,
    }
}

fn deadline_passed() -> StorageError {
    StorageError::Database {
        operation: "put",
        class: ErrorClass::Deadline,
        attempts: 0,
        detail: "the call's deadline passed while its batch was committing".into(),
        sqlstate: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{ChannelBlob, JsonDocument, TypedValue};

    fn put(thread: &str, id: &str, blob_bytes: usize) -> PutCheckpoint {
        let document = JsonDocument::parse(br#"{}"#.to_vec(), 8).expect("json");
        let blobs = if blob_bytes == 0 {
            Vec::new()
        } else {
            let value = TypedValue { type_tag: String::new(), data: Some(vec![0; blob_bytes]) };
            vec![ChannelBlob { channel: String::new(), version: String::new(), value }]
        };
        PutCheckpoint {
            thread_id: thread.into(),
            checkpoint_ns: String::new(),
            checkpoint_id: id.into(),
            parent_checkpoint_id: None,
            checkpoint: document.clone(),
            metadata: document,
            blobs,
        }
    }

    type Answered = oneshot::Receiver<Result<(), StorageError>>;

    fn pending_of(put: PutCheckpoint, deadline: Instant) -> (Pending, Answered) {
        let (answer, answered) = oneshot::channel();
        (Pending { id: 0, put, deadline, span: tracing::Span::none(), answer }, answered)
    }

    fn pending(thread: &str, id: &str) -> (Pending, Answered) {
        pending_of(put(thread, id, 0), Instant::now() + Duration::from_secs(60))
    }

    fn coalescer(max_batch: usize) -> PutCoalescer {
        PutCoalescer::new(CoalescingConfig { max_transactions: 2, max_batch, max_batch_bytes: 1 << 20 })
    }

    fn ids(batch: &[Pending]) -> Vec<&str> {
        batch.iter().map(|p| p.put.checkpoint_id.as_str()).collect()
    }

    fn queue_of(entries: &[(&str, &str)]) -> (Queue, Vec<Answered>) {
        let mut queue = Queue::default();
        let mut receivers = Vec::new();
        for (thread, id) in entries {
            let (p, r) = pending(thread, id);
            queue.waiting.push_back(p);
            receivers.push(r);
        }
        (queue, receivers)
    }

    #[test]
    fn a_batch_takes_distinct_keys_up_to_its_size_in_arrival_order() {
        let coalescer = coalescer(3);
        let (mut queue, _receivers) = queue_of(&[("t", "a"), ("t", "a"), ("t", "b"), ("u", "a"), ("t", "c")]);
        let first = coalescer.take_batch(&mut queue);
        assert_eq!(ids(&first), ["a", "b", "a"], "the repeated key and the overflow wait");
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["c"], "t/a waits while a batch writes it");
    }

    #[test]
    fn a_key_is_free_for_the_next_batch_once_its_batch_ends() {
        let coalescer = coalescer(8);
        let (mut queue, _receivers) = queue_of(&[("t", "a"), ("t", "a")]);
        let first = coalescer.take_batch(&mut queue);
        assert!(coalescer.take_batch(&mut queue).is_empty(), "the same key never runs in two batches at once");
        let mut guard = DrainGuard {
            coalescer: &coalescer,
            done: false,
            finished: first.iter().map(Pending::key).collect(),
            requeued: Vec::new(),
        };
        guard.release(&mut queue);
        guard.done = true;
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["a"]);
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_a_larger_put_runs_alone() {
        let coalescer =
            PutCoalescer::new(CoalescingConfig { max_transactions: 2, max_batch: 64, max_batch_bytes: 1000 });
        let mut queue = Queue::default();
        let mut receivers = Vec::new();
        for (id, bytes) in [("a", 400), ("b", 400), ("c", 400), ("huge", 5000), ("d", 10)] {
            let (p, r) = pending_of(put("t", id, bytes), Instant::now() + Duration::from_secs(60));
            queue.waiting.push_back(p);
            receivers.push(r);
        }
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["a", "b", "d"], "a small Put still fits");
        queue.running.clear();
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["c"]);
        queue.running.clear();
        assert_eq!(ids(&coalescer.take_batch(&mut queue)), ["huge"]);
    }

    #[test]
    fn puts_whose_callers_left_are_dropped_from_the_queue() {
        let coalescer = coalescer(8);
        let (mut queue, mut receivers) = queue_of(&[("t", "gone"), ("t", "kept")]);
        drop(receivers.remove(0));
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

    #[test]
    fn a_dropped_handler_leaves_nothing_queued() {
        let coalescer = coalescer(8);
        let (p, _answered) = pending("t", "a");
        let (id, _) = coalescer.enqueue(p.put, p.deadline, p.answer);
        drop(Withdraw { coalescer: &coalescer, id });
        assert_eq!(coalescer.status().queued, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn before_each_attempt_a_batch_withdraws_callers_that_gave_up_and_runs_to_the_smallest_deadline() {
        let now = Instant::now();
        let (soon, _soon_answered) = pending_of(put("t", "soon", 0), now + Duration::from_secs(1));
        let (late, _late_answered) = pending_of(put("t", "late", 0), now + Duration::from_secs(9));
        let (cancelled, cancelled_answered) = pending_of(put("t", "cancelled", 0), now + Duration::from_secs(1));
        let (expired, mut expired_answered) = pending_of(put("t", "expired", 0), now);
        drop(cancelled_answered);
        let members = vec![soon, late, cancelled, expired];
        let mut attempts = Members { members };
        assert_eq!(attempts.deadline(), Some(now + Duration::from_secs(1)));
        assert_eq!(ids(&attempts.members), ["soon", "late"]);
        assert!(matches!(
            expired_answered.try_recv(),
            Ok(Err(StorageError::Database { class: ErrorClass::Deadline, .. }))
        ));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(attempts.deadline(), Some(now + Duration::from_secs(9)), "the caller that ran out left");
        assert_eq!(ids(&attempts.members), ["late"]);
    }

    /// The membership half of [`BatchAttempts`], without a runner.
    struct Members {
        members: Vec<Pending>,
    }

    impl Members {
        fn deadline(&mut self) -> Option<Instant> {
            withdraw_gone(&mut self.members)
        }
    }
}
