//! The HTTP surface: one router assembled from each module's own `router()`, and the layers
//! around it (sessions and CSRF for the admin UI, body limits, timeouts, tracing, metrics).

pub mod assets;
pub mod bridges;
pub mod checkins;
pub mod confirm;
pub mod ctx;
pub mod dashboard;
pub mod fast;
pub mod groups;
pub mod hooks;
pub mod live_codes;
pub mod login;
pub mod members;
pub mod ops;
pub mod points;
pub mod scan;
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
            if let Err(e) = sqlx::query("DELETE FROM sessions WHERE expiry_date < now()").execute(&db).await {
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
        .merge(checkins::router())
        .merge(points::router())
        .merge(settings::router())
        .fallback(|| async { AppError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), csrf::guard))
        .layer(sessions)
        .layer(middleware::from_fn(html_errors));

    Router::new()
        .merge(ops::router())
        .merge(assets::router())
        .merge(scan::router())
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

/// A 303 See Other to `to`.
pub fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Only a local path may be a redirect target (`?next=`), never another host.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains(['\\', '\r', '\n']) => n.to_string(),
        _ => "/".to_string(),
    }
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

/// `Some(s)` unless `s` is blank.
pub fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::{form_page_of, safe_next};

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
}
