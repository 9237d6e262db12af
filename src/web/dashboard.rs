//! The dashboard, and the sections that later issues fill in (shown as what is coming).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::ctx::{Ctx, Layout};
use super::render;
use crate::error::AppResult;
use crate::store::groups::{self, GroupRow, Overview};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/live-codes", get(|c: Ctx| coming(c, "live_codes")))
        .route("/bridges", get(|c: Ctx| coming(c, "bridges")))
        .route("/points", get(|c: Ctx| coming(c, "points")))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    l: Layout,
    o: Overview,
    members: i64,
    attention: Vec<GroupRow>,
    can_write: bool,
}

async fn dashboard(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let o = groups::overview(&mut conn, scope.as_deref()).await?;
    let members = crate::store::members::count(&mut conn, scope.as_deref()).await?;
    // Groups that need an operator: QR expiring within 48 h or expired, or no way to join.
    let f = groups::Filter { scope, ..Default::default() };
    let (all, _) = groups::list(&mut conn, &f, 1000, 0).await?;
    let soon = chrono::Utc::now() + chrono::Duration::hours(48);
    let attention: Vec<GroupRow> = all
        .into_iter()
        .filter(|g| !g.has_join_target() || g.qr_expires_at.is_some_and(|at| at <= soon))
        .take(20)
        .collect();
    let page = DashboardPage {
        l: ctx.layout("nav.dashboard", "dashboard").await?,
        o,
        members,
        attention,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "coming.html")]
struct ComingPage {
    l: Layout,
    section: &'static str,
}

async fn coming(ctx: Ctx, section: &'static str) -> AppResult<Response> {
    let nav_key = format!("nav.{section}");
    let page = ComingPage { l: ctx.layout(&nav_key, section).await?, section };
    render(StatusCode::OK, &page)
}
