//! Moderation pages: a rule set's moderation rules and ladder (`/rule-sets/{id}/moderation`,
//! one form per rule, one for the ladder), the action log with pardon and undo
//! (`/moderation`), and the warnings block of the member page. Every change goes through
//! `app::moderation`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render, safe_next};
use crate::app::moderation::{self as app, Moderation};
use crate::domain::moderation::{Ladder, ModerationRaw, Rule, RuleKind, RuleRaw};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::moderation::{ActionRow, Filter};
use crate::AppState;

const PAGE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/moderation", get(log))
        .route("/moderation/{id}/pardon", post(pardon).get(back_to_log))
        .route("/moderation/{id}/undo", post(undo).get(back_to_log))
        .route("/rule-sets/{id}/moderation", get(editor))
        .route("/rule-sets/{id}/moderation/ladder", post(save_ladder).get(back_to_editor))
        .route("/rule-sets/{id}/moderation/rules", post(add_rule).get(back_to_editor))
        .route("/rule-sets/{id}/moderation/rules/{rule_id}", post(save_rule).get(back_to_editor_of_rule))
        .route("/rule-sets/{id}/moderation/rules/{rule_id}/delete", post(delete_rule).get(back_to_editor_of_rule))
}

// ---------------------------------------------------------------- the log

#[derive(Deserialize, Default)]
struct LogQuery {
    group_id: Option<i64>,
    member_id: Option<i64>,
    kind: Option<String>,
    warnings: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "moderation/log.html")]
struct LogPage {
    l: Layout,
    rows: Vec<ActionRow>,
    kinds: [RuleKind; 7],
    kind: Option<RuleKind>,
    group_id: Option<i64>,
    warnings_only: bool,
    can_write: bool,
    now: chrono::DateTime<chrono::Utc>,
    here: String,
    older: Option<String>,
}

impl LogPage {
    fn is_kind(&self, k: &RuleKind) -> bool {
        self.kind == Some(*k)
    }
}

/// What the bot did, in words: "deleted · warned 2/4", "muted 1 hour".
pub fn did_text(l: &Layout, r: &ActionRow) -> String {
    let tr = &l.tr;
    let mut parts = Vec::new();
    if r.deleted {
        parts.push(tr.t("moderation.deleted").to_string());
    }
    match r.step.as_str() {
        "warn" => parts.push(format!("{} {}", tr.t("moderation.step.warn"), r.strike.unwrap_or(1))),
        "mute" => parts.push(format!(
            "{} {}",
            tr.t("moderation.step.mute"),
            crate::moderation::duration_words(r.mute_seconds.unwrap_or(0).max(0) as u32, tr.0)
        )),
        "kick" => parts.push(tr.t("moderation.step.kick").to_string()),
        _ => {}
    }
    if r.step != "warn" {
        if let Some(s) = r.strike {
            parts.push(format!("{} {s}", tr.t("moderation.warning")));
        }
    }
    parts.join(" · ")
}

async fn log(State(state): State<AppState>, ctx: Ctx, Query(q): Query<LogQuery>) -> AppResult<Response> {
    let kind = q.kind.as_deref().and_then(RuleKind::parse);
    let warnings_only = q.warnings.as_deref().is_some_and(|w| !w.is_empty());
    let f = Filter {
        group_id: q.group_id,
        member_id: q.member_id,
        rule_kind: kind,
        warnings_only,
        before: q.before.filter(|b| *b > 0),
        limit: PAGE,
        ..Filter::default()
    };
    let mut conn = state.db.acquire().await?;
    let rows = app::list(&mut conn, &ctx.principal, f).await?;
    drop(conn);
    let mut base = String::from("/moderation?");
    if let Some(g) = q.group_id {
        base.push_str(&format!("group_id={g}&"));
    }
    if let Some(m) = q.member_id {
        base.push_str(&format!("member_id={m}&"));
    }
    if let Some(k) = kind {
        base.push_str(&format!("kind={}&", k.as_str()));
    }
    if warnings_only {
        base.push_str("warnings=1&");
    }
    let older = (rows.len() as i64 == PAGE).then(|| rows.last().map(|r| format!("{base}before={}", r.id))).flatten();
    let page = LogPage {
        l: ctx.layout("moderation.log_title", "groups").await?,
        rows,
        kinds: RuleKind::ALL,
        kind,
        group_id: q.group_id,
        warnings_only,
        can_write: ctx.principal.can_write(),
        now: chrono::Utc::now(),
        here: base.trim_end_matches(['?', '&']).to_string(),
        older,
    };
    render(StatusCode::OK, &page)
}

async fn back_to_log() -> Response {
    redirect("/moderation")
}

#[derive(Deserialize, Default)]
struct BackForm {
    next: Option<String>,
}

async fn pardon(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<BackForm>,
) -> AppResult<Response> {
    change(&state, &ctx, id, f, false).await
}

async fn undo(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<BackForm>,
) -> AppResult<Response> {
    change(&state, &ctx, id, f, true).await
}

async fn change(state: &AppState, ctx: &Ctx, id: i64, f: BackForm, undo: bool) -> AppResult<Response> {
    let next = match f.next.as_deref() {
        Some(n) if !n.is_empty() => safe_next(Some(n)),
        _ => "/moderation".to_string(),
    };
    let mut tx = state.db.begin().await?;
    let done = if undo {
        app::undo(&mut tx, &state.config, &ctx.principal, id).await
    } else {
        app::pardon(&mut tx, &ctx.principal, id).await
    };
    match done {
        Ok(d) => {
            d.commit(tx, state).await?;
            ctx.flash("success", if undo { "moderation.undo_done" } else { "moderation.pardon_done" }).await?;
        }
        Err(AppError::Conflict(_)) if undo => {
            // Say why on the page: a QQ kick cannot be lifted, or it was undone meanwhile.
            let row = crate::store::moderation::get(&mut *state.db.acquire().await?, id).await?;
            let key = match row {
                Some(r) if r.step == "kick" && r.undone_at.is_none() => "moderation.error.no_unban",
                _ => "moderation.error.not_undoable",
            };
            ctx.flash("error", key).await?;
        }
        Err(AppError::Conflict(_)) => ctx.flash("error", "jobs.not_now").await?,
        Err(e) => return Err(e),
    }
    Ok(redirect(&next))
}

// ---------------------------------------------------------------- the rule-set editor

#[derive(Template)]
#[template(path = "moderation/editor.html")]
struct EditorPage {
    l: Layout,
    rule_set_id: i64,
    rule_set_name: String,
    rules: Vec<RuleView>,
    new_rule: RuleView,
    ladder: ModerationRaw,
    ladder_errors: FieldErrors,
    kinds: [RuleKind; 7],
    can_write: bool,
}

/// One rule's form: what was stored or typed, and its messages.
struct RuleView {
    id: i64,
    raw: RuleRaw,
    errors: FieldErrors,
}

impl RuleView {
    fn of(r: &Rule) -> RuleView {
        let num = |n: u32| if n == 0 { String::new() } else { n.to_string() };
        RuleView {
            id: r.id,
            raw: RuleRaw {
                kind: r.kind.as_str().into(),
                enabled: r.enabled.then(|| "on".into()),
                words: r.words.join("\n"),
                count: num(r.count),
                seconds: num(r.seconds),
                consecutive: num(r.consecutive),
                hours: num(r.hours),
                delete: r.delete.then(|| "on".into()),
                response: r.response_text(),
            },
            errors: FieldErrors::new(),
        }
    }

    fn blank() -> RuleView {
        RuleView {
            id: 0,
            raw: RuleRaw {
                kind: "links".into(),
                enabled: Some("on".into()),
                delete: Some("on".into()),
                response: "warn".into(),
                ..RuleRaw::default()
            },
            errors: FieldErrors::new(),
        }
    }

    fn is_kind(&self, k: &RuleKind) -> bool {
        self.raw.kind == k.as_str()
    }
    fn on(v: &Option<String>) -> bool {
        v.is_some()
    }
    fn enabled(&self) -> bool {
        Self::on(&self.raw.enabled)
    }
    fn deletes(&self) -> bool {
        Self::on(&self.raw.delete)
    }
    fn action(&self, rule_set_id: &i64) -> String {
        if self.id == 0 {
            format!("/rule-sets/{rule_set_id}/moderation/rules")
        } else {
            format!("/rule-sets/{rule_set_id}/moderation/rules/{}", self.id)
        }
    }
    fn dom(&self) -> String {
        if self.id == 0 {
            "new".into()
        } else {
            self.id.to_string()
        }
    }
}

fn ladder_raw(l: &Ladder) -> ModerationRaw {
    ModerationRaw { ladder: l.text(), warn_days: l.warn_days.to_string(), exempt_tags: l.exempt_tags.join(", ") }
}

/// What to show again after a refused form.
enum Retry {
    None,
    Rule(i64, RuleRaw, FieldErrors),
    Ladder(ModerationRaw, FieldErrors),
}

async fn editor_page(state: &AppState, ctx: &Ctx, id: i64, retry: Retry, status: StatusCode) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let set = crate::store::rule_sets::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let m = app::get(&mut conn, &ctx.principal, id).await?;
    drop(conn);
    let mut rules: Vec<RuleView> = m.rules.iter().map(RuleView::of).collect();
    let mut new_rule = RuleView::blank();
    let mut ladder = ladder_raw(&m.ladder);
    let mut ladder_errors = FieldErrors::new();
    match retry {
        Retry::None => {}
        Retry::Rule(0, raw, errors) => new_rule = RuleView { id: 0, raw, errors },
        Retry::Rule(rid, raw, errors) => {
            if let Some(v) = rules.iter_mut().find(|v| v.id == rid) {
                *v = RuleView { id: rid, raw, errors };
            }
        }
        Retry::Ladder(raw, errors) => {
            ladder = raw;
            ladder_errors = errors;
        }
    }
    let page = EditorPage {
        l: ctx.layout_titled(format!("{} · {}", set.name, ctx.tr.t("moderation.title")), "groups").await?,
        rule_set_id: id,
        rule_set_name: set.name,
        rules,
        new_rule,
        ladder,
        ladder_errors,
        kinds: RuleKind::ALL,
        can_write: app::may_write(&ctx.principal),
    };
    render(status, &page)
}

async fn editor(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    editor_page(&state, &ctx, id, Retry::None, StatusCode::OK).await
}

async fn back_to_editor(Path(id): Path<i64>) -> Response {
    redirect(&format!("/rule-sets/{id}/moderation"))
}

async fn back_to_editor_of_rule(Path((id, _)): Path<(i64, i64)>) -> Response {
    redirect(&format!("/rule-sets/{id}/moderation"))
}

/// Saves `m` through the use case; a refusal comes back as the field errors to show.
async fn save(state: &AppState, ctx: &Ctx, id: i64, m: Moderation) -> AppResult<Result<(), FieldErrors>> {
    let mut tx = state.db.begin().await?;
    match app::save(&mut tx, &ctx.principal, id, m).await {
        Ok(done) => {
            done.commit(tx, state).await?;
            ctx.flash("success", "moderation.saved").await?;
            Ok(Ok(()))
        }
        Err(AppError::Validation(mut e)) => {
            // Messages of `rules[i].field` belong to the one form shown.
            let keys: Vec<String> = e.0.keys().cloned().collect();
            for k in keys {
                if let Some(field) = k.split_once("].").map(|(_, f)| f).or_else(|| k.strip_prefix("ladder.")) {
                    e.rename(&k, field);
                }
            }
            Ok(Err(e))
        }
        Err(e) => Err(e),
    }
}

async fn current(state: &AppState, ctx: &Ctx, id: i64) -> AppResult<Moderation> {
    let mut conn = state.db.acquire().await?;
    app::get(&mut conn, &ctx.principal, id).await
}

async fn save_ladder(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<ModerationRaw>,
) -> AppResult<Response> {
    let mut m = current(&state, &ctx, id).await?;
    match Ladder::parse(&raw) {
        Ok(l) => m.ladder = l,
        Err(e) => return editor_page(&state, &ctx, id, Retry::Ladder(raw, e), StatusCode::UNPROCESSABLE_ENTITY).await,
    }
    match save(&state, &ctx, id, m).await? {
        Ok(()) => Ok(redirect(&format!("/rule-sets/{id}/moderation"))),
        Err(e) => editor_page(&state, &ctx, id, Retry::Ladder(raw, e), StatusCode::UNPROCESSABLE_ENTITY).await,
    }
}

async fn add_rule(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<RuleRaw>,
) -> AppResult<Response> {
    put_rule(state, ctx, id, 0, raw).await
}

async fn save_rule(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, rule_id)): Path<(i64, i64)>,
    Form(raw): Form<RuleRaw>,
) -> AppResult<Response> {
    put_rule(state, ctx, id, rule_id.max(1), raw).await
}

async fn put_rule(state: AppState, ctx: Ctx, id: i64, rule_id: i64, raw: RuleRaw) -> AppResult<Response> {
    let mut m = current(&state, &ctx, id).await?;
    let rule = match raw.parse(rule_id) {
        Ok(r) => r,
        Err(e) => {
            return editor_page(&state, &ctx, id, Retry::Rule(rule_id, raw, e), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    };
    if rule_id == 0 {
        m.rules.push(rule);
    } else {
        let Some(slot) = m.rules.iter_mut().find(|r| r.id == rule_id) else { return Err(AppError::NotFound) };
        *slot = rule;
    }
    match save(&state, &ctx, id, m).await? {
        Ok(()) => Ok(redirect(&format!("/rule-sets/{id}/moderation"))),
        Err(e) => editor_page(&state, &ctx, id, Retry::Rule(rule_id, raw, e), StatusCode::UNPROCESSABLE_ENTITY).await,
    }
}

async fn delete_rule(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, rule_id)): Path<(i64, i64)>,
) -> AppResult<Response> {
    let mut m = current(&state, &ctx, id).await?;
    let before = m.rules.len();
    m.rules.retain(|r| r.id != rule_id);
    if m.rules.len() == before {
        return Err(AppError::NotFound);
    }
    match save(&state, &ctx, id, m).await? {
        Ok(()) => Ok(redirect(&format!("/rule-sets/{id}/moderation"))),
        Err(_) => Err(AppError::Conflict("the remaining rules do not save".into())),
    }
}

// ---------------------------------------------------------------- the member page

/// A member's warnings (and other moderation actions) for the member page.
pub async fn member_actions(conn: &mut sqlx::PgConnection, ctx: &Ctx, member_id: i64) -> AppResult<Vec<ActionRow>> {
    let f = Filter { member_id: Some(member_id), limit: 50, ..Filter::default() };
    app::list(conn, &ctx.principal, f).await
}
