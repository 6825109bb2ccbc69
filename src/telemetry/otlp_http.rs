//! The HTTP client of OTLP over HTTP (`http/protobuf`): requests run on the server's runtime.
//!
//! The SDK exports from threads of its own, outside any tokio runtime, so the client hands each
//! request to the runtime it was created on and waits for the answer there.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;

/// Longest a collector may take to answer one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read (answers are tiny; this bounds a misbehaving peer).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A pooled plaintext HTTP/1.1 client bound to a tokio runtime.
#[derive(Debug, Clone)]
pub(super) struct RuntimeHttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: Handle,
}

impl RuntimeHttpClient {
    /// A client on the runtime of the calling thread; `None` outside a runtime.
    pub(super) fn on_current_runtime() -> Option<Self> {
        let runtime = Handle::try_current().ok()?;
        Some(Self { client: Client::builder(TokioExecutor::new()).build_http(), runtime })
    }

    async fn send(
        client: Client<HttpConnector, Full<Bytes>>,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        let response = client.request(request.map(Full::new)).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The timer, like the request, must be created on the runtime: this thread has none.
        let client = self.client.clone();
        let exchange = async move { tokio::time::timeout(EXPORT_TIMEOUT, Self::send(client, request)).await };
        match self.runtime.spawn(exchange).await? {
            Ok(answer) => answer,
            Err(_) => Err(format!("the collector did not answer within {EXPORT_TIMEOUT:?}").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use tokio::sync::mpsc;

    use super::{BodyExt, Bytes, Full};
    use crate::telemetry::otlp::{Endpoint, Protocol, tracer_provider};

    /// A collector's HTTP endpoint that forwards each request's path and decoded body.
    async fn collector() -> (String, mpsc::UnboundedReceiver<(String, ExportTraceServiceRequest)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("address"));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await.expect("body").to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).expect("protobuf");
                        let _ = tx.send((path, export));
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::spawn(connection);
            }
        });
        (url, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_collector_over_http_protobuf() {
        let (url, mut received) = collector().await;
        let endpoint = Endpoint { url, protocol: Protocol::HttpProtobuf };
        let provider = tracer_provider(&endpoint, opentelemetry_sdk::Resource::builder().build()).expect("exporter");
        provider.tracer("test").in_span("exported-over-http", |_| {});
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await.expect("flush thread");
        flushed.expect("flushed");
        let (path, export) = received.recv().await.expect("an export");
        assert_eq!(path, "/v1/traces");
        let names: Vec<String> = export
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["exported-over-http"]);
    }
}
