//! Generated protobuf messages and gRPC stubs for `checkpoint.v1` (written by `build.rs` from
//! `proto/`; do not edit, regenerate by building).
#![allow(clippy::all, clippy::pedantic, missing_docs, missing_debug_implementations, unreachable_pub)]

tonic::include_proto!("checkpoint.v1");

/// The encoded descriptor set of `proto/`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("checkpoint_descriptor");
