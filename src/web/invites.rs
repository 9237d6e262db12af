//! Invite campaigns (任务宝) in the admin: the list, create and edit (stages one per line), a
//! campaign's page with its leaderboard, and the invite records with filters, review decisions
//! and a CSV export — the same use cases as `/api/v1/campaigns` and `/api/v1/invites`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::invites as app;
use crate::domain::group::{local_input_value, parse_instant};
use crate::domain::invite::{CampaignRaw, CampaignSpec, CampaignStatus, Decision, InviteState, Stage};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::invites::{self as db, CampaignRow, LeaderRow, RecordFilter, RecordRow};
use crate::AppState;

const PAGE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/campaigns", get(list).post(create))
        .route("/campaigns/new", get(new))
        .route("/campaigns/{id}", get(detail).post(update))
        .route("/campaigns/{id}/edit", get(edit))
        .route("/invites", get(records))
        .route("/invites.csv", get(records_csv))
        .route("/invites/{id}/decision", post(decide).get(back))
}

// ---------------------------------------------------------------- campaigns

#[derive(Template)]
#[template(path = "campaigns/list.html")]
struct ListPage {
    l: Layout,
    campaigns: Vec<CampaignRow>,
    can_write: bool,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let scope = ctx.principal.group_filter();
    let campaigns = db::list(&mut conn, scope.as_deref()).await?;
    drop(conn);
    let page = ListPage {
        l: ctx.layout("invites.title", "campaigns").await?,
        campaigns,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}

/// The form as typed.
#[derive(Debug, Clone, Default)]
struct CampaignForm {
    name: String,
    group_ids: Vec<i64>,
    live_code_slug: String,
    /// The time window as `datetime-local` values in the display time zone.
    starts_at: String,
    ends_at: String,
    status: String,
    hold_days: String,
    rejoin_days: String,
    stages: String,
    level2_points: String,
    poster_template_id: String,
    reply_progress: String,
    reply_stage: String,
}

/// Reads the form (`group_ids` repeated, one per checked group).
fn parse_form(body: &[u8]) -> CampaignForm {
    let mut f = CampaignForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.into_owned();
        match &*k {
            "name" => f.name = v,
            "group_ids" => {
                if let Ok(id) = v.parse() {
                    f.group_ids.push(id);
                }
            }
            "live_code_slug" => f.live_code_slug = v,
            "starts_at" => f.starts_at = v,
            "ends_at" => f.ends_at = v,
            "status" => f.status = v,
            "hold_days" => f.hold_days = v,
            "rejoin_days" => f.rejoin_days = v,
            "stages" => f.stages = v,
            "level2_points" => f.level2_points = v,
            "poster_template_id" => f.poster_template_id = v,
            "reply_progress" => f.reply_progress = v,
            "reply_stage" => f.reply_stage = v,
            _ => {}
        }
    }
    f
}

impl CampaignForm {
    fn of(c: &CampaignRow, tz: chrono_tz::Tz) -> CampaignForm {
        let local =
            |at: Option<chrono::DateTime<chrono::Utc>>| at.map(|a| local_input_value(a, tz)).unwrap_or_default();
        CampaignForm {
            name: c.name.clone(),
            group_ids: c.group_ids.clone(),
            live_code_slug: c.live_code_slug.clone().unwrap_or_default(),
            starts_at: local(c.starts_at),
            ends_at: local(c.ends_at),
            status: c.status.as_str().to_string(),
            hold_days: c.hold_days.to_string(),
            rejoin_days: c.rejoin_days.to_string(),
            stages: c
                .stages
                .0
                .iter()
                .map(|s| match &s.tag {
                    Some(t) => format!("{},{},{t}", s.invites, s.points),
                    None => format!("{},{}", s.invites, s.points),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            level2_points: c.level2_points.to_string(),
            poster_template_id: c.poster_template_id.map(|t| t.to_string()).unwrap_or_default(),
            reply_progress: c.reply_progress.clone(),
            reply_stage: c.reply_stage.clone(),
        }
    }

    /// The form as the domain's raw campaign; numbers that are not numbers and times that are
    /// not times (read in the display zone `tz`) are field errors.
    fn raw(&self, tz: chrono_tz::Tz) -> Result<CampaignRaw, FieldErrors> {
        let mut fe = FieldErrors::new();
        let mut instant = |field: &str, v: &str| match v.trim() {
            "" => None,
            v => parse_instant(v, tz).or_else(|| {
                fe.add(field, "error.datetime");
                None
            }),
        };
        let starts_at = instant("starts_at", &self.starts_at);
        let ends_at = instant("ends_at", &self.ends_at);
        let mut number = |field: &str, v: &str| -> Option<i64> {
            let v = v.trim();
            if v.is_empty() {
                return None;
            }
            v.parse().map_err(|_| fe.add(field, "error.number_range")).ok()
        };
        let hold_days = number("hold_days", &self.hold_days);
        let rejoin_days = number("rejoin_days", &self.rejoin_days);
        let level2_points = number("level2_points", &self.level2_points);
        let poster_template_id = number("poster_template_id", &self.poster_template_id);
        let mut stages = Vec::new();
        for line in self.stages.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let parts: Vec<&str> = line.split([',', '，']).map(str::trim).collect();
            let parsed = match parts.as_slice() {
                [i, p] => {
                    i.parse().ok().zip(p.parse().ok()).map(|(invites, points)| Stage { invites, points, tag: None })
                }
                [i, p, t] => i.parse().ok().zip(p.parse().ok()).map(|(invites, points)| Stage {
                    invites,
                    points,
                    tag: Some(t.to_string()),
                }),
                _ => None,
            };
            match parsed {
                Some(s) => stages.push(s),
                None => {
                    fe.add("stages", "invites.error.stage_line");
                    break;
                }
            }
        }
        if !fe.is_empty() {
            return Err(fe);
        }
        Ok(CampaignRaw {
            name: self.name.clone(),
            group_ids: self.group_ids.clone(),
            live_code_slug: self.live_code_slug.clone(),
            starts_at,
            ends_at,
            status: Some(self.status.clone()),
            hold_days,
            rejoin_days,
            stages,
            level2_points,
            poster_template_id,
            reply_progress: self.reply_progress.clone(),
            reply_stage: self.reply_stage.clone(),
        })
    }
}

#[derive(Template)]
#[template(path = "campaigns/form.html")]
struct FormPage {
    l: Layout,
    id: Option<i64>,
    form: CampaignForm,
    errors: FieldErrors,
    groups: Vec<(i64, String)>,
    statuses: [CampaignStatus; 3],
}

impl FormPage {
    fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/campaigns/{id}"),
            None => "/campaigns".to_string(),
        }
    }
    fn checked(&self, id: &i64) -> bool {
        self.form.group_ids.contains(id)
    }
    /// "Times are in 北京时间 …": the display zone the window is typed in.
    fn window_hint(&self) -> String {
        self.l.tr.f("inve2e.window_hint", &[("tz", &self.l.time.label())])
    }
}

async fn form_page(
    state: &AppState,
    ctx: &Ctx,
    id: Option<i64>,
    form: CampaignForm,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let scope = ctx.principal.group_filter();
    let groups = crate::store::groups::names(&mut conn, scope.as_deref()).await?;
    drop(conn);
    let title = if id.is_some() { "invites.edit" } else { "invites.new" };
    let page =
        FormPage { l: ctx.layout(title, "campaigns").await?, id, form, errors, groups, statuses: CampaignStatus::ALL };
    render(status, &page)
}

async fn new(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = CampaignForm {
        hold_days: "3".into(),
        rejoin_days: "30".into(),
        level2_points: "0".into(),
        status: "active".into(),
        ..CampaignForm::default()
    };
    form_page(&state, &ctx, None, form, FieldErrors::new(), StatusCode::OK).await
}

async fn edit(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let mut conn = state.db.acquire().await?;
    let c = app::get(&mut conn, &ctx.principal, id).await?;
    drop(conn);
    form_page(&state, &ctx, Some(id), CampaignForm::of(&c, ctx.time.tz), FieldErrors::new(), StatusCode::OK).await
}

/// Saves the form through `app::invites::create` or `update`; bad input re-renders it (422).
async fn save(state: &AppState, ctx: &Ctx, id: Option<i64>, body: &[u8]) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let form = parse_form(body);
    let spec = match form.raw(ctx.time.tz).and_then(CampaignSpec::try_from) {
        Ok(s) => s,
        Err(errors) => return form_page(state, ctx, id, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let mut tx = state.db.begin().await?;
    let done = match id {
        None => app::create(&mut tx, &ctx.principal, &spec).await,
        Some(id) => app::update(&mut tx, &ctx.principal, id, &spec).await,
    };
    let row = match done {
        Ok(d) => d.commit(tx, state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return form_page(state, ctx, id, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", if id.is_some() { "invites.updated" } else { "invites.created" }).await?;
    Ok(redirect(&format!("/campaigns/{}", row.id)))
}

async fn create(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> AppResult<Response> {
    save(&state, &ctx, None, &body).await
}

async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    save(&state, &ctx, Some(id), &body).await
}

#[derive(Template)]
#[template(path = "campaigns/detail.html")]
struct DetailPage {
    l: Layout,
    c: CampaignRow,
    leaders: Vec<LeaderRow>,
    can_write: bool,
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let c = app::get(&mut conn, &ctx.principal, id).await?;
    let leaders = db::leaderboard(&mut conn, id, 100).await?;
    drop(conn);
    let page = DetailPage {
        l: ctx.layout_titled(c.name.clone(), "campaigns").await?,
        c,
        leaders,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- records

#[derive(Deserialize, Default)]
struct RecordQuery {
    campaign: Option<String>,
    inviter: Option<String>,
    state: Option<String>,
    before: Option<i64>,
}

impl RecordQuery {
    fn filter(&self, limit: i64) -> RecordFilter {
        let id = |s: &Option<String>| s.as_deref().and_then(|v| v.trim().parse::<i64>().ok()).filter(|v| *v > 0);
        RecordFilter {
            campaign: id(&self.campaign),
            inviter: id(&self.inviter),
            state: self.state.as_deref().and_then(InviteState::parse),
            before: self.before.filter(|b| *b > 0),
            limit,
        }
    }
}

#[derive(Template)]
#[template(path = "campaigns/invites.html")]
struct RecordsPage {
    l: Layout,
    f: RecordFilter,
    campaigns: Vec<CampaignRow>,
    records: Vec<RecordRow>,
    states: [InviteState; 6],
    older: Option<String>,
    csv: String,
    can_write: bool,
}

impl RecordsPage {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(c) = self.f.campaign {
            q.push(format!("campaign={c}"));
        }
        if let Some(i) = self.f.inviter {
            q.push(format!("inviter={i}"));
        }
        if let Some(s) = self.f.state {
            q.push(format!("state={}", s.as_str()));
        }
        q.join("&")
    }
    fn is_campaign(&self, id: &i64) -> bool {
        self.f.campaign == Some(*id)
    }
    fn is_state(&self, s: &InviteState) -> bool {
        self.f.state == Some(*s)
    }
    fn inviter_value(&self) -> String {
        self.f.inviter.map(|i| i.to_string()).unwrap_or_default()
    }
    fn reviewable(&self, r: &RecordRow) -> bool {
        self.can_write && r.state == InviteState::Flagged
    }
    fn rejectable(&self, r: &RecordRow) -> bool {
        self.can_write && matches!(r.state, InviteState::Pending | InviteState::Confirmed)
    }
}

async fn records(State(state): State<AppState>, ctx: Ctx, Query(q): Query<RecordQuery>) -> AppResult<Response> {
    let f = q.filter(PAGE);
    let mut conn = state.db.acquire().await?;
    let scope = ctx.principal.group_filter();
    let records = db::records(&mut conn, &f, scope.as_deref()).await?;
    let campaigns = db::list(&mut conn, scope.as_deref()).await?;
    drop(conn);
    let mut page = RecordsPage {
        l: ctx.layout("invites.records", "campaigns").await?,
        f,
        campaigns,
        records,
        states: InviteState::ALL,
        older: None,
        csv: String::new(),
        can_write: ctx.principal.can_write(),
    };
    let query = page.query();
    page.csv = if query.is_empty() { "/invites.csv".into() } else { format!("/invites.csv?{query}") };
    if page.records.len() as i64 == PAGE {
        if let Some(last) = page.records.last() {
            let sep = if query.is_empty() { "" } else { "&" };
            page.older = Some(format!("/invites?{query}{sep}before={}", last.id));
        }
    }
    render(StatusCode::OK, &page)
}

/// The records as CSV (up to 100 000 rows, the list's filters), times in the display zone.
async fn records_csv(State(state): State<AppState>, ctx: Ctx, Query(q): Query<RecordQuery>) -> AppResult<Response> {
    use crate::domain::csv_import::neutralise;
    let f = RecordFilter { before: None, ..q.filter(100_000) };
    let mut conn = state.db.acquire().await?;
    let scope = ctx.principal.group_filter();
    let rows = db::records(&mut conn, &f, scope.as_deref()).await?;
    drop(conn);
    let mut w = csv::Writer::from_writer(crate::domain::csv_import::BOM.to_vec());
    let io = |e: csv::Error| AppError::Other(e.into());
    let tz = ctx.time.label();
    w.write_record([
        "id".to_string(),
        "campaign_id".into(),
        "inviter_member_id".into(),
        "inviter".into(),
        "invitee_member_id".into(),
        "invitee".into(),
        "state".into(),
        "reason".into(),
        "source".into(),
        format!("joined_at ({tz})"),
        format!("hold_until ({tz})"),
    ])
    .map_err(io)?;
    for r in rows {
        w.write_record([
            r.id.to_string(),
            r.campaign_id.to_string(),
            r.inviter_member_id.to_string(),
            neutralise(r.inviter_name),
            r.invitee_member_id.to_string(),
            neutralise(r.invitee_name),
            r.state.as_str().to_string(),
            r.reason.map(|x| x.as_str().to_string()).unwrap_or_default(),
            r.source.as_str().to_string(),
            ctx.time.at(r.joined_at),
            ctx.time.at(r.hold_until),
        ])
        .map_err(io)?;
    }
    let body = w.into_inner().map_err(|e| AppError::Other(anyhow::anyhow!("csv: {e}")))?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"invites.csv\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[derive(Deserialize)]
struct DecisionForm {
    decision: String,
}

async fn decide(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<DecisionForm>,
) -> AppResult<Response> {
    let decision = match f.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(AppError::BadRequest("decision must be approve or reject".into())),
    };
    let mut tx = state.db.begin().await?;
    app::decide(&mut tx, &state.config, &ctx.principal, id, decision).await?.commit(tx, &state).await?;
    ctx.flash("success", "invites.decided").await?;
    Ok(redirect("/invites"))
}

/// A refreshed or bookmarked decision URL shows the records.
async fn back() -> Response {
    redirect("/invites")
}
