//! GetTuple: latest, specific, missing, namespaces, parents and legacy pending sends.

use checkpointd::grpc::pb;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_latest_is_the_greatest_checkpoint_id_not_the_last_written() {
    let mut app = spawn_app().await;
    for id in ["1f0-b", "1f0-c", "1f0-a"] {
        app.client.put(put("t", "", id, None)).await.expect("put");
    }
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    assert_eq!(tuple.config.expect("config").checkpoint_id, "1f0-c");
}

#[tokio::test]
async fn a_missing_thread_or_checkpoint_is_an_absent_tuple_not_an_error() {
    let mut app = spawn_app().await;
    assert_eq!(get(&mut app.client, "nobody", "", None).await, None);
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    assert_eq!(get(&mut app.client, "t", "", Some("c9")).await, None);
    assert_eq!(get(&mut app.client, "t", "other-ns", None).await, None);
}

#[tokio::test]
async fn namespaces_are_separate_and_the_config_names_the_stored_row() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    app.client.put(put("t", "child:abc", "c2", None)).await.expect("put");
    let root = get(&mut app.client, "t", "", None).await.expect("root");
    let child = get(&mut app.client, "t", "child:abc", None).await.expect("child");
    assert_eq!(root.config.expect("config").checkpoint_id, "c1");
    let config = child.config.expect("config");
    assert_eq!((config.checkpoint_ns.as_str(), config.checkpoint_id.as_str()), ("child:abc", "c2"));
}

#[tokio::test]
async fn the_parent_config_is_set_only_for_a_non_empty_parent() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "ns", "c1", None)).await.expect("put");
    app.client.put(put("t", "ns", "c2", Some("c1"))).await.expect("put");
    app.client.put(put("t", "ns", "c3", Some(""))).await.expect("put");
    let parent = |t: Option<pb::CheckpointTuple>| t.expect("stored").parent_config;
    assert_eq!(parent(get(&mut app.client, "t", "ns", Some("c1")).await), None);
    assert_eq!(
        parent(get(&mut app.client, "t", "ns", Some("c2")).await),
        Some(pb::CheckpointConfig { thread_id: "t".into(), checkpoint_ns: "ns".into(), checkpoint_id: "c1".into() })
    );
    assert_eq!(parent(get(&mut app.client, "t", "ns", Some("c3")).await), None);
}

#[tokio::test]
async fn a_legacy_checkpoint_carries_its_parents_pending_sends_in_order() {
    let mut app = spawn_app().await;
    let mut parent = put("t", "", "c1", None);
    parent.checkpoint_json =
        serde_json::to_vec(&json!({"v": 3, "id": "c1", "channel_values": {}, "channel_versions": {}})).expect("json");
    app.client.put(parent).await.expect("put");
    for (task, data) in [("task-b", b"b".as_slice()), ("task-a", b"a".as_slice())] {
        let mut writes = put_writes("t", "", "c1", task, vec![write("__pregel_tasks", data)]);
        writes.task_path = "~__pregel_push".into();
        app.client.put_writes(writes).await.expect("sends");
    }
    let mut child = put("t", "", "c2", Some("c1"));
    child.checkpoint_json =
        serde_json::to_vec(&json!({"v": 3, "id": "c2", "channel_values": {}, "channel_versions": {"a": "2"}}))
            .expect("json");
    app.client.put(child).await.expect("put");

    let tuple = get(&mut app.client, "t", "", Some("c2")).await.expect("stored");
    let sends: Vec<Vec<u8>> = tuple.pending_sends.iter().map(|v| v.data.clone().unwrap_or_default()).collect();
    assert_eq!(sends, [b"a".to_vec(), b"b".to_vec()]);
    assert!(
        get(&mut app.client, "t", "", Some("c1")).await.expect("parent").pending_sends.is_empty(),
        "no parent, no sends"
    );
}

#[tokio::test]
async fn current_checkpoints_carry_no_pending_sends() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    app.client.put_writes(put_writes("t", "", "c1", "task", vec![write("__pregel_tasks", b"s")])).await.expect("w");
    app.client.put(put("t", "", "c2", Some("c1"))).await.expect("put");
    assert!(get(&mut app.client, "t", "", None).await.expect("stored").pending_sends.is_empty());
}
