//! Automation pages: rule sets (list, one page per rule set with its welcome, keyword replies,
//! entry policy and attachments), a group's activity log, and the join-request queue. Thin
//! callers of `app::rule_sets` and `app::automation`, like `/api/v1/rule-sets`.

use askama::Template;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::automation::{self as queue, Decision};
use crate::app::rule_sets::{self as app, RuleSetDetail};
use crate::domain::automation::{
    EntryMode, EntryRaw, Fallback, KeywordRaw, MatchKind, RequestStatus, WelcomeRaw, BUILTIN_COMMANDS,
};
use crate::domain::rule_set::{Attachment, RuleSetRaw};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::automation::RequestRow;
use crate::store::bot_activity::ActivityRow;
use crate::store::rule_sets::RuleSetSummary;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rule-sets", get(list).post(create))
        .route("/rule-sets/{id}", get(show).post(update))
        .route("/rule-sets/{id}/delete", post(delete))
        .route("/rule-sets/{id}/welcome", post(set_welcome))
        .route("/rule-sets/{id}/keywords", post(add_keyword))
        .route("/rule-sets/{id}/keywords/{kid}/delete", post(delete_keyword))
        .route("/rule-sets/{id}/entry", post(set_entry))
        .route("/rule-sets/{id}/attach", post(attach))
        .route("/rule-sets/{id}/detach", post(detach))
        .route("/groups/{id}/activity", get(activity))
        .route("/join-requests", get(requests))
        .route("/join-requests/decide", post(decide))
}

/// The fields of an urlencoded form (repeated keys kept, `_csrf` left out).
fn fields(form: &RawForm) -> Vec<(String, String)> {
    form_urlencoded::parse(&form.0).into_owned().filter(|(k, _)| k != "_csrf").collect()
}

fn field(f: &[(String, String)], name: &str) -> String {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn checked(f: &[(String, String)], name: &str) -> bool {
    f.iter().any(|(k, v)| k == name && !v.is_empty())
}

// ---- the list -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "automation/list.html")]
struct ListPage {
    l: Layout,
    rule_sets: Vec<RuleSetSummary>,
    can_write: bool,
    raw: RuleSetRaw,
    errors: FieldErrors,
}

async fn list_page(state: &AppState, ctx: &Ctx, raw: RuleSetRaw, errors: FieldErrors) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let rule_sets = crate::store::rule_sets::list(&mut conn).await?;
    drop(conn);
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = ListPage {
        l: ctx.layout("automation.title", "automation").await?,
        rule_sets,
        can_write: app::may_write(&ctx.principal),
        raw,
        errors,
    };
    render(status, &page)
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    list_page(&state, &ctx, RuleSetRaw::default(), FieldErrors::new()).await
}

async fn create(State(state): State<AppState>, ctx: Ctx, form: RawForm) -> AppResult<Response> {
    let f = fields(&form);
    let raw = RuleSetRaw { name: field(&f, "name"), description: field(&f, "description") };
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(e) => return list_page(&state, &ctx, raw, e).await,
    };
    let mut tx = state.db.begin().await?;
    match app::create(&mut tx, &ctx.principal, &spec).await {
        Ok(done) => {
            let row = done.commit(tx, &state).await?;
            ctx.flash("success", "automation.saved").await?;
            Ok(redirect(&format!("/rule-sets/{}", row.id)))
        }
        Err(AppError::Validation(e)) => list_page(&state, &ctx, raw, e).await,
        Err(e) => Err(e),
    }
}

// ---- one rule set ---------------------------------------------------------------------------------

/// Which form of the page failed, with what was typed.
#[derive(Default)]
struct Forms {
    rule_set: Option<RuleSetRaw>,
    welcome: Option<WelcomeRaw>,
    keyword: Option<KeywordRaw>,
    entry: Option<EntryRaw>,
    attach_group: String,
    attach_tag: String,
    errors: FieldErrors,
    /// The form the errors belong to: "rule_set", "welcome", "keyword", "entry", "attach".
    failed: &'static str,
}

#[derive(Template)]
#[template(path = "automation/detail.html")]
struct DetailPage {
    l: Layout,
    d: RuleSetDetail,
    can_write: bool,
    raw: RuleSetRaw,
    welcome: WelcomeRaw,
    keyword: KeywordRaw,
    entry: EntryRaw,
    attach_group: String,
    attach_tag: String,
    errors: FieldErrors,
    failed: &'static str,
    /// Groups the operator may attach (id, name).
    groups: Vec<(i64, String)>,
    builtins: Vec<&'static str>,
    match_kinds: Vec<&'static str>,
    modes: Vec<&'static str>,
    fallbacks: Vec<&'static str>,
}

impl DetailPage {
    /// The errors when they belong to `form`, else none (each form shows its own).
    fn err(&self, form: &str) -> &FieldErrors {
        static NONE: std::sync::LazyLock<FieldErrors> = std::sync::LazyLock::new(FieldErrors::new);
        if self.failed == form {
            &self.errors
        } else {
            &NONE
        }
    }
}

async fn detail_page(state: &AppState, ctx: &Ctx, id: i64, forms: Forms) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let d = app::detail(&mut conn, &ctx.principal, id).await?;
    let groups = crate::store::groups::names(&mut conn, ctx.scope().as_deref()).await?;
    drop(conn);
    let status = if forms.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let raw = forms
        .rule_set
        .unwrap_or_else(|| RuleSetRaw { name: d.rule_set.name.clone(), description: d.rule_set.description.clone() });
    let welcome = forms.welcome.unwrap_or_else(|| match &d.welcome {
        Some(w) => WelcomeRaw::of(w),
        None => WelcomeRaw {
            enabled: true,
            template: ctx.tr.t("automation.welcome_default").to_string(),
            window_secs: "60".into(),
            delay_secs: "0".into(),
            ..WelcomeRaw::default()
        },
    });
    let entry = forms.entry.unwrap_or_else(|| match &d.entry_policy {
        Some(p) => EntryRaw::of(p),
        None => EntryRaw { mode: "manual".into(), expire_hours: "72".into(), ..EntryRaw::default() },
    });
    let keyword = forms.keyword.unwrap_or_else(|| KeywordRaw {
        match_kind: "contains".into(),
        cooldown_secs: "60".into(),
        ..KeywordRaw::default()
    });
    let page = DetailPage {
        l: ctx.layout_titled(d.rule_set.name.clone(), "automation").await?,
        can_write: app::may_write(&ctx.principal),
        raw,
        welcome,
        keyword,
        entry,
        attach_group: forms.attach_group,
        attach_tag: forms.attach_tag,
        errors: forms.errors,
        failed: forms.failed,
        groups,
        builtins: BUILTIN_COMMANDS.to_vec(),
        match_kinds: MatchKind::NAMES.to_vec(),
        modes: EntryMode::NAMES.to_vec(),
        fallbacks: Fallback::NAMES.to_vec(),
        d,
    };
    render(status, &page)
}

async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    detail_page(&state, &ctx, id, Forms::default()).await
}

/// Runs a use case in a transaction; a field error re-renders the page with `forms`.
macro_rules! apply {
    ($state:expr, $ctx:expr, $id:expr, $forms:expr, |$tx:ident| $call:expr) => {{
        let mut $tx = $state.db.begin().await?;
        match $call.await {
            Ok(done) => {
                done.commit($tx, &$state).await?;
                $ctx.flash("success", "automation.saved").await?;
                Ok(redirect(&format!("/rule-sets/{}", $id)))
            }
            Err(AppError::Validation(e)) => {
                drop($tx);
                let forms = Forms { errors: e, ..$forms };
                detail_page(&$state, &$ctx, $id, forms).await
            }
            Err(e) => Err(e),
        }
    }};
}

async fn update(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, form: RawForm) -> AppResult<Response> {
    let f = fields(&form);
    let raw = RuleSetRaw { name: field(&f, "name"), description: field(&f, "description") };
    let forms = |errors| Forms { rule_set: Some(raw.clone()), errors, failed: "rule_set", ..Forms::default() };
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(e) => return detail_page(&state, &ctx, id, forms(e)).await,
    };
    apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::update(&mut tx, &ctx.principal, id, &spec))
}

async fn delete(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, form: RawForm) -> AppResult<Response> {
    let f = fields(&form);
    if field(&f, "confirm") != "1" {
        if !app::may_write(&ctx.principal) {
            return Err(AppError::Forbidden);
        }
        let mut conn = state.db.acquire().await?;
        let rs = crate::store::rule_sets::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
        drop(conn);
        let question = ctx.tr.f("automation.delete_question", &[("name", &rs.name)]);
        let (action, cancel) = (format!("/rule-sets/{id}/delete"), format!("/rule-sets/{id}"));
        let ask = super::confirm::Ask {
            nav: "automation",
            question,
            action: &action,
            button_key: "automation.delete",
            cancel: &cancel,
        };
        return super::confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    app::delete(&mut tx, &ctx.principal, id).await?.commit(tx, &state).await?;
    ctx.flash("success", "automation.deleted").await?;
    Ok(redirect("/rule-sets"))
}

async fn set_welcome(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    form: RawForm,
) -> AppResult<Response> {
    let f = fields(&form);
    let raw = WelcomeRaw {
        enabled: checked(&f, "enabled"),
        template: field(&f, "template"),
        image_url: field(&f, "image_url"),
        rules_link: field(&f, "rules_link"),
        delay_secs: field(&f, "delay_secs"),
        window_secs: field(&f, "window_secs"),
        delete_previous: checked(&f, "delete_previous"),
    };
    let forms = |errors| Forms { welcome: Some(raw.clone()), errors, failed: "welcome", ..Forms::default() };
    if checked(&f, "remove") {
        return apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::set_welcome(
            &mut tx,
            &ctx.principal,
            id,
            None
        ));
    }
    let w = match raw.parse() {
        Ok(w) => w,
        Err(e) => return detail_page(&state, &ctx, id, forms(e)).await,
    };
    apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::set_welcome(&mut tx, &ctx.principal, id, Some(&w)))
}

async fn add_keyword(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    form: RawForm,
) -> AppResult<Response> {
    let f = fields(&form);
    let raw = KeywordRaw {
        match_kind: field(&f, "match_kind"),
        pattern: field(&f, "pattern"),
        reply_text: field(&f, "reply_text"),
        image_url: field(&f, "image_url"),
        cooldown_secs: field(&f, "cooldown_secs"),
        hours_from: field(&f, "hours_from"),
        hours_to: field(&f, "hours_to"),
        priority: field(&f, "priority"),
    };
    let forms = |errors| Forms { keyword: Some(raw.clone()), errors, failed: "keyword", ..Forms::default() };
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(e) => return detail_page(&state, &ctx, id, forms(e)).await,
    };
    apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::add_keyword(&mut tx, &ctx.principal, id, &spec))
}

async fn delete_keyword(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((id, kid)): Path<(i64, i64)>,
) -> AppResult<Response> {
    apply!(state, ctx, id, Forms::default(), |tx| app::delete_keyword(&mut tx, &ctx.principal, id, kid))
}

async fn set_entry(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, form: RawForm) -> AppResult<Response> {
    let f = fields(&form);
    let raw = EntryRaw {
        mode: field(&f, "mode"),
        keywords: field(&f, "keywords"),
        otherwise: field(&f, "otherwise"),
        decline_reason: field(&f, "decline_reason"),
        expire_hours: field(&f, "expire_hours"),
        on_expiry: field(&f, "on_expiry"),
        questions: field(&f, "questions"),
    };
    let forms = |errors| Forms { entry: Some(raw.clone()), errors, failed: "entry", ..Forms::default() };
    if checked(&f, "remove") {
        return apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::set_entry(
            &mut tx,
            &ctx.principal,
            id,
            None
        ));
    }
    let p = match raw.parse() {
        Ok(p) => p,
        Err(e) => return detail_page(&state, &ctx, id, forms(e)).await,
    };
    apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::set_entry(&mut tx, &ctx.principal, id, Some(&p)))
}

/// The attachment a form names: a group (`group_id`) or a tag (`tag`, `priority`).
fn attachment(f: &[(String, String)]) -> Result<Attachment, FieldErrors> {
    let mut e = FieldErrors::new();
    let group = field(f, "group_id");
    if !group.trim().is_empty() {
        return match group.trim().parse::<i64>() {
            Ok(group_id) => Ok(Attachment::Group { group_id }),
            Err(_) => {
                e.add("group_id", "rule_sets.error.unknown_group");
                Err(e)
            }
        };
    }
    let tag = field(f, "tag");
    if tag.trim().is_empty() {
        e.add("tag", "rule_sets.error.tag");
        return Err(e);
    }
    let priority = field(f, "priority");
    let priority = if priority.trim().is_empty() { Ok(0) } else { priority.trim().parse::<i32>() };
    match priority {
        Ok(priority) => Ok(Attachment::Tag { tag, priority }),
        Err(_) => {
            e.add("priority", "error.number_range");
            Err(e)
        }
    }
}

async fn attach(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, form: RawForm) -> AppResult<Response> {
    attach_or_detach(state, ctx, id, form, true).await
}

async fn detach(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, form: RawForm) -> AppResult<Response> {
    attach_or_detach(state, ctx, id, form, false).await
}

async fn attach_or_detach(state: AppState, ctx: Ctx, id: i64, form: RawForm, on: bool) -> AppResult<Response> {
    let f = fields(&form);
    let forms = |errors| Forms {
        attach_group: field(&f, "group_id"),
        attach_tag: field(&f, "tag"),
        errors,
        failed: "attach",
        ..Forms::default()
    };
    let to = match attachment(&f) {
        Ok(a) => a,
        Err(e) => return detail_page(&state, &ctx, id, forms(e)).await,
    };
    if on {
        apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::attach(&mut tx, &ctx.principal, id, &to))
    } else {
        apply!(state, ctx, id, forms(FieldErrors::new()), |tx| app::detach(&mut tx, &ctx.principal, id, &to))
    }
}

// ---- a group's activity ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Before {
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "automation/activity.html")]
struct ActivityPage {
    l: Layout,
    group_id: i64,
    group_name: String,
    rule_set: Option<crate::store::rule_sets::Effective>,
    rows: Vec<ActivityRow>,
    older: Option<String>,
}

impl ActivityPage {
    /// The rule that made the bot act, in the operator's words (stored as `keyword:{id}`,
    /// `welcome`, `entry:{mode}`).
    fn rule_words(&self, r: &ActivityRow) -> String {
        let tr = &self.l.tr;
        match r.rule.split_once(':') {
            Some(("keyword", id)) => tr.f("automation.rule_keyword", &[("n", &id)]),
            Some(("entry", mode)) => tr.f("automation.rule_entry", &[("mode", &tr.tk("automation.modes", mode))]),
            // `moderation:{rule kind}:{rule id}` (0: a rule without a row).
            Some(("moderation", rest)) => {
                let (kind, n) = rest.split_once(':').unwrap_or((rest, "0"));
                let rule = crate::i18n::lookup(tr.lang(), &format!("moderation.kind.{kind}")).unwrap_or(kind);
                match n {
                    "0" | "" => tr.f("auto2.rule_moderation", &[("rule", &rule)]),
                    n => tr.f("auto2.rule_moderation_n", &[("rule", &rule), ("n", &n)]),
                }
            }
            _ if r.rule == "welcome" => tr.t("automation.rule_welcome").to_string(),
            _ => r.rule.clone(),
        }
    }

    /// What the platform answered, in words: `webhook` (the reply went back in the answer to the
    /// bot's own delivery, with no call of its own), `queue` (held for an operator), `lapsed`,
    /// or the outbound call's outcome with the platform's text (`ok: 42`, `failed: …`).
    fn answer_words(&self, a: &str) -> String {
        let tr = &self.l.tr;
        let (outcome, detail) = a.split_once(": ").unwrap_or((a, ""));
        let words = match outcome {
            "webhook" => return tr.t("automation.answer_webhook").to_string(),
            "queue" => return tr.t("auto2.answer_queue").to_string(),
            "lapsed" => return tr.t("auto2.answer_lapsed").to_string(),
            "ok" => tr.t("auto2.answer_ok"),
            "failed" => tr.t("auto2.answer_failed"),
            "unknown" => tr.t("auto2.answer_unknown"),
            _ => return a.to_string(),
        };
        if detail.is_empty() {
            words.to_string()
        } else {
            format!("{words}{}{detail}", tr.colon())
        }
    }

    fn what(&self, r: &ActivityRow) -> String {
        let Some(a) = r.action.as_ref() else { return String::new() };
        let tr = &self.l.tr;
        let text = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        match a.get("action").and_then(|v| v.as_str()) {
            Some("delete") => return tr.f("auto2.what_delete", &[("id", &text("message_id"))]),
            Some("kick") => return tr.t("auto2.what_kick").to_string(),
            Some("unban") => return tr.t("auto2.what_unban").to_string(),
            Some("mute") => {
                let secs = a.get("seconds").and_then(|v| v.as_u64()).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
                if secs == 0 {
                    return tr.t("auto2.what_unmute").to_string();
                }
                let d = crate::moderation::duration_words(secs, tr.lang());
                return tr.f("auto2.what_mute", &[("duration", &d)]);
            }
            _ => {}
        }
        a.get("text")
            .or_else(|| a.get("caption"))
            .and_then(|t| t.as_str())
            .map(|t| t.chars().filter(|c| !('\u{E000}'..='\u{E002}').contains(c)).take(120).collect())
            .unwrap_or_default()
    }
}

const PAGE: i64 = 50;

async fn activity(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<Before>,
) -> AppResult<Response> {
    ctx.principal.require_group(id)?;
    let mut conn = state.db.acquire().await?;
    let group = crate::store::groups::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let rows = app::activity(&mut conn, &ctx.principal, id, q.before.filter(|b| *b > 0), PAGE).await?;
    let rule_set = crate::store::rule_sets::effective(&mut conn, id).await?;
    drop(conn);
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| format!("/groups/{id}/activity?before={}", r.id)))
        .flatten();
    let title = ctx.tr.f("automation.activity_title", &[("group", &group.name)]);
    let page = ActivityPage {
        l: ctx.layout_titled(title, "automation").await?,
        group_id: id,
        group_name: group.name,
        rule_set,
        rows,
        older,
    };
    render(StatusCode::OK, &page)
}

// ---- the join-request queue ------------------------------------------------------------------------

#[derive(Deserialize)]
struct QueueQuery {
    status: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "automation/requests.html")]
struct RequestsPage {
    l: Layout,
    status: Option<RequestStatus>,
    statuses: Vec<RequestStatus>,
    rows: Vec<RequestRow>,
    older: Option<String>,
    errors: FieldErrors,
    can_write: bool,
}

impl RequestsPage {
    fn is_current(&self, s: &RequestStatus) -> bool {
        self.status == Some(*s)
    }
}

async fn requests_page(state: &AppState, ctx: &Ctx, q: QueueQuery, errors: FieldErrors) -> AppResult<Response> {
    let status = match q.status.as_deref() {
        None => Some(RequestStatus::Pending),
        Some("all") => None,
        Some(s) => RequestStatus::parse(s).or(Some(RequestStatus::Pending)),
    };
    let mut conn = state.db.acquire().await?;
    let rows = queue::list(&mut conn, &ctx.principal, status, q.before.filter(|b| *b > 0), PAGE).await?;
    drop(conn);
    let s = status.map(|s| s.as_str()).unwrap_or("all");
    let older = (rows.len() as i64 == PAGE)
        .then(|| rows.last().map(|r| format!("/join-requests?status={s}&before={}", r.id)))
        .flatten();
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = RequestsPage {
        l: ctx.layout("automation.requests_title", "automation").await?,
        status,
        statuses: RequestStatus::ALL.to_vec(),
        rows,
        older,
        errors,
        can_write: ctx.principal.can_write(),
    };
    render(code, &page)
}

async fn requests(State(state): State<AppState>, ctx: Ctx, Query(q): Query<QueueQuery>) -> AppResult<Response> {
    requests_page(&state, &ctx, q, FieldErrors::new()).await
}

async fn decide(State(state): State<AppState>, ctx: Ctx, form: RawForm) -> AppResult<Response> {
    let f = fields(&form);
    let ids: Vec<i64> = f.iter().filter(|(k, _)| k == "ids").filter_map(|(_, v)| v.trim().parse().ok()).collect();
    let approve = field(&f, "decision") == "approve";
    let again = QueueQuery { status: None, before: None };
    let d = match Decision::new(ids, approve, &field(&f, "reason")) {
        Ok(d) => d,
        Err(e) => return requests_page(&state, &ctx, again, e).await,
    };
    let mut tx = state.db.begin().await?;
    queue::decide(&mut tx, &state.config, &ctx.principal, &d).await?.commit(tx, &state).await?;
    ctx.flash("success", if approve { "automation.approved" } else { "automation.declined" }).await?;
    Ok(redirect("/join-requests"))
}
