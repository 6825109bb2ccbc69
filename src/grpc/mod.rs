//! The gRPC transport: the only module that knows tonic and prost types.
//!
//! Handlers (`service`) validate and convert requests (`convert`), call `storage::Store`, and map
//! errors to statuses in one place (`status`). `server` assembles health and reflection.

pub mod auth;
mod body;
pub mod codec;
mod convert;
mod deadline;
mod diagnostics;
mod limit;
mod observe;
pub mod pb;
pub mod retry_hint;
mod server;
mod service;
mod status;
pub mod tls;

pub use diagnostics::DiagnosticsGrpc;
pub use observe::ObserveLayer;
pub use server::{CHECKPOINT_SERVICE_NAME, ReflectionError, ServerLayers, Services, bind, router, serve, serve_health};
pub use service::CheckpointGrpc;
