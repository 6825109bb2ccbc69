//! JSONB columns moved as text: bound from the client's own bytes and read back as PostgreSQL
//! renders them, never parsed into a tree on our side.

use std::io::Write;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;

/// The JSONB binary format is a version byte followed by the JSON text.
const JSONB_VERSION: u8 = 1;

/// JSON text to bind as a JSONB parameter. PostgreSQL parses it; it was validated beforehand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonText<S>(pub S);

impl<S: AsRef<str> + std::fmt::Debug> ToSql<Jsonb, Pg> for JsonText<S> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.0.as_ref().as_bytes())?;
        Ok(IsNull::No)
    }
}

/// A JSONB value read back as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredJson(pub String);

impl FromSql<Jsonb, Pg> for StoredJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((&JSONB_VERSION, text)) => Ok(StoredJson(std::str::from_utf8(text)?.to_owned())),
            Some((version, _)) => Err(format!("unsupported JSONB encoding version {version}").into()),
            None => Err("empty JSONB value".into()),
        }
    }
}
