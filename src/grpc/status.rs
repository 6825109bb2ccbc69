//! The one mapping from service errors to gRPC statuses, exhaustive by error class.
//!
//! Messages tell the caller what happened and whether retrying helps; details (SQL, hosts,
//! server messages) go to the log and the trace, never to the client.

use tonic::{Code, Status};

use super::retry_hint::{OVERLOAD_PUSHBACK_MS, mark_retry_safe};
use crate::domain::ValidationError;
use crate::retry::{ErrorClass, SqlState};
use crate::storage::StorageError;

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        tracing::Span::current().record("error.type", "invalid_argument");
        Status::invalid_argument(error.to_string())
    }
}

impl From<StorageError> for Status {
    fn from(error: StorageError) -> Self {
        let (operation, class, sqlstate) = match &error {
            StorageError::Precondition(message) => {
                tracing::Span::current().record("error.type", "failed_precondition");
                return Status::failed_precondition(message.clone());
            }
            StorageError::Database { operation, class, sqlstate, .. } => (*operation, *class, *sqlstate),
        };
        log_failure(&error, class);
        tracing::Span::current().record("error.type", class.as_str());
        let (code, message) = match class {
            ErrorClass::ConnectionLost
            | ErrorClass::AmbiguousCommit
            | ErrorClass::PoolerBackendLost
            | ErrorClass::ServerUnavailable => (
                Code::Unavailable,
                format!("{operation}: the database is unavailable ({class}); the call is safe to retry"),
            ),
            ErrorClass::Contention => (
                Code::Aborted,
                format!("{operation}: conflicting concurrent changes persisted; the call is safe to retry"),
            ),
            ErrorClass::Overloaded => {
                (Code::ResourceExhausted, format!("{operation}: the database is saturated; retry with backoff"))
            }
            ErrorClass::Deadline => {
                (Code::DeadlineExceeded, format!("{operation}: the deadline passed before the database answered"))
            }
            ErrorClass::Rejected => (Code::InvalidArgument, rejected_message(operation, sqlstate)),
            ErrorClass::Misconfigured => {
                (Code::Internal, format!("{operation}: the service's database is misconfigured; see the server log"))
            }
            ErrorClass::Internal => (Code::Internal, format!("{operation}: internal error; see the server log")),
        };
        let status = Status::new(code, message);
        match class {
            ErrorClass::Overloaded => mark_retry_safe(status, Some(OVERLOAD_PUSHBACK_MS)),
            _ if matches!(code, Code::Unavailable | Code::Aborted) => mark_retry_safe(status, None),
            _ => status,
        }
    }
}

/// What a caller learns of data the database refused: the SQLSTATE, which names the reason
/// (PostgreSQL's error code table), never the database's message, which may quote the data.
fn rejected_message(operation: &str, sqlstate: Option<SqlState>) -> String {
    match sqlstate {
        Some(code) => format!(
            "{operation}: the database refused the data (SQLSTATE {code}); nothing was written; the server log has the reason"
        ),
        None => {
            format!("{operation}: the database refused the data; nothing was written; the server log has the reason")
        }
    }
}

fn log_failure(error: &StorageError, class: ErrorClass) {
    match class {
        ErrorClass::Internal | ErrorClass::Misconfigured => {
            tracing::error!(error = %error, error_class = %class, "call failed")
        }
        ErrorClass::Deadline | ErrorClass::Rejected => {
            tracing::debug!(error = %error, error_class = %class, "call failed")
        }
        _ => tracing::warn!(error = %error, error_class = %class, "call failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::retry_hint::{PUSHBACK_KEY, RETRY_SAFE_KEY};

    fn status_of(class: ErrorClass) -> Status {
        Status::from(StorageError::Database {
            operation: "put",
            class,
            attempts: 1,
            detail: "secret detail".into(),
            sqlstate: SqlState::parse("22021"),
        })
    }

    #[test]
    fn every_class_has_its_documented_code() {
        let expected = [
            (ErrorClass::ConnectionLost, Code::Unavailable),
            (ErrorClass::AmbiguousCommit, Code::Unavailable),
            (ErrorClass::PoolerBackendLost, Code::Unavailable),
            (ErrorClass::ServerUnavailable, Code::Unavailable),
            (ErrorClass::Contention, Code::Aborted),
            (ErrorClass::Overloaded, Code::ResourceExhausted),
            (ErrorClass::Deadline, Code::DeadlineExceeded),
            (ErrorClass::Rejected, Code::InvalidArgument),
            (ErrorClass::Misconfigured, Code::Internal),
            (ErrorClass::Internal, Code::Internal),
        ];
        assert_eq!(expected.len(), ErrorClass::ALL.len());
        for (class, code) in expected {
            assert_eq!(status_of(class).code(), code, "{class}");
        }
    }

    #[test]
    fn details_never_reach_messages_and_refused_data_names_its_sqlstate() {
        for class in ErrorClass::ALL {
            let status = status_of(class);
            assert!(!status.message().contains("secret detail"), "{class}");
            assert_eq!(status.message().contains("SQLSTATE 22021"), class == ErrorClass::Rejected, "{class}");
        }
    }

    #[test]
    fn overload_carries_a_pushback() {
        assert!(status_of(ErrorClass::Overloaded).metadata().get(PUSHBACK_KEY).is_some());
    }

    #[test]
    fn exactly_the_retryable_classes_are_marked_retry_safe() {
        for class in ErrorClass::ALL {
            let code = status_of(class).code();
            let marked = status_of(class).metadata().get(RETRY_SAFE_KEY).is_some();
            let retryable = matches!(code, Code::Unavailable | Code::Aborted | Code::ResourceExhausted);
            assert_eq!(marked, retryable, "{class}");
        }
    }

    #[test]
    fn preconditions_keep_their_message() {
        let status = Status::from(StorageError::Precondition("keep_latest can't prune".into()));
        assert_eq!((status.code(), status.message()), (Code::FailedPrecondition, "keep_latest can't prune"));
    }
}
