//! `/api/v1/broadcasts` (定时群发): preview, schedule (now, at a time, or daily / weekly at a
//! local time in each group's zone), list, read one with its deliveries per group, cancel; and
//! `/api/v1/reminder-groups`: the groups whose check-in reminder is on. The same `app::broadcasts`
//! use cases as the admin pages.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::broadcasts::{self as app, Preview};
use crate::domain::broadcast::{BroadcastRaw, DeliveryState};
use crate::domain::Zone;
use crate::error::{AppError, AppResult};
use crate::store::broadcasts::{self as store, BroadcastRow, DeliveryRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_broadcasts, create_broadcast))
        .routes(routes!(preview_broadcast))
        .routes(routes!(get_broadcast))
        .routes(routes!(cancel_broadcast))
        .routes(routes!(list_reminder_groups))
        .routes(routes!(set_reminder_group))
}

/// Daily or weekly at a local time, in each target group's own time zone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceBody {
    /// `daily` or `weekly`.
    pub every: String,
    /// `HH:MM`, local to each group.
    pub at: String,
    /// Weekly: ISO weekdays, 1 = Monday … 7 = Sunday.
    #[serde(default)]
    pub weekdays: Vec<u8>,
}

/// A broadcast to schedule. Targets: `group_ids`, or every group with `tag`, or (`reminders`
/// true) every group whose check-in reminder is on — the last two looked up at each occurrence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// Plain text, 1 to 2 000 characters; escaped for each platform.
    pub text: String,
    #[serde(default)]
    pub group_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Send to the groups whose check-in reminder is on.
    #[serde(default)]
    pub reminders: bool,
    /// Name (QQ: @) the members who have not checked in today; groups where everyone has are
    /// skipped.
    #[serde(default)]
    pub mention_unchecked: bool,
    /// RFC 3339; null or absent: now. Not with `recurrence`.
    #[serde(default)]
    pub send_at: Option<String>,
    #[serde(default)]
    pub recurrence: Option<RecurrenceBody>,
    /// A PNG or JPEG picture, base64 (standard alphabet), sent with the text as its caption
    /// (then at most 1 024 characters); the whole body is at most 1 MiB.
    #[serde(default)]
    pub image_base64: Option<String>,
}

impl BroadcastBody {
    fn raw(self) -> BroadcastRaw {
        let audience = if self.reminders {
            "reminders"
        } else if self.tag.is_some() {
            "tag"
        } else {
            "groups"
        };
        let (every, at, weekdays) = match self.recurrence {
            Some(r) => (r.every, r.at, r.weekdays.iter().map(|d| d.to_string()).collect()),
            None => (String::new(), String::new(), Vec::new()),
        };
        BroadcastRaw {
            text: self.text,
            audience: audience.into(),
            group_ids: self.group_ids.unwrap_or_default(),
            tag: self.tag.unwrap_or_default(),
            mention_unchecked: self.mention_unchecked,
            send_at: self.send_at.unwrap_or_default(),
            every,
            at,
            weekdays,
        }
    }

    /// The checked broadcast with its checked picture; every field's errors at once.
    async fn parse(mut self, state: &AppState) -> AppResult<crate::domain::broadcast::BroadcastSpec> {
        use base64::Engine;
        let image = self.image_base64.take();
        let parsed = self.raw().parse(Zone::from(chrono_tz::UTC), Utc::now());
        let mut errors = parsed.as_ref().err().cloned().unwrap_or_default();
        let mut checked = None;
        if let Some(b64) = image.filter(|s| !s.trim().is_empty()) {
            match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                Ok(bytes) => match crate::web::broadcasts::check_image(state, bytes).await {
                    Ok(i) => checked = Some(i),
                    Err(key) => errors.add("image_base64", key),
                },
                Err(_) => errors.add("image_base64", "error.not_an_image"),
            }
        }
        match parsed {
            Ok(mut spec) if errors.is_empty() => {
                spec.image = checked;
                Ok(spec)
            }
            _ => Err(AppError::Validation(errors)),
        }
    }
}

/// A broadcast with its deliveries per state.
#[derive(Serialize, ToSchema)]
pub struct Broadcast {
    #[serde(flatten)]
    pub broadcast: BroadcastRow,
    /// Deliveries per state (`queued`, `sent`, `failed`, `unknown`, `cancelled`).
    pub counts: std::collections::BTreeMap<String, i64>,
}

#[derive(Serialize, ToSchema)]
pub struct BroadcastDetail {
    #[serde(flatten)]
    pub broadcast: BroadcastRow,
    /// One per group and occurrence, latest occurrence first (at most 1 000).
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Serialize, ToSchema)]
pub struct BroadcastPage {
    pub items: Vec<Broadcast>,
    pub next_cursor: Option<String>,
}

async fn with_counts(conn: &mut sqlx::PgConnection, rows: Vec<BroadcastRow>) -> AppResult<Vec<Broadcast>> {
    let ids: Vec<i64> = rows.iter().map(|b| b.id).collect();
    let counts = store::state_counts(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|b| {
            let mut c: std::collections::BTreeMap<String, i64> =
                DeliveryState::NAMES.iter().map(|s| (s.to_string(), 0)).collect();
            for (id, state, n) in &counts {
                if *id == b.id {
                    c.insert(state.as_str().to_string(), *n);
                }
            }
            Broadcast { broadcast: b, counts: c }
        })
        .collect())
}

/// Broadcasts the caller may see, newest first.
#[utoipa::path(get, path = "/api/v1/broadcasts", tag = "broadcasts", params(PageParams),
    responses((status = 200, body = BroadcastPage)))]
async fn list_broadcasts(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
) -> AppResult<Json<BroadcastPage>> {
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().filter(|c| !c.is_empty()).map(|_| before);
    let mut conn = state.db.acquire().await?;
    let rows = store::list(&mut conn, p.group_filter().as_deref(), before, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |b| b.id);
    let items = with_counts(&mut conn, rows).await?;
    Ok(Json(BroadcastPage { items, next_cursor }))
}

/// Schedule a broadcast: now (its deliveries exist when this answers), at `send_at`, or by
/// `recurrence`.
#[utoipa::path(post, path = "/api/v1/broadcasts", tag = "broadcasts", request_body = BroadcastBody,
    responses((status = 201, body = BroadcastDetail), (status = 403, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn create_broadcast(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<BroadcastBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = body.parse(&state).await?;
    let mut tx = state.db.begin().await?;
    let b = app::create(&mut tx, &state.config, &p, &spec).await?.commit(tx, &state).await?;
    let mut conn = state.db.acquire().await?;
    let (broadcast, deliveries) = app::get(&mut conn, &p, b.id, 1000).await?;
    let location = format!("/api/v1/broadcasts/{}", b.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(BroadcastDetail { broadcast, deliveries }))
        .into_response())
}

/// What a broadcast would send where (texts per platform, escaped as they will be sent, the
/// target groups now, the first occurrence); writes nothing.
#[utoipa::path(post, path = "/api/v1/broadcasts/preview", tag = "broadcasts", request_body = BroadcastBody,
    responses((status = 200, body = Preview), (status = 403, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn preview_broadcast(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<BroadcastBody>,
) -> AppResult<Json<Preview>> {
    p.require_write()?;
    let spec = body.parse(&state).await?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(app::preview(&mut conn, &p, &spec).await?))
}

/// One broadcast with its deliveries per group.
#[utoipa::path(get, path = "/api/v1/broadcasts/{id}", tag = "broadcasts", params(("id" = i64, Path)),
    responses((status = 200, body = BroadcastDetail), (status = 404, body = super::ProblemDoc)))]
async fn get_broadcast(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<BroadcastDetail>> {
    let mut conn = state.db.acquire().await?;
    let (broadcast, deliveries) = app::get(&mut conn, &p, id, 1000).await?;
    Ok(Json(BroadcastDetail { broadcast, deliveries }))
}

#[derive(Serialize, ToSchema)]
pub struct Cancelled {
    #[serde(flatten)]
    pub broadcast: BroadcastRow,
    /// Deliveries stopped before they went out.
    pub stopped: i64,
}

/// Cancel a broadcast: its next occurrence and every delivery not being sent yet.
#[utoipa::path(post, path = "/api/v1/broadcasts/{id}/cancel", tag = "broadcasts", params(("id" = i64, Path)),
    responses((status = 200, body = Cancelled), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "cancelled already")))]
async fn cancel_broadcast(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<Cancelled>> {
    let mut tx = state.db.begin().await?;
    let (broadcast, stopped) = app::cancel(&mut tx, &p, id).await?.commit(tx, &state).await?;
    Ok(Json(Cancelled { broadcast, stopped }))
}

#[derive(Serialize, ToSchema)]
pub struct ReminderGroup {
    pub group_id: i64,
    pub name: String,
    pub enabled: bool,
}

/// The caller's groups and whether their check-in reminder is on.
#[utoipa::path(get, path = "/api/v1/reminder-groups", tag = "broadcasts",
    responses((status = 200, body = Vec<ReminderGroup>)))]
async fn list_reminder_groups(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
) -> AppResult<Json<Vec<ReminderGroup>>> {
    let mut conn = state.db.acquire().await?;
    let rows = store::reminder_groups(&mut conn, p.group_filter().as_deref()).await?;
    Ok(Json(rows.into_iter().map(|(group_id, name, enabled)| ReminderGroup { group_id, name, enabled }).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderBody {
    pub enabled: bool,
}

/// Turn a group's check-in reminder on or off (reminder broadcasts go to the groups where it is on).
#[utoipa::path(put, path = "/api/v1/reminder-groups/{group_id}", tag = "broadcasts", params(("group_id" = i64, Path)),
    request_body = ReminderBody,
    responses((status = 200, body = ReminderGroup), (status = 404, body = super::ProblemDoc)))]
async fn set_reminder_group(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(group_id): Path<i64>,
    ApiJson(body): ApiJson<ReminderBody>,
) -> AppResult<Json<ReminderGroup>> {
    let mut tx = state.db.begin().await?;
    app::set_reminder(&mut tx, &p, group_id, body.enabled).await?.commit(tx, &state).await?;
    let mut conn = state.db.acquire().await?;
    let name = crate::store::groups::get(&mut conn, group_id).await?.map(|g| g.name).unwrap_or_default();
    Ok(Json(ReminderGroup { group_id, name, enabled: body.enabled }))
}
