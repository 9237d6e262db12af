//! Logging in and out, the first-start setup page, and the language switch.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::ctx::{GuestCtx, Layout, LANG_COOKIE};
use super::{redirect, render, safe_next};
use crate::auth::{password, token_hash, Role};
use crate::domain::{check_password, parse_username};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::i18n::Lang;
use crate::store::audit::{self, Actor};
use crate::store::operators;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/setup", get(setup_page).post(setup))
        .route("/language", post(language))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    username: String,
    next: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(State(state): State<AppState>, g: GuestCtx, Query(q): Query<NextQuery>) -> AppResult<Response> {
    if g.session.operator_id().await?.is_some() {
        return Ok(redirect(&safe_next(q.next.as_deref())));
    }
    let page = LoginPage {
        l: g.layout("login.title").await?,
        username: String::new(),
        next: safe_next(q.next.as_deref()),
        error: None,
    };
    Ok(g.with_guest_cookie(render(StatusCode::OK, &page)?, state.config.session.secure))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login(State(state): State<AppState>, g: GuestCtx, Form(f): Form<LoginForm>) -> AppResult<Response> {
    let username = f.username.trim().to_ascii_lowercase();
    let next = safe_next(f.next.as_deref());
    let cfg = &state.config.auth;
    let mut conn = state.db.acquire().await?;
    // The attempt is recorded (committed) before it is counted, so parallel attempts see each
    // other: the n-th attempt counts at least n, and at most `throttle_max_failures` attempts
    // within the window ever reach the password check. A success clears the username's record.
    operators::record_failure(&mut conn, &username, &g.ip).await?;
    let attempts = operators::recent_failures(&mut conn, &username, &g.ip, cfg.throttle_window_secs).await?;
    let refuse = |status: StatusCode, key: &'static str, l: Layout| {
        let page = LoginPage { l, username: username.clone(), next: next.clone(), error: Some(g.tr.t(key)) };
        render(status, &page)
    };
    if attempts > cfg.throttle_max_failures {
        let mut resp = refuse(StatusCode::TOO_MANY_REQUESTS, "login.throttled", g.layout("login.title").await?)?;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(cfg.throttle_window_secs as u64));
        return Ok(resp);
    }
    let creds = operators::credentials(&mut conn, &username).await?;
    drop(conn);
    let (who, hash) = match creds {
        Some(c) => (Some((c.id, c.session_epoch)), Some(c.password_hash)),
        None => (None, None),
    };
    // Always verify (against a dummy hash for unknown users) so both failures cost the same.
    let ok = password::verify(hash, f.password).await;
    match (ok, who) {
        (true, Some((id, epoch))) => {
            let mut conn = state.db.acquire().await?;
            operators::clear_failures(&mut conn, &username).await?;
            drop(conn);
            g.session.log_in(id, epoch).await?;
            Ok(redirect(&next))
        }
        _ => {
            tracing::info!(ip = %g.ip, "failed login");
            refuse(StatusCode::UNAUTHORIZED, "login.invalid", g.layout("login.title").await?)
        }
    }
}

async fn logout(g: GuestCtx) -> AppResult<Response> {
    g.session.log_out().await?;
    Ok(redirect("/login"))
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    l: Layout,
    token: String,
    username: String,
    language: String,
    errors: FieldErrors,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn setup_page(State(state): State<AppState>, g: GuestCtx, Query(q): Query<TokenQuery>) -> AppResult<Response> {
    let token = q.token.unwrap_or_default();
    let mut conn = state.db.acquire().await?;
    if !operators::setup_token_valid(&mut conn, &token_hash(&token)).await? {
        return Err(AppError::NotFound);
    }
    let language = g.tr.code().to_string();
    let page = SetupPage {
        l: g.layout("setup.title").await?,
        token,
        username: String::new(),
        language,
        errors: FieldErrors::new(),
    };
    Ok(g.with_guest_cookie(render(StatusCode::OK, &page)?, state.config.session.secure))
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    #[serde(default)]
    language: String,
}

async fn setup(State(state): State<AppState>, g: GuestCtx, Form(f): Form<SetupForm>) -> AppResult<Response> {
    let hash = token_hash(&f.token);
    let mut errors = FieldErrors::new();
    let username = parse_username(&f.username, "username", &mut errors);
    check_password(&f.password, Some(&f.password_confirm), "password", &mut errors);
    let language = Lang::parse(&f.language);
    {
        let mut conn = state.db.acquire().await?;
        if !operators::setup_token_valid(&mut conn, &hash).await? {
            return Err(AppError::NotFound);
        }
    }
    if !errors.is_empty() {
        let page = SetupPage {
            l: g.layout("setup.title").await?,
            token: f.token,
            username: f.username,
            language: language.unwrap_or(g.tr.lang()).code().to_string(),
            errors,
        };
        return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let pw_hash = password::hash(f.password).await?;
    let mut tx = state.db.begin().await?;
    if !operators::consume_setup_token(&mut tx, &hash).await? {
        return Err(AppError::NotFound);
    }
    let id = operators::create(
        &mut tx,
        operators::NewOperator {
            username: &username,
            password_hash: &pw_hash,
            role: Role::Admin,
            all_groups: true,
            group_ids: &[],
            language,
        },
    )
    .await?;
    audit::record(
        &mut tx,
        Actor::System("setup"),
        "operator.create",
        "operator",
        Some(id.to_string()),
        serde_json::json!({"username": username, "role": "admin"}),
    )
    .await?;
    tx.commit().await?;
    g.session.log_in(id, 0).await?;
    g.session.flash("success", "setup.done").await?;
    Ok(redirect("/"))
}

#[derive(Deserialize)]
struct LanguageForm {
    lang: String,
    next: Option<String>,
}

/// Switches the UI language: a cookie for everyone, and the operator's setting when logged in.
async fn language(State(state): State<AppState>, g: GuestCtx, Form(f): Form<LanguageForm>) -> AppResult<Response> {
    let lang = Lang::parse(&f.lang).ok_or_else(|| AppError::BadRequest("unknown language".into()))?;
    if let Some(id) = g.session.operator_id().await? {
        let mut conn = state.db.acquire().await?;
        operators::set_language(&mut conn, id, Some(lang)).await?;
    }
    let mut resp = redirect(&safe_next(f.next.as_deref()));
    let secure = if state.config.session.secure { "; Secure" } else { "" };
    let cookie = format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}", lang.code());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}
