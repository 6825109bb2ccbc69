//! GetDeltaChannelHistory: each channel's seed and the writes along the walk to it, as
//! LangGraph's Postgres saver answers `get_delta_channel_history`.

use checkpointd::grpc::pb;
use checkpointd::grpc::pb::delta_channel_history::Seed;
use serde_json::json;
use tonic::Code;

use crate::helpers::*;

/// A checkpoint whose channel `m` is at `version`, with a blob there when `stored`.
fn step(thread: &str, ns: &str, id: &str, parent: Option<&str>, version: &str, stored: bool) -> pb::PutRequest {
    let blobs = if stored { vec![blob("m", version, format!("seed@{id}").as_bytes())] } else { Vec::new() };
    let inline = if stored { json!({"m": true}) } else { json!({}) };
    pb::PutRequest {
        checkpoint_json: document(id, inline, json!({"m": version})),
        blobs,
        ..put(thread, ns, id, parent)
    }
}

async fn history(
    app: &mut TestApp,
    thread: &str,
    ns: &str,
    id: Option<&str>,
    channels: &[&str],
) -> Vec<pb::DeltaChannelHistory> {
    let request = pb::GetDeltaChannelHistoryRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: ns.to_owned(),
        checkpoint_id: id.map(str::to_owned),
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
    };
    app.client.get_delta_channel_history(request).await.expect("history").into_inner().channels
}

fn write_data(history: &pb::DeltaChannelHistory) -> Vec<String> {
    history
        .writes
        .iter()
        .map(|w| String::from_utf8(w.value.as_ref().and_then(|v| v.data.clone()).unwrap_or_default()).expect("utf-8"))
        .collect()
}

fn blob_seed(history: &pb::DeltaChannelHistory) -> Option<String> {
    match &history.seed {
        Some(Seed::SeedBlob(value)) => value.data.as_ref().map(|d| String::from_utf8_lossy(d).into_owned()),
        _ => None,
    }
}

/// c1 (seed) <- c2 <- c3 <- c4, each with one write to `m`, plus a fork c3 <- f4.
async fn chain(app: &mut TestApp, ns: &str) {
    let steps = [("c1", None, "1", true), ("c2", Some("c1"), "2", false), ("c3", Some("c2"), "3", false)];
    for (id, parent, version, stored) in steps {
        app.client.put(step("t", ns, id, parent, version, stored)).await.expect("put");
        let writes = vec![write("m", format!("w@{id}:b").as_bytes()), write("other", b"x")];
        app.client.put_writes(put_writes("t", ns, id, "task-b", writes)).await.expect("writes");
        app.client
            .put_writes(put_writes("t", ns, id, "task-a", vec![write("m", format!("w@{id}:a").as_bytes())]))
            .await
            .expect("writes");
    }
    app.client.put(step("t", ns, "c4", Some("c3"), "4", false)).await.expect("put");
    app.client.put(step("t", ns, "f4", Some("c2"), "4", false)).await.expect("fork");
}

#[tokio::test]
async fn the_walk_replays_the_ancestors_writes_oldest_first_on_top_of_the_seed() {
    let mut app = spawn_app().await;
    chain(&mut app, "").await;
    let got = history(&mut app, "t", "", Some("c4"), &["m"]).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].channel, "m");
    assert_eq!(blob_seed(&got[0]).as_deref(), Some("seed@c1"));
    assert_eq!(write_data(&got[0]), ["w@c1:a", "w@c1:b", "w@c2:a", "w@c2:b", "w@c3:a", "w@c3:b"]);
}

#[tokio::test]
async fn a_fork_sees_only_its_own_ancestors_and_no_id_means_the_latest() {
    let mut app = spawn_app().await;
    chain(&mut app, "child:1").await;
    let fork = history(&mut app, "t", "child:1", Some("f4"), &["m"]).await;
    assert_eq!(write_data(&fork[0]), ["w@c1:a", "w@c1:b", "w@c2:a", "w@c2:b"]);
    let latest = history(&mut app, "t", "child:1", None, &["m"]).await;
    assert_eq!(write_data(&latest[0]), write_data(&fork[0]), "f4 is the greatest id");
    let root_ns = history(&mut app, "t", "", None, &["m"]).await;
    assert!(root_ns[0].writes.is_empty() && root_ns[0].seed.is_none(), "another namespace is another chain");
}

#[tokio::test]
async fn inline_primitives_seed_and_a_walk_to_the_root_has_no_seed() {
    let mut app = spawn_app().await;
    let first = pb::PutRequest {
        checkpoint_json: document("c1", json!({"count": 7, "nothing": null}), json!({"count": "1", "nothing": "1"})),
        ..put("t", "", "c1", None)
    };
    app.client.put(first).await.expect("put");
    app.client.put(put("t", "", "c2", Some("c1"))).await.expect("put");
    let got = history(&mut app, "t", "", None, &["count", "nothing", "count"]).await;
    let channels: Vec<&str> = got.iter().map(|h| h.channel.as_str()).collect();
    assert_eq!(channels, ["count", "nothing"], "each channel once, in the order asked");
    assert_eq!(got[0].seed, Some(Seed::SeedInlineJson(b"7".to_vec())));
    assert_eq!(got[1].seed, None, "an inline null is no value: the walk reached the root");
}

#[tokio::test]
async fn a_missing_thread_or_checkpoint_has_empty_histories_and_bad_input_is_refused() {
    let mut app = spawn_app().await;
    chain(&mut app, "").await;
    for (thread, id) in [("nobody", None), ("t", Some("c0")), ("t", Some("c35"))] {
        let got = history(&mut app, thread, "", id, &["m"]).await;
        assert!(got[0].writes.is_empty() && got[0].seed.is_none(), "{thread} {id:?}");
    }
    assert!(history(&mut app, "t", "", None, &[]).await.is_empty());
    let request = pb::GetDeltaChannelHistoryRequest {
        thread_id: "t".into(),
        channels: vec![String::new()],
        ..Default::default()
    };
    let status = app.client.get_delta_channel_history(request).await.expect_err("an empty channel name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("channels[0]"), "{}", status.message());
}

#[tokio::test]
async fn a_walk_of_1500_ancestors_reaches_its_seed_with_every_write_in_order() {
    let mut app = spawn_app().await;
    let sql = app.sql().await;
    // 1,500 checkpoints in one chain, the seed at the first (longer than LangGraph's 1,024-row page).
    sql.batch_execute(
        r#"INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
           SELECT 't', '', 'c' || lpad(g::text, 5, '0'),
                  CASE WHEN g = 1 THEN NULL ELSE 'c' || lpad((g - 1)::text, 5, '0') END,
                  jsonb_build_object('v', 4, 'channel_values', CASE WHEN g = 1 THEN '{"n": 0}'::jsonb ELSE '{}'::jsonb END,
                                     'channel_versions', '{"n": "1"}'::jsonb),
                  '{}'
           FROM generate_series(1, 1500) AS g;
           INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
           SELECT 't', '', 'c' || lpad(g::text, 5, '0'), 'task', '', 0, 'n', 'msgpack', convert_to(g::text, 'UTF8')
           FROM generate_series(1, 1500) AS g"#,
    )
    .await
    .expect("a long chain");
    let got = history(&mut app, "t", "", None, &["n"]).await;
    assert_eq!(got[0].seed, Some(Seed::SeedInlineJson(b"0".to_vec())));
    let expected: Vec<String> = (1..1500).map(|g| g.to_string()).collect();
    assert_eq!(write_data(&got[0]), expected);
}
