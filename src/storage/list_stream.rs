//! List streams: a task that runs a stream's transactions and the stream that reads its pages.
//!
//! The task runs [`ListScanOp`] through the runner (so each transaction is retried, bounded and
//! traced like every other operation) until every row is handed over, the consumer is gone, or
//! the stream fails; the stream yields the pages' tuples one by one. Between the two is a channel
//! of one page: at most three pages are in memory per stream (one being read, one waiting, one
//! being fetched), however many rows match.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::domain::{CheckpointTuple, ListQuery};
use crate::storage::StorageError;
use crate::storage::ops::{ListScanOp, PageSender, ScanOutcome, ScanPacing};
use crate::storage::runner::Runner;

/// Rows in a stream's first fetch, so the first tuple arrives quickly.
const FIRST_PAGE: u64 = 32;
/// How long a fetched page waits for a consumer that is not reading before the stream gives its
/// connection back (and resumes in a new transaction when the consumer reads again).
const IDLE_RELEASE: Duration = Duration::from_secs(1);
/// The longest one transaction of a stream stays open.
const MAX_HOLD: Duration = Duration::from_secs(5);

/// What a list stream needs from the store.
pub(crate) struct ListStreamSettings {
    pub(crate) page_size: u64,
    pub(crate) default_deadline: Duration,
}

/// Streams the tuples `query` matches, newest first. Each transaction must end before
/// `deadline` (the call's), or within the default deadline when the call has none.
pub(crate) fn list_stream(
    runner: Arc<Runner>,
    query: ListQuery,
    deadline: Option<Instant>,
    settings: ListStreamSettings,
) -> impl Stream<Item = Result<CheckpointTuple, StorageError>> + Send + 'static {
    let (pages, received) = mpsc::channel(1);
    let pacing = ScanPacing {
        first_page: FIRST_PAGE,
        page_size: settings.page_size,
        idle_release: IDLE_RELEASE,
        max_hold: MAX_HOLD.min(settings.default_deadline / 2),
    };
    let default_deadline = settings.default_deadline;
    let producer = produce(runner, query, pacing, pages, move || {
        let default = Instant::now() + default_deadline;
        deadline.map_or(default, |d| d.min(default))
    });
    tokio::spawn(producer.instrument(tracing::Span::current()));
    let state = (received, VecDeque::new());
    futures_util::stream::unfold(state, |(mut received, mut buffer)| async move {
        loop {
            if let Some(tuple) = buffer.pop_front() {
                return Some((Ok(tuple), (received, buffer)));
            }
            match received.recv().await? {
                Ok(page) => buffer.extend(page),
                Err(e) => return Some((Err(e), (received, buffer))),
            }
        }
    })
}

/// Runs the stream's transactions until it is done; a failure is the last message.
async fn produce(
    runner: Arc<Runner>,
    query: ListQuery,
    pacing: ScanPacing,
    pages: PageSender,
    transaction_deadline: impl Fn() -> Instant,
) {
    let scan = ListScanOp::new(&query, &pages, &runner.pool, pacing);
    loop {
        match runner.run(&scan, transaction_deadline()).await {
            Err(e) => {
                let _ = pages.send(Err(e)).await;
                return;
            }
            Ok(ScanOutcome::ConsumerGone) => return,
            Ok(ScanOutcome::Finished | ScanOutcome::Paused) => {}
        }
        if let Some(page) = scan.take_unsent()
            && pages.send(Ok(page)).await.is_err()
        {
            return;
        }
        if scan.finished() {
            return;
        }
    }
}
