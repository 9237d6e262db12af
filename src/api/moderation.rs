//! `/api/v1/moderation/actions` (the moderation log, filterable; pardon a warning, undo a mute
//! or kick) and `/api/v1/rule-sets/{id}/moderation` (a rule set's moderation rules and ladder).
//! Thin callers of `app::moderation`, like the admin pages.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::moderation::{self as app, Moderation};
use crate::domain::moderation::RuleKind;
use crate::error::{AppError, AppResult};
use crate::store::moderation::{ActionRow, Filter};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_actions))
        .routes(routes!(get_action))
        .routes(routes!(pardon_action))
        .routes(routes!(undo_action))
        .routes(routes!(get_moderation, put_moderation))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionFilter {
    pub group_id: Option<i64>,
    pub member_id: Option<i64>,
    /// Only actions of rules of this kind.
    pub kind: Option<RuleKind>,
    /// Only warnings (actions that count on the ladder, pardoned or not).
    pub warnings_only: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ActionPage {
    pub items: Vec<ActionRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The moderation log, newest first: who broke which rule with which message, what the bot did
/// (`deleted`, `step`, `strike`) and the platform's answers (the outbound jobs' states). Only
/// groups in the token's scope.
#[utoipa::path(get, path = "/api/v1/moderation/actions", tag = "moderation", params(PageParams, ActionFilter),
    responses((status = 200, body = ActionPage), (status = 400, body = super::ProblemDoc)))]
async fn list_actions(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(f): Query<ActionFilter>,
) -> AppResult<Json<ActionPage>> {
    let (before, limit) = page.resolve()?;
    let filter = Filter {
        group_id: f.group_id,
        member_id: f.member_id,
        rule_kind: f.kind,
        warnings_only: f.warnings_only.unwrap_or(false),
        before: page.cursor.as_deref().filter(|c| !c.is_empty()).map(|_| before),
        limit,
        ..Filter::default()
    };
    let mut conn = state.db.acquire().await?;
    let items = app::list(&mut conn, &p, filter).await?;
    let next_cursor = next_cursor(&items, limit, |a| a.id);
    Ok(Json(ActionPage { items, next_cursor }))
}

/// One moderation action.
#[utoipa::path(get, path = "/api/v1/moderation/actions/{id}", tag = "moderation", params(("id" = i64, Path)),
    responses((status = 200, body = ActionRow), (status = 404, body = super::ProblemDoc)))]
async fn get_action(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<ActionRow>> {
    let mut conn = state.db.acquire().await?;
    let row = crate::store::moderation::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    p.require_group(row.group_id)?;
    Ok(Json(row))
}

/// Pardon a warning: it no longer counts on the member's ladder.
#[utoipa::path(post, path = "/api/v1/moderation/actions/{id}/pardon", tag = "moderation", params(("id" = i64, Path)),
    responses((status = 200, body = ActionRow), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "not a warning, or pardoned already")))]
async fn pardon_action(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<ActionRow>> {
    let mut tx = state.db.begin().await?;
    let done = app::pardon(&mut tx, &p, id).await?;
    Ok(Json(done.commit(tx, &state).await?))
}

/// Undo a mute (the bot lifts it: OneBot `set_group_ban` with duration 0, Telegram
/// `restrictChatMember` with every permission) or a kick's ban (Telegram `unbanChatMember` with
/// `only_if_banned`; QQ bots cannot, 409). The call goes out as an outbound job.
#[utoipa::path(post, path = "/api/v1/moderation/actions/{id}/undo", tag = "moderation", params(("id" = i64, Path)),
    responses((status = 200, body = ActionRow), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "nothing to undo: undone already, not a mute or kick, or a QQ kick")))]
async fn undo_action(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<ActionRow>> {
    let mut tx = state.db.begin().await?;
    let done = app::undo(&mut tx, &state.config, &p, id).await?;
    Ok(Json(done.commit(tx, &state).await?))
}

/// A rule set's moderation: its rules, in order (the first a message breaks decides), and its
/// ladder.
#[utoipa::path(get, path = "/api/v1/rule-sets/{id}/moderation", tag = "moderation", params(("id" = i64, Path)),
    responses((status = 200, body = Moderation), (status = 404, body = super::ProblemDoc)))]
async fn get_moderation(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<Moderation>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(app::get(&mut conn, &p, id).await?))
}

/// Replace a rule set's moderation rules and ladder. A rule with the `id` of one of the set's
/// rules is changed, one without is added, the set's other rules are removed. Rule kinds:
/// `keywords` (`words`: the words), `links` and `quarantine` (`words`: allowed domains;
/// `hours` for quarantine), `phone`, `contact`, `invite` (`words`: allowed invite links),
/// `flood` (`count` within `seconds`, and/or `consecutive`). `response`: `{"type": "warn"}`
/// (the ladder decides), `{"type": "mute", "seconds": 600}`, `{"type": "kick"}` or
/// `{"type": "nothing"}`; ladder steps likewise (`warn`, `mute`, `kick`).
#[utoipa::path(put, path = "/api/v1/rule-sets/{id}/moderation", tag = "moderation", params(("id" = i64, Path)),
    request_body = Moderation,
    responses((status = 200, body = Moderation), (status = 404, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn put_moderation(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(m): ApiJson<Moderation>,
) -> AppResult<Json<Moderation>> {
    let mut tx = state.db.begin().await?;
    let done = app::save(&mut tx, &p, id, m).await?;
    Ok(Json(done.commit(tx, &state).await?))
}
