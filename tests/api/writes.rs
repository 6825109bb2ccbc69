//! PutWrites: indexes, LangGraph's conflict rule, ordering and early writes.

use checkpointd::grpc::pb;

use crate::helpers::*;

fn written(tuple: &pb::CheckpointTuple) -> Vec<(String, String, Vec<u8>, String, i32)> {
    tuple
        .pending_writes
        .iter()
        .map(|w| {
            let data = w.value.as_ref().and_then(|v| v.data.clone()).unwrap_or_default();
            (w.task_id.clone(), w.channel.clone(), data, w.task_path.clone(), w.idx)
        })
        .collect()
}

#[tokio::test]
async fn writes_get_positions_and_special_channels_their_fixed_index() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    let request =
        put_writes("t", "", "c1", "task", vec![write("a", b"1"), write("__interrupt__", b"i"), write("b", b"2")]);
    app.client.put_writes(request).await.expect("writes");
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    let idx: Vec<(String, i32)> = tuple.pending_writes.iter().map(|w| (w.channel.clone(), w.idx)).collect();
    assert_eq!(idx, [("__interrupt__".to_owned(), -3), ("a".to_owned(), 0), ("b".to_owned(), 2)]);
}

#[tokio::test]
async fn special_writes_replace_only_when_the_whole_batch_is_special() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    let send = |writes| put_writes("t", "", "c1", "task", writes);
    app.client.put_writes(send(vec![write("__error__", b"e1")])).await.expect("w");
    app.client.put_writes(send(vec![write("__error__", b"e2")])).await.expect("w");
    app.client.put_writes(send(vec![write("__interrupt__", b"i1"), write("ch2", b"m1")])).await.expect("w");
    app.client.put_writes(send(vec![write("__interrupt__", b"i2"), write("ch2", b"m2")])).await.expect("w");
    app.client.put_writes(send(vec![write("ch", b"first")])).await.expect("w");
    app.client.put_writes(send(vec![write("ch", b"second")])).await.expect("w");

    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    let values: Vec<(String, Vec<u8>)> = written(&tuple).into_iter().map(|(_, c, d, _, _)| (c, d)).collect();
    assert_eq!(
        values,
        [
            ("__interrupt__".to_owned(), b"i1".to_vec()),
            ("__error__".to_owned(), b"e2".to_vec()),
            ("ch".to_owned(), b"first".to_vec()),
            ("ch2".to_owned(), b"m1".to_vec()),
        ]
    );
}

#[tokio::test]
async fn writes_may_arrive_before_their_checkpoint() {
    let mut app = spawn_app().await;
    app.client.put_writes(put_writes("t", "", "c1", "task", vec![write("a", b"early")])).await.expect("writes first");
    app.client.put(put("t", "", "c1", None)).await.expect("then the checkpoint");
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    assert_eq!(written(&tuple), [("task".to_owned(), "a".to_owned(), b"early".to_vec(), String::new(), 0)]);
}

#[tokio::test]
async fn pending_writes_are_ordered_by_task_path_then_task_then_index_in_code_point_order() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    let cases = [
        ("~__pregel_push, 0000000001", "b"),
        ("~__pregel_pull, a", "z"),
        ("", "null-task"),
        ("~__pregel_pull, a", "a"),
        ("A", "upper"),
    ];
    for (path, task) in cases {
        let mut request =
            put_writes("t", "", "c1", task, vec![write("x", task.as_bytes()), write("y", task.as_bytes())]);
        request.task_path = path.to_owned();
        app.client.put_writes(request).await.expect("writes");
    }
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    let order: Vec<(String, String, i32)> =
        written(&tuple).into_iter().map(|(task, _, _, path, idx)| (path, task, idx)).collect();
    let mut expected = order.clone();
    expected.sort();
    assert_eq!(order, expected, "Python's sort order (task_path, task_id, idx)");
    assert_eq!(order.first().map(|o| o.1.as_str()), Some("null-task"));
}

#[tokio::test]
async fn repeated_growing_lists_from_the_null_task_do_not_duplicate() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    let null_task = "00000000-0000-0000-0000-000000000000";
    app.client.put_writes(put_writes("t", "", "c1", null_task, vec![write("__resume__", b"r")])).await.expect("w");
    app.client.put_writes(put_writes("t", "", "c1", null_task, vec![write("x", b"1")])).await.expect("w");
    app.client
        .put_writes(put_writes("t", "", "c1", null_task, vec![write("x", b"1"), write("y", b"2")]))
        .await
        .expect("w");
    let tuple = get(&mut app.client, "t", "", None).await.expect("stored");
    assert_eq!(tuple.pending_writes.len(), 3);
}

#[tokio::test]
async fn an_empty_batch_is_a_no_op() {
    let mut app = spawn_app().await;
    app.client.put_writes(put_writes("t", "", "c1", "task", vec![])).await.expect("no-op");
    let rows: i64 =
        app.sql().await.query_one("SELECT count(*) FROM checkpoint_writes", &[]).await.expect("count").get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn writes_are_scoped_to_their_namespace_and_checkpoint() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    app.client.put(put("t", "child:1", "c1", None)).await.expect("put");
    app.client.put_writes(put_writes("t", "child:1", "c1", "task", vec![write("a", b"child")])).await.expect("w");
    assert!(get(&mut app.client, "t", "", None).await.expect("root").pending_writes.is_empty());
    assert_eq!(get(&mut app.client, "t", "child:1", None).await.expect("child").pending_writes.len(), 1);
}
