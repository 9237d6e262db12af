//! The HTTP surface: one router assembled from each module's own `router()`, and the layers
//! around it (sessions and CSRF for the admin UI, body limits, timeouts, tracing, metrics).

pub mod assets;
pub mod automation;
pub mod bridge_outbound;
pub mod bridges;
pub mod broadcasts;
pub mod checkin_poster;
pub mod checkins;
pub mod confirm;
pub mod ctx;
pub mod dashboard;
pub mod fast;
pub mod groups;
pub mod headers;
pub mod hooks;
pub mod invite_links;
pub mod invites;
pub mod jobs;
pub mod landing;
pub mod live_codes;
pub mod login;
pub mod member_page;
pub mod members;
pub mod moderation;
pub mod ops;
pub mod points;
pub mod posters;
pub mod questionnaire;
pub mod scan;
pub mod serve;
pub mod settings;
pub mod upload;
pub mod words;
pub mod zone;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

use crate::auth::csrf;
use crate::error::{AppError, ErrorMarker};
use crate::AppState;

/// Room for multipart boundaries and the other form fields next to an uploaded file.
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;

fn session_store(state: &AppState) -> PostgresStore {
    // The table is created by our own migration (public.sessions), not by the store.
    PostgresStore::new(state.db.clone())
        .with_schema_name("public")
        .and_then(|s| s.with_table_name("sessions"))
        .unwrap_or_else(|_| PostgresStore::new(state.db.clone()))
}

/// Deletes expired sessions once an hour.
pub fn spawn_session_cleanup(db: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let deleted = async {
                let mut conn = db.acquire().await?;
                crate::store::system::delete_expired_sessions(&mut conn).await
            };
            if let Err(e) = deleted.await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    })
}

pub fn router(state: AppState) -> Router {
    // Install the metrics recorder before the first request is counted.
    crate::telemetry::prometheus();
    let cfg = state.config.clone();
    let sessions = SessionManagerLayer::new(session_store(&state))
        .with_name(cfg.session.cookie_name.clone())
        .with_secure(cfg.session.secure)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(cfg.session.idle_minutes)));

    let admin = Router::new()
        .merge(login::router())
        .merge(dashboard::router())
        .merge(groups::router(&cfg))
        .merge(live_codes::router(&cfg))
        .merge(members::router(&cfg))
        .merge(bridges::router())
        .merge(bridge_outbound::router())
        .merge(checkins::router())
        .merge(points::router())
        .merge(posters::router(&cfg))
        .merge(member_page::router())
        .merge(checkin_poster::router())
        .merge(invite_links::router())
        .merge(settings::router())
        .merge(jobs::router())
        .merge(broadcasts::router(&cfg))
        .merge(invites::router())
        .merge(moderation::router())
        .merge(automation::router())
        .fallback(|| async { AppError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), csrf::guard))
        .layer(sessions)
        .layer(middleware::from_fn(html_errors));

    Router::new()
        .merge(ops::router())
        .merge(assets::router())
        .merge(scan::router())
        .merge(posters::public_router())
        .merge(member_page::public_router())
        .merge(checkin_poster::public_router())
        .merge(broadcasts::public_router())
        .merge(questionnaire::public_router())
        .merge(hooks::router())
        .merge(crate::api::router())
        .merge(admin)
        .layer(DefaultBodyLimit::max(cfg.http.max_body_bytes))
        .layer(middleware::from_fn(track_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The matched route, never the raw URI: query strings may carry secrets.
            let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str()).unwrap_or("fallback");
            tracing::info_span!("request", method = %req.method(), route)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(CatchPanicLayer::custom(|_| AppError::Other(anyhow::anyhow!("handler panicked")).into_response()))
        .layer(middleware::from_fn_with_state(state.clone(), headers::layer))
        .with_state(state)
}

/// Answers 408 when a request takes longer than `http.request_timeout_secs`.
async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.config.http.request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => timed_out(),
    }
}

/// The answer to a request that took longer than `http.request_timeout_secs`.
fn timed_out() -> Response {
    let mut resp = StatusCode::REQUEST_TIMEOUT.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let start = std::time::Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "fallback".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    requests_counter(&method, &route, resp.status()).increment(1);
    duration_histogram(&method, &route).record(start.elapsed().as_secs_f64());
    resp
}

/// `http_requests_total{method, route, status}`.
fn requests_counter(method: &str, route: &str, status: StatusCode) -> metrics::Counter {
    let (method, route) = (method.to_owned(), route.to_owned());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status.as_u16().to_string())
}

/// `http_request_duration_seconds{method, route}`.
fn duration_histogram(method: &str, route: &str) -> metrics::Histogram {
    let (method, route) = (method.to_owned(), route.to_owned());
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
}

/// Turns every error answer of the admin UI (problem+json from `AppError`, or a bare status from
/// a layer) into a localised HTML page that reveals nothing internal.
async fn html_errors(req: Request, next: Next) -> Response {
    let lang = ctx::request_lang(req.headers(), None);
    let is_get = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    // A URL that only takes a form's POST (a refresh after a rejected form, a bookmarked or
    // shared address): send the browser to the page that holds the form instead of a bare 405.
    if is_get && status == StatusCode::METHOD_NOT_ALLOWED {
        return redirect(&form_page_of(&path));
    }
    if status.as_u16() < 400 {
        return resp;
    }
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        return resp;
    }
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let status = resp.extensions().get::<ErrorMarker>().map(|m| m.0).unwrap_or(status);
    let mut page = ctx::error_page(lang, status);
    if let Some(v) = retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}

/// The page holding the form that posts to `action`: an object's own page for its actions
/// (`/live-codes/3/targets/7/limit` → `/live-codes/3`), the section for a section's forms
/// (`/settings/password` → `/settings`, `/logout` → `/`).
pub fn form_page_of(action: &str) -> String {
    let segments: Vec<&str> = action.split('/').filter(|s| !s.is_empty()).collect();
    let keep = if segments.len() > 2 { 2 } else { segments.len().saturating_sub(1) };
    let mut out = String::new();
    for s in &segments[..keep] {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// An HTML response with `status`.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Renders a template as a page.
pub fn render<T: askama::Template>(status: StatusCode, t: &T) -> Result<Response, AppError> {
    Ok(html(status, t.render()?))
}

/// A response body written while it is sent: a task feeds chunks through a small channel, so
/// only a few chunks wait in memory however long the body is, and the task notices (its send
/// fails) when the client has gone. An `Err` ends the body abruptly: the client sees a
/// truncated download rather than a file that looks whole.
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>);

impl futures_core::Stream for ChannelBody {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A channel for a [`ChannelBody`]: `(sender, body)`.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<Result<axum::body::Bytes, std::io::Error>>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    (tx, Body::from_stream(ChannelBody(rx)))
}

/// A 303 See Other to `to`.
pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Only a path on this origin may be a redirect target (`?next=`), never another host.
///
/// Browsers drop tabs and newlines from URLs and read `\\` as `/`, so `/\t/evil.example` or
/// `/%09/evil.example` (once decoded) would be a scheme-relative URL. Refused: anything that does
/// not start with one `/`, and any control character, whitespace or backslash, in the raw text or
/// after percent-decoding.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

fn is_local_path(n: &str) -> bool {
    let plain = |s: &str| {
        s.starts_with('/')
            && !s.starts_with("//")
            && !s.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    };
    if !plain(n) {
        return false;
    }
    // Decoded twice: a proxy or browser may decode once more than we expect.
    let once = percent_decode(n);
    plain(&once) && plain(&percent_decode(&once))
}

/// Percent-decodes `s`; invalid escapes stay as they are, bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&urlencoding::decode_binary(s.as_bytes())).into_owned()
}

/// Page links for a list: keeps the list's filters in every link.
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    /// The list's query string without `page`, e.g. `q=abc&platform=qq`.
    pub query: String,
    pub base: &'static str,
}

impl Pager {
    pub fn new(base: &'static str, page: i64, size: i64, total: i64, filters: &[(&str, &str)]) -> Pager {
        let query = filters
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        Pager { page, pages: ((total + size - 1) / size).max(1), total, query, base }
    }
    pub fn href(&self, page: i64) -> String {
        if self.query.is_empty() {
            format!("{}?page={page}", self.base)
        } else {
            format!("{}?{}&page={page}", self.base, self.query)
        }
    }
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
    pub fn label(&self, tr: &crate::i18n::Tr) -> String {
        tr.f("list.page_of", &[("page", &self.page), ("pages", &self.pages)])
    }
    pub fn total_label(&self, tr: &crate::i18n::Tr) -> String {
        tr.f("list.total", &[("total", &self.total)])
    }
}

/// "N in total", "about N in total" or "more than N" for a list whose total is estimated or
/// capped where an exact count would read every row.
pub fn total_label(tr: &crate::i18n::Tr, total: crate::store::Total) -> String {
    use crate::store::Total;
    match total {
        Total::Exact(n) => tr.f("list.total", &[("total", &n)]),
        // Two significant figures: the estimate is not better than that.
        Total::About(n) => tr.f("list.total_about", &[("total", &round_estimate(n))]),
        Total::MoreThan(n) => tr.f("list.total_more", &[("total", &n)]),
        Total::Unknown => String::new(),
    }
}

/// A card's count: "N", "about N" or "more than N".
pub fn count_label(tr: &crate::i18n::Tr, total: crate::store::Total) -> String {
    use crate::store::Total;
    match total {
        Total::Exact(n) => n.to_string(),
        Total::About(n) => tr.f("list.about", &[("n", &round_estimate(n))]),
        Total::MoreThan(n) => tr.f("list.more", &[("n", &n)]),
        Total::Unknown => "–".to_string(),
    }
}

fn round_estimate(n: i64) -> i64 {
    let mut unit = 1;
    while n / unit >= 100 {
        unit *= 10;
    }
    (n + unit / 2) / unit * unit
}

/// Previous / next links of a list that continues from a row's key (keyset pagination): no
/// OFFSET, so a page deep in a million rows costs what the first one does. Each link keeps the
/// list's filters and carries the id of the row to continue after (`after=`) or before
/// (`before=`).
pub struct CursorPager {
    pub first: Option<String>,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub total: String,
}

impl CursorPager {
    pub fn new(
        base: &str,
        filters: &[(&str, &str)],
        prev_before: Option<i64>,
        next_after: Option<i64>,
        total: String,
    ) -> CursorPager {
        let query: Vec<String> = filters
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", urlencoding::encode(v)))
            .collect();
        let with = |extra: Option<String>| {
            let mut q = query.clone();
            q.extend(extra);
            if q.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", q.join("&"))
            }
        };
        CursorPager {
            first: prev_before.map(|_| with(None)),
            prev: prev_before.map(|id| with(Some(format!("before={id}")))),
            next: next_after.map(|id| with(Some(format!("after={id}")))),
            total,
        }
    }
}

/// `Some(s)` unless `s` is blank.
pub fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::{form_page_of, round_estimate, safe_next};

    #[test]
    fn estimates_keep_two_significant_figures() {
        assert_eq!(round_estimate(87), 87);
        assert_eq!(round_estimate(1_003_412), 1_000_000);
        assert_eq!(round_estimate(1_050_000), 1_100_000);
        assert_eq!(round_estimate(12_345), 12_000);
    }

    #[test]
    fn a_post_only_url_leads_back_to_the_page_holding_its_form() {
        assert_eq!(form_page_of("/live-codes/3/targets/7/limit"), "/live-codes/3");
        assert_eq!(form_page_of("/members/5/points"), "/members/5");
        assert_eq!(form_page_of("/settings/tokens/9/revoke"), "/settings/tokens");
        assert_eq!(form_page_of("/settings/password"), "/settings");
        assert_eq!(form_page_of("/logout"), "/");
        assert_eq!(form_page_of("/"), "/");
    }

    #[test]
    fn next_is_only_ever_a_local_path() {
        assert_eq!(safe_next(Some("/groups?page=2")), "/groups?page=2");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn next_refuses_control_characters_and_whitespace_raw_or_encoded() {
        for bad in [
            "/%09/evil.example/",
            "/\t/evil.example/",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%2F/evil.example",
            "/%5C/evil.example",
            "/%252F%252Fevil.example",
            "/ /evil.example",
            "/%20/evil.example",
            "/\u{0085}/evil.example",
            "/%C2%85/evil.example",
            "/\u{3000}/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?} must not be a redirect target");
        }
        assert_eq!(safe_next(Some("/members?q=%E5%BC%A0")), "/members?q=%E5%BC%A0");
        assert_eq!(safe_next(Some("/live-codes/3#targets")), "/live-codes/3#targets");
    }
}
