//! `/api/v1/members`: list (cursor), create, read (with memberships), update, delete.

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
use crate::auth::Principal;
use crate::domain::member::{MemberRaw, MemberRole};
use crate::domain::{filter_text, Platform};
use crate::error::AppResult;
use crate::store::members::{self, MemberRow, MembershipRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, create_member))
        .routes(routes!(get_member, update_member, delete_member))
        .routes(routes!(join_group))
        .routes(routes!(leave_group))
}

/// A person on one platform.
#[derive(Serialize, ToSchema)]
pub struct Member {
    pub id: i64,
    pub platform: Platform,
    pub external_user_id: String,
    pub display_name: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Memberships in groups within the caller's scope (only on single reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memberships: Option<Vec<Membership>>,
}

#[derive(Serialize, ToSchema)]
pub struct Membership {
    pub group_id: i64,
    pub group_name: String,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

impl From<MembershipRow> for Membership {
    fn from(s: MembershipRow) -> Membership {
        Membership {
            group_id: s.group_id,
            group_name: s.group_name,
            role: s.role,
            joined_at: s.joined_at,
            left_at: s.left_at,
        }
    }
}

impl From<MemberRow> for Member {
    fn from(m: MemberRow) -> Member {
        Member {
            id: m.id,
            platform: m.platform,
            external_user_id: m.external_user_id,
            display_name: m.display_name,
            tags: m.tags,
            notes: m.notes,
            last_active_at: m.last_active_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            memberships: None,
        }
    }
}

/// Fields of a member. On create, `group_id` (required for callers scoped to some groups) adds
/// the member to that group with `role` (member, admin, owner).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub platform: Option<String>,
    pub external_user_id: Option<String>,
    pub display_name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub notes: Option<String>,
    pub group_id: Option<i64>,
    pub role: Option<String>,
}

impl MemberBody {
    fn overlay(self, mut raw: MemberRaw) -> MemberRaw {
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut raw.platform, self.platform);
        set(&mut raw.external_user_id, self.external_user_id);
        set(&mut raw.display_name, self.display_name);
        set(&mut raw.tags, self.tags.map(|t| t.join(",")));
        set(&mut raw.notes, self.notes);
        set(&mut raw.group_id, self.group_id.map(|g| g.to_string()));
        set(&mut raw.role, self.role);
        raw
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberFilter {
    /// Text to find in the display name or external user id (at most 100 characters).
    #[param(max_length = 100)]
    pub q: Option<String>,
    pub platform: Option<String>,
    /// Only members currently in this group.
    pub group_id: Option<i64>,
    /// Only members with this tag (at most 100 characters).
    #[param(max_length = 100)]
    pub tag: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberPage {
    pub items: Vec<Member>,
    pub next_cursor: Option<String>,
}

/// List members visible to the caller, in id order.
#[utoipa::path(get, path = "/api/v1/members", tag = "members", params(PageParams, MemberFilter),
    responses((status = 200, body = MemberPage), (status = 400, body = super::ProblemDoc), (status = 401, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc, description = "`q` or `tag` longer than 100 characters")))]
async fn list_members(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(f): Query<MemberFilter>,
) -> AppResult<Json<MemberPage>> {
    let (after, limit) = page.resolve()?;
    let mut fe = crate::error::FieldErrors::new();
    let platform = f.platform.as_deref().filter(|s| !s.trim().is_empty()).and_then(|s| {
        let parsed = Platform::parse(s);
        if parsed.is_none() {
            fe.add_choice("platform", Platform::NAMES);
        }
        parsed
    });
    let filter = members::Filter {
        q: filter_text(f.q.as_deref(), "q", &mut fe),
        platform,
        group_id: f.group_id,
        tag: filter_text(f.tag.as_deref(), "tag", &mut fe),
        scope: p.group_filter(),
    };
    // An over-long search or tag, or an unknown platform, is a 422 before any query.
    fe.into_result(())?;
    let mut conn = state.db.acquire().await?;
    let rows = members::list_after(&mut conn, &filter, after, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |m| m.id);
    Ok(Json(MemberPage { items: rows.into_iter().map(Member::from).collect(), next_cursor }))
}

async fn read(conn: &mut sqlx::PgConnection, p: &Principal, id: i64) -> AppResult<Member> {
    let scope = p.group_filter();
    let row = app::members::load(conn, p, id).await?;
    let memberships = members::memberships(conn, id, scope.as_deref()).await?;
    let mut m = Member::from(row);
    m.memberships = Some(memberships.into_iter().map(Membership::from).collect());
    Ok(m)
}

/// Create a member.
#[utoipa::path(post, path = "/api/v1/members", tag = "members", request_body = MemberBody,
    responses((status = 201, body = Member), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_member(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<MemberBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = body.overlay(MemberRaw::default()).parse().map_err(crate::error::AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let done = app::members::create(&mut tx, &p, &spec).await?;
    let id = done.value;
    let m = read(&mut tx, &p, id).await?;
    done.commit(tx, &state).await?;
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, format!("/api/v1/members/{id}"))], Json(m))
        .into_response())
}

/// Read one member with their memberships.
#[utoipa::path(get, path = "/api/v1/members/{id}", tag = "members", params(("id" = i64, Path)),
    responses((status = 200, body = Member), (status = 404, body = super::ProblemDoc)))]
async fn get_member(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<Member>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(read(&mut conn, &p, id).await?))
}

/// Change some fields of a member (`group_id` and `role` are ignored here).
#[utoipa::path(patch, path = "/api/v1/members/{id}", tag = "members", params(("id" = i64, Path)), request_body = MemberBody,
    responses((status = 200, body = Member), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_member(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<MemberBody>,
) -> AppResult<Json<Member>> {
    p.require_write()?;
    let mut tx = state.db.begin().await?;
    let cur = app::members::load(&mut tx, &p, id).await?;
    let base = MemberRaw {
        platform: cur.platform.as_str().to_string(),
        external_user_id: cur.external_user_id,
        display_name: cur.display_name,
        tags: cur.tags.join(","),
        notes: cur.notes,
        ..MemberRaw::default()
    };
    let body = MemberBody { group_id: None, role: None, ..body };
    let spec = body.overlay(base).parse().map_err(crate::error::AppError::Validation)?;
    let done = app::members::update(&mut tx, &p, id, &spec).await?;
    let m = read(&mut tx, &p, id).await?;
    done.commit(tx, &state).await?;
    Ok(Json(m))
}

/// Delete a member (callers with access to every group only). The member is anonymised, not
/// erased: name and platform id are scrubbed, memberships end, any remaining balance is
/// forfeited by a ledger entry, and the check-in and ledger history stays without a name.
#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "members", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_member(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::members::delete(&mut tx, &p, id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group to add a member to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipBody {
    pub group_id: i64,
    /// `member` (default), `admin` or `owner`; for an open membership, its new role.
    pub role: Option<MemberRole>,
}

/// Add a member to a group (or change their role there).
#[utoipa::path(post, path = "/api/v1/members/{id}/memberships", tag = "members", params(("id" = i64, Path)), request_body = MembershipBody,
    responses((status = 200, body = Member), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn join_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<MembershipBody>,
) -> AppResult<Json<Member>> {
    let mut tx = state.db.begin().await?;
    let role = body.role.unwrap_or_default();
    let done = app::members::join(&mut tx, &p, id, body.group_id, role).await?;
    let m = read(&mut tx, &p, id).await?;
    done.commit(tx, &state).await?;
    Ok(Json(m))
}

/// End a member's membership in a group (nothing happens when there is none open).
#[utoipa::path(delete, path = "/api/v1/members/{id}/memberships/{group_id}", tag = "members", params(("id" = i64, Path), ("group_id" = i64, Path)),
    responses((status = 200, body = Member), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn leave_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((id, group_id)): Path<(i64, i64)>,
) -> AppResult<Json<Member>> {
    let mut tx = state.db.begin().await?;
    let done = app::members::leave(&mut tx, &p, id, group_id).await?;
    let m = read(&mut tx, &p, id).await?;
    done.commit(tx, &state).await?;
    Ok(Json(m))
}
