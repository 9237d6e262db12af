//! Broadcasts at run time: an occurrence (a `BroadcastOccurrence` job, or at once for "now")
//! resolves the broadcast's groups, writes one delivery row per group and a `bot_action` job for
//! each (the same outbound code, rate limits and call log as every bot action), and schedules
//! the next occurrence of a recurring broadcast — each step once, however often the job runs:
//! deliveries are unique per (broadcast, group, occurrence), the next occurrence's job has a
//! dedupe key, and an occurrence whose job is no longer the broadcast's `next_job_id` does
//! nothing. A delivery row follows its job's settlement ([`follow_jobs`], called by the job
//! settler in the same transaction).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use crate::domain::action::Action;
use crate::domain::bridge::Kind;
use crate::domain::broadcast::{BroadcastState, DeliveryState, Every, Recurrence, MAX_MENTIONS};
use crate::jobs::{JobContext, Outcome};
use crate::outbound::dispatch;
use crate::store::broadcasts::{self as store, BroadcastRow, NewDelivery, Target};
use crate::store::jobs::{self as jobs, Claimed, JobKind, NewJob};
use crate::Config;

/// Why a delivery did not go out, when Shoal decided it (shown in words on the pages).
pub const NO_BOT: &str = "no_bot";
pub const ALL_CHECKED_IN: &str = "all_checked_in";

/// A `BroadcastOccurrence` job's payload: the occurrence at `at`; for a recurring broadcast, the
/// groups whose next occurrence after `since` is at or before `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OccurrenceJob {
    pub broadcast_id: i64,
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// The job of the occurrence at `at` (not run before it); one per broadcast and time.
pub fn occurrence(config: &Config, broadcast_id: i64, since: Option<DateTime<Utc>>, at: DateTime<Utc>) -> NewJob {
    let payload = OccurrenceJob { broadcast_id, since, at };
    let mut job = crate::jobs::new_job(
        config,
        JobKind::BroadcastOccurrence,
        json!(payload),
        Some(format!("broadcast:{broadcast_id}:{}", at.timestamp_millis())),
    );
    job.run_at = Some(at);
    job
}

/// A recurring broadcast's rule.
pub fn recurrence(b: &BroadcastRow) -> Option<Recurrence> {
    Some(Recurrence {
        every: b.every?,
        at: b.local_time?,
        weekdays: if b.every == Some(Every::Weekly) {
            b.weekdays.iter().map(|d| (*d).clamp(1, 7) as u8).collect()
        } else {
            Vec::new()
        },
    })
}

/// The first occurrence after `after` over the groups' zones (the default zone without groups).
pub fn next_over(r: &Recurrence, targets: &[Target], after: DateTime<Utc>) -> DateTime<Utc> {
    targets
        .iter()
        .map(|t| r.next_after(t.timezone, after))
        .min()
        .unwrap_or_else(|| r.next_after(crate::domain::group::DEFAULT_ZONE, after))
}

/// Enqueues the occurrence at `at` and records it as the broadcast's next.
pub async fn schedule(
    conn: &mut PgConnection,
    config: &Config,
    id: i64,
    since: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let job = occurrence(config, id, since, at);
    let job_id = match jobs::enqueue(conn, &job).await? {
        Some(j) => Some(j),
        // That occurrence's job exists already: it stays the next one.
        None => store::job_by_key(conn, job.dedupe_key.as_deref().unwrap_or_default()).await?,
    };
    store::set_next(conn, id, Some(at), job_id, BroadcastState::Scheduled).await
}

/// The text as it goes to a chat of `kind`: the operator's text escaped for the platform, and
/// the members named — OneBot: an `[CQ:at]` each; Telegram: a `text_mention` each (the member's
/// name, escaped, marked for the outbound adapter, which sends it as `entities`: a real
/// mention, which notifies members without a username too); generic bridges: nobody.
pub fn render(kind: Kind, text: &str, mentions: &[(String, String)]) -> String {
    let protocol = kind.protocol();
    let mut out = protocol.escape(text);
    let named: Vec<String> = match kind {
        Kind::OneBot11 => {
            mentions.iter().map(|(id, _)| format!("[CQ:at,qq={}]", crate::bridges::onebot::escape_cq(id))).collect()
        }
        Kind::Telegram => mentions
            .iter()
            .map(|(id, name)| protocol.mention(id, if name.trim().is_empty() { id } else { name }))
            .collect(),
        Kind::Generic => Vec::new(),
    };
    if !named.is_empty() {
        out.push('\n');
        out.push_str(&named.join(" "));
    }
    out
}

/// Whether a member can be mentioned on `kind`: OneBot and Telegram name members by their
/// numeric id (a Telegram `text_mention` needs the user's number); generic bridges by nothing.
pub fn mentionable(kind: Kind, user_id: &str) -> bool {
    match kind {
        Kind::OneBot11 => true,
        Kind::Telegram => user_id.parse::<i64>().is_ok(),
        Kind::Generic => false,
    }
}

/// The public address the bots fetch a broadcast's picture from: unguessable (a random token of
/// 256 bits, like a poster link), served only while the broadcast has the picture.
pub fn image_url(config: &Config, id: i64, token: &str) -> String {
    format!("{}/b/{id}/{token}", config.public_url.trim_end_matches('/'))
}

/// Writes group `t`'s delivery of the occurrence at `occurrence_at` and queues its send, unless
/// it exists already. A group without a bot gets a failed delivery (`no_bot`); a reminder that
/// names the unchecked to a group where everyone has checked in today is not sent
/// (`all_checked_in`, cancelled).
pub async fn materialize(
    conn: &mut PgConnection,
    config: &Config,
    b: &BroadcastRow,
    t: &Target,
    occurrence_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let kind = t.bridge_kind.as_deref().and_then(Kind::parse);
    let mut new = NewDelivery {
        broadcast_id: b.id,
        group_id: t.group_id,
        occurrence_at,
        bridge_id: t.bridge_id,
        chat_id: t.chat_id.as_deref(),
        state: DeliveryState::Queued,
        error: None,
        mentioned: 0,
    };
    let (Some(kind), Some(bridge_id), Some(chat)) = (kind, t.bridge_id, t.chat_id.as_deref()) else {
        new.state = DeliveryState::Failed;
        new.error = Some(NO_BOT);
        store::insert_delivery(conn, &new).await?;
        return Ok(());
    };
    let mut mentions = Vec::new();
    if b.mention_unchecked {
        let day = now.with_timezone(&t.timezone.tz()).date_naive();
        mentions = store::unchecked_members(conn, t.group_id, day, MAX_MENTIONS as i64).await?;
        if mentions.is_empty() {
            new.state = DeliveryState::Cancelled;
            new.error = Some(ALL_CHECKED_IN);
            store::insert_delivery(conn, &new).await?;
            return Ok(());
        }
        mentions.retain(|(id, _)| mentionable(kind, id));
        new.mentioned = mentions.len() as i32;
    }
    let Some(id) = store::insert_delivery(conn, &new).await? else { return Ok(()) };
    let text = render(kind, &b.text, &mentions);
    let action = match &b.image_token {
        Some(token) if b.has_image => Action::SendPhoto {
            chat_id: chat.to_string(),
            url: image_url(config, b.id, token),
            caption: Some(text),
            reply_to: None,
            thread_id: None,
        },
        _ => Action::Send {
            chat_id: chat.to_string(),
            text,
            reply_to: None,
            thread_id: None,
            mention: false,
            user_id: None,
        },
    };
    let job = dispatch::job(
        config,
        bridge_id,
        action,
        &format!("broadcast:{}", b.id),
        Some(format!("broadcast_delivery:{id}")),
    );
    if let Some(job_id) = jobs::enqueue(conn, &job).await? {
        store::set_delivery_job(conn, id, job_id).await?;
    }
    Ok(())
}

/// Runs one occurrence (see the module's comment).
pub async fn occurrence_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let p: OccurrenceJob = match serde_json::from_value(job.job.payload.clone()) {
        Ok(p) => p,
        Err(e) => return Outcome::Dead { error: format!("the job cannot be read: {e}") },
    };
    match run_occurrence(ctx, job.job.id, &p).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry { error: e.to_string(), after: None },
    }
}

async fn run_occurrence(ctx: &JobContext, job_id: i64, p: &OccurrenceJob) -> sqlx::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let Some(b) = store::lock(&mut tx, p.broadcast_id).await? else { return Ok(()) };
    // Cancelled, over, or this occurrence was run already (its successor is the next one now).
    if b.state != BroadcastState::Scheduled || b.next_job_id != Some(job_id) {
        return Ok(());
    }
    let now = Utc::now();
    let targets = store::targets(&mut tx, b.audience, &b.group_ids, b.tag.as_deref(), b.scope.as_deref()).await?;
    match recurrence(&b) {
        None => {
            for t in &targets {
                materialize(&mut tx, &ctx.config, &b, t, p.at, now).await?;
            }
            store::set_next(&mut tx, b.id, None, None, BroadcastState::Done).await?;
        }
        Some(r) => {
            let since = p.since.unwrap_or(b.created_at);
            for t in &targets {
                let o = r.next_after(t.timezone, since);
                if o <= p.at {
                    materialize(&mut tx, &ctx.config, &b, t, o, now).await?;
                }
            }
            // After a pause (every process stopped), go on from now: missed occurrences are not
            // sent late one after another.
            let base = p.at.max(now);
            let next = next_over(&r, &targets, base);
            schedule(&mut tx, &ctx.config, b.id, Some(base), next).await?;
        }
    }
    tx.commit().await
}

/// Moves the deliveries of settled bot_action jobs along with them (`store::broadcasts::
/// follow_jobs`); their call-log rows must be written first (the message id is read from them).
pub async fn follow_jobs(conn: &mut PgConnection, job_ids: &[i64]) -> sqlx::Result<()> {
    store::follow_jobs(conn, job_ids).await?;
    Ok(())
}
