//! The measurement loop: N agents, each with its own connection and thread, run one operation
//! for a warm-up and then a fixed window; latencies, throughput and the server's CPU and memory
//! are recorded for the window only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::BenchError;
use crate::payload::{checkpoint_id, put_request, put_writes_request};
use crate::process::{Usage, usage};
use checkpointd::grpc::pb;

pub(super) use crate::client::{Client, connect};

/// An operation to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A checkpoint with a 6.6 KB blob.
    Put,
    /// Three pending writes.
    PutWrites,
    /// The latest checkpoint of the agent's thread, with its blob and writes.
    GetTuple,
    /// The latest 10 checkpoints of a thread holding many.
    List,
}

impl Op {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::PutWrites => "put_writes",
            Op::GetTuple => "get_tuple",
            Op::List => "list",
        }
    }
}

/// What drove the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Driver {
    /// This load generator, through checkpointd.
    Checkpointd,
    /// pgbench, issuing checkpointd's statements straight to the database.
    Pgbench,
}

impl Driver {
    /// The name used in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Driver::Checkpointd => "checkpointd",
            Driver::Pgbench => "pgbench",
        }
    }
}

/// One measured step.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    pub driver: Driver,
    pub op: Op,
    pub concurrency: usize,
    pub repetition: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Server CPU time per operation, when the server's pid is known.
    pub server_cpu_ms_per_op: Option<f64>,
    /// The load generator's own CPU time per operation (it shares the machine).
    pub client_cpu_ms_per_op: Option<f64>,
    /// Server resident memory at the end of the window.
    pub server_rss_mib: Option<f64>,
    /// The server's peak resident memory so far.
    pub server_peak_rss_mib: Option<f64>,
    /// Anything that makes this step differ from what was asked.
    pub note: Option<String>,
}

/// Where and how long to measure.
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub target: SocketAddr,
    pub server_pid: Option<u32>,
    pub warmup: Duration,
    pub duration: Duration,
    /// The thread every List reads (seeded beforehand).
    pub list_thread: String,
    /// Prefix of the agents' own threads.
    pub run: String,
}

/// Measures `op` at `concurrency`.
pub(super) async fn measure(
    op: Op,
    concurrency: usize,
    repetition: usize,
    window: &Window,
) -> Result<Step, BenchError> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(connect(window.target).await?);
    }
    let measure_from = Instant::now() + window.warmup;
    let until = measure_from + window.duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let agent = Agent {
            client,
            thread: format!("{}-{}-c{concurrency}-r{repetition}-a{index}", window.run, op.name()),
            list_thread: window.list_thread.clone(),
            step: 0,
            errors: errors.clone(),
        };
        workers.push(tokio::spawn(agent.run(op, measure_from, until)));
    }
    tokio::time::sleep_until(measure_from).await;
    let before = window.server_pid.and_then(usage);
    let own_before = usage(std::process::id());
    tokio::time::sleep_until(until).await;
    let after = window.server_pid.and_then(usage);
    let own_after = usage(std::process::id());
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    let step = latency_step(
        Driver::Checkpointd,
        (op, concurrency, repetition),
        latencies,
        errors.load(Ordering::Relaxed),
        window.duration,
    );
    let step = Step { client_cpu_ms_per_op: cpu_per_op(own_before, own_after, step.ops), ..step };
    Ok(with_server_usage(step, before, after))
}

/// A step of `driver` measured from its latencies (µs) in a window of `window`.
pub(super) fn latency_step(
    driver: Driver,
    (op, concurrency, repetition): (Op, usize, usize),
    mut latencies: Vec<u32>,
    errors: u64,
    window: Duration,
) -> Step {
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let seconds = window.as_secs_f64();
    Step {
        driver,
        op,
        concurrency,
        repetition,
        ops,
        errors,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        p999_ms: percentile(&latencies, 0.999),
        server_cpu_ms_per_op: None,
        client_cpu_ms_per_op: None,
        server_rss_mib: None,
        server_peak_rss_mib: None,
        note: None,
    }
}

/// The `p` quantile (nearest rank) of sorted latencies in µs, in milliseconds.
pub(super) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// CPU milliseconds per operation between two readings.
fn cpu_per_op(before: Option<Usage>, after: Option<Usage>, ops: u64) -> Option<f64> {
    before.zip(after).filter(|_| ops > 0).map(|(b, a)| (a.cpu_seconds - b.cpu_seconds) * 1000.0 / ops as f64)
}

/// `step` with the server's CPU time per operation and memory over the window.
fn with_server_usage(step: Step, before: Option<Usage>, after: Option<Usage>) -> Step {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    Step {
        server_cpu_ms_per_op: cpu_per_op(before, after, step.ops),
        server_rss_mib: after.map(|a| mib(a.rss_bytes)),
        server_peak_rss_mib: after.map(|a| mib(a.peak_rss_bytes)),
        ..step
    }
}

/// One simulated agent.
struct Agent {
    client: Client,
    thread: String,
    list_thread: String,
    step: u64,
    errors: Arc<AtomicU64>,
}

impl Agent {
    /// Runs `op` until `until`, returning the latencies (µs) of calls started from `measure_from`.
    async fn run(mut self, op: Op, measure_from: Instant, until: Instant) -> Vec<u32> {
        if op == Op::GetTuple && self.once(Op::Put).await.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut latencies = Vec::new();
        loop {
            let started = Instant::now();
            if started >= until {
                return latencies;
            }
            let outcome = self.once(op).await;
            if started < measure_from {
                continue;
            }
            match outcome {
                Ok(()) => latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)),
                Err(_) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn once(&mut self, op: Op) -> Result<(), tonic::Status> {
        match op {
            Op::Put => {
                let parent = (self.step > 0).then(|| checkpoint_id(self.step - 1));
                self.client.put(put_request(&self.thread, self.step, parent.as_deref())).await?;
                self.step += 1;
            }
            Op::PutWrites => {
                self.client.put_writes(put_writes_request(&self.thread, 0, self.step)).await?;
                self.step += 1;
            }
            Op::GetTuple => {
                let request = pb::GetTupleRequest { thread_id: self.thread.clone(), ..Default::default() };
                let tuple = self.client.get_tuple(request).await?.into_inner().tuple;
                if tuple.is_none() {
                    return Err(tonic::Status::not_found("the agent's checkpoint is missing"));
                }
            }
            Op::List => {
                let request = pb::ListRequest {
                    thread_id: Some(self.list_thread.clone()),
                    checkpoint_ns: Some(String::new()),
                    limit: Some(10),
                    ..Default::default()
                };
                let mut stream = self.client.list(request).await?.into_inner();
                let mut read = 0;
                while stream.message().await?.is_some() {
                    read += 1;
                }
                if read != 10 {
                    return Err(tonic::Status::data_loss(format!("listed {read} checkpoints, not 10")));
                }
            }
        }
        Ok(())
    }
}

/// Puts `count` chained checkpoints into `thread` (with `concurrency` writers on disjoint ranges).
pub(super) async fn seed_thread(
    target: SocketAddr,
    thread: &str,
    count: u64,
    concurrency: u64,
) -> Result<(), BenchError> {
    let mut writers = Vec::new();
    let per_writer = count.div_ceil(concurrency.max(1));
    for writer in 0..concurrency.max(1) {
        let mut client = connect(target).await?;
        let thread = thread.to_owned();
        writers.push(tokio::spawn(async move {
            let first = writer * per_writer;
            for step in first..(first + per_writer).min(count) {
                let parent = step.checked_sub(1).map(checkpoint_id);
                client.put(put_request(&thread, step, parent.as_deref())).await.map_err(BenchError::call("Put"))?;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    Ok(())
}

/// How streaming a whole long thread went.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StreamCheck {
    pub checkpoints: u64,
    pub seconds: f64,
    pub server_rss_before_mib: Option<f64>,
    pub server_rss_peak_during_mib: Option<f64>,
}

/// Streams every checkpoint of `thread`, sampling the server's memory meanwhile.
pub(super) async fn stream_whole_thread(
    target: SocketAddr,
    server_pid: Option<u32>,
    thread: &str,
) -> Result<StreamCheck, BenchError> {
    let mut client = connect(target).await?;
    let mib = |u: Usage| u.rss_bytes as f64 / (1024.0 * 1024.0);
    let before = server_pid.and_then(usage).map(mib);
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = server_pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(u) = usage(pid) {
                    peak.fetch_max(u.rss_bytes, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let started = Instant::now();
    let request = pb::ListRequest {
        thread_id: Some(thread.to_owned()),
        checkpoint_ns: Some(String::new()),
        ..Default::default()
    };
    let mut stream = client.list(request).await.map_err(BenchError::call("List"))?.into_inner();
    let mut checkpoints = 0;
    while stream.message().await.map_err(BenchError::call("List"))?.is_some() {
        checkpoints += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let peak = peak.load(Ordering::Relaxed);
    Ok(StreamCheck {
        checkpoints,
        seconds,
        server_rss_before_mib: before,
        server_rss_peak_during_mib: (peak > 0).then(|| peak as f64 / (1024.0 * 1024.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates_come_from_the_window() {
        let latencies: Vec<u32> = (1..=1000).collect();
        let step = latency_step(Driver::Checkpointd, (Op::Put, 4, 1), latencies, 2, Duration::from_secs(2));
        assert_eq!(step.ops, 1000);
        assert_eq!(step.ops_per_sec, 500.0);
        assert_eq!((step.p50_ms, step.p99_ms, step.p999_ms), (0.5, 0.99, 0.999));
        assert_eq!(step.server_cpu_ms_per_op, None);
    }
}
