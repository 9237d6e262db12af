//! The service each connection runs. It answers `GET /l/{slug}` itself, before the router and
//! its layers, and hands every other request to the router.
//!
//! A scan is the one request that comes in bulk (a printed QR code in a crowd). The router's
//! layers cost more than the scan does: a tracing span per request, metric labels built as
//! strings and looked up in the registry, a timer per request, and the state cloned several
//! times. Here a scan gets the same guarantees in cheaper form. It is counted in the same
//! metrics, through handles looked up once. It gets the same request timeout, but a timer only
//! when it has to wait for the database. A panic becomes the same 500 page. It gets no span:
//! the scan path logs only failures, and those name the route.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Router;
use metrics::{Counter, Histogram};
use tokio::net::TcpListener;
use tower::Service;

use crate::error::AppError;
use crate::AppState;

struct Shared {
    router: Router,
    state: AppState,
}

/// Makes one [`App`] per accepted connection.
#[derive(Clone)]
pub struct MakeApp(Arc<Shared>);

impl MakeApp {
    pub fn new(state: AppState) -> MakeApp {
        MakeApp(Arc::new(Shared { router: super::router(state.clone()), state }))
    }

    /// The service of one connection from `peer` (`web::serve` accepts the connections).
    pub fn connection(&self, peer: SocketAddr) -> App {
        App(Arc::new(Conn { shared: self.0.clone(), peer }))
    }
}

impl Service<IncomingStream<'_, TcpListener>> for MakeApp {
    type Response = App;
    type Error = Infallible;
    type Future = std::future::Ready<Result<App, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, TcpListener>) -> Self::Future {
        std::future::ready(Ok(self.connection(*stream.remote_addr())))
    }
}

struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
}

/// The service of one connection. hyper clones it for every request; the clone touches only
/// this connection's own reference count, never one that all connections share.
#[derive(Clone)]
pub struct App(Arc<Conn>);

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == Method::GET && scan_slug(req.uri().path()).is_some() {
            let conn = self.0.clone();
            return Box::pin(async move { Ok(scan(&conn, req).await) });
        }
        req.extensions_mut().insert(ConnectInfo(self.0.peer));
        let mut router = self.0.shared.router.clone();
        Box::pin(async move { router.call(req).await })
    }
}

/// The slug of a scan URL `/l/{slug}` that needs no decoding; anything else (percent-encoded,
/// a trailing slash, a sub-path) is left to the router.
pub fn scan_slug(path: &str) -> Option<&str> {
    let slug = path.strip_prefix("/l/")?;
    let plain = !slug.is_empty() && slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then_some(slug)
}

async fn scan(conn: &Conn, req: Request) -> Response {
    let start = Instant::now();
    let state = &conn.shared.state;
    let slug = scan_slug(req.uri().path()).unwrap_or_default();
    let limit = Duration::from_secs(state.config.http.request_timeout_secs);
    let answer = guarded(super::scan::respond(state, slug, req.uri().query(), req.headers(), Some(conn.peer)), limit);
    let resp = match answer.await {
        Ok(resp) => resp,
        Err(Stopped::TimedOut) => super::timed_out(),
        Err(Stopped::Panicked) => {
            tracing::error!(route = SCAN_ROUTE, "the scan handler panicked");
            AppError::Other(anyhow::anyhow!("handler panicked")).into_response()
        }
    };
    if resp.status().is_server_error() {
        tracing::error!(route = SCAN_ROUTE, status = resp.status().as_u16(), "scan failed");
    }
    ScanMetrics::get().record(resp.status(), start.elapsed());
    let mut resp = resp;
    super::headers::apply(resp.headers_mut(), state.config.session.secure);
    resp
}

const SCAN_ROUTE: &str = "/l/{slug}";

enum Stopped {
    TimedOut,
    Panicked,
}

/// Runs `fut` to completion unless it panics or takes longer than `limit`. Most scans finish
/// on their first poll; only one that has to wait (for the database) gets a timer.
async fn guarded<F: Future>(fut: F, limit: Duration) -> Result<F::Output, Stopped> {
    let mut fut = pin!(fut);
    let mut poll_caught =
        move |cx: &mut Context<'_>| match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Stopped::Panicked)),
        };
    let first = poll_fn(|cx| Poll::Ready(poll_caught(cx))).await;
    match first {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout(limit, poll_fn(poll_caught)).await {
            Ok(r) => r,
            Err(_) => Err(Stopped::TimedOut),
        },
    }
}

/// `http_requests_total` and `http_request_duration_seconds` for `GET /l/{slug}`, the same
/// series `track_metrics` writes for other routes, with the handles looked up once.
struct ScanMetrics {
    by_status: Vec<(StatusCode, Counter)>,
    duration: Histogram,
}

impl ScanMetrics {
    fn get() -> &'static ScanMetrics {
        static METRICS: OnceLock<ScanMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let statuses = [
                StatusCode::FOUND,
                StatusCode::OK,
                StatusCode::TEMPORARY_REDIRECT,
                StatusCode::NOT_FOUND,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::REQUEST_TIMEOUT,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE,
            ];
            ScanMetrics {
                by_status: statuses.iter().map(|&s| (s, super::requests_counter("GET", SCAN_ROUTE, s))).collect(),
                duration: super::duration_histogram("GET", SCAN_ROUTE),
            }
        })
    }

    fn record(&self, status: StatusCode, elapsed: Duration) {
        match self.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.increment(1),
            None => super::requests_counter("GET", SCAN_ROUTE, status).increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_scan_paths_take_the_fast_path() {
        assert_eq!(scan_slug("/l/abc-DEF_123"), Some("abc-DEF_123"));
        assert_eq!(scan_slug("/l/"), None);
        assert_eq!(scan_slug("/l/abc/"), None);
        assert_eq!(scan_slug("/l/abc/press"), None);
        assert_eq!(scan_slug("/l/a%62c"), None);
        assert_eq!(scan_slug("/lx/abc"), None);
        assert_eq!(scan_slug("/api/v1/live-codes/abc"), None);
    }

    #[tokio::test]
    async fn a_guarded_future_finishes_panics_or_times_out() {
        assert!(matches!(guarded(async { 7 }, Duration::from_secs(1)).await, Ok(7)));
        let panicking = async {
            tokio::task::yield_now().await;
            panic!("boom")
        };
        assert!(matches!(guarded(panicking, Duration::from_secs(5)).await, Err(Stopped::Panicked)));
        let slow = tokio::time::sleep(Duration::from_secs(3600));
        assert!(matches!(guarded(slow, Duration::from_millis(10)).await, Err(Stopped::TimedOut)));
    }
}
