//! `/api/v1/poster-templates`: list (cursor), create, read, change (partial), delete, the
//! background image (PUT raw PNG/JPEG, DELETE), a preview with a sample member, and public poster
//! links (make, list, revoke).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, ApiJson, PageParams};
use crate::app::posters::{self as app, DrawError};
use crate::auth::Principal;
use crate::error::{AppError, AppResult, ErrorMarker, FieldErrors};
use crate::poster::template::{Element, ElementRaw, LinkRaw, TemplateRaw};
use crate::poster::{background, Format, PosterKey};
use crate::store::posters::{self as store, BackgroundChange, LinkRow, TemplateRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(put_background, delete_background))
        .routes(routes!(preview_template))
        .routes(routes!(list_links, create_link))
        .routes(routes!(revoke_link))
}

/// One element of a template. Which fields apply depends on `type`: `avatar` (x, y, size,
/// shape), `nickname` (x, y, width, font_size, color, align, max_lines, bold), `text` (those and
/// `text`), `qr` (x, y, size, color), `rect` (x, y, width, height, color, radius).
#[derive(Serialize, Deserialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct PosterElement {
    /// `avatar`, `nickname`, `text`, `qr` or `rect`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub x: Option<i64>,
    pub y: Option<i64>,
    /// Side of an avatar or QR code, in pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Width of a text box or rectangle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Height of a rectangle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub font_size: Option<i64>,
    /// `#rgb`, `#rrggbb` or `#rrggbbaa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// `left`, `center` or `right`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub align: Option<String>,
    /// Line clamp: lines at most, the last ending in "…".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bold: Option<bool>,
    /// `round` or `square` (avatars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// Corner radius of a rectangle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radius: Option<i64>,
    /// With `{name}`, `{campaign}`, `{streak}`, `{days}`, `{invites}`, `{date}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl PosterElement {
    fn of(e: &Element) -> PosterElement {
        serde_json::to_value(e).ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
    }

    fn raw(&self) -> ElementRaw {
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        ElementRaw {
            // A missing type is an error here, not a skipped form row.
            kind: self.kind.clone().unwrap_or_else(|| "?".into()),
            x: n(self.x),
            y: n(self.y),
            w: n(self.size.or(self.width)),
            h: n(self.height),
            font_size: n(self.font_size),
            color: s(&self.color),
            align: s(&self.align),
            max_lines: n(self.max_lines),
            bold: self.bold.unwrap_or(false),
            shape: s(&self.shape),
            radius: n(self.radius),
            text: s(&self.text),
        }
    }
}

/// A poster template.
#[derive(Serialize, ToSchema)]
pub struct PosterTemplate {
    pub id: i64,
    pub name: String,
    /// The group it belongs to; null: shared by every group.
    pub group_id: Option<i64>,
    /// Goes up with every change.
    pub version: i32,
    pub width: u32,
    pub height: u32,
    pub background_color: String,
    pub has_background: bool,
    pub elements: Vec<PosterElement>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<TemplateRow> for PosterTemplate {
    fn from(t: TemplateRow) -> PosterTemplate {
        let layout = &t.layout.0;
        PosterTemplate {
            id: t.id,
            version: t.version,
            width: layout.width,
            height: layout.height,
            background_color: layout.background_color.hex(),
            has_background: t.has_background(),
            elements: layout.elements.iter().map(PosterElement::of).collect(),
            name: t.name,
            group_id: t.group_id,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Fields to create or change a template; omitted fields keep their value (or default: a
/// 1080 × 1920 white canvas). `elements`, when given, replaces the whole list.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PosterTemplateBody {
    pub name: Option<String>,
    /// A group in the caller's scope; null or absent on create: shared (needs every group).
    pub group_id: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub background_color: Option<String>,
    pub elements: Option<Vec<PosterElement>>,
}

impl PosterTemplateBody {
    fn overlay(self, mut raw: TemplateRaw) -> TemplateRaw {
        if let Some(v) = self.name {
            raw.name = v;
        }
        if let Some(g) = self.group_id {
            raw.group_id = g.to_string();
        }
        if let Some(v) = self.width {
            raw.width = v.to_string();
        }
        if let Some(v) = self.height {
            raw.height = v.to_string();
        }
        if let Some(v) = self.background_color {
            raw.background_color = v;
        }
        if let Some(e) = self.elements {
            raw.elements = e.iter().map(PosterElement::raw).collect();
        }
        raw
    }
}

#[derive(Serialize, ToSchema)]
pub struct PosterTemplatePage {
    pub items: Vec<PosterTemplate>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List the poster templates the caller sees (its groups' and the shared ones), in id order.
#[utoipa::path(get, path = "/api/v1/poster-templates", tag = "posters", params(PageParams),
    responses((status = 200, body = PosterTemplatePage), (status = 400, body = super::ProblemDoc), (status = 401, body = super::ProblemDoc)))]
async fn list_templates(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
) -> AppResult<Json<PosterTemplatePage>> {
    let (after, limit) = page.resolve()?;
    let mut conn = state.db.acquire().await?;
    let rows = store::list_after(&mut conn, p.group_filter().as_deref(), after, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |t| t.id);
    Ok(Json(PosterTemplatePage { items: rows.into_iter().map(PosterTemplate::from).collect(), next_cursor }))
}

/// Create a poster template (its background image is set with `PUT …/background`).
#[utoipa::path(post, path = "/api/v1/poster-templates", tag = "posters", request_body = PosterTemplateBody,
    responses((status = 201, body = PosterTemplate), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_template(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<PosterTemplateBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let spec = body.overlay(TemplateRaw::default()).parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::create(&mut tx, &p, &spec, None).await?;
    tx.commit().await?;
    let location = format!("/api/v1/poster-templates/{}", row.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(PosterTemplate::from(row))).into_response())
}

async fn load(state: &AppState, p: &Principal, id: i64) -> AppResult<TemplateRow> {
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, p.group_filter().as_deref()).await?.ok_or(AppError::NotFound)
}

/// Read one poster template.
#[utoipa::path(get, path = "/api/v1/poster-templates/{id}", tag = "posters", params(("id" = i64, Path)),
    responses((status = 200, body = PosterTemplate), (status = 404, body = super::ProblemDoc)))]
async fn get_template(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<PosterTemplate>> {
    Ok(Json(load(&state, &p, id).await?.into()))
}

/// Change some fields of a poster template (its version goes up).
#[utoipa::path(patch, path = "/api/v1/poster-templates/{id}", tag = "posters", params(("id" = i64, Path)), request_body = PosterTemplateBody,
    responses((status = 200, body = PosterTemplate), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn update_template(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PosterTemplateBody>,
) -> AppResult<Json<PosterTemplate>> {
    p.require_write()?;
    let current = load(&state, &p, id).await?;
    let base = TemplateRaw::of(&current.name, current.group_id, &current.layout.0);
    let spec = body.overlay(base).parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::update(&state, &mut tx, &p, id, &spec, BackgroundChange::Keep).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Delete a poster template and its public links.
#[utoipa::path(delete, path = "/api/v1/poster-templates/{id}", tag = "posters", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_template(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::delete(&state, &mut tx, &p, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the background image: the body is the PNG or JPEG itself (at most `http.max_upload_bytes`,
/// 4096 × 4096 pixels). It is stored re-encoded, without metadata.
#[utoipa::path(put, path = "/api/v1/poster-templates/{id}/background", tag = "posters", params(("id" = i64, Path)),
    request_body(content(("image/png"), ("image/jpeg")), description = "the image"),
    responses((status = 200, body = PosterTemplate), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc),
        (status = 413, body = super::ProblemDoc), (status = 415, body = super::ProblemDoc, description = "not image/png or image/jpeg"), (status = 422, body = super::ProblemDoc)))]
async fn put_background(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<PosterTemplate>> {
    p.require_write()?;
    let current = load(&state, &p, id).await?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if !(ct.starts_with("image/png") || ct.starts_with("image/jpeg")) {
        return Err(AppError::UnsupportedMediaType);
    }
    let max = state.config.http.max_upload_bytes;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| AppError::PayloadTooLarge)?.to_vec();
    let checked = crate::web::upload::decode_image(&state, move || background::validate(bytes, max)).await;
    let bg = match checked {
        Some(Ok(b)) => b,
        Some(Err(key)) => {
            let mut fe = FieldErrors::new();
            fe.add("body", key);
            return Err(AppError::Validation(fe));
        }
        None => {
            let mut fe = FieldErrors::new();
            fe.add("body", "error.not_an_image");
            return Err(AppError::Validation(fe));
        }
    };
    let spec =
        TemplateRaw::of(&current.name, current.group_id, &current.layout.0).parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::update(&state, &mut tx, &p, id, &spec, BackgroundChange::Replace(&bg)).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Remove the background image.
#[utoipa::path(delete, path = "/api/v1/poster-templates/{id}/background", tag = "posters", params(("id" = i64, Path)),
    responses((status = 200, body = PosterTemplate), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn delete_background(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<PosterTemplate>> {
    p.require_write()?;
    let current = load(&state, &p, id).await?;
    let spec =
        TemplateRaw::of(&current.name, current.group_id, &current.layout.0).parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let row = app::update(&state, &mut tx, &p, id, &spec, BackgroundChange::Remove).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewParams {
    /// The name to show (default: a sample name), at most 120 characters.
    #[param(max_length = 120)]
    pub name: Option<String>,
    /// `jpeg` (default) or `png`.
    pub format: Option<Format>,
}

/// A problem document answering 503: posters cannot be drawn (no fonts); `detail` says why.
fn unavailable(detail: String) -> Response {
    let body = serde_json::json!({"type": "/problems/unavailable", "title": "Service Unavailable", "status": 503, "detail": detail});
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    r.extensions_mut().insert(ErrorMarker(StatusCode::SERVICE_UNAVAILABLE));
    r
}

/// The template drawn with a sample member (or `name`), with a sample QR link and values.
#[utoipa::path(get, path = "/api/v1/poster-templates/{id}/preview", tag = "posters", params(("id" = i64, Path), PreviewParams),
    responses((status = 200, description = "the poster", content(("image/jpeg"), ("image/png"))), (status = 304, description = "the ETag matches"),
        (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc),
        (status = 503, body = super::ProblemDoc, description = "posters cannot be drawn here: no Chinese font (the detail says what to install)")))]
async fn preview_template(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    Query(q): Query<PreviewParams>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let name = q.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let mut fe = FieldErrors::new();
    if let Some(n) = name {
        if n.chars().count() > 120 {
            fe.add("name", "error.too_long");
        }
    }
    fe.into_result(())?;
    let t = load(&state, &p, id).await?;
    let data = app::sample_data(state.config.public_base(), crate::i18n::Lang::ZhCn, name);
    let format = q.format.unwrap_or(Format::Jpeg);
    let etag = PosterKey::new(t.id, t.version, &data, format).etag();
    match app::draw(&state, t.id, t.version, &Arc::new(t.layout.0), data, format).await {
        Ok(bytes) => Ok(crate::web::posters::image(&headers, bytes, format.content_type(), &etag, "private, no-cache")),
        Err(DrawError::Fonts(f)) => Ok(unavailable(f.to_string())),
        Err(DrawError::App(e)) => Err(e),
    }
}

/// A public poster link (its token is only in the answer that made it).
#[derive(Serialize, ToSchema)]
pub struct PosterLink {
    pub id: i64,
    pub template_id: i64,
    pub member_id: Option<i64>,
    pub name: String,
    pub qr_url: String,
    pub vars: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<LinkRow> for PosterLink {
    fn from(l: LinkRow) -> PosterLink {
        PosterLink {
            id: l.id,
            template_id: l.template_id,
            member_id: l.member_id,
            name: l.name,
            qr_url: l.qr_url,
            vars: l.vars.0,
            created_at: l.created_at,
            revoked_at: l.revoked_at,
        }
    }
}

/// A new link with its public URL, shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewPosterLink {
    #[serde(flatten)]
    pub link: PosterLink,
    /// `{public_url}/p/{token}`: anyone with it sees the poster (JPEG; `?format=png`).
    pub url: String,
}

/// What a link shows: a member (their current name) or a name, the QR code's link and
/// placeholder values.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PosterLinkBody {
    /// A member in the caller's scope; the poster shows their current name.
    pub member_id: Option<i64>,
    /// Required without `member_id`.
    pub name: Option<String>,
    /// What the QR code says: an http(s) link, usually the member's personal live-code link.
    pub qr_url: Option<String>,
    /// Values of `campaign`, `streak`, `days`, `invites`, `date`.
    pub vars: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub struct PosterLinkList {
    /// The newest 100.
    pub items: Vec<PosterLink>,
}

/// The template's public links, newest first.
#[utoipa::path(get, path = "/api/v1/poster-templates/{id}/links", tag = "posters", params(("id" = i64, Path)),
    responses((status = 200, body = PosterLinkList), (status = 404, body = super::ProblemDoc)))]
async fn list_links(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<PosterLinkList>> {
    load(&state, &p, id).await?;
    let mut conn = state.db.acquire().await?;
    let items = store::links(&mut conn, id, 100).await?.into_iter().map(PosterLink::from).collect();
    Ok(Json(PosterLinkList { items }))
}

/// Make a public link to a poster of this template.
#[utoipa::path(post, path = "/api/v1/poster-templates/{id}/links", tag = "posters", params(("id" = i64, Path)), request_body = PosterLinkBody,
    responses((status = 201, body = NewPosterLink), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_link(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<PosterLinkBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let raw = LinkRaw {
        member_id: body.member_id,
        name: body.name.unwrap_or_default(),
        qr_url: body.qr_url.unwrap_or_default(),
        vars: body.vars.unwrap_or_default(),
    };
    let spec = raw.parse().map_err(AppError::Validation)?;
    let mut tx = state.db.begin().await?;
    let (row, token) = app::create_link(&mut tx, &p, id, &spec).await?;
    tx.commit().await?;
    let url = format!("{}/p/{token}", state.config.public_base());
    Ok((StatusCode::CREATED, Json(NewPosterLink { link: row.into(), url })).into_response())
}

/// Revoke a public poster link: it answers 404 from now on.
#[utoipa::path(delete, path = "/api/v1/poster-links/{id}", tag = "posters", params(("id" = i64, Path)),
    responses((status = 200, body = PosterLink), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn revoke_link(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<PosterLink>> {
    let mut tx = state.db.begin().await?;
    let row = app::revoke_link(&state, &mut tx, &p, id).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}
