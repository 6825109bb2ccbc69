//! checkpointd stores LangGraph agent checkpoints in PostgreSQL behind a gRPC API.
//!
//! # Layout
//! * `cli`: the `checkpointd` command (serve, migrate, health, dev).
//! * `app`: builds and runs the service: pool, monitor, store, gRPC server, shutdown.
//! * `config`: plain configuration structs and connection-string resolution.
//! * `grpc`: the transport; the only module that knows tonic and prost.
//! * `domain`: validated requests and results; pure.
//! * `storage`: LangGraph's tables behind `Store`; the only module that knows diesel.
//! * `retry`: failure classification and backoff policy; pure.
//! * `devdb`: throwaway PostgreSQL clusters for `checkpointd dev` and tests.
//! * `telemetry`: logs, traces and metrics. `reload`: certificate and token rotation.
//! * `shutdown`: signals. `accept`: accept loops that pause on resource errors.
//! * `pem`: PEM certificate and key files, shared by both TLS stacks.
//!
//! The load generator is a binary of its own, `checkpointd-bench` (`src/bin/checkpointd-bench/`).

#![warn(unreachable_pub, missing_docs)]
pub(crate) mod accept;
pub mod app;
pub mod cli;
pub mod config;
pub mod devdb;
pub mod domain;
pub mod grpc;
pub(crate) mod pem;
pub(crate) mod reload;
pub mod retry;
pub(crate) mod shutdown;
pub mod storage;
pub mod telemetry;
