//! Check-ins: a group's rules; the one statement that writes a message or a check-in with
//! everything it earns; make-ups; and a group's check-ins as its page shows them (today in
//! order, the running streaks, and a month's calendar, each a page at a time, so that the cost
//! follows the page, not the group), a member's, and the API's list.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, PgConnection, Postgres, Type};

use crate::domain::checkin::{Note, Outcome, Rules, StreakBonus, Unit};
use crate::i18n::Lang;

// ---------------------------------------------------------------- the unit column

impl Type<Postgres> for Unit {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Unit {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Postgres>>::decode(value)?;
        Unit::parse(s).ok_or_else(|| format!("unknown unit {s:?}").into())
    }
}

impl Encode<'_, Postgres> for Unit {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

// ---------------------------------------------------------------- rules

/// A group's `checkin_rules` row as stored.
#[derive(sqlx::FromRow, serde::Deserialize)]
pub(crate) struct RulesRow {
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
    #[serde(default)]
    #[sqlx(default)]
    poster_template_id: Option<i64>,
    #[serde(default)]
    #[sqlx(default)]
    poster_text: String,
}

fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} {value:?} does not parse").into())
}

/// The rules of a row, or the defaults when the group has none yet, in the group's time zone.
/// A stored value that does not parse is an error, never silently a default.
pub(crate) fn rules_of(row: Option<RulesRow>, timezone: &str) -> sqlx::Result<Rules> {
    let tz: chrono_tz::Tz = timezone.parse().map_err(|_| corrupt("time zone", timezone))?;
    let Some(r) = row else { return Ok(Rules { timezone: tz, ..Rules::default() }) };
    let streak_bonuses = serde_json::from_value::<Vec<StreakBonus>>(r.streak_bonuses.clone())
        .map_err(|_| corrupt("streak bonuses", &r.streak_bonuses.to_string()))?;
    Ok(Rules {
        enabled: r.enabled,
        keywords: r.keywords,
        points: r.points,
        streak_bonuses,
        timezone: tz,
        day_start_hour: r.day_start_hour,
        makeup_enabled: r.makeup_enabled,
        makeup_keyword: r.makeup_keyword,
        makeup_cost: r.makeup_cost,
        makeup_days_back: r.makeup_days_back,
        makeup_per_month: r.makeup_per_month,
        reply_lang: Lang::parse(&r.reply_lang).ok_or_else(|| corrupt("reply language", &r.reply_lang))?,
        reply_zh: r.reply_zh,
        reply_en: r.reply_en,
        poster: r
            .poster_template_id
            .map(|template_id| crate::domain::checkin_poster::CheckinPoster { template_id, text: r.poster_text }),
    })
}

/// The group's rules, or the defaults when it has none yet.
pub async fn rules(conn: &mut PgConnection, group_id: i64, timezone: &str) -> sqlx::Result<Rules> {
    let row: Option<RulesRow> = sqlx::query_as(
        "SELECT enabled, keywords, points, streak_bonuses, day_start_hour, makeup_enabled, makeup_keyword, makeup_cost,
                makeup_days_back, makeup_per_month, reply_lang, reply_zh, reply_en, poster_template_id, poster_text
         FROM checkin_rules WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_optional(conn)
    .await?;
    rules_of(row, timezone)
}

/// Whether the group has rules of its own (else it follows the defaults).
pub async fn has_rules(conn: &mut PgConnection, group_id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM checkin_rules WHERE group_id = $1)")
        .bind(group_id)
        .fetch_one(conn)
        .await
}

/// Saves the group's rules (all but the time zone, which is the group's).
pub async fn save_rules(conn: &mut PgConnection, group_id: i64, r: &Rules) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO checkin_rules (group_id, enabled, keywords, points, streak_bonuses, day_start_hour, makeup_enabled,
                makeup_keyword, makeup_cost, makeup_days_back, makeup_per_month, reply_lang, reply_zh, reply_en)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (group_id) DO UPDATE SET enabled = EXCLUDED.enabled, keywords = EXCLUDED.keywords,
            points = EXCLUDED.points, streak_bonuses = EXCLUDED.streak_bonuses, day_start_hour = EXCLUDED.day_start_hour,
            makeup_enabled = EXCLUDED.makeup_enabled, makeup_keyword = EXCLUDED.makeup_keyword,
            makeup_cost = EXCLUDED.makeup_cost, makeup_days_back = EXCLUDED.makeup_days_back,
            makeup_per_month = EXCLUDED.makeup_per_month, reply_lang = EXCLUDED.reply_lang,
            reply_zh = EXCLUDED.reply_zh, reply_en = EXCLUDED.reply_en, updated_at = now()",
    )
    .bind(group_id)
    .bind(r.enabled)
    .bind(&r.keywords)
    .bind(r.points)
    .bind(sqlx::types::Json(&r.streak_bonuses))
    .bind(r.day_start_hour)
    .bind(r.makeup_enabled)
    .bind(&r.makeup_keyword)
    .bind(r.makeup_cost)
    .bind(r.makeup_days_back)
    .bind(r.makeup_per_month)
    .bind(r.reply_lang.code())
    .bind(&r.reply_zh)
    .bind(&r.reply_en)
    .execute(conn)
    .await?;
    super::groups::lookups_changed();
    Ok(())
}

// ---------------------------------------------------------------- a message, at once

/// After [`message_ctes`] for a message that asks for nothing: `result` (member, no outcome).
///
/// [`message_ctes`]: crate::store::bridges::message_ctes
macro_rules! plain_result {
    () => {
        "result AS (SELECT id AS member, NULL::jsonb AS outcome FROM m)"
    };
}

/// After [`message_ctes`] for a check-in: `result` (member, outcome as the JSON of
/// [`Outcome`]). The earning rules come as values (`$8` points per check-in, `$9` the bonus of
/// each streak, [`Rules::bonus_by_streak`]), and `$10`–`$12` are the note, its amount and unit.
///
/// At most one check-in per member, group and local day (the unique index decides); the streak
/// continues yesterday's; the points and any bonus for the streak reached are credited through
/// the ledger ([`credit_ctes`]) with keys derived from the member, group and day. The outcome
/// holds what the reply needs: the total days are a count from the statement's snapshot, which
/// does not hold the new row yet (hence the + 1), the rank today the group's counter for the
/// day (`checkin_days`). A second check-in the same day reports the streak of the first — or,
/// when that one was committed after this statement began (it waited on the unique index), the
/// streak it must have had.
///
/// `result` is `MATERIALIZED`: the delivery's row reads `outcome` three times, and PostgreSQL
/// would otherwise copy the CTE into each of them, building and running every subquery of the
/// outcome thrice (a sixth of the statement's cost, `docs/PERFORMANCE.md`).
///
/// [`message_ctes`]: crate::store::bridges::message_ctes
/// [`credit_ctes`]: crate::store::points::credit_ctes
macro_rules! checkin_result {
    () => {
        concat!(
            "yesterday AS (
                SELECT streak FROM checkins WHERE member_id = (SELECT id FROM m) AND group_id = $5 AND day = $7::date - 1
             ), checkin AS (
                INSERT INTO checkins (member_id, group_id, day, at, streak, note, quantity, unit)
                SELECT id, $5, $7, $4, COALESCE((SELECT streak + 1 FROM yesterday), 1), $10, $11::numeric, $12 FROM m
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
                    SELECT 'streak_bonus', COALESCE(($9::int[])[checkin.streak], 0)::bigint
                ) AS award
                WHERE amount > 0
             ), ",
            crate::store::points::credit_ctes!(),
            ", result AS MATERIALIZED (
                SELECT m.id AS member, jsonb_build_object(
                    'new', checkin.id IS NOT NULL,
                    'streak', COALESCE(checkin.streak,
                        (SELECT streak FROM checkins WHERE member_id = m.id AND group_id = $5 AND day = $7),
                        (SELECT streak + 1 FROM yesterday), 1),
                    'total_days', CASE WHEN checkin.id IS NULL THEN 0
                        ELSE (SELECT count(*) FROM checkins WHERE member_id = m.id AND group_id = $5) + 1 END,
                    'points', COALESCE((SELECT sum(delta) FROM entries), 0),
                    'balance', CASE WHEN checkin.id IS NULL THEN 0
                        ELSE COALESCE((SELECT balance FROM account),
                                      (SELECT balance FROM points_accounts WHERE member_id = m.id), 0) END,
                    'rank_today', COALESCE((SELECT checkins FROM today), 0)
                ) AS outcome
                FROM m LEFT JOIN checkin ON TRUE
             )"
        )
    };
}

/// [`message_at_once`]'s statement: `fresh` holds a row only when the delivery (`$13` bridge,
/// `$14` dedupe key) is new, and the delivery's row — `$15` kind, `$16` chat, `$17` user — is
/// written from `result` with the outcome kept for retries as `{"checkin": outcome}` (the
/// stored form `bridges::Stored` reads), so a retry writes nothing and a concurrent twin fails
/// on the dedupe key. Selects whether it was written and the outcome.
macro_rules! at_once {
    ($result:expr) => {
        concat!(
            "WITH fresh AS (SELECT WHERE NOT EXISTS (SELECT FROM bridge_events WHERE bridge_id = $13 AND dedupe_key = $14)), ",
            crate::store::bridges::message_ctes!(),
            ", ",
            $result,
            ", event AS (
                INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status, reply)
                SELECT $13, $14, $15, $16, $17, CASE WHEN outcome IS NULL THEN 204 ELSE 200 END,
                       CASE WHEN outcome IS NULL THEN NULL ELSE jsonb_build_object('checkin', outcome) END
                FROM result RETURNING reply -> 'checkin' AS outcome
             )
             SELECT EXISTS (SELECT FROM event), (SELECT outcome FROM event)"
        )
    };
}

/// The same inside a transaction that has claimed the delivery already.
macro_rules! in_transaction {
    ($result:expr) => {
        concat!(
            "WITH fresh AS (SELECT), ",
            crate::store::bridges::message_ctes!(),
            ", ",
            $result,
            " SELECT member, outcome FROM result"
        )
    };
}

/// One message in a linked group, as the message statements write it.
pub struct Message<'a> {
    pub platform: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub at: DateTime<Utc>,
    pub group: i64,
    /// owner | admin | member
    pub role: &'a str,
    /// The local day of `at` in the group.
    pub day: NaiveDate,
}

/// What a check-in earns, from the group's rules, and the note it keeps.
pub struct Earning<'a> {
    pub points: i64,
    /// [`Rules::bonus_by_streak`]
    pub bonus_by_streak: Vec<i32>,
    pub note: Option<&'a Note>,
}

impl Earning<'_> {
    pub fn of<'a>(rules: &Rules, note: Option<&'a Note>) -> Earning<'a> {
        Earning { points: rules.points.into(), bonus_by_streak: rules.bonus_by_streak(), note }
    }
}

/// The delivery's log row, for [`message_at_once`].
pub struct LogRow<'a> {
    pub bridge_id: i64,
    pub dedupe_key: &'a str,
    pub kind: &'a str,
    pub chat_id: &'a str,
    pub user_id: &'a str,
}

type Args = sqlx::postgres::PgArguments;

/// Binds `$1`–`$12` of the message statements (those of a check-in too, which a plain
/// message's statement leaves unused).
pub(crate) fn bind_message<'q, O>(
    q: sqlx::query::QueryAs<'q, Postgres, O, Args>,
    m: &'q Message<'q>,
    checkin: Option<&'q Earning<'q>>,
) -> sqlx::query::QueryAs<'q, Postgres, O, Args> {
    let note = checkin.and_then(|c| c.note);
    let amount = note.and_then(|n| n.amount.as_ref());
    q.bind(m.platform)
        .bind(m.user_id)
        .bind(m.name)
        .bind(m.at)
        .bind(m.group)
        .bind(m.role)
        .bind(m.day)
        .bind(checkin.map_or(0, |c| c.points))
        .bind(checkin.map(|c| c.bonus_by_streak.as_slice()).unwrap_or_default())
        .bind(note.map(|n| n.text.as_str()))
        .bind(amount.map(|a| a.value.as_str()))
        .bind(amount.map(|a| a.unit))
}

/// One message (a check-in when `checkin` is given) in a linked group as one statement, its own
/// transaction: the member, membership, activity, check-in with its note, ledger entries,
/// balance and the delivery's row. `Ok(None)` when the delivery was seen before (or a twin of
/// it won the race); else the check-in's outcome, if it was one.
pub async fn message_at_once(
    conn: &mut PgConnection,
    m: &Message<'_>,
    checkin: Option<&Earning<'_>>,
    log: &LogRow<'_>,
) -> sqlx::Result<Option<Option<Outcome>>> {
    let sql = match checkin {
        Some(_) => at_once!(checkin_result!()),
        None => at_once!(plain_result!()),
    };
    let written: sqlx::Result<(bool, Option<sqlx::types::Json<Outcome>>)> =
        bind_message(sqlx::query_as(sql), m, checkin)
            .bind(log.bridge_id)
            .bind(log.dedupe_key)
            .bind(log.kind)
            .bind(log.chat_id)
            .bind(log.user_id)
            .fetch_one(conn)
            .await;
    match written {
        Ok((true, outcome)) => Ok(Some(outcome.map(|o| o.0))),
        Ok((false, _)) => Ok(None),
        Err(sqlx::Error::Database(err)) if err.constraint() == Some("bridge_events_pkey") => Ok(None),
        Err(err) => Err(err),
    }
}

/// [`message_at_once`] inside the caller's transaction, which logs the delivery itself: the
/// member's id and the check-in's outcome, if it was one.
pub async fn message_in_transaction(
    conn: &mut PgConnection,
    m: &Message<'_>,
    checkin: Option<&Earning<'_>>,
) -> sqlx::Result<(i64, Option<Outcome>)> {
    let sql = match checkin {
        Some(_) => in_transaction!(checkin_result!()),
        None => in_transaction!(plain_result!()),
    };
    let (member, outcome): (i64, Option<sqlx::types::Json<Outcome>>) =
        bind_message(sqlx::query_as(sql), m, checkin).fetch_one(conn).await?;
    Ok((member, outcome.map(|o| o.0)))
}

// ---------------------------------------------------------------- make-ups

/// The member's check-in days in the group, in order.
pub async fn days(conn: &mut PgConnection, member: i64, group: i64) -> sqlx::Result<Vec<NaiveDate>> {
    sqlx::query_scalar("SELECT day FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day")
        .bind(member)
        .bind(group)
        .fetch_all(conn)
        .await
}

/// The member's make-ups in the group in the month of `day`.
pub async fn makeups_in_month(conn: &mut PgConnection, member: i64, group: i64, day: NaiveDate) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM checkins WHERE member_id = $1 AND group_id = $2 AND makeup
            AND date_trunc('month', day) = date_trunc('month', $3::date)",
    )
    .bind(member)
    .bind(group)
    .bind(day)
    .fetch_one(conn)
    .await
}

/// A made-up check-in on `day` (streak 1 until [`set_streak`] recounts).
pub async fn insert_makeup(
    conn: &mut PgConnection,
    member: i64,
    group: i64,
    day: NaiveDate,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO checkins (member_id, group_id, day, at, streak, makeup) VALUES ($1, $2, $3, $4, 1, TRUE) ON CONFLICT DO NOTHING")
        .bind(member)
        .bind(group)
        .bind(day)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The member's check-ins in the group (id, day, streak) in day order, locked.
pub async fn lock_streaks(
    conn: &mut PgConnection,
    member: i64,
    group: i64,
) -> sqlx::Result<Vec<(i64, NaiveDate, i32)>> {
    sqlx::query_as(
        "SELECT id, day, streak FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day FOR UPDATE",
    )
    .bind(member)
    .bind(group)
    .fetch_all(conn)
    .await
}

pub async fn set_streak(conn: &mut PgConnection, id: i64, streak: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE checkins SET streak = $2 WHERE id = $1").bind(id).bind(streak).execute(conn).await?;
    Ok(())
}

// ---------------------------------------------------------------- a group's page

#[derive(sqlx::FromRow)]
pub struct TodayRow {
    pub member_id: i64,
    pub display_name: String,
    pub at: DateTime<Utc>,
    pub streak: i32,
    pub makeup: bool,
    pub note: Option<String>,
    pub quantity: Option<f64>,
    pub unit: Option<Unit>,
}

/// Today's check-ins of the group in the order they came, `limit` from `offset`.
pub async fn today(
    conn: &mut PgConnection,
    group: i64,
    day: NaiveDate,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<TodayRow>> {
    sqlx::query_as(
        "SELECT c.member_id, m.display_name, c.at, c.streak, c.makeup, c.note, c.quantity::float8 AS quantity, c.unit
         FROM (SELECT * FROM checkins WHERE group_id = $1 AND day = $2 ORDER BY at, id LIMIT $3 OFFSET $4) c
         JOIN members m ON m.id = c.member_id ORDER BY c.at, c.id",
    )
    .bind(group)
    .bind(day)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}

/// How many checked in on `day` (the counter each check-in keeps: first check-ins, no make-ups).
pub async fn day_count(conn: &mut PgConnection, group: i64, day: NaiveDate) -> sqlx::Result<i64> {
    let n: Option<i32> = sqlx::query_scalar("SELECT checkins FROM checkin_days WHERE group_id = $1 AND day = $2")
        .bind(group)
        .bind(day)
        .fetch_optional(conn)
        .await?;
    Ok(n.unwrap_or(0).into())
}

#[derive(sqlx::FromRow)]
pub struct StreakRow {
    pub member_id: i64,
    pub display_name: String,
    pub day: NaiveDate,
    pub streak: i32,
}

/// The running streaks, longest first (then by member id): members whose latest check-in was
/// `today` or the day before, with that check-in's streak. Only those two days are read (a
/// streak is stored on each check-in), not the group's whole history, and names are looked up
/// for the shown rows only.
pub async fn running_streaks(
    conn: &mut PgConnection,
    group: i64,
    today: NaiveDate,
    limit: i64,
) -> sqlx::Result<Vec<StreakRow>> {
    sqlx::query_as(
        "SELECT top.member_id, m.display_name, top.day, top.streak FROM (
            SELECT * FROM (
                SELECT DISTINCT ON (member_id) member_id, day, streak FROM checkins
                WHERE group_id = $1 AND day BETWEEN $2::date - 1 AND $2
                ORDER BY member_id, day DESC
            ) latest ORDER BY streak DESC, member_id LIMIT $3
         ) top JOIN members m ON m.id = top.member_id
         ORDER BY top.streak DESC, top.member_id",
    )
    .bind(group)
    .bind(today)
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct CalendarMember {
    pub member_id: i64,
    pub display_name: String,
    pub total: i64,
}

/// Members who checked in between `from` and `to` (exclusive), most days first (then by id),
/// `limit` from `offset`; names are looked up for those rows only.
pub async fn calendar_members(
    conn: &mut PgConnection,
    group: i64,
    from: NaiveDate,
    to: NaiveDate,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<CalendarMember>> {
    sqlx::query_as(
        "SELECT a.member_id, m.display_name, a.total FROM (
            SELECT member_id, count(*) AS total FROM checkins
            WHERE group_id = $1 AND day >= $2 AND day < $3 GROUP BY member_id
            ORDER BY total DESC, member_id LIMIT $4 OFFSET $5
         ) a JOIN members m ON m.id = a.member_id
         ORDER BY a.total DESC, a.member_id",
    )
    .bind(group)
    .bind(from)
    .bind(to)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct CalendarHit {
    pub member_id: i64,
    pub display_name: String,
    pub day: NaiveDate,
    pub makeup: bool,
}

/// The check-ins of `members` between `from` and `to` (exclusive).
pub async fn calendar_hits(
    conn: &mut PgConnection,
    group: i64,
    from: NaiveDate,
    to: NaiveDate,
    members: &[i64],
) -> sqlx::Result<Vec<CalendarHit>> {
    sqlx::query_as(
        "SELECT c.member_id, m.display_name, c.day, c.makeup FROM checkins c JOIN members m ON m.id = c.member_id
         WHERE c.group_id = $1 AND c.day >= $2 AND c.day < $3 AND c.member_id = ANY($4)
         ORDER BY c.member_id, c.day",
    )
    .bind(group)
    .bind(from)
    .bind(to)
    .bind(members)
    .fetch_all(conn)
    .await
}

// ---------------------------------------------------------------- a member's

/// A member's messages per day from `from` to `to` (inclusive), summed over the groups in
/// `scope`.
pub async fn member_activity(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<(NaiveDate, i64)>> {
    sqlx::query_as(
        "SELECT day, sum(messages)::bigint FROM member_daily_activity
         WHERE member_id = $1 AND ($2::bigint[] IS NULL OR group_id = ANY($2)) AND day >= $3 AND day <= $4
         GROUP BY day ORDER BY day",
    )
    .bind(member_id)
    .bind(scope)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct MemberCheckin {
    pub group_id: i64,
    pub group_name: String,
    pub day: NaiveDate,
    pub streak: i32,
    pub makeup: bool,
    pub at: DateTime<Utc>,
    pub note: Option<String>,
}

/// A member's 30 latest check-ins in the groups in `scope`.
pub async fn member_checkins(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<MemberCheckin>> {
    sqlx::query_as(
        "SELECT c.group_id, g.name AS group_name, c.day, c.streak, c.makeup, c.at, c.note
         FROM checkins c JOIN groups g ON g.id = c.group_id
         WHERE c.member_id = $1 AND ($2::bigint[] IS NULL OR c.group_id = ANY($2))
         ORDER BY c.day DESC, c.at DESC LIMIT 30",
    )
    .bind(member_id)
    .bind(scope)
    .fetch_all(conn)
    .await
}

// ---------------------------------------------------------------- the API's list

#[derive(Debug, sqlx::FromRow)]
pub struct CheckinRow {
    pub id: i64,
    pub group_id: i64,
    pub member_id: i64,
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
    pub streak: i32,
    pub makeup: bool,
    pub note: Option<String>,
    pub quantity: Option<f64>,
    pub unit: Option<Unit>,
}

/// Which check-ins the API lists.
pub struct Filter {
    pub group_id: Option<i64>,
    pub member_id: Option<i64>,
    /// Groups the caller may see (`None`: all).
    pub scope: Option<Vec<i64>>,
}

/// Check-ins with an id above `after`, in id order, at most `limit`. Each filter is added only
/// when set, so that each combination gets its own plan (a group's check-ins by the index on
/// group and id).
pub async fn list_after(conn: &mut PgConnection, f: &Filter, after: i64, limit: i64) -> sqlx::Result<Vec<CheckinRow>> {
    let mut sql = String::from(
        "SELECT id, group_id, member_id, day, at, streak, makeup, note, quantity::float8 AS quantity, unit
         FROM checkins WHERE id > $1",
    );
    if f.group_id.is_some() {
        sql.push_str(" AND group_id = $2");
    }
    if f.member_id.is_some() {
        sql.push_str(" AND member_id = $3");
    }
    if f.scope.is_some() {
        sql.push_str(" AND group_id = ANY($4)");
    }
    sql.push_str(" ORDER BY id LIMIT $5");
    sqlx::query_as(&sql)
        .bind(after)
        .bind(f.group_id)
        .bind(f.member_id)
        .bind(f.scope.as_deref())
        .bind(limit)
        .fetch_all(conn)
        .await
}
