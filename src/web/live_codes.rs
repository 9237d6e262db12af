//! Live-code pages: list with fill bars and today's scans, create and edit (with the fallback
//! image), detail with targets, channels, QR downloads and statistics; every change in one
//! transaction with an audit row, and the scan cache of this process told at once.

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgConnection;

use super::ctx::{Ctx, Layout};
use super::{confirm, non_empty, redirect, render, upload};
use crate::app;
use crate::app::landing::LogoChange;
use crate::app::live_codes::{ChannelRef, Move, NewTarget};
use crate::config::Config;
use crate::domain::group::local_input_value;
use crate::domain::live_code::{default_scan_limit, parse_scan_limit, LiveCodeRaw, LiveCodeSpec, ScanOutcome};
use crate::domain::qr;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::groups;
use crate::store::live_codes::{self, ChannelRow, LiveCodeRow, TargetRow};
use crate::AppState;

/// QR downloads: sides in pixels.
const QR_MIN: u32 = 256;
const QR_MAX: u32 = 2048;
const QR_DEFAULT: u32 = 512;
/// Statistics: the default range and the longest one shown.
const DEFAULT_DAYS: i64 = 14;
const MAX_DAYS: i64 = 366;

pub fn router(cfg: &Config) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(cfg.http.max_upload_bytes + super::MULTIPART_OVERHEAD);
    Router::new()
        .route("/live-codes", get(list))
        .route("/live-codes/new", get(new_form).post(create).layer(upload_limit))
        .route("/live-codes/{id}", get(detail))
        .route("/live-codes/{id}/edit", get(edit_form).post(update).layer(upload_limit))
        .route("/live-codes/{id}/delete", post(delete))
        .route("/live-codes/{id}/fallback-image", get(fallback_image))
        .route("/live-codes/{id}/qr.png", get(qr_png))
        .route("/live-codes/{id}/qr.svg", get(qr_svg))
        .route("/live-codes/{id}/targets", post(add_target))
        .route("/live-codes/{id}/targets/{tid}/up", post(move_up))
        .route("/live-codes/{id}/targets/{tid}/down", post(move_down))
        .route("/live-codes/{id}/targets/{tid}/enable", post(enable_target))
        .route("/live-codes/{id}/targets/{tid}/disable", post(disable_target))
        .route("/live-codes/{id}/targets/{tid}/limit", post(set_limit))
        .route("/live-codes/{id}/targets/{tid}/reset", post(reset_target))
        .route("/live-codes/{id}/targets/{tid}/remove", post(remove_target))
        .route("/live-codes/{id}/channels", post(add_channel))
        .route("/live-codes/{id}/channels/{cid}/delete", post(delete_channel))
}

fn tz_of(state: &AppState) -> chrono_tz::Tz {
    state.config.scan.stats_timezone.tz()
}

/// Today in the time zone of the statistics (the calendar of `scan_daily`).
fn today(state: &AppState) -> NaiveDate {
    Utc::now().with_timezone(&tz_of(state)).date_naive()
}

/// The public link of a live code, optionally for one channel.
fn public_link(state: &AppState, slug: &str, channel: Option<&str>) -> String {
    let base = format!("{}/l/{slug}", state.config.public_base());
    match channel {
        Some(ch) => format!("{base}?ch={}", urlencoding::encode(ch)),
        None => base,
    }
}

/// A target's group QR image: expired, or expiring within the warning window.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Fine,
    Soon,
    Expired,
}

/// Whether a target's QR image has expired or expires within `warning_hours`
/// (`alerts.expiring_hours`: the window the dashboard and the alerts use too).
pub fn expiry_of(t: &TargetRow, now: DateTime<Utc>, warning_hours: i64) -> Expiry {
    match t.state().qr_expires_at {
        Some(at) if at <= now => Expiry::Expired,
        Some(at) if at <= now + Duration::hours(warning_hours) => Expiry::Soon,
        _ => Expiry::Fine,
    }
}

// ---------------------------------------------------------------- list

struct ListRow {
    c: LiveCodeRow,
    today: i64,
    targets: Vec<TargetRow>,
}

#[derive(Template)]
#[template(path = "live_codes/list.html")]
struct ListPage {
    l: Layout,
    rows: Vec<ListRow>,
    can_write: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let codes = live_codes::list(&mut conn, &live_codes::Access::of(&ctx.principal)).await?;
    let mut targets: HashMap<i64, Vec<TargetRow>> = HashMap::new();
    for t in live_codes::all_targets(&mut conn, scope.as_deref()).await? {
        targets.entry(t.live_code_id).or_default().push(t);
    }
    let scans: HashMap<i64, i64> = live_codes::scans_on(&mut conn, today(&state)).await?.into_iter().collect();
    let rows = codes
        .into_iter()
        .map(|c| ListRow {
            today: scans.get(&c.id).copied().unwrap_or(0),
            targets: targets.remove(&c.id).unwrap_or_default(),
            c,
        })
        .collect();
    let page =
        ListPage { l: ctx.layout("live_codes.title", "live_codes").await?, rows, can_write: ctx.principal.can_write() };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- create / edit

#[derive(Template)]
#[template(path = "live_codes/form.html")]
struct FormPage {
    l: Layout,
    /// None for a new live code.
    code: Option<LiveCodeRow>,
    raw: LiveCodeRaw,
    errors: FieldErrors,
    timezone: String,
    max_upload_mib: usize,
}

impl FormPage {
    fn action(&self) -> String {
        match &self.code {
            Some(c) => format!("/live-codes/{}/edit", c.id),
            None => "/live-codes/new".into(),
        }
    }
    fn window_hint(&self) -> String {
        self.l.tr.f("live_codes.window_hint", &[("tz", &self.timezone)])
    }
    fn has_image(&self) -> bool {
        self.code.as_ref().is_some_and(|c| c.fallback_sha.is_some())
    }
}

async fn form_page(
    ctx: &Ctx,
    state: &AppState,
    code: Option<LiveCodeRow>,
    raw: LiveCodeRaw,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let l = match &code {
        Some(c) => ctx.layout_titled(format!("{} · {}", ctx.tr.t("live_codes.edit"), c.name), "live_codes").await?,
        None => ctx.layout("live_codes.new", "live_codes").await?,
    };
    let page = FormPage {
        l,
        code,
        raw,
        errors,
        timezone: state.config.scan.stats_timezone.name().to_string(),
        max_upload_mib: state.config.http.max_upload_bytes / (1024 * 1024),
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    // New codes' pages speak Chinese unless the operator says otherwise.
    let raw = LiveCodeRaw { page_lang: "zh-CN".into(), ..LiveCodeRaw::blank() };
    form_page(&ctx, &state, None, raw, FieldErrors::new(), StatusCode::OK).await
}

fn raw_from(form: &upload::MultipartForm) -> LiveCodeRaw {
    LiveCodeRaw {
        name: form.text("name"),
        slug: form.text("slug"),
        status: form.text("status"),
        mode: form.text("mode"),
        sticky_days: form.text("sticky_days"),
        starts_at: form.text("starts_at"),
        ends_at: form.text("ends_at"),
        fallback_kind: form.text("fallback_kind"),
        fallback_url: form.text("fallback_url"),
        fallback_message: form.text("fallback_message"),
        page_lang: form.text("page_lang"),
        page_title: form.text("page_title"),
        page_text: form.text("page_text"),
        paused_text: form.text("paused_text"),
        ended_text: form.text("ended_text"),
    }
}

fn raw_of(c: &LiveCodeRow, tz: chrono_tz::Tz) -> LiveCodeRaw {
    LiveCodeRaw {
        name: c.name.clone(),
        slug: c.slug.clone(),
        status: c.status.as_str().to_string(),
        mode: c.mode.as_str().to_string(),
        sticky_days: c.sticky_days.to_string(),
        starts_at: c.starts_at.map(|at| local_input_value(at, tz)).unwrap_or_default(),
        ends_at: c.ends_at.map(|at| local_input_value(at, tz)).unwrap_or_default(),
        fallback_kind: c.fallback_kind.as_str().to_string(),
        fallback_url: c.fallback_url.clone().unwrap_or_default(),
        fallback_message: c.fallback_message.clone(),
        page_lang: c.page_lang.map(|l| l.code().to_string()).unwrap_or_default(),
        page_title: c.page_title.clone(),
        page_text: c.page_text.clone(),
        paused_text: c.paused_text.clone(),
        ended_text: c.ended_text.clone(),
    }
}

/// An uploaded fallback image (an owner or customer-service QR, or any picture), re-encoded at
/// a public size: it is served to anyone who scans.
type FallbackImage = qr::PublicImage;

/// Parses the form and checks the image; errors come back with the status to answer.
async fn parse_form(
    state: &AppState,
    form: &upload::MultipartForm,
) -> Result<(LiveCodeSpec, Option<FallbackImage>, LogoChange), (FieldErrors, StatusCode)> {
    let raw = raw_from(form);
    let (spec, mut errors) = match raw.parse(tz_of(state)) {
        Ok(s) => (Some(s), FieldErrors::new()),
        Err(e) => (None, e),
    };
    let max = state.config.http.max_upload_bytes;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let image = match form.file("fallback_image") {
        Some(u) if u.too_large => {
            errors.add("fallback_image", "error.file_too_large");
            status = StatusCode::PAYLOAD_TOO_LARGE;
            None
        }
        Some(u) => {
            let bytes = u.bytes.clone();
            match upload::decode_image(state, move || qr::public_image(bytes, max)).await {
                Some(Ok(img)) => Some(img),
                Some(Err(key)) => {
                    errors.add("fallback_image", key);
                    None
                }
                None => {
                    errors.add("fallback_image", "error.not_an_image");
                    None
                }
            }
        }
        None => None,
    };
    let logo = if form.text("remove_logo") == "1" {
        LogoChange::Remove
    } else {
        match super::landing::logo_upload(state, form, &mut errors).await {
            Ok(Some(img)) => LogoChange::Replace(img),
            Ok(None) => LogoChange::Keep,
            Err(s) => {
                status = s;
                LogoChange::Keep
            }
        }
    };
    match spec {
        Some(spec) if errors.is_empty() => Ok((spec, image, logo)),
        _ => Err((errors, status)),
    }
}

async fn create(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (spec, image, logo) = match parse_form(&state, &form).await {
        Ok(ok) => ok,
        Err((errors, status)) => return form_page(&ctx, &state, None, raw_from(&form), errors, status).await,
    };
    let mut tx = state.db.begin().await?;
    let created = match app::live_codes::create(&mut tx, &ctx.principal, &spec, image.as_ref()).await {
        Ok(done) => app::landing::set_logo(&mut tx, &ctx.principal, done, &logo).await,
        Err(e) => Err(e),
    };
    let c = match created {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&ctx, &state, None, raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "live_codes.created").await?;
    Ok(redirect(&format!("/live-codes/{}", c.id)))
}

/// The live code, if it exists and the principal's scope sees it (else 404).
async fn load(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<LiveCodeRow> {
    let mut conn = state.db.acquire().await?;
    app::live_codes::load(&mut conn, &ctx.principal, id).await
}

async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let c = load(&state, &ctx, id).await?;
    let raw = raw_of(&c, tz_of(&state));
    form_page(&ctx, &state, Some(c), raw, FieldErrors::new(), StatusCode::OK).await
}

async fn update(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let c = load(&state, &ctx, id).await?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let (spec, image, logo) = match parse_form(&state, &form).await {
        Ok(ok) => ok,
        Err((errors, status)) => return form_page(&ctx, &state, Some(c), raw_from(&form), errors, status).await,
    };
    let mut tx = state.db.begin().await?;
    let updated = match app::live_codes::update(&mut tx, &ctx.principal, id, &spec, image.as_ref()).await {
        Ok(done) => app::landing::set_logo(&mut tx, &ctx.principal, done, &logo).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&ctx, &state, Some(c), raw_from(&form), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "live_codes.saved").await?;
    Ok(redirect(&format!("/live-codes/{id}")))
}

/// Asks before a destructive change of live code `c` (see `web::confirm`).
async fn ask(
    ctx: &Ctx,
    c: &LiveCodeRow,
    subject: &str,
    question_key: &str,
    action: &str,
    button_key: &str,
) -> AppResult<Response> {
    let question = ctx.tr.f("confirm.about", &[("name", &subject), ("question", &ctx.tr.t(question_key))]);
    let cancel = format!("/live-codes/{}", c.id);
    confirm::page(ctx, confirm::Ask { nav: "live_codes", question, action, button_key, cancel: &cancel }).await
}

async fn delete(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, body: Bytes) -> AppResult<Response> {
    if !confirm::given(&body) {
        let (tx, c) = begin(&state, &ctx, id).await?;
        tx.rollback().await?;
        let action = format!("/live-codes/{id}/delete");
        return ask(&ctx, &c, &c.name, "live_codes.delete_confirm", &action, "live_codes.delete").await;
    }
    let mut tx = state.db.begin().await?;
    app::live_codes::delete(&mut tx, &ctx.principal, id).await?.commit(tx, &state).await?;
    ctx.flash("success", "live_codes.deleted").await?;
    Ok(redirect("/live-codes"))
}

/// The fallback image, for the form and detail previews.
async fn fallback_image(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    headers: axum::http::HeaderMap,
) -> AppResult<Response> {
    load(&state, &ctx, id).await?;
    let mut conn = state.db.acquire().await?;
    let (ct, bytes, sha) = live_codes::fallback_image(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(super::groups::image_response(&headers, ct, bytes, &sha, "private, max-age=60, must-revalidate"))
}

// ---------------------------------------------------------------- detail

#[derive(Deserialize, Default)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The statistics range: both ends as given when valid, else the last 14 days up to today.
fn range_of(q: &RangeQuery, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let parse = |s: &Option<String>| non_empty(s).and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok());
    let to = parse(&q.to).unwrap_or(today);
    let from = parse(&q.from).unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    let (from, to) = if from > to { (to, from) } else { (from, to) };
    let from = from.max(to - Duration::days(MAX_DAYS - 1));
    (from, to)
}

struct TargetView {
    t: TargetRow,
    expiry: Expiry,
    expires_local: String,
    eligible: bool,
    first: bool,
    last: bool,
    /// The limit as shown in its inline form (what was typed, after an error).
    limit_value: String,
}

impl TargetView {
    fn limit_field(&self) -> String {
        format!("limit_{}", self.t.id)
    }
    fn expired(&self) -> bool {
        self.expiry == Expiry::Expired
    }
    fn expiring(&self) -> bool {
        self.expiry == Expiry::Soon
    }
}

struct ChannelView {
    c: ChannelRow,
    url: String,
}

struct Candidate {
    id: i64,
    name: String,
    default_limit: i32,
}

struct Bar {
    x: String,
    w: String,
    landed_y: String,
    landed_h: String,
    fallback_y: String,
    fallback_h: String,
    label_x: String,
    label: String,
    show_label: bool,
    title: String,
}

struct Chart {
    width: u32,
    height: u32,
    /// The y of the baseline and the top of the plot.
    base: u32,
    top: u32,
    max: i64,
    bars: Vec<Bar>,
}

struct DayRow {
    day: String,
    landed: i64,
    fallback: i64,
}

struct Stats {
    from: String,
    to: String,
    chart: Chart,
    days: Vec<DayRow>,
    by_target: Vec<(String, i64)>,
    by_channel: Vec<(String, i64)>,
    s: live_codes::Stats,
}

const CHART_LEFT: f64 = 44.0;
const CHART_PLOT: f64 = 140.0;
const CHART_TOP: f64 = 10.0;

fn chart(days: &[DayRow], tr: &crate::i18n::Tr) -> Chart {
    let n = days.len().max(1);
    let slot = (720.0 / n as f64).clamp(3.0, 28.0);
    let bar_w = (slot * 0.7).max(2.0);
    let max = days.iter().map(|d| d.landed + d.fallback).max().unwrap_or(0).max(1);
    let base = CHART_TOP + CHART_PLOT;
    let label_every = n.div_ceil(12);
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let x = CHART_LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
            let lh = d.landed as f64 / max as f64 * CHART_PLOT;
            let fh = d.fallback as f64 / max as f64 * CHART_PLOT;
            Bar {
                x: format!("{x:.1}"),
                w: format!("{bar_w:.1}"),
                landed_y: format!("{:.1}", base - lh),
                landed_h: format!("{lh:.1}"),
                fallback_y: format!("{:.1}", base - lh - fh),
                fallback_h: format!("{fh:.1}"),
                label_x: format!("{:.1}", x + bar_w / 2.0),
                label: d.day.get(5..).unwrap_or(&d.day).to_string(),
                show_label: i % label_every == 0,
                title: format!(
                    "{}: {} {}, {} {}",
                    d.day,
                    tr.t("live_codes.stats.landed"),
                    d.landed,
                    tr.t("live_codes.stats.fallbacks"),
                    d.fallback
                ),
            }
        })
        .collect();
    Chart {
        width: (CHART_LEFT + n as f64 * slot + 8.0).ceil() as u32,
        height: (base + 22.0) as u32,
        base: base as u32,
        top: CHART_TOP as u32,
        max,
        bars,
    }
}

async fn stats_of(
    conn: &mut PgConnection,
    tr: &crate::i18n::Tr,
    code_id: i64,
    (from, to): (NaiveDate, NaiveDate),
    targets: &[TargetRow],
) -> AppResult<Stats> {
    let s = live_codes::stats(conn, code_id, from, to).await?;
    let mut days = Vec::new();
    let mut d = from;
    while d <= to {
        let of = |o: ScanOutcome| s.daily.iter().filter(|r| r.day == d && r.outcome == o).map(|r| r.scans).sum::<i64>();
        days.push(DayRow {
            day: d.format("%Y-%m-%d").to_string(),
            landed: of(ScanOutcome::New) + of(ScanOutcome::Sticky),
            fallback: of(ScanOutcome::Fallback),
        });
        d += Duration::days(1);
    }
    let mut by_target: Vec<(String, i64)> = s
        .by_target
        .iter()
        .map(|(tid, n)| {
            let name = targets
                .iter()
                .find(|t| t.id == *tid)
                .map(|t| t.group_name.clone())
                .unwrap_or_else(|| tr.f("live_codes.stats.removed_target", &[("id", tid)]));
            (name, *n)
        })
        .collect();
    by_target.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let by_channel = s
        .by_channel
        .iter()
        .map(|k| (if k.key.is_empty() { tr.t("live_codes.stats.direct").to_string() } else { k.key.clone() }, k.scans))
        .collect();
    Ok(Stats {
        from: from.format("%Y-%m-%d").to_string(),
        to: to.format("%Y-%m-%d").to_string(),
        chart: chart(&days, tr),
        days,
        by_target,
        by_channel,
        s,
    })
}

/// What a failed form on the detail page sends back to be shown again.
#[derive(Default)]
struct Retry {
    errors: FieldErrors,
    group_id: String,
    scan_limit: String,
    channel_key: String,
    channel_name: String,
    /// A target's limit form: target id and the value typed.
    limit: Option<(i64, String)>,
}

#[derive(Template)]
#[template(path = "live_codes/detail.html")]
struct DetailPage {
    l: Layout,
    c: LiveCodeRow,
    url: String,
    window_start: String,
    window_end: String,
    targets: Vec<TargetView>,
    eligible_count: usize,
    channels: Vec<ChannelView>,
    candidates: Vec<Candidate>,
    retry: Retry,
    stats: Stats,
    can_write: bool,
}

impl DetailPage {
    fn errors(&self) -> &FieldErrors {
        &self.retry.errors
    }
}

async fn detail_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    range: &RangeQuery,
    retry: Retry,
    status: StatusCode,
) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let c = app::live_codes::load(&mut conn, &ctx.principal, id).await?;
    let rows = live_codes::targets(&mut conn, id).await?;
    let channels = live_codes::channels(&mut conn, id).await?;
    let stats = stats_of(&mut conn, &ctx.tr, id, range_of(range, today(state)), &rows).await?;
    let f = groups::Filter { scope, ..Default::default() };
    let (groups, _) = groups::list(&mut conn, &f, 1000, 0).await?;
    drop(conn);
    let candidates = groups
        .into_iter()
        .filter(|g| !rows.iter().any(|t| t.group_id == g.id))
        .map(|g| Candidate { default_limit: default_scan_limit(g.capacity, g.member_count), id: g.id, name: g.name })
        .collect();
    let now = Utc::now();
    let n = rows.len();
    let targets: Vec<TargetView> = rows
        .into_iter()
        .enumerate()
        .map(|(i, t)| TargetView {
            expiry: expiry_of(&t, now, state.config.alerts.expiring_hours),
            expires_local: ctx.time.opt_or_empty(t.state().qr_expires_at),
            eligible: t.state().eligible(now),
            first: i == 0,
            last: i + 1 == n,
            limit_value: match &retry.limit {
                Some((tid, v)) if *tid == t.id => v.clone(),
                _ => t.scan_limit.to_string(),
            },
            t,
        })
        .collect();
    let channels =
        channels.into_iter().map(|ch| ChannelView { url: public_link(state, &c.slug, Some(&ch.key)), c: ch }).collect();
    let page = DetailPage {
        l: ctx.layout_titled(c.name.clone(), "live_codes").await?,
        url: public_link(state, &c.slug, None),
        window_start: ctx.time.opt_or_empty(c.starts_at),
        window_end: ctx.time.opt_or_empty(c.ends_at),
        eligible_count: targets.iter().filter(|t| t.eligible).count(),
        targets,
        channels,
        candidates,
        retry,
        stats,
        can_write: ctx.principal.can_write(),
        c,
    };
    render(status, &page)
}

async fn detail(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(range): Query<RangeQuery>,
) -> AppResult<Response> {
    detail_page(&state, &ctx, id, &range, Retry::default(), StatusCode::OK).await
}

// ---------------------------------------------------------------- changes on the detail page

/// Locks live code `id` for a question before a destructive change: write access, the code in
/// scope (else 404). The caller rolls back after asking.
async fn begin(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
) -> AppResult<(sqlx::Transaction<'static, sqlx::Postgres>, LiveCodeRow)> {
    ctx.principal.require_write()?;
    let mut tx = state.db.begin().await?;
    let c = app::live_codes::lock(&mut tx, &ctx.principal, id).await?;
    Ok((tx, c))
}

/// Runs a change of live code `id` in its own transaction; a refusal with field errors shows
/// the detail page again with `retry`'s form values and the messages, anything else is the
/// answer. Success: a flash, back to the detail page at `anchor`.
async fn change<T, F>(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    flash: &str,
    anchor: &str,
    retry: Retry,
    f: F,
) -> AppResult<Response>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> futures_core::future::BoxFuture<'c, AppResult<app::Done<T>>>,
{
    let mut tx = state.db.begin().await?;
    match f(&mut tx).await {
        Ok(done) => {
            done.commit(tx, state).await?;
            ctx.flash("success", flash).await?;
            Ok(redirect(&format!("/live-codes/{id}#{anchor}")))
        }
        Err(AppError::Validation(errors)) => {
            drop(tx);
            let retry = Retry { errors, ..retry };
            detail_page(state, ctx, id, &RangeQuery::default(), retry, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TargetForm {
    group_id: String,
    scan_limit: String,
}

async fn add_target(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<TargetForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let retry = Retry { group_id: f.group_id.clone(), scan_limit: f.scan_limit.clone(), ..Default::default() };
    let mut errors = FieldErrors::new();
    let group_id = f.group_id.trim().parse::<i64>().ok();
    if group_id.is_none() {
        errors.add("group_id", "error.required");
    }
    let scan_limit = match f.scan_limit.trim() {
        "" => None,
        s => parse_scan_limit(s, "scan_limit", &mut errors),
    };
    let Some(group_id) = group_id.filter(|_| errors.is_empty()) else {
        // The live code must be one the principal may change before the form is shown again.
        let (tx, _) = begin(&state, &ctx, id).await?;
        drop(tx);
        let retry = Retry { errors, ..retry };
        return detail_page(&state, &ctx, id, &RangeQuery::default(), retry, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.target_added", "targets", retry, move |tx| {
        Box::pin(async move { app::live_codes::add_target(tx, &p, id, NewTarget { group_id, scan_limit }).await })
    })
    .await
}

async fn move_target(state: AppState, ctx: Ctx, id: i64, tid: i64, to: Move) -> AppResult<Response> {
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.target_moved", "targets", Retry::default(), move |tx| {
        Box::pin(async move { app::live_codes::move_target(tx, &p, id, tid, to).await })
    })
    .await
}

async fn move_up(State(state): State<AppState>, ctx: Ctx, Path((id, tid)): Path<(i64, i64)>) -> AppResult<Response> {
    move_target(state, ctx, id, tid, Move::Up).await
}

async fn move_down(State(state): State<AppState>, ctx: Ctx, Path((id, tid)): Path<(i64, i64)>) -> AppResult<Response> {
    move_target(state, ctx, id, tid, Move::Down).await
}

async fn set_enabled(state: AppState, ctx: Ctx, id: i64, tid: i64, enabled: bool) -> AppResult<Response> {
    let flash = if enabled { "live_codes.target_enabled" } else { "live_codes.target_disabled" };
    let p = ctx.principal.clone();
    change(&state, &ctx, id, flash, "targets", Retry::default(), move |tx| {
        Box::pin(async move { app::live_codes::set_enabled(tx, &p, id, tid, enabled).await })
    })
    .await
}

async fn enable_target(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, tid)): Path<(i64, i64)>,
) -> AppResult<Response> {
    set_enabled(state, ctx, id, tid, true).await
}

async fn disable_target(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, tid)): Path<(i64, i64)>,
) -> AppResult<Response> {
    set_enabled(state, ctx, id, tid, false).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LimitForm {
    scan_limit: String,
}

async fn set_limit(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, tid)): Path<(i64, i64)>,
    Form(f): Form<LimitForm>,
) -> AppResult<Response> {
    // Each target has its own limit form: its field is `limit_{tid}`.
    let field = format!("limit_{tid}");
    let retry = Retry { limit: Some((tid, f.scan_limit.clone())), ..Default::default() };
    let mut errors = FieldErrors::new();
    let Some(limit) = parse_scan_limit(&f.scan_limit, &field, &mut errors) else {
        let mut tx = state.db.begin().await?;
        app::live_codes::target_of(&mut tx, &ctx.principal, id, tid).await?;
        drop(tx);
        let retry = Retry { errors, ..retry };
        return detail_page(&state, &ctx, id, &RangeQuery::default(), retry, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.limit_changed", "targets", retry, move |tx| {
        Box::pin(async move { app::live_codes::set_limit(tx, &p, id, tid, limit).await })
    })
    .await
}

/// Asks about a change of target `tid` unless the POST carries `confirm=1`; `None` when it does.
async fn ask_about_target(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    tid: i64,
    body: &Bytes,
    (question, verb, button): (&str, &str, &str),
) -> AppResult<Option<Response>> {
    let mut tx = state.db.begin().await?;
    let (c, t) = app::live_codes::target_of(&mut tx, &ctx.principal, id, tid).await?;
    tx.rollback().await?;
    if confirm::given(body) {
        return Ok(None);
    }
    let action = format!("/live-codes/{id}/targets/{tid}/{verb}");
    ask(ctx, &c, &t.group_name, question, &action, button).await.map(Some)
}

async fn reset_target(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, tid)): Path<(i64, i64)>,
    body: Bytes,
) -> AppResult<Response> {
    let question = ("live_codes.reset_confirm", "reset", "live_codes.reset");
    if let Some(page) = ask_about_target(&state, &ctx, id, tid, &body, question).await? {
        return Ok(page);
    }
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.target_reset", "targets", Retry::default(), move |tx| {
        Box::pin(async move { app::live_codes::reset_target(tx, &p, id, tid).await })
    })
    .await
}

async fn remove_target(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, tid)): Path<(i64, i64)>,
    body: Bytes,
) -> AppResult<Response> {
    let question = ("live_codes.remove_confirm", "remove", "live_codes.remove");
    if let Some(page) = ask_about_target(&state, &ctx, id, tid, &body, question).await? {
        return Ok(page);
    }
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.target_removed", "targets", Retry::default(), move |tx| {
        Box::pin(async move { app::live_codes::remove_target(tx, &p, id, tid).await })
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChannelForm {
    key: String,
    name: String,
}

async fn add_channel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ChannelForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let retry = Retry { channel_key: f.key.clone(), channel_name: f.name.clone(), ..Default::default() };
    let (key, name) = match app::live_codes::channel(&f.key, &f.name) {
        Ok(ok) => ok,
        Err(errors) => {
            let (tx, _) = begin(&state, &ctx, id).await?;
            drop(tx);
            let retry = Retry { errors, ..retry };
            return detail_page(&state, &ctx, id, &RangeQuery::default(), retry, StatusCode::UNPROCESSABLE_ENTITY)
                .await;
        }
    };
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.channel_added", "channels", retry, move |tx| {
        Box::pin(async move { app::live_codes::add_channel(tx, &p, id, &key, &name).await })
    })
    .await
}

async fn delete_channel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, cid)): Path<(i64, i64)>,
    body: Bytes,
) -> AppResult<Response> {
    if !confirm::given(&body) {
        let (mut tx, c) = begin(&state, &ctx, id).await?;
        let ch = app::live_codes::channel_of(&mut tx, id, ChannelRef::Id(cid)).await?;
        tx.rollback().await?;
        let action = format!("/live-codes/{id}/channels/{cid}/delete");
        return ask(&ctx, &c, &ch.key, "live_codes.channel_delete_confirm", &action, "live_codes.delete").await;
    }
    let p = ctx.principal.clone();
    change(&state, &ctx, id, "live_codes.channel_deleted", "channels", Retry::default(), move |tx| {
        Box::pin(async move { app::live_codes::delete_channel(tx, &p, id, ChannelRef::Id(cid)).await })
    })
    .await
}

// ---------------------------------------------------------------- QR downloads

#[derive(Deserialize, Default)]
struct QrQuery {
    size: Option<String>,
    ch: Option<String>,
}

/// What a QR download encodes, and the file name it is saved under (without extension).
async fn qr_subject(state: &AppState, ctx: &Ctx, id: i64, ch: &Option<String>) -> AppResult<(String, String)> {
    let mut conn = state.db.acquire().await?;
    let c = app::live_codes::load(&mut conn, &ctx.principal, id).await?;
    match non_empty(ch) {
        None => Ok((public_link(state, &c.slug, None), format!("live-code-{}", c.slug))),
        Some(key) => {
            let channels = live_codes::channels(&mut conn, id).await?;
            let ch = channels.iter().find(|x| x.key == key).ok_or(AppError::NotFound)?;
            Ok((public_link(state, &c.slug, Some(&ch.key)), format!("live-code-{}-{}", c.slug, ch.key)))
        }
    }
}

fn download(body: impl Into<axum::body::Body>, content_type: &'static str, file_name: &str) -> Response {
    let mut r = (StatusCode::OK, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    // Slugs and channel keys are [A-Za-z0-9_-]: the name needs no quoting beyond the quotes.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// `?size=` in pixels: 256 to 2048, 512 when not given; anything else is refused (422).
fn qr_size(s: &Option<String>) -> AppResult<u32> {
    match non_empty(s) {
        None => Ok(QR_DEFAULT),
        Some(s) => {
            s.parse::<u32>().ok().filter(|n| (QR_MIN..=QR_MAX).contains(n)).ok_or_else(|| {
                AppError::Unprocessable(format!("size must be a whole number from {QR_MIN} to {QR_MAX}"))
            })
        }
    }
}

async fn qr_png(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<QrQuery>,
) -> AppResult<Response> {
    let size = qr_size(&q.size)?;
    let (url, name) = qr_subject(&state, &ctx, id, &q.ch).await?;
    let png = tokio::task::spawn_blocking(move || qr::render_png(&url, size))
        .await
        .map_err(|e| AppError::Other(e.into()))?
        .ok_or_else(|| AppError::Other(anyhow::anyhow!("QR code could not be rendered")))?;
    Ok(download(png, "image/png", &format!("{name}-{size}.png")))
}

async fn qr_svg(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<QrQuery>,
) -> AppResult<Response> {
    let (url, name) = qr_subject(&state, &ctx, id, &q.ch).await?;
    let svg = qr::render_svg(&url).ok_or_else(|| AppError::Other(anyhow::anyhow!("QR code could not be rendered")))?;
    Ok(download(svg, "image/svg+xml", &format!("{name}.svg")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_defaults_to_the_last_14_days_and_is_bounded() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(range_of(&RangeQuery::default(), today), (d("2026-03-07"), d("2026-03-20")));
        let q = RangeQuery { from: Some("2026-03-10".into()), to: Some("2026-03-01".into()) };
        assert_eq!(range_of(&q, today), (d("2026-03-01"), d("2026-03-10")), "swapped");
        let q = RangeQuery { from: Some("2020-01-01".into()), to: Some("nonsense".into()) };
        assert_eq!(range_of(&q, today).1, today);
        assert_eq!(range_of(&q, today).0, today - Duration::days(MAX_DAYS - 1));
    }

    #[test]
    fn qr_sizes_outside_256_to_2048_are_refused() {
        assert_eq!(qr_size(&None).unwrap(), 512);
        assert_eq!(qr_size(&Some("2048".into())).unwrap(), 2048);
        assert!(qr_size(&Some("255".into())).is_err());
        assert!(qr_size(&Some("4096".into())).is_err());
        assert!(qr_size(&Some("big".into())).is_err());
    }
}
