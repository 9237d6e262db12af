//! `/api/v1/rule-sets` (rule sets with their welcome, keyword replies and entry policy, attached
//! to groups or tags), `/api/v1/groups/{id}/activity` (what the bots did and why) and
//! `/api/v1/join-requests` (the approval queue). The same use cases as the admin pages.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::automation::{self as queue, Decision};
use crate::app::rule_sets::{self as app, RuleSetDetail};
use crate::domain::automation::{EntryRaw, KeywordRaw, RequestStatus, WelcomeRaw};
use crate::domain::rule_set::{Attachment, RuleSetRaw};
use crate::error::{AppError, AppResult};
use crate::store::automation::{KeywordRow, RequestRow};
use crate::store::bot_activity::ActivityRow;
use crate::store::rule_sets::RuleSetSummary;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rule_sets, create_rule_set))
        .routes(routes!(get_rule_set, update_rule_set, delete_rule_set))
        .routes(routes!(set_welcome, delete_welcome))
        .routes(routes!(add_keyword))
        .routes(routes!(delete_keyword))
        .routes(routes!(set_entry, delete_entry))
        .routes(routes!(attach))
        .routes(routes!(detach))
        .routes(routes!(group_activity))
        .routes(routes!(list_requests))
        .routes(routes!(approve_requests))
        .routes(routes!(decline_requests))
}

/// A rule set's own fields; on PATCH, absent fields keep their values.
#[derive(Deserialize, ToSchema)]
pub struct RuleSetBody {
    pub name: Option<String>,
    pub description: Option<String>,
}

async fn detail(state: &AppState, p: &crate::auth::Principal, id: i64) -> AppResult<RuleSetDetail> {
    let mut conn = state.db.acquire().await?;
    app::detail(&mut conn, p, id).await
}

/// Rule sets (shared by every operator), by name.
#[utoipa::path(get, path = "/api/v1/rule-sets", tag = "rule_sets", responses((status = 200, body = Vec<RuleSetSummary>)))]
async fn list_rule_sets(State(state): State<AppState>, ApiAuth(_p): ApiAuth) -> AppResult<Json<Vec<RuleSetSummary>>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(crate::store::rule_sets::list(&mut conn).await?))
}

/// Create a rule set (admins and operators with every group).
#[utoipa::path(post, path = "/api/v1/rule-sets", tag = "rule_sets", request_body = RuleSetBody,
    responses((status = 201, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_rule_set(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<RuleSetBody>,
) -> AppResult<Response> {
    let spec = RuleSetRaw { name: body.name.unwrap_or_default(), description: body.description.unwrap_or_default() }
        .parse()
        .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::create(&mut tx, &p, &spec).await?.commit(tx, &state).await?;
    let location = format!("/api/v1/rule-sets/{}", row.id);
    let d = detail(&state, &p, row.id).await?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(d)).into_response())
}

/// One rule set with its welcome, keyword replies, entry policy and attachments.
#[utoipa::path(get, path = "/api/v1/rule-sets/{id}", tag = "rule_sets", params(("id" = i64, Path)),
    responses((status = 200, body = RuleSetDetail), (status = 404, body = super::ProblemDoc)))]
async fn get_rule_set(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<RuleSetDetail>> {
    Ok(Json(detail(&state, &p, id).await?))
}

/// Change a rule set's name or description.
#[utoipa::path(patch, path = "/api/v1/rule-sets/{id}", tag = "rule_sets", params(("id" = i64, Path)), request_body = RuleSetBody,
    responses((status = 200, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_rule_set(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<RuleSetBody>,
) -> AppResult<Json<RuleSetDetail>> {
    let current = detail(&state, &p, id).await?;
    let spec = RuleSetRaw {
        name: body.name.unwrap_or(current.rule_set.name),
        description: body.description.unwrap_or(current.rule_set.description),
    }
    .parse()
    .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    app::update(&mut tx, &p, id, &spec).await?.commit(tx, &state).await?;
    Ok(Json(detail(&state, &p, id).await?))
}

/// Delete a rule set with its rules and attachments.
#[utoipa::path(delete, path = "/api/v1/rule-sets/{id}", tag = "rule_sets", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_rule_set(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::delete(&mut tx, &p, id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The welcome: `{name}` (a mention of each new member), `{group}`, `{rules_link}`,
/// `{checkin_keyword}`; joins within `window_secs` (default 60) are welcomed in one message.
#[derive(Deserialize, ToSchema)]
pub struct WelcomeBody {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub template: String,
    pub image_url: Option<String>,
    pub rules_link: Option<String>,
    #[schema(minimum = 0, maximum = 3600)]
    pub delay_secs: Option<i64>,
    #[schema(minimum = 0, maximum = 3600)]
    pub window_secs: Option<i64>,
    #[serde(default)]
    pub delete_previous: bool,
}

fn yes() -> bool {
    true
}

fn num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// Set the rule set's welcome.
#[utoipa::path(put, path = "/api/v1/rule-sets/{id}/welcome", tag = "rule_sets", params(("id" = i64, Path)), request_body = WelcomeBody,
    responses((status = 200, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn set_welcome(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<WelcomeBody>,
) -> AppResult<Json<RuleSetDetail>> {
    let w = WelcomeRaw {
        enabled: b.enabled,
        template: b.template,
        image_url: b.image_url.unwrap_or_default(),
        rules_link: b.rules_link.unwrap_or_default(),
        delay_secs: num(b.delay_secs),
        window_secs: num(b.window_secs),
        delete_previous: b.delete_previous,
    }
    .parse()
    .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    app::set_welcome(&mut tx, &p, id, Some(&w)).await?.commit(tx, &state).await?;
    Ok(Json(detail(&state, &p, id).await?))
}

/// Remove the rule set's welcome.
#[utoipa::path(delete, path = "/api/v1/rule-sets/{id}/welcome", tag = "rule_sets", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_welcome(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::set_welcome(&mut tx, &p, id, None).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A keyword reply. `match_kind`: exact | contains | regex (a pattern that compiles too big is
/// refused with a field error); a reply text, an image URL or both; `hours_from`/`hours_to`:
/// local hours in the group's time zone (both or neither).
#[derive(Deserialize, ToSchema)]
pub struct KeywordBody {
    pub match_kind: Option<String>,
    pub pattern: String,
    pub reply_text: Option<String>,
    pub image_url: Option<String>,
    #[schema(minimum = 0, maximum = 86400)]
    pub cooldown_secs: Option<i64>,
    #[schema(minimum = 0, maximum = 23)]
    pub hours_from: Option<i64>,
    #[schema(minimum = 1, maximum = 24)]
    pub hours_to: Option<i64>,
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i64>,
}

/// Add a keyword reply.
#[utoipa::path(post, path = "/api/v1/rule-sets/{id}/keyword-replies", tag = "rule_sets", params(("id" = i64, Path)), request_body = KeywordBody,
    responses((status = 201, body = KeywordRow), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn add_keyword(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<KeywordBody>,
) -> AppResult<Response> {
    let spec = KeywordRaw {
        match_kind: b.match_kind.unwrap_or_default(),
        pattern: b.pattern,
        reply_text: b.reply_text.unwrap_or_default(),
        image_url: b.image_url.unwrap_or_default(),
        cooldown_secs: num(b.cooldown_secs),
        hours_from: num(b.hours_from),
        hours_to: num(b.hours_to),
        priority: num(b.priority),
    }
    .parse()
    .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::add_keyword(&mut tx, &p, id, &spec).await?.commit(tx, &state).await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// Delete a keyword reply.
#[utoipa::path(delete, path = "/api/v1/rule-sets/{id}/keyword-replies/{keyword_id}", tag = "rule_sets",
    params(("id" = i64, Path), ("keyword_id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_keyword(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path((id, keyword_id)): Path<(i64, i64)>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::delete_keyword(&mut tx, &p, id, keyword_id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The entry threshold: `mode` approve_all | keyword (approve when the request's answer holds
/// one of `keywords`, else `otherwise`: decline | hold) | manual (hold every request for an
/// operator) | questionnaire (Telegram: the bot sends the applicant a link to answer `questions`,
/// 1 to 10 of at most 200 characters; answering approves the request; QQ bots cannot write to
/// applicants, so there the request is held for an operator); held requests and unanswered
/// questionnaires expire after `expire_hours` (`on_expiry`: decline | hold = let lapse).
#[derive(Deserialize, ToSchema)]
pub struct EntryBody {
    pub mode: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub otherwise: Option<String>,
    pub decline_reason: Option<String>,
    #[schema(minimum = 1, maximum = 720)]
    pub expire_hours: Option<i64>,
    pub on_expiry: Option<String>,
    /// Questionnaire mode: the questions, in order.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub questions: Vec<String>,
}

/// Set the rule set's entry policy.
#[utoipa::path(put, path = "/api/v1/rule-sets/{id}/entry-policy", tag = "rule_sets", params(("id" = i64, Path)), request_body = EntryBody,
    responses((status = 200, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn set_entry(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<EntryBody>,
) -> AppResult<Json<RuleSetDetail>> {
    let policy = EntryRaw {
        mode: b.mode,
        keywords: b.keywords.join("\n"),
        otherwise: b.otherwise.unwrap_or_default(),
        decline_reason: b.decline_reason.unwrap_or_default(),
        expire_hours: num(b.expire_hours),
        on_expiry: b.on_expiry.unwrap_or_default(),
        questions: b.questions.iter().map(|q| q.replace(['\n', '\r'], " ")).collect::<Vec<_>>().join("\n"),
    }
    .parse()
    .map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    app::set_entry(&mut tx, &p, id, Some(&policy)).await?.commit(tx, &state).await?;
    Ok(Json(detail(&state, &p, id).await?))
}

/// Remove the rule set's entry policy (requests are then left to the chat's admins).
#[utoipa::path(delete, path = "/api/v1/rule-sets/{id}/entry-policy", tag = "rule_sets", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_entry(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::set_entry(&mut tx, &p, id, None).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attach the rule set to a group (`{"to": "group", "group_id": 1}`; wins over tags) or a tag
/// (`{"to": "tag", "tag": "vip", "priority": 0}`), replacing that group's or tag's rule set.
#[utoipa::path(post, path = "/api/v1/rule-sets/{id}/attachments", tag = "rule_sets", params(("id" = i64, Path)), request_body = Attachment,
    responses((status = 200, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn attach(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(to): ApiJson<Attachment>,
) -> AppResult<Json<RuleSetDetail>> {
    let mut tx = state.db.begin().await?;
    app::attach(&mut tx, &p, id, &to).await?.commit(tx, &state).await?;
    Ok(Json(detail(&state, &p, id).await?))
}

/// Detach the rule set from a group or tag.
#[utoipa::path(post, path = "/api/v1/rule-sets/{id}/attachments/remove", tag = "rule_sets", params(("id" = i64, Path)), request_body = Attachment,
    responses((status = 200, body = RuleSetDetail), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn detach(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(from): ApiJson<Attachment>,
) -> AppResult<Json<RuleSetDetail>> {
    let mut tx = state.db.begin().await?;
    app::detach(&mut tx, &p, id, &from).await?.commit(tx, &state).await?;
    Ok(Json(detail(&state, &p, id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ActivityPage {
    pub items: Vec<ActivityRow>,
    pub next_cursor: Option<String>,
}

/// What the bots did in a group and why, newest first.
#[utoipa::path(get, path = "/api/v1/groups/{id}/activity", tag = "rule_sets", params(("id" = i64, Path), PageParams),
    responses((status = 200, body = ActivityPage), (status = 404, body = super::ProblemDoc)))]
async fn group_activity(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    Query(page): Query<PageParams>,
) -> AppResult<Json<ActivityPage>> {
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().filter(|c| !c.is_empty()).map(|_| before);
    let mut conn = state.db.acquire().await?;
    let items = app::activity(&mut conn, &p, id, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |a| a.id);
    Ok(Json(ActivityPage { items, next_cursor }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// Only requests in this state (pending: the approval queue).
    pub status: Option<RequestStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestPage {
    pub items: Vec<RequestRow>,
    pub next_cursor: Option<String>,
}

/// Join requests of the groups in scope, newest first.
#[utoipa::path(get, path = "/api/v1/join-requests", tag = "join_requests", params(PageParams, RequestFilter),
    responses((status = 200, body = RequestPage)))]
async fn list_requests(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(filter): Query<RequestFilter>,
) -> AppResult<Json<RequestPage>> {
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().filter(|c| !c.is_empty()).map(|_| before);
    let mut conn = state.db.acquire().await?;
    let items = queue::list(&mut conn, &p, filter.status, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |r| r.id);
    Ok(Json(RequestPage { items, next_cursor }))
}

/// Requests to approve or decline (at most 200), with a reason (declines: sent to the
/// applicant where the platform allows).
#[derive(Deserialize, ToSchema)]
pub struct DecisionBody {
    pub ids: Vec<i64>,
    pub reason: Option<String>,
}

async fn decide(
    state: &AppState,
    p: &crate::auth::Principal,
    b: DecisionBody,
    approve: bool,
) -> AppResult<Json<Vec<RequestRow>>> {
    let d = Decision::new(b.ids, approve, b.reason.as_deref().unwrap_or("")).map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let rows = queue::decide(&mut tx, &state.config, p, &d).await?.commit(tx, state).await?;
    Ok(Json(rows))
}

/// Approve pending requests; the ones approved (others were decided already).
#[utoipa::path(post, path = "/api/v1/join-requests/approve", tag = "join_requests", request_body = DecisionBody,
    responses((status = 200, body = Vec<RequestRow>), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn approve_requests(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(b): ApiJson<DecisionBody>,
) -> AppResult<Json<Vec<RequestRow>>> {
    decide(&state, &p, b, true).await
}

/// Decline pending requests; the ones declined.
#[utoipa::path(post, path = "/api/v1/join-requests/decline", tag = "join_requests", request_body = DecisionBody,
    responses((status = 200, body = Vec<RequestRow>), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn decline_requests(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(b): ApiJson<DecisionBody>,
) -> AppResult<Json<Vec<RequestRow>>> {
    decide(&state, &p, b, false).await
}
