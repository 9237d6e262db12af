//! `/api/v1/live-codes`: live codes, their targets and channels, and — for integrators who
//! render their own page — `resolve` (which target the next scan would get; takes nothing) and
//! `scans` (takes a slot exactly like a scan of the QR code).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::app;
use crate::app::live_codes::{ChannelRef, Move, NewTarget};
use crate::auth::Principal;
use crate::domain::live_code::{scan_limit, FallbackKind, LiveCodeRaw, LiveCodeStatus, Mode, ScanOutcome, UaClass};
use crate::domain::Platform;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::scan::events::ScanEvent;
use crate::scan::Outcome;
use crate::store::live_codes::{self as store, ChannelRow, LiveCodeRow, TargetRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_codes, create_code))
        .routes(routes!(get_code, update_code, delete_code))
        .routes(routes!(add_target))
        .routes(routes!(update_target, remove_target))
        .routes(routes!(add_channel))
        .routes(routes!(delete_channel))
        .routes(routes!(resolve))
        .routes(routes!(take_scan))
}

/// A live code with its targets and channels.
#[derive(Serialize, ToSchema)]
pub struct LiveCode {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub status: LiveCodeStatus,
    pub mode: Mode,
    pub sticky_days: i32,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub fallback_kind: FallbackKind,
    pub fallback_url: Option<String>,
    pub fallback_message: String,
    /// The landing pages' language (`zh-CN`, `en`; null: the visitor's browser decides).
    pub page_lang: Option<String>,
    pub page_title: String,
    pub page_text: String,
    pub paused_text: String,
    pub ended_text: String,
    /// The landing pages' logo (uploaded in the admin UI), if any.
    pub logo_url: Option<String>,
    /// The permanent link the QR code encodes.
    pub url: String,
    pub targets: Vec<Target>,
    pub channels: Vec<Channel>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Target {
    pub id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub position: i32,
    pub scan_limit: i32,
    /// Slots taken (scans, plus blocks reserved by running processes).
    pub used: i32,
    pub enabled: bool,
    /// Eligible for the next new scan right now.
    pub eligible: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Channel {
    pub key: String,
    pub name: String,
    pub url: String,
}

fn target_json(t: &TargetRow) -> Target {
    Target {
        id: t.id,
        group_id: t.group_id,
        group_name: t.group_name.clone(),
        position: t.position,
        scan_limit: t.scan_limit,
        used: t.used,
        enabled: t.enabled,
        eligible: t.state().eligible(Utc::now()),
    }
}

async fn full(state: &AppState, conn: &mut sqlx::PgConnection, c: LiveCodeRow) -> AppResult<LiveCode> {
    let targets = store::targets(conn, c.id).await?;
    let channels = store::channels(conn, c.id).await?;
    let base = format!("{}/l/{}", state.config.public_base(), c.slug);
    Ok(LiveCode {
        id: c.id,
        url: base.clone(),
        targets: targets.iter().map(target_json).collect(),
        channels: channels
            .into_iter()
            .map(|ch: ChannelRow| Channel { url: format!("{base}?ch={}", ch.key), key: ch.key, name: ch.name })
            .collect(),
        mode: c.mode,
        slug: c.slug,
        name: c.name,
        status: c.status,
        sticky_days: c.sticky_days,
        starts_at: c.starts_at,
        ends_at: c.ends_at,
        fallback_kind: c.fallback_kind,
        fallback_url: c.fallback_url,
        fallback_message: c.fallback_message,
        page_lang: c.page_lang.map(|l| l.code().to_string()),
        page_title: c.page_title,
        page_text: c.page_text,
        paused_text: c.paused_text,
        ended_text: c.ended_text,
        logo_url: c.logo_sha.map(|sha| format!("{base}/logo?v={sha}")),
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}

/// The live code with this slug, if the caller may see it.
async fn load(conn: &mut sqlx::PgConnection, p: &Principal, slug: &str) -> AppResult<LiveCodeRow> {
    let id = code_id(conn, slug).await?;
    app::live_codes::load(conn, p, id).await
}

/// The id of the live code with this slug (whether the caller may see it is the use case's to
/// check: a code it may not see answers 404 like one that does not exist).
async fn code_id(conn: &mut sqlx::PgConnection, slug: &str) -> AppResult<i64> {
    Ok(store::by_slug(conn, slug).await?.ok_or(AppError::NotFound)?.id)
}

#[derive(Serialize, ToSchema)]
pub struct LiveCodeList {
    pub items: Vec<LiveCode>,
}

/// List live codes visible to the caller.
#[utoipa::path(get, path = "/api/v1/live-codes", tag = "live codes", responses((status = 200, body = LiveCodeList), (status = 401, body = super::ProblemDoc)))]
async fn list_codes(State(state): State<AppState>, ApiAuth(p): ApiAuth) -> AppResult<Json<LiveCodeList>> {
    let mut conn = state.db.acquire().await?;
    let mut items = Vec::new();
    for c in store::list(&mut conn, &store::Access::of(&p)).await? {
        items.push(full(&state, &mut conn, c).await?);
    }
    Ok(Json(LiveCodeList { items }))
}

/// Settings of a live code; omitted fields keep their value (or default on create). Times are
/// RFC 3339.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LiveCodeBody {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub status: Option<String>,
    pub mode: Option<String>,
    pub sticky_days: Option<i32>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub fallback_kind: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_message: Option<String>,
    pub page_lang: Option<String>,
    pub page_title: Option<String>,
    pub page_text: Option<String>,
    pub paused_text: Option<String>,
    pub ended_text: Option<String>,
}

impl LiveCodeBody {
    fn overlay(self, mut raw: LiveCodeRaw) -> LiveCodeRaw {
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut raw.name, self.name);
        set(&mut raw.slug, self.slug);
        set(&mut raw.status, self.status);
        set(&mut raw.mode, self.mode);
        set(&mut raw.sticky_days, self.sticky_days.map(|d| d.to_string()));
        set(&mut raw.starts_at, self.starts_at);
        set(&mut raw.ends_at, self.ends_at);
        set(&mut raw.fallback_kind, self.fallback_kind);
        set(&mut raw.fallback_url, self.fallback_url);
        set(&mut raw.fallback_message, self.fallback_message);
        set(&mut raw.page_lang, self.page_lang);
        set(&mut raw.page_title, self.page_title);
        set(&mut raw.page_text, self.page_text);
        set(&mut raw.paused_text, self.paused_text);
        set(&mut raw.ended_text, self.ended_text);
        raw
    }
}

fn raw_of(c: &LiveCodeRow) -> LiveCodeRaw {
    LiveCodeRaw {
        name: c.name.clone(),
        slug: c.slug.clone(),
        status: c.status.as_str().to_string(),
        mode: c.mode.as_str().to_string(),
        sticky_days: c.sticky_days.to_string(),
        starts_at: c.starts_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        ends_at: c.ends_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        fallback_kind: c.fallback_kind.as_str().to_string(),
        fallback_url: c.fallback_url.clone().unwrap_or_default(),
        fallback_message: c.fallback_message.clone(),
        page_lang: c.page_lang.map(|l| l.code().to_string()).unwrap_or_default(),
        page_title: c.page_title.clone(),
        page_text: c.page_text.clone(),
        paused_text: c.paused_text.clone(),
        ended_text: c.ended_text.clone(),
    }
}

/// Create a live code (targets are added separately).
#[utoipa::path(post, path = "/api/v1/live-codes", tag = "live codes", request_body = LiveCodeBody,
    responses((status = 201, body = LiveCode), (status = 422, body = super::ProblemDoc)))]
async fn create_code(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<LiveCodeBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = body
        .overlay(LiveCodeRaw::blank())
        .parse(state.config.scan.stats_timezone.tz())
        .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let done = app::live_codes::create(&mut tx, &p, &spec, None).await?;
    let body = full(&state, &mut tx, done.value.clone()).await?;
    done.commit(tx, &state).await?;
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, format!("/api/v1/live-codes/{}", body.slug))], Json(body))
        .into_response())
}

/// Read one live code.
#[utoipa::path(get, path = "/api/v1/live-codes/{slug}", tag = "live codes", params(("slug" = String, Path)),
    responses((status = 200, body = LiveCode), (status = 404, body = super::ProblemDoc)))]
async fn get_code(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
) -> AppResult<Json<LiveCode>> {
    let mut conn = state.db.acquire().await?;
    let c = load(&mut conn, &p, &slug).await?;
    Ok(Json(full(&state, &mut conn, c).await?))
}

/// Change some settings of a live code.
#[utoipa::path(patch, path = "/api/v1/live-codes/{slug}", tag = "live codes", params(("slug" = String, Path)), request_body = LiveCodeBody,
    responses((status = 200, body = LiveCode), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_code(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<LiveCodeBody>,
) -> AppResult<Json<LiveCode>> {
    p.require_write()?;
    let mut tx = state.db.begin().await?;
    let c = load(&mut tx, &p, &slug).await?;
    let spec = body.overlay(raw_of(&c)).parse(state.config.scan.stats_timezone.tz()).map_err(AppError::Validation)?;
    let done = app::live_codes::update(&mut tx, &p, c.id, &spec, None).await?;
    let out = full(&state, &mut tx, done.value.clone()).await?;
    done.commit(tx, &state).await?;
    Ok(Json(out))
}

/// Delete a live code with its targets, channels and statistics.
#[utoipa::path(delete, path = "/api/v1/live-codes/{slug}", tag = "live codes", params(("slug" = String, Path)),
    responses((status = 204), (status = 404, body = super::ProblemDoc)))]
async fn delete_code(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let id = code_id(&mut tx, &slug).await?;
    app::live_codes::delete(&mut tx, &p, id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A target to add: the group, and a scan limit from 0 to 10 000 000 (default: the group's
/// capacity minus its reported member count, at least 1).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    pub group_id: i64,
    pub scan_limit: Option<i64>,
}

/// A limit as the API takes it: within the same bounds as the admin page.
fn limit_of(n: Option<i64>, errors: &mut FieldErrors) -> Option<i32> {
    n.and_then(|n| scan_limit(n, "scan_limit", errors))
}

/// Add a group as the last target.
#[utoipa::path(post, path = "/api/v1/live-codes/{slug}/targets", tag = "live codes", params(("slug" = String, Path)), request_body = TargetBody,
    responses((status = 201, body = Target), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn add_target(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TargetBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let mut fe = FieldErrors::new();
    let scan_limit = limit_of(body.scan_limit, &mut fe);
    let mut tx = state.db.begin().await?;
    let id = code_id(&mut tx, &slug).await?;
    // The live code first: a missing one is a 404 before any field is looked at.
    app::live_codes::load(&mut tx, &p, id).await?;
    fe.into_result(())?;
    let done = app::live_codes::add_target(&mut tx, &p, id, NewTarget { group_id: body.group_id, scan_limit }).await?;
    let t = target_json(&done.value);
    done.commit(tx, &state).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// Changes to a target. `reset: true` sets its counter back to zero (audited).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetPatch {
    /// 0 to 10 000 000.
    pub scan_limit: Option<i64>,
    pub enabled: Option<bool>,
    /// The place in the try order, 1 = first (clamped to the targets there are).
    pub position: Option<i32>,
    pub reset: Option<bool>,
}

/// Change a target's limit, enabled flag or position, or reset its counter. Each change is the
/// same change (and audit entry) as the admin page's button for it.
#[utoipa::path(patch, path = "/api/v1/live-codes/{slug}/targets/{id}", tag = "live codes", params(("slug" = String, Path), ("id" = i64, Path)), request_body = TargetPatch,
    responses((status = 200, body = Target), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_target(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((slug, id)): Path<(String, i64)>,
    ApiJson(body): ApiJson<TargetPatch>,
) -> AppResult<Json<Target>> {
    p.require_write()?;
    let mut fe = FieldErrors::new();
    let limit = limit_of(body.scan_limit, &mut fe);
    let mut tx = state.db.begin().await?;
    let code = code_id(&mut tx, &slug).await?;
    app::live_codes::load(&mut tx, &p, code).await?;
    fe.into_result(())?;
    let mut after = app::AfterCommit::none();
    let mut row = None;
    if let Some(limit) = limit {
        let d = app::live_codes::set_limit(&mut tx, &p, code, id, limit).await?;
        (row, after) = (Some(d.value), d.after);
    }
    if let Some(enabled) = body.enabled {
        let d = app::live_codes::set_enabled(&mut tx, &p, code, id, enabled).await?;
        (row, after) = (Some(d.value), d.after);
    }
    if let Some(pos) = body.position {
        let d = app::live_codes::move_target(&mut tx, &p, code, id, Move::To(pos)).await?;
        (row, after) = (Some(d.value), d.after);
    }
    if body.reset == Some(true) {
        let d = app::live_codes::reset_target(&mut tx, &p, code, id).await?;
        (row, after) = (Some(d.value), d.after);
    }
    let t = match row {
        Some(t) => t,
        // Nothing to change: the target as it is (if the caller may change it).
        None => app::live_codes::target_of(&mut tx, &p, code, id).await?.1,
    };
    app::Done::new(target_json(&t), after).commit(tx, &state).await.map(Json)
}

/// Remove a target.
#[utoipa::path(delete, path = "/api/v1/live-codes/{slug}/targets/{id}", tag = "live codes", params(("slug" = String, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::ProblemDoc)))]
async fn remove_target(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((slug, id)): Path<(String, i64)>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let code = code_id(&mut tx, &slug).await?;
    app::live_codes::remove_target(&mut tx, &p, code, id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    /// Lower-case letters, digits, `-` and `_`: used as `?ch=`.
    pub key: String,
    pub name: String,
}

/// Add a channel (`?ch=key`), counted separately.
#[utoipa::path(post, path = "/api/v1/live-codes/{slug}/channels", tag = "live codes", params(("slug" = String, Path)), request_body = ChannelBody,
    responses((status = 201, body = Channel), (status = 422, body = super::ProblemDoc)))]
async fn add_channel(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ChannelBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let (key, name) = app::live_codes::channel(&body.key, &body.name).map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let code = code_id(&mut tx, &slug).await?;
    let done = app::live_codes::add_channel(&mut tx, &p, code, &key, &name).await?;
    let url = format!("{}/l/{}?ch={key}", state.config.public_base(), slug);
    let ch = done.value.clone();
    done.commit(tx, &state).await?;
    Ok((StatusCode::CREATED, Json(Channel { key: ch.key, name: ch.name, url })).into_response())
}

/// Delete a channel (its statistics stay).
#[utoipa::path(delete, path = "/api/v1/live-codes/{slug}/channels/{key}", tag = "live codes", params(("slug" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = super::ProblemDoc)))]
async fn delete_channel(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((slug, key)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let code = code_id(&mut tx, &slug).await?;
    app::live_codes::delete_channel(&mut tx, &p, code, ChannelRef::Key(&key)).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a scan goes: a group, or the fallback.
#[derive(Serialize, ToSchema)]
pub struct ScanResult {
    /// `target` or `fallback`.
    pub outcome: String,
    pub target: Option<ScanTarget>,
    pub fallback: Option<ScanFallback>,
}

#[derive(Serialize, ToSchema)]
pub struct ScanTarget {
    pub target_id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub platform: Platform,
    /// Invite link, when the group is joined by link.
    pub join_url: Option<String>,
    /// The group's current QR image, when it is joined by QR.
    pub qr_image_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ScanFallback {
    pub kind: FallbackKind,
    pub url: Option<String>,
    pub message: String,
    pub image_url: Option<String>,
}

fn scan_result(state: &AppState, code: &LiveCodeRow, target: Option<&TargetRow>) -> ScanResult {
    let base = format!("{}/l/{}", state.config.public_base(), code.slug);
    match target {
        Some(t) => ScanResult {
            outcome: "target".into(),
            target: Some(ScanTarget {
                target_id: t.id,
                group_id: t.group_id,
                group_name: t.group_name.clone(),
                platform: t.platform,
                join_url: t.join_url.clone(),
                qr_image_url: t
                    .qr_sha256
                    .as_ref()
                    .filter(|_| t.join_url.is_none())
                    .map(|sha| format!("{base}/t/{}/qr?v={sha}", t.id)),
            }),
            fallback: None,
        },
        None => ScanResult {
            outcome: "fallback".into(),
            target: None,
            fallback: Some(ScanFallback {
                kind: code.fallback_kind,
                url: code.fallback_url.clone(),
                message: code.fallback_message.clone(),
                image_url: code.fallback_sha.as_ref().map(|_| format!("{base}/fallback-image")),
            }),
        },
    }
}

/// Which target the next scan would get. Takes no slot and records nothing.
#[utoipa::path(get, path = "/api/v1/live-codes/{slug}/resolve", tag = "live codes", params(("slug" = String, Path)),
    responses((status = 200, body = ScanResult), (status = 404, body = super::ProblemDoc)))]
async fn resolve(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
) -> AppResult<Json<ScanResult>> {
    {
        let mut conn = state.db.acquire().await?;
        load(&mut conn, &p, &slug).await?;
    }
    let snap = state.scan.fresh_snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    let now = Utc::now();
    let target = if snap.code.live(now) { state.scan.peek(&snap, now) } else { None };
    Ok(Json(scan_result(&state, &snap.code, target.as_ref())))
}

/// Optional details of an API scan.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ScanBody {
    /// A channel key of this live code.
    pub channel: Option<String>,
    /// Who referred the visitor (invite features).
    #[serde(rename = "ref")]
    pub referrer: Option<String>,
    /// Your own visitor id, for unique-visitor counts.
    pub visitor: Option<String>,
}

/// Take a slot exactly as a scan of the QR code would, and say where to send the visitor.
#[utoipa::path(post, path = "/api/v1/live-codes/{slug}/scans", tag = "live codes", params(("slug" = String, Path)), request_body(content = ScanBody, description = "optional"),
    responses((status = 200, body = ScanResult), (status = 404, body = super::ProblemDoc)))]
async fn take_scan(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(slug): Path<String>,
    raw: axum::body::Bytes,
) -> AppResult<Json<ScanResult>> {
    p.require_write()?;
    // The body is optional: empty means no details.
    let body: ScanBody = if raw.iter().all(|b| b.is_ascii_whitespace()) {
        ScanBody::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => AppError::Unprocessable(e.to_string()),
            _ => AppError::BadRequest(format!("malformed JSON: {e}")),
        })?
    };
    {
        let mut conn = state.db.acquire().await?;
        load(&mut conn, &p, &slug).await?;
    }
    let snap = state.scan.snapshot(&state.db, &slug).await?.ok_or(AppError::NotFound)?;
    let now = Utc::now();
    if !snap.code.live(now) {
        return Err(AppError::Conflict("this live code is paused or outside its active window".into()));
    }
    let outcome = state.scan.route(&state.db, &snap, now).await?;
    let target = match &outcome {
        Outcome::Target { index, .. } => Some(snap.targets[*index].clone()),
        Outcome::Fallback => None,
    };
    let clean = |s: Option<String>, max: usize| {
        s.unwrap_or_default().chars().filter(|c| !c.is_control()).take(max).collect::<String>()
    };
    state.scan.events.record(ScanEvent {
        at: now,
        live_code_id: snap.code.id,
        channel: body.channel.filter(|c| snap.channel(c).is_some()).unwrap_or_default(),
        target_id: target.as_ref().map(|t| t.id),
        group_id: target.as_ref().map(|t| t.group_id),
        outcome: if target.is_some() { ScanOutcome::New } else { ScanOutcome::Fallback },
        visitor: clean(body.visitor, 64),
        referrer: clean(body.referrer, 64),
        ua_class: UaClass::Api,
        ip_anon: None,
    });
    Ok(Json(scan_result(&state, &snap.code, target.as_ref())))
}
