//! Outbound bot calls' SQL: a bridge's API settings and limits, the shared rate limiters
//! (`outbound_take`, a PL/pgSQL function of the migration), the call log, and what a call's
//! answer changes about a linked chat (a new chat id, a broken link).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::domain::bridge::Kind;
use crate::domain::outbound::{LimitSettings, Limits};
use crate::outbound::Secret;

/// What came of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "bot_call_outcome", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The platform says it was done.
    Ok,
    /// It did not happen: the platform refused it, or it never reached the bot.
    Failed,
    /// The request went out and no answer came back: it may or may not have happened.
    Unknown,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 3] = [CallOutcome::Ok, CallOutcome::Failed, CallOutcome::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Failed => "failed",
            CallOutcome::Unknown => "unknown",
        }
    }
}

/// A bridge as its bot's API needs it. `Debug` shows neither the secret nor the token.
#[derive(Debug, Clone)]
pub struct OutboundBridge {
    pub id: i64,
    pub kind: Kind,
    pub platform: String,
    pub name: String,
    /// Signs the generic bridge's posts; Telegram's webhook secret token.
    pub secret: Secret,
    /// OneBot: the HTTP API; Telegram: the Bot API server (None: the configured default);
    /// generic: the endpoint actions are POSTed to.
    pub api_base_url: Option<String>,
    /// OneBot: the access token; Telegram: the bot token.
    pub access_token: Option<Secret>,
    pub limits: LimitSettings,
}

impl OutboundBridge {
    pub fn effective_limits(&self) -> Limits {
        Limits::effective(self.kind, &self.limits)
    }
}

#[derive(sqlx::FromRow)]
struct BridgeRaw {
    id: i64,
    kind: String,
    platform: String,
    name: String,
    secret: Secret,
    api_base_url: Option<String>,
    access_token: Option<Secret>,
    chat_rate_limit: Option<i32>,
    chat_rate_window_ms: Option<i32>,
    bot_rate_limit: Option<i32>,
    bot_rate_window_ms: Option<i32>,
}

impl TryFrom<BridgeRaw> for OutboundBridge {
    type Error = sqlx::Error;
    fn try_from(r: BridgeRaw) -> sqlx::Result<OutboundBridge> {
        let kind = Kind::parse(&r.kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("bridge {} has an unknown kind {:?}", r.id, r.kind).into()))?;
        Ok(OutboundBridge {
            id: r.id,
            kind,
            platform: r.platform,
            name: r.name,
            secret: r.secret,
            api_base_url: r.api_base_url,
            access_token: r.access_token,
            limits: LimitSettings {
                chat_rate_limit: r.chat_rate_limit,
                chat_rate_window_ms: r.chat_rate_window_ms,
                bot_rate_limit: r.bot_rate_limit,
                bot_rate_window_ms: r.bot_rate_window_ms,
            },
        })
    }
}

pub async fn bridge(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<OutboundBridge>> {
    let row: Option<BridgeRaw> = sqlx::query_as(
        "SELECT id, kind, platform, name, secret, api_base_url, access_token,
                chat_rate_limit, chat_rate_window_ms, bot_rate_limit, bot_rate_window_ms
         FROM bridges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(OutboundBridge::try_from).transpose()
}

/// Sets a bridge's API address and credential (`token`: Some replaces it, None with `clear`
/// removes it, None keeps it) and its limits. False when the bridge does not exist.
pub async fn set_settings(
    conn: &mut PgConnection,
    id: i64,
    api_base_url: Option<&str>,
    token: Option<&str>,
    clear_token: bool,
    limits: &LimitSettings,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE bridges SET api_base_url = $2,
            access_token = CASE WHEN $4 THEN NULL ELSE COALESCE($3, access_token) END,
            chat_rate_limit = $5, chat_rate_window_ms = $6, bot_rate_limit = $7, bot_rate_window_ms = $8
         WHERE id = $1",
    )
    .bind(id)
    .bind(api_base_url)
    .bind(token)
    .bind(clear_token)
    .bind(limits.chat_rate_limit)
    .bind(limits.chat_rate_window_ms)
    .bind(limits.bot_rate_limit)
    .bind(limits.bot_rate_window_ms)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Sets only a bridge's limits. False when the bridge does not exist.
pub async fn set_limits(conn: &mut PgConnection, id: i64, limits: &LimitSettings) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE bridges SET chat_rate_limit = $2, chat_rate_window_ms = $3, bot_rate_limit = $4, bot_rate_window_ms = $5
         WHERE id = $1",
    )
    .bind(id)
    .bind(limits.chat_rate_limit)
    .bind(limits.chat_rate_window_ms)
    .bind(limits.bot_rate_limit)
    .bind(limits.bot_rate_window_ms)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------- rate limits

/// What the rate limits say about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Go now; `Some(hold)` identifies the call's place for [`release`] (None: no limit applies).
    Go(Option<DateTime<Utc>>),
    /// Not before this time.
    Wait(DateTime<Utc>),
}

/// Takes a call's place in the bot's and the chat's windows (`chat` "" for a call about the bot
/// itself, such as setWebhook). `hold`: how long the call can last at most (the bot timeout and
/// some slack); its place counts as taken until then unless [`release`] says it ended sooner.
/// `margin` widens each window a little.
pub async fn take(
    conn: &mut PgConnection,
    bridge_id: i64,
    chat: &str,
    limits: &Limits,
    margin: Duration,
    hold: Duration,
) -> sqlx::Result<Grant> {
    let m = margin.as_millis().min(60_000) as i32;
    let (granted, at): (bool, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT granted, at FROM outbound_take($1, $2, $3, $4, $5, $6, $7)")
            .bind(bridge_id)
            .bind(chat)
            .bind(limits.chat.limit)
            .bind(limits.chat.window_ms.saturating_add(m))
            .bind(limits.bot.limit)
            .bind(limits.bot.window_ms.saturating_add(m))
            .bind(hold.as_millis().min(3_600_000) as i32)
            .fetch_one(conn)
            .await?;
    Ok(match (granted, at) {
        (true, hold) => Grant::Go(hold),
        (false, Some(at)) => Grant::Wait(at),
        (false, None) => Grant::Wait(Utc::now()),
    })
}

/// The call granted with `hold` has ended (whatever its outcome): its place counts from now.
pub async fn release(conn: &mut PgConnection, bridge_id: i64, chat: &str, hold: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("SELECT outbound_release($1, $2, $3)").bind(bridge_id).bind(chat).bind(hold).execute(conn).await?;
    Ok(())
}

/// The platform asked to wait (Telegram 429 `retry_after`): no call to the chat before `until`.
pub async fn block(conn: &mut PgConnection, bridge_id: i64, chat: &str, until: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO outbound_limits (bridge_id, chat_id, blocked_until) VALUES ($1, $2, $3)
         ON CONFLICT (bridge_id, chat_id)
         DO UPDATE SET blocked_until = GREATEST(outbound_limits.blocked_until, EXCLUDED.blocked_until)",
    )
    .bind(bridge_id)
    .bind(chat)
    .bind(until)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- the call log

/// One call, once its outcome is known.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub bridge_id: i64,
    pub job_id: Option<i64>,
    pub action: &'static str,
    pub method: &'static str,
    pub chat_id: Option<String>,
    pub target: Option<String>,
    pub outcome: CallOutcome,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub result: Option<String>,
    pub latency_ms: i32,
}

/// Logs calls, any number in one statement (the job runner writes a batch with the settlements
/// of the jobs that made them).
pub async fn log_calls(conn: &mut PgConnection, calls: &[NewCall]) -> sqlx::Result<()> {
    if calls.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&NewCall) -> Option<String>| calls.iter().map(f).collect::<Vec<Option<String>>>();
    sqlx::query(
        "INSERT INTO bot_calls (bridge_id, job_id, action, method, chat_id, target, outcome, status_code, error,
                                result, latency_ms)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::bot_call_outcome[], $8::int[], $9::text[], $10::text[], $11::int[])",
    )
    .bind(calls.iter().map(|c| c.bridge_id).collect::<Vec<i64>>())
    .bind(calls.iter().map(|c| c.job_id).collect::<Vec<Option<i64>>>())
    .bind(calls.iter().map(|c| c.action).collect::<Vec<&str>>())
    .bind(calls.iter().map(|c| c.method).collect::<Vec<&str>>())
    .bind(col(&|c| c.chat_id.as_deref().map(|s| clip(s, 128))))
    .bind(col(&|c| c.target.as_deref().map(|s| clip(s, 256))))
    .bind(calls.iter().map(|c| c.outcome).collect::<Vec<CallOutcome>>())
    .bind(calls.iter().map(|c| c.status_code).collect::<Vec<Option<i32>>>())
    .bind(col(&|c| c.error.as_deref().map(|s| clip(s, 2000))))
    .bind(col(&|c| c.result.as_deref().map(|s| clip(s, 256))))
    .bind(calls.iter().map(|c| c.latency_ms.max(0)).collect::<Vec<i32>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct CallRow {
    pub id: i64,
    pub bridge_id: i64,
    /// The job that made the call, if a job did.
    pub job_id: Option<i64>,
    /// What Shoal asked for: send, send_photo, delete, mute, kick, join_request, member_count,
    /// set_webhook, webhook_info.
    pub action: String,
    /// The protocol's method (send_group_msg, sendMessage, …).
    pub method: String,
    pub chat_id: Option<String>,
    /// The member or message acted on.
    pub target: Option<String>,
    pub outcome: CallOutcome,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    /// What the platform returned worth keeping: a sent message's id, a member count.
    pub result: Option<String>,
    pub latency_ms: i32,
    pub at: DateTime<Utc>,
}

const CALL_COLUMNS: &str =
    "id, bridge_id, job_id, action, method, chat_id, target, outcome, status_code, error, result, latency_ms, at";

/// Which calls a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFilter {
    All,
    /// Failed and unknown.
    Failures,
    Only(CallOutcome),
}

/// A bridge's calls, newest first; `before` is the last id of the previous page.
pub async fn calls(
    conn: &mut PgConnection,
    bridge_id: i64,
    filter: CallFilter,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<CallRow>> {
    let (failures, only) = match filter {
        CallFilter::All => (false, None),
        CallFilter::Failures => (true, None),
        CallFilter::Only(o) => (false, Some(o)),
    };
    sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM bot_calls
         WHERE bridge_id = $1 AND ($2::bigint IS NULL OR id < $2)
           AND (NOT $3 OR outcome <> 'ok') AND ($4::bot_call_outcome IS NULL OR outcome = $4)
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(bridge_id)
    .bind(before)
    .bind(failures)
    .bind(only)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Calls per outcome in the last 24 hours.
pub async fn call_counts(conn: &mut PgConnection, bridge_id: i64) -> sqlx::Result<Vec<(CallOutcome, i64)>> {
    let rows: Vec<(CallOutcome, i64)> = sqlx::query_as(
        "SELECT outcome, count(*) FROM bot_calls WHERE bridge_id = $1 AND at > now() - interval '24 hours' GROUP BY outcome",
    )
    .bind(bridge_id)
    .fetch_all(conn)
    .await?;
    Ok(CallOutcome::ALL
        .into_iter()
        .map(|o| (o, rows.iter().find(|(r, _)| *r == o).map(|(_, n)| *n).unwrap_or(0)))
        .collect())
}

/// Deletes calls older than `keep`.
pub async fn prune_calls(conn: &mut PgConnection, keep: Duration) -> sqlx::Result<u64> {
    let r = sqlx::query("DELETE FROM bot_calls WHERE at < now() - $1 * interval '1 second'")
        .bind(keep.as_secs() as i64)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------- linked chats

/// A group whose chat a bridge's bot can act in.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct LinkedChat {
    pub group_id: i64,
    pub name: String,
    pub chat_id: String,
    pub member_count: Option<i32>,
    /// Since when the bot cannot act in the chat (it was removed), if it cannot.
    pub link_broken_at: Option<DateTime<Utc>>,
    pub link_broken_reason: Option<String>,
}

/// Which groups a bridge acts for: those linked through it, and those whose chat id was set by
/// hand on the bridge's platform (any bridge of the platform delivers for them).
const LINKED: &str = "FROM groups g, bridges b
     WHERE b.id = $1 AND g.external_chat_id IS NOT NULL AND g.status <> 'archived'
       AND (g.bridge_id = b.id OR (g.bridge_id IS NULL AND g.platform = b.platform))";

pub async fn linked_chats(conn: &mut PgConnection, bridge_id: i64, limit: i64) -> sqlx::Result<Vec<LinkedChat>> {
    sqlx::query_as(&format!(
        "SELECT g.id AS group_id, g.name, g.external_chat_id AS chat_id, g.member_count, g.link_broken_at,
                g.link_broken_reason
         {LINKED} ORDER BY g.link_broken_at IS NULL, g.name, g.id LIMIT $2"
    ))
    .bind(bridge_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One group the bridge acts for; None when it is not one of them.
pub async fn linked_chat(conn: &mut PgConnection, bridge_id: i64, group_id: i64) -> sqlx::Result<Option<LinkedChat>> {
    sqlx::query_as(&format!(
        "SELECT g.id AS group_id, g.name, g.external_chat_id AS chat_id, g.member_count, g.link_broken_at,
                g.link_broken_reason
         {LINKED} AND g.id = $2"
    ))
    .bind(bridge_id)
    .bind(group_id)
    .fetch_optional(conn)
    .await
}

/// Chat ids of a bridge's groups whose link is broken.
pub async fn broken_chats(conn: &mut PgConnection, bridge_id: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(&format!("SELECT g.external_chat_id {LINKED} AND g.link_broken_at IS NOT NULL"))
        .bind(bridge_id)
        .fetch_all(conn)
        .await
}

/// The bot cannot act in the chat any more (it was removed from it).
pub async fn mark_broken(conn: &mut PgConnection, bridge_id: i64, chat_id: &str, reason: &str) -> sqlx::Result<u64> {
    let r = sqlx::query(&format!(
        "UPDATE groups SET link_broken_at = COALESCE(link_broken_at, now()), link_broken_reason = $3
         WHERE id IN (SELECT g.id {LINKED} AND g.external_chat_id = $2)"
    ))
    .bind(bridge_id)
    .bind(chat_id)
    .bind(clip(reason, 500))
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// A call in the chat succeeded: the link works again.
pub async fn clear_broken(conn: &mut PgConnection, bridge_id: i64, chat_id: &str) -> sqlx::Result<u64> {
    let r = sqlx::query(&format!(
        "UPDATE groups SET link_broken_at = NULL, link_broken_reason = NULL
         WHERE id IN (SELECT g.id {LINKED} AND g.external_chat_id = $2) AND link_broken_at IS NOT NULL"
    ))
    .bind(bridge_id)
    .bind(chat_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// A Telegram group became a supergroup: its groups take the new chat id. Returns the groups
/// moved; a group that already has the new id keeps the old one (that conflict is the caller's
/// to report).
pub async fn migrate_chat(conn: &mut PgConnection, bridge_id: i64, old: &str, new: &str) -> sqlx::Result<Vec<i64>> {
    let moved = sqlx::query_scalar(&format!(
        "UPDATE groups SET external_chat_id = $3, updated_at = now()
         WHERE id IN (SELECT g.id {LINKED} AND g.external_chat_id = $2)
           AND NOT EXISTS (SELECT 1 FROM groups o WHERE o.platform = groups.platform AND o.external_chat_id = $3)
         RETURNING id"
    ))
    .bind(bridge_id)
    .bind(old)
    .bind(new)
    .fetch_all(&mut *conn)
    .await?;
    super::groups::lookups_changed();
    sqlx::query("UPDATE unlinked_chats SET chat_id = $3 WHERE bridge_id = $1 AND chat_id = $2 AND NOT EXISTS (SELECT 1 FROM unlinked_chats u WHERE u.bridge_id = $1 AND u.chat_id = $3)")
        .bind(bridge_id)
        .bind(old)
        .bind(new)
        .execute(conn)
        .await?;
    Ok(moved)
}

/// Every linked group whose bridge can report member counts (OneBot with an API address,
/// Telegram with a token, generic with an endpoint): (group id, bridge id).
pub async fn count_targets(conn: &mut PgConnection, bridge_id: Option<i64>) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (g.id) g.id, b.id
         FROM groups g JOIN bridges b
           ON (g.bridge_id = b.id OR (g.bridge_id IS NULL AND g.platform = b.platform))
         WHERE g.external_chat_id IS NOT NULL AND g.status <> 'archived' AND g.link_broken_at IS NULL
           AND ($1::bigint IS NULL OR b.id = $1)
           AND CASE b.kind WHEN 'telegram' THEN b.access_token IS NOT NULL ELSE b.api_base_url IS NOT NULL END
         ORDER BY g.id, (g.bridge_id = b.id) DESC NULLS LAST, b.id",
    )
    .bind(bridge_id)
    .fetch_all(conn)
    .await
}

/// Whether any group has a bridge that can report its member count.
pub async fn any_count_target(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM groups g JOIN bridges b
            ON (g.bridge_id = b.id OR (g.bridge_id IS NULL AND g.platform = b.platform))
          WHERE g.external_chat_id IS NOT NULL AND g.status <> 'archived'
            AND CASE b.kind WHEN 'telegram' THEN b.access_token IS NOT NULL ELSE b.api_base_url IS NOT NULL END)",
    )
    .fetch_one(conn)
    .await
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
