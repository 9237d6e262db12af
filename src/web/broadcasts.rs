//! Broadcasts (定时群发): the list with each broadcast's deliveries per state, the form (preview
//! per platform, then schedule), one broadcast with its delivery per group and a cancel button,
//! and the groups' check-in reminder switches — the same use cases as the API
//! (`app::broadcasts`).

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::broadcasts::{self as app, Preview};
use crate::domain::broadcast::{BroadcastImage, BroadcastRaw, DeliveryState, WEEKDAYS};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::broadcasts::{self as store, BroadcastRow, DeliveryRow};
use crate::{AppState, Config};

const PAGE: i64 = 50;

pub fn router(cfg: &Config) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(cfg.http.max_upload_bytes + super::MULTIPART_OVERHEAD);
    Router::new()
        .route("/broadcasts", get(list))
        .route("/broadcasts/new", get(new).post(submit).layer(upload_limit))
        .route("/broadcasts/reminders", get(reminders))
        .route("/broadcasts/reminders/{group_id}", post(set_reminder).get(back_to_reminders))
        .route("/broadcasts/{id}", get(detail))
        .route("/broadcasts/{id}/cancel", post(cancel).get(back))
}

// ---------------------------------------------------------------- list

#[derive(Deserialize)]
struct ListQuery {
    before: Option<i64>,
}

struct Listed {
    b: BroadcastRow,
    counts: Vec<(DeliveryState, i64)>,
}

#[derive(Template)]
#[template(path = "broadcasts/list.html")]
struct ListPage {
    l: Layout,
    items: Vec<Listed>,
    older: Option<String>,
}

async fn list(State(state): State<AppState>, ctx: Ctx, Query(q): Query<ListQuery>) -> AppResult<Response> {
    let scope = ctx.principal.group_filter();
    let mut conn = state.db.acquire().await?;
    let rows = store::list(&mut conn, scope.as_deref(), q.before.filter(|b| *b > 0), PAGE).await?;
    let ids: Vec<i64> = rows.iter().map(|b| b.id).collect();
    let counts = store::state_counts(&mut conn, &ids).await?;
    drop(conn);
    let older =
        (rows.len() as i64 == PAGE).then(|| rows.last().map(|b| format!("/broadcasts?before={}", b.id))).flatten();
    let items = rows
        .into_iter()
        .map(|b| {
            let counts = counts.iter().filter(|(id, _, _)| *id == b.id).map(|(_, s, n)| (*s, *n)).collect();
            Listed { b, counts }
        })
        .collect();
    render(StatusCode::OK, &ListPage { l: ctx.layout("broadcasts.title", "broadcasts").await?, items, older })
}

// ---------------------------------------------------------------- the form

#[derive(Template)]
#[template(path = "broadcasts/form.html")]
struct FormPage {
    l: Layout,
    raw: BroadcastRaw,
    errors: FieldErrors,
    groups: Vec<(i64, String)>,
    preview: Option<Preview>,
}

impl FormPage {
    fn chosen(&self, id: &i64) -> bool {
        self.raw.group_ids.contains(id)
    }
    fn audience_is(&self, a: &str) -> bool {
        self.raw.audience == a || (a == "groups" && self.raw.audience.is_empty())
    }
    fn every_is(&self, e: &str) -> bool {
        self.raw.every == e || (e == "once" && self.raw.every.is_empty())
    }
    fn weekdays(&self) -> Vec<(String, &'static str, bool)> {
        WEEKDAYS
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let n = (i + 1).to_string();
                let on = self.raw.weekdays.contains(&n);
                let key = match w {
                    chrono::Weekday::Mon => "broadcasts.weekday.1",
                    chrono::Weekday::Tue => "broadcasts.weekday.2",
                    chrono::Weekday::Wed => "broadcasts.weekday.3",
                    chrono::Weekday::Thu => "broadcasts.weekday.4",
                    chrono::Weekday::Fri => "broadcasts.weekday.5",
                    chrono::Weekday::Sat => "broadcasts.weekday.6",
                    chrono::Weekday::Sun => "broadcasts.weekday.7",
                };
                (n, self.l.tr.t(key), on)
            })
            .collect()
    }
}

async fn form_page(
    state: &AppState,
    ctx: &Ctx,
    raw: BroadcastRaw,
    errors: FieldErrors,
    preview: Option<Preview>,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let groups = crate::store::groups::names(&mut conn, ctx.principal.group_filter().as_deref()).await?;
    drop(conn);
    let l = ctx.layout("broadcasts.new", "broadcasts").await?;
    render(status, &FormPage { l, raw, errors, groups, preview })
}

async fn new(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    form_page(&state, &ctx, BroadcastRaw::default(), FieldErrors::new(), None, StatusCode::OK).await
}

/// The form's fields (repeated ones too: `group_ids`, `weekdays`) and its picture, if one was
/// chosen: (bytes, too large).
async fn read_form(mut mp: Multipart, max_file: usize) -> AppResult<(Vec<(String, String)>, Option<(Vec<u8>, bool)>)> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut fields = Vec::new();
    let mut file = None;
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if field.file_name().is_some() {
            let mut bytes = Vec::new();
            let mut too_large = false;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                if bytes.len() + chunk.len() > max_file {
                    too_large = true;
                } else if !too_large {
                    bytes.extend_from_slice(&chunk);
                }
            }
            if name == "image" && (too_large || !bytes.is_empty()) {
                file = Some((bytes, too_large));
            }
        } else if fields.len() < 2000 {
            fields.push((name, field.text().await.map_err(bad)?));
        }
    }
    Ok((fields, file))
}

fn parse_form(fields: Vec<(String, String)>) -> (BroadcastRaw, bool) {
    let mut raw = BroadcastRaw::default();
    let mut preview = false;
    for (k, v) in fields {
        match k.as_str() {
            "text" => raw.text = v,
            "audience" => raw.audience = v,
            "group_ids" => {
                if let Ok(id) = v.parse() {
                    raw.group_ids.push(id);
                }
            }
            "tag" => raw.tag = v,
            "mention_unchecked" => raw.mention_unchecked = v == "1",
            "send_at" => raw.send_at = v,
            "every" => raw.every = v,
            "at" => raw.at = v,
            "weekdays" => raw.weekdays.push(v),
            "step" => preview = v == "preview",
            _ => {}
        }
    }
    (raw, preview)
}

/// Checks an uploaded picture like every image (decoded within limits off the request workers,
/// re-encoded without metadata); the error's key otherwise.
pub async fn check_image(state: &AppState, bytes: Vec<u8>) -> Result<BroadcastImage, &'static str> {
    let max = state.config.http.max_upload_bytes;
    match super::upload::decode_image(state, move || crate::poster::background::validate(bytes, max)).await {
        Some(Ok(b)) => Ok(BroadcastImage { content_type: b.content_type, bytes: b.bytes }),
        Some(Err(key)) => Err(key),
        None => Err("error.not_an_image"),
    }
}

async fn submit(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let (fields, file) = read_form(mp, state.config.http.max_upload_bytes).await?;
    let (raw, preview) = parse_form(fields);
    let zone = crate::domain::Zone(ctx.time.tz);
    let parsed = raw.parse(zone, Utc::now());
    let mut errors = parsed.as_ref().err().cloned().unwrap_or_default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let image = match file {
        Some((_, true)) => {
            errors.add("image", "error.file_too_large");
            status = StatusCode::PAYLOAD_TOO_LARGE;
            None
        }
        Some((bytes, false)) => match check_image(&state, bytes).await {
            Ok(i) => Some(i),
            Err(key) => {
                errors.add("image", key);
                None
            }
        },
        None => None,
    };
    let mut spec = match parsed {
        Ok(s) if errors.is_empty() => s,
        _ => return form_page(&state, &ctx, raw, errors, None, status).await,
    };
    spec.image = image;
    if preview {
        let mut conn = state.db.acquire().await?;
        let shown = app::preview(&mut conn, &ctx.principal, &spec).await;
        drop(conn);
        return match shown {
            Ok(p) => form_page(&state, &ctx, raw, FieldErrors::new(), Some(p), StatusCode::OK).await,
            Err(AppError::Validation(errors)) => {
                form_page(&state, &ctx, raw, errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
            }
            Err(e) => Err(e),
        };
    }
    let mut tx = state.db.begin().await?;
    match app::create(&mut tx, &state.config, &ctx.principal, &spec).await {
        Ok(done) => {
            let b = done.commit(tx, &state).await?;
            ctx.flash("success", "broadcasts.created_flash").await?;
            Ok(redirect(&format!("/broadcasts/{}", b.id)))
        }
        Err(AppError::Validation(errors)) => {
            drop(tx);
            form_page(&state, &ctx, raw, errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------- one broadcast

#[derive(Template)]
#[template(path = "broadcasts/detail.html")]
struct DetailPage {
    l: Layout,
    image_url: Option<String>,
    b: BroadcastRow,
    deliveries: Vec<DeliveryRow>,
}

impl DetailPage {
    /// Why a delivery failed, in words when Shoal decided it, else the platform's own words.
    fn reason(&self, d: &DeliveryRow) -> String {
        match d.error.as_deref() {
            Some(crate::broadcasts::NO_BOT) => self.l.tr.t("broadcasts.why.no_bot").to_string(),
            Some(crate::broadcasts::ALL_CHECKED_IN) => self.l.tr.t("broadcasts.why.all_checked_in").to_string(),
            Some(e) => e.to_string(),
            None => String::new(),
        }
    }
    fn weekdays_text(&self) -> String {
        self.b
            .weekdays
            .iter()
            .map(|d| self.l.tr.t(&format!("broadcasts.weekday.{d}")))
            .collect::<Vec<_>>()
            .join(self.l.tr.t("broadcasts.list_sep"))
    }
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let (b, deliveries) = app::get(&mut conn, &ctx.principal, id, 1000).await?;
    drop(conn);
    let l = ctx.layout_titled(format!("{} #{}", ctx.tr.t("broadcasts.one"), b.id), "broadcasts").await?;
    let image_url = b.image_token.as_deref().map(|t| format!("/b/{}/{t}", b.id));
    render(StatusCode::OK, &DetailPage { l, image_url, b, deliveries })
}

async fn back(ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let _ = ctx;
    Ok(redirect(&format!("/broadcasts/{id}")))
}

async fn cancel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let here = format!("/broadcasts/{id}");
    if !super::confirm::given(&body) {
        let mut conn = state.db.acquire().await?;
        app::get(&mut conn, &ctx.principal, id, 1).await?;
        drop(conn);
        let action = format!("/broadcasts/{id}/cancel");
        let ask = super::confirm::Ask {
            nav: "broadcasts",
            question: ctx.tr.t("broadcasts.cancel_question").to_string(),
            action: &action,
            button_key: "broadcasts.cancel",
            cancel: &here,
        };
        return super::confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    match app::cancel(&mut tx, &ctx.principal, id).await {
        Ok(done) => {
            done.commit(tx, &state).await?;
            ctx.flash("success", "broadcasts.cancelled").await?;
        }
        Err(AppError::Conflict(_)) => ctx.flash("error", "broadcasts.already_cancelled").await?,
        Err(e) => return Err(e),
    }
    Ok(redirect(&here))
}

// ---------------------------------------------------------------- the picture, for the bots

/// `/b/{id}/{token}`: a broadcast's picture, for the bots that send it (public: they fetch it
/// without a login). The token is checked for its shape before any lookup and compared in
/// constant time; a wrong one is a 404 like a missing picture.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/b/{id}/{token}", get(public_image))
}

async fn public_image(State(state): State<AppState>, Path((id, token)): Path<(i64, String)>) -> AppResult<Response> {
    if token.len() != 43 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.acquire().await?;
    let Some((content_type, bytes, stored)) = store::image(&mut conn, id).await? else {
        return Err(AppError::NotFound);
    };
    if !crate::auth::secret_eq(token.as_bytes(), stored.as_bytes()) {
        return Err(AppError::NotFound);
    }
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600".to_string())], bytes)
        .into_response())
}

// ---------------------------------------------------------------- reminders

#[derive(Template)]
#[template(path = "broadcasts/reminders.html")]
struct RemindersPage {
    l: Layout,
    groups: Vec<(i64, String, bool)>,
}

async fn reminders(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let groups = store::reminder_groups(&mut conn, ctx.principal.group_filter().as_deref()).await?;
    drop(conn);
    render(StatusCode::OK, &RemindersPage { l: ctx.layout("broadcasts.reminders", "broadcasts").await?, groups })
}

async fn back_to_reminders(ctx: Ctx) -> AppResult<Response> {
    let _ = ctx;
    Ok(redirect("/broadcasts/reminders"))
}

#[derive(Deserialize)]
struct ReminderForm {
    #[serde(default)]
    enabled: String,
}

async fn set_reminder(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(group_id): Path<i64>,
    axum::Form(f): axum::Form<ReminderForm>,
) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    app::set_reminder(&mut tx, &ctx.principal, group_id, f.enabled == "1").await?.commit(tx, &state).await?;
    ctx.flash("success", "broadcasts.reminder_saved").await?;
    Ok(redirect("/broadcasts/reminders"))
}
