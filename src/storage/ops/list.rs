//! List: one page of checkpoints, newest first, resuming after a keyset cursor.
//!
//! Pages keep server memory flat for threads of any length, and each page is its own short
//! transaction, so a slow reader holds no connection between pages. The sort key is the
//! checkpoint id (as LangGraph sorts) made unique by the columns the query does not fix, so the
//! cursor never skips or repeats a row; when thread and namespace are fixed the page is a range
//! scan of the primary key.

use diesel::QueryResult;
use diesel::sql_types::{BigInt, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::domain::{CheckpointTuple, ListQuery};
use crate::storage::json::JsonText;
use crate::storage::ops::read::{CHECKPOINT_COLUMNS, TupleRow, tuple_query};
use crate::storage::ops::{Access, Operation};
use crate::storage::statement::Statement;

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListCursor {
    pub(crate) checkpoint_id: String,
    pub(crate) checkpoint_ns: String,
    pub(crate) thread_id: String,
}

/// One page of a list.
pub(crate) struct ListPageOp<'a> {
    pub(crate) query: &'a ListQuery,
    pub(crate) after: Option<&'a ListCursor>,
    pub(crate) size: u64,
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

/// A value bound to a list page's placeholder.
enum Param<'a> {
    Text(&'a str),
    Json(&'a str),
    Count(i64),
    Texts(&'a [String]),
}

impl<'a> ListPageOp<'a> {
    pub(crate) fn statement(&self) -> Statement<'a> {
        let query = self.query;
        let keys = key_columns(query);
        let mut params: Vec<Param<'a>> = Vec::new();
        let mut placeholder = |param: Param<'a>| {
            params.push(param);
            format!("${}", params.len())
        };
        let mut wheres: Vec<String> = Vec::new();
        if let Some(thread_id) = &query.thread_id {
            wheres.push(format!("thread_id = {}", placeholder(Param::Text(thread_id))));
        }
        if let Some(ns) = &query.checkpoint_ns {
            wheres.push(format!("checkpoint_ns = {}", placeholder(Param::Text(ns))));
        }
        if let Some(id) = &query.checkpoint_id {
            wheres.push(format!("checkpoint_id = {}", placeholder(Param::Text(id))));
        }
        if let Some(filter) = query.filter.as_ref().filter(|f| !f.is_empty_object()) {
            wheres.push(format!("metadata @> {}", placeholder(Param::Json(filter.as_str()))));
        }
        if let Some(prefixes) = &query.thread_prefixes {
            let array = placeholder(Param::Texts(prefixes));
            wheres.push(format!(
                "EXISTS (SELECT 1 FROM unnest({array}::text[]) AS p(prefix) WHERE starts_with(thread_id, p.prefix))"
            ));
        }
        if let Some(before) = &query.before {
            wheres.push(format!("checkpoint_id < {}", placeholder(Param::Text(before))));
        }
        if let Some(cursor) = self.after {
            let values: Vec<String> = keys.iter().map(|key| placeholder(Param::Text(cursor.value(*key)))).collect();
            let names: Vec<&str> = keys.iter().map(|key| key.name()).collect();
            wheres.push(format!("({}) < ({})", names.join(", "), values.join(", ")));
        }
        let limit = placeholder(Param::Count(i64::try_from(self.size).unwrap_or(i64::MAX)));
        let where_sql = if wheres.is_empty() { String::new() } else { format!("WHERE {}", wheres.join(" AND ")) };
        let order: Vec<String> = keys.iter().map(|key| format!("{} DESC", key.name())).collect();
        let outer_order: Vec<String> = keys.iter().map(|key| format!("c.{} DESC", key.name())).collect();
        let page = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints {where_sql} ORDER BY {} LIMIT {limit}",
            order.join(", ")
        );
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

impl Operation for ListPageOp<'_> {
    type Output = Vec<CheckpointTuple>;

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
        let statement = self.statement();
        async move {
            let rows: Vec<TupleRow> = statement.load(conn).await?;
            Ok(rows.into_iter().map(TupleRow::into_tuple).collect())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_sql(query: &ListQuery, after: Option<&ListCursor>) -> String {
        let op = ListPageOp { query, after, size: 10 };
        diesel::debug_query::<diesel::pg::Pg, _>(&op.statement()).to_string()
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
