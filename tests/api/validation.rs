//! Bad input is refused with INVALID_ARGUMENT naming the field, before any database work.

use checkpointd::grpc::pb;
use tonic::Code;

use crate::helpers::*;

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test]
async fn malformed_puts_name_the_field_and_store_nothing() {
    let mut app = spawn_app().await;
    let ok = || put("t", "", "c1", None);
    let cases: Vec<(&str, pb::PutRequest)> = vec![
        ("thread_id must not be empty", pb::PutRequest { thread_id: String::new(), ..ok() }),
        ("thread_id is 513 bytes long; the limit is 512", pb::PutRequest { thread_id: long(513), ..ok() }),
        ("checkpoint_id must not be empty", pb::PutRequest { checkpoint_id: String::new(), ..ok() }),
        ("checkpoint_ns contains a NUL character", pb::PutRequest { checkpoint_ns: "a\0".into(), ..ok() }),
        ("checkpoint_json must not be empty", pb::PutRequest { checkpoint_json: vec![], ..ok() }),
        (
            "checkpoint_json is not valid JSON",
            pb::PutRequest { checkpoint_json: br#"{"id": "c1", "x": NaN}"#.to_vec(), ..ok() },
        ),
        (
            "checkpoint_json is not valid UTF-8",
            pb::PutRequest { checkpoint_json: b"{\"x\": \"\xff\"}".to_vec(), ..ok() },
        ),
        ("checkpoint_json must be a JSON object", pb::PutRequest { checkpoint_json: b"[1]".to_vec(), ..ok() }),
        ("checkpoint_json has \"id\"", pb::PutRequest { checkpoint_json: br#"{"id": "c2"}"#.to_vec(), ..ok() }),
        (
            "metadata_json contains a NUL character",
            pb::PutRequest { metadata_json: br#"{"k": "\u0000"}"#.to_vec(), ..ok() },
        ),
        ("blobs[0].channel must not be empty", pb::PutRequest { blobs: vec![blob("", "1", b"x")], ..ok() }),
        ("blobs[0].version is 257 bytes long", pb::PutRequest { blobs: vec![blob("a", &long(257), b"x")], ..ok() }),
        (
            "blobs[0].value.type must not be empty",
            pb::PutRequest {
                blobs: vec![pb::ChannelBlob { channel: "a".into(), version: "1".into(), value: Some(value("", b"x")) }],
                ..ok()
            },
        ),
    ];
    for (expected, request) in cases {
        let status = app.client.put(request).await.expect_err(expected);
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(status.message().starts_with(expected), "expected {expected:?}, got {:?}", status.message());
    }
    let rows: i64 = app.sql().await.query_one("SELECT count(*) FROM checkpoints", &[]).await.expect("count").get(0);
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn malformed_writes_and_reads_name_the_field() {
    let mut app = spawn_app().await;
    let mut missing_task = put_writes("t", "", "c1", "", vec![write("a", b"1")]);
    let status = app.client.put_writes(missing_task.clone()).await.expect_err("no task");
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "task_id must not be empty"));
    missing_task.task_id = "task".into();
    missing_task.writes = vec![pb::put_writes_request::Write { channel: "a".into(), value: None }];
    let status = app.client.put_writes(missing_task).await.expect_err("no value");
    assert_eq!(status.message(), "writes[0].value must be set");

    let status = app.client.get_tuple(pb::GetTupleRequest::default()).await.expect_err("no thread");
    assert_eq!(status.message(), "thread_id must not be empty");
    let bad_filter = pb::ListRequest { filter_json: Some(b"{".to_vec()), ..Default::default() };
    let status = app.client.list(bad_filter).await.expect_err("bad filter");
    assert!(status.message().starts_with("filter_json is not valid JSON"), "{}", status.message());
    let runs = pb::DeleteForRunsRequest { run_ids: vec!["ok".into(), String::new()] };
    assert_eq!(
        app.client.delete_for_runs(runs).await.expect_err("empty run").message(),
        "run_ids[1] must not be empty"
    );
}

#[tokio::test]
async fn messages_over_the_size_limit_are_refused_before_the_handler() {
    let mut app = spawn_app_with(|config| config.server.max_message_bytes = 64 << 10).await;
    let mut request = put("t", "", "c1", None);
    request.blobs = vec![blob("big", "1", &vec![7u8; 100 << 10])];
    let status = app.client.put(request).await.expect_err("too large");
    assert!(matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange), "{status:?}");
}
