//! The soak: Put at a fixed concurrency for a long time, sampled at ten even intervals for rate,
//! latency and the server's memory, to show neither grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::BenchError;
use crate::payload::{checkpoint_id, put_request};
use crate::process::usage;
use crate::runner::{Window, connect, percentile};

/// Samples taken over the soak.
const SAMPLES: u32 = 10;

/// One interval of the soak.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SoakSample {
    /// Seconds since the soak began, at the end of the interval.
    pub at_seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub server_rss_mib: Option<f64>,
}

/// The whole soak.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Soak {
    pub concurrency: usize,
    pub seconds: f64,
    pub samples: Vec<SoakSample>,
}

impl Soak {
    /// The samples as a Markdown table.
    pub(crate) fn table(&self) -> String {
        let mut out = format!(
            "Soak: Put at {} agents for {:.0} s\n\n| at s | ops/s | p50 ms | p99 ms | errors | server RSS MiB |\n|---:|---:|---:|---:|---:|---:|\n",
            self.concurrency, self.seconds
        );
        for s in &self.samples {
            let rss = s.server_rss_mib.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
            out.push_str(&format!(
                "| {:.0} | {:.0} | {:.2} | {:.2} | {} | {rss} |\n",
                s.at_seconds, s.ops_per_sec, s.p50_ms, s.p99_ms, s.errors
            ));
        }
        out
    }
}

/// Latencies (µs) and errors of the current interval, shared by the agents.
#[derive(Default)]
struct Interval {
    latencies: Mutex<Vec<u32>>,
    errors: AtomicU64,
}

/// Runs the soak.
pub(super) async fn run(window: &Window, concurrency: usize, length: Duration) -> Result<Soak, BenchError> {
    let interval = Arc::new(Interval::default());
    let until = Instant::now() + length;
    let mut agents = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let client = connect(window.target).await?;
        let thread = format!("{}-soak-a{index}", window.run);
        agents.push(tokio::spawn(agent(client, thread, until, interval.clone())));
    }
    let began = Instant::now();
    let every = length / SAMPLES;
    let mut samples = Vec::with_capacity(SAMPLES as usize);
    for n in 1..=SAMPLES {
        let sample_start = Instant::now();
        tokio::time::sleep_until(began + every * n).await;
        let mut latencies = std::mem::take(&mut *interval.latencies.lock().map_err(|_| BenchError::Poisoned)?);
        latencies.sort_unstable();
        let seconds = sample_start.elapsed().as_secs_f64();
        samples.push(SoakSample {
            at_seconds: began.elapsed().as_secs_f64(),
            ops_per_sec: latencies.len() as f64 / seconds,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            errors: interval.errors.swap(0, Ordering::Relaxed),
            server_rss_mib: window.server_pid.and_then(usage).map(|u| u.rss_bytes as f64 / (1024.0 * 1024.0)),
        });
    }
    for agent in agents {
        agent.abort();
    }
    Ok(Soak { concurrency, seconds: length.as_secs_f64(), samples })
}

async fn agent(mut client: crate::runner::Client, thread: String, until: Instant, interval: Arc<Interval>) {
    let mut step: u64 = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let parent = step.checked_sub(1).map(checkpoint_id);
        match client.put(put_request(&thread, step, parent.as_deref())).await {
            Ok(_) => {
                let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                if let Ok(mut latencies) = interval.latencies.lock() {
                    latencies.push(micros);
                }
                step += 1;
            }
            Err(_) => {
                interval.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
