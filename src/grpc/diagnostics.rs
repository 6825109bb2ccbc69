//! The DiagnosticsService: the store's snapshot of pool, retries and monitor, as a message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::grpc::pb;
use crate::grpc::pb::diagnostics_service_server::DiagnosticsService;
use crate::storage::{Diagnostics, Store};

/// Serves `GetStatus`.
#[derive(Debug, Clone)]
pub struct DiagnosticsGrpc {
    store: Arc<Store>,
    started: Instant,
}

impl DiagnosticsGrpc {
    /// Reports on `store`; uptime counts from now.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, started: Instant::now() }
    }
}

#[tonic::async_trait]
impl DiagnosticsService for DiagnosticsGrpc {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let mut response = status_message(self.store.diagnostics());
        response.uptime_seconds = self.started.elapsed().as_secs();
        Ok(Response::new(response))
    }
}

fn by_name<K: Copy>(counts: &[(K, u64)], name: impl Fn(K) -> &'static str) -> HashMap<String, u64> {
    counts.iter().map(|(k, n)| (name(*k).to_owned(), *n)).collect()
}

fn status_message(d: Diagnostics) -> pb::GetStatusResponse {
    let pool = d.pool;
    pb::GetStatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: 0,
        database_reachable: d.database_reachable,
        pool: Some(pb::PoolStatus {
            max_size: pool.max_size,
            connections: pool.connections,
            idle: pool.idle,
            waiting: pool.waiting,
            waited: pool.waited,
            timed_out: pool.timed_out,
            connections_created: pool.connections_created,
            connect_failures: pool.connect_failures,
            connections_closed: by_name(&pool.connections_closed, |c| c.as_str()),
            recreations: pool.recreations,
        }),
        retries_by_class: by_name(&d.retries_by_class, |c| c.as_str()),
        failures_by_class: by_name(&d.failures_by_class, |c| c.as_str()),
        last_error_class: d.last_error.map(|(c, _)| c.as_str().to_owned()).unwrap_or_default(),
        last_error_age_ms: d.last_error.map_or(0, |(_, age)| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        retry_budget_tokens: d.retry_budget,
        put_coalescing: d.put_coalescing.map(|c| pb::PutCoalescingStatus {
            queued: c.queued,
            batches: c.batches,
            puts: c.puts,
            overloaded: c.overloaded,
        }),
    }
}
