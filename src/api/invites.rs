//! `/api/v1/campaigns` (invite campaigns: create, list, one with its leaderboard, change; a
//! member's poster) and `/api/v1/invites` (invite records filtered by campaign, inviter and
//! state; review decisions). Each calls the same `app::invites` use case as the admin pages.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::invites as app;
use crate::app::posters::DrawError;
use crate::domain::invite::{CampaignRaw, CampaignSpec, Decision, InviteState, Stage};
use crate::error::{AppError, AppResult};
use crate::poster::Format;
use crate::store::invites::{self as db, CampaignRow, LeaderRow, RecordFilter, RecordRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign, patch_campaign))
        .routes(routes!(member_poster))
        .routes(routes!(list_invites))
        .routes(routes!(decide_invite))
}

/// A new campaign.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignIn {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The groups it covers (at least one, in the caller's scope).
    pub group_ids: Vec<i64>,
    /// The live code whose link, with `?r={code}`, is each member's personal link.
    #[serde(default)]
    pub live_code_slug: Option<String>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// `active` (default), `paused` or `ended`.
    #[serde(default)]
    pub status: Option<String>,
    /// Days an invitee must stay before the invite counts (default 3).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 60)]
    pub hold_days: Option<i64>,
    /// A join of someone who was in any group within this many days is no new invite (default 30).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 365)]
    pub rejoin_days: Option<i64>,
    /// Confirmed invites → points (and an optional member tag).
    pub stages: Vec<Stage>,
    /// Points to the inviter's inviter per confirmed invite (default 0: none).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub level2_points: Option<i64>,
    #[serde(default)]
    pub poster_template_id: Option<i64>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reply_progress: Option<String>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reply_stage: Option<String>,
}

impl From<CampaignIn> for CampaignRaw {
    fn from(c: CampaignIn) -> CampaignRaw {
        CampaignRaw {
            name: c.name,
            group_ids: c.group_ids,
            live_code_slug: c.live_code_slug.unwrap_or_default(),
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            status: c.status,
            hold_days: c.hold_days,
            rejoin_days: c.rejoin_days,
            stages: c.stages,
            level2_points: c.level2_points,
            poster_template_id: c.poster_template_id,
            reply_progress: c.reply_progress.unwrap_or_default(),
            reply_stage: c.reply_stage.unwrap_or_default(),
        }
    }
}

/// Changes to a campaign: absent fields stay as they are.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub group_ids: Option<Vec<i64>>,
    pub live_code_slug: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
    pub hold_days: Option<i64>,
    pub rejoin_days: Option<i64>,
    pub stages: Option<Vec<Stage>>,
    pub level2_points: Option<i64>,
    pub poster_template_id: Option<i64>,
    pub reply_progress: Option<String>,
    pub reply_stage: Option<String>,
}

/// A campaign as stored, in the shape a form takes it.
pub fn raw_of(c: &CampaignRow) -> CampaignRaw {
    CampaignRaw {
        name: c.name.clone(),
        group_ids: c.group_ids.clone(),
        live_code_slug: c.live_code_slug.clone().unwrap_or_default(),
        starts_at: c.starts_at,
        ends_at: c.ends_at,
        status: Some(c.status.as_str().to_string()),
        hold_days: Some(c.hold_days as i64),
        rejoin_days: Some(c.rejoin_days as i64),
        stages: c.stages.0.clone(),
        level2_points: Some(c.level2_points),
        poster_template_id: c.poster_template_id,
        reply_progress: c.reply_progress.clone(),
        reply_stage: c.reply_stage.clone(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct CampaignList {
    pub items: Vec<CampaignRow>,
}

/// One campaign with its leaderboard (top 100).
#[derive(Serialize, ToSchema)]
pub struct CampaignDetail {
    #[serde(flatten)]
    pub campaign: CampaignRow,
    pub leaderboard: Vec<LeaderRow>,
}

/// Campaigns whose groups are all in the caller's scope, newest first.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns",
    responses((status = 200, body = CampaignList), (status = 401, body = super::ProblemDoc)))]
async fn list_campaigns(State(state): State<AppState>, ApiAuth(p): ApiAuth) -> AppResult<Json<CampaignList>> {
    let mut conn = state.db.acquire().await?;
    let scope = p.group_filter();
    Ok(Json(CampaignList { items: db::list(&mut conn, scope.as_deref()).await? }))
}

/// Create a campaign.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = CampaignIn,
    responses((status = 201, body = CampaignRow), (status = 403, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn create_campaign(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<CampaignIn>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = CampaignSpec::try_from(CampaignRaw::from(body)).map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::create(&mut tx, &p, &spec).await?.commit(tx, &state).await?;
    let location = format!("/api/v1/campaigns/{}", row.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(row)).into_response())
}

/// One campaign and its leaderboard.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignDetail), (status = 404, body = super::ProblemDoc)))]
async fn get_campaign(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<CampaignDetail>> {
    let mut conn = state.db.acquire().await?;
    let campaign = app::get(&mut conn, &p, id).await?;
    let leaderboard = db::leaderboard(&mut conn, id, 100).await?;
    Ok(Json(CampaignDetail { campaign, leaderboard }))
}

/// Change a campaign (absent fields stay).
#[utoipa::path(patch, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    request_body = CampaignPatch,
    responses((status = 200, body = CampaignRow), (status = 404, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn patch_campaign(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(patch): ApiJson<CampaignPatch>,
) -> AppResult<Json<CampaignRow>> {
    p.require_write()?;
    let mut tx = state.db.begin().await?;
    let current = app::get(&mut tx, &p, id).await?;
    let mut raw = raw_of(&current);
    macro_rules! overlay {
        ($($f:ident),*) => { $(if let Some(v) = patch.$f { raw.$f = v; })* };
    }
    overlay!(name, group_ids, live_code_slug, stages, reply_progress, reply_stage);
    if patch.status.is_some() {
        raw.status = patch.status;
    }
    for (dst, src) in [(&mut raw.hold_days, patch.hold_days), (&mut raw.rejoin_days, patch.rejoin_days)] {
        if src.is_some() {
            *dst = src;
        }
    }
    if patch.level2_points.is_some() {
        raw.level2_points = patch.level2_points;
    }
    if patch.poster_template_id.is_some() {
        raw.poster_template_id = patch.poster_template_id;
    }
    if patch.starts_at.is_some() {
        raw.starts_at = patch.starts_at;
    }
    if patch.ends_at.is_some() {
        raw.ends_at = patch.ends_at;
    }
    let spec = CampaignSpec::try_from(raw).map_err(AppError::Validation)?;
    let row = app::update(&mut tx, &p, id, &spec).await?.commit(tx, &state).await?;
    Ok(Json(row))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PosterParams {
    /// `jpeg` (default) or `png` (also chosen by `Accept: image/png`).
    pub format: Option<Format>,
}

/// A member's poster for the campaign: the campaign's poster template drawn with the member's
/// name and the QR code of their personal link.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/members/{member}/poster", tag = "campaigns",
    params(("id" = i64, Path), ("member" = i64, Path), PosterParams),
    responses((status = 200, description = "the poster", content(("image/jpeg"), ("image/png"))),
        (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc),
        (status = 503, body = super::ProblemDoc, description = "posters cannot be drawn here (no Chinese font)")))]
async fn member_poster(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((id, member)): Path<(i64, i64)>,
    Query(q): Query<PosterParams>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let c = app::get(&mut conn, &p, id).await?;
    let Some(template) = c.poster_template_id else {
        return Err(crate::app::invalid("poster_template_id", "invites.error.template_unknown"));
    };
    let scope = p.group_filter();
    crate::store::members::get(&mut conn, member, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    let code = db::code_of(&mut conn, member).await?.ok_or(AppError::NotFound)?;
    let (confirmed, _) = db::counts_of(&mut conn, id, member).await?;
    drop(conn);
    let qr_url = match &c.live_code_slug {
        Some(slug) => crate::domain::invite::personal_link(state.config.public_base(), slug, &code),
        None => format!("{}/?r={code}", state.config.public_base()),
    };
    let accept_png = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("image/png") && !a.contains("image/jpeg"));
    let format = q.format.unwrap_or(if accept_png { Format::Png } else { Format::Jpeg });
    let vars =
        BTreeMap::from([("campaign".to_string(), c.name.clone()), ("invites".to_string(), confirmed.to_string())]);
    match crate::app::posters::member_poster(&state, &p, template, member, qr_url, vars, None, format).await {
        Ok(bytes) => {
            let mut r = bytes.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
            Ok(r)
        }
        Err(DrawError::Fonts(f)) => {
            let body = serde_json::json!({"type": "/problems/unavailable", "title": "Service Unavailable", "status": 503, "detail": f.to_string()});
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            Ok(r)
        }
        Err(DrawError::App(e)) => Err(e),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InviteFilter {
    pub campaign: Option<i64>,
    /// The inviter's member id.
    pub inviter: Option<i64>,
    pub state: Option<InviteState>,
}

#[derive(Serialize, ToSchema)]
pub struct InvitePage {
    pub items: Vec<RecordRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Invite records, newest first, of campaigns in the caller's scope.
#[utoipa::path(get, path = "/api/v1/invites", tag = "campaigns", params(PageParams, InviteFilter),
    responses((status = 200, body = InvitePage), (status = 400, body = super::ProblemDoc)))]
async fn list_invites(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(f): Query<InviteFilter>,
) -> AppResult<Json<InvitePage>> {
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().map(|_| before);
    let mut conn = state.db.acquire().await?;
    let scope = p.group_filter();
    let filter = RecordFilter { campaign: f.campaign, inviter: f.inviter, state: f.state, before, limit };
    let items = db::records(&mut conn, &filter, scope.as_deref()).await?;
    let next_cursor = next_cursor(&items, limit, |r| r.id);
    Ok(Json(InvitePage { items, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionIn {
    pub decision: Decision,
}

/// A review decision: approve a flagged record, or reject a pending, flagged or confirmed one
/// (a reward it earned is taken back by a compensating ledger entry).
#[utoipa::path(post, path = "/api/v1/invites/{id}/decision", tag = "campaigns", params(("id" = i64, Path)),
    request_body = DecisionIn,
    responses((status = 200, body = RecordRow), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "the record is not waiting for that decision")))]
async fn decide_invite(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<DecisionIn>,
) -> AppResult<Json<RecordRow>> {
    let mut tx = state.db.begin().await?;
    let row = app::decide(&mut tx, &state.config, &p, id, body.decision).await?.commit(tx, &state).await?;
    Ok(Json(row))
}
