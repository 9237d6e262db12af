//! `/api/v1/bridges/{bridge_id}/…` (admins): the bridge's bot as Shoal uses it — its outbound
//! settings and linked chats, the call log, actions and test messages queued as jobs, member
//! counts, and a Telegram bridge's webhook.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::outbound::{self as app, SettingsChange, WebhookReport};
use crate::domain::action::Action;
use crate::domain::outbound::{LimitSettings, Limits};
use crate::error::{AppError, AppResult};
use crate::i18n::Lang;
use crate::outbound::Bots;
use crate::store::outbound::{self as store, CallFilter, CallOutcome, CallRow, LinkedChat};
use crate::AppState;

/// Linked chats listed in the outbound view.
const MAX_CHATS: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_outbound, patch_outbound))
        .routes(routes!(list_calls))
        .routes(routes!(queue_action))
        .routes(routes!(test_message))
        .routes(routes!(refresh_member_counts))
        .routes(routes!(webhook_info, set_webhook))
}

/// Calls per outcome in the last 24 hours.
#[derive(Serialize, ToSchema)]
pub struct CallCounts {
    pub ok: i64,
    pub failed: i64,
    pub unknown: i64,
}

/// A bridge's outbound side. The credential is never shown, only whether one is stored.
#[derive(Serialize, ToSchema)]
pub struct OutboundView {
    pub bridge_id: i64,
    /// onebot11, telegram or generic.
    pub kind: String,
    /// OneBot: the HTTP API; Telegram: the Bot API server (null: api.telegram.org); generic:
    /// the endpoint actions are POSTed to.
    pub api_base_url: Option<String>,
    /// Whether an access token (OneBot) or bot token (Telegram) is stored.
    pub access_token_set: bool,
    /// Whether the bot can be called (OneBot and generic need an address, Telegram a token).
    pub ready: bool,
    /// The bridge's own limits (null: the kind's default).
    pub limits: LimitSettings,
    /// The limits in force.
    pub effective_limits: Limits,
    /// Groups the bridge acts for, those whose link is broken first.
    pub linked_chats: Vec<LinkedChat>,
    pub calls_24h: CallCounts,
}

async fn view(state: &AppState, p: &crate::auth::Principal, id: i64) -> AppResult<OutboundView> {
    p.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let b = store::bridge(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let linked_chats = store::linked_chats(&mut conn, id, MAX_CHATS).await?;
    let counts = store::call_counts(&mut conn, id).await?;
    let n = |o: CallOutcome| counts.iter().find(|(c, _)| *c == o).map(|(_, n)| *n).unwrap_or(0);
    Ok(OutboundView {
        bridge_id: b.id,
        kind: b.kind.as_str().to_string(),
        api_base_url: b.api_base_url.clone(),
        access_token_set: b.access_token.is_some(),
        ready: Bots::ready(&b),
        limits: b.limits,
        effective_limits: b.effective_limits(),
        linked_chats,
        calls_24h: CallCounts {
            ok: n(CallOutcome::Ok),
            failed: n(CallOutcome::Failed),
            unknown: n(CallOutcome::Unknown),
        },
    })
}

/// The bridge's outbound settings, linked chats and recent outcomes.
#[utoipa::path(get, path = "/api/v1/bridges/{bridge_id}/outbound", tag = "bridges",
    params(("bridge_id" = i64, Path)),
    responses((status = 200, body = OutboundView), (status = 404, body = super::ProblemDoc)))]
async fn get_outbound(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
) -> AppResult<Json<OutboundView>> {
    Ok(Json(view(&state, &p, bridge_id).await?))
}

/// Absent and null differ: absent keeps the value, null clears it.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// Changes to the outbound settings; omitted fields keep their value, null (or "" for the
/// texts) clears one. Limits: 0 is no limit, null the kind's default.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OutboundPatch {
    /// An http(s) address Shoal's outbound policy allows.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub api_base_url: Option<Option<String>>,
    /// OneBot: the access token; Telegram: the bot token (`<id>:<secret>`). Write-only.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub access_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 10000)]
    pub chat_rate_limit: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 100, maximum = 86400000)]
    pub chat_rate_window_ms: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 10000)]
    pub bot_rate_limit: Option<Option<i32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 100, maximum = 86400000)]
    pub bot_rate_window_ms: Option<Option<i32>>,
}

/// Change the bridge's API address, credential and rate limits (checked as on the edit page).
#[utoipa::path(patch, path = "/api/v1/bridges/{bridge_id}/outbound", tag = "bridges",
    params(("bridge_id" = i64, Path)), request_body = OutboundPatch,
    responses((status = 200, body = OutboundView), (status = 404, body = super::ProblemDoc),
        (status = 422, body = super::ProblemDoc)))]
async fn patch_outbound(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
    ApiJson(body): ApiJson<OutboundPatch>,
) -> AppResult<Json<OutboundView>> {
    let mut tx = state.db.begin().await?;
    p.require_admin()?;
    let current = store::bridge(&mut tx, bridge_id).await?.ok_or(AppError::NotFound)?;
    let limits = if body.chat_rate_limit.is_some()
        || body.chat_rate_window_ms.is_some()
        || body.bot_rate_limit.is_some()
        || body.bot_rate_window_ms.is_some()
    {
        let c = current.limits;
        Some(LimitSettings {
            chat_rate_limit: body.chat_rate_limit.unwrap_or(c.chat_rate_limit),
            chat_rate_window_ms: body.chat_rate_window_ms.unwrap_or(c.chat_rate_window_ms),
            bot_rate_limit: body.bot_rate_limit.unwrap_or(c.bot_rate_limit),
            bot_rate_window_ms: body.bot_rate_window_ms.unwrap_or(c.bot_rate_window_ms),
        })
    } else {
        None
    };
    let change = SettingsChange { api_base_url: body.api_base_url, access_token: body.access_token, limits };
    app::update_settings(&mut tx, &state.config, &p, bridge_id, change).await?;
    tx.commit().await?;
    state.bots.evict(bridge_id);
    Ok(Json(view(&state, &p, bridge_id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallQuery {
    /// Only calls with this outcome.
    pub outcome: Option<CallOutcome>,
    /// Only failed and unknown calls.
    pub failures: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct CallPage {
    pub items: Vec<CallRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Every outbound call of the bridge, newest first.
#[utoipa::path(get, path = "/api/v1/bridges/{bridge_id}/calls", tag = "bridges",
    params(("bridge_id" = i64, Path), PageParams, CallQuery),
    responses((status = 200, body = CallPage), (status = 404, body = super::ProblemDoc)))]
async fn list_calls(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
    Query(page): Query<PageParams>,
    Query(q): Query<CallQuery>,
) -> AppResult<Json<CallPage>> {
    p.require_admin()?;
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().filter(|c| !c.is_empty()).map(|_| before);
    let filter = match (q.outcome, q.failures) {
        (Some(o), _) => CallFilter::Only(o),
        (None, Some(true)) => CallFilter::Failures,
        _ => CallFilter::All,
    };
    let mut conn = state.db.acquire().await?;
    store::bridge(&mut conn, bridge_id).await?.ok_or(AppError::NotFound)?;
    let items = store::calls(&mut conn, bridge_id, filter, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |c| c.id);
    Ok(Json(CallPage { items, next_cursor }))
}

/// A queued job.
#[derive(Serialize, ToSchema)]
pub struct Queued {
    /// The job (see `/api/v1/jobs/{id}`): its state says whether the bot did it.
    pub job_id: i64,
}

/// Queue an action for the bridge's bot: send a text or a picture, delete a message, mute,
/// kick or ban a member, answer a join request. It runs as a job, within the bridge's rate
/// limits; a send whose outcome is unknown is never repeated by itself.
#[utoipa::path(post, path = "/api/v1/bridges/{bridge_id}/actions", tag = "bridges",
    params(("bridge_id" = i64, Path)), request_body = Action,
    responses((status = 202, body = Queued), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "the bridge has no API address or token"),
        (status = 422, body = super::ProblemDoc)))]
async fn queue_action(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
    ApiJson(action): ApiJson<Action>,
) -> AppResult<(StatusCode, Json<Queued>)> {
    let mut tx = state.db.begin().await?;
    let job_id = app::enqueue_action(&mut tx, &state.config, &p, bridge_id, action, "api").await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { job_id })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMessageBody {
    /// A group linked through this bridge.
    pub group_id: i64,
}

/// Queue a test message to a linked group.
#[utoipa::path(post, path = "/api/v1/bridges/{bridge_id}/test-message", tag = "bridges",
    params(("bridge_id" = i64, Path)), request_body = TestMessageBody,
    responses((status = 202, body = Queued), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn test_message(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
    ApiJson(body): ApiJson<TestMessageBody>,
) -> AppResult<(StatusCode, Json<Queued>)> {
    let lang = p.language.unwrap_or(Lang::En);
    let mut tx = state.db.begin().await?;
    let job_id = app::send_test_message(&mut tx, &state.config, &p, bridge_id, body.group_id, lang).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { job_id })))
}

/// Queue a refresh of the member counts of the bridge's linked groups (get_group_info,
/// getChatMemberCount, or the generic endpoint's `member_count`).
#[utoipa::path(post, path = "/api/v1/bridges/{bridge_id}/member-counts", tag = "bridges",
    params(("bridge_id" = i64, Path)),
    responses((status = 202, body = Queued), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc)))]
async fn refresh_member_counts(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
) -> AppResult<(StatusCode, Json<Queued>)> {
    let mut tx = state.db.begin().await?;
    let job_id = app::refresh_member_counts(&mut tx, &state.config, &p, bridge_id).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { job_id })))
}

/// A Telegram bridge's webhook as Telegram has it (getWebhookInfo).
#[utoipa::path(get, path = "/api/v1/bridges/{bridge_id}/telegram-webhook", tag = "bridges",
    params(("bridge_id" = i64, Path)),
    responses((status = 200, body = WebhookReport), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "not a Telegram bridge, or no bot token"),
        (status = 429, body = super::ProblemDoc)))]
async fn webhook_info(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
) -> AppResult<Json<WebhookReport>> {
    Ok(Json(app::telegram_webhook(&state.db, &state.bots, &state.config, &p, bridge_id, false).await?))
}

/// Register the bridge's webhook with Telegram: setWebhook with this bridge's URL, its secret as
/// `secret_token` and `allowed_updates` message, edited_message, chat_member, chat_join_request
/// and my_chat_member; then getWebhookInfo. Telegram's refusal is in `error`.
#[utoipa::path(post, path = "/api/v1/bridges/{bridge_id}/telegram-webhook", tag = "bridges",
    params(("bridge_id" = i64, Path)),
    responses((status = 200, body = WebhookReport), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "not a Telegram bridge, or no bot token"),
        (status = 429, body = super::ProblemDoc)))]
async fn set_webhook(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(bridge_id): Path<i64>,
) -> AppResult<Json<WebhookReport>> {
    Ok(Json(app::telegram_webhook(&state.db, &state.bots, &state.config, &p, bridge_id, true).await?))
}
