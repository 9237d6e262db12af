//! Settings: one's own account (language, password) for everyone; operators, API tokens and the
//! audit log for admins.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render, Pager};
use crate::app;
use crate::auth::Role;
use crate::domain::{check_password, parse_username, parse_zone, required_text};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::alerts;
use crate::store::audit::{self, AuditRow};
use crate::store::operators::{self, OperatorRow};
use crate::store::tokens::{self, TokenRow};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(account))
        .route("/settings/password", post(change_password))
        .route("/settings/timezone", post(set_timezone))
        .route("/settings/operators", get(operator_list))
        .route("/settings/operators/new", get(operator_new).post(operator_create))
        .route("/settings/operators/{id}", get(operator_edit).post(operator_update))
        .route("/settings/tokens", get(token_list).post(token_create))
        .route("/settings/tokens/{id}/revoke", post(token_revoke))
        .route("/settings/audit", get(audit_log))
        .route("/settings/alerts", get(alerts_page).post(alerts_save))
}

// ---- own account ----

#[derive(Template)]
#[template(path = "settings/account.html")]
struct AccountPage {
    l: Layout,
    language: String,
    errors: FieldErrors,
    /// The operator's own display zone ("" for the instance's).
    zone: String,
    /// The instance's display zone, labelled.
    instance_zone: String,
    zones: &'static [&'static str],
}

async fn account_page(state: &AppState, ctx: &Ctx, errors: FieldErrors, status: StatusCode) -> AppResult<Response> {
    let language = ctx.principal.language.map(|l| l.code()).unwrap_or("").to_string();
    let mut conn = state.db.acquire().await?;
    let zone = operators::display_timezone(&mut conn, ctx.principal.id).await?.map(|z| z.name().to_string());
    let zone = zone.unwrap_or_default();
    drop(conn);
    let instance = crate::web::zone::DisplayTz::pick(None, state.config.display_timezone, ctx.tr.lang());
    let page = AccountPage {
        l: ctx.layout("settings.title", "settings").await?,
        language,
        errors,
        zone,
        instance_zone: format!("{} ({})", instance.name(), instance.label()),
        zones: &crate::web::zone::CHOICES,
    };
    render(status, &page)
}

async fn account(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    account_page(&state, &ctx, FieldErrors::new(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct TimezoneForm {
    #[serde(default)]
    timezone: String,
}

/// The operator's display time zone: one of the offered zones, or "" for the instance's.
async fn set_timezone(State(state): State<AppState>, ctx: Ctx, Form(f): Form<TimezoneForm>) -> AppResult<Response> {
    let wanted = f.timezone.trim();
    let zone = if wanted.is_empty() {
        None
    } else {
        let mut errors = FieldErrors::new();
        match parse_zone(wanted, "timezone", &mut errors) {
            Some(z) => Some(z),
            None => return account_page(&state, &ctx, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
        }
    };
    let mut tx = state.db.begin().await?;
    app::operators::set_timezone(&mut tx, &ctx.principal, zone).await?.commit(tx, &state).await?;
    ctx.flash("success", "settings.tz.saved").await?;
    Ok(redirect("/settings"))
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

async fn change_password(State(state): State<AppState>, ctx: Ctx, Form(f): Form<PasswordForm>) -> AppResult<Response> {
    let mut errors = FieldErrors::new();
    check_password(&f.password, Some(&f.password_confirm), "password", &mut errors);
    if !errors.is_empty() {
        return account_page(&state, &ctx, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut tx = state.db.begin().await?;
    let epoch = match app::operators::change_password(&mut tx, &ctx.principal, f.current, f.password).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return account_page(&state, &ctx, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    // Every other session of this operator has ended; this one goes on under a new id.
    ctx.session.renew(epoch).await?;
    ctx.flash("success", "settings.password_changed").await?;
    Ok(redirect("/settings"))
}

// ---- operators ----

#[derive(Template)]
#[template(path = "settings/operators.html")]
struct OperatorsPage {
    l: Layout,
    operators: Vec<OperatorRow>,
    me: i64,
}

async fn operator_list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let operators = operators::list(&mut conn).await?;
    drop(conn);
    let page = OperatorsPage { l: ctx.layout("operators.title", "settings").await?, operators, me: ctx.principal.id };
    render(StatusCode::OK, &page)
}

/// The operator form, as typed.
#[derive(Deserialize, Default, Clone)]
struct OperatorForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    all_groups: Option<String>,
    #[serde(default)]
    groups: Vec<i64>,
    #[serde(default)]
    disabled: Option<String>,
}

#[derive(Template)]
#[template(path = "settings/operator_form.html")]
struct OperatorFormPage {
    l: Layout,
    /// None when creating.
    op: Option<OperatorRow>,
    form: OperatorForm,
    errors: FieldErrors,
    groups: Vec<(i64, String)>,
    roles: [Role; 3],
}

impl OperatorFormPage {
    fn has_group(&self, id: &i64) -> bool {
        self.form.groups.contains(id)
    }
}

async fn operator_form(
    state: &AppState,
    ctx: &Ctx,
    op: Option<OperatorRow>,
    form: OperatorForm,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let groups = crate::store::groups::names(&mut conn, None).await?;
    drop(conn);
    let l = match &op {
        Some(o) => ctx.layout_titled(o.username.clone(), "settings").await?,
        None => ctx.layout("operators.new", "settings").await?,
    };
    render(status, &OperatorFormPage { l, op, form, errors, groups, roles: Role::ALL })
}

/// Axum's `Form` cannot read repeated keys into a Vec; this reads `groups=1&groups=2`.
fn parse_operator_form(body: &[u8]) -> OperatorForm {
    let mut f = OperatorForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "username" => f.username = v.into_owned(),
            "password" => f.password = v.into_owned(),
            "role" => f.role = v.into_owned(),
            "all_groups" => f.all_groups = Some(v.into_owned()),
            "disabled" => f.disabled = Some(v.into_owned()),
            "groups" => {
                if let Ok(id) = v.parse() {
                    f.groups.push(id);
                }
            }
            _ => {}
        }
    }
    f
}

async fn operator_new(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let form = OperatorForm { role: "operator".into(), ..OperatorForm::default() };
    operator_form(&state, &ctx, None, form, FieldErrors::new(), StatusCode::OK).await
}

async fn operator_create(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let form = parse_operator_form(&body);
    let mut errors = FieldErrors::new();
    let username = parse_username(&form.username, "username", &mut errors);
    check_password(&form.password, None, "password", &mut errors);
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.add("role", "error.choice");
    }
    if !errors.is_empty() {
        return operator_form(&state, &ctx, None, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let role = role.unwrap_or(Role::Viewer);
    let account = app::operators::NewAccount {
        username,
        password: form.password.clone(),
        role,
        all_groups: form.all_groups.is_some(),
        groups: form.groups.clone(),
    };
    let mut tx = state.db.begin().await?;
    match app::operators::create(&mut tx, &ctx.principal, account).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return operator_form(&state, &ctx, None, form, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    };
    ctx.flash("success", "operators.created").await?;
    Ok(redirect("/settings/operators"))
}

async fn operator_edit(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let op = operators::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    drop(conn);
    let form = OperatorForm {
        username: op.username.clone(),
        role: op.role.as_str().to_string(),
        all_groups: op.all_groups.then(|| "on".into()),
        groups: op.group_ids.clone(),
        disabled: op.disabled_at.map(|_| "on".into()),
        password: String::new(),
    };
    operator_form(&state, &ctx, Some(op), form, FieldErrors::new(), StatusCode::OK).await
}

async fn operator_update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let op = operators::get(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    drop(conn);
    let form = parse_operator_form(&body);
    let mut errors = FieldErrors::new();
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.add("role", "error.choice");
    }
    if !form.password.is_empty() {
        check_password(&form.password, None, "password", &mut errors);
    }
    let shown = |form: OperatorForm| OperatorForm { username: op.username.clone(), ..form };
    if !errors.is_empty() {
        return operator_form(&state, &ctx, Some(op.clone()), shown(form), errors, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    let change = app::operators::AccessChange {
        role: role.unwrap_or(Role::Viewer),
        all_groups: form.all_groups.is_some(),
        groups: form.groups.clone(),
        disabled: form.disabled.is_some(),
        password: (!form.password.is_empty()).then(|| form.password.clone()),
    };
    let mut tx = state.db.begin().await?;
    let own_epoch = match app::operators::update(&mut tx, &ctx.principal, id, change).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return operator_form(
                &state,
                &ctx,
                Some(op.clone()),
                shown(form),
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        Err(e) => return Err(e),
    };
    // A reset of one's own password renews this session under the new epoch.
    if let Some(epoch) = own_epoch {
        ctx.session.renew(epoch).await?;
    }
    ctx.flash("success", "operators.saved").await?;
    Ok(redirect("/settings/operators"))
}

// ---- API tokens ----

#[derive(Template)]
#[template(path = "settings/tokens.html")]
struct TokensPage {
    l: Layout,
    tokens: Vec<TokenRow>,
    groups: Vec<(i64, String)>,
    roles: [Role; 3],
    form: OperatorForm,
    errors: FieldErrors,
    /// The secret of a token just created: shown this once.
    new_secret: Option<String>,
}

impl TokensPage {
    fn has_group(&self, id: &i64) -> bool {
        self.form.groups.contains(id)
    }
}

async fn tokens_page(
    state: &AppState,
    ctx: &Ctx,
    form: OperatorForm,
    errors: FieldErrors,
    new_secret: Option<String>,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let list = tokens::list(&mut conn).await?;
    let groups = crate::store::groups::names(&mut conn, None).await?;
    drop(conn);
    let page = TokensPage {
        l: ctx.layout("tokens.title", "settings").await?,
        tokens: list,
        groups,
        roles: Role::ALL,
        form,
        errors,
        new_secret,
    };
    render(status, &page)
}

async fn token_list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let form = OperatorForm { role: "viewer".into(), ..OperatorForm::default() };
    tokens_page(&state, &ctx, form, FieldErrors::new(), None, StatusCode::OK).await
}

/// Prefix of every API token ([`app::tokens::TOKEN_PREFIX`]).
pub const TOKEN_PREFIX: &str = app::tokens::TOKEN_PREFIX;

/// A new token secret ([`app::tokens::new_secret`]).
pub fn new_token_secret() -> String {
    app::tokens::new_secret()
}

async fn token_create(State(state): State<AppState>, ctx: Ctx, body: axum::body::Bytes) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    // The token form uses the operator form's field names (`username` holds the token name).
    let form = parse_operator_form(&body);
    let mut errors = FieldErrors::new();
    let name = required_text(&form.username, 80, "username", &mut errors);
    let role = Role::parse(&form.role);
    if role.is_none() {
        errors.add("role", "error.choice");
    }
    if !errors.is_empty() {
        return tokens_page(&state, &ctx, form, errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let spec = app::tokens::NewTokenSpec {
        name,
        role: role.unwrap_or(Role::Viewer),
        all_groups: form.all_groups.is_some(),
        groups: form.groups.clone(),
    };
    let mut tx = state.db.begin().await?;
    let created = app::tokens::create(&mut tx, &ctx.principal, &spec).await?.commit(tx, &state).await?;
    let form = OperatorForm { role: "viewer".into(), ..OperatorForm::default() };
    tokens_page(&state, &ctx, form, FieldErrors::new(), Some(created.secret), StatusCode::CREATED).await
}

async fn token_revoke(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    if !crate::web::confirm::given(&body) {
        let mut conn = state.db.acquire().await?;
        let name = tokens::name_of(&mut conn, id).await?.ok_or(AppError::NotFound)?;
        drop(conn);
        let question = ctx.tr.f("confirm.about", &[("name", &name), ("question", &ctx.tr.t("tokens.revoke_confirm"))]);
        let action = format!("/settings/tokens/{id}/revoke");
        let ask = crate::web::confirm::Ask {
            nav: "settings",
            question,
            action: &action,
            button_key: "tokens.revoke",
            cancel: "/settings/tokens",
        };
        return crate::web::confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    app::tokens::revoke(&mut tx, &ctx.principal, id).await?.commit(tx, &state).await?;
    ctx.flash("success", "tokens.revoked").await?;
    Ok(redirect("/settings/tokens"))
}

// ---- audit log ----

#[derive(Template)]
#[template(path = "settings/audit.html")]
struct AuditPage {
    l: Layout,
    rows: Vec<AuditRow>,
    pager: Pager,
    q: AuditQuery,
    actors: Vec<String>,
    actions: Vec<String>,
    kinds: Vec<String>,
}

/// The audit log's filters as typed in the query string; blank means any.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditQuery {
    #[serde(deserialize_with = "crate::store::lenient_page")]
    page: Option<i64>,
    actor: String,
    action: String,
    kind: String,
    object: String,
    from: String,
    to: String,
}

async fn audit_log(State(state): State<AppState>, ctx: Ctx, Query(q): Query<AuditQuery>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let page = crate::store::Page::new(q.page, 100);
    let blank = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    // Dates are days in the display zone: from its first moment to the end of `to`.
    let day_start = |s: &str, days: i64| {
        chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok().and_then(|d| {
            let local = (d + chrono::Duration::days(days)).and_hms_opt(0, 0, 0)?;
            use chrono::TimeZone;
            ctx.time.tz.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&chrono::Utc))
        })
    };
    let f = audit::Filter {
        actor: blank(&q.actor),
        action: blank(&q.action),
        target_kind: blank(&q.kind),
        target_id: blank(&q.object),
        from: day_start(&q.from, 0),
        until: day_start(&q.to, 1),
    };
    let mut conn = state.db.acquire().await?;
    let (rows, total) = audit::list_filtered(&mut conn, &f, page.size, page.offset()).await?;
    let (actors, actions, kinds) = audit::filter_choices(&mut conn).await?;
    drop(conn);
    let filters = [
        ("actor", q.actor.as_str()),
        ("action", &q.action),
        ("kind", &q.kind),
        ("object", &q.object),
        ("from", &q.from),
        ("to", &q.to),
    ];
    let pager = Pager::new("/settings/audit", page.number, page.size, total, &filters);
    let l = ctx.layout("audit.title", "settings").await?;
    render(StatusCode::OK, &AuditPage { l, rows, pager, q, actors, actions, kinds })
}

// ---- alerts ----

#[derive(Template)]
#[template(path = "settings/alerts.html")]
struct AlertsPage {
    l: Layout,
    webhook_url: String,
    errors: FieldErrors,
    open: Vec<alerts::OpenAlert>,
    deliveries: Vec<alerts::DeliveryRow>,
}

async fn alerts_view(
    state: &AppState,
    ctx: &Ctx,
    webhook_url: String,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let open = alerts::list_open(&mut conn, 100).await?;
    let deliveries = alerts::list_deliveries(&mut conn, 200).await?;
    drop(conn);
    let page = AlertsPage { l: ctx.layout("alerts.title", "settings").await?, webhook_url, errors, open, deliveries };
    render(status, &page)
}

async fn alerts_page(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let url = alerts::webhook_url(&mut *state.db.acquire().await?).await?.unwrap_or_default();
    alerts_view(&state, &ctx, url, FieldErrors::new(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct AlertsForm {
    #[serde(default)]
    webhook_url: String,
}

async fn alerts_save(State(state): State<AppState>, ctx: Ctx, Form(f): Form<AlertsForm>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let policy = crate::outbound::Policy::new(&state.config.outbound);
    let mut tx = state.db.begin().await?;
    match app::settings::set_alert_webhook(&mut tx, &ctx.principal, &policy, &f.webhook_url).await {
        Ok(done) => done.commit(tx, &state).await?,
        Err(AppError::Validation(errors)) => {
            drop(tx);
            return alerts_view(&state, &ctx, f.webhook_url, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e),
    }
    ctx.flash("success", "alerts.saved").await?;
    Ok(redirect("/settings/alerts"))
}
