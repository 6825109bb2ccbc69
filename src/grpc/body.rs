//! A response body that holds a guard until its stream ends, fails or is dropped unfinished,
//! showing the guard the trailers and the failure on the way. The in-flight limit keeps a call's
//! slot with it; the observe layer records the call's status and duration with it.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// What a guard learns about the stream before it is dropped.
pub trait StreamGuard {
    /// The trailers arrived (with the gRPC status).
    fn trailers(&mut self, _trailers: &HeaderMap) {}
    /// The body failed before its end.
    fn failed(&mut self) {}
}

/// `body`, with `guard` dropped when the stream ends.
#[derive(Debug)]
pub struct GuardedBody<B, G> {
    body: B,
    guard: Option<G>,
}

impl<B, G> GuardedBody<B, G> {
    /// Wraps `body`; `None` guards nothing.
    pub fn new(body: B, guard: Option<G>) -> Self {
        Self { body, guard }
    }
}

impl<B: Default, G> Default for GuardedBody<B, G> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B, G> Body for GuardedBody<B, G>
where
    B: Body + Unpin,
    G: StreamGuard + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(guard), Some(trailers)) = (this.guard.as_mut(), frame.trailers_ref()) {
                    guard.trailers(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(guard) = this.guard.as_mut() {
                    guard.failed();
                }
                this.guard = None;
            }
            Poll::Ready(None) => this.guard = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
