//! `checkpointd status`: what the running server knows about its database, printed as a table
//! (what the original deployment's operators printed by hand).

use std::fmt::Write;
use std::process::ExitCode;

use tonic::transport::Endpoint;

use crate::cli::StatusArgs;
use crate::grpc::pb;
use crate::grpc::pb::diagnostics_service_client::DiagnosticsServiceClient;

/// Prints the status; exit 0 when the database is reachable, 1 when not, 2 without an answer.
pub(super) async fn show(args: &StatusArgs) -> ExitCode {
    match ask(args).await {
        Ok(status) => {
            print!("{}", render(&status));
            if status.database_reachable { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("status of {} failed: {e}", args.address());
            ExitCode::from(2)
        }
    }
}

async fn ask(args: &StatusArgs) -> Result<pb::GetStatusResponse, Box<dyn std::error::Error>> {
    let channel =
        Endpoint::from_shared(args.address())?.connect_timeout(args.timeout).timeout(args.timeout).connect().await?;
    let mut request = tonic::Request::new(pb::GetStatusRequest {});
    if let Ok(token) = std::env::var("CHECKPOINTD_TOKEN") {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(DiagnosticsServiceClient::new(channel).get_status(request).await?.into_inner())
}

/// The status as aligned `name  value` lines, non-zero counters only.
fn render(status: &pb::GetStatusResponse) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<32} {value}");
    };
    line("version", status.version.clone());
    line("uptime", format!("{}s", status.uptime_seconds));
    line("database reachable", status.database_reachable.to_string());
    if let Some(pool) = &status.pool {
        line("pool size / idle / max", format!("{} / {} / {}", pool.connections, pool.idle, pool.max_size));
        line("pool waiting now", pool.waiting.to_string());
        line("pool waits / timeouts", format!("{} / {}", pool.waited, pool.timed_out));
        line("connections created / failed", format!("{} / {}", pool.connections_created, pool.connect_failures));
        for (cause, n) in sorted(&pool.connections_closed) {
            line(&format!("connections closed: {cause}"), n.to_string());
        }
        line("pool recreations", pool.recreations.to_string());
    }
    for (class, n) in sorted(&status.retries_by_class) {
        line(&format!("retries: {class}"), n.to_string());
    }
    for (class, n) in sorted(&status.failures_by_class) {
        line(&format!("failed calls: {class}"), n.to_string());
    }
    let last = if status.last_error_class.is_empty() {
        "none".to_owned()
    } else {
        format!("{} ({} ms ago)", status.last_error_class, status.last_error_age_ms)
    };
    line("last error class", last);
    line("retry budget tokens", format!("{:.1}", status.retry_budget_tokens));
    if let Some(c) = &status.put_coalescing {
        let average = if c.batches == 0 { 0.0 } else { c.puts as f64 / c.batches as f64 };
        line("put batches / average size", format!("{} / {average:.1}", c.batches));
        line("puts queued now / overloaded", format!("{} / {}", c.queued, c.overloaded));
    }
    out
}

fn sorted(counts: &std::collections::HashMap<String, u64>) -> Vec<(&String, u64)> {
    let mut pairs: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k, *n)).collect();
    pairs.sort();
    pairs
}
