//! The fault-injection suite: real PostgreSQL clusters (TLS-only, reached over TCP), real gRPC
//! agents keeping ledgers, and the faults a cloud database inflicts. Each scenario proves that
//! every acknowledged write reads back identical, every failed write re-sent with the same content
//! ends as exactly one copy, no call outlives its deadline by more than a small margin, and the
//! service returns to SERVING without a restart. Scenarios run one at a time.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod support;

mod connections;
mod network;
mod outages;
mod poolers;
mod secrets;
mod timeouts;

use std::time::Duration;

use support::cluster::Db;
use support::load::{LoadResult, Verdict};

/// Extra time a call may take beyond its deadline (scheduling on a loaded 2-core machine).
pub const MARGIN: Duration = Duration::from_millis(1500);

/// Runs blocking SQL as the superuser without stalling the runtime.
pub fn sql(db: &Db, statement: &str) -> String {
    tokio::task::block_in_place(|| db.sql(statement))
}

/// Prints one line per scenario for the closing report, and checks the secrets promise.
pub fn report(scenario: &str, result: &LoadResult, verdict: &Verdict, recovered_in: Option<Duration>) {
    println!(
        "FAULT-REPORT scenario={scenario} clients={} calls={} acknowledged={} resent={} lost={} longest_call={:?} recovered_in={} errors={:?}",
        result.options.clients,
        result.calls.calls,
        verdict.acknowledged,
        verdict.resent,
        verdict.lost.len(),
        verdict.longest_call,
        recovered_in.map_or_else(|| "-".to_owned(), |d| format!("{d:?}")),
        result.calls.codes,
    );
    secrets::assert_no_secret_leaked(&result.calls.messages);
}

/// Waits until `load` has made `calls` more calls than `before`.
pub async fn progress(load: &support::load::Load, calls: u64, what: &str) {
    let before = load.calls_so_far();
    helpers::eventually(Duration::from_secs(60), what, || async move { load.calls_so_far() >= before + calls }).await;
}
