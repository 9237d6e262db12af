//! Bots that act, as use cases: queue an action for a bridge's bot, send a test message to a
//! linked chat, change a bridge's API settings and rate limits, refresh member counts, and
//! register a Telegram bridge's webhook. The bridge pages and the API call these alike (same
//! checks, same messages, same audit rows).

use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::auth::Principal;
use crate::domain::action::Action;
use crate::domain::bridge::Kind;
use crate::domain::group::valid_http_url;
use crate::domain::outbound::{check_action, valid_telegram_token, LimitSettings};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::i18n::Lang;
use crate::outbound::dispatch::{self, Step};
use crate::outbound::{telegram, Bots, Policy, Reply};
use crate::store::jobs;
use crate::store::outbound::{self as store, OutboundBridge};
use crate::Config;

/// Checks a bridge's API address and credential for its kind: an http(s) address the outbound
/// policy lets Shoal call (a bot on 127.0.0.1 needs `[outbound] allowed_hosts`), and for
/// Telegram a bot token as @BotFather gives it. Errors on `api_base_url` and `access_token`.
pub fn check_api_settings(config: &Config, kind: Kind, url: Option<&str>, token: Option<&str>, e: &mut FieldErrors) {
    if let Some(url) = url {
        if !valid_http_url(url) {
            e.add("api_base_url", "error.url");
        } else if let Err(refused) = Policy::new(&config.outbound).check(url) {
            e.add("api_base_url", refused.message_key());
        }
    }
    if let (Kind::Telegram, Some(t)) = (kind, token) {
        if !valid_telegram_token(t) {
            e.add("access_token", "bridges.outbound.error.bot_token");
        }
    }
    if let Some(t) = token {
        if t.chars().count() > 500 {
            e.add("access_token", "error.too_long");
        }
    }
}

async fn bridge(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<OutboundBridge> {
    who.require_admin()?;
    store::bridge(conn, id).await?.ok_or(AppError::NotFound)
}

fn require_ready(b: &OutboundBridge) -> AppResult<()> {
    if Bots::ready(b) {
        Ok(())
    } else {
        Err(AppError::Conflict(match b.kind {
            Kind::Telegram => "the bridge has no bot token: add it on the bridge's edit page".into(),
            _ => "the bridge has no API address for its bot: add it on the bridge's edit page".into(),
        }))
    }
}

/// Queues `action` for bridge `bridge_id`'s bot (admins). 404 for an unknown bridge, 422 for a
/// bad action, 409 when the bridge has no API settings. Returns the job's id.
pub async fn enqueue_action(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    bridge_id: i64,
    action: Action,
    origin: &str,
) -> AppResult<i64> {
    let b = bridge(conn, who, bridge_id).await?;
    check_action(&action).map_err(AppError::Validation)?;
    require_ready(&b)?;
    let details =
        json!({"kind": action.name(), "chat_id": action.chat_id(), "target": action.target(), "origin": origin});
    let job_id = jobs::enqueue(conn, &dispatch::job(config, b.id, action, origin, None))
        .await?
        .ok_or_else(|| AppError::Other(anyhow::anyhow!("a job without a dedupe key was not inserted")))?;
    let mut details = details;
    details["job_id"] = json!(job_id);
    super::record(conn, who, "bot.action", "bridge", Some(b.id), details).await?;
    Ok(job_id)
}

/// Queues a test message to a group linked through the bridge. 422 (on `group_id`) when the
/// group is not one of the bridge's linked chats.
pub async fn send_test_message(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    bridge_id: i64,
    group_id: i64,
    lang: Lang,
) -> AppResult<i64> {
    let b = bridge(conn, who, bridge_id).await?;
    require_ready(&b)?;
    let Some(chat) = store::linked_chat(conn, b.id, group_id).await? else {
        let mut e = FieldErrors::new();
        e.add("group_id", "bridges.outbound.error.not_linked");
        return Err(AppError::Validation(e));
    };
    let text =
        crate::i18n::t(lang, "bridges.outbound.test_text").replace("{group}", &b.kind.protocol().escape(&chat.name));
    let action = Action::Send {
        chat_id: chat.chat_id.clone(),
        text,
        reply_to: None,
        thread_id: None,
        mention: false,
        user_id: None,
    };
    let job_id = jobs::enqueue(conn, &dispatch::job(config, b.id, action, "test", None))
        .await?
        .ok_or_else(|| AppError::Other(anyhow::anyhow!("a job without a dedupe key was not inserted")))?;
    super::record(
        conn,
        who,
        "bridge.test_message",
        "bridge",
        Some(b.id),
        json!({"group_id": group_id, "chat_id": chat.chat_id, "job_id": job_id}),
    )
    .await?;
    Ok(job_id)
}

/// A change to a bridge's outbound settings; None leaves a value as it is.
#[derive(Debug, Default, Clone)]
pub struct SettingsChange {
    /// Some(None) clears the address.
    pub api_base_url: Option<Option<String>>,
    /// Some(None) removes the credential.
    pub access_token: Option<Option<String>>,
    pub limits: Option<LimitSettings>,
}

/// Changes a bridge's API address, credential and limits (admins), after the same checks as
/// the bridge's edit page. Never writes the credential to the audit log.
pub async fn update_settings(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    bridge_id: i64,
    change: SettingsChange,
) -> AppResult<()> {
    let b = bridge(conn, who, bridge_id).await?;
    let url = match &change.api_base_url {
        Some(u) => u.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(str::to_string),
        None => b.api_base_url.clone(),
    };
    let token = change.access_token.clone().flatten().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let clear = matches!(change.access_token, Some(None))
        || matches!(&change.access_token, Some(Some(t)) if t.trim().is_empty());
    let limits = change.limits.unwrap_or(b.limits);
    let mut e = FieldErrors::new();
    if let Some(u) = &url {
        if u.chars().count() > 500 {
            e.add("api_base_url", "error.too_long");
        }
    }
    check_api_settings(config, b.kind, url.as_deref(), token.as_deref(), &mut e);
    limits.check(&mut e);
    e.into_result(())?;
    store::set_settings(conn, b.id, url.as_deref(), token.as_deref(), clear, &limits).await?;
    let token_word = match (&token, clear) {
        (Some(_), _) => "changed",
        (None, true) => "removed",
        (None, false) => "kept",
    };
    super::record(
        conn,
        who,
        "bridge.outbound_update",
        "bridge",
        Some(b.id),
        json!({"name": b.name, "api_base_url": url, "access_token": token_word, "limits": limits}),
    )
    .await?;
    Ok(())
}

/// Sets a bridge's rate limits (admins).
pub async fn set_limits(
    conn: &mut PgConnection,
    who: &Principal,
    bridge_id: i64,
    limits: LimitSettings,
) -> AppResult<()> {
    let b = bridge(conn, who, bridge_id).await?;
    let mut e = FieldErrors::new();
    limits.check(&mut e);
    e.into_result(())?;
    store::set_limits(conn, b.id, &limits).await?;
    super::record(conn, who, "bridge.outbound_update", "bridge", Some(b.id), json!({"name": b.name, "limits": limits}))
        .await?;
    Ok(())
}

/// Queues a refresh of the member counts of the bridge's linked groups. 409 when the bridge has
/// no API settings.
pub async fn refresh_member_counts(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    bridge_id: i64,
) -> AppResult<i64> {
    let b = bridge(conn, who, bridge_id).await?;
    require_ready(&b)?;
    let job_id = jobs::enqueue(conn, &dispatch::member_count_sweep(config, Some(b.id), None))
        .await?
        .ok_or_else(|| AppError::Other(anyhow::anyhow!("a job without a dedupe key was not inserted")))?;
    super::record(conn, who, "bridge.member_counts", "bridge", Some(b.id), json!({"name": b.name, "job_id": job_id}))
        .await?;
    Ok(job_id)
}

/// What registering (or looking at) a Telegram bridge's webhook came to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookReport {
    /// The URL Telegram posts updates to: this bridge's webhook under `public_url`.
    pub url: String,
    /// Telegram posts only to https URLs: false means `public_url` must change first.
    pub https: bool,
    /// Whether setWebhook was called and Telegram accepted it.
    pub set: bool,
    /// Telegram's answer when it refused, or why no call was made.
    pub error: Option<String>,
    /// getWebhookInfo's result (url, pending_update_count, last_error_message, allowed_updates…).
    #[schema(value_type = Option<Object>)]
    pub info: Option<serde_json::Value>,
}

/// Calls setWebhook (when `set`) with the bridge's webhook URL, its secret as `secret_token` and
/// the updates Shoal reads, then getWebhookInfo. 409 for a bridge that is not Telegram or has no
/// bot token; 429 when the bot's rate limit says wait. Telegram's refusals are in the report.
pub async fn telegram_webhook(
    db: &PgPool,
    bots: &Bots,
    config: &Config,
    who: &Principal,
    bridge_id: i64,
    set: bool,
) -> AppResult<WebhookReport> {
    who.require_admin()?;
    bots.evict(bridge_id);
    let bb = bots.get(db, bridge_id).await?.ok_or(AppError::NotFound)?;
    let b = &bb.bridge;
    if b.kind != Kind::Telegram {
        return Err(AppError::Conflict("only a Telegram bridge has a webhook to register".into()));
    }
    require_ready(b)?;
    let url = format!("{}/hooks/telegram/{}", config.public_base(), b.id);
    let https = url.starts_with("https://");
    let mut report = WebhookReport { url: url.clone(), https, set: false, error: None, info: None };
    if set {
        match now(db, bots, &bb, telegram::set_webhook(&url, b.secret.expose())).await? {
            Reply::Ok { .. } => report.set = true,
            other => report.error = other.error().map(str::to_string),
        }
        let mut conn = db.acquire().await?;
        super::record(
            &mut conn,
            who,
            "bridge.telegram_webhook",
            "bridge",
            Some(b.id),
            json!({"name": b.name, "url": url, "accepted": report.set, "error": report.error}),
        )
        .await?;
    }
    match now(db, bots, &bb, telegram::webhook_info()).await? {
        Reply::Ok { data, .. } => report.info = Some(data),
        other if report.error.is_none() => report.error = other.error().map(str::to_string),
        _ => {}
    }
    Ok(report)
}

/// One call made while an operator waits: a rate limit that says wait is a 429.
async fn now(
    db: &PgPool,
    bots: &Bots,
    bb: &crate::outbound::BotBridge,
    call: crate::outbound::ApiCall,
) -> AppResult<Reply> {
    match dispatch::perform(db, bots, bb, None, None, &call).await? {
        Step::Later(at) => {
            Err(AppError::TooManyRequests { retry_after_secs: (at - chrono::Utc::now()).num_seconds().max(1) as u64 })
        }
        Step::Answered(r) => Ok(r),
    }
}
