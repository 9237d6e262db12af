//! Group pages: list with filters, create, edit (with the QR image replaced in place), archive,
//! and the QR image itself.

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{non_empty, redirect, render, upload, Pager};
use crate::app;
use crate::auth::Principal;
use crate::config::Config;
use crate::domain::group::{GroupRaw, GroupSpec, GroupStatus};
use crate::domain::qr::{self, QrImage};
use crate::domain::{filter_text, Platform};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::groups::{self, GroupRow, StatusFilter};
use crate::AppState;

const PAGE_SIZE: i64 = 50;

pub fn router(cfg: &Config) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(cfg.http.max_upload_bytes + super::MULTIPART_OVERHEAD);
    Router::new()
        .route("/groups", get(list))
        .route("/groups/new", get(new_form).post(create).layer(upload_limit))
        .route("/groups/{id}", get(detail))
        .route("/groups/{id}/edit", get(edit_form).post(update).layer(upload_limit))
        .route("/groups/{id}/archive", post(archive))
        .route("/groups/{id}/restore", post(restore))
        .route("/groups/{id}/qr", get(qr_image))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    platform: Option<String>,
    status: Option<String>,
    tag: Option<String>,
    #[serde(default, deserialize_with = "crate::store::lenient_page")]
    page: Option<i64>,
}

#[derive(Template)]
#[template(path = "groups/list.html")]
struct ListPage {
    l: Layout,
    groups: Vec<GroupRow>,
    pager: Pager,
    errors: FieldErrors,
    q: String,
    platform: String,
    status: String,
    tag: String,
    platforms: [Platform; 6],
    can_write: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx, Query(q): Query<ListQuery>) -> AppResult<Response> {
    let page = crate::store::Page::new(q.page, PAGE_SIZE);
    // An unknown platform or status filters nothing (a stale link), as if not given.
    let platform = non_empty(&q.platform).and_then(|p| Platform::parse(&p));
    let status = non_empty(&q.status).and_then(|s| StatusFilter::parse(&s)).unwrap_or_default();
    let mut errors = FieldErrors::new();
    let f = groups::Filter {
        q: filter_text(q.q.as_deref(), "q", &mut errors),
        platform,
        status,
        tag: filter_text(q.tag.as_deref(), "tag", &mut errors),
        scope: ctx.scope(),
    };
    // An over-long filter is answered with its message and no search at all.
    let (rows, total) = if errors.is_empty() {
        let mut conn = state.db.acquire().await?;
        groups::list(&mut conn, &f, page.size, page.offset()).await?
    } else {
        (Vec::new(), 0)
    };
    let (qs, ps, ss, ts) = (
        f.q.clone().unwrap_or_default(),
        platform.map(|p| p.as_str().to_string()).unwrap_or_default(),
        status.as_str().to_string(),
        f.tag.clone().unwrap_or_default(),
    );
    let pager = Pager::new(
        "/groups",
        page.number,
        page.size,
        total,
        &[("q", &qs), ("platform", &ps), ("status", &ss), ("tag", &ts)],
    );
    let page = ListPage {
        l: ctx.layout("groups.title", "groups").await?,
        groups: rows,
        errors,
        pager,
        q: qs,
        platform: ps,
        status: ss,
        tag: ts,
        platforms: Platform::ALL,
        can_write: ctx.principal.can_write(),
    };
    let status = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(status, &page)
}

#[derive(Template)]
#[template(path = "groups/form.html")]
struct FormPage {
    l: Layout,
    /// None for a new group.
    group: Option<GroupRow>,
    raw: GroupRaw,
    errors: FieldErrors,
    platforms: [Platform; 6],
    statuses: [GroupStatus; 3],
    max_upload_mib: usize,
    /// False: the chat id field is read-only (see [`may_set_chat`]).
    can_set_chat: bool,
}

impl FormPage {
    fn action(&self) -> String {
        match &self.group {
            Some(g) => format!("/groups/{}/edit", g.id),
            None => "/groups/new".into(),
        }
    }
}

async fn form_page(
    ctx: &Ctx,
    state: &AppState,
    group: Option<GroupRow>,
    raw: GroupRaw,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let l = match &group {
        Some(g) => ctx.layout_titled(format!("{} · {}", ctx.tr.t("groups.edit"), g.name), "groups").await?,
        None => ctx.layout("groups.new", "groups").await?,
    };
    let page = FormPage {
        l,
        group,
        raw,
        errors,
        platforms: Platform::ALL,
        statuses: GroupStatus::ALL,
        max_upload_mib: state.config.http.max_upload_bytes / (1024 * 1024),
        can_set_chat: may_set_chat(&ctx.principal),
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    form_page(&ctx, &state, None, GroupRaw::blank(), FieldErrors::new(), StatusCode::OK).await
}

fn raw_from(form: &upload::MultipartForm) -> GroupRaw {
    GroupRaw {
        name: form.text("name"),
        platform: form.text("platform"),
        join_url: form.text("join_url"),
        capacity: form.text("capacity"),
        member_count: form.text("member_count"),
        timezone: form.text("timezone"),
        external_chat_id: form.text("external_chat_id"),
        status: form.text("status"),
        tags: form.text("tags"),
        notes: form.text("notes"),
        qr_expires_at: form.text("qr_expires_at"),
    }
}

/// Parses the form and checks the QR upload; errors come back with the status to answer.
async fn parse_form(
    state: &AppState,
    form: &upload::MultipartForm,
) -> Result<(GroupSpec, Option<QrImage>), (FieldErrors, StatusCode)> {
    let raw = raw_from(form);
    let (spec, mut errors) = match raw.parse() {
        Ok(s) => (Some(s), FieldErrors::new()),
        Err(e) => (None, e),
    };
    let max = state.config.http.max_upload_bytes;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let qr = match form.file("qr_image") {
        Some(u) if u.too_large => {
            errors.add("qr_image", "error.file_too_large");
            status = StatusCode::PAYLOAD_TOO_LARGE;
            None
        }
        Some(u) => {
            let bytes = u.bytes.clone();
            match upload::decode_image(state, move || qr::validate(bytes, max)).await {
                Some(Ok(img)) => Some(img),
                Some(Err(key)) => {
                    errors.add("qr_image", key);
                    None
                }
                None => {
                    errors.add("qr_image", "error.not_an_image");
                    None
                }
            }
        }
        None => None,
    };
    match spec {
        Some(spec) if errors.is_empty() => Ok((spec, qr)),
        _ => Err((errors, status)),
    }
}

/// Gives a scoped principal access to a group it has just created or linked (`web::bridges`
/// links chats).
pub async fn grant_group(conn: &mut sqlx::PgConnection, p: &Principal, group_id: i64) -> sqlx::Result<()> {
    groups::grant(conn, p, group_id).await
}

/// Who may set or change a group's chat ([`app::groups::may_set_chat`]).
pub fn may_set_chat(p: &Principal) -> bool {
    app::groups::may_set_chat(p)
}

async fn create(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (spec, qr) = match parse_form(&state, &form).await {
        Ok(ok) => ok,
        Err((errors, status)) => return form_page(&ctx, &state, None, raw_from(&form), errors, status).await,
    };
    let mut tx = state.db.begin().await?;
    let g = match app::groups::create(&mut tx, &ctx.principal, &spec, qr.as_ref()).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&ctx, &state, None, raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "groups.created").await?;
    Ok(redirect(&format!("/groups/{}", g.id)))
}

/// The group, if it exists and is within the principal's scope (else 404).
async fn load(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<GroupRow> {
    let mut conn = state.db.acquire().await?;
    app::groups::load(&mut conn, &ctx.principal, id).await
}

#[derive(Template)]
#[template(path = "groups/detail.html")]
struct DetailPage {
    l: Layout,
    g: GroupRow,
    expires_local: String,
    uploaded_local: String,
    can_write: bool,
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let g = load(&state, &ctx, id).await?;
    let page = DetailPage {
        l: ctx.layout_titled(g.name.clone(), "groups").await?,
        expires_local: ctx.time.opt_or_empty(g.qr_expires_at),
        uploaded_local: ctx.time.opt_or_empty(g.qr_uploaded_at),
        g,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}

async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let g = load(&state, &ctx, id).await?;
    let raw = app::groups::raw_of(&g);
    form_page(&ctx, &state, Some(g), raw, FieldErrors::new(), StatusCode::OK).await
}

async fn update(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let g = load(&state, &ctx, id).await?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (spec, qr) = match parse_form(&state, &form).await {
        Ok(ok) => ok,
        Err((errors, status)) => return form_page(&ctx, &state, Some(g), raw_from(&form), errors, status).await,
    };
    let mut tx = state.db.begin().await?;
    match app::groups::update(&mut tx, &ctx.principal, id, &spec, qr.as_ref()).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&ctx, &state, Some(g), raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "groups.saved").await?;
    Ok(redirect(&format!("/groups/{id}")))
}

async fn set_status(state: &AppState, ctx: &Ctx, id: i64, status: GroupStatus, flash: &str) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    app::groups::set_status(&mut tx, &ctx.principal, id, status).await?.commit(tx, state).await?;
    ctx.flash("success", flash).await?;
    Ok(redirect(&format!("/groups/{id}")))
}

async fn archive(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    set_status(&state, &ctx, id, GroupStatus::Archived, "groups.archived").await
}

async fn restore(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    set_status(&state, &ctx, id, GroupStatus::Active, "groups.restored").await
}

/// The stored QR image, with an ETag so browsers revalidate cheaply and see replacements at once.
async fn qr_image(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> AppResult<Response> {
    ctx.principal.require_group(id)?;
    let mut conn = state.db.acquire().await?;
    let (content_type, bytes, sha) = groups::qr_image(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(image_response(&headers, content_type, bytes, &sha, "private, max-age=60, must-revalidate"))
}

pub fn image_response(
    headers: &HeaderMap,
    content_type: String,
    bytes: Vec<u8>,
    sha: &str,
    cache: &'static str,
) -> Response {
    let etag = format!("\"{sha}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp =
        if matches { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, bytes).into_response() };
    let h = resp.headers_mut();
    if !matches {
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
