//! "Day N" check-in posters: the group's setting (`/groups/{id}/checkin-poster`, linked from
//! its check-in rules page) and the public poster of one check-in, `/c/{token}`, which the
//! chat platform fetches when the bot sends it (signed: nothing to guess, nothing to alter).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::checkin_poster::{self as app, PosterRaw};
use crate::domain::checkin_poster::{PosterClaims, MAX_TOKEN_LEN};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::poster::{Format, PosterData, PosterKey};
use crate::store::groups::{self, GroupRow};
use crate::store::posters::TemplateRow;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/groups/{id}/checkin-poster", get(form).post(save))
}

pub fn public_router() -> Router<AppState> {
    Router::new().route("/c/{token}", get(poster))
}

#[derive(Template)]
#[template(path = "member/checkin_poster_form.html")]
struct FormPage {
    l: Layout,
    g: GroupRow,
    raw: PosterRaw,
    errors: FieldErrors,
    templates: Vec<TemplateRow>,
    can_write: bool,
}

async fn page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    raw: Option<PosterRaw>,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    ctx.principal.require_group(id)?;
    let mut conn = state.db.acquire().await?;
    let g = groups::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let raw = match raw {
        Some(r) => r,
        None => match crate::store::checkin_poster::get(&mut conn, id).await? {
            Some(p) => PosterRaw { template_id: p.template_id.to_string(), text: p.text },
            None => PosterRaw::default(),
        },
    };
    let templates = crate::store::posters::list(&mut conn, ctx.scope().as_deref())
        .await?
        .into_iter()
        .filter(|t| t.group_id.is_none_or(|tg| tg == id))
        .collect();
    drop(conn);
    let p = FormPage {
        l: ctx.layout_titled(format!("{} · {}", ctx.tr.t("checkin_poster.title"), g.name), "groups").await?,
        g,
        raw,
        errors,
        templates,
        can_write: ctx.principal.can_write(),
    };
    render(status, &p)
}

async fn form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    page(&state, &ctx, id, None, FieldErrors::new(), StatusCode::OK).await
}

async fn save(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<PosterRaw>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let poster = match raw.parse() {
        Ok(p) => p,
        Err(e) => return page(&state, &ctx, id, Some(raw), e, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let mut tx = state.db.begin().await?;
    match app::set(&mut tx, &ctx.principal, id, poster.as_ref()).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(e)) => {
            drop(tx);
            return page(&state, &ctx, id, Some(raw), e, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "checkin_poster.saved").await?;
    Ok(redirect(&format!("/groups/{id}/checkin-poster")))
}

/// One check-in's poster (JPEG): 404 for a token that is not ours or a group that has no
/// poster now. Drawn through the poster caches, so the platform fetching it twice costs a
/// lookup; a strong ETag names the template version and the data.
async fn poster(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if token.len() > MAX_TOKEN_LEN {
        return StatusCode::NOT_FOUND.into_response();
    }
    match draw(&state, &token, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn draw(state: &AppState, token: &str, headers: &HeaderMap) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let key = state.member_pages.key(&mut conn).await?;
    let c = PosterClaims::verify(token, key).ok_or(AppError::NotFound)?;
    let src =
        crate::store::checkin_poster::source(&mut conn, c.group_id, &c.user_id).await?.ok_or(AppError::NotFound)?;
    let template_id = src.template_id.ok_or(AppError::NotFound)?;
    let t = crate::store::posters::get(&mut conn, template_id, None).await?.ok_or(AppError::NotFound)?;
    drop(conn);
    let vars = BTreeMap::from([
        ("campaign".to_string(), src.text),
        ("streak".to_string(), c.streak.to_string()),
        ("days".to_string(), c.total_days.to_string()),
        ("date".to_string(), c.day.format("%Y-%m-%d").to_string()),
    ]);
    let avatar = crate::app::avatars::avatar(state, src.platform, &c.user_id, src.bridge_id).await;
    let data = PosterData {
        name: src.member_name.unwrap_or(c.user_id),
        avatar,
        qr_url: format!("{}/", state.config.public_base()),
        vars,
    };
    let format = Format::Jpeg;
    let etag = PosterKey::new(t.id, t.version, &data, format).etag();
    match crate::app::posters::draw(state, t.id, t.version, &Arc::new(t.layout.0), data, format).await {
        Ok(bytes) => Ok(super::posters::image(headers, bytes, format.content_type(), &etag, "public, max-age=3600")),
        Err(crate::app::posters::DrawError::Fonts(f)) => {
            Ok((StatusCode::SERVICE_UNAVAILABLE, f.to_string()).into_response())
        }
        Err(crate::app::posters::DrawError::App(a)) => Err(a),
    }
}
