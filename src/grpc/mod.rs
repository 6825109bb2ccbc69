//! The gRPC transport: the only module that knows tonic and prost types.
//!
//! Handlers (`service`) validate and convert requests (`convert`), call `storage::Store`, and map
//! errors to statuses in one place (`status`). `server` assembles health and reflection.

mod convert;
mod deadline;
mod diagnostics;
mod observe;
pub mod pb;
mod server;
mod service;
mod status;

pub use diagnostics::DiagnosticsGrpc;
pub use observe::ObserveLayer;
pub use server::{CHECKPOINT_SERVICE_NAME, ReflectionError, router};
pub use service::CheckpointGrpc;
