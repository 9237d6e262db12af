//! Bot actions as jobs: each `BotAction` job carries one action for one bridge; the job runner
//! (any Shoal process) claims it, and [`bot_action_job`] plans the protocol's calls, takes each
//! call's place in the bridge's rate limits (shared through PostgreSQL: a job that must wait is
//! put back until its time, never slept on), makes the call, logs it, and settles the job by the
//! rule in [`crate::outbound`]: done; tried again when the call is known not to have happened;
//! `unknown` — never repeated by itself — when a send may have gone out; dead when the bot
//! refused. `MemberCountRefresh` jobs ask the bots how many members each linked group has.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use super::CallBuffer;
use super::{generic, onebot, telegram, ApiCall, BotBridge, Bots, Reply};
use crate::domain::action::Action;
use crate::domain::bridge::Kind;
use crate::jobs::{JobContext, Outcome};
use crate::store::jobs::{Claimed, JobKind, NewJob};
use crate::store::outbound::{self as store, NewCall, OutboundBridge};
use crate::Config;

/// A `BotAction` job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BotActionJob {
    pub bridge_id: i64,
    pub action: Action,
    /// Who asked: "api", "test", "delivery:<id>"… (for the Jobs page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// The job that does `action` through the bridge's bot.
pub fn job(config: &Config, bridge_id: i64, action: Action, origin: &str, dedupe_key: Option<String>) -> NewJob {
    let payload = BotActionJob { bridge_id, action, origin: Some(origin.to_string()) };
    crate::jobs::new_job(config, JobKind::BotAction, json!(payload), dedupe_key)
}

/// The protocol's calls for `action` through bridge `b`.
pub fn plan(b: &OutboundBridge, action: &Action) -> Result<Vec<ApiCall>, String> {
    match b.kind {
        Kind::OneBot11 => onebot::plan(action),
        Kind::Telegram => telegram::plan(action, Utc::now().timestamp()),
        Kind::Generic => Ok(generic::plan(b.id, action)),
    }
}

/// Where one call stands.
#[derive(Debug)]
pub enum Step {
    /// The rate limits say not before this time; nothing was sent.
    Later(DateTime<Utc>),
    Answered(Reply),
}

/// One call: its place in the rate limits, the request, the call log, and what the answer
/// changes about the chat (a new chat id, a broken or mended link, a wait the platform asked
/// for). An error before the request leaves nothing done (safe to try again); after it, the
/// bookkeeping's errors are logged and the answer still returned, since the call happened.
/// A job's calls go to `log` (written with the job's settlement); others are written at once.
pub async fn perform(
    db: &PgPool,
    bots: &Bots,
    bb: &BotBridge,
    job_id: Option<i64>,
    log: Option<&CallBuffer>,
    call: &ApiCall,
) -> sqlx::Result<Step> {
    let b = &bb.bridge;
    let limits = b.effective_limits();
    let chat = call.chat_id.as_deref().unwrap_or("");
    let mut hold = None;
    if !(limits.chat.unlimited() && limits.bot.unlimited()) {
        let mut conn = db.acquire().await?;
        let margin = Duration::from_millis(bots.config.limit_margin_ms);
        match store::take(&mut conn, b.id, chat, &limits, margin, bots.hold()).await? {
            store::Grant::Wait(at) => return Ok(Step::Later(at)),
            store::Grant::Go(h) => hold = h,
        }
    }
    let started = Instant::now();
    let reply = bots.call(b, call).await;
    let latency = started.elapsed();
    if let Err(e) = record(db, bots, bb, job_id, log, call, &reply, latency, hold).await {
        tracing::warn!(bridge = b.id, method = call.method, error = %e, "could not log a bot call");
    }
    Ok(Step::Answered(reply))
}

#[allow(clippy::too_many_arguments)]
async fn record(
    db: &PgPool,
    bots: &Bots,
    bb: &BotBridge,
    job_id: Option<i64>,
    log: Option<&CallBuffer>,
    call: &ApiCall,
    reply: &Reply,
    latency: Duration,
    hold: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    let b = &bb.bridge;
    let chat = call.chat_id.as_deref().unwrap_or("");
    let result = match reply {
        Reply::Ok { result, .. } => result.clone(),
        Reply::Migrated { new_chat_id, .. } => Some(format!("migrate_to_chat_id {new_chat_id}")),
        _ => None,
    };
    let row = NewCall {
        bridge_id: b.id,
        job_id,
        action: call.action,
        method: call.method,
        chat_id: call.chat_id.clone(),
        target: call.target.clone(),
        outcome: reply.outcome(),
        status_code: reply.status().map(i32::from),
        error: reply.error().map(str::to_string),
        result,
        latency_ms: latency.as_millis().min(i32::MAX as u128) as i32,
    };
    let changes_chat = !chat.is_empty()
        && match reply {
            Reply::Ok { .. } => bb.broken.contains(chat),
            Reply::Kicked { .. } | Reply::Migrated { .. } | Reply::NotSent { retry_after: Some(_), .. } => true,
            _ => false,
        };
    let log = match log {
        Some(buffer) => {
            buffer.push(row);
            None
        }
        None => Some(row),
    };
    if hold.is_none() && !changes_chat && log.is_none() {
        return Ok(());
    }
    let mut conn = db.acquire().await?;
    if let Some(h) = hold {
        // First: the next call in the chat may start a window after this one ended.
        store::release(&mut conn, b.id, chat, h).await?;
    }
    if let Some(row) = log {
        store::log_calls(&mut conn, &[row]).await?;
    }
    if !changes_chat {
        return Ok(());
    }
    match reply {
        Reply::Ok { .. } => {
            store::clear_broken(&mut conn, b.id, chat).await?;
            bots.evict(b.id);
        }
        Reply::Kicked { error, .. } => {
            store::mark_broken(&mut conn, b.id, chat, error).await?;
            bots.evict(b.id);
        }
        Reply::NotSent { retry_after: Some(wait), .. } => {
            let until = Utc::now() + chrono::Duration::from_std(*wait).unwrap_or(chrono::Duration::seconds(5));
            store::block(&mut conn, b.id, chat, until).await?;
        }
        Reply::Migrated { new_chat_id, .. } => {
            let moved = store::migrate_chat(&mut conn, b.id, chat, new_chat_id).await?;
            tracing::info!(bridge = b.id, old = chat, new = %new_chat_id, groups = ?moved, "a chat moved to a new id");
            bots.evict(b.id);
        }
        _ => {}
    }
    Ok(())
}

/// Runs one `BotAction` job.
pub async fn bot_action_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let p: BotActionJob = match serde_json::from_value(job.job.payload.clone()) {
        Ok(p) => p,
        Err(e) => return Outcome::Dead { error: format!("the job's action cannot be read: {e}") },
    };
    let bb = match ctx.bots.get(&ctx.db, p.bridge_id).await {
        Ok(Some(b)) => b,
        Ok(None) => return Outcome::Dead { error: "the bridge no longer exists".into() },
        Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
    };
    if job.reclaimed && !p.action.idempotent() {
        // The process that held it stopped mid-attempt: the message may have gone out.
        let error = "the process sending this stopped before it finished: the message may or may not have been sent";
        let call = plan(&bb.bridge, &p.action).ok().and_then(|c| c.into_iter().next()).unwrap_or(ApiCall {
            action: p.action.name(),
            method: "?",
            body: serde_json::Value::Null,
            chat_id: Some(p.action.chat_id().to_string()),
            target: None,
        });
        let reply = Reply::Unknown { status: None, error: error.into() };
        if let Err(e) =
            record(&ctx.db, &ctx.bots, &bb, Some(job.job.id), Some(&ctx.calls), &call, &reply, Duration::ZERO, None)
                .await
        {
            tracing::warn!(error = %e, "could not log a bot call");
        }
        return Outcome::Unknown { error: error.into() };
    }
    let mut action = p.action.clone();
    let mut moved = false;
    'action: loop {
        let calls = match plan(&bb.bridge, &action) {
            Ok(c) => c,
            Err(error) => {
                let call = ApiCall {
                    action: action.name(),
                    method: "-",
                    body: serde_json::Value::Null,
                    chat_id: Some(action.chat_id().to_string()),
                    target: action.target().map(str::to_string),
                };
                let reply = Reply::Failed { status: None, error: error.clone() };
                if let Err(e) = record(
                    &ctx.db,
                    &ctx.bots,
                    &bb,
                    Some(job.job.id),
                    Some(&ctx.calls),
                    &call,
                    &reply,
                    Duration::ZERO,
                    None,
                )
                .await
                {
                    tracing::warn!(error = %e, "could not log a bot call");
                }
                return Outcome::Dead { error };
            }
        };
        for call in &calls {
            let reply = match perform(&ctx.db, &ctx.bots, &bb, Some(job.job.id), Some(&ctx.calls), call).await {
                Ok(Step::Later(at)) => return Outcome::Later { at },
                Ok(Step::Answered(r)) => r,
                Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
            };
            match reply {
                Reply::Ok { .. } => {}
                Reply::Migrated { new_chat_id, .. } if !moved => {
                    // Not done in the old chat: do it in the new one, at once.
                    action = action.with_chat_id(&new_chat_id);
                    moved = true;
                    continue 'action;
                }
                Reply::Migrated { error, .. } | Reply::Failed { error, .. } | Reply::Kicked { error, .. } => {
                    return Outcome::Dead { error }
                }
                Reply::NotSent { error, retry_after, .. } => return Outcome::Retry { error, after: retry_after },
                Reply::Unknown { error, .. } if action.idempotent() => return Outcome::Retry { error, after: None },
                Reply::Unknown { error, .. } => return Outcome::Unknown { error },
            }
        }
        return Outcome::Done;
    }
}

// ---------------------------------------------------------------- member counts

/// The job that refreshes one group's member count (`{"group_id", "bridge_id"}`), or, without a
/// group, enqueues that for every linked group (of one bridge, when `bridge_id` is given).
pub fn member_count_sweep(config: &Config, bridge_id: Option<i64>, dedupe_key: Option<String>) -> NewJob {
    crate::jobs::new_job(config, JobKind::MemberCountRefresh, json!({"bridge_id": bridge_id}), dedupe_key)
}

pub async fn member_count_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let p = &job.job.payload;
    let bridge_id = p.get("bridge_id").and_then(serde_json::Value::as_i64);
    match p.get("group_id").and_then(serde_json::Value::as_i64) {
        None => sweep(ctx, job.job.id, bridge_id).await,
        Some(group_id) => match bridge_id {
            Some(b) => refresh_one(ctx, job.job.id, b, group_id).await,
            None => Outcome::Dead { error: "the job names no bridge".into() },
        },
    }
}

async fn sweep(ctx: &JobContext, job_id: i64, bridge_id: Option<i64>) -> Outcome {
    let done = async {
        let mut tx = ctx.db.begin().await?;
        let targets = store::count_targets(&mut tx, bridge_id).await?;
        for (group_id, bridge_id) in &targets {
            let job = crate::jobs::new_job(
                &ctx.config,
                JobKind::MemberCountRefresh,
                json!({"group_id": group_id, "bridge_id": bridge_id}),
                Some(format!("member_count:{group_id}:{job_id}")),
            );
            crate::store::jobs::enqueue(&mut tx, &job).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    match done {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry { error: e.to_string(), after: None },
    }
}

async fn refresh_one(ctx: &JobContext, job_id: i64, bridge_id: i64, group_id: i64) -> Outcome {
    let bb = match ctx.bots.get(&ctx.db, bridge_id).await {
        Ok(Some(b)) => b,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
    };
    let chat = async { store::linked_chat(&mut *ctx.db.acquire().await?, bridge_id, group_id).await }.await;
    let chat = match chat {
        // No longer linked, or the bot was removed: nothing to ask.
        Ok(Some(c)) if c.link_broken_at.is_none() => c,
        Ok(_) => return Outcome::Done,
        Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
    };
    let b = &bb.bridge;
    let calls = match b.kind {
        Kind::OneBot11 => vec![onebot::member_count(&chat.chat_id), onebot::member_list(&chat.chat_id)],
        Kind::Telegram => vec![telegram::member_count(&chat.chat_id)],
        Kind::Generic => vec![generic::member_count(b.id, &chat.chat_id)],
    };
    for call in calls {
        let reply = match perform(&ctx.db, &ctx.bots, &bb, Some(job_id), Some(&ctx.calls), &call).await {
            Ok(Step::Later(at)) => return Outcome::Later { at },
            Ok(Step::Answered(r)) => r,
            Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
        };
        match reply {
            Reply::Ok { result, .. } => {
                let Some(n) = result.and_then(|r| r.parse::<i64>().ok()) else {
                    // OneBot: some implementations give no count; the member list is next.
                    continue;
                };
                let n = n.clamp(0, 1_000_000) as i32;
                let saved = async {
                    let mut conn = ctx.db.acquire().await?;
                    crate::store::groups::set_member_count(&mut conn, group_id, n).await
                }
                .await;
                return match saved {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Retry { error: e.to_string(), after: None },
                };
            }
            // The group has its new id now: ask again under it.
            Reply::Migrated { error, .. } => return Outcome::Retry { error, after: Some(Duration::from_millis(100)) },
            Reply::NotSent { error, retry_after, .. } => return Outcome::Retry { error, after: retry_after },
            // A question, not an act: asking again is harmless.
            Reply::Unknown { error, .. } => return Outcome::Retry { error, after: None },
            Reply::Failed { error, .. } | Reply::Kicked { error, .. } => return Outcome::Dead { error },
        }
    }
    Outcome::Dead { error: "the bot's answer held no member count".into() }
}

/// Every process with job workers: enqueues a member-count sweep once per
/// `outbound.member_count_interval_secs` (a dedupe key per period, so one process's wins), and
/// prunes the call log to `outbound.keep_calls_days` once an hour.
pub fn spawn_upkeep(db: PgPool, config: std::sync::Arc<Config>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = config.outbound.member_count_interval_secs;
        let tick = Duration::from_secs(if interval == 0 { 3600 } else { interval.clamp(1, 60) });
        let mut last_period = None;
        let mut last_prune: Option<Instant> = None;
        loop {
            if let Some(period) = (Utc::now().timestamp() as u64).checked_div(interval) {
                if last_period != Some(period) {
                    match enqueue_sweep(&db, &config, period).await {
                        Ok(()) => last_period = Some(period),
                        Err(e) => tracing::warn!(error = %e, "could not enqueue the member-count refresh"),
                    }
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                let keep = Duration::from_secs(config.outbound.keep_calls_days.saturating_mul(86_400));
                let pruned = async { store::prune_calls(&mut *db.acquire().await?, keep).await }.await;
                if let Err(e) = pruned {
                    tracing::warn!(error = %e, "could not prune the bots' call log");
                }
            }
            tokio::time::sleep(tick).await;
        }
    })
}

async fn enqueue_sweep(db: &PgPool, config: &Config, period: u64) -> sqlx::Result<()> {
    let mut conn = db.acquire().await?;
    if store::any_count_target(&mut conn).await? {
        let job = member_count_sweep(config, None, Some(format!("member_counts:{period}")));
        crate::store::jobs::enqueue(&mut conn, &job).await?;
    }
    Ok(())
}
