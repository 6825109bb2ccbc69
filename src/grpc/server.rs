//! Assembles the tonic servers: the main one (checkpoint and diagnostics services, health,
//! reflection) behind the observe → authenticate → in-flight-limit layers, and the optional
//! plaintext health-only one for probes that cannot speak TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::layer::util::{Identity, Stack};

use crate::config::{Compression, ServerConfig};
use crate::grpc::auth::{AuthLayer, Authenticator};
use crate::grpc::diagnostics::DiagnosticsGrpc;
use crate::grpc::limit::InFlightLimitLayer;
use crate::grpc::observe::ObserveLayer;
use crate::grpc::pb;
use crate::grpc::pb::checkpoint_service_server::CheckpointServiceServer;
use crate::grpc::pb::diagnostics_service_server::DiagnosticsServiceServer;
use crate::grpc::service::CheckpointGrpc;
use crate::grpc::tls::{ReloadableTls, incoming};
use crate::telemetry::RpcMetrics;

/// The health-check name of the checkpoint service (`checkpoint.v1.CheckpointService`).
pub const CHECKPOINT_SERVICE_NAME: &str =
    <CheckpointServiceServer<CheckpointGrpc> as tonic::server::NamedService>::NAME;

/// The layers around every service, outermost first: observe, authenticate, limit.
pub(super) type ServerLayers = Stack<InFlightLimitLayer, Stack<AuthLayer, Stack<ObserveLayer, Identity>>>;

/// Reflection could not be set up (a broken descriptor set).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the reflection service: {0}")]
pub struct ReflectionError(#[from] tonic_reflection::server::Error);

/// What the main server serves.
#[derive(Debug)]
pub struct Services<H> {
    /// The checkpoint API.
    pub checkpoints: CheckpointGrpc,
    /// Diagnostics.
    pub diagnostics: DiagnosticsGrpc,
    /// The standard health service (shared with the plaintext health listener).
    pub health: HealthServer<H>,
    /// Token checks; `None` serves without authentication.
    pub authenticator: Option<Arc<Authenticator>>,
}

/// The main router, ready to serve.
pub fn router<H: Health>(
    services: Services<H>,
    config: &ServerConfig,
) -> Result<Router<ServerLayers>, ReflectionError> {
    let mut checkpoints = CheckpointServiceServer::new(services.checkpoints)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    if let Some(compression) = config.response_compression {
        checkpoints = checkpoints.send_compressed(match compression {
            Compression::Gzip => CompressionEncoding::Gzip,
            Compression::Zstd => CompressionEncoding::Zstd,
        });
    }
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
    Ok(Server::builder()
        .layer(ObserveLayer::new(RpcMetrics::new()))
        .layer(AuthLayer::new(services.authenticator))
        .layer(InFlightLimitLayer::new(config.max_concurrent_requests))
        .tcp_nodelay(true)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(services.health)
        .add_service(checkpoints)
        .add_service(DiagnosticsServiceServer::new(services.diagnostics))
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha))
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `signal` resolves, then
/// drains.
pub async fn serve(
    router: Router<ServerLayers>,
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    signal: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(tls) => router.serve_with_incoming_shutdown(incoming(listener, tls), signal).await,
        None => router.serve_with_incoming_shutdown(crate::accept::incoming(listener), signal).await,
    }
}

/// Serves only the health service, in plaintext, on `listener` until `signal` resolves.
pub async fn serve_health<H: Health>(
    health: HealthServer<H>,
    listener: TcpListener,
    signal: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder().add_service(health).serve_with_incoming_shutdown(crate::accept::incoming(listener), signal).await
}

/// Binds `address`, naming it in the error.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, (SocketAddr, io::Error)> {
    TcpListener::bind(address).await.map_err(|e| (address, e))
}
