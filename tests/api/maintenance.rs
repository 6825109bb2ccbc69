//! DeleteThread, DeleteForRuns, CopyThread and Prune.

use checkpointd::grpc::pb;
use serde_json::json;

use crate::helpers::*;

async fn count(app: &TestApp, table: &str, thread: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table} WHERE thread_id = $1");
    app.sql().await.query_one(&sql, &[&thread]).await.expect("count").get(0)
}

/// Puts `ids` as a parent chain in `thread`/`ns`, each with a blob and a write.
async fn chain(app: &mut TestApp, thread: &str, ns: &str, ids: &[&str], run_id: &str) {
    let mut parent: Option<&str> = None;
    for (i, id) in ids.iter().enumerate() {
        let version = (i + 1).to_string();
        let mut request = put(thread, ns, id, parent);
        request.checkpoint_json = document(id, json!({}), json!({"ch": version}));
        request.metadata_json = json!({"run_id": run_id, "step": i}).to_string().into_bytes();
        request.blobs = vec![blob("ch", &version, id.as_bytes())];
        app.client.put(request).await.expect("put");
        app.client
            .put_writes(put_writes(thread, ns, id, "task", vec![write("w", id.as_bytes())]))
            .await
            .expect("writes");
        parent = Some(id);
    }
}

#[tokio::test]
async fn delete_thread_removes_every_namespace_and_nothing_else() {
    let mut app = spawn_app().await;
    chain(&mut app, "doomed", "", &["c1", "c2"], "r").await;
    chain(&mut app, "doomed", "child:1", &["c3"], "r").await;
    chain(&mut app, "kept", "", &["c1"], "r").await;
    app.client.delete_thread(pb::DeleteThreadRequest { thread_id: "doomed".into() }).await.expect("delete");
    for table in ["checkpoints", "checkpoint_blobs", "checkpoint_writes"] {
        assert_eq!(count(&app, table, "doomed").await, 0, "{table}");
        assert_eq!(count(&app, table, "kept").await, 1, "{table}");
    }
    app.client
        .delete_thread(pb::DeleteThreadRequest { thread_id: "doomed".into() })
        .await
        .expect("deleting again is a no-op");
}

#[tokio::test]
async fn delete_for_runs_removes_their_checkpoints_writes_and_unshared_blobs_in_every_namespace() {
    let mut app = spawn_app().await;
    chain(&mut app, "t", "", &["c1", "c2"], "run-a").await;
    chain(&mut app, "t", "child:1", &["c1"], "run-a").await;
    // c3 belongs to run-b, has c2 (run-a) as parent and still uses c2's blob version.
    let mut request = put("t", "", "c3", Some("c2"));
    request.checkpoint_json = document("c3", json!({}), json!({"ch": "2"}));
    request.metadata_json = br#"{"run_id": "run-b"}"#.to_vec();
    app.client.put(request).await.expect("put");

    app.client
        .delete_for_runs(pb::DeleteForRunsRequest { run_ids: vec!["run-a".into(), "nope".into()] })
        .await
        .expect("delete");

    let remaining = list(&mut app.client, pb::ListRequest { thread_id: Some("t".into()), ..Default::default() }).await;
    assert_eq!(ids(&remaining), ["c3"]);
    assert_eq!(remaining[0].parent_config, None, "the deleted parent is no longer referenced");
    assert_eq!(remaining[0].channel_values, vec![blob("ch", "2", b"c2")], "a blob still in use is kept");
    assert_eq!(count(&app, "checkpoint_writes", "t").await, 0);
    assert_eq!(count(&app, "checkpoint_blobs", "t").await, 1, "unshared blobs are gone");
    app.client.delete_for_runs(pb::DeleteForRunsRequest { run_ids: vec![] }).await.expect("empty list is a no-op");
}

#[tokio::test]
async fn copy_thread_copies_the_whole_chain_with_writes_and_blobs_and_can_be_repeated() {
    let mut app = spawn_app().await;
    chain(&mut app, "src", "", &["c1", "c2", "c3"], "r").await;
    chain(&mut app, "src", "child:1", &["c4"], "r").await;
    let copy = pb::CopyThreadRequest { source_thread_id: "src".into(), target_thread_id: "dst".into() };
    app.client.copy_thread(copy.clone()).await.expect("copy");
    app.client.copy_thread(copy).await.expect("repeating the copy changes nothing");

    let all = |thread: &str| pb::ListRequest { thread_id: Some(thread.into()), ..Default::default() };
    let source = list(&mut app.client, all("src")).await;
    let target = list(&mut app.client, all("dst")).await;
    assert_eq!(ids(&target), ids(&source));
    for (s, t) in source.iter().zip(&target) {
        assert_eq!(
            (&s.checkpoint_json, &s.metadata_json, &s.channel_values, &s.pending_writes),
            (&t.checkpoint_json, &t.metadata_json, &t.channel_values, &t.pending_writes)
        );
        assert_eq!(
            s.parent_config.as_ref().map(|p| &p.checkpoint_id),
            t.parent_config.as_ref().map(|p| &p.checkpoint_id)
        );
    }
    for table in ["checkpoints", "checkpoint_blobs", "checkpoint_writes"] {
        assert_eq!(count(&app, table, "dst").await, count(&app, table, "src").await, "{table}");
    }
}

#[tokio::test]
async fn copy_thread_from_nothing_copies_nothing_and_onto_itself_is_refused() {
    let mut app = spawn_app().await;
    app.client
        .copy_thread(pb::CopyThreadRequest { source_thread_id: "none".into(), target_thread_id: "dst".into() })
        .await
        .expect("copy");
    assert_eq!(count(&app, "checkpoints", "dst").await, 0);
    let same = pb::CopyThreadRequest { source_thread_id: "a".into(), target_thread_id: "a".into() };
    assert_eq!(app.client.copy_thread(same).await.expect_err("same thread").code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn prune_keep_latest_keeps_each_namespace_head_with_its_writes_and_nulls_dangling_parents() {
    let mut app = spawn_app().await;
    chain(&mut app, "t", "", &["c1", "c2", "c3"], "r").await;
    chain(&mut app, "t", "inner", &["c4", "c5"], "r").await;
    chain(&mut app, "other", "", &["c1", "c2"], "r").await;
    let request = pb::PruneRequest { thread_ids: vec!["t".into()], strategy: pb::PruneStrategy::KeepLatest.into() };
    app.client.prune(request).await.expect("prune");

    let kept = list(&mut app.client, pb::ListRequest { thread_id: Some("t".into()), ..Default::default() }).await;
    assert_eq!(ids(&kept), ["c5", "c3"]);
    assert!(kept.iter().all(|t| t.parent_config.is_none()), "parents were deleted, so the links are gone");
    assert!(kept.iter().all(|t| t.pending_writes.len() == 1 && t.channel_values.len() == 1));
    assert_eq!(count(&app, "checkpoint_blobs", "t").await, 2, "only the kept versions' blobs remain");
    assert_eq!(count(&app, "checkpoints", "other").await, 2, "other threads are untouched");
}

#[tokio::test]
async fn prune_delete_removes_the_threads() {
    let mut app = spawn_app().await;
    chain(&mut app, "a", "", &["c1", "c2"], "r").await;
    chain(&mut app, "b", "", &["c1"], "r").await;
    let request =
        pb::PruneRequest { thread_ids: vec!["a".into(), "b".into()], strategy: pb::PruneStrategy::Delete.into() };
    app.client.prune(request).await.expect("prune");
    for thread in ["a", "b"] {
        assert_eq!(count(&app, "checkpoints", thread).await + count(&app, "checkpoint_writes", thread).await, 0);
    }
}

#[tokio::test]
async fn prune_keep_latest_refuses_delta_channel_threads_and_changes_nothing() {
    let mut app = spawn_app().await;
    chain(&mut app, "plain", "", &["c1", "c2"], "r").await;
    let mut delta = put("delta", "", "c1", None);
    delta.metadata_json = br#"{"counters_since_delta_snapshot": {"messages": 1}}"#.to_vec();
    app.client.put(delta).await.expect("put");
    app.client.put(put("delta", "", "c2", Some("c1"))).await.expect("put");
    let request = pb::PruneRequest { thread_ids: vec!["plain".into(), "delta".into()], strategy: 0 };
    let status = app.client.prune(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("delta"), "{}", status.message());
    assert_eq!(count(&app, "checkpoints", "plain").await, 2, "nothing was pruned");
}

#[tokio::test]
async fn prune_of_nothing_is_a_no_op() {
    let mut app = spawn_app().await;
    for (id, parent) in [("c1", None), ("c2", Some("c1"))] {
        let mut request = put("kept", "", id, parent);
        request.blobs = vec![blob("b", id, id.as_bytes())];
        app.client.put(request).await.expect("put");
    }
    let rows = "SELECT (SELECT count(*) FROM checkpoints) || '/' || (SELECT count(*) FROM checkpoint_blobs)";
    let before: String = app.sql().await.query_one(rows, &[]).await.expect("rows").get(0);
    assert_eq!(before, "2/2");
    for strategy in [1, 2] {
        app.client.prune(pb::PruneRequest { thread_ids: vec![], strategy }).await.expect("empty");
        app.client.prune(pb::PruneRequest { thread_ids: vec!["missing".into()], strategy }).await.expect("missing");
    }
    let after: String = app.sql().await.query_one(rows, &[]).await.expect("rows").get(0);
    assert_eq!(after, before, "no other thread's rows were touched");
}
