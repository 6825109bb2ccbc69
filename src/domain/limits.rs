//! Size limits for identifiers and documents, checked before any database work.

/// The largest accepted sizes, in bytes.
///
/// The identifier limits keep every primary key of LangGraph's tables under PostgreSQL's btree
/// tuple limit (2704 bytes), so an accepted request can never fail on an index insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `thread_id`, also a run id or a target thread.
    pub thread_id: usize,
    /// `checkpoint_ns`.
    pub checkpoint_ns: usize,
    /// `checkpoint_id` and `parent_checkpoint_id`.
    pub checkpoint_id: usize,
    /// A channel name.
    pub channel: usize,
    /// A channel version.
    pub version: usize,
    /// A task id.
    pub task_id: usize,
    /// A task path.
    pub task_path: usize,
    /// The type tag of a serialized value.
    pub value_type: usize,
    /// A run id in DeleteForRuns.
    pub run_id: usize,
    /// The deepest nesting accepted in a JSON document.
    pub json_depth: usize,
    /// How many ids one DeleteForRuns or Prune request may name.
    pub ids_per_request: usize,
    /// The largest metadata filter of a List, in bytes (it is evaluated against every row).
    pub filter_bytes: usize,
    /// The largest `limit` of a List.
    pub list_limit: u64,
}

impl Limits {
    /// The limits documented in `proto/checkpoint/v1/checkpoint.proto`.
    pub const DOCUMENTED: Limits = Limits {
        thread_id: 512,
        checkpoint_ns: 1024,
        checkpoint_id: 256,
        channel: 512,
        version: 256,
        task_id: 256,
        task_path: 4096,
        value_type: 256,
        run_id: 256,
        json_depth: 256,
        ids_per_request: 10_000,
        filter_bytes: 16 * 1024,
        list_limit: 10_000_000,
    };
}
