//! Bridges: their rows (the pages and the webhooks), the delivery log with its dedupe keys,
//! unlinked chats, and what a delivery writes about members.
//!
//! Joins and leaves open and close memberships through `store::memberships`, the one writer of
//! memberships and of `groups.member_count`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Encode, PgConnection, Postgres, Type};

use crate::domain::bridge::{Delivery, Kind};
use crate::domain::checkin::Rules;

// ---------------------------------------------------------------- the kind column

impl Type<Postgres> for Kind {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Kind {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Postgres>>::decode(value)?;
        Kind::parse(s).ok_or_else(|| format!("unknown bridge kind {s:?}").into())
    }
}

impl Encode<'_, Postgres> for Kind {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

// ---------------------------------------------------------------- a bridge for its webhook

#[derive(Clone, sqlx::FromRow)]
pub struct BridgeRow {
    pub id: i64,
    pub kind: Kind,
    pub platform: String,
    pub name: String,
    pub secret: String,
    pub api_base_url: Option<String>,
    pub access_token: Option<String>,
    pub self_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for BridgeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("platform", &self.platform)
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .field("api_base_url", &self.api_base_url)
            .field("access_token", &self.access_token.as_ref().map(|_| "[redacted]"))
            .field("self_id", &self.self_id)
            .finish_non_exhaustive()
    }
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<BridgeRow>> {
    sqlx::query_as(
        "SELECT id, kind, platform, name, secret, api_base_url, access_token, self_id, created_at, last_event_at FROM bridges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

// ---------------------------------------------------------------- the pages

/// A bridge as the pages show it: never its secret or access token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BridgeView {
    pub id: i64,
    pub kind: String,
    pub platform: String,
    pub name: String,
    pub api_base_url: Option<String>,
    pub has_access_token: bool,
    pub self_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
}

pub async fn view(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<BridgeView>> {
    sqlx::query_as(
        "SELECT id, kind, platform, name, api_base_url, access_token IS NOT NULL AS has_access_token, self_id,
                created_at, last_event_at
         FROM bridges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct ListRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub platform: String,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_24h: i64,
    pub unlinked: i64,
}

/// Every bridge with its deliveries in the last 24 hours and its unlinked chats.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<ListRow>> {
    sqlx::query_as(
        "SELECT b.id, b.kind, b.name, b.platform, b.last_event_at,
                (SELECT count(*) FROM bridge_events e
                  WHERE e.bridge_id = b.id AND e.received_at > now() - interval '24 hours') AS events_24h,
                (SELECT count(*) FROM unlinked_chats u WHERE u.bridge_id = b.id) AS unlinked
         FROM bridges b ORDER BY b.name, b.id",
    )
    .fetch_all(conn)
    .await
}

/// A new bridge's fields.
pub struct NewBridge<'a> {
    pub kind: Kind,
    pub platform: &'a str,
    pub name: &'a str,
    pub secret: &'a str,
    pub api_base_url: Option<&'a str>,
    pub access_token: Option<&'a str>,
}

pub async fn create(conn: &mut PgConnection, b: &NewBridge<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(b.kind)
    .bind(b.platform)
    .bind(b.name)
    .bind(b.secret)
    .bind(b.api_base_url)
    .bind(b.access_token)
    .fetch_one(conn)
    .await
}

/// Saves name, platform and API URL; a `None` access token keeps the stored one unless
/// `clear_token`.
pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    name: &str,
    platform: &str,
    api_base_url: Option<&str>,
    access_token: Option<&str>,
    clear_token: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE bridges SET name = $2, platform = $3, api_base_url = $4,
            access_token = CASE WHEN $6 THEN NULL ELSE COALESCE($5, access_token) END
         WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(platform)
    .bind(api_base_url)
    .bind(access_token)
    .bind(clear_token)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the secret; false when there is no such bridge.
pub async fn set_secret(conn: &mut PgConnection, id: i64, secret: &str) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE bridges SET secret = $2 WHERE id = $1").bind(id).bind(secret).execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

#[derive(sqlx::FromRow)]
pub struct KindCount {
    pub kind: String,
    pub last_day: i64,
    pub last_month: i64,
}

/// Deliveries per kind in the last 24 hours and 30 days.
pub async fn counts(conn: &mut PgConnection, id: i64) -> sqlx::Result<Vec<KindCount>> {
    sqlx::query_as(
        "SELECT kind, count(*) FILTER (WHERE received_at > now() - interval '24 hours') AS last_day,
                count(*) AS last_month
         FROM bridge_events WHERE bridge_id = $1 AND received_at > now() - interval '30 days'
         GROUP BY kind ORDER BY kind",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    pub kind: String,
    pub chat_id: Option<String>,
    pub user_id: Option<String>,
    pub status: i32,
    pub received_at: DateTime<Utc>,
}

/// The latest `limit` deliveries.
pub async fn recent_events(conn: &mut PgConnection, id: i64, limit: i64) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as(
        "SELECT kind, chat_id, user_id, status, received_at FROM bridge_events
         WHERE bridge_id = $1 ORDER BY received_at DESC, dedupe_key DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct ChatRow {
    pub chat_id: String,
    pub title: String,
    pub events: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// The latest `limit` chats no group claims.
pub async fn unlinked_chats(conn: &mut PgConnection, id: i64, limit: i64) -> sqlx::Result<Vec<ChatRow>> {
    sqlx::query_as(
        "SELECT chat_id, title, events, first_seen, last_seen FROM unlinked_chats
         WHERE bridge_id = $1 ORDER BY last_seen DESC, chat_id LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Groups a chat can be linked to: the platform, no chat id yet, not archived, in `scope`.
pub async fn link_candidates(
    conn: &mut PgConnection,
    platform: &str,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT id, name FROM groups
         WHERE platform = $1 AND external_chat_id IS NULL AND status <> 'archived'
           AND ($2::bigint[] IS NULL OR id = ANY($2))
         ORDER BY name, id",
    )
    .bind(platform)
    .bind(scope)
    .fetch_all(conn)
    .await
}

/// The bridge's platform (`None`: no such bridge) and, with the chat row locked, the unlinked
/// chat's title (`None`: the chat is no longer unlinked).
pub async fn lock_chat(
    conn: &mut PgConnection,
    bridge_id: i64,
    chat_id: &str,
) -> sqlx::Result<Option<(String, Option<String>)>> {
    let Some(platform): Option<String> = sqlx::query_scalar("SELECT platform FROM bridges WHERE id = $1")
        .bind(bridge_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let title: Option<String> =
        sqlx::query_scalar("SELECT title FROM unlinked_chats WHERE bridge_id = $1 AND chat_id = $2 FOR UPDATE")
            .bind(bridge_id)
            .bind(chat_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Some((platform, title)))
}

pub async fn forget_chat(conn: &mut PgConnection, bridge_id: i64, chat_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM unlinked_chats WHERE bridge_id = $1 AND chat_id = $2")
        .bind(bridge_id)
        .bind(chat_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether an error is the unique chat id of groups (`groups_external_chat_key`).
pub fn is_chat_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some("groups_external_chat_key"))
}

/// Gives a group of `platform` with no chat yet (not archived) the chat, through this bridge;
/// false when the group cannot take it. A chat another group has is a unique violation
/// ([`is_chat_conflict`]).
pub async fn link_chat(
    conn: &mut PgConnection,
    group_id: i64,
    platform: &str,
    chat_id: &str,
    bridge_id: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE groups SET external_chat_id = $3, bridge_id = $4, updated_at = now()
         WHERE id = $1 AND platform = $2 AND external_chat_id IS NULL AND status <> 'archived'",
    )
    .bind(group_id)
    .bind(platform)
    .bind(chat_id)
    .bind(bridge_id)
    .execute(conn)
    .await?;
    super::groups::lookups_changed();
    Ok(r.rows_affected() == 1)
}

/// A new group for a chat of the bridge; a chat another group has is a unique violation
/// ([`is_chat_conflict`]).
pub async fn create_group_for_chat(
    conn: &mut PgConnection,
    name: &str,
    platform: &str,
    capacity: i32,
    chat_id: &str,
    bridge_id: i64,
) -> sqlx::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(platform)
    .bind(capacity)
    .bind(chat_id)
    .bind(bridge_id)
    .fetch_one(conn)
    .await;
    super::groups::lookups_changed();
    id
}

// ---------------------------------------------------------------- deliveries

/// A delivery's log row, claimed by [`claim_delivery`]: its key, and the status it was claimed
/// with (its reply is empty until settled).
pub struct Claimed<'a> {
    bridge_id: i64,
    dedupe_key: &'a str,
    status: i32,
}

/// Claims the delivery's dedupe row with `status`; `None` when a copy of the delivery claimed it
/// first.
pub async fn claim_delivery<'a>(
    conn: &mut PgConnection,
    bridge_id: i64,
    d: &'a Delivery,
    status: i32,
) -> sqlx::Result<Option<Claimed<'a>>> {
    claim(conn, bridge_id, d, status, None).await
}

/// [`claim_delivery`], then, when the delivery was claimed, the transaction-scoped advisory lock
/// named `lock` — in the same statement, one round trip fewer for a caller that needs both.
pub async fn claim_delivery_then_lock<'a>(
    conn: &mut PgConnection,
    bridge_id: i64,
    d: &'a Delivery,
    status: i32,
    lock: &str,
) -> sqlx::Result<Option<Claimed<'a>>> {
    claim(conn, bridge_id, d, status, Some(lock)).await
}

async fn claim<'a>(
    conn: &mut PgConnection,
    bridge_id: i64,
    d: &'a Delivery,
    status: i32,
    lock: Option<&str>,
) -> sqlx::Result<Option<Claimed<'a>>> {
    macro_rules! insert {
        () => {
            "INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bridge_id, dedupe_key) DO NOTHING RETURNING bridge_id"
        };
    }
    const INSERT: &str = insert!();
    const INSERT_THEN_LOCK: &str = concat!(
        "WITH ev AS (",
        insert!(),
        ") SELECT bridge_id FROM ev, LATERAL (SELECT pg_advisory_xact_lock(hashtextextended($7, 0))) AS locked"
    );
    let first = d.events.first();
    let q = sqlx::query_scalar(if lock.is_some() { INSERT_THEN_LOCK } else { INSERT })
        .bind(bridge_id)
        .bind(&d.dedupe_key)
        .bind(d.kind.as_str())
        .bind(first.map(|e| e.chat.id.as_str()))
        .bind(first.map(|e| e.user.id.as_str()))
        .bind(status);
    let q = match lock {
        Some(lock) => q.bind(lock),
        None => q,
    };
    let claimed: Option<i64> = q.fetch_optional(conn).await?;
    Ok(claimed.map(|bridge_id| Claimed { bridge_id, dedupe_key: &d.dedupe_key, status }))
}

/// What the delivery's row keeps for a retry, and its status. Nothing to write (no statement)
/// when that is what the row was claimed with: no reply and the same status.
pub async fn settle_delivery(
    conn: &mut PgConnection,
    row: &Claimed<'_>,
    reply: Option<&Value>,
    status: i32,
) -> sqlx::Result<()> {
    if reply.is_none() && status == row.status {
        return Ok(());
    }
    sqlx::query("UPDATE bridge_events SET reply = $3, status = $4 WHERE bridge_id = $1 AND dedupe_key = $2")
        .bind(row.bridge_id)
        .bind(row.dedupe_key)
        .bind(reply)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a delivery seen before keeps for its retries.
pub async fn stored_reply(conn: &mut PgConnection, bridge_id: i64, dedupe_key: &str) -> sqlx::Result<Option<Value>> {
    sqlx::query_scalar("SELECT reply FROM bridge_events WHERE bridge_id = $1 AND dedupe_key = $2")
        .bind(bridge_id)
        .bind(dedupe_key)
        .fetch_one(conn)
        .await
}

/// Refreshes the bridge's `last_event_at` (and `self_id`) unless another delivery did within
/// the last second: the one row every delivery of the bridge shares.
pub async fn touch(conn: &mut PgConnection, bridge_id: i64, self_id: Option<&str>) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE bridges SET last_event_at = now(), self_id = COALESCE(self_id, $2)
         WHERE id = $1 AND (last_event_at IS NULL OR last_event_at < now() - interval '1 second'
            OR (self_id IS NULL AND $2 IS NOT NULL))",
    )
    .bind(bridge_id)
    .bind(self_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A chat no group claims yet: seen once more.
pub async fn saw_unlinked_chat(
    conn: &mut PgConnection,
    bridge_id: i64,
    chat_id: &str,
    title: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO unlinked_chats (bridge_id, chat_id, title) VALUES ($1, $2, $3)
         ON CONFLICT (bridge_id, chat_id) DO UPDATE SET last_seen = now(), events = unlinked_chats.events + 1,
            title = COALESCE(NULLIF(EXCLUDED.title, ''), unlinked_chats.title)",
    )
    .bind(bridge_id)
    .bind(chat_id)
    .bind(title.unwrap_or_default())
    .execute(conn)
    .await?;
    Ok(())
}

/// A linked group: its id and check-in rules (its own, or the defaults in its time zone).
#[derive(Clone)]
pub struct LinkedGroup {
    pub id: i64,
    pub rules: Rules,
}

/// The group a chat of the bridge belongs to: same platform and chat id, and linked through this
/// bridge (or by hand, `bridge_id` NULL). A chat another bridge linked is an unlinked chat here.
pub async fn find_group(
    conn: &mut PgConnection,
    bridge_id: i64,
    platform: &str,
    chat: &str,
) -> sqlx::Result<Option<LinkedGroup>> {
    // `to_jsonb(r)` is NULL when the group has no rules of its own yet.
    let row: Option<(i64, String, Option<Json<super::checkins::RulesRow>>)> = sqlx::query_as(
        "SELECT g.id, g.timezone, to_jsonb(r) FROM groups g LEFT JOIN checkin_rules r ON r.group_id = g.id
         WHERE g.platform = $1 AND g.external_chat_id = $2 AND g.status <> 'archived'
           AND (g.bridge_id IS NULL OR g.bridge_id = $3)",
    )
    .bind(platform)
    .bind(chat)
    .bind(bridge_id)
    .fetch_optional(conn)
    .await?;
    match row {
        None => Ok(None),
        Some((id, timezone, rules)) => {
            Ok(Some(LinkedGroup { id, rules: super::checkins::rules_of(rules.map(|r| r.0), &timezone)? }))
        }
    }
}

/// Creates or refreshes the member behind an event, once per row of the CTE `fresh`; `$1`
/// platform, `$2` external user id, `$3` display name, `$4` event time.
macro_rules! upsert_member {
    () => {
        "INSERT INTO members (platform, external_user_id, display_name, last_active_at) SELECT $1, $2, $3, $4 FROM fresh
         ON CONFLICT (platform, external_user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
            last_active_at = GREATEST(members.last_active_at, EXCLUDED.last_active_at), updated_at = now()
         RETURNING id"
    };
}
pub(crate) use upsert_member;

/// What every group message writes, as CTEs after `fresh`: the member (`m`), the open
/// membership (its role refreshed only when it changed) and the day's message count; `$5` group,
/// `$6` role, `$7` local day. (A membership opened here leaves `member_count` as it is, unlike
/// a join.) An open membership with the same role, as the statement's snapshot sees it, is not
/// touched: an upsert would lock it (a write to its page) to change nothing.
macro_rules! message_ctes {
    () => {
        concat!(
            "m AS (",
            $crate::store::bridges::upsert_member!(),
            "), membership AS (
                INSERT INTO memberships (member_id, group_id, role, joined_at) SELECT id, $5, $6, $4 FROM m
                WHERE NOT EXISTS (SELECT FROM memberships o WHERE o.member_id = m.id AND o.group_id = $5
                                                             AND o.left_at IS NULL AND o.role = $6)
                ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO UPDATE SET role = EXCLUDED.role
                WHERE memberships.role IS DISTINCT FROM EXCLUDED.role
             ), activity AS (
                INSERT INTO member_daily_activity (member_id, group_id, day, messages) SELECT id, $5, $7, 1 FROM m
                ON CONFLICT (member_id, group_id, day) DO UPDATE SET messages = member_daily_activity.messages + 1
             )"
        )
    };
}
pub(crate) use message_ctes;

/// The member behind a join or leave (created or refreshed), by platform and external id.
pub async fn member_id(
    conn: &mut PgConnection,
    platform: &str,
    user_id: &str,
    name: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!("WITH fresh AS (SELECT) ", upsert_member!()))
        .bind(platform)
        .bind(user_id)
        .bind(name)
        .bind(at)
        .fetch_one(conn)
        .await
}

/// One plain group message, as [`write_chatter`] takes it: a message that asked for nothing
/// and got no answer, whose writes were put off to a batch (`bridges::chatter`).
#[derive(Debug, Clone)]
pub struct Chatter {
    pub bridge_id: i64,
    pub dedupe_key: String,
    pub kind: &'static str,
    pub chat_id: String,
    pub user_id: String,
    pub platform: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub group_id: i64,
    pub role: &'static str,
    /// The local day of `at` in the group.
    pub day: chrono::NaiveDate,
}

/// Writes a batch of plain messages in one statement: each delivery's row (a key seen before,
/// by this or another process, writes nothing more), then for the new ones the members
/// (created, or their name and last activity refreshed), their open memberships (the role
/// refreshed when it changed) and the day's message counts, summed per member, group and day.
/// Rows are written in key order, so that concurrent batches and single messages lock them in
/// the same order. Messages of a bridge or group deleted since they were queued are dropped.
/// Returns how many deliveries were new.
///
/// Rows that would not change are not touched: a member whose row has the same name and a last
/// activity less than a minute older than the batch's (so plain chat moves `last_active_at` in
/// steps of a minute at most), and an open membership with the same role. Under a flood most
/// authors spoke a moment before; rewriting and locking their rows was about a third of the
/// statement's WAL records (docs/PERFORMANCE.md). Whether a row is current is read from the
/// statement's snapshot; a row changed since is written through the upsert as before, or, when
/// the snapshot still saw it current, left for the next message.
///
/// The statement runs in its own transaction with nested loops off: its plan is prepared once
/// for every batch size, and PostgreSQL's guess for an array's rows (100) made it join the new
/// deliveries to their members by comparing every pair — 250 000 comparisons for a batch of 500,
/// most of the statement's time under a flood (docs/PERFORMANCE.md).
pub async fn write_chatter(conn: &mut PgConnection, batch: &[Chatter]) -> sqlx::Result<i64> {
    fn col<'a, T, F: Fn(&'a Chatter) -> T>(b: &'a [Chatter], f: F) -> Vec<T> {
        b.iter().map(f).collect()
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SET LOCAL enable_nestloop = off").execute(&mut *tx).await?;
    let new = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                  $8::timestamptz[], $9::bigint[], $10::text[], $11::date[])
                 AS t(bridge_id, dedupe_key, kind, chat_id, user_id, platform, name, at, group_id, role, day)
         ), ev AS (
             INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status)
             SELECT bridge_id, dedupe_key, kind, chat_id, user_id, 204 FROM input
             WHERE EXISTS (SELECT FROM bridges b WHERE b.id = input.bridge_id)
               AND EXISTS (SELECT FROM groups g WHERE g.id = input.group_id)
             ORDER BY bridge_id, dedupe_key
             ON CONFLICT (bridge_id, dedupe_key) DO NOTHING
             RETURNING bridge_id, dedupe_key
         ), fresh AS (
             -- A delivery queued twice (a retry while the first copy waited) counts once.
             SELECT DISTINCT ON (bridge_id, dedupe_key) i.* FROM input i JOIN ev USING (bridge_id, dedupe_key)
             ORDER BY bridge_id, dedupe_key
         ), people AS (
             SELECT DISTINCT ON (platform, user_id) platform, user_id, name,
                    max(at) OVER (PARTITION BY platform, user_id) AS last_at
             FROM fresh ORDER BY platform, user_id, at DESC
         ), known AS (
             -- The member, when their row says what this batch would write: the same name,
             -- and a last activity at most a minute older than the batch's. (A subquery per
             -- person: with nested loops off, a join would read the whole table.)
             SELECT p.platform, p.user_id,
                    (SELECT mb.id FROM members mb
                     WHERE mb.platform = p.platform AND mb.external_user_id = p.user_id AND mb.display_name = p.name
                       AND mb.last_active_at >= p.last_at - interval '1 minute') AS id
             FROM people p
         ), touched AS (
             INSERT INTO members (platform, external_user_id, display_name, last_active_at)
             SELECT platform, user_id, name, last_at FROM people p
             WHERE NOT EXISTS (SELECT FROM known k
                               WHERE k.platform = p.platform AND k.user_id = p.user_id AND k.id IS NOT NULL)
             ORDER BY platform, user_id
             ON CONFLICT (platform, external_user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
                last_active_at = GREATEST(members.last_active_at, EXCLUDED.last_active_at), updated_at = now()
             RETURNING id, platform, external_user_id
         ), m AS (
             SELECT id, platform, external_user_id FROM touched
             UNION ALL SELECT id, platform, user_id FROM known WHERE id IS NOT NULL
         ), seen AS (
             SELECT m.id AS member_id, f.group_id, f.role, f.at, f.day
             FROM fresh f JOIN m ON m.platform = f.platform AND m.external_user_id = f.user_id
         ), membership AS (
             INSERT INTO memberships (member_id, group_id, role, joined_at)
             SELECT * FROM (
                 SELECT DISTINCT ON (member_id, group_id) member_id, group_id, role,
                        min(at) OVER (PARTITION BY member_id, group_id) AS joined_at
                 FROM seen ORDER BY member_id, group_id, at DESC
             ) s
             -- A subquery per row, not an anti-join: with nested loops off, that would read the
             -- whole table.
             WHERE (SELECT true FROM memberships o WHERE o.member_id = s.member_id AND o.group_id = s.group_id
                                                    AND o.left_at IS NULL AND o.role = s.role) IS NULL
             ORDER BY member_id, group_id
             ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO UPDATE SET role = EXCLUDED.role
             WHERE memberships.role IS DISTINCT FROM EXCLUDED.role
         ), activity AS (
             INSERT INTO member_daily_activity (member_id, group_id, day, messages)
             SELECT member_id, group_id, day, count(*) FROM seen GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
             ON CONFLICT (member_id, group_id, day)
             DO UPDATE SET messages = member_daily_activity.messages + EXCLUDED.messages
         )
         SELECT count(*) FROM ev",
    )
    .bind(col(batch, |c| c.bridge_id))
    .bind(col(batch, |c| c.dedupe_key.as_str()))
    .bind(col(batch, |c| c.kind))
    .bind(col(batch, |c| c.chat_id.as_str()))
    .bind(col(batch, |c| c.user_id.as_str()))
    .bind(col(batch, |c| c.platform.as_str()))
    .bind(col(batch, |c| c.name.as_str()))
    .bind(col(batch, |c| c.at))
    .bind(col(batch, |c| c.group_id))
    .bind(col(batch, |c| c.role))
    .bind(col(batch, |c| c.day))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(new)
}
