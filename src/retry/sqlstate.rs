//! PostgreSQL's SQLSTATE as a typed value: the five characters the server sends with every error,
//! the same in every language of `lc_messages`, and named constants for the codes the classifier
//! knows.

use std::fmt;

/// A SQLSTATE: five ASCII letters or digits, the first two naming its class.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// `57P01`: the administrator (or a fast/immediate shutdown) terminated the backend.
    pub const ADMIN_SHUTDOWN: Self = Self::known("57P01");
    /// `57P02`: another backend crashed and the server is resetting.
    pub const CRASH_SHUTDOWN: Self = Self::known("57P02");
    /// `57P03`: starting up, shutting down or in recovery.
    pub const CANNOT_CONNECT_NOW: Self = Self::known("57P03");
    /// `57P05`: `idle_session_timeout` ended the session.
    pub const IDLE_SESSION_TIMEOUT: Self = Self::known("57P05");
    /// `25P03`: `idle_in_transaction_session_timeout` ended the session.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: Self = Self::known("25P03");
    /// `25006`: a write reached a read-only server (a standby after failover).
    pub const READ_ONLY_TRANSACTION: Self = Self::known("25006");
    /// `40001`: serialization failure.
    pub const SERIALIZATION_FAILURE: Self = Self::known("40001");
    /// `40P01`: deadlock detected.
    pub const DEADLOCK_DETECTED: Self = Self::known("40P01");
    /// `55P03`: lock not available (`lock_timeout`, `NOWAIT`).
    pub const LOCK_NOT_AVAILABLE: Self = Self::known("55P03");
    /// `53300`: too many connections.
    pub const TOO_MANY_CONNECTIONS: Self = Self::known("53300");
    /// `53400`: a configured limit was exceeded.
    pub const CONFIGURATION_LIMIT_EXCEEDED: Self = Self::known("53400");
    /// `57014`: the statement was cancelled (statement timeout or a cancel request).
    pub const QUERY_CANCELED: Self = Self::known("57014");
    /// `26000`: the named prepared statement does not exist.
    pub const INVALID_SQL_STATEMENT_NAME: Self = Self::known("26000");
    /// `42P05`: the named prepared statement already exists.
    pub const DUPLICATE_PREPARED_STATEMENT: Self = Self::known("42P05");
    /// `3D000`: the database does not exist.
    pub const INVALID_CATALOG_NAME: Self = Self::known("3D000");
    /// `42501`: permission denied.
    pub const INSUFFICIENT_PRIVILEGE: Self = Self::known("42501");
    /// `42P01`: a table does not exist.
    pub const UNDEFINED_TABLE: Self = Self::known("42P01");
    /// `42703`: a column does not exist.
    pub const UNDEFINED_COLUMN: Self = Self::known("42703");
    /// `0A000`: feature not supported.
    pub const FEATURE_NOT_SUPPORTED: Self = Self::known("0A000");
    /// `08P01`: protocol violation; poolers (PgBouncer) report most of their own errors with it.
    pub const PROTOCOL_VIOLATION: Self = Self::known("08P01");
    /// `XX000`: internal error; Supavisor reports a lost backend with it.
    pub const INTERNAL_ERROR: Self = Self::known("XX000");
    /// `XX001`: data corrupted.
    pub const DATA_CORRUPTED: Self = Self::known("XX001");
    /// `XX002`: index corrupted.
    pub const INDEX_CORRUPTED: Self = Self::known("XX002");

    /// A code known at compile time; a code that is not five characters fails the build.
    const fn known(code: &str) -> Self {
        match Self::from_bytes(code.as_bytes()) {
            Some(state) => state,
            None => panic!("a SQLSTATE is five ASCII letters or digits"),
        }
    }

    /// The SQLSTATE in `code`, or `None` unless it is five ASCII letters or digits.
    pub fn parse(code: &str) -> Option<Self> {
        Self::from_bytes(code.as_bytes())
    }

    const fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let [a, b, c, d, e] = *bytes else { return None };
        let code = [a, b, c, d, e];
        let mut i = 0;
        while i < code.len() {
            if !code[i].is_ascii_alphanumeric() {
                return None;
            }
            i += 1;
        }
        Some(Self(code))
    }

    /// The five characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("?????")
    }

    /// The class: the first two characters (`08` connection exception, `23` integrity, …).
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_alphanumerics_parse_and_anything_else_does_not() {
        assert_eq!(SqlState::parse("57P01"), Some(SqlState::ADMIN_SHUTDOWN));
        for bad in ["", "5701", "57P011", "57P0 ", "57P0é"] {
            assert_eq!(SqlState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_class_is_the_first_two_characters() {
        assert_eq!(SqlState::PROTOCOL_VIOLATION.class(), "08");
        assert_eq!(SqlState::PROTOCOL_VIOLATION.to_string(), "08P01");
    }
}
