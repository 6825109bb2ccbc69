//! Put: documents, blobs, parents and atomicity.

use std::time::Duration;

use checkpointd::grpc::pb;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn put_returns_where_it_stored_and_get_reads_it_back() {
    let mut app = spawn_app().await;
    let mut request = put("t1", "", "c1", None);
    request.checkpoint_json =
        document("c1", json!({"count": 3, "note": "hi"}), json!({"count": "1", "note": "1", "items": "1"}));
    request.blobs = vec![blob("items", "1", b"\x92\x01\x02")];
    let stored = app.client.put(request).await.expect("put").into_inner().config.expect("config");
    assert_eq!(
        (stored.thread_id.as_str(), stored.checkpoint_ns.as_str(), stored.checkpoint_id.as_str()),
        ("t1", "", "c1")
    );

    let tuple = get(&mut app.client, "t1", "", None).await.expect("stored");
    let document = json(&tuple.checkpoint_json);
    assert_eq!(document["channel_values"], json!({"count": 3, "note": "hi"}));
    assert_eq!(tuple.channel_values, vec![blob("items", "1", b"\x92\x01\x02")]);
    assert_eq!(json(&tuple.metadata_json), json!({"source": "loop", "step": 0}));
    assert_eq!(tuple.parent_config, None);
}

#[tokio::test]
async fn re_put_replaces_document_and_metadata_but_keeps_the_first_parent() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c2", None)).await.expect("first put");
    let mut again = put("t", "", "c2", Some("c1"));
    again.metadata_json = br#"{"source": "update", "step": 7}"#.to_vec();
    app.client.put(again).await.expect("second put");

    let tuple = get(&mut app.client, "t", "", Some("c2")).await.expect("stored");
    assert_eq!(tuple.parent_config, None, "the parent stored first (NULL) is kept");
    assert_eq!(json(&tuple.metadata_json)["source"], "update");
}

#[tokio::test]
async fn the_first_blob_of_a_channel_version_wins() {
    let mut app = spawn_app().await;
    let mut first = put("t", "", "c1", None);
    first.checkpoint_json = document("c1", json!({}), json!({"ch": "1"}));
    first.blobs = vec![blob("ch", "1", b"first")];
    app.client.put(first).await.expect("put");
    let mut second = put("t", "", "c2", Some("c1"));
    second.checkpoint_json = document("c2", json!({}), json!({"ch": "1"}));
    second.blobs = vec![blob("ch", "1", b"second")];
    app.client.put(second).await.expect("put");

    let tuple = get(&mut app.client, "t", "", Some("c2")).await.expect("stored");
    assert_eq!(tuple.channel_values, vec![blob("ch", "1", b"first")]);
}

#[tokio::test]
async fn an_unchanged_channel_is_read_from_the_version_an_older_put_stored() {
    let mut app = spawn_app().await;
    let mut first = put("t", "", "c1", None);
    first.checkpoint_json = document("c1", json!({}), json!({"a": "1", "b": "1"}));
    first.blobs = vec![blob("a", "1", b"a1"), blob("b", "1", b"b1")];
    app.client.put(first).await.expect("put");
    let mut second = put("t", "", "c2", Some("c1"));
    second.checkpoint_json = document("c2", json!({}), json!({"a": "2", "b": "1"}));
    second.blobs = vec![blob("a", "2", b"a2")];
    app.client.put(second).await.expect("put");

    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    assert_eq!(tuple.channel_values, vec![blob("a", "2", b"a2"), blob("b", "1", b"b1")]);
}

#[tokio::test]
async fn a_channel_missing_from_channel_versions_is_not_loaded() {
    let mut app = spawn_app().await;
    let mut first = put("t", "", "c1", None);
    first.checkpoint_json = document("c1", json!({}), json!({"gone": "1"}));
    first.blobs = vec![blob("gone", "1", b"x")];
    app.client.put(first).await.expect("put");
    app.client.put(put("t", "", "c2", Some("c1"))).await.expect("put");
    assert!(get(&mut app.client, "t", "", None).await.expect("stored").channel_values.is_empty());
}

#[tokio::test]
async fn values_stay_opaque_and_types_are_kept_byte_for_byte() {
    let mut app = spawn_app().await;
    let mut request = put("t", "", "c1", None);
    request.checkpoint_json = document("c1", json!({}), json!({"secret": "1", "nothing": "1"}));
    let binary: Vec<u8> = (0..=255).collect();
    request.blobs = vec![
        pb::ChannelBlob { channel: "secret".into(), version: "1".into(), value: Some(value("msgpack+aes", &binary)) },
        pb::ChannelBlob {
            channel: "nothing".into(),
            version: "1".into(),
            value: Some(pb::TypedValue { r#type: "empty".into(), data: None }),
        },
    ];
    app.client.put(request).await.expect("put");
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    let by_channel: Vec<_> =
        tuple.channel_values.iter().map(|b| (b.channel.as_str(), b.value.clone().expect("value"))).collect();
    assert_eq!(
        by_channel,
        [("nothing", pb::TypedValue { r#type: "empty".into(), data: None }), ("secret", value("msgpack+aes", &binary))]
    );
}

#[tokio::test]
async fn a_put_the_database_rejects_stores_nothing() {
    let mut app = spawn_app().await;
    // A constraint of the deployment's own: PostgreSQL, not our validator, refuses this checkpoint.
    let sql = app.sql().await;
    sql.batch_execute("ALTER TABLE checkpoints ADD CONSTRAINT no_poison CHECK (checkpoint_id <> 'poison')")
        .await
        .expect("constraint");
    let mut request = put("t", "", "poison", None);
    request.blobs = vec![blob("b", "1", b"orphan?")];
    let status = app.client.put(request).await.expect_err("the database refuses it");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("SQLSTATE 23514"), "names the reason by its code: {}", status.message());
    assert!(!status.message().contains("no_poison"), "the database's own message stays in the log");
    let stored: i64 = sql
        .query_one("SELECT (SELECT count(*) FROM checkpoint_blobs) + (SELECT count(*) FROM checkpoints)", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0, "neither the checkpoint nor its blob");
}

/// One refused checkpoint among concurrent Puts that share a transaction fails only its own
/// caller: the batch is re-run one Put at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checkpoint_fails_only_its_own_caller_in_a_shared_batch() {
    let app = spawn_app().await;
    let sql = app.sql().await;
    sql.batch_execute("ALTER TABLE checkpoints ADD CONSTRAINT no_poison CHECK (checkpoint_id <> 'poison')")
        .await
        .expect("constraint");
    let calls: Vec<_> = (0..24)
        .map(|n| {
            let mut client = app.client.clone();
            let id = if n == 11 { "poison".to_owned() } else { format!("c{n}") };
            tokio::spawn(async move { client.put(put(&format!("t{n}"), "", &id, None)).await.map(drop) })
        })
        .collect();
    let mut refused = Vec::new();
    for (n, call) in calls.into_iter().enumerate() {
        if let Err(status) = call.await.expect("call") {
            refused.push((n, status.code()));
        }
    }
    assert_eq!(refused, [(11, tonic::Code::InvalidArgument)]);
    let stored: i64 = sql.query_one("SELECT count(*) FROM checkpoints", &[]).await.expect("count").get(0);
    assert_eq!(stored, 23);
}

#[tokio::test]
async fn big_integers_keep_their_exact_value() {
    let mut app = spawn_app().await;
    let mut request = put("t", "", "c1", None);
    request.checkpoint_json =
        br#"{"v": 4, "id": "c1", "channel_values": {"n": 123456789012345678901234567890}, "channel_versions": {}}"#
            .to_vec();
    app.client.put(request).await.expect("put");
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    let text = String::from_utf8(tuple.checkpoint_json).expect("utf8");
    assert!(text.contains("123456789012345678901234567890"), "{text}");
}

#[tokio::test]
async fn puts_are_idempotent() {
    let mut app = spawn_app().await;
    let mut request = put("t", "ns", "c1", Some("c0"));
    request.checkpoint_json = document("c1", json!({}), json!({"a": "1"}));
    request.blobs = vec![blob("a", "1", b"x")];
    for _ in 0..3 {
        app.client.put(request.clone()).await.expect("put");
    }
    let sql = app.sql().await;
    let counts: (i64, i64) = {
        let row = sql
            .query_one("SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_blobs)", &[])
            .await
            .expect("counts");
        (row.get(0), row.get(1))
    };
    assert_eq!(counts, (1, 1));
}

/// Many agents putting at once: their Puts share transactions, and every caller is answered
/// with its own checkpoint, which is then stored with its own blob and parent.
#[tokio::test]
async fn concurrent_puts_sharing_commits_each_store_their_own_checkpoint() {
    let app = spawn_app().await;
    let mut calls = Vec::new();
    for agent in 0..48 {
        let mut client = app.client.clone();
        calls.push(tokio::spawn(async move {
            let thread = format!("agent-{agent}");
            let mut stored = Vec::new();
            for step in 0..4 {
                let id = format!("c{step}");
                let parent = (step > 0).then(|| format!("c{}", step - 1));
                let mut request = put(&thread, "", &id, parent.as_deref());
                request.checkpoint_json = document(&id, json!({}), json!({"ch": step.to_string()}));
                request.blobs = vec![blob("ch", &step.to_string(), format!("{thread}/{step}").as_bytes())];
                let config = client.put(request).await.expect("put").into_inner().config.expect("config");
                stored.push((config.thread_id, config.checkpoint_id));
            }
            stored
        }));
    }
    for (agent, call) in calls.into_iter().enumerate() {
        let thread = format!("agent-{agent}");
        let stored = call.await.expect("agent");
        let expected: Vec<(String, String)> = (0..4).map(|step| (thread.clone(), format!("c{step}"))).collect();
        assert_eq!(stored, expected, "each caller is answered with its own checkpoint");
    }
    let mut client = app.client.clone();
    for agent in [0, 17, 47] {
        let thread = format!("agent-{agent}");
        let tuple = get(&mut client, &thread, "", None).await.expect("stored");
        assert_eq!(tuple.config.expect("config").checkpoint_id, "c3");
        assert_eq!(tuple.parent_config.expect("parent").checkpoint_id, "c2");
        assert_eq!(tuple.channel_values, vec![blob("ch", "3", format!("{thread}/3").as_bytes())]);
    }
    let coalescing = app.status().await.put_coalescing.expect("coalescing is on");
    assert_eq!(coalescing.puts, 48 * 4);
    assert!(coalescing.batches < coalescing.puts, "Puts shared commits: {coalescing:?}");
}

/// Checkpoints close to the message-size limit, put concurrently: batches are capped by bytes,
/// so none grows past what the driver and the server take, and every Put is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_near_the_message_limit_are_each_stored() {
    const BLOB: usize = 60 << 20;
    let app = spawn_app_with(|c| {
        c.server.max_message_bytes = 64 << 20;
        if let Some(coalescing) = c.storage.put_coalescing.as_mut() {
            coalescing.max_batch_bytes = 32 << 20;
        }
    })
    .await;
    let mut calls = Vec::new();
    for agent in 0..6u8 {
        let mut client = app.client.clone().max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
        calls.push(tokio::spawn(async move {
            let mut request = put(&format!("big-{agent}"), "", "c1", None);
            request.checkpoint_json = document("c1", json!({}), json!({"ch": "1"}));
            request.blobs = vec![blob("ch", "1", &vec![agent; BLOB])];
            client.put(request).await.map(drop)
        }));
    }
    for call in calls {
        call.await.expect("agent").expect("a Put under the message limit is stored");
    }
    let rows =
        app.sql().await.query_one("SELECT count(*), min(length(blob)) FROM checkpoint_blobs", &[]).await.expect("rows");
    assert_eq!((rows.get::<_, i64>(0), rows.get::<_, i32>(1)), (6, BLOB as i32));
    let coalescing = app.status().await.put_coalescing.expect("coalescing is on");
    assert_eq!(coalescing.batches, coalescing.puts, "each Put over the byte cap ran alone: {coalescing:?}");
}

/// Concurrent Puts of one checkpoint cannot share a statement (an upsert touches a row once per
/// statement): they run one after another, all succeed, and one of them is what is stored.
#[tokio::test]
async fn concurrent_puts_of_the_same_checkpoint_all_succeed() {
    let app = spawn_app().await;
    let mut calls = Vec::new();
    for writer in 0..16 {
        let mut client = app.client.clone();
        calls.push(tokio::spawn(async move {
            let mut request = put("same", "", "c1", None);
            request.metadata_json = format!(r#"{{"source": "loop", "step": {writer}}}"#).into_bytes();
            client.put(request).await.map(drop)
        }));
    }
    for call in calls {
        call.await.expect("writer").expect("every put succeeds");
    }
    let mut client = app.client.clone();
    let tuple = get(&mut client, "same", "", Some("c1")).await.expect("stored");
    let step = json(&tuple.metadata_json)["step"].as_i64().expect("a step");
    assert!((0..16).contains(&step), "one writer's metadata is stored: {step}");
}

/// A Put its caller was told had failed (DEADLINE_EXCEEDED) is never applied afterwards, even
/// when it shared a batch with a Put whose caller waits longer: the batch runs to its members'
/// smallest deadline and withdraws the caller that gave up before it tries again. So a
/// DeleteThread after the failure stays the last word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reported_as_timed_out_is_never_applied_after_a_later_delete() {
    let app = spawn_app_with(|c| {
        if let Some(coalescing) = c.storage.put_coalescing.as_mut() {
            coalescing.max_transactions = 1;
        }
    })
    .await;
    let mut client = app.client.clone();
    for thread in ["x", "b"] {
        client.put(put(thread, "", "c1", None)).await.expect("existing row");
    }
    let (hold_x, hold_b) = (app.sql().await, app.sql().await);
    hold_x.batch_execute("BEGIN; SELECT 1 FROM checkpoints WHERE thread_id = 'x' FOR UPDATE").await.expect("lock x");
    hold_b.batch_execute("BEGIN; SELECT 1 FROM checkpoints WHERE thread_id = 'b' FOR UPDATE").await.expect("lock b");
    let sql = app.sql().await;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let lock_waiters = || async { sql.query_one(waiting, &[]).await.expect("activity").get::<_, i64>(0) };
    let timed = |thread: &str, deadline: Duration| {
        let mut request = tonic::Request::new(put(thread, "", "c1", None));
        request.set_timeout(deadline);
        let mut client = app.client.clone();
        tokio::spawn(async move { client.put(request).await.map(drop) })
    };
    // The only Put transaction is busy with x; a and b queue behind it.
    let x = timed("x", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "x to wait on its row", || async { lock_waiters().await == 1 }).await;
    let a = timed("a", Duration::from_millis(2000));
    let b = timed("b", Duration::from_secs(20));
    eventually(Duration::from_secs(10), "a and b to queue", || async {
        app.status().await.put_coalescing.is_some_and(|c| c.queued == 2)
    })
    .await;
    // x goes through; a and b then share a batch that waits on b's row past a's deadline.
    hold_x.batch_execute("COMMIT").await.expect("release x");
    x.await.expect("x").expect("x stored");
    eventually(Duration::from_secs(10), "the a+b batch to wait on b's row", || async { lock_waiters().await == 1 })
        .await;
    let status = a.await.expect("a").expect_err("a's deadline passes first");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    client.delete_thread(pb::DeleteThreadRequest { thread_id: "a".into() }).await.expect("delete a");
    hold_b.batch_execute("COMMIT").await.expect("release b");
    b.await.expect("b").expect("b stored once its row is free");
    let rows: i64 =
        sql.query_one("SELECT count(*) FROM checkpoints WHERE thread_id = 'a'", &[]).await.expect("count").get(0);
    assert_eq!(rows, 0, "the Put reported as timed out was applied after the thread was deleted");
}
