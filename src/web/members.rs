//! Member pages: list, detail (with activity, check-ins and points), manual add and edit,
//! memberships, CSV import and export.

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::zone::DisplayTz;
use super::{non_empty, redirect, render, total_label, upload, CursorPager};
use crate::app;
use crate::config::Config;
use crate::domain::csv_import;
use crate::domain::member::{MemberRaw, MemberRole};
use crate::domain::{filter_text, Platform};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::members::{self, MemberRow, MembershipRow};
use crate::AppState;

const PAGE_SIZE: i64 = 50;

pub fn router(cfg: &Config) -> Router<AppState> {
    let upload_limit = DefaultBodyLimit::max(cfg.http.max_upload_bytes + super::MULTIPART_OVERHEAD);
    Router::new()
        .route("/members", get(list))
        .route("/members/new", get(new_form).post(create))
        .route("/members/import", get(import_form).post(import).layer(upload_limit))
        .route("/members/export.csv", get(export))
        .route("/members/import/template.csv", get(import_template))
        .route("/members/{id}", get(detail))
        .route("/members/{id}/edit", get(edit_form).post(update))
        .route("/members/{id}/delete", post(delete))
        .route("/members/{id}/memberships", post(add_membership))
        .route("/members/{id}/memberships/{group_id}/leave", post(leave))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    platform: Option<String>,
    group: Option<String>,
    tag: Option<String>,
    /// Continue after / before the member with this id (the pager's links).
    after: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "members/list.html")]
struct ListPage {
    l: Layout,
    members: Vec<MemberRow>,
    pager: CursorPager,
    errors: FieldErrors,
    q: String,
    platform: String,
    group: String,
    tag: String,
    platforms: [Platform; 6],
    groups: Vec<(i64, String)>,
    can_write: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx, Query(q): Query<ListQuery>) -> AppResult<Response> {
    let mut errors = FieldErrors::new();
    let search = filter_text(q.q.as_deref(), "q", &mut errors);
    let tag = filter_text(q.tag.as_deref(), "tag", &mut errors);
    let platform = non_empty(&q.platform).and_then(|p| Platform::parse(&p));
    let group_id = non_empty(&q.group).and_then(|g| g.parse::<i64>().ok());
    let id_of = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<i64>().ok());
    let seek = match (id_of(&q.after), id_of(&q.before)) {
        (Some(id), _) => members::Seek::After(id),
        (None, Some(id)) => members::Seek::Before(id),
        (None, None) => members::Seek::First,
    };
    let scope = ctx.scope();
    let f = members::Filter { q: search, platform, group_id, tag, scope: scope.clone() };
    let mut conn = state.db.acquire().await?;
    let groups = crate::store::groups::names(&mut conn, scope.as_deref()).await?;
    // An over-long filter is answered with its message and no search at all.
    let (rows, prev, next, total) = if errors.is_empty() {
        let p = members::page(&mut conn, &f, seek, PAGE_SIZE).await?;
        // A list that fits on one page counts itself.
        let total = if !p.has_prev && !p.has_next {
            crate::store::Total::Exact(p.rows.len() as i64)
        } else {
            members::total(&mut conn, &f).await?
        };
        let prev = p.rows.first().filter(|_| p.has_prev).map(|m| m.id);
        let next = p.rows.last().filter(|_| p.has_next).map(|m| m.id);
        (p.rows, prev, next, total_label(&ctx.tr, total))
    } else {
        (Vec::new(), None, None, String::new())
    };
    drop(conn);
    let (qs, ps, gs, ts) = (
        q.q.as_deref().map(str::trim).unwrap_or_default().to_string(),
        platform.map(|p| p.as_str().to_string()).unwrap_or_default(),
        group_id.map(|g| g.to_string()).unwrap_or_default(),
        q.tag.as_deref().map(str::trim).unwrap_or_default().to_string(),
    );
    let pager =
        CursorPager::new("/members", &[("q", &qs), ("platform", &ps), ("group", &gs), ("tag", &ts)], prev, next, total);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = ListPage {
        l: ctx.layout("members.title", "members").await?,
        members: rows,
        pager,
        errors,
        q: qs,
        platform: ps,
        group: gs,
        tag: ts,
        platforms: Platform::ALL,
        groups,
        can_write: ctx.principal.can_write(),
    };
    render(status, &page)
}

#[derive(Template)]
#[template(path = "members/form.html")]
struct FormPage {
    l: Layout,
    member_id: Option<i64>,
    raw: MemberRaw,
    errors: FieldErrors,
    platforms: [Platform; 6],
    groups: Vec<(i64, String)>,
    roles: [MemberRole; 3],
    /// A scoped operator must put a new member into one of their groups.
    group_required: bool,
}

async fn form_page(
    state: &AppState,
    ctx: &Ctx,
    member_id: Option<i64>,
    raw: MemberRaw,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let groups = crate::store::groups::names(&mut conn, scope.as_deref()).await?;
    drop(conn);
    let l = match member_id {
        Some(_) => ctx.layout_titled(format!("{} · {}", ctx.tr.t("members.edit"), raw.display_name), "members").await?,
        None => ctx.layout("members.new", "members").await?,
    };
    let page = FormPage {
        l,
        member_id,
        raw,
        errors,
        platforms: Platform::ALL,
        groups,
        roles: MemberRole::ALL,
        group_required: scope.is_some(),
    };
    render(status, &page)
}

async fn new_form(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let raw = MemberRaw { platform: Platform::Wechat.as_str().into(), ..MemberRaw::default() };
    form_page(&state, &ctx, None, raw, FieldErrors::new(), StatusCode::OK).await
}

async fn create(State(state): State<AppState>, ctx: Ctx, Form(raw): Form<MemberRaw>) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(errors) => return form_page(&state, &ctx, None, raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let mut tx = state.db.begin().await?;
    let id = match app::members::create(&mut tx, &ctx.principal, &spec).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&state, &ctx, None, raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "members.created").await?;
    Ok(redirect(&format!("/members/{id}")))
}

async fn load(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<MemberRow> {
    let mut conn = state.db.acquire().await?;
    app::members::load(&mut conn, &ctx.principal, id).await
}

#[derive(Template)]
#[template(path = "members/detail.html")]
struct DetailPage {
    l: Layout,
    m: MemberRow,
    memberships: Vec<MembershipRow>,
    groups: Vec<(i64, String)>,
    roles: [MemberRole; 3],
    can_write: bool,
    /// Deleting needs every group (a scoped operator's "delete" would reach outside its scope).
    can_delete: bool,
    activity: super::checkins::Activity,
    checkins: Vec<super::checkins::MemberCheckin>,
    points: super::points::MemberPoints,
    /// Moderation: the member's actions and warnings (`moderation/member_warnings.html`).
    rows: Vec<crate::store::moderation::ActionRow>,
    /// The member's answers to entry questionnaires (`questionnaire/member_answers.html`).
    answers: Vec<crate::store::questionnaire::MemberAnswer>,
    now: chrono::DateTime<chrono::Utc>,
    here: String,
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    detail_page(&state, &ctx, id, None, StatusCode::OK).await
}

/// The member page; `adjust` brings back a refused points adjustment with its messages.
pub(super) async fn detail_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    adjust: Option<super::points::AdjustRetry>,
    status: StatusCode,
) -> AppResult<Response> {
    let m = load(state, ctx, id).await?;
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let memberships = members::memberships(&mut conn, id, scope.as_deref()).await?;
    let groups = crate::store::groups::names(&mut conn, scope.as_deref()).await?;
    let today = chrono::Utc::now().with_timezone(&state.config.scan.stats_timezone.tz()).date_naive();
    let activity = super::checkins::member_activity(&mut conn, id, scope.as_deref(), today).await?;
    let checkins = super::checkins::member_checkins(&mut conn, id, scope.as_deref()).await?;
    let points = super::points::member_points(&mut conn, &ctx.tr, id, adjust).await?;
    let rows = super::moderation::member_actions(&mut conn, ctx, id).await?;
    let answers = crate::store::questionnaire::answers_of_member(&mut conn, id, scope.as_deref()).await?;
    drop(conn);
    let page = DetailPage {
        l: ctx.layout_titled(m.display_name.clone(), "members").await?,
        m,
        memberships,
        groups,
        roles: MemberRole::ALL,
        can_write: ctx.principal.can_write(),
        can_delete: ctx.principal.can_write() && scope.is_none(),
        activity,
        checkins,
        points,
        rows,
        answers,
        now: chrono::Utc::now(),
        here: format!("/members/{id}"),
    };
    render(status, &page)
}

async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let m = load(&state, &ctx, id).await?;
    let raw = MemberRaw {
        platform: m.platform.as_str().to_string(),
        external_user_id: m.external_user_id,
        display_name: m.display_name,
        tags: m.tags.join(", "),
        notes: m.notes,
        ..MemberRaw::default()
    };
    form_page(&state, &ctx, Some(id), raw, FieldErrors::new(), StatusCode::OK).await
}

async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<MemberRaw>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    load(&state, &ctx, id).await?;
    let raw = MemberRaw { group_id: String::new(), role: String::new(), ..raw };
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(errors) => return form_page(&state, &ctx, Some(id), raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let mut tx = state.db.begin().await?;
    match app::members::update(&mut tx, &ctx.principal, id, &spec).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(&state, &ctx, Some(id), raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    }
    ctx.flash("success", "members.saved").await?;
    Ok(redirect(&format!("/members/{id}")))
}

/// Deletes (anonymises) a member after asking (see `web::confirm`).
async fn delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let m = load(&state, &ctx, id).await?;
    if ctx.scope().is_some() {
        return Err(AppError::Forbidden);
    }
    if !super::confirm::given(&body) {
        let question =
            ctx.tr.f("confirm.about", &[("name", &m.display_name), ("question", &ctx.tr.t("members.delete_confirm"))]);
        let action = format!("/members/{id}/delete");
        let cancel = format!("/members/{id}");
        let ask = super::confirm::Ask {
            nav: "members",
            question,
            action: &action,
            button_key: "members.delete",
            cancel: &cancel,
        };
        return super::confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    app::members::delete(&mut tx, &ctx.principal, id).await?.commit(tx, &state).await?;
    ctx.flash("success", "members.deleted").await?;
    Ok(redirect("/members"))
}

#[derive(Deserialize)]
struct MembershipForm {
    #[serde(default)]
    group_id: String,
    #[serde(default)]
    role: String,
}

async fn add_membership(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<MembershipForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let group_id: i64 = f.group_id.trim().parse().map_err(|_| AppError::BadRequest("group_id".into()))?;
    let role = MemberRole::parse(&f.role).unwrap_or_default();
    let mut tx = state.db.begin().await?;
    app::members::join(&mut tx, &ctx.principal, id, group_id, role).await?.commit(tx, &state).await?;
    ctx.flash("success", "members.saved").await?;
    Ok(redirect(&format!("/members/{id}")))
}

async fn leave(State(state): State<AppState>, ctx: Ctx, Path((id, group_id)): Path<(i64, i64)>) -> AppResult<Response> {
    let mut tx = state.db.begin().await?;
    app::members::leave(&mut tx, &ctx.principal, id, group_id).await?.commit(tx, &state).await?;
    ctx.flash("success", "members.saved").await?;
    Ok(redirect(&format!("/members/{id}")))
}

// ---- CSV import / export ----

#[derive(Template)]
#[template(path = "members/import.html")]
struct ImportPage {
    l: Layout,
    columns: [&'static str; 7],
    /// After an upload: the outcome.
    result: Option<ImportResult>,
    file_error: Option<&'static str>,
    strict: bool,
}

struct ImportResult {
    created: usize,
    updated: usize,
    /// True when nothing was written because of errors in strict mode.
    rolled_back: bool,
    errors: Vec<(u64, String)>,
}

async fn import_form(ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let page = ImportPage {
        l: ctx.layout("import.title", "members").await?,
        columns: csv_import::COLUMNS,
        result: None,
        file_error: None,
        strict: false,
    };
    render(StatusCode::OK, &page)
}

async fn import(State(state): State<AppState>, ctx: Ctx, mp: Multipart) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = upload::read(mp, state.config.http.max_upload_bytes).await?;
    let strict = form.text("mode") == "strict";
    let page = |l, result, file_error| ImportPage { l, columns: csv_import::COLUMNS, result, file_error, strict };
    let file = match form.file("file") {
        None => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &page(ctx.layout("import.title", "members").await?, None, Some("error.file_empty")),
            )
        }
        Some(f) if f.too_large => {
            return render(
                StatusCode::PAYLOAD_TOO_LARGE,
                &page(ctx.layout("import.title", "members").await?, None, Some("error.file_too_large")),
            )
        }
        Some(f) => f,
    };
    let parsed = match csv_import::parse(&file.bytes) {
        Ok(p) => p,
        Err(key) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &page(ctx.layout("import.title", "members").await?, None, Some(key)),
            )
        }
    };
    let mut tx = state.db.begin().await?;
    let done = app::members::import(&mut tx, &ctx.principal, &parsed.rows, parsed.errors, strict, &file.file_name)
        .await?
        .commit(tx, &state)
        .await?;
    let app::members::Imported { created, updated, rolled_back, errors } = done;
    let lang = ctx.tr.lang();
    let result = ImportResult {
        created,
        updated,
        rolled_back,
        errors: errors.iter().map(|e| (e.line, e.describe(lang))).collect(),
    };
    let status = if result.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(status, &page(ctx.layout("import.title", "members").await?, Some(result), None))
}

/// An empty members CSV to fill in: a BOM (so Excel keeps Chinese text) and the column names
/// in the operator's language, which the import reads back.
async fn import_template(ctx: Ctx) -> AppResult<Response> {
    let mut w = csv::Writer::from_writer(csv_import::BOM.to_vec());
    let headers = csv_import::COLUMNS.iter().map(|c| ctx.tr.tk("import.template_headers", c));
    w.write_record(headers).map_err(|e| AppError::Other(e.into()))?;
    let body = w.into_inner().map_err(|e| AppError::Other(anyhow::anyhow!("csv: {e}")))?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"members-template.csv\""));
    Ok(resp)
}

/// Members per export part (one short query each).
const EXPORT_PART: i64 = 2000;

/// An export part as CSV (after the BOM and header line when `header` is given), and the id of
/// its last member. Times are written in `time`'s zone, which the header names.
fn write_part(
    header: Option<&[String]>,
    time: DisplayTz,
    rows: Vec<members::ExportRow>,
) -> Result<(Vec<u8>, Option<i64>), csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(h) = header {
        // A UTF-8 byte order mark: without it Excel reads the file as the local code page (GBK
        // on a Chinese Windows) and every Chinese name turns into mojibake.
        w = csv::Writer::from_writer(csv_import::BOM.to_vec());
        w.write_record(h)?;
    }
    let mut last = None;
    for r in rows {
        last = Some(r.member_id);
        w.write_record([
            r.platform.as_str().to_string(),
            csv_import::neutralise(r.external_user_id),
            csv_import::neutralise(r.display_name),
            r.group_id.map(|g| g.to_string()).unwrap_or_default(),
            r.role.map(|role| role.as_str().to_string()).unwrap_or_default(),
            csv_import::neutralise(r.tags.join("|")),
            csv_import::neutralise(r.notes),
            r.balance.to_string(),
            r.last_active_at.map(|at| time.plain(at)).unwrap_or_default(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok((bytes, last))
}

/// Every member in scope as CSV, one line per open membership; re-importable as is.
///
/// Streamed: the first part is read before the answer starts (so a failure is still an error
/// page), then a task reads the rest part by part, in member id order, and sends each as it is
/// written, never more than a few parts ahead of the client. Memory stays constant however many
/// members there are, and the request timeout (which ends when the answer starts) does not cut
/// a long download. Members added while an export runs appear in it when their id comes later.
async fn export(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let first = members::export_part(&mut conn, scope.as_deref(), 0, EXPORT_PART).await?;
    drop(conn);
    let time = ctx.time;
    let header: Vec<String> = csv_import::COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain([csv_import::BALANCE.to_string(), format!("{} ({})", csv_import::LAST_ACTIVE, time.name())])
        .collect();
    let (head, mut after) = write_part(Some(&header), time, first).map_err(|e| AppError::Other(e.into()))?;
    let (tx, body) = super::channel_body();
    let db = state.db.clone();
    tokio::spawn(async move {
        if tx.send(Ok(head.into())).await.is_err() {
            return;
        }
        while let Some(last) = after {
            let part = match db.acquire().await {
                Ok(mut conn) => members::export_part(&mut conn, scope.as_deref(), last, EXPORT_PART).await,
                Err(e) => Err(e),
            };
            let chunk = part.map_err(std::io::Error::other).and_then(|rows| {
                let (bytes, next) = write_part(None, time, rows).map_err(std::io::Error::other)?;
                after = next;
                Ok(bytes)
            });
            if let Err(e) = &chunk {
                tracing::error!(error = %e, "member export failed part-way");
            }
            let failed = chunk.is_err();
            if tx.send(chunk.map(Into::into)).await.is_err() || failed {
                return;
            }
        }
    });
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"members.csv\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
