//! List: one SELECT per stream, resuming after a keyset cursor.
//!
//! A stream reads one SELECT inside one read-only transaction, as the consumer takes its rows,
//! so the matching rows are found and sorted once, however many pages they fill. Each page goes
//! to the consumer through a one-page channel; when the consumer stops reading for a while (or
//! the transaction has been open long enough) the SELECT is cancelled, the transaction ends and
//! the connection goes back to the pool, and the next transaction selects again after the last
//! row sent. The sort key is the checkpoint id (as LangGraph sorts) made unique by the columns the
//! query does not fix, so resuming never skips or repeats a row.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::time::Instant;

use diesel::QueryResult;
use diesel::sql_types::{BigInt, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};

use crate::domain::{CheckpointTuple, ListQuery};
use crate::storage::StorageError;
use crate::storage::json::JsonText;
use crate::storage::ops::read::{CHECKPOINT_COLUMNS, TupleRow, tuple_query};
use crate::storage::ops::{Access, Operation};
use crate::storage::pool::Pool;
use crate::storage::statement::Statement;

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    pub(crate) checkpoint_id: String,
    pub(crate) checkpoint_ns: String,
    pub(crate) thread_id: String,
}

/// The rows a list stream selects: after `after`, at most `limit`.
pub(crate) struct ListSelect<'a> {
    pub(crate) query: &'a ListQuery,
    pub(crate) after: Option<&'a ListCursor>,
    pub(crate) limit: Option<u64>,
}

/// How a list stream paces its reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanPacing {
    /// Rows in the first fetch; each later fetch doubles, up to `page_size`.
    pub(crate) first_page: u64,
    /// The most rows in one fetch (and one message to the consumer).
    pub(crate) page_size: u64,
    /// How long a fetched page waits for a slow consumer before the transaction ends.
    pub(crate) idle_release: Duration,
    /// How long one transaction may stream before it ends and the next resumes.
    pub(crate) max_hold: Duration,
}

/// Pages for the consumer of a list stream (the error, when the stream fails, comes last).
pub(crate) type PageSender = mpsc::Sender<Result<Vec<CheckpointTuple>, StorageError>>;

/// Why one transaction of a list stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanOutcome {
    /// Every row was fetched (the last page may still be waiting in [`ListScanOp::take_unsent`]).
    Finished,
    /// The consumer was slow or the transaction old: resume in a new transaction.
    Paused,
    /// The consumer is gone.
    ConsumerGone,
}

/// Where a list stream stands, across its transactions and retries.
#[derive(Debug, Default)]
struct ScanProgress {
    after: Option<ListCursor>,
    remaining: Option<u64>,
    unsent: Option<Vec<CheckpointTuple>>,
    finished: bool,
    page_size: u64,
}

/// The rows of one list stream, read in as few transactions as the consumer's pace allows. A
/// retried attempt resumes after the last row it handed over.
pub(crate) struct ListScanOp<'a> {
    query: &'a ListQuery,
    pages: &'a PageSender,
    /// Sends the cancel request that stops a SELECT read only in part.
    pool: &'a Pool,
    pacing: ScanPacing,
    progress: Mutex<ScanProgress>,
}

impl<'a> ListScanOp<'a> {
    pub(crate) fn new(query: &'a ListQuery, pages: &'a PageSender, pool: &'a Pool, pacing: ScanPacing) -> Self {
        let progress = ScanProgress {
            remaining: query.limit,
            finished: query.matches_nothing(),
            page_size: pacing.first_page.clamp(1, pacing.page_size.max(1)),
            ..ScanProgress::default()
        };
        Self { query, pages, pool, pacing, progress: Mutex::new(progress) }
    }

    /// True once every row has been fetched.
    pub(crate) fn finished(&self) -> bool {
        self.progress().finished
    }

    /// The page a slow consumer had not taken when the transaction ended.
    pub(crate) fn take_unsent(&self) -> Option<Vec<CheckpointTuple>> {
        self.progress().unsent.take()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, ScanProgress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rows not handed over yet: all of them, or the next `page` of them.
    fn rows_after(&self, page: Option<u64>) -> Statement<'static> {
        let progress = self.progress();
        let limit = page.or(progress.remaining);
        ListSelect { query: self.query, after: progress.after.as_ref(), limit }.select()
    }

    /// The next page's size, or `None` when nothing is left.
    fn next_fetch(&self) -> Option<u64> {
        let progress = self.progress();
        let size = progress.remaining.map_or(progress.page_size, |left| left.min(progress.page_size));
        (!progress.finished && size > 0).then_some(size)
    }

    /// Records a page: the stream resumes after it, and is finished after the last one.
    fn advance(&self, page: &[CheckpointTuple], last: bool) {
        let mut progress = self.progress();
        progress.remaining = progress.remaining.map(|left| left.saturating_sub(page.len() as u64));
        progress.finished = last || progress.remaining == Some(0);
        if let Some(last) = page.last() {
            progress.after = Some(ListCursor::after(last));
        }
        progress.page_size = (progress.page_size * 2).min(self.pacing.page_size.max(1));
    }

    /// Hands a page to the consumer, waiting at most `idle_release` for it to make room.
    async fn hand_over(&self, page: Vec<CheckpointTuple>) -> Option<ScanOutcome> {
        match self.pages.send_timeout(Ok(page), self.pacing.idle_release).await {
            Ok(()) => None,
            Err(SendTimeoutError::Closed(_)) => Some(ScanOutcome::ConsumerGone),
            Err(SendTimeoutError::Timeout(Ok(page))) => {
                self.progress().unsent = Some(page);
                Some(ScanOutcome::Paused)
            }
            Err(SendTimeoutError::Timeout(Err(_))) => Some(ScanOutcome::Paused),
        }
    }

    /// Hands `page` over and says whether the stream stops here (and why).
    async fn deliver(&self, page: Vec<CheckpointTuple>, last: bool, started: Instant) -> Option<ScanOutcome> {
        self.advance(&page, last);
        if !page.is_empty()
            && let Some(outcome) = self.hand_over(page).await
        {
            return Some(outcome);
        }
        match self.next_fetch() {
            None => Some(ScanOutcome::Finished),
            Some(_) if started.elapsed() >= self.pacing.max_hold => Some(ScanOutcome::Paused),
            Some(_) => None,
        }
    }

    async fn scan(&self, conn: &mut AsyncPgConnection) -> QueryResult<ScanOutcome> {
        if self.progress().unsent.is_some() {
            return Ok(ScanOutcome::Paused);
        }
        if self.next_fetch().is_none() {
            return Ok(ScanOutcome::Finished);
        }
        if self.query.is_key_range() { self.page_by_key(conn).await } else { self.stream_once(conn).await }
    }

    /// A primary-key range pages cheaply by itself: one bounded SELECT per page.
    async fn page_by_key(&self, conn: &mut AsyncPgConnection) -> QueryResult<ScanOutcome> {
        let started = Instant::now();
        while let Some(size) = self.next_fetch() {
            let rows: Vec<TupleRow> = self.rows_after(Some(size)).load(conn).await?;
            let page: Vec<CheckpointTuple> = rows.into_iter().map(TupleRow::into_tuple).collect();
            let last = (page.len() as u64) < size;
            if let Some(outcome) = self.deliver(page, last, started).await {
                return Ok(outcome);
            }
        }
        Ok(ScanOutcome::Finished)
    }

    /// Anything else is found and sorted once, by one SELECT whose rows are read as the consumer
    /// takes them (the server waits while the consumer does). A SELECT executed to its end may
    /// use parallel workers, which a cursor never does: on a table of millions of rows that
    /// halves a filtered scan. A stream stopped before its end is cancelled on the server.
    async fn stream_once(&self, conn: &mut AsyncPgConnection) -> QueryResult<ScanOutcome> {
        let started = Instant::now();
        let cancel = conn.cancel_token();
        let mut rows = self.rows_after(None).load_stream::<TupleRow>(conn).await?;
        let mut page = Vec::new();
        while let Some(size) = self.next_fetch() {
            let row = rows.try_next().await?;
            let last = row.is_none();
            page.extend(row.map(TupleRow::into_tuple));
            if !last && (page.len() as u64) < size {
                continue;
            }
            if let Some(outcome) = self.deliver(std::mem::take(&mut page), last, started).await {
                if !last && outcome != ScanOutcome::Finished {
                    self.pool.cancel(cancel).await;
                    while rows.next().await.is_some() {}
                }
                return Ok(outcome);
            }
        }
        Ok(ScanOutcome::Finished)
    }
}

/// A column of the list's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyColumn {
    CheckpointId,
    CheckpointNs,
    ThreadId,
}

impl KeyColumn {
    fn name(self) -> &'static str {
        match self {
            KeyColumn::CheckpointId => "checkpoint_id",
            KeyColumn::CheckpointNs => "checkpoint_ns",
            KeyColumn::ThreadId => "thread_id",
        }
    }
}

/// The sort-key columns a query leaves free, in sort order.
fn key_columns(query: &ListQuery) -> Vec<KeyColumn> {
    let mut columns = vec![KeyColumn::CheckpointId];
    if query.checkpoint_ns.is_none() {
        columns.push(KeyColumn::CheckpointNs);
    }
    if query.thread_id.is_none() {
        columns.push(KeyColumn::ThreadId);
    }
    columns
}

/// A value bound to a list SELECT's placeholder.
enum Param {
    Text(String),
    Json(String),
    Count(i64),
    Texts(Vec<String>),
}

impl ListSelect<'_> {
    /// The rows as one `SELECT`.
    pub(crate) fn select(&self) -> Statement<'static> {
        let query = self.query;
        let keys = key_columns(query);
        let mut params: Vec<Param> = Vec::new();
        let mut placeholder = |param: Param| {
            params.push(param);
            format!("${}", params.len())
        };
        let mut wheres: Vec<String> = Vec::new();
        if let Some(thread_id) = &query.thread_id {
            wheres.push(format!("thread_id = {}", placeholder(Param::Text(thread_id.clone()))));
        }
        if let Some(ns) = &query.checkpoint_ns {
            wheres.push(format!("checkpoint_ns = {}", placeholder(Param::Text(ns.clone()))));
        }
        if let Some(id) = &query.checkpoint_id {
            wheres.push(format!("checkpoint_id = {}", placeholder(Param::Text(id.clone()))));
        }
        if let Some(filter) = query.filter.as_ref().filter(|f| !f.is_empty_object()) {
            wheres.push(format!("metadata @> {}", placeholder(Param::Json(filter.as_str().to_owned()))));
        }
        if let Some(prefixes) = &query.thread_prefixes {
            let array = placeholder(Param::Texts(prefixes.clone()));
            wheres.push(format!(
                "EXISTS (SELECT 1 FROM unnest({array}::text[]) AS p(prefix) WHERE starts_with(thread_id, p.prefix))"
            ));
        }
        if let Some(before) = &query.before {
            wheres.push(format!("checkpoint_id < {}", placeholder(Param::Text(before.clone()))));
        }
        if let Some(cursor) = self.after {
            let values: Vec<String> =
                keys.iter().map(|key| placeholder(Param::Text(cursor.value(*key).to_owned()))).collect();
            let names: Vec<&str> = keys.iter().map(|key| key.name()).collect();
            wheres.push(format!("({}) < ({})", names.join(", "), values.join(", ")));
        }
        let limit = match self.limit {
            Some(limit) => format!(" LIMIT {}", placeholder(Param::Count(i64::try_from(limit).unwrap_or(i64::MAX)))),
            None => String::new(),
        };
        let where_sql = if wheres.is_empty() { String::new() } else { format!("WHERE {}", wheres.join(" AND ")) };
        let order: Vec<String> = keys.iter().map(|key| format!("{} DESC", key.name())).collect();
        let outer_order: Vec<String> = keys.iter().map(|key| format!("c.{} DESC", key.name())).collect();
        let page =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints {where_sql} ORDER BY {}{limit}", order.join(", "));
        let sql = tuple_query(&page, &outer_order.join(", "));
        params.into_iter().fold(Statement::new(sql), |statement, param| match param {
            Param::Text(value) => statement.bind::<Text, _>(value),
            Param::Json(value) => statement.bind::<Jsonb, _>(JsonText(value)),
            Param::Count(value) => statement.bind::<BigInt, _>(value),
            Param::Texts(values) => statement.bind::<diesel::sql_types::Array<Text>, _>(values),
        })
    }
}

impl ListCursor {
    /// The cursor just after `tuple`.
    pub(crate) fn after(tuple: &CheckpointTuple) -> Self {
        Self {
            checkpoint_id: tuple.config.checkpoint_id.clone(),
            checkpoint_ns: tuple.config.checkpoint_ns.clone(),
            thread_id: tuple.config.thread_id.clone(),
        }
    }

    fn value(&self, column: KeyColumn) -> &str {
        match column {
            KeyColumn::CheckpointId => &self.checkpoint_id,
            KeyColumn::CheckpointNs => &self.checkpoint_ns,
            KeyColumn::ThreadId => &self.thread_id,
        }
    }
}

impl Operation for ListScanOp<'_> {
    type Output = ScanOutcome;

    fn name(&self) -> &'static str {
        "list"
    }

    fn db_operation(&self) -> &'static str {
        "SELECT"
    }

    fn access(&self) -> Access {
        Access::ReadOnly
    }

    fn run<'c>(&'c self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<Self::Output>> {
        self.scan(conn).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_sql(query: &ListQuery, after: Option<&ListCursor>) -> String {
        let select = ListSelect { query, after, limit: Some(10) };
        diesel::debug_query::<diesel::pg::Pg, _>(&select.select()).to_string()
    }

    fn cursor() -> ListCursor {
        ListCursor { checkpoint_id: "c".into(), checkpoint_ns: "n".into(), thread_id: "t".into() }
    }

    #[test]
    fn a_thread_and_namespace_page_is_a_primary_key_range() {
        let query = ListQuery { thread_id: Some("t".into()), checkpoint_ns: Some(String::new()), ..Default::default() };
        let sql = page_sql(&query, Some(&cursor()));
        assert!(sql.contains("WHERE thread_id = $1 AND checkpoint_ns = $2 AND (checkpoint_id) < ($3) ORDER BY checkpoint_id DESC LIMIT $4"), "{sql}");
    }

    #[test]
    fn a_thread_page_without_namespace_orders_by_namespace_too() {
        let query = ListQuery { thread_id: Some("t".into()), ..Default::default() };
        let sql = page_sql(&query, Some(&cursor()));
        assert!(
            sql.contains("(checkpoint_id, checkpoint_ns) < ($2, $3) ORDER BY checkpoint_id DESC, checkpoint_ns DESC"),
            "{sql}"
        );
    }

    #[test]
    fn listing_every_thread_uses_the_full_key() {
        let sql = page_sql(&ListQuery::default(), None);
        assert!(
            sql.contains("FROM checkpoints  ORDER BY checkpoint_id DESC, checkpoint_ns DESC, thread_id DESC LIMIT $1"),
            "{sql}"
        );
    }

    #[test]
    fn filters_and_before_become_predicates() {
        let filter = crate::domain::JsonDocument::parse(br#"{"source": "loop"}"#.to_vec(), 8).ok();
        let query = ListQuery { thread_id: Some("t".into()), filter, before: Some("b".into()), ..Default::default() };
        let sql = page_sql(&query, None);
        assert!(sql.contains("WHERE thread_id = $1 AND metadata @> $2 AND checkpoint_id < $3"), "{sql}");
    }

    #[test]
    fn a_scoped_list_is_narrowed_to_the_tenants_threads() {
        let query = ListQuery { thread_prefixes: Some(vec!["a/".into()]), ..Default::default() };
        let sql = page_sql(&query, None);
        assert!(
            sql.contains(
                "EXISTS (SELECT 1 FROM unnest($1::text[]) AS p(prefix) WHERE starts_with(thread_id, p.prefix))"
            ),
            "{sql}"
        );
    }

    #[test]
    fn an_empty_filter_is_no_filter() {
        let filter = crate::domain::JsonDocument::parse(b"{}".to_vec(), 8).expect("an empty object");
        let query = ListQuery { filter: Some(filter), ..Default::default() };
        assert!(!page_sql(&query, None).contains("@>"));
    }
}
