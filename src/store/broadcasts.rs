//! Broadcasts' SQL: the broadcast rows, their target groups as each occurrence resolves them,
//! one delivery row per group and occurrence (written once: `UNIQUE (broadcast_id, group_id,
//! occurrence_at)`), the delivery rows following their bot_action jobs' settlements, cancelling
//! what has not gone out, the members who have not checked in today, and the reminder switch.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::broadcast::{Audience, BroadcastState, DeliveryState, Every};
use crate::domain::Zone;

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct BroadcastRow {
    pub id: i64,
    pub text: String,
    pub audience: Audience,
    pub group_ids: Vec<i64>,
    pub tag: Option<String>,
    #[serde(skip)]
    pub scope: Option<Vec<i64>>,
    pub mention_unchecked: bool,
    /// A picture goes with the text (the text is its caption).
    pub has_image: bool,
    #[serde(skip)]
    pub image_token: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    pub every: Option<Every>,
    #[schema(value_type = Option<String>)]
    pub local_time: Option<NaiveTime>,
    pub weekdays: Vec<i16>,
    pub state: BroadcastState,
    pub next_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub next_job_id: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, text, audience, group_ids, tag, scope, mention_unchecked, image IS NOT NULL AS has_image, \
                       image_token, send_at, every, local_time, weekdays, state, next_at, next_job_id, created_by, \
                       created_at, cancelled_at";

/// Whom a principal's `group_filter` lets see: every broadcast without a filter; with one, the
/// broadcasts whose groups (chosen, or the creator's scope) are all among its groups.
const VISIBLE: &str = "($1::bigint[] IS NULL OR (scope IS NOT NULL AND scope <@ $1))";

pub struct NewBroadcast<'a> {
    pub text: &'a str,
    pub audience: Audience,
    pub group_ids: &'a [i64],
    pub tag: Option<&'a str>,
    pub scope: Option<&'a [i64]>,
    pub mention_unchecked: bool,
    pub send_at: Option<DateTime<Utc>>,
    pub every: Option<Every>,
    pub local_time: Option<NaiveTime>,
    pub weekdays: &'a [i16],
    pub created_by: &'a str,
    /// (content type, bytes, token of its public address)
    pub image: Option<(&'a str, &'a [u8], &'a str)>,
}

pub async fn insert(conn: &mut PgConnection, b: &NewBroadcast<'_>) -> sqlx::Result<BroadcastRow> {
    sqlx::query_as(&format!(
        "INSERT INTO broadcasts (text, audience, group_ids, tag, scope, mention_unchecked, send_at, every,
                                 local_time, weekdays, created_by, image_type, image, image_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {COLUMNS}"
    ))
    .bind(b.text)
    .bind(b.audience)
    .bind(b.group_ids)
    .bind(b.tag)
    .bind(b.scope)
    .bind(b.mention_unchecked)
    .bind(b.send_at)
    .bind(b.every)
    .bind(b.local_time)
    .bind(b.weekdays)
    .bind(b.created_by)
    .bind(b.image.map(|i| i.0))
    .bind(b.image.map(|i| i.1))
    .bind(b.image.map(|i| i.2))
    .fetch_one(conn)
    .await
}

/// The broadcast, locked for the caller's transaction (an occurrence and a cancel wait for each
/// other).
pub async fn lock(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<BroadcastRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM broadcasts WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn get(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<BroadcastRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM broadcasts WHERE {VISIBLE} AND id = $2"))
        .bind(scope)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A page of broadcasts, newest first; `before` is the last id of the previous page.
pub async fn list(
    conn: &mut PgConnection,
    scope: Option<&[i64]>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<BroadcastRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM broadcasts WHERE {VISIBLE} AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(scope)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The job with this dedupe key, if any.
pub async fn job_by_key(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1").bind(key).fetch_optional(conn).await
}

/// A broadcast's picture for its public address: (content type, bytes, token).
pub async fn image(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<(String, Vec<u8>, String)>> {
    sqlx::query_as("SELECT image_type, image, image_token FROM broadcasts WHERE id = $1 AND image IS NOT NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The next occurrence: its time and job (none: the broadcast is over).
pub async fn set_next(
    conn: &mut PgConnection,
    id: i64,
    next_at: Option<DateTime<Utc>>,
    next_job_id: Option<i64>,
    state: BroadcastState,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE broadcasts SET next_at = $2, next_job_id = $3, state = $4 WHERE id = $1")
        .bind(id)
        .bind(next_at)
        .bind(next_job_id)
        .bind(state)
        .execute(conn)
        .await?;
    Ok(())
}

/// A group an occurrence goes to, with the bot that can send there (if any).
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Target {
    pub group_id: i64,
    pub name: String,
    #[schema(value_type = String)]
    pub timezone: Zone,
    pub chat_id: Option<String>,
    pub bridge_id: Option<i64>,
    /// The bridge's kind (`onebot11`, `telegram`, `generic`).
    pub bridge_kind: Option<String>,
}

/// The groups of an audience now (never archived ones), within `scope`.
pub async fn targets(
    conn: &mut PgConnection,
    audience: Audience,
    group_ids: &[i64],
    tag: Option<&str>,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<Target>> {
    sqlx::query_as(
        "SELECT g.id AS group_id, g.name, g.timezone, g.external_chat_id AS chat_id, b.id AS bridge_id,
                b.kind AS bridge_kind
         FROM groups g
         LEFT JOIN LATERAL (
             SELECT b.id, b.kind FROM bridges b
             WHERE g.external_chat_id IS NOT NULL
               AND (g.bridge_id = b.id OR (g.bridge_id IS NULL AND g.platform = b.platform))
               AND CASE b.kind WHEN 'telegram' THEN b.access_token IS NOT NULL ELSE b.api_base_url IS NOT NULL END
             ORDER BY (g.bridge_id = b.id) DESC NULLS LAST, b.id LIMIT 1
         ) b ON true
         WHERE g.status <> 'archived' AND ($1::bigint[] IS NULL OR g.id = ANY ($1))
           AND CASE $2 WHEN 'groups' THEN g.id = ANY ($3)
                       WHEN 'tag' THEN g.tags @> ARRAY[$4::text]
                       ELSE EXISTS (SELECT 1 FROM reminder_groups r WHERE r.group_id = g.id) END
         ORDER BY g.id",
    )
    .bind(scope)
    .bind(audience.as_str())
    .bind(group_ids)
    .bind(tag)
    .fetch_all(conn)
    .await
}

/// A delivery to write.
pub struct NewDelivery<'a> {
    pub broadcast_id: i64,
    pub group_id: i64,
    pub occurrence_at: DateTime<Utc>,
    pub bridge_id: Option<i64>,
    pub chat_id: Option<&'a str>,
    pub state: DeliveryState,
    pub error: Option<&'a str>,
    pub mentioned: i32,
}

/// Writes a delivery unless the group has one for this occurrence already (an occurrence run a
/// second time); its id when written.
pub async fn insert_delivery(conn: &mut PgConnection, d: &NewDelivery<'_>) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO broadcast_deliveries (broadcast_id, group_id, occurrence_at, bridge_id, chat_id, state, error,
                                           mentioned)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (broadcast_id, group_id, occurrence_at) DO NOTHING RETURNING id",
    )
    .bind(d.broadcast_id)
    .bind(d.group_id)
    .bind(d.occurrence_at)
    .bind(d.bridge_id)
    .bind(d.chat_id)
    .bind(d.state)
    .bind(d.error)
    .bind(d.mentioned)
    .fetch_optional(conn)
    .await
}

pub async fn set_delivery_job(conn: &mut PgConnection, id: i64, job_id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE broadcast_deliveries SET job_id = $2 WHERE id = $1")
        .bind(id)
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the deliveries of these bot_action jobs to where their jobs stand now: done → sent
/// (with the message id the platform gave, from the job's last successful send in the call log,
/// found through `bot_calls_job_idx`), dead → failed, unknown → unknown, cancelled → cancelled,
/// anything else → queued. Called in the transaction that settles the jobs, after their call-log
/// rows (and by an admin's retry or cancel of one), so a delivery and its job never disagree.
pub async fn follow_jobs(conn: &mut PgConnection, job_ids: &[i64]) -> sqlx::Result<u64> {
    if job_ids.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(
        "UPDATE broadcast_deliveries d SET
             state = CASE j.state WHEN 'done' THEN 'sent' WHEN 'dead' THEN 'failed' WHEN 'unknown' THEN 'unknown'
                                  WHEN 'cancelled' THEN 'cancelled' ELSE 'queued' END,
             error = CASE WHEN j.state IN ('dead', 'unknown') THEN j.last_error END,
             message_id = CASE WHEN j.state = 'done' THEN
                 (SELECT c.result FROM bot_calls c
                  WHERE c.job_id = j.id AND c.outcome = 'ok' AND c.action IN ('send', 'send_photo')
                  ORDER BY c.id DESC LIMIT 1) END,
             updated_at = now()
         FROM jobs j
         WHERE j.id = ANY ($1) AND d.job_id = j.id",
    )
    .bind(job_ids)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Cancels a broadcast: its next occurrence's job, and every delivery whose job has not been
/// claimed yet (queued, waiting for a retry or for the rate limits). A delivery being sent right
/// now goes on and follows its job. Returns how many deliveries were stopped.
pub async fn cancel(conn: &mut PgConnection, id: i64) -> sqlx::Result<i64> {
    sqlx::query(
        "UPDATE jobs SET state = 'cancelled', updated_at = now(), finished_at = now()
         WHERE id = (SELECT next_job_id FROM broadcasts WHERE id = $1) AND state IN ('queued', 'failed')",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE broadcasts SET state = 'cancelled', cancelled_at = now(), next_at = NULL, next_job_id = NULL
         WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "WITH stopped AS (
             UPDATE jobs j SET state = 'cancelled', updated_at = now(), finished_at = now()
             FROM broadcast_deliveries d
             WHERE d.broadcast_id = $1 AND d.state = 'queued' AND j.id = d.job_id AND j.state IN ('queued', 'failed')
             RETURNING j.id
         ), moved AS (
             UPDATE broadcast_deliveries d SET state = 'cancelled', error = NULL, updated_at = now()
             FROM stopped s WHERE d.job_id = s.id RETURNING d.id
         )
         SELECT count(*) FROM moved",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// One group's copy of an occurrence.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub occurrence_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// The platform's id of the sent message.
    pub message_id: Option<String>,
    /// Why it failed or is unknown (`no_bot`: the group has no bot to send through;
    /// `all_checked_in`: a reminder to a group where everyone has checked in).
    pub error: Option<String>,
    pub chat_id: Option<String>,
    pub job_id: Option<i64>,
    /// Members named in it (reminders).
    pub mentioned: i32,
    pub updated_at: DateTime<Utc>,
}

/// A broadcast's deliveries, latest occurrence first, at most `limit`.
pub async fn deliveries(conn: &mut PgConnection, broadcast_id: i64, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT d.id, d.group_id, g.name AS group_name, d.occurrence_at, d.state, d.message_id, d.error, d.chat_id,
                d.job_id, d.mentioned, d.updated_at
         FROM broadcast_deliveries d JOIN groups g ON g.id = d.group_id
         WHERE d.broadcast_id = $1 ORDER BY d.occurrence_at DESC, d.group_id LIMIT $2",
    )
    .bind(broadcast_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Deliveries per state of each broadcast listed.
pub async fn state_counts(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<Vec<(i64, DeliveryState, i64)>> {
    sqlx::query_as(
        "SELECT broadcast_id, state, count(*) FROM broadcast_deliveries WHERE broadcast_id = ANY ($1)
         GROUP BY broadcast_id, state",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Members of a group (open membership, not deleted) with no check-in on `day`: (platform id,
/// name), at most `limit`, oldest members first.
pub async fn unchecked_members(
    conn: &mut PgConnection,
    group_id: i64,
    day: NaiveDate,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT m.external_user_id, m.display_name
         FROM memberships ms JOIN members m ON m.id = ms.member_id
         WHERE ms.group_id = $1 AND ms.left_at IS NULL AND m.deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM checkins c WHERE c.member_id = m.id AND c.group_id = $1 AND c.day = $2)
         ORDER BY ms.joined_at, m.id LIMIT $3",
    )
    .bind(group_id)
    .bind(day)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Turns a group's check-in reminder on or off; whether it changed.
pub async fn set_reminder(conn: &mut PgConnection, group_id: i64, on: bool) -> sqlx::Result<bool> {
    let r = if on {
        sqlx::query("INSERT INTO reminder_groups (group_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(group_id)
            .execute(conn)
            .await?
    } else {
        sqlx::query("DELETE FROM reminder_groups WHERE group_id = $1").bind(group_id).execute(conn).await?
    };
    Ok(r.rows_affected() > 0)
}

/// Groups in scope (not archived) with their reminder switch: (id, name, on).
pub async fn reminder_groups(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<(i64, String, bool)>> {
    sqlx::query_as(
        "SELECT g.id, g.name, EXISTS (SELECT 1 FROM reminder_groups r WHERE r.group_id = g.id)
         FROM groups g WHERE g.status <> 'archived' AND ($1::bigint[] IS NULL OR g.id = ANY ($1))
         ORDER BY g.name, g.id LIMIT 1000",
    )
    .bind(scope)
    .fetch_all(conn)
    .await
}
