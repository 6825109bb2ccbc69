//! The load generator's gRPC client: one HTTP/2 connection per agent, driven directly.
//!
//! tonic's `Channel` routes every call through a buffer task (two extra task hops per call). On
//! a machine the server and the database share with the load generator, that CPU would be
//! taken from them, so the agents use a bare hyper connection instead.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::BenchError;
use checkpointd::grpc::pb::checkpoint_service_client::CheckpointServiceClient;

/// A client of the server under test.
pub(super) type Client = CheckpointServiceClient<H2Connection>;

/// One HTTP/2 connection as a tower service.
#[derive(Debug, Clone)]
pub(super) struct H2Connection(SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for H2Connection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// A client with its own HTTP/2 connection to `target`.
pub(super) async fn connect(target: SocketAddr) -> Result<Client, BenchError> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| BenchError::Connect { target, source };
    let stream = tokio::net::TcpStream::connect(target).await.map_err(|e| failed(e.into()))?;
    stream.set_nodelay(true).map_err(|e| failed(e.into()))?;
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.into()))?;
    tokio::spawn(connection);
    let origin: http::Uri = format!("http://{target}").parse().map_err(|e: http::uri::InvalidUri| failed(e.into()))?;
    Ok(CheckpointServiceClient::with_origin(H2Connection(sender), origin).max_decoding_message_size(64 << 20))
}
