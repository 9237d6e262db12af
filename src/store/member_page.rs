//! The member's own page: their page epoch (revoking links), a page of their ledger, and their
//! check-ins per group for the calendar.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use crate::domain::points::LedgerKind;

/// The member as the page shows them; deleted (anonymised) members have no page.
#[derive(Debug, sqlx::FromRow)]
pub struct PageMember {
    pub id: i64,
    pub display_name: String,
    pub external_user_id: String,
    pub page_epoch: i32,
    pub balance: i64,
}

pub async fn member(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<Option<PageMember>> {
    sqlx::query_as(
        "SELECT m.id, m.display_name, m.external_user_id, m.page_epoch, COALESCE(a.balance, 0) AS balance
         FROM members m LEFT JOIN points_accounts a ON a.member_id = m.id
         WHERE m.id = $1 AND m.deleted_at IS NULL",
    )
    .bind(member_id)
    .fetch_optional(conn)
    .await
}

/// The member's current page epoch (None: no such member, or deleted).
pub async fn epoch(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar("SELECT page_epoch FROM members WHERE id = $1 AND deleted_at IS NULL")
        .bind(member_id)
        .fetch_optional(conn)
        .await
}

/// Raises the member's page epoch: every link made before stops opening the page. The new
/// epoch (None: no such member).
pub async fn bump_epoch(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar("UPDATE members SET page_epoch = page_epoch + 1 WHERE id = $1 RETURNING page_epoch")
        .bind(member_id)
        .fetch_optional(conn)
        .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct LedgerRow {
    pub at: DateTime<Utc>,
    pub kind: LedgerKind,
    pub delta: i64,
}

/// `limit + 1` entries from `offset`, newest first (the extra one says there is a next page).
pub async fn ledger(conn: &mut PgConnection, member_id: i64, limit: i64, offset: i64) -> sqlx::Result<Vec<LedgerRow>> {
    sqlx::query_as(
        "SELECT at, kind, delta FROM points_ledger WHERE member_id = $1 ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3",
    )
    .bind(member_id)
    .bind(limit + 1)
    .bind(offset)
    .fetch_all(conn)
    .await
}

/// A group the member checks in to (or did): its clock and the member's totals there.
#[derive(Debug, sqlx::FromRow)]
pub struct CheckinGroup {
    pub group_id: i64,
    pub name: String,
    pub timezone: String,
    pub day_start_hour: i32,
    pub total_days: i64,
    pub last_day: NaiveDate,
    pub last_streak: i32,
    /// The group's check-in poster template, if it has one.
    pub poster_template_id: Option<i64>,
}

/// The groups the member has checked in to, most recent first (at most 20).
pub async fn checkin_groups(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<Vec<CheckinGroup>> {
    sqlx::query_as(
        "SELECT g.id AS group_id, g.name, g.timezone, COALESCE(r.day_start_hour, 0) AS day_start_hour,
                s.total_days, s.last_day, last.streak AS last_streak, r.poster_template_id
         FROM (SELECT group_id, count(*) AS total_days, max(day) AS last_day
               FROM checkins WHERE member_id = $1 GROUP BY group_id) s
         JOIN groups g ON g.id = s.group_id
         LEFT JOIN checkin_rules r ON r.group_id = g.id
         JOIN checkins last ON last.member_id = $1 AND last.group_id = s.group_id AND last.day = s.last_day
         ORDER BY s.last_day DESC, g.id LIMIT 20",
    )
    .bind(member_id)
    .fetch_all(conn)
    .await
}

/// The member's check-in days in the group from `from` to `to` (inclusive).
pub async fn days(
    conn: &mut PgConnection,
    member_id: i64,
    group_id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<NaiveDate>> {
    sqlx::query_scalar(
        "SELECT day FROM checkins WHERE member_id = $1 AND group_id = $2 AND day BETWEEN $3 AND $4 ORDER BY day",
    )
    .bind(member_id)
    .bind(group_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}
