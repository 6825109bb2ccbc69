//! The one pure classifier: every database failure becomes an [`ErrorClass`], which alone decides
//! retries, pool recreation and the gRPC status.
//!
//! Inputs are facts, not guesses: the SQLSTATE the server sent (the same in every language of
//! `lc_messages`), whether the connection is still usable afterwards, the IO error kind and which
//! phase of the call failed. Message text is read only for errors that do not come from
//! PostgreSQL: poolers (PgBouncer, Supavisor) that report several conditions under one SQLSTATE
//! or none ([`sqlstate_from_pooler_message`]).

use std::io;

use super::SqlState;

/// What kind of failure happened, which is all the retry loop needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The connection broke before COMMIT was sent (or during a read): nothing was applied.
    ConnectionLost,
    /// The connection broke while COMMIT was in flight: the write may or may not be stored.
    AmbiguousCommit,
    /// A pooler lost its server connection (`DbHandler exited`, `server conn crashed?`).
    PoolerBackendLost,
    /// The server is starting, stopping, in recovery, refusing connections, or read-only after a
    /// failover.
    ServerUnavailable,
    /// Serialization failure, deadlock or lock timeout: the transaction was rolled back.
    Contention,
    /// Out of connection slots or other server resources, or our own pool is saturated.
    Overloaded,
    /// The caller's deadline (or the statement timeout derived from it) ran out.
    Deadline,
    /// The database refused the data itself; retrying cannot help.
    Rejected,
    /// Credentials, database name, permissions or schema are wrong: a deployment problem.
    Misconfigured,
    /// Anything else: a bug or an unexpected server state.
    Internal,
}

impl ErrorClass {
    /// Every class, for tables and metrics.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::ConnectionLost,
        ErrorClass::AmbiguousCommit,
        ErrorClass::PoolerBackendLost,
        ErrorClass::ServerUnavailable,
        ErrorClass::Contention,
        ErrorClass::Overloaded,
        ErrorClass::Deadline,
        ErrorClass::Rejected,
        ErrorClass::Misconfigured,
        ErrorClass::Internal,
    ];

    /// Whether repeating the whole transaction may succeed. Writes may be repeated only because
    /// every checkpointd write is idempotent (upsert or insert-if-absent keyed by client ids), which
    /// is what makes [`ErrorClass::AmbiguousCommit`] retryable here.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::ConnectionLost
                | ErrorClass::AmbiguousCommit
                | ErrorClass::PoolerBackendLost
                | ErrorClass::ServerUnavailable
                | ErrorClass::Contention
                | ErrorClass::Overloaded
        )
    }

    /// Whether the failure says something about the path to the database, so that repeated
    /// occurrences justify rebuilding the pool (new DNS lookups, new TLS sessions, a new primary).
    pub fn suggests_pool_recreation(self) -> bool {
        matches!(
            self,
            ErrorClass::ConnectionLost
                | ErrorClass::AmbiguousCommit
                | ErrorClass::PoolerBackendLost
                | ErrorClass::ServerUnavailable
        )
    }

    /// The position of the class in [`ErrorClass::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name, used in logs, span attributes and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectionLost => "connection_lost",
            ErrorClass::AmbiguousCommit => "ambiguous_commit",
            ErrorClass::PoolerBackendLost => "pooler_backend_lost",
            ErrorClass::ServerUnavailable => "server_unavailable",
            ErrorClass::Contention => "contention",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Deadline => "deadline",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Misconfigured => "misconfigured",
            ErrorClass::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a call the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening a new connection (TCP, TLS, authentication, startup).
    Connect,
    /// Waiting for a pooled connection.
    Checkout,
    /// BEGIN or a statement inside the transaction: nothing is committed yet.
    Statement,
    /// COMMIT was sent: the outcome is unknown if the connection broke now.
    Commit,
}

/// The facts known about one failure.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// Where it happened.
    pub phase: Phase,
    /// The SQLSTATE the server (or pooler) sent, if any.
    pub sqlstate: Option<SqlState>,
    /// The server's or driver's message.
    pub message: &'a str,
    /// True when the connection can no longer be used.
    pub connection_broken: bool,
    /// The IO error behind a driver error, if any.
    pub io_kind: Option<io::ErrorKind>,
    /// True when our own timer (deadline, checkout wait) fired.
    pub timed_out: bool,
}

#[cfg(test)]
impl<'a> Failure<'a> {
    /// A failure with only a phase and a message; set the other facts with struct update syntax.
    pub(crate) fn new(phase: Phase, message: &'a str) -> Self {
        Failure { phase, sqlstate: None, message, connection_broken: false, io_kind: None, timed_out: false }
    }
}

/// Classifies one failure. Pure: the same facts always give the same class.
pub fn classify(failure: &Failure<'_>) -> ErrorClass {
    if failure.timed_out {
        return ErrorClass::Deadline;
    }
    let sqlstate = failure.sqlstate.or_else(|| sqlstate_from_pooler_message(failure.message));
    if sqlstate.is_some_and(|code| setup_statement_lost(code, failure.phase)) {
        return ErrorClass::PoolerBackendLost;
    }
    if let Some(class) = sqlstate.and_then(|code| class_of_sqlstate(code, failure.message)) {
        return escalate_if_commit_lost(class, failure);
    }
    if failure.connection_broken || failure.io_kind.is_some() || sqlstate.is_none() && failure.phase == Phase::Connect {
        return lost_connection_class(failure);
    }
    ErrorClass::Internal
}

/// diesel-async runs its connection setup (`SET TIME ZONE 'UTC'`, …) as named prepared
/// statements outside any transaction. Behind a transaction-mode pooler (PgBouncer) the Parse
/// and the Bind can reach different backends, so the setup fails with "prepared statement does
/// not exist" (or "already exists"). That is the pooler's backend switching under us, not a
/// misconfiguration: a new connection succeeds.
fn setup_statement_lost(code: SqlState, phase: Phase) -> bool {
    phase == Phase::Connect
        && matches!(code, SqlState::INVALID_SQL_STATEMENT_NAME | SqlState::DUPLICATE_PREPARED_STATEMENT)
}

/// A connection that broke during COMMIT leaves the outcome unknown, whatever the server said.
fn escalate_if_commit_lost(class: ErrorClass, failure: &Failure<'_>) -> ErrorClass {
    let lost =
        matches!(class, ErrorClass::ConnectionLost | ErrorClass::ServerUnavailable | ErrorClass::PoolerBackendLost);
    if lost && failure.phase == Phase::Commit {
        return ErrorClass::AmbiguousCommit;
    }
    class
}

fn lost_connection_class(failure: &Failure<'_>) -> ErrorClass {
    match failure.phase {
        Phase::Commit => ErrorClass::AmbiguousCommit,
        Phase::Connect | Phase::Checkout => match failure.io_kind {
            Some(io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound | io::ErrorKind::AddrNotAvailable) => {
                ErrorClass::ServerUnavailable
            }
            _ => ErrorClass::ConnectionLost,
        },
        Phase::Statement => ErrorClass::ConnectionLost,
    }
}

/// Maps a SQLSTATE to a class; `None` for codes that say nothing certain on their own. The
/// message is read only to tell apart what poolers report under one code.
fn class_of_sqlstate(code: SqlState, message: &str) -> Option<ErrorClass> {
    let class = match code {
        // Supavisor reports a lost backend as an internal error; any other XX000 is a server bug.
        SqlState::INTERNAL_ERROR if message.contains(SUPAVISOR_BACKEND_LOST) => ErrorClass::PoolerBackendLost,
        SqlState::PROTOCOL_VIOLATION => return pgbouncer_class(message),
        SqlState::ADMIN_SHUTDOWN
        | SqlState::CRASH_SHUTDOWN
        | SqlState::CANNOT_CONNECT_NOW
        | SqlState::READ_ONLY_TRANSACTION => ErrorClass::ServerUnavailable,
        SqlState::IDLE_SESSION_TIMEOUT | SqlState::IDLE_IN_TRANSACTION_TIMEOUT => ErrorClass::ConnectionLost,
        SqlState::SERIALIZATION_FAILURE | SqlState::DEADLOCK_DETECTED | SqlState::LOCK_NOT_AVAILABLE => {
            ErrorClass::Contention
        }
        SqlState::TOO_MANY_CONNECTIONS | SqlState::CONFIGURATION_LIMIT_EXCEEDED => ErrorClass::Overloaded,
        SqlState::QUERY_CANCELED => ErrorClass::Deadline,
        SqlState::INVALID_SQL_STATEMENT_NAME
        | SqlState::DUPLICATE_PREPARED_STATEMENT
        | SqlState::INVALID_CATALOG_NAME
        | SqlState::INSUFFICIENT_PRIVILEGE
        | SqlState::UNDEFINED_TABLE
        | SqlState::UNDEFINED_COLUMN
        | SqlState::FEATURE_NOT_SUPPORTED => ErrorClass::Misconfigured,
        SqlState::INTERNAL_ERROR | SqlState::DATA_CORRUPTED | SqlState::INDEX_CORRUPTED => ErrorClass::Internal,
        _ => return class_of_sqlstate_family(code),
    };
    Some(class)
}

/// PgBouncer reports its own conditions as `08P01` with an English text of its own.
fn pgbouncer_class(message: &str) -> Option<ErrorClass> {
    if message.contains(PGBOUNCER_SERVER_CRASHED) {
        Some(ErrorClass::PoolerBackendLost)
    } else if message.contains(PGBOUNCER_CLIENT_LIMIT) || message.contains(PGBOUNCER_QUERY_WAIT_TIMEOUT) {
        Some(ErrorClass::Overloaded)
    } else {
        Some(ErrorClass::ConnectionLost)
    }
}

fn class_of_sqlstate_family(code: SqlState) -> Option<ErrorClass> {
    let class = match code.class() {
        "08" => ErrorClass::ConnectionLost,
        "22" | "23" | "54" => ErrorClass::Rejected,
        "28" => ErrorClass::Misconfigured,
        "53" => ErrorClass::Overloaded,
        "58" | "42" => ErrorClass::Internal,
        _ => return None,
    };
    Some(class)
}

/// Supavisor's lost backend (`(EDBHANDLEREXITED) DbHandler exited`).
const SUPAVISOR_BACKEND_LOST: &str = "DbHandler exited";
/// PgBouncer lost its server connection mid-transaction.
const PGBOUNCER_SERVER_CRASHED: &str = "server conn crashed";
/// PgBouncer's `max_client_conn` or `max_db_connections` refused the client.
const PGBOUNCER_CLIENT_LIMIT: &str = "no more connections allowed";
/// PgBouncer waited `query_wait_timeout` for a server connection.
const PGBOUNCER_QUERY_WAIT_TIMEOUT: &str = "query_wait_timeout";

/// Pooler messages that may arrive without a SQLSTATE (a driver or proxy that passed on only
/// the text), and the SQLSTATE each comes with. PostgreSQL's own messages are never read: they
/// are translated, and the server always sends their SQLSTATE.
const POOLER_MESSAGE_SQLSTATES: &[(&str, SqlState)] = &[
    (SUPAVISOR_BACKEND_LOST, SqlState::INTERNAL_ERROR),
    (PGBOUNCER_SERVER_CRASHED, SqlState::PROTOCOL_VIOLATION),
    (PGBOUNCER_CLIENT_LIMIT, SqlState::PROTOCOL_VIOLATION),
    (PGBOUNCER_QUERY_WAIT_TIMEOUT, SqlState::PROTOCOL_VIOLATION),
];

/// Recovers a SQLSTATE from a pooler's message, for errors that reached us without one.
pub(super) fn sqlstate_from_pooler_message(message: &str) -> Option<SqlState> {
    POOLER_MESSAGE_SQLSTATES.iter().find(|(needle, _)| message.contains(needle)).map(|(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    struct Row {
        phase: Phase,
        sqlstate: Option<&'static str>,
        message: &'static str,
        broken: bool,
        io_kind: Option<io::ErrorKind>,
        expected: ErrorClass,
    }

    const fn row(phase: Phase, sqlstate: Option<&'static str>, message: &'static str, expected: ErrorClass) -> Row {
        Row { phase, sqlstate, message, broken: false, io_kind: None, expected }
    }

    const fn broken(phase: Phase, message: &'static str, expected: ErrorClass) -> Row {
        Row { phase, sqlstate: None, message, broken: true, io_kind: None, expected }
    }

    const fn io(phase: Phase, kind: io::ErrorKind, expected: ErrorClass) -> Row {
        Row { phase, sqlstate: None, message: "io error", broken: true, io_kind: Some(kind), expected }
    }

    use Phase::{Checkout, Commit, Connect, Statement};

    /// Every row of the resilience reference's SQLSTATE table, plus what the drivers report.
    const TABLE: &[Row] = &[
        // connection establishment
        io(Connect, io::ErrorKind::ConnectionRefused, ServerUnavailable),
        io(Connect, io::ErrorKind::TimedOut, ConnectionLost),
        io(Connect, io::ErrorKind::ConnectionReset, ConnectionLost),
        row(Connect, Some("08001"), "could not connect", ConnectionLost),
        row(Connect, Some("08004"), "server rejected the connection", ConnectionLost),
        row(Connect, Some("57P03"), "the database system is starting up", ServerUnavailable),
        row(Connect, Some("57P03"), "the database system is shutting down", ServerUnavailable),
        row(Connect, Some("53300"), "sorry, too many clients already", Overloaded),
        row(Connect, Some("28P01"), "password authentication failed for user \"app\"", Misconfigured),
        row(Connect, Some("28000"), "no pg_hba.conf entry", Misconfigured),
        row(Connect, Some("3D000"), "database \"x\" does not exist", Misconfigured),
        row(Connect, Some("08P01"), "no more connections allowed (max_client_conn)", Overloaded),
        row(Connect, None, "error performing TLS handshake: invalid peer certificate", ConnectionLost),
        row(Connect, Some("26000"), "prepared statement \"s22\" does not exist", PoolerBackendLost),
        row(Connect, Some("42P05"), "prepared statement \"s7\" already exists", PoolerBackendLost),
        // connections lost mid-call: the driver reports no SQLSTATE, only a message
        broken(Statement, "connection closed", ConnectionLost),
        broken(Statement, "SSL connection has been closed unexpectedly", ConnectionLost),
        broken(Commit, "connection closed", AmbiguousCommit),
        io(Statement, io::ErrorKind::UnexpectedEof, ConnectionLost),
        io(Commit, io::ErrorKind::ConnectionReset, AmbiguousCommit),
        row(Statement, Some("57P01"), "terminating connection due to administrator command", ServerUnavailable),
        row(Commit, Some("57P01"), "terminating connection due to administrator command", AmbiguousCommit),
        row(Statement, Some("57P01"), "terminating connection due to immediate shutdown command", ServerUnavailable),
        row(
            Statement,
            Some("57P02"),
            "terminating connection because of crash of another server process",
            ServerUnavailable,
        ),
        row(Statement, Some("57P05"), "terminating connection due to idle-session timeout", ConnectionLost),
        row(Statement, Some("25P03"), "terminating connection due to idle-in-transaction timeout", ConnectionLost),
        row(Statement, Some("08006"), "connection failure", ConnectionLost),
        row(Statement, Some("08003"), "connection does not exist", ConnectionLost),
        // poolers
        row(Statement, None, "(EDBHANDLEREXITED) DbHandler exited", PoolerBackendLost),
        row(Statement, Some("XX000"), "DbHandler exited", PoolerBackendLost),
        row(Commit, Some("XX000"), "DbHandler exited", AmbiguousCommit),
        row(Statement, None, "server conn crashed?", PoolerBackendLost),
        row(Statement, Some("08P01"), "query_wait_timeout", Overloaded),
        row(Statement, Some("26000"), "prepared statement \"s3\" does not exist", Misconfigured),
        row(Statement, Some("42P05"), "prepared statement \"s3\" already exists", Misconfigured),
        // failover
        row(Statement, Some("25006"), "cannot execute INSERT in a read-only transaction", ServerUnavailable),
        row(Statement, Some("57P03"), "the database system is in recovery mode", ServerUnavailable),
        // contention
        row(Statement, Some("40001"), "could not serialize access due to concurrent update", Contention),
        row(Statement, Some("40P01"), "deadlock detected", Contention),
        row(Statement, Some("55P03"), "canceling statement due to lock timeout", Contention),
        // resources and timeouts
        row(Statement, Some("57014"), "canceling statement due to statement timeout", Deadline),
        row(Statement, Some("53200"), "out of memory", Overloaded),
        row(Statement, Some("53100"), "could not extend file: No space left on device", Overloaded),
        // the caller's data
        row(Statement, Some("23505"), "duplicate key value violates unique constraint", Rejected),
        row(Statement, Some("22021"), "invalid byte sequence for encoding \"UTF8\": 0x00", Rejected),
        row(Statement, Some("22P05"), "unsupported Unicode escape sequence", Rejected),
        row(Statement, Some("54000"), "index row size 3000 exceeds btree version 4 maximum 2704", Rejected),
        row(Statement, Some("22P02"), "invalid input syntax for type json", Rejected),
        // our mistakes or the schema's
        row(Statement, Some("42P01"), "relation \"checkpoints\" does not exist", Misconfigured),
        row(Statement, Some("42501"), "permission denied for table checkpoints", Misconfigured),
        row(Statement, Some("42601"), "syntax error at or near", Internal),
        row(Statement, Some("XX000"), "cache lookup failed", Internal),
        row(Statement, None, "something nobody has seen before", Internal),
        // PostgreSQL's own texts are never read: without its SQLSTATE an English message is
        // as unknown as any other.
        row(Statement, None, "deadlock detected", Internal),
        row(Statement, None, "too many connections for role \"app\"", Internal),
        broken(Checkout, "validation took longer than 1s", ConnectionLost),
    ];

    #[test]
    fn every_row_of_the_table_classifies_as_documented() {
        for (i, r) in TABLE.iter().enumerate() {
            let failure = Failure {
                phase: r.phase,
                sqlstate: r.sqlstate.map(|code| SqlState::parse(code).expect("a valid SQLSTATE")),
                message: r.message,
                connection_broken: r.broken,
                io_kind: r.io_kind,
                timed_out: false,
            };
            assert_eq!(classify(&failure), r.expected, "row {i}: {:?} {:?} {:?}", r.phase, r.sqlstate, r.message);
        }
    }

    /// What a server with `lc_messages = 'de_DE.UTF-8'` sends (PostgreSQL 15's German catalog):
    /// every class is found from the SQLSTATE alone.
    const GERMAN: &[(Phase, &str, &str, ErrorClass)] = &[
        (Connect, "53300", "tut mir leid, schon zu viele Verbindungen", Overloaded),
        (Connect, "57P03", "das Datenbanksystem startet", ServerUnavailable),
        (Connect, "57P03", "das Datenbanksystem fährt herunter", ServerUnavailable),
        (
            Statement,
            "57P01",
            "Verbindung wird abgebrochen aufgrund von Anweisung des Administrators",
            ServerUnavailable,
        ),
        (Commit, "57P01", "Verbindung wird abgebrochen aufgrund von Anweisung des Administrators", AmbiguousCommit),
        (Statement, "40001", "konnte Zugriff nicht serialisieren wegen gleichzeitiger Aktualisierung", Contention),
        (Statement, "40P01", "Verklemmung (Deadlock) entdeckt", Contention),
        (Statement, "25006", "kann INSERT nicht in einer Read-Only-Transaktion ausführen", ServerUnavailable),
        (Statement, "57014", "storniere Anfrage wegen Statement-Timeout", Deadline),
        (Statement, "57P05", "Verbindung wird abgebrochen wegen Sitzungs-Leerlauf-Timeout", ConnectionLost),
        (Connect, "26000", "vorbereitete Anweisung »s3« existiert nicht", PoolerBackendLost),
        (Connect, "28P01", "Passwort-Authentifizierung für Benutzer »app« fehlgeschlagen", Misconfigured),
        (Statement, "22021", "ungültige Byte-Sequenz für Kodierung »UTF8«: 0x00", Rejected),
    ];

    #[test]
    fn german_server_messages_classify_by_their_sqlstate() {
        for (phase, code, message, expected) in GERMAN {
            let failure =
                Failure { sqlstate: SqlState::parse(code), connection_broken: false, ..Failure::new(*phase, message) };
            assert_eq!(classify(&failure), *expected, "{code} {message}");
        }
    }

    #[test]
    fn every_pooler_message_is_recognised_without_a_sqlstate() {
        let expected = [
            ("(EDBHANDLEREXITED) DbHandler exited", PoolerBackendLost),
            ("server conn crashed?", PoolerBackendLost),
            ("no more connections allowed (max_client_conn)", Overloaded),
            ("query_wait_timeout", Overloaded),
        ];
        assert_eq!(expected.len(), POOLER_MESSAGE_SQLSTATES.len());
        for (message, class) in expected {
            assert_eq!(classify(&Failure::new(Statement, message)), class, "{message}");
        }
    }

    #[test]
    fn our_own_timer_always_means_deadline() {
        let failure = Failure { timed_out: true, connection_broken: true, ..Failure::new(Commit, "connection closed") };
        assert_eq!(classify(&failure), Deadline);
    }

    #[test]
    fn class_names_are_unique_snake_case() {
        let names: std::collections::HashSet<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorClass::ALL.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
