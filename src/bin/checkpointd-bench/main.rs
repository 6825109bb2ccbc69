//! `checkpointd-bench`: a load generator for a running (or self-started) checkpointd, with
//! LangGraph-shaped payloads, fixed concurrency levels, warm-up and fixed windows; it reports
//! throughput, latency percentiles, and the server's CPU per operation and memory, as JSON and as
//! a table. A binary of its own, so the server's binary carries no load generator.

mod client;
mod error;
mod payload;
mod pgbench;
mod process;
mod runner;
mod soak;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

pub(crate) use error::BenchError;
pub(crate) use pgbench::Pgbench;
pub(crate) use process::SpawnedServer;
pub(crate) use runner::{Driver, Op, Step, StreamCheck};
pub(crate) use soak::Soak;

use runner::Window;

/// `checkpointd-bench`: measures a checkpointd server, and optionally pgbench running its SQL.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct BenchArgs {
    /// A running server to measure; when unset, the `checkpointd` binary beside this one is
    /// started (needs --database-url).
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// The process id of --target, to report its CPU and memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The database of the server started for the benchmark.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Extra `serve` flags for the started server (repeat the option, e.g. --server-arg=--pool-max-size=32).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Operations to measure.
    #[arg(long, value_delimiter = ',', default_value = "put,put-writes,get-tuple,list")]
    pub ops: Vec<Op>,
    /// Concurrent agents, each with its own connection and thread.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub concurrency: Vec<usize>,
    /// Untimed run-in before each window.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Each measured window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Windows per operation and concurrency (the report gives the median and the range).
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Checkpoints in the thread that List reads the latest 10 of.
    #[arg(long, default_value_t = 10_000)]
    pub list_thread_size: u64,
    /// Also stream a thread of this many checkpoints whole, watching the server's memory (0: skip).
    #[arg(long, default_value_t = 0)]
    pub stream_thread_size: u64,
    /// Also run each step through this pgbench with checkpointd's own statements, straight
    /// against the database (needs --database-url), for the database's own rate.
    #[arg(long)]
    pub pgbench: Option<PathBuf>,
    /// After the steps, run Put for this long, sampling rate, latency and server memory (0: skip).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// Agents during the soak.
    #[arg(long, default_value_t = 32)]
    pub soak_concurrency: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The median and range of one operation at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub driver: Driver,
    pub op: Op,
    pub concurrency: usize,
    pub repetitions: usize,
    pub ops_per_sec_median: f64,
    pub ops_per_sec_min: f64,
    pub ops_per_sec_max: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub server_cpu_ms_per_op: Option<f64>,
    pub client_cpu_ms_per_op: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    /// Notes of its steps, once each.
    pub notes: Vec<String>,
}

/// checkpointd's median rate over pgbench's, for one operation and concurrency.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    pub op: Op,
    pub concurrency: usize,
    pub checkpointd_ops_per_sec: f64,
    pub pgbench_ops_per_sec: f64,
    pub ratio: f64,
}

/// Everything a benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub version: &'static str,
    pub steps: Vec<Step>,
    pub summary: Vec<Summary>,
    pub ratios: Vec<Ratio>,
    pub stream: Option<StreamCheck>,
    pub soak: Option<Soak>,
}

fn main() -> ExitCode {
    let args = <BenchArgs as clap::Parser>::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark and prints its table.
async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let spawned = match args.target {
        Some(_) => None,
        None => {
            let url = args.database_url.as_deref();
            let url = url.ok_or(BenchError::Usage("give --target, or --database-url to start a server"))?;
            Some(SpawnedServer::start(url, &args.server_args).map_err(BenchError::StartServer)?)
        }
    };
    let target = args.target.or(spawned.as_ref().map(|s| s.addr)).ok_or(BenchError::Usage("no target"))?;
    let server_pid = args.server_pid.or(spawned.as_ref().map(SpawnedServer::pid));
    process::wait_until_serving(target, Duration::from_secs(60)).await?;
    let run = format!("bench-{}", std::process::id());
    let window = Window {
        target,
        server_pid,
        warmup: args.warmup,
        duration: args.duration,
        list_thread: format!("{run}-list"),
        run: run.clone(),
    };
    if args.ops.contains(&Op::List) {
        eprintln!("seeding {} checkpoints for List...", args.list_thread_size);
        runner::seed_thread(target, &window.list_thread, args.list_thread_size.max(10), 16).await?;
    }
    let pgbench = match &args.pgbench {
        Some(binary) => Some(reference(binary, &args, &window).await?),
        None => None,
    };
    let steps = measure_all(&args, &window, pgbench.as_ref()).await?;
    let stream = if args.stream_thread_size > 0 {
        let thread = format!("{run}-stream");
        eprintln!("seeding {} checkpoints for the streaming check...", args.stream_thread_size);
        runner::seed_thread(target, &thread, args.stream_thread_size, 16).await?;
        Some(runner::stream_whole_thread(target, server_pid, &thread).await?)
    } else {
        None
    };
    let soak = if args.soak.is_zero() {
        None
    } else {
        eprintln!("soaking with Put at {} agents for {:?}...", args.soak_concurrency, args.soak);
        Some(soak::run(&window, args.soak_concurrency, args.soak).await?)
    };
    let summary = summarize(&steps);
    let report = Report { version: env!("CARGO_PKG_VERSION"), ratios: ratios(&summary), summary, steps, stream, soak };
    println!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).map_err(BenchError::io("write", path))?;
    }
    drop(spawned);
    Ok(report)
}

/// Every step, each followed by its pgbench reference when there is one, so noise on the
/// shared machine hits both alike.
async fn measure_all(args: &BenchArgs, window: &Window, pgbench: Option<&Pgbench>) -> Result<Vec<Step>, BenchError> {
    let mut steps = Vec::new();
    for &op in &args.ops {
        for &concurrency in &args.concurrency {
            for repetition in 1..=args.repetitions.max(1) {
                let step = runner::measure(op, concurrency, repetition, window).await?;
                progress(&step);
                steps.push(step);
                if let Some(pgbench) = pgbench {
                    let step = pgbench.measure(op, concurrency, repetition, args.warmup, args.duration).await?;
                    progress(&step);
                    steps.push(step);
                }
            }
        }
    }
    Ok(steps)
}

fn progress(step: &Step) {
    eprintln!(
        "{:<11} {:<10} c={:<4} rep {}: {:>9.1} ops/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
        step.driver.name(),
        step.op.name(),
        step.concurrency,
        step.repetition,
        step.ops_per_sec,
        step.p50_ms,
        step.p99_ms,
        step.errors
    );
}

/// The pgbench reference, with the thread its GetTuple reads seeded through the server.
async fn reference(binary: &std::path::Path, args: &BenchArgs, window: &Window) -> Result<Pgbench, BenchError> {
    let database_url = args.database_url.clone();
    let database_url =
        database_url.ok_or(BenchError::Usage("--pgbench needs --database-url (the server's database)"))?;
    let get_thread = format!("{}-pgbench-get", window.run);
    runner::seed_thread(window.target, &get_thread, 1, 1).await?;
    Ok(Pgbench { binary: binary.to_owned(), database_url, get_thread, list_thread: window.list_thread.clone() })
}

/// checkpointd's median over pgbench's, wherever both ran.
pub(crate) fn ratios(summary: &[Summary]) -> Vec<Ratio> {
    summary
        .iter()
        .filter(|s| s.driver == Driver::Checkpointd)
        .filter_map(|ours| {
            let reference = summary
                .iter()
                .find(|s| s.driver == Driver::Pgbench && s.op == ours.op && s.concurrency == ours.concurrency)?;
            Some(Ratio {
                op: ours.op,
                concurrency: ours.concurrency,
                checkpointd_ops_per_sec: ours.ops_per_sec_median,
                pgbench_ops_per_sec: reference.ops_per_sec_median,
                ratio: ours.ops_per_sec_median / reference.ops_per_sec_median.max(f64::MIN_POSITIVE),
            })
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Medians and ranges per (driver, operation, concurrency), in the order measured.
pub(crate) fn summarize(steps: &[Step]) -> Vec<Summary> {
    let mut keys: Vec<(Driver, Op, usize)> = Vec::new();
    for step in steps {
        if !keys.contains(&(step.driver, step.op, step.concurrency)) {
            keys.push((step.driver, step.op, step.concurrency));
        }
    }
    keys.into_iter()
        .map(|(driver, op, concurrency)| {
            let group: Vec<&Step> =
                steps.iter().filter(|s| (s.driver, s.op, s.concurrency) == (driver, op, concurrency)).collect();
            let collect = |f: fn(&Step) -> f64| group.iter().map(|s| f(s)).collect::<Vec<f64>>();
            let mut rates = collect(|s| s.ops_per_sec);
            let cpu: Vec<f64> = group.iter().filter_map(|s| s.server_cpu_ms_per_op).collect();
            let client_cpu: Vec<f64> = group.iter().filter_map(|s| s.client_cpu_ms_per_op).collect();
            Summary {
                driver,
                op,
                concurrency,
                repetitions: group.len(),
                ops_per_sec_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                ops_per_sec_max: rates.iter().copied().fold(0.0, f64::max),
                ops_per_sec_median: median(&mut rates),
                p50_ms: median(&mut collect(|s| s.p50_ms)),
                p99_ms: median(&mut collect(|s| s.p99_ms)),
                p999_ms: median(&mut collect(|s| s.p999_ms)),
                errors: group.iter().map(|s| s.errors).sum(),
                server_cpu_ms_per_op: (!cpu.is_empty()).then(|| median(&mut cpu.clone())),
                client_cpu_ms_per_op: (!client_cpu.is_empty()).then(|| median(&mut client_cpu.clone())),
                server_peak_rss_mib: group.iter().filter_map(|s| s.server_peak_rss_mib).reduce(f64::max),
                notes: group.iter().filter_map(|s| s.note.clone()).fold(Vec::new(), |mut notes, note| {
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                    notes
                }),
            }
        })
        .collect()
}

/// The summary as a Markdown table.
pub(crate) fn table(report: &Report) -> String {
    let mut out = String::from(
        "| driver | op | agents | ops/s (median, min–max) | p50 ms | p99 ms | p99.9 ms | server CPU ms/op | load generator CPU ms/op | server peak RSS MiB | errors |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let optional = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
    for s in &report.summary {
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} ({:.0}–{:.0}) | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
            s.driver.name(),
            s.op.name(),
            s.concurrency,
            s.ops_per_sec_median,
            s.ops_per_sec_min,
            s.ops_per_sec_max,
            s.p50_ms,
            s.p99_ms,
            s.p999_ms,
            optional(s.server_cpu_ms_per_op),
            optional(s.client_cpu_ms_per_op),
            optional(s.server_peak_rss_mib),
            s.errors
        ));
    }
    for s in report.summary.iter().filter(|s| !s.notes.is_empty()) {
        out.push_str(&format!(
            "\n{} {} at {} agents: {}\n",
            s.driver.name(),
            s.op.name(),
            s.concurrency,
            s.notes.join("; ")
        ));
    }
    if !report.ratios.is_empty() {
        out.push_str("\n| op | agents | checkpointd ops/s | pgbench ops/s | ratio |\n|---|---:|---:|---:|---:|\n");
        for r in &report.ratios {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0}% |\n",
                r.op.name(),
                r.concurrency,
                r.checkpointd_ops_per_sec,
                r.pgbench_ops_per_sec,
                r.ratio * 100.0
            ));
        }
    }
    if let Some(soak) = &report.soak {
        out.push('\n');
        out.push_str(&soak.table());
    }
    if let Some(stream) = &report.stream {
        out.push_str(&format!(
            "\nStreamed a {}-checkpoint thread in {:.1} s; server RSS {} MiB before, {} MiB at most during.\n",
            stream.checkpoints,
            stream.seconds,
            optional(stream.server_rss_before_mib),
            optional(stream.server_rss_peak_during_mib)
        ));
    }
    out
}
