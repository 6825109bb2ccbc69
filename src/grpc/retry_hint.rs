//! The structured retry hints every retryable status carries: `checkpointd-retry-safe` and
//! gRPC's server pushback (`grpc-retry-pushback-ms`, gRFC A6).
//!
//! Clients retry UNAVAILABLE always, and ABORTED or RESOURCE_EXHAUSTED only when the status carries
//! [`RETRY_SAFE_KEY`]: a RESOURCE_EXHAUSTED without it (a message over the size limit) is final.
//! Clients read the marker, never the message text.

use tonic::Status;
use tonic::metadata::MetadataValue;

/// Trailing metadata key saying that retrying the call cannot duplicate or lose anything.
pub(crate) const RETRY_SAFE_KEY: &str = "checkpointd-retry-safe";
/// gRPC's server pushback key: how long the client should wait before its retry.
pub(crate) const PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";
/// Suggested wait before retrying an overloaded call.
pub(crate) const OVERLOAD_PUSHBACK_MS: u32 = 100;

/// Marks `status` as safe to retry, and asks for a pause first when `pushback_ms` is given.
pub(crate) fn mark_retry_safe(mut status: Status, pushback_ms: Option<u32>) -> Status {
    status.metadata_mut().insert(RETRY_SAFE_KEY, MetadataValue::from_static("true"));
    if let Some(ms) = pushback_ms {
        status.metadata_mut().insert(PUSHBACK_KEY, MetadataValue::from(ms));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_status_carries_the_marker_and_the_pushback() {
        let status = mark_retry_safe(Status::resource_exhausted("busy"), Some(OVERLOAD_PUSHBACK_MS));
        assert_eq!(status.metadata().get(RETRY_SAFE_KEY).map(|v| v.to_str().ok()), Some(Some("true")));
        assert_eq!(status.metadata().get(PUSHBACK_KEY).map(|v| v.to_str().ok()), Some(Some("100")));
    }

    #[test]
    fn a_marked_status_without_pushback_asks_for_no_pause() {
        let status = mark_retry_safe(Status::unavailable("down"), None);
        assert!(status.metadata().get(PUSHBACK_KEY).is_none());
    }
}
