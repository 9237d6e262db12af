//! `/api/v1/groups/{id}/checkin-poster`: a group's "day N" check-in poster (the same use case
//! as its admin page, `app::checkin_poster::set`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::app::checkin_poster::{self as app, PosterRaw};
use crate::error::{AppError, AppResult};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_poster, put_poster))
}

/// A group's check-in poster: the template drawn with each new check-in's reply (null: none)
/// and the line of text that fills its `{campaign}`.
#[derive(Serialize, ToSchema)]
pub struct CheckinPoster {
    pub template_id: Option<i64>,
    pub text: String,
}

/// The setting to store; `template_id` null turns the poster off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckinPosterBody {
    pub template_id: Option<i64>,
    #[serde(default)]
    pub text: String,
}

fn json_of(p: Option<crate::domain::checkin_poster::CheckinPoster>) -> CheckinPoster {
    match p {
        Some(p) => CheckinPoster { template_id: Some(p.template_id), text: p.text },
        None => CheckinPoster { template_id: None, text: String::new() },
    }
}

/// Read a group's check-in poster.
#[utoipa::path(get, path = "/api/v1/groups/{id}/checkin-poster", tag = "check-ins", params(("id" = i64, Path)),
    responses((status = 200, body = CheckinPoster), (status = 404, body = super::ProblemDoc)))]
async fn get_poster(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<CheckinPoster>> {
    if !p.sees_group(id) {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.acquire().await?;
    crate::store::groups::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Json(json_of(crate::store::checkin_poster::get(&mut conn, id).await?)))
}

/// Set or turn off a group's check-in poster.
#[utoipa::path(put, path = "/api/v1/groups/{id}/checkin-poster", tag = "check-ins", params(("id" = i64, Path)),
    request_body = CheckinPosterBody,
    responses((status = 200, body = CheckinPoster), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn put_poster(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<CheckinPosterBody>,
) -> AppResult<Json<CheckinPoster>> {
    let raw = PosterRaw { template_id: body.template_id.map(|t| t.to_string()).unwrap_or_default(), text: body.text };
    let poster = raw.parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let saved = app::set(&mut tx, &p, id, poster.as_ref()).await?.commit(tx, &state).await?;
    Ok(Json(json_of(saved)))
}
