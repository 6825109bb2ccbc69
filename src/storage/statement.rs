//! Raw SQL with `$n` placeholders that diesel-async may keep as a prepared statement.
//!
//! diesel's `sql_query` marks itself unsafe to cache, so every call would prepare its statement
//! again (an extra round trip and a fresh parse). [`Statement`] passes the same SQL through
//! `push_bind_param`, which keeps it cacheable: diesel-async's statement cache is keyed by the SQL
//! text and bind types. With the cache disabled (for PgBouncer in transaction mode) it behaves like
//! `sql_query`.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::borrow::Cow;
use std::marker::PhantomData;

/// One SQL statement and the values of its placeholders.
///
/// The SQL uses PostgreSQL placeholders `$1`, `$2`, …; a placeholder may appear several times.
/// Values are given in placeholder order with [`Statement::bind`].
pub(crate) struct Statement<'f> {
    sql: Cow<'static, str>,
    binds: Vec<Box<dyn BindValue + Send + 'f>>,
}

impl<'f> Statement<'f> {
    /// A statement with no values bound yet.
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: sql.into(), binds: Vec::new() }
    }

    /// The SQL text, with its `$n` placeholders.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// Binds the value of the next placeholder number.
    pub(crate) fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        self.binds.push(Box::new(TypedBind { value, sql_type: PhantomData::<ST> }));
        self
    }

    /// Executes the statement for its effect only, as an [`Operation`](super::ops::Operation) runs it.
    pub(crate) fn execute_on<'c>(self, conn: &'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>>
    where
        'f: 'c,
    {
        async move { self.execute(conn).await.map(drop) }.boxed()
    }
}

impl QueryFragment<Pg> for Statement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest: &str = &self.sql;
        while let Some(dollar) = rest.find('$') {
            out.push_sql(&rest[..dollar]);
            let digits = rest[dollar + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                out.push_sql("$");
                rest = &rest[dollar + 1..];
                continue;
            }
            let number: usize = rest[dollar + 1..dollar + 1 + digits]
                .parse()
                .map_err(|_| diesel::result::Error::QueryBuilderError("placeholder number too large".into()))?;
            let bind = number.checked_sub(1).and_then(|i| self.binds.get(i)).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(format!("no value bound for ${number}").into())
            })?;
            bind.push(&mut out)?;
            rest = &rest[dollar + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Statement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Statement<'_> {
    type SqlType = Untyped;
}

impl diesel::query_dsl::RunQueryDslSupport for Statement<'_> {}

trait BindValue {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct TypedBind<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<ST, V> BindValue for TypedBind<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, V>(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Integer, Text};

    fn render(statement: &Statement<'_>) -> String {
        diesel::debug_query::<Pg, _>(statement).to_string()
    }

    #[test]
    fn placeholders_become_sequential_binds_even_when_repeated() {
        let statement = Statement::new("SELECT $1, $2 WHERE a = $1").bind::<Text, _>("x").bind::<Integer, _>(7);
        let rendered = render(&statement);
        assert!(rendered.starts_with("SELECT $1, $2 WHERE a = $3"), "{rendered}");
        assert!(rendered.contains(r#"["x", 7, "x"]"#), "{rendered}");
    }

    #[test]
    fn a_dollar_without_digits_is_kept() {
        let statement = Statement::new("SELECT '$' || $1").bind::<Text, _>("x");
        assert!(render(&statement).starts_with("SELECT '$' || $1"));
    }

    #[test]
    fn a_placeholder_without_a_value_is_an_error() {
        use std::fmt::Write;
        let statement = Statement::new("SELECT $2").bind::<Text, _>("x");
        let mut rendered = String::new();
        assert!(write!(rendered, "{}", diesel::debug_query::<Pg, _>(&statement)).is_err());
    }
}
