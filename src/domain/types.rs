//! Validated requests and the results the storage layer returns.

use crate::domain::JsonDocument;
use crate::domain::writes::{IndexedWrite, WriteConflict};

/// One serialized value, opaque to the service.
#[derive(Clone, PartialEq, Eq)]
pub struct TypedValue {
    /// The serializer's type tag, kept byte for byte (`msgpack`, `null`, `msgpack+aes`, …).
    pub type_tag: String,
    /// The serialized bytes; `None` is SQL NULL (LangGraph's `"empty"` blobs).
    pub data: Option<Vec<u8>>,
}

impl std::fmt::Debug for TypedValue {
    // Values are user data: print only their shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.data.as_ref().map(Vec::len);
        write!(f, "TypedValue({:?}, {len:?} bytes)", self.type_tag)
    }
}

/// The value of one channel at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBlob {
    /// The channel's name.
    pub channel: String,
    /// The channel's version, as text.
    pub version: String,
    /// The serialized value.
    pub value: TypedValue,
}

/// Where a checkpoint lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The thread.
    pub thread_id: String,
    /// The namespace; `""` is the root graph.
    pub checkpoint_ns: String,
    /// The checkpoint's id.
    pub checkpoint_id: String,
}

/// A pending write as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    /// The task that wrote it.
    pub task_id: String,
    /// The channel written.
    pub channel: String,
    /// The value written.
    pub value: TypedValue,
    /// The task's path, which orders writes.
    pub task_path: String,
    /// The write's index within its task.
    pub idx: i32,
}

/// A checkpoint as read back, before the client deserializes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTuple {
    /// The stored thread, namespace and id.
    pub config: CheckpointConfig,
    /// The checkpoint document (JSON text as rendered by PostgreSQL).
    pub checkpoint_json: String,
    /// The metadata (JSON text as rendered by PostgreSQL).
    pub metadata_json: String,
    /// The parent's id, when it is set and not empty.
    pub parent_checkpoint_id: Option<String>,
    /// Blob-backed channel values at the versions the document names, ordered by channel.
    pub channel_values: Vec<ChannelBlob>,
    /// Pending writes ordered by (task_path, task_id, idx).
    pub pending_writes: Vec<PendingWrite>,
    /// For documents older than v4 with a parent: the parent's `__pregel_tasks` writes.
    pub pending_sends: Vec<TypedValue>,
}

/// Save one checkpoint (LangGraph `put`).
#[derive(Debug, Clone)]
pub struct PutCheckpoint {
    /// The thread.
    pub thread_id: String,
    /// The namespace.
    pub checkpoint_ns: String,
    /// The checkpoint's id (equal to the document's `"id"`).
    pub checkpoint_id: String,
    /// The parent; `None` stores SQL NULL.
    pub parent_checkpoint_id: Option<String>,
    /// The document with inline channel values.
    pub checkpoint: JsonDocument,
    /// The metadata.
    pub metadata: JsonDocument,
    /// Blob values of the new versions, sorted by (channel, version) and unique.
    pub blobs: Vec<ChannelBlob>,
}

impl PutCheckpoint {
    /// The bytes this checkpoint sends to the database: ids, documents and blob values.
    pub fn payload_bytes(&self) -> usize {
        let ids = self.thread_id.len()
            + self.checkpoint_ns.len()
            + self.checkpoint_id.len()
            + self.parent_checkpoint_id.as_ref().map_or(0, String::len);
        let blobs: usize = self
            .blobs
            .iter()
            .map(|b| {
                b.channel.len() + b.version.len() + b.value.type_tag.len() + b.value.data.as_ref().map_or(0, Vec::len)
            })
            .sum();
        ids + self.checkpoint.as_str().len() + self.metadata.as_str().len() + blobs
    }
}

/// Save the pending writes of one task (LangGraph `put_writes`).
#[derive(Debug, Clone)]
pub struct PutWrites {
    /// The thread.
    pub thread_id: String,
    /// The namespace.
    pub checkpoint_ns: String,
    /// The checkpoint the writes belong to.
    pub checkpoint_id: String,
    /// The task that wrote them.
    pub task_id: String,
    /// The task's path.
    pub task_path: String,
    /// The writes with their indexes, unique by index and sorted by it.
    pub writes: Vec<IndexedWrite>,
    /// What an existing row with the same key does.
    pub conflict: WriteConflict,
}

/// Read one checkpoint (LangGraph `get_tuple`).
#[derive(Debug, Clone)]
pub struct GetTuple {
    /// The thread.
    pub thread_id: String,
    /// The namespace.
    pub checkpoint_ns: String,
    /// A specific checkpoint; `None` reads the latest.
    pub checkpoint_id: Option<String>,
}

/// What a DeltaChannel needs to rebuild some channels at a checkpoint (LangGraph
/// `get_delta_channel_history`).
#[derive(Debug, Clone)]
pub struct DeltaHistoryQuery {
    /// The thread.
    pub thread_id: String,
    /// The namespace.
    pub checkpoint_ns: String,
    /// The target checkpoint; `None` is the latest of the namespace.
    pub checkpoint_id: Option<String>,
    /// The channels, each once, in the order asked.
    pub channels: Vec<String>,
}

/// One channel's value to start from and the writes to replay on it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaChannelHistory {
    /// The channel.
    pub channel: String,
    /// Its writes along the walk, oldest checkpoint first, each checkpoint's in write order.
    pub writes: Vec<PendingWrite>,
    /// The value the walk ended at, if it found one.
    pub seed: Option<DeltaSeed>,
}

/// Where a delta channel's walk found its stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaSeed {
    /// A blob (never of type "empty").
    Blob(TypedValue),
    /// A value kept inline in the checkpoint document, as JSON text.
    Inline(String),
}

/// Which checkpoints to list (LangGraph `list`), newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this thread.
    pub thread_id: Option<String>,
    /// Only this namespace.
    pub checkpoint_ns: Option<String>,
    /// Only this checkpoint.
    pub checkpoint_id: Option<String>,
    /// Only checkpoints whose metadata contains this object.
    pub filter: Option<JsonDocument>,
    /// Only checkpoints with a smaller id.
    pub before: Option<String>,
    /// At most this many; `Some(0)` lists nothing.
    pub limit: Option<u64>,
    /// Only threads whose id starts with one of these (a scoped caller's tenant).
    pub thread_prefixes: Option<Vec<String>>,
}

impl ListQuery {
    /// True when the query can match nothing, so no database work is needed.
    pub fn matches_nothing(&self) -> bool {
        self.limit == Some(0)
    }

    /// True when thread and namespace are fixed: the rows are one range of the primary key, in
    /// the list's order, so any page of them is found without scanning the rest.
    pub fn is_key_range(&self) -> bool {
        self.thread_id.is_some() && self.checkpoint_ns.is_some()
    }
}

/// Delete the checkpoints of some runs.
#[derive(Debug, Clone)]
pub struct DeleteForRuns {
    /// The runs, matched against metadata `"run_id"`.
    pub run_ids: Vec<String>,
    /// Only in threads whose id starts with one of these (a scoped caller's tenant).
    pub thread_prefixes: Option<Vec<String>>,
}

/// Copy a whole thread.
#[derive(Debug, Clone)]
pub struct CopyThread {
    /// The thread copied from.
    pub source_thread_id: String,
    /// The thread copied to.
    pub target_thread_id: String,
}

/// What prune keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneStrategy {
    /// The latest checkpoint of each namespace.
    KeepLatest,
    /// Nothing.
    Delete,
}

/// Shrink some threads.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// The threads, without duplicates, in the order given.
    pub thread_ids: Vec<String>,
    /// What to keep.
    pub strategy: PruneStrategy,
}
