//! Group pages: list with filters, create, edit (with the QR image replaced in place), archive,
//! and the QR image itself.

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{non_empty, redirect, render, upload, Pager};
use crate::auth::Principal;
use crate::config::Config;
use crate::domain::group::{local_input_value, GroupRaw, GroupSpec, GroupStatus};
use crate::domain::qr::{self, QrImage};
use crate::domain::{filter_text, Platform};
use crate::error::{on_unique, AppError, AppResult, FieldErrors};
use crate::store::audit::{self, Actor};
use crate::store::groups::{self, GroupRow};
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
    let platform = non_empty(&q.platform).filter(|p| Platform::parse(p).is_some());
    let status = non_empty(&q.status).filter(|s| s == "all" || GroupStatus::parse(s).is_some());
    let mut errors = FieldErrors::new();
    let f = groups::Filter {
        q: filter_text(q.q.as_deref(), "q", &mut errors),
        platform: platform.clone(),
        status: status.clone(),
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
        platform.unwrap_or_default(),
        status.unwrap_or_default(),
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

/// The expiry to store with a new QR image: as given, else the platform's default from now.
fn qr_expiry(spec: &GroupSpec) -> Option<DateTime<Utc>> {
    spec.qr_expires_at
        .or_else(|| spec.platform.default_qr_validity_days().map(|d| Utc::now() + chrono::Duration::days(d)))
}

/// Gives a scoped principal access to a group it has just created.
pub async fn grant_group(conn: &mut sqlx::PgConnection, p: &Principal, group_id: i64) -> sqlx::Result<()> {
    if p.group_filter().is_none() {
        return Ok(());
    }
    let sql = match p.kind {
        crate::auth::ActorKind::Operator => {
            "INSERT INTO operator_groups (operator_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        crate::auth::ActorKind::Token => {
            "INSERT INTO api_token_groups (token_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
    };
    sqlx::query(sql).bind(p.id).bind(group_id).execute(conn).await?;
    Ok(())
}

pub fn audit_details(spec: &GroupSpec) -> serde_json::Value {
    serde_json::json!({
        "name": spec.name, "platform": spec.platform.as_str(), "join_url": spec.join_url,
        "capacity": spec.capacity, "member_count": spec.member_count, "timezone": spec.timezone,
        "external_chat_id": spec.external_chat_id, "status": spec.status.as_str(), "tags": spec.tags,
    })
}

/// Who may set or change a group's chat (its platform and chat id): admins and principals with
/// every group. A principal scoped to some groups could otherwise claim another community's chat
/// and receive its deliveries and members, and the "taken" answer would tell them it exists.
pub fn may_set_chat(p: &Principal) -> bool {
    p.is_admin() || p.group_filter().is_none()
}

/// Refuses a chat change by a principal that may not make it ([`may_set_chat`]); keeping the
/// chat as it is, or clearing it, is everyone's.
pub fn check_chat_change(p: &Principal, current: Option<&GroupRow>, spec: &GroupSpec) -> Result<(), FieldErrors> {
    let Some(chat) = &spec.external_chat_id else { return Ok(()) };
    let unchanged =
        current.is_some_and(|g| g.external_chat_id.as_deref() == Some(chat) && g.platform == spec.platform.as_str());
    if may_set_chat(p) || unchanged {
        return Ok(());
    }
    let mut errors = FieldErrors::new();
    errors.add("external_chat_id", "error.chat_id_admin_only");
    Err(errors)
}

pub fn external_chat_conflict(e: sqlx::Error) -> AppError {
    on_unique(e, "groups_external_chat_key", "external_chat_id", "error.external_chat_taken")
}

async fn create(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (spec, qr) = match parse_form(&state, &form).await {
        Ok(ok) => ok,
        Err((errors, status)) => return form_page(&ctx, &state, None, raw_from(&form), errors, status).await,
    };
    if let Err(errors) = check_chat_change(&ctx.principal, None, &spec) {
        return form_page(&ctx, &state, None, raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut tx = state.db.begin().await?;
    let id = match groups::insert(&mut tx, &spec).await.map_err(external_chat_conflict) {
        Ok(id) => id,
        Err(AppError::Validation(errors)) => {
            return form_page(&ctx, &state, None, raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => return Err(e),
    };
    grant_group(&mut tx, &ctx.principal, id).await?;
    if let Some(img) = &qr {
        groups::put_qr(&mut tx, id, img, qr_expiry(&spec)).await?;
    }
    let mut details = audit_details(&spec);
    details["qr_sha256"] = serde_json::json!(qr.as_ref().map(|q| q.sha256.clone()));
    audit::record(&mut tx, Actor::Principal(&ctx.principal), "group.create", "group", Some(id.to_string()), details)
        .await?;
    tx.commit().await?;
    ctx.flash("success", "groups.created").await?;
    Ok(redirect(&format!("/groups/{id}")))
}

/// The group, if it exists and is within the principal's scope (else 404).
async fn load(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<GroupRow> {
    ctx.principal.require_group(id)?;
    let mut conn = state.db.acquire().await?;
    groups::get(&mut conn, id).await?.ok_or(AppError::NotFound)
}

/// A stored group as the form shows it.
pub fn raw_of(g: &GroupRow) -> GroupRaw {
    GroupRaw {
        name: g.name.clone(),
        platform: g.platform.clone(),
        join_url: g.join_url.clone().unwrap_or_default(),
        capacity: g.capacity.to_string(),
        member_count: g.member_count.map(|n| n.to_string()).unwrap_or_default(),
        timezone: g.timezone.clone(),
        external_chat_id: g.external_chat_id.clone().unwrap_or_default(),
        status: g.status.clone(),
        tags: g.tags.join(", "),
        notes: g.notes.clone(),
        qr_expires_at: g.qr_expires_at.map(|at| local_input_value(at, &g.timezone)).unwrap_or_default(),
    }
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
    let raw = raw_of(&g);
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
    if let Err(errors) = check_chat_change(&ctx.principal, Some(&g), &spec) {
        return form_page(&ctx, &state, Some(g), raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut tx = state.db.begin().await?;
    match groups::update(&mut tx, id, &spec).await.map_err(external_chat_conflict) {
        Ok(_) => {}
        Err(AppError::Validation(errors)) => {
            return form_page(&ctx, &state, Some(g), raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => return Err(e),
    }
    let mut details = audit_details(&spec);
    if let Some(img) = &qr {
        // A replaced image gets a fresh expiry unless the operator moved the date themselves.
        let moved = spec.qr_expires_at.filter(|at| Some(*at) != g.qr_expires_at);
        let expiry = moved.or_else(|| qr_expiry(&GroupSpec { qr_expires_at: None, ..spec.clone() }));
        groups::put_qr(&mut tx, id, img, expiry).await?;
        details["qr_sha256"] = serde_json::json!(img.sha256);
        audit::record(
            &mut tx,
            Actor::Principal(&ctx.principal),
            "group.qr_replace",
            "group",
            Some(id.to_string()),
            serde_json::json!({"sha256": img.sha256, "expires_at": expiry}),
        )
        .await?;
    }
    audit::record(&mut tx, Actor::Principal(&ctx.principal), "group.update", "group", Some(id.to_string()), details)
        .await?;
    tx.commit().await?;
    ctx.flash("success", "groups.saved").await?;
    Ok(redirect(&format!("/groups/{id}")))
}

async fn set_status(state: &AppState, ctx: &Ctx, id: i64, status: GroupStatus, flash: &str) -> AppResult<Response> {
    ctx.principal.require_write()?;
    load(state, ctx, id).await?;
    let mut tx = state.db.begin().await?;
    groups::set_status(&mut tx, id, status.as_str()).await?;
    let action = if status == GroupStatus::Archived { "group.archive" } else { "group.restore" };
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        action,
        "group",
        Some(id.to_string()),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
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
