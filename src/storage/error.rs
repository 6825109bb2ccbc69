//! The one error type storage returns, already classified.

use diesel::result::DatabaseErrorInformation;

use crate::retry::{ErrorClass, SqlState};

/// The SQLSTATE diesel reports for a database error, as the classifier's type.
pub(crate) fn sqlstate_of(info: &(dyn DatabaseErrorInformation + Send + Sync)) -> Option<SqlState> {
    info.sqlstate().and_then(|code| SqlState::parse(code.as_str()))
}

/// A storage call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The database work failed; `class` says how and decides the gRPC status.
    /// `detail` is for logs and traces only: it may name tables or servers.
    #[error("{operation} failed after {attempts} attempt(s): {class}: {detail}")]
    Database {
        /// The operation (`put`, `list`, …).
        operation: &'static str,
        /// How it failed.
        class: ErrorClass,
        /// Attempts made, including the first.
        attempts: u32,
        /// The underlying message.
        detail: String,
        /// The SQLSTATE the database sent, if any: safe to show, unlike `detail`.
        sqlstate: Option<SqlState>,
    },
    /// The request cannot apply to the stored data; the message is meant for the caller.
    #[error("{0}")]
    Precondition(String),
}
