//! Round trips to PostgreSQL per call, counted on the wire, and the deadline of a statement that
//! runs alone (no transaction, so no `SET LOCAL statement_timeout`): a cancel request stops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use checkpointd::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestDb, eventually, get, put, put_writes, spawn_app, start, test_config, write};

/// A TCP proxy in front of PostgreSQL that counts the requests clients send that each wait for
/// an answer: a simple query (`Q`) or the `Sync` (`S`) that ends an extended-protocol exchange.
struct CountingProxy {
    port: u16,
    round_trips: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (counter, upstream) = (counter.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream.as_str()).await else { return };
                    relay(client, server, counter).await;
                });
            }
        });
        Self { port, round_trips }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, counter: Arc<AtomicU64>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let answers = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    let mut pending = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = from_client.read(&mut chunk).await {
        if n == 0 || to_server.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        count_messages(&mut pending, &mut started, &counter);
    }
    answers.abort();
}

/// Consumes the complete messages at the front of `pending`: first the untyped startup packet,
/// then typed messages (a type byte and a length that counts itself).
fn count_messages(pending: &mut Vec<u8>, started: &mut bool, counter: &AtomicU64) {
    loop {
        let header = usize::from(*started);
        let Some(length) = pending.get(header..header + 4) else { return };
        let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
        if pending.len() < header + length {
            return;
        }
        if *started && matches!(pending[0], b'Q' | b'S') {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        pending.drain(..header + length);
        *started = true;
    }
}

#[tokio::test]
async fn a_put_put_writes_get_tuple_delta_history_and_delete_thread_each_take_one_round_trip() {
    let db = TestDb::create().await;
    let upstream = db.url.split_once('@').and_then(|(_, rest)| rest.split_once('/')).map(|(host, _)| host);
    let upstream = upstream.expect("host:port in the test database URL").to_owned();
    let proxy = CountingProxy::start(upstream.clone()).await;
    let mut config = test_config(&db.url.replace(&upstream, &format!("127.0.0.1:{}", proxy.port)));
    // One connection, never pinged at checkout, and no monitor probes on the counted wire.
    config.pool.max_size = 1;
    config.pool.min_idle = 1;
    config.pool.validation_skip = Duration::from_secs(3600);
    config.monitor.enabled = false;
    config.storage.put_coalescing = None;
    let app = start(config, db).await;
    let mut client = app.client.clone();
    // The first calls prepare their statements (the first Put once migrations are done); count
    // the calls after them.
    eventually(Duration::from_secs(30), "the schema to be migrated", || {
        let mut client = client.clone();
        async move { client.put(put("warm", "", "c1", None)).await.is_ok() }
    })
    .await;
    client.put_writes(put_writes("warm", "", "c1", "task", vec![write("ch", b"v")])).await.expect("writes");
    get(&mut client, "warm", "", None).await;
    client.get_delta_channel_history(delta_history("warm")).await.expect("delta history");
    client.delete_thread(pb::DeleteThreadRequest { thread_id: "warm".into() }).await.expect("delete");
    let mut counted = Vec::new();
    let before = proxy.count();
    client.put(put("t", "", "c1", None)).await.expect("put");
    counted.push(("Put", proxy.count() - before));
    let before = proxy.count();
    client.put_writes(put_writes("t", "", "c1", "task", vec![write("ch", b"v")])).await.expect("writes");
    counted.push(("PutWrites", proxy.count() - before));
    let before = proxy.count();
    assert!(get(&mut client, "t", "", None).await.is_some());
    counted.push(("GetTuple", proxy.count() - before));
    let before = proxy.count();
    let history = client.get_delta_channel_history(delta_history("t")).await.expect("delta history");
    assert_eq!(history.into_inner().channels.len(), 1);
    counted.push(("GetDeltaChannelHistory", proxy.count() - before));
    let before = proxy.count();
    client.delete_thread(pb::DeleteThreadRequest { thread_id: "t".into() }).await.expect("delete");
    counted.push(("DeleteThread", proxy.count() - before));
    let expected = [("Put", 1), ("PutWrites", 1), ("GetTuple", 1), ("GetDeltaChannelHistory", 1), ("DeleteThread", 1)];
    assert_eq!(counted, expected);
}

/// The delta history of channel `ch` at the latest checkpoint of `thread`.
fn delta_history(thread: &str) -> pb::GetDeltaChannelHistoryRequest {
    pb::GetDeltaChannelHistoryRequest {
        thread_id: thread.into(),
        checkpoint_ns: String::new(),
        checkpoint_id: None,
        channels: vec!["ch".into()],
    }
}

#[tokio::test]
async fn a_statement_stopped_by_its_deadline_is_cancelled_and_its_connection_serves_on() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    client.put(put("t", "", "c1", None)).await.expect("first version");
    let holder = app.sql().await;
    holder.batch_execute("BEGIN; SELECT 1 FROM checkpoints WHERE thread_id = 't' FOR UPDATE").await.expect("lock");
    let mut second = put("t", "", "c1", None);
    second.metadata_json = br#"{"source": "update", "step": 1}"#.to_vec();
    let mut request = tonic::Request::new(second);
    request.set_timeout(Duration::from_millis(1000));
    let started = Instant::now();
    let status = client.put(request).await.expect_err("the row stays locked past the deadline");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(1150), "answered after {:?}", started.elapsed());
    // Still holding the lock: only a cancelled statement stops waiting for it.
    let sql = app.sql().await;
    let waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
    eventually(Duration::from_secs(5), "the timed-out statement to be cancelled", || async {
        sql.query_one(waiting, &[]).await.expect("activity").get::<_, i64>(0) == 0
    })
    .await;
    holder.batch_execute("COMMIT").await.expect("release");
    let source: String = sql
        .query_one("SELECT metadata ->> 'source' FROM checkpoints WHERE thread_id = 't'", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(source, "loop", "the Put reported as timed out was applied");
    client.put(put("t", "", "c2", Some("c1"))).await.expect("the pool serves on");
}
