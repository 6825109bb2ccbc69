//! Assembles the tonic server: the checkpoint service with its limits and compression, the
//! standard health service, and reflection (v1 and v1alpha).

use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::config::ServerConfig;
use crate::grpc::diagnostics::DiagnosticsGrpc;
use crate::grpc::observe::ObserveLayer;
use crate::grpc::pb;
use crate::grpc::pb::checkpoint_service_server::CheckpointServiceServer;
use crate::grpc::pb::diagnostics_service_server::DiagnosticsServiceServer;
use crate::grpc::service::CheckpointGrpc;
use crate::telemetry::RpcMetrics;

/// The health-check name of the checkpoint service (`checkpoint.v1.CheckpointService`).
pub const CHECKPOINT_SERVICE_NAME: &str =
    <CheckpointServiceServer<CheckpointGrpc> as tonic::server::NamedService>::NAME;

/// Reflection could not be set up (a broken descriptor set).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the reflection service: {0}")]
pub struct ReflectionError(#[from] tonic_reflection::server::Error);

/// The router with every service, ready to serve. Health starts NOT_SERVING for the checkpoint
/// service; the caller flips it once the database is ready.
pub async fn router(
    service: CheckpointGrpc,
    diagnostics: DiagnosticsGrpc,
    config: &ServerConfig,
) -> Result<
    (Router<tower::layer::util::Stack<ObserveLayer, tower::layer::util::Identity>>, HealthReporter),
    ReflectionError,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_not_serving::<CheckpointServiceServer<CheckpointGrpc>>().await;
    let checkpoints = CheckpointServiceServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd);
    let (reflection_v1, reflection_v1alpha) = if config.reflection {
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        (Some(builder().build_v1()?), Some(builder().build_v1alpha()?))
    } else {
        (None, None)
    };
    let router = Server::builder()
        .layer(ObserveLayer::new(RpcMetrics::new()))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(health)
        .add_service(checkpoints)
        .add_service(DiagnosticsServiceServer::new(diagnostics))
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
    Ok((router, reporter))
}
