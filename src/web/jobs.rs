//! Settings → Jobs (admins): how many jobs wait, run, failed or died, the latest of them with
//! their errors, and retry / cancel — the same operations as the API (`app::jobs`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::error::{AppError, AppResult};
use crate::store::jobs::{self, JobRow, JobState};
use crate::AppState;

const PAGE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/jobs", get(list))
        .route("/settings/jobs/{id}/retry", post(retry).get(back))
        .route("/settings/jobs/{id}/cancel", post(cancel).get(back))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "settings/jobs.html")]
struct JobsPage {
    l: Layout,
    counts: Vec<(JobState, i64)>,
    state: Option<JobState>,
    jobs: Vec<JobRow>,
    /// The link to the next (older) page.
    older: Option<String>,
}

impl JobsPage {
    fn state_href(&self, s: &JobState) -> String {
        format!("/settings/jobs?state={}", s.as_str())
    }
    fn is_current(&self, s: &JobState) -> bool {
        self.state == Some(*s)
    }
    fn payload_text(&self, j: &JobRow) -> String {
        let t = j.payload.to_string();
        if t.chars().count() > 120 {
            format!("{}…", t.chars().take(120).collect::<String>())
        } else {
            t
        }
    }
}

async fn list(State(state): State<AppState>, ctx: Ctx, Query(q): Query<ListQuery>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    // An unknown state shows every job rather than an error page.
    let filter = q.state.as_deref().and_then(JobState::parse);
    let mut conn = state.db.acquire().await?;
    let counts = jobs::counts(&mut conn).await?;
    let list = jobs::list(&mut conn, filter, q.before.filter(|b| *b > 0), PAGE).await?;
    drop(conn);
    let older = (list.len() as i64 == PAGE).then(|| list.last().map(|j| j.id)).flatten().map(|id| match filter {
        Some(s) => format!("/settings/jobs?state={}&before={id}", s.as_str()),
        None => format!("/settings/jobs?before={id}"),
    });
    let page = JobsPage { l: ctx.layout("jobs.title", "settings").await?, counts, state: filter, jobs: list, older };
    render(StatusCode::OK, &page)
}

/// A refreshed or bookmarked action URL shows the list.
async fn back(ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    Ok(redirect("/settings/jobs"))
}

async fn retry(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    act(&state, &ctx, id, true).await
}

async fn cancel(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    act(&state, &ctx, id, false).await
}

async fn act(state: &AppState, ctx: &Ctx, id: i64, retry: bool) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    let done = if retry {
        crate::app::jobs::retry(&mut tx, &ctx.principal, id).await
    } else {
        crate::app::jobs::cancel(&mut tx, &ctx.principal, id).await
    };
    match done {
        Ok(_) => {
            tx.commit().await?;
            ctx.flash("success", if retry { "jobs.retried" } else { "jobs.cancelled" }).await?;
        }
        // The job moved on meanwhile (it ran, or another admin acted): say so on the list.
        Err(AppError::Conflict(_)) => ctx.flash("error", "jobs.not_now").await?,
        Err(e) => return Err(e),
    }
    Ok(redirect("/settings/jobs"))
}
