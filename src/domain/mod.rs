//! The service's vocabulary: validated requests and results, free of gRPC and database types.
//!
//! Everything here is pure: no IO, no tonic, no diesel. `grpc/` builds these types from protobuf
//! messages (validating on the way) and `storage/` turns them into SQL.

mod json;
mod limits;
mod scope;
mod types;
mod validate;
mod writes;

pub use json::{JsonDocument, JsonError};
pub use limits::Limits;
pub use scope::Scope;
pub use types::{
    ChannelBlob, CheckpointConfig, CheckpointTuple, CopyThread, DeleteForRuns, DeltaChannelHistory, DeltaHistoryQuery,
    DeltaSeed, GetTuple, ListQuery, PendingWrite, PruneRequest, PruneStrategy, PutCheckpoint, PutWrites, TypedValue,
};
pub use validate::{ValidationError, Validator};
pub use writes::{WriteConflict, index_writes};
