//! SQL of per-member platform invite links (`member_invite_links`: one row per member and group
//! ever, by its unique key), the per-group link setting, and join hints (`invite_hints`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::invite_link::LinkStatus;

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct LinkRow {
    pub id: i64,
    pub member_id: i64,
    pub group_id: i64,
    pub name: String,
    pub creates_join_request: bool,
    pub status: LinkStatus,
    pub invite_link: Option<String>,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const LINK: &str = "SELECT id, member_id, group_id, name, creates_join_request, status, invite_link, error, created_at,
    updated_at FROM member_invite_links";

/// The member's link row for the group, whatever its state.
pub async fn get(conn: &mut PgConnection, member: i64, group: i64) -> sqlx::Result<Option<LinkRow>> {
    sqlx::query_as(&format!("{LINK} WHERE member_id = $1 AND group_id = $2"))
        .bind(member)
        .bind(group)
        .fetch_optional(conn)
        .await
}

/// A group's Telegram chat as its bot reaches it: (bridge, chat id, whether personal links ask
/// to join). The group's own bridge first, else a Telegram bridge of the platform (as deliveries
/// are matched); only bridges with a bot token, only chats whose link is not broken.
pub async fn telegram_chat(conn: &mut PgConnection, group: i64) -> sqlx::Result<Option<(i64, String, bool)>> {
    sqlx::query_as(
        "SELECT b.id, g.external_chat_id, g.invite_links_join_request
         FROM groups g JOIN bridges b ON (g.bridge_id = b.id OR (g.bridge_id IS NULL AND b.platform = g.platform))
         WHERE g.id = $1 AND b.kind = 'telegram' AND b.access_token IS NOT NULL AND g.external_chat_id IS NOT NULL
           AND g.status <> 'archived' AND g.link_broken_at IS NULL
         ORDER BY g.bridge_id IS NOT DISTINCT FROM b.id DESC, b.id LIMIT 1",
    )
    .bind(group)
    .fetch_optional(conn)
    .await
}

/// Writes the pending row of a member's link; None when one exists already (made, asked for,
/// or failed): the unique key decides, also between concurrent asks (the second waits for the
/// first to commit, then writes nothing).
pub async fn insert_pending(
    conn: &mut PgConnection,
    member: i64,
    group: i64,
    name: &str,
    creates_join_request: bool,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO member_invite_links (member_id, group_id, name, creates_join_request) VALUES ($1, $2, $3, $4)
         ON CONFLICT (member_id, group_id) DO NOTHING RETURNING id",
    )
    .bind(member)
    .bind(group)
    .bind(name)
    .bind(creates_join_request)
    .fetch_optional(conn)
    .await
}

/// The groups among `groups` the member is in now (id, name), by name.
pub async fn member_groups(conn: &mut PgConnection, member: i64, groups: &[i64]) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT g.id, g.name FROM memberships ms JOIN groups g ON g.id = ms.group_id
         WHERE ms.member_id = $1 AND ms.left_at IS NULL AND ms.group_id = ANY($2) ORDER BY g.name, g.id",
    )
    .bind(member)
    .bind(groups)
    .fetch_all(conn)
    .await
}

/// The bot made the link: stored once (a row made already keeps its link).
pub async fn set_created(
    conn: &mut PgConnection,
    id: i64,
    link: &str,
    creates_join_request: bool,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE member_invite_links SET status = 'created', invite_link = $2, creates_join_request = $3, error = '',
            updated_at = now()
         WHERE id = $1 AND status <> 'created'",
    )
    .bind(id)
    .bind(link)
    .bind(creates_join_request)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The call failed or its outcome is unknown (never over a made link).
pub async fn set_status(conn: &mut PgConnection, id: i64, status: LinkStatus, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE member_invite_links SET status = $2, error = left($3, 500), updated_at = now()
         WHERE id = $1 AND status <> 'created'",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// The row of a link job.
pub async fn by_id(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<LinkRow>> {
    sqlx::query_as(&format!("{LINK} WHERE id = $1")).bind(id).fetch_optional(conn).await
}

/// The member's links for a group's page: how many in each state.
pub async fn counts(conn: &mut PgConnection, group: i64) -> sqlx::Result<Vec<(LinkStatus, i64)>> {
    sqlx::query_as(
        "SELECT status, count(*) FROM member_invite_links WHERE group_id = $1 GROUP BY status ORDER BY status",
    )
    .bind(group)
    .fetch_all(conn)
    .await
}

/// Whether the group's personal links ask to join (None: no such group).
pub async fn join_request_setting(conn: &mut PgConnection, group: i64) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT invite_links_join_request FROM groups WHERE id = $1")
        .bind(group)
        .fetch_optional(conn)
        .await
}

pub async fn set_join_request_setting(conn: &mut PgConnection, group: i64, on: bool) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE groups SET invite_links_join_request = $2 WHERE id = $1")
        .bind(group)
        .bind(on)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

// ---------------------------------------------------------------- join hints

/// Keeps what a join request said about the applicant's inviter, the latest request's word
/// replacing an older one (a hint already used is given again by a new request).
pub async fn put_hint(
    conn: &mut PgConnection,
    group: i64,
    member: i64,
    link_name: Option<&str>,
    inviter: Option<i64>,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO invite_hints (group_id, member_id, invite_link_name, inviter_member_id, seen_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (group_id, member_id) DO UPDATE SET invite_link_name = EXCLUDED.invite_link_name,
            inviter_member_id = EXCLUDED.inviter_member_id, seen_at = EXCLUDED.seen_at, used_at = NULL",
    )
    .bind(group)
    .bind(member)
    .bind(link_name)
    .bind(inviter)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the unused hint of the member's join into the group at `at`, seen within `hours`
/// before it (a conditional update: one join uses it, whatever the concurrency): (link name,
/// inviter).
pub async fn take_hint(
    conn: &mut PgConnection,
    group: i64,
    member: i64,
    at: DateTime<Utc>,
    hours: i64,
) -> sqlx::Result<Option<(Option<String>, Option<i64>)>> {
    sqlx::query_as(
        "UPDATE invite_hints SET used_at = $3
         WHERE group_id = $1 AND member_id = $2 AND used_at IS NULL
           AND seen_at <= $3 + interval '5 minutes' AND seen_at > $3 - $4 * interval '1 hour'
         RETURNING invite_link_name, inviter_member_id",
    )
    .bind(group)
    .bind(member)
    .bind(at)
    .bind(hours)
    .fetch_optional(conn)
    .await
}
