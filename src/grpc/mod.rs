//! The gRPC transport: the only module that knows tonic and prost types.
//!
//! Handlers (`service`) validate and convert requests (`convert`), call `storage::Store`, and map
//! errors to statuses in one place (`status`). `server` assembles health and reflection.

pub(crate) mod auth;
mod body;
pub(crate) mod codec;
mod convert;
mod deadline;
mod diagnostics;
mod limit;
mod observe;
pub mod pb;
pub(crate) mod retry_hint;
mod server;
mod service;
mod status;
pub(crate) mod tls;

pub use diagnostics::DiagnosticsGrpc;
pub use server::{CHECKPOINT_SERVICE_NAME, ReflectionError, Services, bind, router, serve, serve_health};
pub use service::CheckpointGrpc;
