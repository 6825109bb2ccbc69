//! LangGraph-shaped requests: a chat thread's checkpoint (a `messages` channel of 20 messages of
//! about 200 characters, msgpack-serialized as LangGraph's Python saver stores it, about 6.6 KB,
//! plus a few small inline channels) and a task's three pending writes.

use serde_json::json;

use checkpointd::grpc::pb;

/// Messages in the `messages` channel.
const MESSAGES: usize = 20;
/// Characters per message.
const MESSAGE_CHARS: usize = 200;

/// msgpack encoding helpers (only what the payload needs).
fn str_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=255 => out.extend_from_slice(&[0xd9, len as u8]),
        _ => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    str_header(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// A message as LangGraph serializes a LangChain message: an ext-typed constructor call with
/// the class path and its keyword arguments.
fn message(out: &mut Vec<u8>, index: usize, step: u64) {
    let (kind, class) = if index.is_multiple_of(2) { ("human", "HumanMessage") } else { ("ai", "AIMessage") };
    let mut body = Vec::new();
    body.push(0x94); // [module, class, kwargs, method]
    string(&mut body, "langchain_core.messages");
    string(&mut body, class);
    body.push(0x85); // kwargs map of 5
    for (key, value) in [
        ("type", kind.to_owned()),
        ("id", format!("msg-{step:08}-{index:04}-0000-0000-000000000000")),
        ("name", String::new()),
        ("example", String::new()),
    ] {
        string(&mut body, key);
        string(&mut body, &value);
    }
    string(&mut body, "content");
    let content: String =
        (0..MESSAGE_CHARS).map(|i| (b'a' + ((i + index + step as usize) % 26) as u8) as char).collect();
    string(&mut body, &content);
    body.push(0xc0); // no method
    // ext 8 with a 2-byte length: type 2 (constructor with keyword arguments)
    out.push(0xc8);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&body);
}

/// The `messages` channel's value at `step`.
pub(crate) fn messages_blob(step: u64) -> Vec<u8> {
    let mut out = vec![0xdc, 0, MESSAGES as u8]; // array 16 with 20 elements
    for index in 0..MESSAGES {
        message(&mut out, index, step);
    }
    out
}

/// A checkpoint at `step` of `thread`, with its parent, in the shape LangGraph writes.
pub(crate) fn put_request(thread: &str, step: u64, parent: Option<&str>) -> pb::PutRequest {
    let id = checkpoint_id(step);
    let version = format!("{:032}.{:016}", step + 1, 0.5);
    let document = json!({
        "v": 4,
        "id": id,
        "ts": "2026-11-27T00:00:00.000000+00:00",
        "channel_values": {"step": step, "note": "thinking", "branch:to:agent": null},
        "channel_versions": {"__start__": version, "messages": version, "step": version, "note": version, "branch:to:agent": version},
        "versions_seen": {"__input__": {}, "agent": {"messages": version, "branch:to:agent": version}},
        "updated_channels": ["messages", "step"],
    });
    pb::PutRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: String::new(),
        checkpoint_id: id,
        parent_checkpoint_id: parent.map(str::to_owned),
        checkpoint_json: document.to_string().into_bytes(),
        metadata_json: json!({"source": "loop", "step": step, "parents": {}, "run_id": format!("run-{thread}")})
            .to_string()
            .into_bytes(),
        blobs: vec![pb::ChannelBlob {
            channel: "messages".into(),
            version,
            value: Some(pb::TypedValue { r#type: "msgpack".into(), data: Some(messages_blob(step)) }),
        }],
    }
}

/// Three writes of one task, as a node that appended a message and updated two channels.
pub(crate) fn put_writes_request(thread: &str, step: u64, task: u64) -> pb::PutWritesRequest {
    let write = |channel: &str, data: Vec<u8>| pb::put_writes_request::Write {
        channel: channel.to_owned(),
        value: Some(pb::TypedValue { r#type: "msgpack".into(), data: Some(data) }),
    };
    let mut one_message = vec![0x91];
    message(&mut one_message, 1, step);
    pb::PutWritesRequest {
        thread_id: thread.to_owned(),
        checkpoint_ns: String::new(),
        checkpoint_id: checkpoint_id(step),
        task_id: format!("task-{task:012}"),
        task_path: "~__pregel_pull, agent".into(),
        writes: vec![
            write("messages", one_message),
            write("step", vec![0xcd, 0x01, 0x00]),
            write("branch:to:tools", vec![0xc0]),
        ],
    }
}

/// A time-ordered, fixed-width checkpoint id (like uuid6), so newer ids sort later.
pub(super) fn checkpoint_id(step: u64) -> String {
    format!("1f0{step:013x}-0000-6000-8000-000000000000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_blob_is_about_six_and_a_half_kilobytes() {
        let size = messages_blob(7).len();
        assert!((6_000..7_200).contains(&size), "{size} bytes");
    }

    #[test]
    fn checkpoint_ids_sort_by_step() {
        assert!(checkpoint_id(9) < checkpoint_id(10));
        assert!(checkpoint_id(0xfff) < checkpoint_id(0x1000));
    }

    #[test]
    fn requests_are_valid_for_the_server() {
        let converter = checkpointd::domain::Validator::new(checkpointd::domain::Limits::DOCUMENTED);
        let put = put_request("t", 3, Some(&checkpoint_id(2)));
        assert!(checkpointd::domain::JsonDocument::parse(put.checkpoint_json.clone(), 64).is_ok());
        assert!(converter.required("thread_id", put.thread_id, 512).is_ok());
        assert_eq!(put_writes_request("t", 3, 1).writes.len(), 3);
    }
}
