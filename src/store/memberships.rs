//! Memberships: who is (or was) in which group. The one writer of memberships and of
//! `groups.member_count` for every path but the one-statement check-in of a bridge message
//! (which opens a missing membership inside its own statement and leaves the count alone):
//! opening a membership adds one to the group's reported count, closing one takes one off,
//! whichever entrance did it (admin pages, API, CSV import, member deletion, bridge joins and
//! leaves). A group whose count is not reported (`member_count` NULL) keeps it unreported.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::member::{LeaveReason, MemberRole};

/// How a membership came to be, beyond member and group.
#[derive(Debug, Clone, Default)]
pub struct Joining<'a> {
    /// The role; None keeps an open membership's role (and is `member` for a new one).
    pub role: Option<MemberRole>,
    /// When it began (a bridge event's time); None is now.
    pub at: Option<DateTime<Utc>>,
    /// Who invited the member, and through which invite link (bridge joins).
    pub inviter_member_id: Option<i64>,
    pub invite_link_name: Option<&'a str>,
}

/// Opens a membership unless one is open already (then only a given role changes). True when
/// this call opened it; the group's reported count grows by one then.
pub async fn open(conn: &mut PgConnection, member_id: i64, group_id: i64, j: &Joining<'_>) -> sqlx::Result<bool> {
    let opened: bool = sqlx::query_scalar(
        "INSERT INTO memberships (member_id, group_id, role, joined_at, inviter_member_id, invite_link_name)
         VALUES ($1, $2, COALESCE($3, 'member'), COALESCE($4, now()), $5, $6)
         ON CONFLICT (member_id, group_id) WHERE left_at IS NULL
            DO UPDATE SET role = COALESCE($3, memberships.role)
         RETURNING (xmax = 0)",
    )
    .bind(member_id)
    .bind(group_id)
    .bind(j.role)
    .bind(j.at)
    .bind(j.inviter_member_id)
    .bind(j.invite_link_name)
    .fetch_one(&mut *conn)
    .await?;
    if opened {
        super::groups::count_member(conn, group_id, 1).await?;
    }
    Ok(opened)
}

/// Closes the open membership of `member_id` in `group_id`, if any, at `at` (None: now; never
/// before it began). True when one was closed; the group's reported count shrinks by one then.
pub async fn close(
    conn: &mut PgConnection,
    member_id: i64,
    group_id: i64,
    at: Option<DateTime<Utc>>,
    reason: LeaveReason,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE memberships SET left_at = GREATEST(COALESCE($3, now()), joined_at), left_reason = $4
         WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL",
    )
    .bind(member_id)
    .bind(group_id)
    .bind(at)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    let closed = r.rows_affected() == 1;
    if closed {
        super::groups::count_member(conn, group_id, -1).await?;
    }
    Ok(closed)
}

/// Closes every open membership of a member (when the member is deleted); the groups they were
/// closed in, each group's count one smaller.
pub async fn close_all(conn: &mut PgConnection, member_id: i64, reason: LeaveReason) -> sqlx::Result<Vec<i64>> {
    let mut groups: Vec<i64> = sqlx::query_scalar(
        "UPDATE memberships SET left_at = GREATEST(now(), joined_at), left_reason = $2
         WHERE member_id = $1 AND left_at IS NULL RETURNING group_id",
    )
    .bind(member_id)
    .bind(reason)
    .fetch_all(&mut *conn)
    .await?;
    // In one order, so that two deletions never wait for each other's group rows.
    groups.sort_unstable();
    for g in &groups {
        super::groups::count_member(conn, *g, -1).await?;
    }
    Ok(groups)
}
