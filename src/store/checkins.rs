//! A group's check-ins as its page shows them: today in order, the running streaks, and a
//! month's calendar, each a page at a time, so that the cost follows the page, not the group.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

#[derive(sqlx::FromRow)]
pub struct TodayRow {
    pub member_id: i64,
    pub display_name: String,
    pub at: DateTime<Utc>,
    pub streak: i32,
    pub makeup: bool,
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
        "SELECT c.member_id, m.display_name, c.at, c.streak, c.makeup
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
