//! One server span per call, following the OpenTelemetry RPC conventions and joined to the
//! caller's trace (W3C `traceparent`, `tracestate`, `baggage`), and the call-duration metric.
//! Both finish when the response stream ends, so streamed Lists and errors sent in trailers are
//! measured with their real status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::{GuardedBody, StreamGuard};
use crate::telemetry::RpcMetrics;

/// Wraps every service of the server.
#[derive(Debug, Clone, Default)]
pub struct ObserveLayer {
    metrics: RpcMetrics,
}

impl ObserveLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, metrics: self.metrics.clone() }
    }
}

/// The wrapped service.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = Response<GuardedBody<ResBody, Call>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut call = Call::start(request.uri().path(), request.headers(), self.metrics.clone());
        let response = self.inner.call(request).instrument(call.span.clone());
        Box::pin(async move {
            let response = response.await?;
            call.status = grpc_status(response.headers());
            Ok(response.map(|body| GuardedBody::new(body, Some(call))))
        })
    }
}

/// One call in flight; dropping it records its outcome.
#[derive(Debug)]
pub struct Call {
    span: Span,
    started: Instant,
    service: String,
    method: String,
    status: Option<Code>,
    metrics: RpcMetrics,
}

impl Call {
    fn start(path: &str, headers: &HeaderMap, metrics: RpcMetrics) -> Self {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
        let span = tracing::info_span!(
            crate::telemetry::CALL_SPAN,
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = field::Empty,
            error.type = field::Empty,
            checkpointd.thread_id = field::Empty,
            checkpointd.checkpoint_ns = field::Empty,
            trace_id = field::Empty,
            span_id = field::Empty,
        );
        join_callers_trace(&span, headers);
        Self {
            span,
            started: Instant::now(),
            service: service.to_owned(),
            method: method.to_owned(),
            status: None,
            metrics,
        }
    }
}

impl StreamGuard for Call {
    fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(status) = grpc_status(trailers) {
            self.status = Some(status);
        }
    }

    fn failed(&mut self) {
        self.status.get_or_insert(Code::Unknown);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A response that ended before any status was sent: the client went away.
        let status = self.status.unwrap_or(Code::Cancelled);
        self.span.record("rpc.grpc.status_code", i64::from(i32::from(status)));
        if is_server_error(status) {
            self.span.record("otel.status_code", "ERROR");
        }
        self.metrics.record(&self.service, &self.method, i64::from(i32::from(status)), self.started.elapsed());
    }
}

/// Makes `span` a child of the caller's span and records the trace and span ids for log lines.
fn join_callers_trace(span: &Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent.clone());
    let own = span.context().span().span_context().clone();
    let context = if own.is_valid() { own } else { parent.span().span_context().clone() };
    if context.is_valid() {
        span.record("trace_id", context.trace_id().to_string());
        span.record("span_id", context.span_id().to_string());
    }
}

/// Server-side errors per the OpenTelemetry gRPC conventions; client mistakes are not errors.
fn is_server_error(status: Code) -> bool {
    matches!(
        status,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let number: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(Code::from_i32(number))
}

/// Reads W3C context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_headers_or_trailers() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(grpc_status(&headers), Some(Code::Unavailable));
    }
}
