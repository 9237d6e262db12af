//! `/api/v1/groups/{id}/invite-links`: a group's personal invite-link setting (the same use case
//! as its admin page, `app::invite_links::set_join_request`) and how its links stand.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::app::invite_links::{self as app, LinkSetting};
use crate::error::AppResult;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_setting, put_setting))
}

/// The setting to store.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSettingBody {
    /// New personal links ask to join (`creates_join_request`), for public groups.
    pub join_request: bool,
}

/// Read a group's personal invite-link setting and the count of its links per state.
#[utoipa::path(get, path = "/api/v1/groups/{id}/invite-links", tag = "campaigns", params(("id" = i64, Path)),
    responses((status = 200, body = LinkSetting), (status = 404, body = super::ProblemDoc)))]
async fn get_setting(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<LinkSetting>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(app::setting(&mut conn, &p, id).await?))
}

/// Set whether a group's new personal invite links ask to join.
#[utoipa::path(put, path = "/api/v1/groups/{id}/invite-links", tag = "campaigns", params(("id" = i64, Path)),
    request_body = LinkSettingBody,
    responses((status = 200, body = LinkSetting), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn put_setting(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<LinkSettingBody>,
) -> AppResult<Json<LinkSetting>> {
    let mut tx = state.db.begin().await?;
    let saved = app::set_join_request(&mut tx, &p, id, body.join_request).await?.commit(tx, &state).await?;
    Ok(Json(saved))
}
