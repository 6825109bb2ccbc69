//! A Prometheus scrape endpoint (`GET /metrics`) on its own port, off by default.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `registry` until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, registry: Registry, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            stream = crate::accept::accept(&listener) => stream,
            () = stop.cancelled() => return,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, registry.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn respond(request: Request<Incoming>, registry: Registry) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found; metrics are at /metrics\n"));
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut body) {
        return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot encode metrics: {e}\n")));
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(content_type) = encoder.format_type().parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
