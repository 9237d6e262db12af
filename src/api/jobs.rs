//! `/api/v1/jobs` (admins): durable jobs by state, newest first; retry and cancel.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, PageParams};
use crate::error::{AppError, AppResult};
use crate::store::jobs::{self, JobRow, JobState};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(retry_job))
        .routes(routes!(cancel_job))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobRow>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Jobs, newest first (admins only).
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(PageParams, JobFilter),
    responses((status = 200, body = JobPage), (status = 403, body = super::ProblemDoc)))]
async fn list_jobs(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(filter): Query<JobFilter>,
) -> AppResult<Json<JobPage>> {
    p.require_admin()?;
    let (before, limit) = page.resolve()?;
    let before = page.cursor.as_ref().map(|_| before);
    let mut conn = state.db.acquire().await?;
    let items = jobs::list(&mut conn, filter.state, before, limit).await?;
    let next_cursor = next_cursor(&items, limit, |j| j.id);
    Ok(Json(JobPage { items, next_cursor }))
}

/// One job (admins only).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobRow), (status = 404, body = super::ProblemDoc)))]
async fn get_job(State(state): State<AppState>, ApiAuth(p): ApiAuth, Path(id): Path<i64>) -> AppResult<Json<JobRow>> {
    p.require_admin()?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(jobs::get(&mut conn, id).await?.ok_or(AppError::NotFound)?))
}

/// Run a failed, dead, unknown or cancelled job again now, its attempts counted afresh.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobRow), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "the job is queued, running or done")))]
async fn retry_job(State(state): State<AppState>, ApiAuth(p): ApiAuth, Path(id): Path<i64>) -> AppResult<Json<JobRow>> {
    let mut tx = state.db.begin().await?;
    let job = crate::app::jobs::retry(&mut tx, &p, id).await?;
    tx.commit().await?;
    Ok(Json(job))
}

/// Cancel a job that is queued or waiting for a retry.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path)),
    responses((status = 200, body = JobRow), (status = 404, body = super::ProblemDoc),
        (status = 409, body = super::ProblemDoc, description = "the job is running or finished")))]
async fn cancel_job(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<JobRow>> {
    let mut tx = state.db.begin().await?;
    let job = crate::app::jobs::cancel(&mut tx, &p, id).await?;
    tx.commit().await?;
    Ok(Json(job))
}
