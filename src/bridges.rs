//! Processing bridge deliveries: one transaction per delivery, deduplicated on the protocol's
//! delivery id (a retry changes nothing and gets the stored reply), turning events into
//! members, memberships, activity, check-ins and ledger entries, and answering a reply text.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection};

use crate::domain::bridge::{onebot_reply, telegram_reply, Delivery, Event, EventBody, Kind};
use crate::domain::checkin::{render, streaks, Intent, Rules, StreakBonus};
use crate::i18n::{Lang, Tr};
use crate::store::points::{self, Applied, NewEntry};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BridgeRow {
    pub id: i64,
    pub kind: String,
    pub platform: String,
    pub name: String,
    pub secret: String,
    pub api_base_url: Option<String>,
    pub access_token: Option<String>,
    pub self_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl BridgeRow {
    pub fn kind(&self) -> Kind {
        Kind::parse(&self.kind).unwrap_or(Kind::Generic)
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

/// Bridge rows as webhooks need them, kept per process for up to [`BridgeCache::TTL`]: every
/// delivery needs its bridge (kind, secret) before anything else, and at hundreds of deliveries
/// a second that lookup was a round trip of its own. A change made in this process evicts the
/// row at once; one made by another process is seen within the TTL.
#[derive(Default)]
pub struct BridgeCache(std::sync::Mutex<std::collections::HashMap<i64, CachedBridge>>);

struct CachedBridge {
    row: std::sync::Arc<BridgeRow>,
    loaded: std::time::Instant,
    /// When this process last refreshed the row's `last_event_at`.
    touched: Option<std::time::Instant>,
}

impl BridgeCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);

    pub async fn get(&self, db: &sqlx::PgPool, id: i64) -> sqlx::Result<Option<std::sync::Arc<BridgeRow>>> {
        if let Some(c) = self.0.lock().ok().and_then(|m| m.get(&id).map(|c| (c.loaded, c.row.clone()))) {
            if c.0.elapsed() < Self::TTL {
                return Ok(Some(c.1));
            }
        }
        let mut conn = db.acquire().await?;
        let Some(row) = get(&mut conn, id).await? else {
            self.evict(id);
            return Ok(None);
        };
        let row = std::sync::Arc::new(row);
        if let Ok(mut m) = self.0.lock() {
            let touched = m.get(&id).and_then(|c| c.touched);
            m.insert(id, CachedBridge { row: row.clone(), loaded: std::time::Instant::now(), touched });
        }
        Ok(Some(row))
    }

    pub fn evict(&self, id: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }

    /// Whether this delivery should refresh the bridge's `last_event_at` (and `self_id`): at most
    /// once a second per process, so that concurrent deliveries do not queue behind the one row
    /// every delivery of the bridge shares.
    fn should_touch(&self, bridge: &BridgeRow, self_id: Option<&str>) -> bool {
        if bridge.self_id.is_none() && self_id.is_some() {
            return true;
        }
        let Ok(mut m) = self.0.lock() else { return true };
        match m.get_mut(&bridge.id) {
            Some(c) if c.touched.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) => false,
            Some(c) => {
                c.touched = Some(std::time::Instant::now());
                true
            }
            None => true,
        }
    }
}

/// One rejected delivery: when, the status answered, why.
pub type Rejection = (DateTime<Utc>, u16, String);

/// Rejected deliveries, kept in memory per process for the bridge's status page: a rejected
/// delivery must write nothing to the database (invariant 5).
#[derive(Default)]
pub struct RecentErrors(std::sync::Mutex<std::collections::HashMap<i64, std::collections::VecDeque<Rejection>>>);

impl RecentErrors {
    pub fn push(&self, bridge_id: i64, status: u16, reason: &str) {
        if let Ok(mut m) = self.0.lock() {
            let q = m.entry(bridge_id).or_default();
            q.push_front((Utc::now(), status, reason.chars().take(300).collect()));
            q.truncate(50);
        }
        metrics::counter!("bridge_rejections_total", "status" => status.to_string()).increment(1);
    }

    pub fn list(&self, bridge_id: i64) -> Vec<Rejection> {
        self.0.lock().ok().and_then(|m| m.get(&bridge_id).map(|q| q.iter().cloned().collect())).unwrap_or_default()
    }
}

/// Handles one authenticated, parsed delivery atomically; returns the reply body.
///
/// The common delivery — one message in a linked group, a check-in or plain chat — is one
/// statement ([`message_at_once`]) after reading the group's rules. Anything else (joins,
/// leaves, make-ups, unlinked chats, several events) runs in a transaction that first claims the
/// delivery's dedupe row.
pub async fn handle(
    db: &sqlx::PgPool,
    cache: &BridgeCache,
    bridge: &BridgeRow,
    d: &Delivery,
) -> sqlx::Result<Option<Value>> {
    // The first event's group with its rules, read once for either path below.
    let first = d.events.first();
    let mut conn = db.acquire().await?;
    let first_group = match first {
        Some(e) => find_group(&mut conn, bridge, &e.chat.id).await?,
        None => None,
    };
    if let ([e @ Event { body: EventBody::Message { text, force_checkin, .. }, .. }], Some((gid, rules))) =
        (d.events.as_slice(), &first_group)
    {
        let intent = rules.intent(text, *force_checkin);
        if intent != Intent::MakeUp {
            let Some(reply) = message_at_once(&mut conn, bridge, d, e, *gid, rules, intent).await? else {
                return stored_reply(&mut conn, bridge, d).await;
            };
            touch(&mut conn, cache, bridge, d).await?;
            metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "processed")
                .increment(1);
            return Ok(reply);
        }
    }
    let mut tx = conn.begin().await?;
    let Some(event_row) = claim_delivery(&mut tx, bridge, d, 0).await? else {
        drop(tx);
        return stored_reply(&mut conn, bridge, d).await;
    };
    let mut known = first.map(|e| (e.chat.id.as_str(), first_group));
    let mut reply_text = None;
    for e in &d.events {
        let group = match known.take_if(|(chat, _)| *chat == e.chat.id) {
            Some((_, group)) => group,
            None => find_group(&mut tx, bridge, &e.chat.id).await?,
        };
        if let Some(t) = process(&mut tx, bridge, e, group).await? {
            reply_text = Some(t);
        }
    }
    let reply = reply_text.map(|t| envelope(bridge.kind(), d, &t));
    sqlx::query("UPDATE bridge_events SET reply = $2, status = $3 WHERE id = $1")
        .bind(event_row)
        .bind(&reply)
        .bind(if reply.is_some() { 200 } else { 204 })
        .execute(&mut *tx)
        .await?;
    touch(&mut tx, cache, bridge, d).await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "processed").increment(1);
    Ok(reply)
}

/// A delivery whose events' times lie outside the tolerance (see `Delivery::settle_time`): its
/// row is recorded (so a retry is recognised and the bridge's log shows it), nothing else is
/// written, and there is no reply.
pub async fn record_only(
    db: &sqlx::PgPool,
    cache: &BridgeCache,
    bridge: &BridgeRow,
    d: &Delivery,
) -> sqlx::Result<Option<Value>> {
    let mut tx = db.begin().await?;
    claim_delivery(&mut tx, bridge, d, 204).await?;
    touch(&mut tx, cache, bridge, d).await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "out_of_time").increment(1);
    Ok(None)
}

/// Claims the delivery's dedupe row with `status`; its id, or `None` when a copy of the delivery
/// claimed it first.
async fn claim_delivery(
    conn: &mut PgConnection,
    bridge: &BridgeRow,
    d: &Delivery,
    status: i32,
) -> sqlx::Result<Option<i64>> {
    let first = d.events.first();
    sqlx::query_scalar(
        "INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (bridge_id, dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(bridge.id)
    .bind(&d.dedupe_key)
    .bind(d.kind)
    .bind(first.map(|e| e.chat.id.clone()))
    .bind(first.map(|e| e.user.id.clone()))
    .bind(status)
    .fetch_optional(conn)
    .await
}

/// A retry: the first delivery's reply, nothing else.
async fn stored_reply(conn: &mut PgConnection, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<Option<Value>> {
    let reply: Option<Value> =
        sqlx::query_scalar("SELECT reply FROM bridge_events WHERE bridge_id = $1 AND dedupe_key = $2")
            .bind(bridge.id)
            .bind(&d.dedupe_key)
            .fetch_one(conn)
            .await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "duplicate").increment(1);
    Ok(reply)
}

/// Refreshes the bridge's `last_event_at` (and `self_id`). One row shared by every delivery of
/// the bridge: touched at most once a second (per process by the cache, across processes by the
/// statement) so that concurrent deliveries do not queue behind its lock.
async fn touch(conn: &mut PgConnection, cache: &BridgeCache, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<()> {
    if cache.should_touch(bridge, d.self_id.as_deref()) {
        sqlx::query(
            "UPDATE bridges SET last_event_at = now(), self_id = COALESCE(self_id, $2)
             WHERE id = $1 AND (last_event_at IS NULL OR last_event_at < now() - interval '1 second'
                OR (self_id IS NULL AND $2 IS NOT NULL))",
        )
        .bind(bridge.id)
        .bind(&d.self_id)
        .execute(conn)
        .await?;
    }
    Ok(())
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

/// What every group message writes, as CTEs after `fresh`: the member (`m`), the open
/// membership (its role refreshed only when it changed) and the day's message count; `$5` group,
/// `$6` role, `$7` local day.
macro_rules! message_ctes {
    () => {
        concat!(
            "m AS (",
            upsert_member!(),
            "), membership AS (
                INSERT INTO memberships (member_id, group_id, role, joined_at) SELECT id, $5, $6, $4 FROM m
                ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO UPDATE SET role = EXCLUDED.role
                WHERE memberships.role IS DISTINCT FROM EXCLUDED.role
             ), activity AS (
                INSERT INTO member_daily_activity (member_id, group_id, day, messages) SELECT id, $5, $7, 1 FROM m
                ON CONFLICT (member_id, group_id, day) DO UPDATE SET messages = member_daily_activity.messages + 1
             )"
        )
    };
}

/// After [`message_ctes`] for a message that asks for nothing: `result` (member, no text).
macro_rules! plain_result {
    () => {
        "result AS (SELECT id AS member, NULL::text AS text FROM m)"
    };
}

/// After [`message_ctes`] for a check-in, with `$8` points per check-in, `$9`/`$10` the
/// streak-bonus table (days, points), `$11` the reply template and `$12` the "already checked in"
/// one, both with `{name}` filled in already (escaped for the bridge's platform by
/// [`Kind::escape`], which SQL cannot do): `result` (member, reply text).
///
/// At most one check-in per member, group and local day (the unique index decides); the streak
/// continues yesterday's; the points and any bonus for the streak reached are credited through
/// the ledger ([`credit_ctes`]) with keys derived from the member, group and day; the template's
/// placeholders are filled ({name} before the statement, then {streak} {total_days} {points}
/// {balance} {rank_today}, in that order, as [`render`] does); the rank today is the group's counter for the day (`checkin_days`),
/// the total days a count from the statement's snapshot, which does not hold the new row yet
/// (hence the + 1). A second check-in the same day answers with the streak of the
/// first — or, when that one was committed after this statement began (it waited on the unique
/// index), with the streak it must have had.
///
/// [`credit_ctes`]: crate::store::points::credit_ctes
macro_rules! checkin_result {
    () => {
        concat!(
            "yesterday AS (
                SELECT streak FROM checkins WHERE member_id = (SELECT id FROM m) AND group_id = $5 AND day = $7::date - 1
             ), checkin AS (
                INSERT INTO checkins (member_id, group_id, day, at, streak)
                SELECT id, $5, $7, $4, COALESCE((SELECT streak + 1 FROM yesterday), 1) FROM m
                ON CONFLICT (member_id, group_id, day) DO NOTHING RETURNING id, member_id, streak
             ), today AS (
                INSERT INTO checkin_days (group_id, day, checkins) SELECT $5, $7, 1 FROM checkin
                ON CONFLICT (group_id, day) DO UPDATE SET checkins = checkin_days.checkins + 1
                RETURNING checkins
             ), credits (member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note) AS (
                SELECT member_id, amount, kind, 'checkin:' || id,
                       kind || ':' || member_id || ':' || $5::text || ':' || to_char($7::date, 'YYYY-MM-DD'),
                       NULL::text, NULL::bigint, ''
                FROM checkin, LATERAL (
                    SELECT 'checkin' AS kind, $8::bigint AS amount
                    UNION ALL
                    SELECT 'streak_bonus', COALESCE(sum(b.points), 0)::bigint
                    FROM unnest($9::int[], $10::int[]) AS b (day, points) WHERE b.day = checkin.streak
                ) AS award
                WHERE amount > 0
             ), ",
            crate::store::points::credit_ctes!(),
            ", result AS (
                SELECT m.id AS member, CASE WHEN checkin.id IS NOT NULL THEN
                       replace(replace(replace(replace(replace($11::text,
                           '{streak}', checkin.streak::text),
                           '{total_days}', ((SELECT count(*) FROM checkins WHERE member_id = m.id AND group_id = $5) + 1)::text),
                           '{points}', COALESCE((SELECT sum(delta) FROM entries), 0)::text),
                           '{balance}', COALESCE((SELECT balance FROM account),
                                                 (SELECT balance FROM points_accounts WHERE member_id = m.id), 0)::text),
                           '{rank_today}', (SELECT checkins FROM today)::text)
                     ELSE
                       replace($12::text, '{streak}', COALESCE(
                           (SELECT streak FROM checkins WHERE member_id = m.id AND group_id = $5 AND day = $7),
                           (SELECT streak + 1 FROM yesterday), 1)::text)
                     END AS text
                FROM m LEFT JOIN checkin ON TRUE
             )"
        )
    };
}

/// [`message_at_once`]'s statement: `fresh` holds a row only when the delivery (`$13` bridge,
/// `$14` dedupe key) is new, and the delivery's row — `$15` kind, `$16` chat, `$17` user, the
/// reply `$18` with its text at path `$19` — is written from `result`, so a retry writes nothing
/// and a concurrent twin fails on the dedupe key. Selects whether it was written and the reply.
macro_rules! at_once {
    ($result:expr) => {
        concat!(
            "WITH fresh AS (SELECT WHERE NOT EXISTS (SELECT FROM bridge_events WHERE bridge_id = $13 AND dedupe_key = $14)), ",
            message_ctes!(),
            ", ",
            $result,
            ", event AS (
                INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status, reply)
                SELECT $13, $14, $15, $16, $17, CASE WHEN text IS NULL THEN 204 ELSE 200 END,
                       jsonb_set($18::jsonb, $19::text[], to_jsonb(text))
                FROM result RETURNING reply
             )
             SELECT EXISTS (SELECT FROM event), (SELECT reply FROM event)"
        )
    };
}

/// The same inside [`handle`]'s transaction, which has claimed the delivery already.
macro_rules! in_transaction {
    ($result:expr) => {
        concat!("WITH fresh AS (SELECT), ", message_ctes!(), ", ", $result, " SELECT member, text FROM result")
    };
}

/// Binds `$1`–`$12` of the message statements (those of a check-in too, which a plain message's
/// statement leaves unused).
fn bind_message<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    bridge: &'q BridgeRow,
    e: &'q Event,
    group: i64,
    rules: &'q Rules,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let (days, points): (Vec<i32>, Vec<i32>) = rules.streak_bonuses.iter().map(|b| (b.day, b.points)).unzip();
    let template = if rules.reply_lang == Lang::En { &rules.reply_en } else { &rules.reply_zh };
    // The member's name is the one value in a reply that a member controls: escaped for the
    // platform (a QQ card `[CQ:at,qq=all]` must not @ everyone).
    let name = vec![("name", bridge.kind().escape(display_name(&e.user.id, &e.user.name)))];
    let template = render(template, &name);
    let already = render(Tr(rules.reply_lang).t("checkin.already"), &name);
    q.bind(&bridge.platform)
        .bind(&e.user.id)
        .bind(display_name(&e.user.id, &e.user.name))
        .bind(e.at)
        .bind(group)
        .bind(e.user.role.unwrap_or("member"))
        .bind(rules.day_of(e.at))
        .bind(rules.points as i64)
        .bind(days)
        .bind(points)
        .bind(template)
        .bind(already)
}

/// One message (not a make-up) in a linked group as one statement, its own transaction: the
/// member, membership, activity, check-in, ledger entries, balance and the delivery's row with
/// its reply. `Ok(None)` when the delivery was seen before (or a twin of it won the race).
async fn message_at_once(
    conn: &mut PgConnection,
    bridge: &BridgeRow,
    d: &Delivery,
    e: &Event,
    group: i64,
    rules: &Rules,
    intent: Intent,
) -> sqlx::Result<Option<Option<Value>>> {
    let sql = match intent {
        Intent::CheckIn => at_once!(checkin_result!()),
        Intent::None | Intent::MakeUp => at_once!(plain_result!()),
    };
    let written: sqlx::Result<(bool, Option<Value>)> = bind_message(sqlx::query_as(sql), bridge, e, group, rules)
        .bind(bridge.id)
        .bind(&d.dedupe_key)
        .bind(d.kind)
        .bind(&e.chat.id)
        .bind(&e.user.id)
        .bind(envelope(bridge.kind(), d, ""))
        .bind(text_path(bridge.kind()))
        .fetch_one(conn)
        .await;
    match written {
        Ok((true, reply)) => Ok(Some(reply)),
        Ok((false, _)) => Ok(None),
        Err(sqlx::Error::Database(err)) if err.constraint() == Some("bridge_events_bridge_id_dedupe_key_key") => {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

fn display_name<'a>(user_id: &'a str, name: &'a str) -> &'a str {
    if name.is_empty() {
        user_id
    } else {
        name
    }
}

async fn member_id(
    conn: &mut PgConnection,
    platform: &str,
    user_id: &str,
    name: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!("WITH fresh AS (SELECT) ", upsert_member!()))
        .bind(platform)
        .bind(user_id)
        .bind(display_name(user_id, name))
        .bind(at)
        .fetch_one(conn)
        .await
}

/// The reply body a bridge expects, around `text`.
fn envelope(kind: Kind, d: &Delivery, text: &str) -> Value {
    match kind {
        Kind::OneBot11 => onebot_reply(text),
        Kind::Telegram => match &d.reply_to {
            Some((chat, msg)) => telegram_reply(chat, msg, text),
            None => serde_json::json!({"method": "sendMessage", "text": text}),
        },
        Kind::Generic => serde_json::json!({"reply": text}),
    }
}

/// Where [`envelope`] puts the text.
fn text_path(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::OneBot11 | Kind::Generic => &["reply"],
        Kind::Telegram => &["text"],
    }
}

/// A linked group: its id and check-in rules (its own, or the defaults in its time zone).
type GroupFound = Option<(i64, Rules)>;

/// The group a chat of `bridge` belongs to: same platform and chat id, and linked through this
/// bridge (or by hand, `bridge_id` NULL). A chat another bridge linked is an unlinked chat here.
async fn find_group(conn: &mut PgConnection, bridge: &BridgeRow, chat: &str) -> sqlx::Result<GroupFound> {
    // `to_jsonb(r)` is NULL when the group has no rules of its own yet.
    let row: Option<(i64, String, Option<Json<RulesRow>>)> = sqlx::query_as(
        "SELECT g.id, g.timezone, to_jsonb(r) FROM groups g LEFT JOIN checkin_rules r ON r.group_id = g.id
         WHERE g.platform = $1 AND g.external_chat_id = $2 AND g.status <> 'archived'
           AND (g.bridge_id IS NULL OR g.bridge_id = $3)",
    )
    .bind(&bridge.platform)
    .bind(chat)
    .bind(bridge.id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(id, timezone, rules)| (id, rules_of(rules.map(|r| r.0), &timezone))))
}

/// One event in the chat `group` (None: no group claims the chat yet); returns a reply text
/// when the event asks for one (check-ins).
async fn process(
    conn: &mut PgConnection,
    bridge: &BridgeRow,
    e: &Event,
    group: GroupFound,
) -> sqlx::Result<Option<String>> {
    let Some((gid, rules)) = group else {
        sqlx::query(
            "INSERT INTO unlinked_chats (bridge_id, chat_id, title) VALUES ($1, $2, $3)
             ON CONFLICT (bridge_id, chat_id) DO UPDATE SET last_seen = now(), events = unlinked_chats.events + 1,
                title = COALESCE(NULLIF(EXCLUDED.title, ''), unlinked_chats.title)",
        )
        .bind(bridge.id)
        .bind(&e.chat.id)
        .bind(e.chat.title.clone().unwrap_or_default())
        .execute(&mut *conn)
        .await?;
        return Ok(None);
    };
    match &e.body {
        EventBody::Message { text, force_checkin, .. } => {
            let intent = rules.intent(text, *force_checkin);
            let sql = match intent {
                Intent::CheckIn => in_transaction!(checkin_result!()),
                Intent::None | Intent::MakeUp => in_transaction!(plain_result!()),
            };
            let (mid, text): (i64, Option<String>) =
                bind_message(sqlx::query_as(sql), bridge, e, gid, &rules).fetch_one(&mut *conn).await?;
            match intent {
                Intent::CheckIn => Ok(text),
                Intent::MakeUp => {
                    make_up(conn, &rules, mid, &bridge.kind().escape(&e.user.name), gid, e.at).await.map(Some)
                }
                Intent::None => Ok(None),
            }
        }
        EventBody::Join { inviter, invite_link_name } => {
            let mid = member_id(conn, &bridge.platform, &e.user.id, &e.user.name, e.at).await?;
            let inviter_id = match inviter {
                Some(u) => Some(member_id(conn, &bridge.platform, &u.id, &u.name, e.at).await?),
                None => None,
            };
            let opened = sqlx::query(
                "INSERT INTO memberships (member_id, group_id, joined_at, inviter_member_id, invite_link_name) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO NOTHING",
            )
            .bind(mid)
            .bind(gid)
            .bind(e.at)
            .bind(inviter_id)
            .bind(invite_link_name)
            .execute(&mut *conn)
            .await?;
            if opened.rows_affected() == 1 {
                sqlx::query("UPDATE groups SET member_count = member_count + 1, updated_at = now() WHERE id = $1 AND member_count IS NOT NULL")
                    .bind(gid)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(None)
        }
        EventBody::Leave { reason } => {
            let mid = member_id(conn, &bridge.platform, &e.user.id, &e.user.name, e.at).await?;
            let closed = sqlx::query(
                "UPDATE memberships SET left_at = GREATEST($3, joined_at), left_reason = $4
                 WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL",
            )
            .bind(mid)
            .bind(gid)
            .bind(e.at)
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?;
            if closed.rows_affected() == 1 {
                sqlx::query("UPDATE groups SET member_count = GREATEST(member_count - 1, 0), updated_at = now() WHERE id = $1 AND member_count IS NOT NULL")
                    .bind(gid)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(None)
        }
    }
}

#[derive(sqlx::FromRow, serde::Deserialize)]
struct RulesRow {
    enabled: bool,
    keywords: Vec<String>,
    points: i32,
    streak_bonuses: serde_json::Value,
    day_start_hour: i32,
    makeup_enabled: bool,
    makeup_keyword: String,
    makeup_cost: i32,
    makeup_days_back: i32,
    makeup_per_month: i32,
    reply_lang: String,
    reply_zh: String,
    reply_en: String,
}

/// The group's rules, or the defaults when it has none yet.
pub async fn load_rules(conn: &mut PgConnection, group_id: i64, timezone: &str) -> sqlx::Result<Rules> {
    let row: Option<RulesRow> = sqlx::query_as(
        "SELECT enabled, keywords, points, streak_bonuses, day_start_hour, makeup_enabled, makeup_keyword, makeup_cost,
                makeup_days_back, makeup_per_month, reply_lang, reply_zh, reply_en
         FROM checkin_rules WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_optional(conn)
    .await?;
    Ok(rules_of(row, timezone))
}

fn rules_of(row: Option<RulesRow>, timezone: &str) -> Rules {
    let tz = timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    match row {
        None => Rules { timezone: tz, ..Rules::default() },
        Some(r) => Rules {
            enabled: r.enabled,
            keywords: r.keywords,
            points: r.points,
            streak_bonuses: serde_json::from_value::<Vec<StreakBonus>>(r.streak_bonuses).unwrap_or_default(),
            timezone: tz,
            day_start_hour: r.day_start_hour,
            makeup_enabled: r.makeup_enabled,
            makeup_keyword: r.makeup_keyword,
            makeup_cost: r.makeup_cost,
            makeup_days_back: r.makeup_days_back,
            makeup_per_month: r.makeup_per_month,
            reply_lang: Lang::parse(&r.reply_lang).unwrap_or(Lang::ZhCn),
            reply_zh: r.reply_zh,
            reply_en: r.reply_en,
        },
    }
}

async fn make_up(
    conn: &mut PgConnection,
    rules: &Rules,
    member: i64,
    name: &str,
    group: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<String> {
    let tr = Tr(rules.reply_lang);
    let today = rules.day_of(at);
    let days: Vec<NaiveDate> =
        sqlx::query_scalar("SELECT day FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day")
            .bind(member)
            .bind(group)
            .fetch_all(&mut *conn)
            .await?;
    fn with(base: [(&'static str, String); 3], extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut v = base.to_vec();
        v.extend(extra.iter().cloned());
        v
    }
    let base = [
        ("name", name.to_string()),
        ("cost", rules.makeup_cost.to_string()),
        ("limit", rules.makeup_per_month.to_string()),
    ];
    let vars = |extra: &[(&'static str, String)]| with(base.clone(), extra);
    let Some(target) = rules.makeup_day(today, &days) else {
        return Ok(render(tr.t("checkin.makeup_nothing"), &vars(&[("days", rules.makeup_days_back.to_string())])));
    };
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkins WHERE member_id = $1 AND group_id = $2 AND makeup
            AND date_trunc('month', day) = date_trunc('month', $3::date)",
    )
    .bind(member)
    .bind(group)
    .bind(today)
    .fetch_one(&mut *conn)
    .await?;
    if used >= rules.makeup_per_month as i64 {
        return Ok(render(tr.t("checkin.makeup_limit"), &vars(&[])));
    }
    let key = format!("makeup:{member}:{group}:{target}");
    if rules.makeup_cost > 0 {
        let spent = points::apply(
            conn,
            NewEntry {
                member_id: member,
                delta: -(rules.makeup_cost as i64),
                kind: "makeup",
                reference: &format!("makeup:{target}"),
                idempotency_key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await?;
        if let Applied::Insufficient { balance } = spent {
            return Ok(render(tr.t("checkin.makeup_poor"), &vars(&[("balance", balance.to_string())])));
        }
    }
    sqlx::query("INSERT INTO checkins (member_id, group_id, day, at, streak, makeup) VALUES ($1, $2, $3, $4, 1, TRUE) ON CONFLICT DO NOTHING")
        .bind(member)
        .bind(group)
        .bind(target)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    // The filled gap joins the runs around it: recount every streak from there on.
    let rows: Vec<(i64, NaiveDate, i32)> = sqlx::query_as(
        "SELECT id, day, streak FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day FOR UPDATE",
    )
    .bind(member)
    .bind(group)
    .fetch_all(&mut *conn)
    .await?;
    let fresh = streaks(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let mut current = 1;
    for ((id, day, old), new) in rows.iter().zip(fresh) {
        if *old != new {
            sqlx::query("UPDATE checkins SET streak = $2 WHERE id = $1").bind(id).bind(new).execute(&mut *conn).await?;
        }
        if *day <= today {
            current = new;
        }
    }
    let balance = points::balance(conn, member).await?;
    Ok(render(
        tr.t("checkin.makeup_done"),
        &vars(&[("date", target.to_string()), ("streak", current.to_string()), ("balance", balance.to_string())]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_path_points_at_the_text_of_every_reply_body() {
        for reply_to in [None, Some((serde_json::json!(-100), serde_json::json!(7)))] {
            let d = Delivery { dedupe_key: "k".into(), kind: "message", self_id: None, events: vec![], reply_to };
            for kind in [Kind::OneBot11, Kind::Telegram, Kind::Generic] {
                let body = envelope(kind, &d, "hello");
                let pointer: String = text_path(kind).iter().map(|p| format!("/{p}")).collect();
                assert_eq!(body.pointer(&pointer), Some(&serde_json::json!("hello")), "{kind:?}");
            }
        }
    }
}
