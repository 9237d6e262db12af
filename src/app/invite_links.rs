//! Per-member platform invite links and join hints. A member's Telegram link for a group is
//! made lazily: the first ask (the member's page, the `邀请` command) writes its pending row and
//! enqueues one `invite_link` job in the same transaction — the row's unique key makes that
//! once per member and group, whatever the concurrency — and the job calls
//! `createChatInviteLink(name = the member's code)` and keeps the link; until then the asker
//! gets the live-code link. A group's setting (`set_join_request`, audited) makes the links ask
//! to join, for public groups where plain links are not reported. Join hints keep what a join
//! request said about the applicant's inviter (Telegram `invite_link.name`, go-cqhttp
//! `invitor_id`) for the join that follows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use super::{record, Done};
use crate::auth::Principal;
use crate::domain::invite_link::{self as rules, LinkStatus, HINT_WINDOW_HOURS};
use crate::error::{AppError, AppResult};
use crate::jobs::{JobContext, Outcome};
use crate::outbound::dispatch::{perform, Step};
use crate::outbound::{ApiCall, Reply};
use crate::store;
use crate::store::invite_links as db;
use crate::store::jobs::{Claimed, JobKind, NewJob};

/// Where a member's platform link for a group stands, for whoever shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkNow {
    /// The group's platform or bot cannot make one (not Telegram, no bot token, the bot refused).
    NotPossible,
    /// Asked for; the job has not made it yet.
    Making,
    Ready(String),
}

/// The member's link for the group: the one made already, or — where the group's bot can make
/// one and nobody asked yet — a pending row and its job, in a transaction of their own (a
/// savepoint inside the caller's).
pub async fn link_for(conn: &mut PgConnection, member: i64, group: i64) -> sqlx::Result<LinkNow> {
    if let Some(r) = db::get(conn, member, group).await? {
        return Ok(match (r.status, r.invite_link) {
            (LinkStatus::Created, Some(l)) => LinkNow::Ready(l),
            (LinkStatus::Pending, _) => LinkNow::Making,
            _ => LinkNow::NotPossible,
        });
    }
    let Some((_, _, join_request)) = db::telegram_chat(conn, group).await? else { return Ok(LinkNow::NotPossible) };
    let mut tx = conn.begin().await?;
    let Some(code) = store::invites::code_of(&mut tx, member).await? else { return Ok(LinkNow::NotPossible) };
    if let Some(id) = db::insert_pending(&mut tx, member, group, &code, join_request).await? {
        store::jobs::enqueue(&mut tx, &job_for(id)).await?;
    }
    tx.commit().await?;
    Ok(LinkNow::Making)
}

/// The job that makes link row `id`: one per row ever (its dedupe key).
fn job_for(id: i64) -> NewJob {
    NewJob {
        kind: JobKind::InviteLink,
        payload: json!({"link_id": id}),
        run_at: None,
        max_attempts: 5,
        dedupe_key: Some(format!("invite_link:{id}")),
    }
}

/// A member's link for one of their groups, for the member's page and the bot.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlatformLink {
    pub group_id: i64,
    pub group_name: String,
    /// The link; None while it is being made.
    pub link: Option<String>,
}

/// The member's links for the groups among `groups` they are in, where one is possible (asked
/// for when missing).
pub async fn links_in(conn: &mut PgConnection, member: i64, groups: &[i64]) -> sqlx::Result<Vec<PlatformLink>> {
    let mut out = Vec::new();
    for (group_id, group_name) in db::member_groups(conn, member, groups).await? {
        let link = match link_for(conn, member, group_id).await? {
            LinkNow::NotPossible => continue,
            LinkNow::Making => None,
            LinkNow::Ready(l) => Some(l),
        };
        out.push(PlatformLink { group_id, group_name, link });
    }
    Ok(out)
}

/// `JobKind::InviteLink`: asks the group's bot for the member's link and keeps it. A link made
/// already is left alone; a refusal marks the row failed (the job is dead, and can be retried
/// from Settings → Jobs); an unanswered call marks it unknown and is never repeated by itself.
pub async fn job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let Some(id) = job.job.payload.get("link_id").and_then(serde_json::Value::as_i64) else {
        return Outcome::Dead { error: "the payload names no link".into() };
    };
    match make(ctx, job, id).await {
        Ok(o) => o,
        Err(e) => Outcome::Retry { error: e.to_string(), after: None },
    }
}

async fn make(ctx: &JobContext, job: &Claimed, id: i64) -> sqlx::Result<Outcome> {
    let mut conn = ctx.db.acquire().await?;
    let Some(row) = db::by_id(&mut conn, id).await? else { return Ok(Outcome::Done) };
    if row.status == LinkStatus::Created {
        return Ok(Outcome::Done);
    }
    let Some((bridge, chat, join_request)) = db::telegram_chat(&mut conn, row.group_id).await? else {
        let error = "the group has no Telegram bot that can make invite links";
        db::set_status(&mut conn, id, LinkStatus::Failed, error).await?;
        return Ok(Outcome::Dead { error: error.into() });
    };
    if job.reclaimed {
        let error = "the process making this link stopped before it finished: the link may or may not exist";
        db::set_status(&mut conn, id, LinkStatus::Unknown, error).await?;
        return Ok(Outcome::Unknown { error: error.into() });
    }
    drop(conn);
    let Some(bb) = ctx.bots.get(&ctx.db, bridge).await? else {
        return Ok(Outcome::Dead { error: "the bridge no longer exists".into() });
    };
    let call = ApiCall {
        action: "invite_link",
        method: "createChatInviteLink",
        body: rules::create_body(crate::outbound::id_value(&chat), &row.name, join_request),
        chat_id: Some(chat),
        target: Some(row.member_id.to_string()),
    };
    let reply = match perform(&ctx.db, &ctx.bots, &bb, Some(job.job.id), Some(&ctx.calls), &call).await? {
        Step::Later(at) => return Ok(Outcome::Later { at }),
        Step::Answered(r) => r,
    };
    let mut conn = ctx.db.acquire().await?;
    Ok(match reply {
        Reply::Ok { data, .. } => match rules::link_of(&data) {
            Some(link) => {
                db::set_created(&mut conn, id, &link, join_request).await?;
                Outcome::Done
            }
            None => {
                let error = "the bot's answer held no invite link";
                db::set_status(&mut conn, id, LinkStatus::Failed, error).await?;
                Outcome::Dead { error: error.into() }
            }
        },
        // The group has its new id now: ask again under it.
        Reply::Migrated { error, .. } => Outcome::Retry { error, after: Some(std::time::Duration::from_millis(100)) },
        Reply::NotSent { error, retry_after, .. } => Outcome::Retry { error, after: retry_after },
        Reply::Unknown { error, .. } => {
            db::set_status(&mut conn, id, LinkStatus::Unknown, &error).await?;
            Outcome::Unknown { error }
        }
        Reply::Failed { error, .. } | Reply::Kicked { error, .. } => {
            db::set_status(&mut conn, id, LinkStatus::Failed, &error).await?;
            Outcome::Dead { error }
        }
    })
}

// ---------------------------------------------------------------- the group's setting

/// A group's personal-link setting and how its links stand.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkSetting {
    /// New personal links ask to join (`creates_join_request`): for public groups, where a join
    /// through a plain link is not reported with the link. Links made before keep their kind.
    pub join_request: bool,
    /// Links per state (pending, created, failed, unknown).
    pub links: std::collections::BTreeMap<String, i64>,
}

/// A group's setting (404 outside the principal's scope).
pub async fn setting(conn: &mut PgConnection, who: &Principal, group: i64) -> AppResult<LinkSetting> {
    if !who.sees_group(group) {
        return Err(AppError::NotFound);
    }
    let join_request = db::join_request_setting(conn, group).await?.ok_or(AppError::NotFound)?;
    let links = db::counts(conn, group).await?.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect();
    Ok(LinkSetting { join_request, links })
}

/// Sets whether the group's new personal links ask to join. `group.invite_links`.
pub async fn set_join_request(
    conn: &mut PgConnection,
    who: &Principal,
    group: i64,
    on: bool,
) -> AppResult<Done<LinkSetting>> {
    who.require_write()?;
    if !who.sees_group(group) || !db::set_join_request_setting(conn, group, on).await? {
        return Err(AppError::NotFound);
    }
    record(conn, who, "group.invite_links", "group", Some(group), json!({"join_request": on})).await?;
    Ok(Done::plain(setting(conn, who, group).await?))
}

// ---------------------------------------------------------------- join hints

/// A join request into `group` from `member` said who brought them: a link's name (kept when it
/// can be a member's code) or the inviter. Kept for the join that follows.
pub async fn note_request(
    conn: &mut PgConnection,
    group: i64,
    member: i64,
    link_name: Option<&str>,
    inviter: Option<i64>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    let link_name = link_name.map(str::trim).filter(|n| crate::domain::invite::is_code(n));
    let inviter = inviter.filter(|i| *i != member);
    if link_name.is_none() && inviter.is_none() {
        return Ok(());
    }
    db::put_hint(conn, group, member, link_name, inviter, at).await
}

/// What the member's latest join request into the group said (link name, inviter), taken by
/// their join at `at` when the request came within [`HINT_WINDOW_HOURS`] before it.
pub async fn hint_for_join(
    conn: &mut PgConnection,
    group: i64,
    member: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<(Option<String>, Option<i64>)> {
    Ok(db::take_hint(conn, group, member, at, HINT_WINDOW_HOURS).await?.unwrap_or((None, None)))
}
