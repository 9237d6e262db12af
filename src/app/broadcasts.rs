//! Broadcasts (定时群发) and check-in reminders as use cases: preview, create (schedule), cancel,
//! read one with its deliveries, and switch a group's reminder. The broadcast pages and
//! `/api/v1/broadcasts` call these alike (same checks, same messages, same audit rows).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;

use super::{invalid, Done};
use crate::auth::Principal;
use crate::broadcasts as run;
use crate::domain::bridge::Kind;
use crate::domain::broadcast::{Audience, BroadcastSpec, BroadcastState, When, MAX_CAPTION};
use crate::error::{AppError, AppResult};
use crate::store::broadcasts::{self as store, BroadcastRow, DeliveryRow, NewBroadcast, Target};
use crate::Config;

/// The text as one platform will show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlatformText {
    /// The bridge kind: `onebot11` (QQ), `telegram`, `generic`.
    pub kind: String,
    pub text: String,
    /// How many of the target groups get it in this form.
    pub groups: usize,
}

/// What a broadcast would do, before it is scheduled.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// The groups it would go to now (a tag's and the reminders' groups are looked up again at
    /// each occurrence).
    pub targets: Vec<Target>,
    /// Target groups no bot can send to (their delivery will fail).
    pub without_bot: usize,
    pub texts: Vec<PlatformText>,
    /// The first occurrence (recurring: over the groups' time zones); None: now.
    pub first_at: Option<DateTime<Utc>>,
    /// A picture goes with the text (the text is its caption).
    pub image: bool,
}

async fn targets_of(conn: &mut PgConnection, who: &Principal, spec: &BroadcastSpec) -> AppResult<Vec<Target>> {
    if spec.image.is_some() && spec.text.chars().count() > MAX_CAPTION {
        return Err(invalid("text", "broadcasts.error.caption_too_long"));
    }
    let scope = who.group_filter();
    let targets = store::targets(conn, spec.audience, &spec.group_ids, spec.tag.as_deref(), scope.as_deref()).await?;
    if spec.audience == Audience::Groups && spec.group_ids.iter().any(|id| !targets.iter().any(|t| t.group_id == *id)) {
        // Unknown, archived and out-of-scope groups alike.
        return Err(invalid("group_ids", "broadcasts.error.unknown_group"));
    }
    Ok(targets)
}

fn first_at(spec: &BroadcastSpec, targets: &[Target], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match &spec.when {
        When::Now => None,
        When::At(at) => Some(*at),
        When::Every(r) => Some(run::next_over(r, targets, now)),
    }
}

/// What `spec` would send where (principals who may write). 422 for groups the principal cannot
/// use.
pub async fn preview(conn: &mut PgConnection, who: &Principal, spec: &BroadcastSpec) -> AppResult<Preview> {
    who.require_write()?;
    let targets = targets_of(conn, who, spec).await?;
    let mut texts = Vec::new();
    for kind in Kind::ALL {
        let groups = targets.iter().filter(|t| t.bridge_kind.as_deref() == Some(kind.as_str())).count();
        if groups > 0 {
            texts.push(PlatformText { kind: kind.as_str().into(), text: run::render(kind, &spec.text, &[]), groups });
        }
    }
    let without_bot = targets.iter().filter(|t| t.bridge_id.is_none() || t.chat_id.is_none()).count();
    Ok(Preview {
        first_at: first_at(spec, &targets, Utc::now()),
        targets,
        without_bot,
        texts,
        image: spec.image.is_some(),
    })
}

/// Schedules a broadcast (principals who may write, to groups in their scope): "now" writes its
/// deliveries and queues their sends in this transaction; a time or a recurrence queues the
/// first occurrence's job.
pub async fn create(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    spec: &BroadcastSpec,
) -> AppResult<Done<BroadcastRow>> {
    who.require_write()?;
    let targets = targets_of(conn, who, spec).await?;
    let (send_at, every, local_time, weekdays) = match &spec.when {
        When::Now => (None, None, None, Vec::new()),
        When::At(at) => (Some(*at), None, None, Vec::new()),
        When::Every(r) => (None, Some(r.every), Some(r.at), r.weekdays.iter().map(|d| i16::from(*d)).collect()),
    };
    let scope = match spec.audience {
        Audience::Groups => Some(spec.group_ids.clone()),
        _ => who.group_filter(),
    };
    let token = spec.image.as_ref().map(|_| crate::auth::random_token(32));
    let image = spec.image.as_ref().zip(token.as_deref()).map(|(i, t)| (i.content_type, i.bytes.as_slice(), t));
    let mut b = store::insert(
        conn,
        &NewBroadcast {
            text: &spec.text,
            audience: spec.audience,
            group_ids: &spec.group_ids,
            tag: spec.tag.as_deref(),
            scope: scope.as_deref(),
            mention_unchecked: spec.mention_unchecked,
            send_at,
            every,
            local_time,
            weekdays: &weekdays,
            created_by: &who.name,
            image,
        },
    )
    .await?;
    let now = Utc::now();
    match &spec.when {
        When::Now => {
            for t in &targets {
                run::materialize(conn, config, &b, t, now, now).await?;
            }
            store::set_next(conn, b.id, None, None, BroadcastState::Done).await?;
        }
        When::At(at) => run::schedule(conn, config, b.id, None, *at).await?,
        When::Every(r) => run::schedule(conn, config, b.id, Some(now), run::next_over(r, &targets, now)).await?,
    }
    b = store::get(conn, b.id, None).await?.ok_or(AppError::NotFound)?;
    super::record(
        conn,
        who,
        "broadcast.create",
        "broadcast",
        Some(b.id),
        json!({"audience": b.audience, "groups": targets.len(), "tag": b.tag, "send_at": b.send_at, "image": b.has_image,
               "every": b.every, "next_at": b.next_at, "mention_unchecked": b.mention_unchecked}),
    )
    .await?;
    Ok(Done::plain(b))
}

/// A broadcast the principal may see; 404 otherwise.
pub async fn get(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    limit: i64,
) -> AppResult<(BroadcastRow, Vec<DeliveryRow>)> {
    let b = store::get(conn, id, who.group_filter().as_deref()).await?.ok_or(AppError::NotFound)?;
    let d = store::deliveries(conn, id, limit).await?;
    Ok((b, d))
}

/// Cancels a broadcast: its next occurrence, and every delivery not yet being sent. 409 when it
/// is cancelled already. Returns the broadcast and how many deliveries were stopped.
pub async fn cancel(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<(BroadcastRow, i64)>> {
    who.require_write()?;
    let scope = who.group_filter();
    store::get(conn, id, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    let before = store::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    if before.state == BroadcastState::Cancelled {
        return Err(AppError::Conflict("the broadcast is cancelled already".into()));
    }
    let stopped = store::cancel(conn, id).await?;
    let b = store::get(conn, id, None).await?.ok_or(AppError::NotFound)?;
    super::record(
        conn,
        who,
        "broadcast.cancel",
        "broadcast",
        Some(id),
        json!({"state": before.state, "stopped": stopped}),
    )
    .await?;
    Ok(Done::plain((b, stopped)))
}

/// Turns a group's check-in reminder on or off (principals who may write, in scope: 404
/// otherwise). Whether it changed.
pub async fn set_reminder(conn: &mut PgConnection, who: &Principal, group_id: i64, on: bool) -> AppResult<Done<bool>> {
    who.require_write()?;
    who.require_group(group_id)?;
    crate::store::groups::get(conn, group_id).await?.ok_or(AppError::NotFound)?;
    let changed = store::set_reminder(conn, group_id, on).await?;
    if changed {
        super::record(conn, who, "broadcast.reminder", "group", Some(group_id), json!({"enabled": on})).await?;
    }
    Ok(Done::plain(changed))
}
