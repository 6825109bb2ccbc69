//! A ceiling on calls in flight: beyond it a call is refused at once with RESOURCE_EXHAUSTED
//! (and a retry pushback), before any database work. Health checks are never refused. A call
//! holds its slot until its response body ends, so a streaming List counts while it streams.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::body::{GuardedBody, StreamGuard};
use super::retry_hint::mark_retry_safe;

/// Suggested wait before retrying a call refused at the in-flight limit.
const LIMIT_PUSHBACK_MS: u32 = 50;

/// The layer.
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    max: usize,
    current: Arc<AtomicUsize>,
}

impl InFlightLimitLayer {
    /// At most `max` calls at once.
    pub fn new(max: usize) -> Self {
        Self { max: max.max(1), current: Arc::new(AtomicUsize::new(0)) }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> InFlightLimit<S> {
        InFlightLimit { inner, max: self.max, current: self.current.clone() }
    }
}

/// The wrapped service.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    max: usize,
    current: Arc<AtomicUsize>,
}

/// Releases a slot when the call's response ends or is dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl StreamGuard for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InFlightLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: 'static,
{
    type Response = Response<GuardedBody<ResBody, Slot>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(|body| GuardedBody::new(body, None))) });
        }
        if self.current.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.current.fetch_sub(1, Ordering::AcqRel);
            let status = mark_retry_safe(
                Status::resource_exhausted(format!(
                    "checkpointd is already handling {} calls, its limit; retry with backoff",
                    self.max
                )),
                Some(LIMIT_PUSHBACK_MS),
            );
            return Box::pin(async move { Ok(status.into_http::<ResBody>().map(|body| GuardedBody::new(body, None))) });
        }
        let slot = Slot(self.current.clone());
        let future = self.inner.call(request);
        Box::pin(async move { Ok(future.await?.map(|body| GuardedBody::new(body, Some(slot)))) })
    }
}
