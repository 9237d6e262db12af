//! The service each connection runs. It answers `GET /l/{slug}` and `POST /hooks/{kind}/{id}`
//! itself, before the router and its layers, and hands every other request to the router.
//!
//! A scan and a bridge's webhook are the requests that come in bulk (a printed QR code in a
//! crowd; every message of every group a bot is in). The router's layers cost more than a scan
//! does, and a fifth of a check-in's own work: a tracing span per request, metric labels built
//! as strings and looked up in the registry, a timer per request, and the state cloned several
//! times. Here these two get the same guarantees in cheaper form. They are counted in the same
//! metrics, through handles looked up once. They get the same request timeout, but a timer
//! only when they have to wait. A panic becomes the same 500 answer, and a webhook's body is
//! read under the same size limit. They get no span: these paths log only failures, and those
//! name the route.

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
use http_body_util::{BodyExt, LengthLimitError, Limited};
use metrics::{Counter, Histogram};
use tokio::net::TcpListener;
use tower::Service;

use super::hooks::BodyError;
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
        if req.method() == Method::POST && hook_path(req.uri().path()).is_some() {
            let conn = self.0.clone();
            return Box::pin(async move { Ok(hook(&conn, req).await) });
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

/// The kind and bridge id of a webhook URL `/hooks/{kind}/{id}` that needs no decoding;
/// anything else is left to the router.
pub fn hook_path(path: &str) -> Option<(&str, &str)> {
    let (kind, id) = path.strip_prefix("/hooks/")?.split_once('/')?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (plain(kind) && plain(id)).then_some((kind, id))
}

async fn scan(conn: &Conn, req: Request) -> Response {
    let start = Instant::now();
    let state = &conn.shared.state;
    let slug = scan_slug(req.uri().path()).unwrap_or_default();
    let answer = super::scan::respond(state, slug, req.uri().query(), req.headers(), Some(conn.peer));
    let resp = finish(state, SCAN_ROUTE, answer).await;
    RouteMetrics::scan().record(resp.status(), start.elapsed());
    resp
}

async fn hook(conn: &Conn, req: Request) -> Response {
    let start = Instant::now();
    let state = &conn.shared.state;
    let (parts, body) = req.into_parts();
    let (kind, id) = hook_path(parts.uri.path()).unwrap_or_default();
    let answer = async {
        // The same limit as the router's `DefaultBodyLimit`.
        let body = match Limited::new(body, state.config.http.max_body_bytes).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
            Err(e) => Err(BodyError::Unreadable(format!("failed to read the request body: {e}"))),
        };
        super::hooks::deliver(state, kind, id, &parts.headers, body).await
    };
    let resp = finish(state, HOOK_ROUTE, answer).await;
    RouteMetrics::hook().record(resp.status(), start.elapsed());
    resp
}

/// Runs a fast path's handler under the request timeout, turns a panic into a 500, logs a
/// failure with its route, and adds the security headers every answer carries.
async fn finish(state: &AppState, route: &str, answer: impl Future<Output = Response>) -> Response {
    let limit = Duration::from_secs(state.config.http.request_timeout_secs);
    let mut resp = match guarded(answer, limit).await {
        Ok(resp) => resp,
        Err(Stopped::TimedOut) => super::timed_out(),
        Err(Stopped::Panicked) => {
            tracing::error!(route, "the handler panicked");
            AppError::Other(anyhow::anyhow!("handler panicked")).into_response()
        }
    };
    if resp.status().is_server_error() {
        tracing::error!(route, status = resp.status().as_u16(), "request failed");
    }
    super::headers::apply(resp.headers_mut(), state.config.session.secure);
    resp
}

const SCAN_ROUTE: &str = "/l/{slug}";
const HOOK_ROUTE: &str = "/hooks/{kind}/{bridge_id}";

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

/// `http_requests_total` and `http_request_duration_seconds` for a fast path's route, the same
/// series `track_metrics` writes for other routes, with the handles looked up once.
struct RouteMetrics {
    method: &'static str,
    route: &'static str,
    by_status: Vec<(StatusCode, Counter)>,
    duration: Histogram,
}

impl RouteMetrics {
    fn scan() -> &'static RouteMetrics {
        static METRICS: OnceLock<RouteMetrics> = OnceLock::new();
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
            RouteMetrics::new("GET", SCAN_ROUTE, &statuses)
        })
    }

    fn hook() -> &'static RouteMetrics {
        static METRICS: OnceLock<RouteMetrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let statuses = [
                StatusCode::OK,
                StatusCode::NO_CONTENT,
                StatusCode::BAD_REQUEST,
                StatusCode::UNAUTHORIZED,
                StatusCode::NOT_FOUND,
                StatusCode::REQUEST_TIMEOUT,
                StatusCode::PAYLOAD_TOO_LARGE,
                StatusCode::UNPROCESSABLE_ENTITY,
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE,
            ];
            RouteMetrics::new("POST", HOOK_ROUTE, &statuses)
        })
    }

    fn new(method: &'static str, route: &'static str, statuses: &[StatusCode]) -> RouteMetrics {
        RouteMetrics {
            method,
            route,
            by_status: statuses.iter().map(|&s| (s, super::requests_counter(method, route, s))).collect(),
            duration: super::duration_histogram(method, route),
        }
    }

    fn record(&self, status: StatusCode, elapsed: Duration) {
        match self.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c.increment(1),
            None => super::requests_counter(self.method, self.route, status).increment(1),
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

    #[test]
    fn only_plain_webhook_paths_take_the_fast_path() {
        assert_eq!(hook_path("/hooks/onebot11/12"), Some(("onebot11", "12")));
        assert_eq!(hook_path("/hooks/generic/abc"), Some(("generic", "abc")));
        assert_eq!(hook_path("/hooks/onebot11/"), None);
        assert_eq!(hook_path("/hooks//12"), None);
        assert_eq!(hook_path("/hooks/onebot11/12/"), None);
        assert_eq!(hook_path("/hooks/onebot11/1%32"), None);
        assert_eq!(hook_path("/hooks/onebot11"), None);
        assert_eq!(hook_path("/api/v1/hooks/onebot11/12"), None);
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
