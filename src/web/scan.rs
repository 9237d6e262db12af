//! The public scan path: `GET /l/{slug}` sends each scan to a group with room, exactly, without
//! touching the database on most requests; plus the long-press beacon and the public images.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;

use super::ctx::{client_addr, cookie, request_lang};
use crate::domain::live_code::{anonymize_ip, classify_user_agent, ScanOutcome, UaClass};
use crate::error::AppError;
use crate::i18n::Tr;
use crate::scan::events::ScanEvent;
use crate::scan::{Outcome, Snapshot};
use crate::store::live_codes::TargetRow;
use crate::AppState;

pub const VISITOR_COOKIE: &str = "shoal_vid";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/l/{slug}", get(scan).head(scan_head))
        // The beacon's body is `t=<target id>`.
        .route("/l/{slug}/press", post(press).layer(axum::extract::DefaultBodyLimit::max(1024)))
        .route("/l/{slug}/t/{target}/qr", get(target_qr))
        .route("/l/{slug}/fallback-image", get(fallback_image))
        .route("/l/{slug}/qr.png", get(code_qr))
        .route("/l/{slug}/logo", get(logo))
}

/// The operator's top of a landing page: the code's logo, title and short text (empty when
/// none is set: the page looks as before).
pub struct Landing<'a> {
    pub slug: &'a str,
    pub title: &'a str,
    pub text: &'a str,
    pub logo: Option<&'a str>,
}

impl<'a> Landing<'a> {
    fn of(c: &'a crate::store::live_codes::LiveCodeRow) -> Landing<'a> {
        Landing { slug: &c.slug, title: &c.page_title, text: &c.page_text, logo: c.logo_sha.as_deref() }
    }
}

/// The language of a code's pages: its own when set, else the visitor's.
fn code_lang(c: &crate::store::live_codes::LiveCodeRow, headers: &HeaderMap) -> Tr {
    Tr(c.page_lang.unwrap_or_else(|| request_lang(headers, None)))
}

/// The title a code's pages and link previews show: the operator's, else the code's name.
fn code_title(c: &crate::store::live_codes::LiveCodeRow) -> &str {
    if c.page_title.is_empty() {
        &c.name
    } else {
        &c.page_title
    }
}

/// 16 random bytes, URL-safe: a visitor id needs to be unique, not secret, so the thread-local
/// generator does (no system call per scan).
fn new_visitor_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A visitor id as `new_visitor_id` makes them: anything else in the cookie is ignored.
fn valid_visitor_id(v: &str) -> bool {
    v.len() == 22 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn sticky_cookie(code_id: i64) -> String {
    format!("shoal_lc{code_id}")
}

/// The parameters of a scan URL: `?ch=` (a channel key) and `?ref=` (who invited).
#[derive(Default)]
pub struct ScanQuery {
    ch: Option<String>,
    referrer: Option<String>,
    /// A member's personal invite code (`?r=`), kept only when it has a code's shape.
    r: Option<String>,
}

impl ScanQuery {
    /// Reads the query string; the first of repeated keys wins, unknown keys are ignored, and
    /// nothing in it can make a scan fail.
    pub fn parse(query: Option<&str>) -> ScanQuery {
        let mut q = ScanQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*k {
                "ch" => &mut q.ch,
                "ref" => &mut q.referrer,
                "r" if crate::domain::invite::is_code(&v) => &mut q.r,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        q
    }
}

#[derive(Template)]
#[template(path = "scan/target.html")]
struct TargetPage<'a> {
    tr: Tr,
    slug: &'a str,
    target: &'a TargetRow,
    landing: Landing<'a>,
}

#[derive(Template)]
#[template(path = "scan/fallback.html")]
struct FallbackPage<'a> {
    tr: Tr,
    landing: Landing<'a>,
    slug: &'a str,
    name: &'a str,
    message: &'a str,
    url: Option<&'a str>,
    image: bool,
}

#[derive(Template)]
#[template(path = "scan/preview.html")]
struct PreviewPage<'a> {
    tr: Tr,
    name: &'a str,
    /// The operator's short text, else the default description.
    text: &'a str,
    image: String,
    url: String,
}

#[derive(Template)]
#[template(path = "scan/busy.html")]
struct BusyPage<'a> {
    tr: Tr,
    name: &'a str,
    /// Seconds until the page tries again by itself.
    retry: u64,
}

#[derive(Template)]
#[template(path = "scan/not_found.html")]
struct NotFoundPage<'a> {
    tr: Tr,
    /// `scan.not_found` for an unknown link; `scan.paused`, `scan.not_started` or `scan.ended`
    /// for a live code that exists but is not taking scans now.
    key: &'static str,
    /// The operator's landing top and their text for this state (empty: the default words).
    landing: Option<Landing<'a>>,
    text: &'a str,
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => no_store(super::html(status, body)),
        Err(e) => AppError::from(e).into_response(),
    }
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age_secs: i64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/l; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Text safe to store: at most `max` characters, no control characters.
fn clean(s: Option<&str>, max: usize) -> String {
    s.unwrap_or("").chars().filter(|c| !c.is_control()).take(max).collect()
}

/// `GET /l/{slug}` through the router. Most scans never get here: `web::fast` answers them
/// before routing; this route serves the slugs that need percent-decoding.
async fn scan(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    respond(&state, &slug, req.uri().query(), req.headers(), Some(peer)).await
}

/// `HEAD /l/{slug}` (link checkers): a scan takes a slot, so HEAD, which must be safe, gets a
/// bare 200 and takes nothing.
async fn scan_head() -> Response {
    no_store(super::html(StatusCode::OK, String::new()))
}

/// The answer to one scan of `slug`, whichever way the request came in.
pub async fn respond(
    state: &AppState,
    slug: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Response {
    match scan_inner(state, slug, ScanQuery::parse(query), headers, peer).await {
        Ok(r) => r,
        Err(e) => no_store(e.into_response()),
    }
}

async fn scan_inner(
    state: &AppState,
    slug: &str,
    q: ScanQuery,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Response, AppError> {
    let now = Utc::now();
    let rt = &state.scan;
    let snap = match rt.snapshot(&state.db, slug).await? {
        Some(s) if s.code.live(now) => s,
        Some(s) => {
            // Paused or outside its period: say which, so a member does not think the code is dead.
            let c = &s.code;
            let (key, text) = if !c.status.is_active() {
                ("scan.paused", &c.paused_text)
            } else if c.starts_at.is_some_and(|at| at > now) {
                ("scan.not_started", &c.paused_text)
            } else {
                ("scan.ended", &c.ended_text)
            };
            let p = NotFoundPage { tr: code_lang(c, headers), key, landing: Some(Landing::of(c)), text };
            return Ok(page(StatusCode::NOT_FOUND, &p));
        }
        None => {
            let p =
                NotFoundPage { tr: Tr(request_lang(headers, None)), key: "scan.not_found", landing: None, text: "" };
            return Ok(page(StatusCode::NOT_FOUND, &p));
        }
    };
    // The language matters only for pages, not for the common redirect: the code's own, else
    // the visitor's.
    let tr = || code_lang(&snap.code, headers);
    let code_id = snap.code.id;
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let class = classify_user_agent(ua);
    let channel = q.ch.as_deref().filter(|c| snap.channel(c).is_some()).unwrap_or("").to_string();
    let referrer = clean(q.referrer.as_deref(), 64);
    let ip = client_addr(headers, peer, state.config.auth.forwarded_hops());
    let ip_anon = ip.map(anonymize_ip);
    let event = |outcome: ScanOutcome, target: Option<&TargetRow>, visitor: &str| ScanEvent {
        at: now,
        live_code_id: code_id,
        channel: channel.clone(),
        target_id: target.map(|t| t.id),
        group_id: target.map(|t| t.group_id),
        outcome,
        visitor: visitor.to_string(),
        referrer: referrer.clone(),
        ua_class: class,
        ip_anon,
    };

    if class == UaClass::Crawler {
        rt.events.record(event(ScanOutcome::Preview, None, ""));
        let base = state.config.public_base();
        let p = PreviewPage {
            tr: tr(),
            name: code_title(&snap.code),
            text: &snap.code.page_text,
            image: format!("{base}/l/{}/qr.png", snap.code.slug),
            url: format!("{base}/l/{}", snap.code.slug),
        };
        return Ok(page(StatusCode::OK, &p));
    }

    let known_visitor = cookie(headers, VISITOR_COOKIE).filter(|v| valid_visitor_id(v));
    let visitor = known_visitor.clone().unwrap_or_else(new_visitor_id);
    let ts = now.timestamp();

    // A returning visitor within the sticky window keeps their group, using no slot, as long
    // as that group can still take people.
    let mut outcome = None;
    if snap.code.sticky_days > 0 && known_visitor.is_some() {
        if let Some(value) = cookie(headers, &sticky_cookie(code_id)) {
            if let Some(tid) = rt.read_sticky(&state.db, code_id, &visitor, &value, snap.code.sticky_days, ts).await? {
                if let Some(i) = snap.target_index(tid).filter(|&i| snap.states[i].open(now)) {
                    outcome = Some(Outcome::Target { index: i, sticky: true });
                }
            }
        }
    }
    let secure = state.config.session.secure;
    // A new visitor takes a slot only while their address is within its share of new slots
    // (`scan.new_scans_per_address`): a script cannot drain the code.
    if outcome.is_none() {
        if let Some(retry) = ip.and_then(|ip| rt.limiter.allow(ip).err()) {
            rt.events.record(event(ScanOutcome::Refused, None, &visitor));
            metrics::counter!("scan_refused_total").increment(1);
            let mut resp = busy(&snap, retry, tr());
            if known_visitor.is_none() {
                set_cookie(&mut resp, VISITOR_COOKIE, &visitor, 365 * 86_400, secure);
            }
            return Ok(resp);
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => rt.route(&state.db, &snap, now).await?,
    };
    let mut resp = match &outcome {
        Outcome::Target { index, sticky } => {
            let target = &snap.targets[*index];
            let outcome = if *sticky { ScanOutcome::Sticky } else { ScanOutcome::New };
            rt.events.record(event(outcome, Some(target), &visitor));
            if !*sticky {
                referral(state, &q, code_id, Some(target.group_id), ip, ua);
            }
            let mut r = serve_target(state, &snap, target, tr);
            if !*sticky && snap.code.sticky_days > 0 {
                let value = rt.sticky_value(&state.db, code_id, &visitor, target.id, ts).await?;
                set_cookie(&mut r, &sticky_cookie(code_id), &value, snap.code.sticky_days as i64 * 86_400, secure);
            }
            r
        }
        Outcome::Fallback => {
            rt.events.record(event(ScanOutcome::Fallback, None, &visitor));
            referral(state, &q, code_id, None, ip, ua);
            metrics::counter!("scan_fallbacks_total").increment(1);
            rt.fallback_seen.notify_one();
            fallback(&snap, tr())
        }
    };
    if known_visitor.is_none() {
        set_cookie(&mut resp, VISITOR_COOKIE, &visitor, 365 * 86_400, secure);
    }
    Ok(resp)
}

/// A scan with a personal code (`?r=`) becomes a pending referral, written off the response
/// path (never awaited; a referral lost to a crash costs an attribution, not a scan).
fn referral(state: &AppState, q: &ScanQuery, code: i64, group: Option<i64>, ip: Option<std::net::IpAddr>, ua: &str) {
    let Some(r) = q.r.clone() else { return };
    let client = crate::app::invites::client_key(ip, ua);
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::app::invites::record_scan(&db, &r, code, group, &client).await {
            tracing::warn!(error = %e, "could not record a referral");
        }
    });
}

/// A redirect to the invite link, or the page showing the group's current QR image.
fn serve_target(state: &AppState, snap: &Snapshot, t: &TargetRow, tr: impl Fn() -> Tr) -> Response {
    if let Some(url) = &t.join_url {
        let status =
            if state.config.scan.redirect_status == 307 { StatusCode::TEMPORARY_REDIRECT } else { StatusCode::FOUND };
        let mut r = status.into_response();
        if let Ok(v) = HeaderValue::from_str(url) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return no_store(r);
    }
    page(StatusCode::OK, &TargetPage { tr: tr(), slug: &snap.code.slug, target: t, landing: Landing::of(&snap.code) })
}

fn fallback(snap: &Snapshot, tr: Tr) -> Response {
    let c = &snap.code;
    let p = FallbackPage {
        tr,
        landing: Landing::of(c),
        slug: &c.slug,
        name: code_title(c),
        message: &c.fallback_message,
        url: if c.fallback_kind.is_url() { c.fallback_url.as_deref() } else { None },
        image: c.fallback_kind.is_image() && c.fallback_sha.is_some(),
    };
    page(StatusCode::OK, &p)
}

/// The answer to a new visitor whose address has taken its share of new slots: a page saying
/// to try again shortly, which does so by itself when the address's window has passed. Not
/// the fallback: that is for "every group is full", would send real members (an office behind
/// one NAT address) to the owner's contact and raise the "exhausted" alert, while a slot is
/// most likely free for them a minute later.
fn busy(snap: &Snapshot, retry: u64, tr: Tr) -> Response {
    // A little spread, so that the visitors refused in one window do not all come back at once.
    let retry = retry.max(1) + rand::random::<u64>() % 5;
    let mut r = page(StatusCode::TOO_MANY_REQUESTS, &BusyPage { tr, name: code_title(&snap.code), retry });
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The long-press beacon from the QR page: counted as intent to join.
async fn press(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let target_id: Option<i64> =
        form_urlencoded::parse(&body).find(|(k, _)| k == "t").and_then(|(_, v)| v.parse().ok());
    let Ok(Some(snap)) = state.scan.snapshot(&state.db, &slug).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(target) = target_id.and_then(|t| snap.target(t)) else { return StatusCode::NO_CONTENT.into_response() };
    let visitor = cookie(&headers, VISITOR_COOKIE).filter(|v| valid_visitor_id(v)).unwrap_or_default();
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    state.scan.events.record(ScanEvent {
        at: Utc::now(),
        live_code_id: snap.code.id,
        channel: String::new(),
        target_id: Some(target.id),
        group_id: Some(target.group_id),
        outcome: ScanOutcome::LongPress,
        visitor,
        referrer: String::new(),
        ua_class: classify_user_agent(ua),
        ip_anon: None,
    });
    StatusCode::NO_CONTENT.into_response()
}

/// The current QR image of a target's group (replaced in place: the URL carries its hash).
async fn target_qr(
    State(state): State<AppState>,
    Path((slug, target)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snap = state.scan.snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    // Only a target a scan could be sent to now: not one disabled, in an archived group, or of
    // a paused code.
    let now = Utc::now();
    let i = snap.target_index(target).filter(|&i| snap.code.live(now) && snap.states[i].open(now));
    let t = &snap.targets[i.ok_or(AppError::NotFound)?];
    let mut conn = state.db.acquire().await?;
    let (ct, bytes, sha) = crate::store::groups::qr_image(&mut conn, t.group_id).await?.ok_or(AppError::NotFound)?;
    Ok(super::groups::image_response(&headers, ct, bytes, &sha, "public, max-age=300"))
}

async fn fallback_image(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snap = state.scan.snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    // Only while the code shows it: an image left from an earlier setting stays private.
    if !(snap.code.live(Utc::now()) && snap.code.fallback_kind.is_image()) {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.acquire().await?;
    let (ct, bytes, sha) =
        crate::store::live_codes::fallback_image(&mut conn, snap.code.id).await?.ok_or(AppError::NotFound)?;
    Ok(super::groups::image_response(&headers, ct, bytes, &sha, "public, max-age=300"))
}

/// The code's logo on its landing pages (replaced in place: the pages carry its hash).
async fn logo(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snap = state.scan.snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    if snap.code.logo_sha.is_none() {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.acquire().await?;
    let (ct, bytes, sha) = crate::store::live_codes::logo(&mut conn, snap.code.id).await?.ok_or(AppError::NotFound)?;
    Ok(super::groups::image_response(&headers, ct, bytes, &sha, "public, max-age=300"))
}

/// The live code's own QR (for link previews), 512 px.
async fn code_qr(State(state): State<AppState>, Path(slug): Path<String>) -> Result<Response, AppError> {
    let snap = state.scan.snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    let url = format!("{}/l/{}", state.config.public_base(), snap.code.slug);
    let png = tokio::task::spawn_blocking(move || crate::domain::qr::render_png(&url, 512))
        .await
        .map_err(|e| AppError::Other(e.into()))?
        .ok_or(AppError::NotFound)?;
    let mut r = (StatusCode::OK, png).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(r)
}
