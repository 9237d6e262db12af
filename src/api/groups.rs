//! `/api/v1/groups`: list (cursor), create, read, update (partial), archive.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app;
use crate::domain::group::{GroupRaw, GroupStatus};
use crate::domain::{filter_text, Platform, Zone};
use crate::error::{AppError, AppResult};
use crate::store::groups::{self, GroupRow, StatusFilter};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_groups, create_group)).routes(routes!(
        get_group,
        update_group,
        archive_group
    ))
}

/// A chat group.
#[derive(Serialize, ToSchema)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub platform: Platform,
    /// Invite link members open to join (QQ, Telegram, Discord, WhatsApp).
    pub join_url: Option<String>,
    /// Whether a group QR image (WeChat) is uploaded; upload it in the admin UI.
    pub has_qr_image: bool,
    pub qr_expires_at: Option<DateTime<Utc>>,
    pub capacity: i32,
    pub member_count: Option<i32>,
    #[schema(value_type = String)]
    pub timezone: Zone,
    pub external_chat_id: Option<String>,
    pub status: GroupStatus,
    pub tags: Vec<String>,
    pub notes: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<GroupRow> for Group {
    fn from(g: GroupRow) -> Group {
        Group {
            id: g.id,
            platform: g.platform,
            status: g.status,
            has_qr_image: g.has_qr,
            qr_expires_at: g.qr_expires_at,
            name: g.name,
            join_url: g.join_url,
            capacity: g.capacity,
            member_count: g.member_count,
            timezone: g.timezone,
            external_chat_id: g.external_chat_id,
            tags: g.tags,
            notes: g.notes,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// Fields to create or change a group; omitted fields keep their value (or default). An empty
/// string clears `join_url`, `external_chat_id` and `member_count`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub join_url: Option<String>,
    pub capacity: Option<i64>,
    pub member_count: Option<serde_json::Value>,
    pub timezone: Option<String>,
    pub external_chat_id: Option<String>,
    pub status: Option<String>,
    pub tags: Option<Vec<String>>,
    pub notes: Option<String>,
    /// RFC 3339 instant at which the uploaded QR image stops working.
    pub qr_expires_at: Option<String>,
}

impl GroupBody {
    fn overlay(self, mut raw: GroupRaw) -> AppResult<GroupRaw> {
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut raw.name, self.name);
        set(&mut raw.platform, self.platform);
        set(&mut raw.join_url, self.join_url);
        set(&mut raw.capacity, self.capacity.map(|c| c.to_string()));
        match self.member_count {
            None => {}
            Some(serde_json::Value::Null) => raw.member_count.clear(),
            Some(serde_json::Value::Number(n)) => raw.member_count = n.to_string(),
            Some(serde_json::Value::String(s)) => raw.member_count = s,
            Some(_) => return Err(AppError::Unprocessable("member_count must be a number or null".into())),
        }
        set(&mut raw.timezone, self.timezone);
        set(&mut raw.external_chat_id, self.external_chat_id);
        set(&mut raw.status, self.status);
        set(&mut raw.tags, self.tags.map(|t| t.join(",")));
        set(&mut raw.notes, self.notes);
        set(&mut raw.qr_expires_at, self.qr_expires_at);
        Ok(raw)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupFilter {
    /// Text to find in the name, external chat id or notes (at most 100 characters).
    #[param(max_length = 100)]
    pub q: Option<String>,
    pub platform: Option<String>,
    /// `active`, `paused`, `archived` or `all` (default: everything but archived).
    pub status: Option<String>,
    /// Only groups with this tag (at most 100 characters).
    #[param(max_length = 100)]
    pub tag: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GroupPage {
    pub items: Vec<Group>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List groups in the caller's scope, in id order.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(PageParams, GroupFilter),
    responses((status = 200, body = GroupPage), (status = 400, body = super::ProblemDoc), (status = 401, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc, description = "`q` or `tag` longer than 100 characters")))]
async fn list_groups(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(f): Query<GroupFilter>,
) -> AppResult<Json<GroupPage>> {
    let (after, limit) = page.resolve()?;
    let mut fe = crate::error::FieldErrors::new();
    let platform = f.platform.as_deref().filter(|s| !s.trim().is_empty()).and_then(|s| {
        let parsed = Platform::parse(s);
        if parsed.is_none() {
            fe.add_choice("platform", Platform::NAMES);
        }
        parsed
    });
    let status = match f.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => StatusFilter::Current,
        Some(s) => StatusFilter::parse(s).unwrap_or_else(|| {
            fe.add_choice("status", StatusFilter::NAMES);
            StatusFilter::Current
        }),
    };
    let filter = groups::Filter {
        q: filter_text(f.q.as_deref(), "q", &mut fe),
        platform,
        status,
        tag: filter_text(f.tag.as_deref(), "tag", &mut fe),
        scope: p.group_filter(),
    };
    // An over-long search or tag, or an unknown platform or status, is a 422 before any query.
    fe.into_result(())?;
    let mut conn = state.db.acquire().await?;
    let rows = groups::list_after(&mut conn, &filter, after, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |g| g.id);
    Ok(Json(GroupPage { items: rows.into_iter().map(Group::from).collect(), next_cursor }))
}

/// Create a group.
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = GroupBody,
    responses((status = 201, body = Group), (status = 400, body = super::ProblemDoc), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<GroupBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = body.overlay(GroupRaw::blank())?.parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::groups::create(&mut tx, &p, &spec, None).await?.commit(tx, &state).await?;
    let id = row.id;
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, format!("/api/v1/groups/{id}"))], Json(Group::from(row)))
        .into_response())
}

/// Read one group.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    responses((status = 200, body = Group), (status = 404, body = super::ProblemDoc)))]
async fn get_group(State(state): State<AppState>, ApiAuth(p): ApiAuth, Path(id): Path<i64>) -> AppResult<Json<Group>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(app::groups::load(&mut conn, &p, id).await?.into()))
}

/// Change some fields of a group.
#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = i64, Path)), request_body = GroupBody,
    responses((status = 200, body = Group), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<GroupBody>,
) -> AppResult<Json<Group>> {
    p.require_write()?;
    let mut tx = state.db.begin().await?;
    let current = app::groups::load(&mut tx, &p, id).await?;
    // The QR expiry is only changed when the body names it.
    let base = GroupRaw { qr_expires_at: String::new(), ..app::groups::raw_of(&current) };
    let spec = body.overlay(base)?.parse().map_err(AppError::Validation)?;
    let row = app::groups::update(&mut tx, &p, id, &spec, None).await?.commit(tx, &state).await?;
    Ok(Json(row.into()))
}

/// Archive a group (groups are never deleted: their history stays).
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups", params(("id" = i64, Path)),
    responses((status = 200, body = Group), (status = 404, body = super::ProblemDoc)))]
async fn archive_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<Group>> {
    let mut tx = state.db.begin().await?;
    let row = app::groups::set_status(&mut tx, &p, id, GroupStatus::Archived).await?.commit(tx, &state).await?;
    Ok(Json(row.into()))
}
