//! Poster pages: the template list, create and edit (with a preview that follows the form: a
//! static script re-requests the preview image as fields change, and a "Preview" button does the
//! same without JavaScript), a template's page with its public links, and the public poster
//! `/p/{token}` (ETag, Cache-Control, served from memory when drawn before).

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{confirm, redirect, render, upload};
use crate::app::posters::{self as app, DrawError};
use crate::config::Config;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::poster::background::{self, Background};
use crate::poster::template::{ElementRaw, LinkRaw, TemplateRaw, ALIGNS, KINDS, LINK_VARS, MAX_ELEMENTS, SHAPES};
use crate::poster::{Format, PosterKey};
use crate::store::groups::{self, GroupRow};
use crate::store::posters::{self as store, BackgroundChange, LinkRow, TemplateRow};
use crate::AppState;

/// Empty element rows a form offers for new elements.
const BLANK_ROWS: usize = 3;
/// Links listed on a template's page.
const LINKS_SHOWN: i64 = 100;

pub fn router(cfg: &Config) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(cfg.http.max_upload_bytes + super::MULTIPART_OVERHEAD);
    Router::new()
        .route("/posters", get(list))
        .route("/posters/new", get(new_form).post(create).layer(upload_limit))
        .route("/posters/preview.jpg", get(preview_unsaved))
        .route("/posters/{id}", get(detail))
        .route("/posters/{id}/edit", get(edit_form).post(update).layer(upload_limit))
        .route("/posters/{id}/delete", post(delete))
        .route("/posters/{id}/preview.jpg", get(preview_stored))
        .route("/posters/{id}/background", get(background_image))
        .route("/posters/{id}/links", post(create_link))
        .route("/posters/{id}/links/{link}/revoke", post(revoke_link))
}

/// The public poster route (no session): `/p/{token}`.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/p/{token}", get(public_poster))
}

/// The sentence shown when posters cannot be drawn (no fonts), loading them if needed.
async fn font_problem(state: &AppState) -> Option<String> {
    let p = state.posters.clone();
    match tokio::task::spawn_blocking(move || p.fonts().map(|_| ())).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => None,
    }
}

#[derive(Template)]
#[template(path = "posters/list.html")]
struct ListPage {
    l: Layout,
    templates: Vec<TemplateRow>,
    font_problem: Option<String>,
    can_write: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let templates = store::list(&mut conn, ctx.scope().as_deref()).await?;
    drop(conn);
    let page = ListPage {
        l: ctx.layout("posters.title", "posters").await?,
        templates,
        font_problem: font_problem(&state).await,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "posters/form.html")]
struct FormPage {
    l: Layout,
    template: Option<TemplateRow>,
    raw: TemplateRaw,
    rows: Vec<ElementRaw>,
    errors: FieldErrors,
    groups: Vec<GroupRow>,
    may_share: bool,
    remove_background: bool,
    preview_url: String,
    font_problem: Option<String>,
    max_upload_mib: usize,
    kinds: &'static [&'static str],
    aligns: &'static [&'static str],
    shapes: &'static [&'static str],
}

impl FormPage {
    fn action(&self) -> String {
        match &self.template {
            Some(t) => format!("/posters/{}/edit", t.id),
            None => "/posters/new".into(),
        }
    }
    /// The message of an element row's field, for the template.
    fn row_error(&self, i: &usize, field: &str) -> String {
        self.errors.html(&format!("elements[{i}].{field}"), self.l.tr.lang())
    }
    fn row_class(&self, i: &usize, field: &str) -> &'static str {
        self.errors.class(&format!("elements[{i}].{field}"))
    }
}

/// The form's fields as a query string, for the preview image of what the form holds.
fn preview_query(raw: &TemplateRaw, template_id: Option<i64>, remove_background: bool) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("width", &raw.width).append_pair("height", &raw.height);
    q.append_pair("background_color", &raw.background_color);
    if let Some(id) = template_id {
        q.append_pair("template", &id.to_string());
    }
    if remove_background {
        q.append_pair("remove_background", "1");
    }
    for (i, e) in raw.elements.iter().enumerate().filter(|(_, e)| !e.kind.trim().is_empty()) {
        let mut pair = |k: &str, v: &str| {
            if !v.is_empty() {
                q.append_pair(&format!("e{i}_{k}"), v);
            }
        };
        pair("type", &e.kind);
        pair("x", &e.x);
        pair("y", &e.y);
        pair("w", &e.w);
        pair("h", &e.h);
        pair("font_size", &e.font_size);
        pair("color", &e.color);
        pair("align", &e.align);
        pair("max_lines", &e.max_lines);
        pair("shape", &e.shape);
        pair("radius", &e.radius);
        pair("text", &e.text);
        if e.bold {
            pair("bold", "1");
        }
    }
    format!("/posters/preview.jpg?{}", q.finish())
}

#[allow(clippy::too_many_arguments)]
async fn form_page(
    state: &AppState,
    ctx: &Ctx,
    template: Option<TemplateRow>,
    raw: TemplateRaw,
    errors: FieldErrors,
    remove_background: bool,
    preview_url: Option<String>,
    status: StatusCode,
) -> AppResult<Response> {
    let l = match &template {
        Some(t) => ctx.layout_titled(format!("{} · {}", ctx.tr.t("posters.edit"), t.name), "posters").await?,
        None => ctx.layout("posters.new", "posters").await?,
    };
    let mut conn = state.db.acquire().await?;
    let filter = groups::Filter { scope: ctx.scope(), status: groups::StatusFilter::All, ..Default::default() };
    let (groups, _) = groups::list(&mut conn, &filter, 500, 0).await?;
    drop(conn);
    let groups = groups.into_iter().filter(|g| app::may_write(&ctx.principal, Some(g.id))).collect();
    let mut rows = raw.elements.clone();
    rows.extend(std::iter::repeat_n(ElementRaw::default(), BLANK_ROWS.min(MAX_ELEMENTS.saturating_sub(rows.len()))));
    let preview_url = preview_url.unwrap_or_else(|| match &template {
        Some(t) => format!("/posters/{}/preview.jpg?v={}", t.id, t.version),
        None => preview_query(&raw, None, false),
    });
    let page = FormPage {
        l,
        may_share: app::may_write(&ctx.principal, None),
        template,
        raw,
        rows,
        errors,
        groups,
        remove_background,
        preview_url,
        font_problem: font_problem(state).await,
        max_upload_mib: state.config.http.max_upload_bytes / (1024 * 1024),
        kinds: KINDS,
        aligns: ALIGNS,
        shapes: SHAPES,
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let mut raw = TemplateRaw::of("", None, &crate::poster::Layout::sample());
    // A scoped operator's template belongs to one of their groups.
    if !app::may_write(&ctx.principal, None) {
        if let Some(g) = ctx.principal.group_filter().and_then(|g| g.first().copied()) {
            raw.group_id = g.to_string();
        }
    }
    form_page(&state, &ctx, None, raw, FieldErrors::new(), false, None, StatusCode::OK).await
}

/// The template fields of a form or preview query: `name`, `group_id`, `width`, `height`,
/// `background_color`, and per element row `e{i}_type`, `e{i}_x`, … (`e{i}_bold` is a checkbox).
fn raw_from(get: impl Fn(&str) -> Option<String>) -> TemplateRaw {
    let text = |k: &str| get(k).unwrap_or_default();
    let elements = (0..MAX_ELEMENTS + BLANK_ROWS)
        .map(|i| {
            let f = |k: &str| text(&format!("e{i}_{k}"));
            ElementRaw {
                kind: f("type"),
                x: f("x"),
                y: f("y"),
                w: f("w"),
                h: f("h"),
                font_size: f("font_size"),
                color: f("color"),
                align: f("align"),
                max_lines: f("max_lines"),
                bold: !f("bold").is_empty(),
                shape: f("shape"),
                radius: f("radius"),
                text: f("text"),
            }
        })
        .collect::<Vec<_>>();
    // Keep rows up to the last one in use, so that row numbers (and their messages) stay put.
    let used = elements.iter().rposition(|e| !e.kind.trim().is_empty()).map_or(0, |i| i + 1);
    TemplateRaw {
        name: text("name"),
        group_id: text("group_id"),
        width: text("width"),
        height: text("height"),
        background_color: text("background_color"),
        elements: elements.into_iter().take(used).collect(),
    }
}

/// What a template form asks for, checked: the template, the new background (if one was
/// chosen), whether to remove the old one and whether this is only a preview.
struct Submitted {
    raw: TemplateRaw,
    remove_background: bool,
    preview: bool,
}

async fn parse_form(
    state: &AppState,
    form: &upload::MultipartForm,
) -> (Submitted, Result<(crate::poster::TemplateSpec, Option<Background>), (FieldErrors, StatusCode)>) {
    let raw = raw_from(|k| form.fields.get(k).cloned());
    let sub = Submitted {
        remove_background: form.fields.get("remove_background").is_some_and(|v| v == "1"),
        preview: form.fields.get("intent").is_some_and(|v| v == "preview"),
        raw: raw.clone(),
    };
    let (spec, mut errors) = match raw.parse() {
        Ok(s) => (Some(s), FieldErrors::new()),
        Err(e) => (None, e),
    };
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let max = state.config.http.max_upload_bytes;
    let bg = match form.file("background") {
        Some(u) if u.too_large => {
            errors.add("background", "error.file_too_large");
            status = StatusCode::PAYLOAD_TOO_LARGE;
            None
        }
        Some(u) => {
            let bytes = u.bytes.clone();
            match upload::decode_image(state, move || background::validate(bytes, max)).await {
                Some(Ok(b)) => Some(b),
                Some(Err(key)) => {
                    errors.add("background", key);
                    None
                }
                None => {
                    errors.add("background", "error.not_an_image");
                    None
                }
            }
        }
        None => None,
    };
    let result = match spec {
        Some(spec) if errors.is_empty() => Ok((spec, bg)),
        _ => Err((errors, status)),
    };
    (sub, result)
}

async fn create(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (sub, parsed) = parse_form(&state, &form).await;
    let (spec, bg) = match parsed {
        Ok(ok) => ok,
        Err((errors, status)) => {
            return form_page(&state, &ctx, None, sub.raw, errors, sub.remove_background, None, status).await
        }
    };
    if sub.preview {
        let url = preview_query(&sub.raw, None, false);
        return form_page(&state, &ctx, None, sub.raw, FieldErrors::new(), false, Some(url), StatusCode::OK).await;
    }
    let mut tx = state.db.begin().await?;
    let row = match app::create(&mut tx, &ctx.principal, &spec, bg.as_ref()).await {
        Ok(row) => row,
        Err(AppError::Validation(errors)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return form_page(&state, &ctx, None, sub.raw, errors, sub.remove_background, None, status).await;
        }
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    ctx.flash("success", "posters.created").await?;
    Ok(redirect(&format!("/posters/{}", row.id)))
}

/// The template, if in the principal's scope (else 404).
async fn load(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<TemplateRow> {
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, ctx.scope().as_deref()).await?.ok_or(AppError::NotFound)
}

async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    if !app::may_write(&ctx.principal, t.group_id) {
        return Err(AppError::Forbidden);
    }
    let raw = TemplateRaw::of(&t.name, t.group_id, &t.layout.0);
    form_page(&state, &ctx, Some(t), raw, FieldErrors::new(), false, None, StatusCode::OK).await
}

async fn update(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, mp: Multipart) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    if !app::may_write(&ctx.principal, t.group_id) {
        return Err(AppError::Forbidden);
    }
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (sub, parsed) = parse_form(&state, &form).await;
    let (spec, bg) = match parsed {
        Ok(ok) => ok,
        Err((errors, status)) => {
            return form_page(&state, &ctx, Some(t), sub.raw, errors, sub.remove_background, None, status).await
        }
    };
    if sub.preview {
        let url = preview_query(&sub.raw, Some(id), sub.remove_background);
        let (raw, remove) = (sub.raw, sub.remove_background);
        return form_page(&state, &ctx, Some(t), raw, FieldErrors::new(), remove, Some(url), StatusCode::OK).await;
    }
    let change = match (&bg, sub.remove_background) {
        (Some(b), _) => BackgroundChange::Replace(b),
        (None, true) => BackgroundChange::Remove,
        (None, false) => BackgroundChange::Keep,
    };
    let mut tx = state.db.begin().await?;
    match app::update(&state, &mut tx, &ctx.principal, id, &spec, change).await {
        Ok(_) => {}
        Err(AppError::Validation(errors)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return form_page(&state, &ctx, Some(t), sub.raw, errors, sub.remove_background, None, status).await;
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    ctx.flash("success", "posters.saved").await?;
    Ok(redirect(&format!("/posters/{id}")))
}

async fn delete(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, body: Bytes) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    ctx.principal.require_write()?;
    if !app::may_write(&ctx.principal, t.group_id) {
        return Err(AppError::Forbidden);
    }
    if !confirm::given(&body) {
        let question = ctx.tr.f("posters.delete_confirm", &[("name", &t.name)]);
        let (action, cancel) = (format!("/posters/{id}/delete"), format!("/posters/{id}"));
        let ask =
            confirm::Ask { nav: "posters", question, action: &action, button_key: "posters.delete", cancel: &cancel };
        return confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    app::delete(&state, &mut tx, &ctx.principal, id).await?;
    tx.commit().await?;
    ctx.flash("success", "posters.deleted").await?;
    Ok(redirect("/posters"))
}

#[derive(Template)]
#[template(path = "posters/detail.html")]
struct DetailPage {
    l: Layout,
    t: TemplateRow,
    links: Vec<LinkRow>,
    /// May change or delete the template.
    can_edit: bool,
    /// May make and revoke its links.
    can_link: bool,
    font_problem: Option<String>,
    /// A link just made: its URL, shown this once.
    new_link: Option<String>,
    link: LinkForm,
    errors: FieldErrors,
    default_qr_url: String,
    link_vars: [&'static str; 5],
}

impl DetailPage {
    fn var(&self, name: &str) -> String {
        self.link.vars.get(name).cloned().unwrap_or_default()
    }
    fn var_class(&self, name: &str) -> &'static str {
        self.errors.class(&format!("vars.{name}"))
    }
    fn var_error(&self, name: &str) -> String {
        self.errors.html(&format!("vars.{name}"), self.l.tr.lang())
    }
}

#[allow(clippy::too_many_arguments)]
async fn detail_page(
    state: &AppState,
    ctx: &Ctx,
    t: TemplateRow,
    new_link: Option<String>,
    link: LinkForm,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let links = store::links(&mut conn, t.id, LINKS_SHOWN).await?;
    drop(conn);
    let page = DetailPage {
        l: ctx.layout_titled(t.name.clone(), "posters").await?,
        can_edit: app::may_write(&ctx.principal, t.group_id),
        can_link: ctx.principal.can_write(),
        t,
        links,
        font_problem: font_problem(state).await,
        new_link,
        link,
        errors,
        default_qr_url: format!("{}/", state.config.public_base()),
        link_vars: LINK_VARS,
    };
    render(status, &page)
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    detail_page(&state, &ctx, t, None, LinkForm::default(), FieldErrors::new(), StatusCode::OK).await
}

/// The link form as typed.
#[derive(Deserialize, Default)]
struct LinkForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    member_id: String,
    #[serde(default)]
    qr_url: String,
    #[serde(flatten)]
    vars: std::collections::BTreeMap<String, String>,
}

async fn create_link(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<LinkForm>,
) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    ctx.principal.require_write()?;
    let mut errors = FieldErrors::new();
    let member_id = match form.member_id.trim() {
        "" => None,
        m => match m.parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errors.add("member_id", "error.number_range");
                None
            }
        },
    };
    let vars = form
        .vars
        .iter()
        .filter(|(k, _)| LINK_VARS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let raw = LinkRaw { member_id, name: form.name.clone(), qr_url: form.qr_url.clone(), vars };
    let spec = match raw.parse() {
        Ok(s) if errors.is_empty() => s,
        Ok(_) => return detail_page(&state, &ctx, t, None, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
        Err(e) => return detail_page(&state, &ctx, t, None, form, e, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let mut tx = state.db.begin().await?;
    let token = match app::create_link(&mut tx, &ctx.principal, id, &spec).await {
        Ok((_, token)) => token,
        Err(AppError::Validation(e)) => {
            return detail_page(&state, &ctx, t, None, form, e, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    let url = format!("{}/p/{token}", state.config.public_base());
    detail_page(&state, &ctx, t, Some(url), LinkForm::default(), FieldErrors::new(), StatusCode::OK).await
}

async fn revoke_link(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, link)): Path<(i64, i64)>,
    body: Bytes,
) -> AppResult<Response> {
    load(&state, &ctx, id).await?;
    ctx.principal.require_write()?;
    let mut conn = state.db.acquire().await?;
    let row = store::link(&mut conn, link).await?.filter(|l| l.template_id == id).ok_or(AppError::NotFound)?;
    drop(conn);
    if !confirm::given(&body) {
        let question = ctx.tr.f("posters.revoke_confirm", &[("name", &row.name)]);
        let (action, cancel) = (format!("/posters/{id}/links/{link}/revoke"), format!("/posters/{id}"));
        let ask =
            confirm::Ask { nav: "posters", question, action: &action, button_key: "posters.revoke", cancel: &cancel };
        return confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    app::revoke_link(&state, &mut tx, &ctx.principal, link).await?;
    tx.commit().await?;
    ctx.flash("success", "posters.revoked").await?;
    Ok(redirect(&format!("/posters/{id}")))
}

/// An image answer with an ETag (304 when the browser has it) and the given Cache-Control.
pub fn image(
    headers: &HeaderMap,
    bytes: Bytes,
    content_type: &'static str,
    etag: &str,
    cache: &'static str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { bytes.into_response() };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A drawing failure as an answer: no fonts is 503 with the sentence (as text, so that an
/// `<img>` fails and a person opening it reads why).
fn draw_failure(e: DrawError) -> Response {
    match e {
        DrawError::Fonts(f) => {
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, f.to_string()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
        DrawError::App(a) => a.into_response(),
    }
}

#[derive(Deserialize)]
struct PreviewQuery {
    name: Option<String>,
    format: Option<Format>,
}

/// A stored template with the sample member (`?name=` another name).
async fn preview_stored(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    let name = q.name.as_deref().map(str::trim).filter(|n| !n.is_empty() && n.chars().count() <= 120);
    let data = app::sample_data(state.config.public_base(), ctx.tr.lang(), name);
    let format = q.format.unwrap_or(Format::Jpeg);
    let etag = PosterKey::new(t.id, t.version, &data, format).etag();
    match app::draw(&state, t.id, t.version, &Arc::new(t.layout.0), data, format).await {
        Ok(bytes) => Ok(image(&headers, bytes, format.content_type(), &etag, "private, no-cache")),
        Err(e) => Ok(draw_failure(e)),
    }
}

/// What the form holds, drawn with the sample member (the background of `template` unless
/// `remove_background`). 422 when the fields are invalid.
async fn preview_unsaved(State(state): State<AppState>, ctx: Ctx, RawQuery(q): RawQuery) -> AppResult<Response> {
    let pairs: std::collections::HashMap<String, String> =
        form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    let mut raw = raw_from(|k| pairs.get(k).cloned());
    raw.name = "preview".into();
    let spec = raw.parse().map_err(AppError::Validation)?;
    let mut background = None;
    if let Some(id) = pairs.get("template").and_then(|t| t.parse::<i64>().ok()) {
        let t = load(&state, &ctx, id).await?;
        if t.has_background() && pairs.get("remove_background").is_none_or(|v| v != "1") {
            let mut conn = state.db.acquire().await?;
            background = store::background(&mut conn, t.id).await?.map(|(b, _)| b);
        }
    }
    let data = app::sample_data(state.config.public_base(), ctx.tr.lang(), None);
    match app::draw_unsaved(&state, spec.layout, background, data, Format::Jpeg).await {
        Ok(bytes) => {
            let mut r = bytes.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
            Ok(r)
        }
        Err(e) => Ok(draw_failure(e)),
    }
}

/// The stored background image of a template.
async fn background_image(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let t = load(&state, &ctx, id).await?;
    let sha = t.background_sha256.clone().ok_or(AppError::NotFound)?;
    let mut conn = state.db.acquire().await?;
    let (bytes, ct) = store::background(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(super::groups::image_response(&headers, ct, bytes, &sha, "private, max-age=60, must-revalidate"))
}

/// A token as `/p/` links carry it: 43 characters of URL-safe base64 (256 bits). Anything else
/// is not looked up.
fn plausible_token(t: &str) -> bool {
    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
struct PublicQuery {
    format: Option<String>,
}

/// A member's poster: `/p/{token}` (JPEG; `?format=png` for PNG). 404 for a revoked or unknown
/// link. The ETag names the template version and the data, so it is known before anything is
/// drawn: a browser that has the poster gets 304 at the cost of a lookup.
async fn public_poster(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    headers: HeaderMap,
) -> Response {
    if !plausible_token(&token) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let format = match q.format.as_deref() {
        None | Some("jpeg") | Some("jpg") => Format::Jpeg,
        Some("png") => Format::Png,
        Some(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let hash = crate::auth::token_hash(&token);
    let link = match state.posters.links.get(&hash) {
        Some(l) => l,
        None => {
            let found = match state.db.acquire().await {
                Ok(mut conn) => store::public_link(&mut conn, &hash).await,
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(l)) => {
                    let l = Arc::new(l);
                    state.posters.links.put(hash, l.clone());
                    l
                }
                Ok(None) => return StatusCode::NOT_FOUND.into_response(),
                Err(e) => return AppError::from(e).into_response(),
            }
        }
    };
    let data = crate::poster::PosterData {
        name: link.name.clone(),
        avatar: None,
        qr_url: link.qr_url.clone(),
        vars: link.vars.0.clone(),
    };
    let key = PosterKey::new(link.template_id, link.version, &data, format);
    let etag = key.etag();
    const CACHE: &str = "public, max-age=60";
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == etag) {
        return image(&headers, Bytes::new(), format.content_type(), &etag, CACHE);
    }
    if let Some(bytes) = state.posters.cached(&key) {
        return image(&headers, bytes, format.content_type(), &etag, CACHE);
    }
    let layout = Arc::new(link.layout.0.clone());
    match app::draw(&state, link.template_id, link.version, &layout, data, format).await {
        Ok(bytes) => image(&headers, bytes, format.content_type(), &etag, CACHE),
        Err(e) => draw_failure(e),
    }
}
