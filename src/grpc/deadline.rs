//! The call's deadline, read from the `grpc-timeout` header.
//!
//! tonic answers an expired `grpc-timeout` with CANCELLED; reading it ourselves lets storage stop
//! a little earlier and answer DEADLINE_EXCEEDED, the status clients expect.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// When to give up so the answer reaches the client before its deadline: the client's timeout
/// less a margin (a tenth of it, between 1 ms and 50 ms) for the response to travel.
pub(crate) fn client_deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_timeout(value)?;
    let margin = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
    Some(Instant::now() + timeout.saturating_sub(margin))
}

/// The deadline of a unary call: the client's, or `default` from now.
pub(crate) fn unary_deadline(metadata: &MetadataMap, default: Duration) -> Instant {
    client_deadline(metadata).unwrap_or_else(|| Instant::now() + default)
}

/// Parses `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    let duration = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_timeout(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_values() {
        for text in ["", "5", "S", "123456789S", "5x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(text), None, "{text}");
        }
    }
}
