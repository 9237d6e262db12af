//! A bridge's outbound page (admins): how Shoal reaches the bot's API and how to set it up,
//! the rate limits, the linked chats (each with a test message, and its member count), a
//! Telegram bridge's webhook registration, and the call log with failures first. The same
//! operations as the API (`app::outbound`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app::outbound::{self as app, WebhookReport};
use crate::domain::outbound::{format_secs, Limits, LimitsRaw};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::outbound::Bots;
use crate::store::outbound::{self as store, CallFilter, CallOutcome, CallRow, LinkedChat};
use crate::AppState;

/// Calls listed per table.
const CALLS: i64 = 50;
/// Linked chats listed.
const CHATS: i64 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bridges/{id}/outbound", get(page))
        .route("/bridges/{id}/outbound/webhook", get(webhook_info).post(set_webhook))
        .route("/bridges/{id}/outbound/limits", post(save_limits))
        .route("/bridges/{id}/outbound/test", post(test_message))
        .route("/bridges/{id}/outbound/member-counts", post(member_counts))
}

/// The bridge as this page shows it: never its secret or token.
struct BridgeInfo {
    id: i64,
    kind: String,
    name: String,
    api_base_url: Option<String>,
    has_token: bool,
    ready: bool,
}

#[derive(Template)]
#[template(path = "bridge_outbound/page.html")]
struct Page {
    l: Layout,
    b: BridgeInfo,
    /// The Telegram API server used when none is set.
    telegram_default: String,
    /// Where Telegram must post updates, and whether it is https.
    webhook_url: String,
    https: bool,
    report: Option<WebhookReport>,
    limits: Limits,
    defaults: Limits,
    raw: LimitsRaw,
    errors: FieldErrors,
    chats: Vec<LinkedChat>,
    counts: Vec<(CallOutcome, i64)>,
    failures: Vec<CallRow>,
    recent: Vec<CallRow>,
}

impl Page {
    fn rate_words(&self, limit: &i32, window_ms: &i32) -> String {
        if *limit <= 0 {
            self.l.tr.t("bridges.outbound.no_limit").to_string()
        } else {
            self.l.tr.f("bridges.outbound.rate", &[("limit", limit), ("secs", &format_secs(*window_ms))])
        }
    }
    fn secs(&self, window_ms: &i32) -> String {
        format_secs(*window_ms)
    }
    fn info_text(&self, key: &str) -> String {
        match self.report.as_ref().and_then(|r| r.info.as_ref()).and_then(|i| i.get(key)) {
            None | Some(serde_json::Value::Null) => "–".into(),
            Some(serde_json::Value::String(s)) if s.is_empty() => "–".into(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
            Some(v) if key.ends_with("_date") => v
                .as_i64()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
                .map(|t| self.l.time.at_secs(t))
                .unwrap_or_else(|| v.to_string()),
            Some(v) => v.to_string(),
        }
    }
}

async fn render_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    raw: Option<LimitsRaw>,
    errors: FieldErrors,
    report: Option<WebhookReport>,
    status: StatusCode,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let b = store::bridge(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    let chats = store::linked_chats(&mut conn, id, CHATS).await?;
    let counts = store::call_counts(&mut conn, id).await?;
    let failures = store::calls(&mut conn, id, CallFilter::Failures, None, CALLS).await?;
    let recent = store::calls(&mut conn, id, CallFilter::Only(CallOutcome::Ok), None, CALLS).await?;
    drop(conn);
    let webhook_url = format!("{}/hooks/telegram/{}", state.config.public_base(), b.id);
    let page = Page {
        l: ctx.layout_titled(format!("{} · {}", b.name, ctx.tr.t("bridges.outbound.title")), "bridges").await?,
        https: webhook_url.starts_with("https://"),
        webhook_url,
        telegram_default: state.config.outbound.telegram_api_base.clone(),
        report,
        limits: b.effective_limits(),
        defaults: Limits::defaults(b.kind),
        raw: raw.unwrap_or_else(|| LimitsRaw::from_settings(&b.limits)),
        errors,
        chats,
        counts,
        failures,
        recent,
        b: BridgeInfo {
            id: b.id,
            kind: b.kind.as_str().to_string(),
            ready: Bots::ready(&b),
            has_token: b.access_token.is_some(),
            api_base_url: b.api_base_url,
            name: b.name,
        },
    };
    render(status, &page)
}

async fn page(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    render_page(&state, &ctx, id, None, FieldErrors::new(), None, StatusCode::OK).await
}

async fn save_limits(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<LimitsRaw>,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let limits = match raw.parse() {
        Ok(l) => l,
        Err(errors) => {
            return render_page(&state, &ctx, id, Some(raw), errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    };
    let mut tx = state.db.begin().await?;
    app::set_limits(&mut tx, &ctx.principal, id, limits).await?;
    tx.commit().await?;
    state.bots.evict(id);
    ctx.flash("success", "bridges.outbound.limits_saved").await?;
    Ok(redirect(&format!("/bridges/{id}/outbound#limits")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TestForm {
    group_id: String,
}

/// Ends an action that changed nothing: a flash error and back to the page.
async fn refuse(ctx: &Ctx, id: i64, key: &str, anchor: &str) -> AppResult<Response> {
    ctx.flash("error", key).await?;
    Ok(redirect(&format!("/bridges/{id}/outbound#{anchor}")))
}

async fn test_message(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<TestForm>,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let Ok(group_id) = f.group_id.trim().parse::<i64>() else {
        return refuse(&ctx, id, "bridges.outbound.error.not_linked", "chats").await;
    };
    let mut tx = state.db.begin().await?;
    match app::send_test_message(&mut tx, &state.config, &ctx.principal, id, group_id, ctx.tr.lang()).await {
        Ok(_) => {}
        Err(AppError::Validation(_)) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.outbound.error.not_linked", "chats").await;
        }
        Err(AppError::Conflict(_)) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.outbound.error.not_ready", "chats").await;
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    ctx.flash("success", "bridges.outbound.test_queued").await?;
    Ok(redirect(&format!("/bridges/{id}/outbound#calls")))
}

async fn member_counts(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut tx = state.db.begin().await?;
    match app::refresh_member_counts(&mut tx, &state.config, &ctx.principal, id).await {
        Ok(_) => {}
        Err(AppError::Conflict(_)) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.outbound.error.not_ready", "chats").await;
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    ctx.flash("success", "bridges.outbound.counts_queued").await?;
    Ok(redirect(&format!("/bridges/{id}/outbound#chats")))
}

async fn webhook(state: &AppState, ctx: &Ctx, id: i64, set: bool) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    match app::telegram_webhook(&state.db, &state.bots, &state.config, &ctx.principal, id, set).await {
        Ok(report) => render_page(state, ctx, id, None, FieldErrors::new(), Some(report), StatusCode::OK).await,
        Err(AppError::Conflict(_)) => refuse(ctx, id, "bridges.outbound.error.webhook_unavailable", "webhook").await,
        Err(AppError::TooManyRequests { .. }) => {
            refuse(ctx, id, "bridges.outbound.error.rate_limited", "webhook").await
        }
        Err(e) => Err(e),
    }
}

async fn set_webhook(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    webhook(&state, &ctx, id, true).await
}

async fn webhook_info(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    webhook(&state, &ctx, id, false).await
}
