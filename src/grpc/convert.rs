//! Protobuf messages to validated domain requests, and domain results back to messages.
//!
//! Each conversion destructures its message, so a new proto field fails to compile until it is
//! handled here.

use crate::domain::{
    ChannelBlob, CheckpointConfig, CheckpointTuple, CopyThread, DeleteForRuns, DeltaChannelHistory, DeltaHistoryQuery,
    DeltaSeed, GetTuple, JsonDocument, ListQuery, PendingWrite, PruneRequest, PruneStrategy, PutCheckpoint, PutWrites,
    TypedValue, ValidationError, Validator, index_writes,
};
use crate::grpc::pb;

/// Validates requests against the configured limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Converter {
    v: Validator,
}

impl Converter {
    pub(crate) fn new(v: Validator) -> Self {
        Self { v }
    }

    pub(crate) fn put(&self, request: pb::PutRequest) -> Result<PutCheckpoint, ValidationError> {
        let pb::PutRequest {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            parent_checkpoint_id,
            checkpoint_json,
            metadata_json,
            blobs,
        } = request;
        let limits = self.v.limits();
        let checkpoint_id = self.v.required("checkpoint_id", checkpoint_id, limits.checkpoint_id)?;
        let checkpoint = self.v.json_object("checkpoint_json", checkpoint_json, None)?;
        if let Some(id) = checkpoint.top_level_id().filter(|id| *id != checkpoint_id) {
            let problem = format!("has \"id\" {id:?}, which differs from checkpoint_id {checkpoint_id:?}");
            return Err(ValidationError::new("checkpoint_json", problem));
        }
        Ok(PutCheckpoint {
            thread_id: self.v.required("thread_id", thread_id, limits.thread_id)?,
            checkpoint_ns: self.v.text("checkpoint_ns", checkpoint_ns, limits.checkpoint_ns)?,
            checkpoint_id,
            parent_checkpoint_id: parent_checkpoint_id
                .map(|p| self.v.text("parent_checkpoint_id", p, limits.checkpoint_id))
                .transpose()?,
            checkpoint,
            metadata: self.v.json_object("metadata_json", metadata_json, Some(JsonDocument::empty_object()))?,
            blobs: self.blobs(blobs)?,
        })
    }

    /// Blobs sorted by (channel, version), the first of duplicates kept (as the database would).
    fn blobs(&self, blobs: Vec<pb::ChannelBlob>) -> Result<Vec<ChannelBlob>, ValidationError> {
        let limits = self.v.limits();
        let mut checked = Vec::with_capacity(blobs.len());
        for (i, blob) in blobs.into_iter().enumerate() {
            let pb::ChannelBlob { channel, version, value } = blob;
            checked.push(ChannelBlob {
                channel: self.v.required(&format!("blobs[{i}].channel"), channel, limits.channel)?,
                version: self.v.required(&format!("blobs[{i}].version"), version, limits.version)?,
                value: self.value(&format!("blobs[{i}].value"), value)?,
            });
        }
        checked.sort_by(|a, b| (&a.channel, &a.version).cmp(&(&b.channel, &b.version)));
        checked.dedup_by(|later, earlier| later.channel == earlier.channel && later.version == earlier.version);
        Ok(checked)
    }

    fn value(&self, field: &str, value: Option<pb::TypedValue>) -> Result<TypedValue, ValidationError> {
        let pb::TypedValue { r#type, data } = value.ok_or_else(|| ValidationError::new(field, "must be set"))?;
        Ok(TypedValue {
            type_tag: self.v.required(&format!("{field}.type"), r#type, self.v.limits().value_type)?,
            data,
        })
    }

    pub(crate) fn put_writes(&self, request: pb::PutWritesRequest) -> Result<PutWrites, ValidationError> {
        let pb::PutWritesRequest { thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, writes } = request;
        let limits = self.v.limits();
        let mut checked = Vec::with_capacity(writes.len());
        for (i, write) in writes.into_iter().enumerate() {
            let pb::put_writes_request::Write { channel, value } = write;
            let channel = self.v.required(&format!("writes[{i}].channel"), channel, limits.channel)?;
            let mut value = self.value(&format!("writes[{i}].value"), value)?;
            value.data.get_or_insert_with(Vec::new);
            checked.push((channel, value));
        }
        let (writes, conflict) = index_writes(checked);
        Ok(PutWrites {
            thread_id: self.v.required("thread_id", thread_id, limits.thread_id)?,
            checkpoint_ns: self.v.text("checkpoint_ns", checkpoint_ns, limits.checkpoint_ns)?,
            checkpoint_id: self.v.required("checkpoint_id", checkpoint_id, limits.checkpoint_id)?,
            task_id: self.v.required("task_id", task_id, limits.task_id)?,
            task_path: self.v.text("task_path", task_path, limits.task_path)?,
            writes,
            conflict,
        })
    }

    pub(crate) fn get_tuple(&self, request: pb::GetTupleRequest) -> Result<GetTuple, ValidationError> {
        let pb::GetTupleRequest { thread_id, checkpoint_ns, checkpoint_id } = request;
        let limits = self.v.limits();
        Ok(GetTuple {
            thread_id: self.v.required("thread_id", thread_id, limits.thread_id)?,
            checkpoint_ns: self.v.text("checkpoint_ns", checkpoint_ns, limits.checkpoint_ns)?,
            checkpoint_id: self.v.optional("checkpoint_id", checkpoint_id, limits.checkpoint_id)?,
        })
    }

    pub(crate) fn delta_history(
        &self,
        request: pb::GetDeltaChannelHistoryRequest,
    ) -> Result<DeltaHistoryQuery, ValidationError> {
        let pb::GetDeltaChannelHistoryRequest { thread_id, checkpoint_ns, checkpoint_id, channels } = request;
        let limits = self.v.limits();
        Ok(DeltaHistoryQuery {
            thread_id: self.v.required("thread_id", thread_id, limits.thread_id)?,
            checkpoint_ns: self.v.text("checkpoint_ns", checkpoint_ns, limits.checkpoint_ns)?,
            checkpoint_id: self.v.optional("checkpoint_id", checkpoint_id, limits.checkpoint_id)?,
            channels: self.v.id_list("channels", channels, limits.channel)?,
        })
    }

    pub(crate) fn list(&self, request: pb::ListRequest) -> Result<ListQuery, ValidationError> {
        let pb::ListRequest { thread_id, checkpoint_ns, checkpoint_id, filter_json, before, limit } = request;
        let limits = self.v.limits();
        let thread_id = match thread_id {
            Some(id) if id.is_empty() => {
                return Err(ValidationError::new(
                    "thread_id",
                    "must not be empty (leave it unset to list every thread)",
                ));
            }
            other => other.map(|id| self.v.required("thread_id", id, limits.thread_id)).transpose()?,
        };
        let filter = match filter_json {
            Some(bytes) if bytes.len() > limits.filter_bytes => {
                let problem = format!("is {} bytes long; the limit is {}", bytes.len(), limits.filter_bytes);
                return Err(ValidationError::new("filter_json", problem));
            }
            Some(bytes) if !bytes.is_empty() => Some(self.v.json_object("filter_json", bytes, None)?),
            _ => None,
        };
        if let Some(limit) = limit.filter(|l| u64::from(*l) > limits.list_limit) {
            let problem = format!(
                "{limit} is above the server's maximum of {}; leave it unset to stream every match",
                limits.list_limit
            );
            return Err(ValidationError::new("limit", problem));
        }
        let before = before
            .map(|pb::list_request::Before { checkpoint_id }| {
                self.v.optional("before.checkpoint_id", checkpoint_id, limits.checkpoint_id)
            })
            .transpose()?;
        // LangGraph compares with `checkpoint_id < NULL` when `before` has no id: nothing matches.
        let before_matches_nothing = matches!(before, Some(None));
        Ok(ListQuery {
            thread_id,
            checkpoint_ns: checkpoint_ns
                .map(|ns| self.v.text("checkpoint_ns", ns, limits.checkpoint_ns))
                .transpose()?,
            checkpoint_id: self.v.optional("checkpoint_id", checkpoint_id, limits.checkpoint_id)?,
            filter,
            before: before.flatten(),
            limit: if before_matches_nothing { Some(0) } else { limit.map(u64::from) },
            thread_prefixes: None,
        })
    }

    pub(crate) fn delete_thread(&self, request: pb::DeleteThreadRequest) -> Result<String, ValidationError> {
        let pb::DeleteThreadRequest { thread_id } = request;
        self.v.required("thread_id", thread_id, self.v.limits().thread_id)
    }

    pub(crate) fn delete_for_runs(&self, request: pb::DeleteForRunsRequest) -> Result<DeleteForRuns, ValidationError> {
        let pb::DeleteForRunsRequest { run_ids } = request;
        Ok(DeleteForRuns {
            run_ids: self.v.id_list("run_ids", run_ids, self.v.limits().run_id)?,
            thread_prefixes: None,
        })
    }

    pub(crate) fn copy_thread(&self, request: pb::CopyThreadRequest) -> Result<CopyThread, ValidationError> {
        let pb::CopyThreadRequest { source_thread_id, target_thread_id } = request;
        let limit = self.v.limits().thread_id;
        let source_thread_id = self.v.required("source_thread_id", source_thread_id, limit)?;
        let target_thread_id = self.v.required("target_thread_id", target_thread_id, limit)?;
        if source_thread_id == target_thread_id {
            return Err(ValidationError::new("target_thread_id", "must differ from source_thread_id"));
        }
        Ok(CopyThread { source_thread_id, target_thread_id })
    }

    pub(crate) fn prune(&self, request: pb::PruneRequest) -> Result<PruneRequest, ValidationError> {
        let pb::PruneRequest { thread_ids, strategy } = request;
        let strategy = match pb::PruneStrategy::try_from(strategy) {
            Ok(pb::PruneStrategy::Unspecified | pb::PruneStrategy::KeepLatest) => PruneStrategy::KeepLatest,
            Ok(pb::PruneStrategy::Delete) => PruneStrategy::Delete,
            Err(_) => return Err(ValidationError::new("strategy", format!("{strategy} is not a known PruneStrategy"))),
        };
        Ok(PruneRequest { thread_ids: self.v.id_list("thread_ids", thread_ids, self.v.limits().thread_id)?, strategy })
    }
}

impl From<CheckpointConfig> for pb::CheckpointConfig {
    fn from(config: CheckpointConfig) -> Self {
        let CheckpointConfig { thread_id, checkpoint_ns, checkpoint_id } = config;
        pb::CheckpointConfig { thread_id, checkpoint_ns, checkpoint_id }
    }
}

impl From<TypedValue> for pb::TypedValue {
    fn from(value: TypedValue) -> Self {
        pb::TypedValue { r#type: value.type_tag, data: value.data }
    }
}

impl From<CheckpointTuple> for pb::CheckpointTuple {
    fn from(tuple: CheckpointTuple) -> Self {
        let CheckpointTuple {
            config,
            checkpoint_json,
            metadata_json,
            parent_checkpoint_id,
            channel_values,
            pending_writes,
            pending_sends,
        } = tuple;
        let parent_config = parent_checkpoint_id.map(|checkpoint_id| pb::CheckpointConfig {
            thread_id: config.thread_id.clone(),
            checkpoint_ns: config.checkpoint_ns.clone(),
            checkpoint_id,
        });
        pb::CheckpointTuple {
            config: Some(config.into()),
            checkpoint_json: checkpoint_json.into_bytes(),
            metadata_json: metadata_json.into_bytes(),
            parent_config,
            channel_values: channel_values
                .into_iter()
                .map(|b| pb::ChannelBlob { channel: b.channel, version: b.version, value: Some(b.value.into()) })
                .collect(),
            pending_writes: pending_writes.into_iter().map(pending_write).collect(),
            pending_sends: pending_sends.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DeltaChannelHistory> for pb::DeltaChannelHistory {
    fn from(history: DeltaChannelHistory) -> Self {
        let DeltaChannelHistory { channel, writes, seed } = history;
        let seed = seed.map(|seed| match seed {
            DeltaSeed::Blob(value) => pb::delta_channel_history::Seed::SeedBlob(value.into()),
            DeltaSeed::Inline(json) => pb::delta_channel_history::Seed::SeedInlineJson(json.into_bytes()),
        });
        pb::DeltaChannelHistory { channel, writes: writes.into_iter().map(pending_write).collect(), seed }
    }
}

fn pending_write(write: PendingWrite) -> pb::PendingWrite {
    let PendingWrite { task_id, channel, value, task_path, idx } = write;
    pb::PendingWrite { task_id, channel, value: Some(value.into()), task_path, idx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Limits;

    fn converter() -> Converter {
        Converter::new(Validator::new(Limits::DOCUMENTED))
    }

    fn put_request() -> pb::PutRequest {
        pb::PutRequest {
            thread_id: "t".into(),
            checkpoint_ns: String::new(),
            checkpoint_id: "c1".into(),
            parent_checkpoint_id: None,
            checkpoint_json: br#"{"v": 4, "id": "c1"}"#.to_vec(),
            metadata_json: Vec::new(),
            blobs: vec![],
        }
    }

    fn blob(channel: &str, version: &str, data: &str) -> pb::ChannelBlob {
        pb::ChannelBlob {
            channel: channel.into(),
            version: version.into(),
            value: Some(pb::TypedValue { r#type: "msgpack".into(), data: Some(data.as_bytes().to_vec()) }),
        }
    }

    #[test]
    fn a_put_whose_document_names_another_id_is_refused() {
        let request = pb::PutRequest { checkpoint_json: br#"{"id": "other"}"#.to_vec(), ..put_request() };
        let err = converter().put(request).expect_err("mismatch");
        assert_eq!(err.field, "checkpoint_json");
    }

    #[test]
    fn empty_metadata_means_an_empty_object() {
        let put = converter().put(put_request()).expect("valid");
        assert_eq!(put.metadata.as_str(), "{}");
    }

    #[test]
    fn blobs_are_sorted_and_the_first_duplicate_wins() {
        let request = pb::PutRequest {
            blobs: vec![blob("b", "1", "x"), blob("a", "1", "y"), blob("b", "1", "z")],
            ..put_request()
        };
        let blobs = converter().put(request).expect("valid").blobs;
        let keys: Vec<_> = blobs.iter().map(|b| (b.channel.as_str(), b.value.data.clone())).collect();
        assert_eq!(keys, [("a", Some(b"y".to_vec())), ("b", Some(b"x".to_vec()))]);
    }

    #[test]
    fn a_blob_without_a_value_is_refused_by_name() {
        let request = pb::PutRequest {
            blobs: vec![pb::ChannelBlob { channel: "a".into(), version: "1".into(), value: None }],
            ..put_request()
        };
        assert_eq!(converter().put(request).expect_err("no value").to_string(), "blobs[0].value must be set");
    }

    #[test]
    fn before_without_an_id_lists_nothing() {
        let request =
            pb::ListRequest { before: Some(pb::list_request::Before { checkpoint_id: None }), ..Default::default() };
        assert!(converter().list(request).expect("valid").matches_nothing());
    }

    #[test]
    fn an_empty_thread_filter_is_refused_but_an_absent_one_lists_all() {
        assert!(converter().list(pb::ListRequest { thread_id: Some(String::new()), ..Default::default() }).is_err());
        assert_eq!(converter().list(pb::ListRequest::default()).expect("valid").thread_id, None);
    }

    #[test]
    fn unknown_prune_strategies_are_refused() {
        let err = converter().prune(pb::PruneRequest { thread_ids: vec!["t".into()], strategy: 9 }).expect_err("bad");
        assert_eq!(err.to_string(), "strategy 9 is not a known PruneStrategy");
    }

    #[test]
    fn copying_a_thread_onto_itself_is_refused() {
        let request = pb::CopyThreadRequest { source_thread_id: "a".into(), target_thread_id: "a".into() };
        assert!(converter().copy_thread(request).is_err());
    }
}

#[cfg(test)]
mod hostile_input {
    //! Arbitrary requests through validation and conversion: none panics, and every refusal is a
    //! validation error (INVALID_ARGUMENT) that names a field of the request.
    use super::*;
    use crate::domain::Limits;
    use proptest::prelude::*;

    fn converter() -> Converter {
        Converter::new(Validator::new(Limits::DOCUMENTED))
    }

    /// Strings that are short, long, empty, or hold NUL and non-ASCII characters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9:/_-]{1,12}",
            any::<String>(),
            (0usize..3000).prop_map(|n| "x".repeat(n)),
            "[a-z]{0,4}\u{0}[a-z]{0,4}",
        ]
    }

    fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(br#"{"v": 4, "id": "c1"}"#.to_vec()),
            Just(br#"{"a": NaN}"#.to_vec()),
            Just(b"[1, 2]".to_vec()),
            (0usize..600)
                .prop_map(|depth| format!("{{\"a\": {}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    fn typed_value() -> impl Strategy<Value = Option<pb::TypedValue>> {
        prop::option::of(
            (text(), prop::option::of(prop::collection::vec(any::<u8>(), 0..16)))
                .prop_map(|(r#type, data)| pb::TypedValue { r#type, data }),
        )
    }

    fn assert_named(
        result: Result<impl std::fmt::Debug, ValidationError>,
        fields: &[&str],
    ) -> Result<(), TestCaseError> {
        if let Err(e) = result {
            prop_assert!(!e.problem.is_empty());
            prop_assert!(fields.iter().any(|f| e.field.starts_with(f)), "unexpected field {:?}", e.field);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn puts(
            thread_id in text(), checkpoint_ns in text(), checkpoint_id in text(),
            parent in prop::option::of(text()), checkpoint_json in json_bytes(), metadata_json in json_bytes(),
            blobs in prop::collection::vec((text(), text(), typed_value()), 0..4),
        ) {
            let blobs = blobs.into_iter().map(|(channel, version, value)| pb::ChannelBlob { channel, version, value }).collect();
            let request = pb::PutRequest { thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id: parent, checkpoint_json, metadata_json, blobs };
            assert_named(converter().put(request), &["thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id", "checkpoint_json", "metadata_json", "blobs["])?;
        }

        #[test]
        fn writes(
            thread_id in text(), checkpoint_id in text(), task_id in text(), task_path in text(),
            writes in prop::collection::vec((text(), typed_value()), 0..6),
        ) {
            let writes = writes.into_iter().map(|(channel, value)| pb::put_writes_request::Write { channel, value }).collect();
            let request = pb::PutWritesRequest { thread_id, checkpoint_ns: String::new(), checkpoint_id, task_id, task_path, writes };
            assert_named(converter().put_writes(request), &["thread_id", "checkpoint_id", "task_id", "task_path", "writes["])?;
        }

        #[test]
        fn lists(
            thread_id in prop::option::of(text()), checkpoint_ns in prop::option::of(text()),
            filter in prop::option::of(prop_oneof![json_bytes(), (0usize..40_000).prop_map(|n| format!("{{\"k\": \"{}\"}}", "x".repeat(n)).into_bytes())]),
            before in prop::option::of(prop::option::of(text())), limit in prop::option::of(any::<u32>()),
        ) {
            let request = pb::ListRequest {
                thread_id, checkpoint_ns, checkpoint_id: None, filter_json: filter,
                before: before.map(|checkpoint_id| pb::list_request::Before { checkpoint_id }), limit,
            };
            assert_named(converter().list(request), &["thread_id", "checkpoint_ns", "filter_json", "before.checkpoint_id", "limit"])?;
        }

        #[test]
        fn maintenance(ids in prop::collection::vec(text(), 0..20), strategy in any::<i32>(), source in text(), target in text()) {
            assert_named(converter().prune(pb::PruneRequest { thread_ids: ids.clone(), strategy }), &["thread_ids[", "strategy"])?;
            assert_named(converter().delete_for_runs(pb::DeleteForRunsRequest { run_ids: ids }), &["run_ids["])?;
            assert_named(converter().copy_thread(pb::CopyThreadRequest { source_thread_id: source, target_thread_id: target }), &["source_thread_id", "target_thread_id"])?;
        }
    }

    #[test]
    fn absurd_limits_and_huge_filters_are_refused() {
        let huge = pb::ListRequest {
            filter_json: Some(format!("{{\"k\": \"{}\"}}", "x".repeat(20_000)).into_bytes()),
            ..Default::default()
        };
        assert_eq!(converter().list(huge).map(drop).map_err(|e| e.field), Err("filter_json".to_owned()));
        let absurd = pb::ListRequest { limit: Some(u32::MAX), ..Default::default() };
        assert_eq!(converter().list(absurd).map(drop).map_err(|e| e.field), Err("limit".to_owned()));
    }
}
