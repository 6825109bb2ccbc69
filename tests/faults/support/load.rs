//! Concurrent agents writing checkpoints while a fault happens, each keeping a ledger of what it
//! sent and what was acknowledged; afterwards the ledger is checked against the database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use checkpointd::grpc::pb;
use checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use crate::helpers::{blob, channel, document};

/// Sets every call's deadline (sent as `grpc-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Duration);

impl Interceptor for Deadline {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.set_timeout(self.0);
        Ok(request)
    }
}

/// A client whose calls all carry `deadline`.
pub type Client = CheckpointServiceClient<InterceptedService<Channel, Deadline>>;

/// A client of the server at `addr` with a deadline on every call.
pub async fn client(addr: SocketAddr, deadline: Duration) -> Client {
    CheckpointServiceClient::with_interceptor(channel(addr).await, Deadline(deadline))
}

/// How the agents behave.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent agents, each with its own connection and thread.
    pub clients: usize,
    /// The deadline of every call.
    pub deadline: Duration,
    /// Client-side retries of retryable statuses (as the Python client does).
    pub retries: u32,
}

impl LoadOptions {
    /// 16 agents, 4 s deadlines, 5 retries.
    pub fn standard() -> Self {
        LoadOptions { clients: 16, deadline: Duration::from_secs(4), retries: 5 }
    }
}

/// One Put an agent made, and whether it was acknowledged.
#[derive(Debug, Clone)]
pub struct Sent {
    pub request: pb::PutRequest,
    pub acked: bool,
    pub last_error: Option<Code>,
}

/// Call timings across all agents.
#[derive(Debug, Default)]
pub struct Calls {
    inner: Mutex<CallStats>,
}

#[derive(Debug, Default, Clone)]
pub struct CallStats {
    pub calls: u64,
    pub errors: u64,
    pub longest: Duration,
    pub codes: std::collections::BTreeMap<String, u64>,
    /// Every distinct error message clients saw (checked for secrets).
    pub messages: std::collections::BTreeSet<String>,
}

impl Calls {
    fn record(&self, elapsed: Duration, status: Option<&tonic::Status>) {
        if let Ok(mut stats) = self.inner.lock() {
            stats.calls += 1;
            stats.longest = stats.longest.max(elapsed);
            if let Some(status) = status {
                stats.errors += 1;
                *stats.codes.entry(format!("{:?}", status.code())).or_default() += 1;
                stats.messages.insert(status.message().to_owned());
            }
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> CallStats {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Agents at work.
#[derive(Debug)]
pub struct Load {
    run: String,
    stop: CancellationToken,
    workers: Vec<JoinHandle<Vec<Sent>>>,
    pub calls: Arc<Calls>,
    pub options: LoadOptions,
}

/// What the agents did.
#[derive(Debug)]
pub struct LoadResult {
    /// The run's id, the prefix of its threads.
    pub run: String,
    pub sent: Vec<Sent>,
    pub calls: CallStats,
    pub options: LoadOptions,
}

/// Starts `options.clients` agents against the server at `addr`.
pub async fn start(addr: SocketAddr, options: LoadOptions) -> Load {
    let stop = CancellationToken::new();
    let calls = Arc::new(Calls::default());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut workers = Vec::new();
    for worker in 0..options.clients {
        let agent = Agent {
            client: client(addr, options.deadline).await,
            thread: format!("agent-{run}-{worker}"),
            worker,
            calls: calls.clone(),
            options: options.clone(),
        };
        workers.push(tokio::spawn(agent.run(stop.clone())));
    }
    Load { run, stop, workers, calls, options }
}

impl Load {
    /// Acknowledged writes so far.
    pub fn calls_so_far(&self) -> u64 {
        self.calls.snapshot().calls
    }

    /// Stops the agents and collects their ledgers.
    pub async fn finish(self) -> LoadResult {
        self.stop.cancel();
        let mut sent = Vec::new();
        for worker in self.workers {
            sent.extend(worker.await.expect("agent task"));
        }
        LoadResult { run: self.run, sent, calls: self.calls.snapshot(), options: self.options }
    }
}

struct Agent {
    client: Client,
    thread: String,
    worker: usize,
    calls: Arc<Calls>,
    options: LoadOptions,
}

impl Agent {
    async fn run(self, stop: CancellationToken) -> Vec<Sent> {
        let mut sent = Vec::new();
        let mut parent: Option<String> = None;
        let mut step = 0u32;
        while !stop.is_cancelled() {
            step += 1;
            let request = put_request(&self.thread, self.worker, step, parent.as_deref());
            let outcome = call(&self.calls, &self.options, || {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.put(request).await.map(drop) }
            })
            .await;
            if outcome.is_ok() {
                parent = Some(request.checkpoint_id.clone());
                let read = pb::GetTupleRequest {
                    thread_id: self.thread.clone(),
                    checkpoint_ns: String::new(),
                    checkpoint_id: None,
                };
                let _ = call(&self.calls, &self.options, || {
                    let mut client = self.client.clone();
                    let read = read.clone();
                    async move { client.get_tuple(read).await.map(drop) }
                })
                .await;
            }
            sent.push(Sent { request, acked: outcome.is_ok(), last_error: outcome.err() });
        }
        sent
    }
}

/// The Put an agent makes at `step`: a chained checkpoint with a blob derived from its position.
pub fn put_request(thread: &str, worker: usize, step: u32, parent: Option<&str>) -> pb::PutRequest {
    let id = format!("{step:08}");
    let payload: Vec<u8> = (0..512u32).map(|i| (i.wrapping_mul(31) ^ step ^ worker as u32) as u8).collect();
    pb::PutRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: String::new(),
        checkpoint_id: id.clone(),
        parent_checkpoint_id: parent.map(str::to_owned),
        checkpoint_json: document(&id, json!({"step": step}), json!({"payload": step.to_string()})),
        metadata_json: json!({"step": step, "worker": worker}).to_string().into_bytes(),
        blobs: vec![blob("payload", &step.to_string(), &payload)],
    }
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted | Code::Cancelled
    )
}

/// One call with the client's deadline and retries; records every attempt's duration.
pub async fn call<F, Fut>(calls: &Calls, options: &LoadOptions, mut attempt: F) -> Result<(), Code>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut backoff = Duration::from_millis(50);
    for retry in 0..=options.retries {
        let started = Instant::now();
        let guarded = tokio::time::timeout(options.deadline + Duration::from_secs(30), attempt());
        let result = match guarded.await {
            Ok(result) => result,
            Err(_) => Err(tonic::Status::internal("the call hung past its deadline")),
        };
        calls.record(started.elapsed(), result.as_ref().err());
        let result = result.map_err(|s| s.code());
        match result {
            Ok(()) => return Ok(()),
            Err(code) if retryable(code) && retry < options.retries => {
                tokio::time::sleep(backoff.mul_f64(rand::random::<f64>())).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(code) => return Err(code),
        }
    }
    Err(Code::Unavailable)
}

/// What checking the ledger against the database found.
#[derive(Debug)]
pub struct Verdict {
    /// Writes acknowledged during the fault.
    pub acknowledged: usize,
    /// Writes that failed during the fault and were sent again afterwards.
    pub resent: usize,
    /// Acknowledged writes missing or different afterwards (must be empty).
    pub lost: Vec<String>,
    /// Rows per thread beyond the distinct checkpoints sent (must be zero).
    pub extra_rows: i64,
    /// The longest single call.
    pub longest_call: Duration,
}

impl LoadResult {
    /// Reads every acknowledged write back, re-sends every failed one with the same content
    /// until it is stored, and counts the rows of every agent's thread.
    pub async fn verify(&self, addr: SocketAddr, db: &crate::support::cluster::Db) -> Verdict {
        self.verify_with(addr, &|statement| tokio::task::block_in_place(|| db.sql(statement))).await
    }

    /// As [`LoadResult::verify`], counting rows with `sql` (superuser SQL on the current primary).
    pub async fn verify_with(&self, addr: SocketAddr, sql: &(dyn Fn(&str) -> String + Sync)) -> Verdict {
        let calls = Calls::default();
        let patient = LoadOptions { clients: 1, deadline: Duration::from_secs(10), retries: 30 };
        let mut client = client(addr, patient.deadline).await;
        let mut lost = Vec::new();
        let mut resent = 0;
        for sent in &self.sent {
            let key = format!("{}/{}", sent.request.thread_id, sent.request.checkpoint_id);
            if !sent.acked {
                resent += 1;
                let stored = call(&calls, &patient, || {
                    let mut client = client.clone();
                    let request = sent.request.clone();
                    async move { client.put(request).await.map(drop) }
                })
                .await;
                assert_eq!(stored, Ok(()), "re-sending {key} after the fault failed");
            }
            if !stored_identically(&mut client, &sent.request).await {
                lost.push(key);
            }
        }
        let count = format!("SELECT count(*) FROM checkpoints WHERE thread_id LIKE 'agent-{}-%'", self.run);
        let rows: i64 = sql(&count).parse().unwrap_or(-1);
        let distinct: std::collections::BTreeSet<(&str, &str)> =
            self.sent.iter().map(|s| (s.request.thread_id.as_str(), s.request.checkpoint_id.as_str())).collect();
        Verdict {
            acknowledged: self.sent.iter().filter(|s| s.acked).count(),
            resent,
            lost,
            extra_rows: rows - distinct.len() as i64,
            longest_call: self.calls.longest,
        }
    }
}

async fn stored_identically(client: &mut Client, sent: &pb::PutRequest) -> bool {
    let request = pb::GetTupleRequest {
        thread_id: sent.thread_id.clone(),
        checkpoint_ns: sent.checkpoint_ns.clone(),
        checkpoint_id: Some(sent.checkpoint_id.clone()),
    };
    let Ok(response) = client.get_tuple(request).await else { return false };
    let Some(tuple) = response.into_inner().tuple else { return false };
    let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).ok();
    tuple.channel_values == sent.blobs
        && parse(&tuple.checkpoint_json) == parse(&sent.checkpoint_json)
        && parse(&tuple.metadata_json) == parse(&sent.metadata_json)
        && tuple.parent_config.map(|p| p.checkpoint_id) == sent.parent_checkpoint_id
}

impl Verdict {
    /// Asserts the scenario's promises: nothing lost, nothing duplicated, no call past its
    /// deadline by more than `margin`.
    pub fn assert_nothing_lost(&self, deadline: Duration, margin: Duration) {
        assert!(self.lost.is_empty(), "acknowledged writes lost or changed: {:?}", self.lost);
        assert_eq!(self.extra_rows, 0, "rows beyond the checkpoints sent");
        assert!(
            self.longest_call <= deadline + margin,
            "a call took {:?}, past its {deadline:?} deadline plus {margin:?}",
            self.longest_call
        );
        assert!(self.acknowledged > 0, "the load made progress");
    }
}
