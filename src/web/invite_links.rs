//! A group's personal invite links (`/groups/{id}/invite-links`, linked from the group's page):
//! whether new links ask to join (public groups), and how the links made so far stand. The same
//! use case as `PUT /api/v1/groups/{id}/invite-links`.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::invite_links as app;
use crate::error::{AppError, AppResult};
use crate::store::groups::{self, GroupRow};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/groups/{id}/invite-links", get(form).post(save))
}

#[derive(Template)]
#[template(path = "groups/invite_links.html")]
struct Page {
    l: Layout,
    g: GroupRow,
    join_request: bool,
    /// (state in words, count)
    links: Vec<(String, i64)>,
    can_write: bool,
}

async fn form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_group(id)?;
    let mut conn = state.db.acquire().await?;
    let g = groups::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let s = app::setting(&mut conn, &ctx.principal, id).await?;
    drop(conn);
    let p = Page {
        l: ctx.layout_titled(format!("{} · {}", ctx.tr.t("invlinks.title"), g.name), "groups").await?,
        g,
        join_request: s.join_request,
        links: s.links.into_iter().map(|(k, n)| (ctx.tr.tk("invlinks.status", &k).to_string(), n)).collect(),
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &p)
}

/// The form: a checkbox, present when on.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SettingForm {
    join_request: Option<String>,
}

async fn save(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<SettingForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let on = f.join_request.is_some_and(|v| !v.is_empty());
    let mut tx = state.db.begin().await?;
    app::set_join_request(&mut tx, &ctx.principal, id, on).await?.commit(tx, &state).await?;
    ctx.flash("success", "invlinks.saved").await?;
    Ok(redirect(&format!("/groups/{id}/invite-links")))
}
