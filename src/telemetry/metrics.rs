//! The service's metrics, named after the OpenTelemetry semantic conventions where one exists:
//! call durations recorded as calls end, and the pool, retry and health counters observed from
//! one snapshot of the store's diagnostics per collection.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

use crate::storage::{Diagnostics, Store};

/// Histogram bucket bounds for call durations, in seconds.
const DURATION_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The pool name attribute (`db.client.connection.pool.name`).
const POOL_NAME: &str = "checkpointd";

fn meter() -> Meter {
    opentelemetry::global::meter("checkpointd")
}

/// Records gRPC call durations (`rpc.server.call.duration`).
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    duration: Histogram<f64>,
}

impl RpcMetrics {
    /// Instruments from the global meter provider (a no-op one when metrics are off).
    pub fn new() -> Self {
        let duration = meter()
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of gRPC calls handled by checkpointd, by method and status.")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        Self { duration }
    }

    /// Records one call.
    pub fn record(&self, service: &str, method: &str, status_code: i64, elapsed: Duration) {
        let attributes = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_owned()),
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", status_code),
        ];
        self.duration.record(elapsed.as_secs_f64(), &attributes);
    }
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How long one diagnostics snapshot serves: the callbacks of one collection run back to back,
/// so they all read the same snapshot instead of one each.
const SNAPSHOT_TTL: Duration = Duration::from_millis(100);

/// The store's diagnostics, read at most once per collection.
struct Snapshots {
    store: Arc<Store>,
    last: Mutex<Option<(Instant, Diagnostics)>>,
}

impl Snapshots {
    fn new(store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self { store, last: Mutex::new(None) })
    }

    /// The snapshot of this collection: a fresh one unless the last is younger than the TTL.
    fn diagnostics(&self) -> Diagnostics {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((taken, snapshot)) = last.as_ref()
            && taken.elapsed() < SNAPSHOT_TTL
        {
            return snapshot.clone();
        }
        let snapshot = self.store.diagnostics();
        *last = Some((Instant::now(), snapshot.clone()));
        snapshot
    }
}

/// Registers the observed instruments over `store`; they live as long as the meter provider.
pub fn observe_store(store: Arc<Store>) {
    let store = Snapshots::new(store);
    let meter = meter();
    let pool = || KeyValue::new("db.client.connection.pool.name", POOL_NAME);
    let s = store.clone();
    meter
        .u64_observable_gauge("db.client.connection.count")
        .with_description("Open database connections, by state.")
        .with_callback(move |o| {
            let p = s.diagnostics().pool;
            let used = p.connections.saturating_sub(p.idle);
            o.observe(u64::from(p.idle), &[pool(), KeyValue::new("db.client.connection.state", "idle")]);
            o.observe(u64::from(used), &[pool(), KeyValue::new("db.client.connection.state", "used")]);
        })
        .build();
    let s = store.clone();
    meter
        .u64_observable_gauge("db.client.connection.max")
        .with_description("The most database connections the pool may open.")
        .with_callback(move |o| o.observe(u64::from(s.diagnostics().pool.max_size), &[pool()]))
        .build();
    let s = store.clone();
    meter
        .u64_observable_gauge("db.client.connection.pending_requests")
        .with_description("Calls waiting for a database connection.")
        .with_callback(move |o| o.observe(s.diagnostics().pool.waiting, &[pool()]))
        .build();
    let s = store.clone();
    meter
        .u64_observable_counter("db.client.connection.timeouts")
        .with_description("Checkouts that gave up waiting for a connection.")
        .with_callback(move |o| o.observe(s.diagnostics().pool.timed_out, &[pool()]))
        .build();
    observe_churn(&meter, store.clone());
    observe_retries(&meter, store.clone());
    observe_health(&meter, store);
}

fn observe_churn(meter: &Meter, store: Arc<Snapshots>) {
    let s = store.clone();
    meter
        .u64_observable_counter("checkpointd.db.connections.created")
        .with_description("Database connections opened.")
        .with_callback(move |o| o.observe(s.diagnostics().pool.connections_created, &[]))
        .build();
    let s = store.clone();
    meter
        .u64_observable_counter("checkpointd.db.connection.failures")
        .with_description("Attempts to open a database connection that failed.")
        .with_callback(move |o| o.observe(s.diagnostics().pool.connect_failures, &[]))
        .build();
    let s = store.clone();
    meter
        .u64_observable_counter("checkpointd.db.connections.closed")
        .with_description("Database connections closed, by cause.")
        .with_callback(move |o| {
            for (cause, count) in s.diagnostics().pool.connections_closed {
                o.observe(count, &[KeyValue::new("cause", cause.as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("checkpointd.db.pool.recreations")
        .with_description("Times the connection pool was rebuilt after repeated connection failures.")
        .with_callback(move |o| o.observe(store.diagnostics().pool.recreations, &[]))
        .build();
}

fn observe_retries(meter: &Meter, store: Arc<Snapshots>) {
    let s = store.clone();
    meter
        .u64_observable_counter("checkpointd.db.retries")
        .with_description("Database transactions retried, by the class of the failure.")
        .with_callback(move |o| {
            for (class, count) in s.diagnostics().retries_by_class {
                o.observe(count, &[KeyValue::new("error.type", class.as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_counter("checkpointd.db.failures")
        .with_description("Calls whose database work failed after its last attempt, by class.")
        .with_callback(move |o| {
            for (class, count) in store.diagnostics().failures_by_class {
                o.observe(count, &[KeyValue::new("error.type", class.as_str())]);
            }
        })
        .build();
}

fn observe_health(meter: &Meter, store: Arc<Snapshots>) {
    let s = store.clone();
    meter
        .u64_observable_gauge("checkpointd.db.up")
        .with_description("1 while the database monitor reaches the database, else 0.")
        .with_callback(move |o| o.observe(u64::from(s.diagnostics().database_reachable), &[]))
        .build();
    meter
        .f64_observable_gauge("checkpointd.retry.budget")
        .with_description("Tokens left in the shared retry budget.")
        .with_callback(move |o| o.observe(store.diagnostics().retry_budget, &[]))
        .build();
}
