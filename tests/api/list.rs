//! List: filters, ordering, limits and paging exactly as LangGraph's Postgres saver lists.

use std::time::Duration;

use checkpointd::grpc::pb;
use serde_json::json;

use crate::helpers::*;

fn by_thread(thread: &str) -> pb::ListRequest {
    pb::ListRequest { thread_id: Some(thread.to_owned()), ..Default::default() }
}

fn with_metadata(thread: &str, ns: &str, id: &str, metadata: serde_json::Value) -> pb::PutRequest {
    pb::PutRequest { metadata_json: metadata.to_string().into_bytes(), ..put(thread, ns, id, None) }
}

#[tokio::test]
async fn lists_newest_first() {
    let mut app = spawn_app().await;
    for id in ["c2", "c3", "c1"] {
        app.client.put(put("t", "", id, None)).await.expect("put");
    }
    assert_eq!(ids(&list(&mut app.client, by_thread("t")).await), ["c3", "c2", "c1"]);
}

#[tokio::test]
async fn without_a_namespace_every_namespace_is_listed() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    app.client.put(put("t", "child:1", "c2", None)).await.expect("put");
    assert_eq!(ids(&list(&mut app.client, by_thread("t")).await), ["c2", "c1"]);
    let root_only = pb::ListRequest { checkpoint_ns: Some(String::new()), ..by_thread("t") };
    assert_eq!(ids(&list(&mut app.client, root_only).await), ["c1"]);
}

#[tokio::test]
async fn without_a_thread_every_thread_is_listed() {
    let mut app = spawn_app().await;
    app.client.put(put("a", "", "c1", None)).await.expect("put");
    app.client.put(put("b", "", "c2", None)).await.expect("put");
    assert_eq!(ids(&list(&mut app.client, pb::ListRequest::default()).await), ["c2", "c1"]);
}

#[tokio::test]
async fn before_without_an_id_and_a_zero_limit_list_nothing() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    let before_nothing =
        pb::ListRequest { before: Some(pb::list_request::Before { checkpoint_id: None }), ..by_thread("t") };
    assert!(list(&mut app.client, before_nothing).await.is_empty());
    let zero = pb::ListRequest { limit: Some(0), ..by_thread("t") };
    assert!(list(&mut app.client, zero).await.is_empty());
}

#[tokio::test]
async fn before_and_limit_page_backwards() {
    let mut app = spawn_app().await;
    for i in 1..=5 {
        app.client.put(put("t", "", &format!("c{i}"), None)).await.expect("put");
    }
    let request = pb::ListRequest {
        before: Some(pb::list_request::Before { checkpoint_id: Some("c4".into()) }),
        limit: Some(2),
        ..by_thread("t")
    };
    assert_eq!(ids(&list(&mut app.client, request).await), ["c3", "c2"]);
}

#[tokio::test]
async fn the_metadata_filter_is_jsonb_containment() {
    let mut app = spawn_app().await;
    let metadata = json!({"source": "loop", "step": 2, "nested": {"a": 1, "b": 2}, "tags": ["x", "y"], "none": null});
    app.client.put(with_metadata("t", "", "c1", metadata)).await.expect("put");
    app.client.put(with_metadata("t", "", "c2", json!({"source": "input", "step": -1}))).await.expect("put");
    let cases = [
        (json!({"source": "loop"}), vec!["c1"]),
        (json!({"step": -1}), vec!["c2"]),
        (json!({"source": "loop", "step": 2}), vec!["c1"]),
        (json!({"nested": {"a": 1}}), vec!["c1"]),
        (json!({"tags": ["x"]}), vec!["c1"]),
        (json!({"none": null}), vec!["c1"]),
        (json!({"missing": null}), vec![]),
        (json!({"source": "fork"}), vec![]),
        (json!({}), vec!["c2", "c1"]),
    ];
    for (filter, expected) in cases {
        let request = pb::ListRequest { filter_json: Some(filter.to_string().into_bytes()), ..by_thread("t") };
        assert_eq!(ids(&list(&mut app.client, request).await), expected, "filter {filter}");
    }
}

#[tokio::test]
async fn a_checkpoint_id_filter_lists_that_checkpoint() {
    let mut app = spawn_app().await;
    app.client.put(put("t", "", "c1", None)).await.expect("put");
    app.client.put(put("t", "", "c2", None)).await.expect("put");
    let request = pb::ListRequest { checkpoint_id: Some("c1".into()), ..by_thread("t") };
    assert_eq!(ids(&list(&mut app.client, request).await), ["c1"]);
}

#[tokio::test]
async fn listed_tuples_carry_their_writes_and_blobs() {
    let mut app = spawn_app().await;
    let mut request = put("t", "", "c1", None);
    request.checkpoint_json = document("c1", json!({}), json!({"a": "1"}));
    request.blobs = vec![blob("a", "1", b"v")];
    app.client.put(request).await.expect("put");
    app.client.put_writes(put_writes("t", "", "c1", "task", vec![write("x", b"w")])).await.expect("writes");
    let tuples = list(&mut app.client, by_thread("t")).await;
    assert_eq!(tuples.len(), 1);
    assert_eq!(tuples[0].channel_values, vec![blob("a", "1", b"v")]);
    assert_eq!(tuples[0].pending_writes.len(), 1);
}

#[tokio::test]
async fn long_lists_stream_across_pages_without_gaps_or_repeats() {
    // The test server reads pages of 7, so these lists span many pages.
    let mut app = spawn_app().await;
    let mut expected_thread = Vec::new();
    for i in 0..40 {
        let id = format!("c{i:03}");
        let ns = if i % 3 == 0 { "" } else { "child:1" };
        app.client.put(put("t", ns, &id, None)).await.expect("put");
        app.client.put(put("other", "", &id, None)).await.expect("put");
        expected_thread.push(id);
    }
    expected_thread.reverse();
    assert_eq!(ids(&list(&mut app.client, by_thread("t")).await), expected_thread, "one thread, all namespaces");
    let everything = list(&mut app.client, pb::ListRequest::default()).await;
    assert_eq!(everything.len(), 80, "every thread, with equal ids across threads");
    let limited = pb::ListRequest { limit: Some(15), ..by_thread("t") };
    assert_eq!(ids(&list(&mut app.client, limited).await), expected_thread[..15]);
}

/// Scans of `checkpoints` counted by PostgreSQL's statistics, once every other backend of the
/// test database has exited (a backend reports its counts when it ends).
async fn scans_of_checkpoints(app: &TestApp) -> i64 {
    let sql = app.sql().await;
    let database = app.db.name.clone();
    eventually(std::time::Duration::from_secs(30), "the service's backends to exit", || {
        let sql = &sql;
        let database = database.clone();
        async move {
            let row = sql
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&database],
                )
                .await
                .expect("pg_stat_activity");
            row.get::<_, i64>(0) == 0
        }
    })
    .await;
    sql.batch_execute("SELECT pg_stat_clear_snapshot()").await.expect("fresh statistics");
    let row = sql
        .query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'checkpoints'",
            &[],
        )
        .await
        .expect("pg_stat_user_tables");
    row.get(0)
}

#[tokio::test]
async fn a_stream_scans_once_however_many_pages_it_fills() {
    // Pages of 7 rows (the test configuration): 60 rows across threads fill nine of them, and
    // the 24 rows of one thread (every namespace) four.
    let mut app = spawn_app().await;
    let sql = app.sql().await;
    sql.batch_execute(
        r#"INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata)
           SELECT 't' || (g % 5), '', 'c' || lpad(g::text, 4, '0'), '{"v": 4, "channel_versions": {}}',
                  CASE WHEN g % 2 = 0 THEN '{"source": "loop"}' ELSE '{"source": "input"}' END::jsonb
           FROM generate_series(1, 120) AS g"#,
    )
    .await
    .expect("insert checkpoints");
    drop(sql);
    app.stop().await;
    let before = scans_of_checkpoints(&app).await;
    let mut app = app.restarted().await;
    let filter = json!({"source": "loop"}).to_string().into_bytes();
    let request = pb::ListRequest { filter_json: Some(filter), ..Default::default() };
    let listed = list(&mut app.client, request).await;
    assert_eq!(listed.len(), 60);
    let expected: Vec<String> = (1..=120).rev().filter(|g| g % 2 == 0).map(|g| format!("c{g:04}")).collect();
    assert_eq!(ids(&listed), expected, "newest first, no gaps, no repeats");
    let one_thread = list(&mut app.client, by_thread("t0")).await;
    assert_eq!(one_thread.len(), 24, "a thread without a namespace: four pages");
    app.stop().await;
    assert_eq!(scans_of_checkpoints(&app).await - before, 2, "one scan for each stream");
}

/// Transactions of this test's database that ended in a rollback, as the statistics report them.
async fn rollbacks(sql: &tokio_postgres::Client) -> i64 {
    let row = sql
        .query_one("SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()", &[])
        .await
        .expect("database statistics");
    row.get(0)
}

#[tokio::test]
async fn a_paused_stream_cancels_its_select_on_the_server_instead_of_reading_it_to_the_end() {
    let mut app = spawn_app().await;
    let sql = app.sql().await;
    // 2,000 rows of 10 KB: far more than the socket buffers hold, so the SELECT is still running
    // (blocked on sending) when the reader pauses.
    sql.batch_execute(
        r#"INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata)
           SELECT 't' || (g % 3), '', 'c' || lpad(g::text, 4, '0'), '{"v": 4, "channel_versions": {}}',
                  jsonb_build_object('pad', repeat('x', 10000))
           FROM generate_series(1, 2000) AS g"#,
    )
    .await
    .expect("insert checkpoints");
    let before = rollbacks(&sql).await;
    let mut stream = app.client.list(pb::ListRequest::default()).await.expect("list").into_inner();
    let first = stream.message().await.expect("first tuple").expect("a tuple");
    // The reader pauses: within its idle release the stream cancels its SELECT (its read-only
    // transaction then ends in a rollback) rather than letting the server send every row.
    eventually(Duration::from_secs(20), "the paused stream's SELECT to be cancelled", || async {
        rollbacks(&sql).await > before
    })
    .await;
    let mut listed = vec![first.tuple.expect("tuple set")];
    while let Some(item) = stream.message().await.expect("the stream resumes") {
        listed.push(item.tuple.expect("tuple set"));
    }
    let expected: Vec<String> = (1..=2000).rev().map(|g| format!("c{g:04}")).collect();
    assert_eq!(ids(&listed), expected, "no row skipped or repeated after the cancel");
}

#[tokio::test]
async fn a_reader_that_pauses_gives_its_connection_back_and_resumes_without_gaps() {
    // One connection: while the stream's reader pauses, another call still gets it.
    let mut app = spawn_app_with(|config| {
        config.pool.max_size = 1;
        config.pool.min_idle = 0;
    })
    .await;
    let sql = app.sql().await;
    sql.batch_execute(
        r#"INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata)
           SELECT 't' || (g % 3), '', 'c' || lpad(g::text, 4, '0'), '{"v": 4, "channel_versions": {}}', '{}'
           FROM generate_series(1, 50) AS g"#,
    )
    .await
    .expect("insert checkpoints");
    let mut stream = app.client.list(pb::ListRequest::default()).await.expect("list").into_inner();
    let first = stream.message().await.expect("first tuple").expect("a tuple");
    let mut other = app.client.clone();
    assert!(get(&mut other, "t1", "", None).await.is_some(), "another call gets the connection");
    let mut listed = vec![first.tuple.expect("tuple set")];
    while let Some(item) = stream.message().await.expect("the stream resumes") {
        listed.push(item.tuple.expect("tuple set"));
    }
    let expected: Vec<String> = (1..=50).rev().map(|g| format!("c{g:04}")).collect();
    assert_eq!(ids(&listed), expected);
}
