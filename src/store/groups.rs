//! Groups and their uploaded QR images.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::like_pattern;
use crate::domain::group::{GroupSpec, GroupStatus};
use crate::domain::qr::QrImage;
use crate::domain::{Platform, Zone};

/// What a chat's lookup finds (`store::bridges::find_group`: the group, its time zone, status, link and
/// check-in rules) changes only through writes in `store`, and each of them bumps this counter
/// once it has run, so that this process's cache of lookups (`bridges::GroupCache`) drops what
/// it holds. A lookup made after that bump but before the write's commit reads the old group;
/// so every use case's commit bumps it again (`app::AfterCommit::run`). Writes made by another
/// process, or outside a use case, are seen when the cache's entries expire.
static LOOKUP_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current generation of chat lookups (see [`lookups_changed`]).
pub fn lookup_generation() -> u64 {
    LOOKUP_GENERATION.load(Ordering::Acquire)
}

/// Called by every write that may change what a chat's lookup finds.
pub(crate) fn lookups_changed() {
    LOOKUP_GENERATION.fetch_add(1, Ordering::AcqRel);
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub platform: Platform,
    pub join_url: Option<String>,
    pub capacity: i32,
    pub member_count: Option<i32>,
    pub timezone: Zone,
    pub external_chat_id: Option<String>,
    pub status: GroupStatus,
    pub tags: Vec<String>,
    pub notes: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub has_qr: bool,
    pub qr_sha256: Option<String>,
    pub qr_payload: Option<String>,
    pub qr_uploaded_at: Option<DateTime<Utc>>,
    pub qr_expires_at: Option<DateTime<Utc>>,
}

impl GroupRow {
    pub fn qr_expired(&self) -> bool {
        self.qr_expires_at.is_some_and(|at| at <= Utc::now())
    }
    pub fn has_join_target(&self) -> bool {
        self.join_url.is_some() || self.has_qr
    }
}

const SELECT: &str = "SELECT g.id, g.name, g.platform, g.join_url, g.capacity, g.member_count, g.timezone,
        g.external_chat_id, g.status, g.tags, g.notes, g.created_at, g.updated_at,
        (q.group_id IS NOT NULL) AS has_qr, q.sha256 AS qr_sha256, q.qr_payload,
        q.uploaded_at AS qr_uploaded_at, q.expires_at AS qr_expires_at
    FROM groups g LEFT JOIN group_qr_images q ON q.group_id = g.id";

/// Which statuses a list shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every status but archived.
    #[default]
    Current,
    All,
    Only(GroupStatus),
}

impl StatusFilter {
    /// The names a list's `status` parameter takes.
    pub const NAMES: &'static [&'static str] = &["active", "paused", "archived", "all"];

    /// `all` or a status; None for anything else.
    pub fn parse(s: &str) -> Option<StatusFilter> {
        match s.trim() {
            "all" => Some(StatusFilter::All),
            s => GroupStatus::parse(s).map(StatusFilter::Only),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Current => "",
            StatusFilter::All => "all",
            StatusFilter::Only(s) => s.as_str(),
        }
    }
}

/// List filters; `scope` None means every group.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub q: Option<String>,
    pub platform: Option<Platform>,
    pub status: StatusFilter,
    pub tag: Option<String>,
    pub scope: Option<Vec<i64>>,
}

const WHERE: &str = " WHERE ($1::bigint[] IS NULL OR g.id = ANY($1))
      AND ($2::text IS NULL OR ((g.name || ' ' || coalesce(g.external_chat_id, '') || ' ' || g.notes) ILIKE $2 ESCAPE '\\'
           AND (g.name ILIKE $2 ESCAPE '\\' OR g.external_chat_id ILIKE $2 ESCAPE '\\' OR g.notes ILIKE $2 ESCAPE '\\')))
      AND ($3::text IS NULL OR g.platform = $3)
      AND (CASE WHEN $4::text IS NULL THEN g.status <> 'archived' WHEN $4 = 'all' THEN TRUE ELSE g.status = $4 END)
      AND ($5::text IS NULL OR $5 = ANY(g.tags))";

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q Filter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let status = match f.status {
        StatusFilter::Current => None,
        other => Some(other.as_str()),
    };
    q.bind(f.scope.as_deref())
        .bind(f.q.as_deref().map(like_pattern))
        .bind(f.platform)
        .bind(status)
        .bind(f.tag.as_deref())
}

pub async fn list(conn: &mut PgConnection, f: &Filter, limit: i64, offset: i64) -> sqlx::Result<(Vec<GroupRow>, i64)> {
    let sql = format!("{SELECT}{WHERE} ORDER BY g.name, g.id LIMIT $6 OFFSET $7");
    let rows =
        bind_filter(sqlx::query_as::<_, GroupRow>(&sql), f).bind(limit).bind(offset).fetch_all(&mut *conn).await?;
    let count_sql = format!("SELECT count(*) FROM groups g{WHERE}");
    let (total,): (i64,) = bind_filter(sqlx::query_as(&count_sql), f).fetch_one(conn).await?;
    Ok((rows, total))
}

/// Keyset pagination for the API: groups with id > `after`, in id order.
pub async fn list_after(conn: &mut PgConnection, f: &Filter, after: i64, limit: i64) -> sqlx::Result<Vec<GroupRow>> {
    let sql = format!("{SELECT}{WHERE} AND g.id > $6 ORDER BY g.id LIMIT $7");
    bind_filter(sqlx::query_as::<_, GroupRow>(&sql), f).bind(after).bind(limit).fetch_all(conn).await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<GroupRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE g.id = $1")).bind(id).fetch_optional(conn).await
}

/// Groups that need an operator: no way to join, or a QR image expired or expiring within
/// `hours` (`alerts.expiring_hours`); archived groups aside.
pub async fn needing_attention(
    conn: &mut PgConnection,
    scope: Option<&[i64]>,
    hours: i64,
    limit: i64,
) -> sqlx::Result<Vec<GroupRow>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::bigint[] IS NULL OR g.id = ANY($1)) AND g.status <> 'archived'
           AND ((g.join_url IS NULL AND q.group_id IS NULL) OR q.expires_at <= now() + make_interval(hours => $2::int))
         ORDER BY q.expires_at NULLS FIRST, g.name LIMIT $3"
    ))
    .bind(scope)
    .bind(hours as i32)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Id and name of every group in scope (for pickers), archived last.
pub async fn names(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT id, name FROM groups WHERE ($1::bigint[] IS NULL OR id = ANY($1))
         ORDER BY status = 'archived', name, id",
    )
    .bind(scope)
    .fetch_all(conn)
    .await
}

pub async fn insert(conn: &mut PgConnection, g: &GroupSpec) -> sqlx::Result<i64> {
    let id = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, join_url, capacity, member_count, timezone, external_chat_id, status, tags, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&g.name)
    .bind(g.platform)
    .bind(&g.join_url)
    .bind(g.capacity)
    .bind(g.member_count)
    .bind(g.timezone)
    .bind(&g.external_chat_id)
    .bind(g.status)
    .bind(&g.tags)
    .bind(&g.notes)
    .fetch_one(conn)
    .await;
    lookups_changed();
    id
}

pub async fn update(conn: &mut PgConnection, id: i64, g: &GroupSpec) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE groups SET name = $2, platform = $3, join_url = $4, capacity = $5, member_count = $6, timezone = $7,
            external_chat_id = $8, status = $9, tags = $10, notes = $11, updated_at = now(),
            -- A chat changed by hand is no longer the linking bridge's.
            bridge_id = CASE WHEN platform = $3 AND external_chat_id IS NOT DISTINCT FROM $8 THEN bridge_id END
         WHERE id = $1",
    )
    .bind(id)
    .bind(&g.name)
    .bind(g.platform)
    .bind(&g.join_url)
    .bind(g.capacity)
    .bind(g.member_count)
    .bind(g.timezone)
    .bind(&g.external_chat_id)
    .bind(g.status)
    .bind(&g.tags)
    .bind(&g.notes)
    .execute(&mut *conn)
    .await?;
    lookups_changed();
    // The expiry belongs to the QR image; a form may move it without a new upload.
    if let Some(at) = g.qr_expires_at {
        sqlx::query("UPDATE group_qr_images SET expires_at = $2 WHERE group_id = $1")
            .bind(id)
            .bind(at)
            .execute(conn)
            .await?;
    }
    Ok(r.rows_affected() == 1)
}

pub async fn set_status(conn: &mut PgConnection, id: i64, status: GroupStatus) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE groups SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(conn)
        .await?;
    lookups_changed();
    Ok(r.rows_affected() == 1)
}

/// Stores or replaces (in place) the group's QR image.
pub async fn put_qr(
    conn: &mut PgConnection,
    group_id: i64,
    img: &QrImage,
    expires_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO group_qr_images (group_id, content_type, bytes, sha256, qr_payload, width, height, uploaded_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8)
         ON CONFLICT (group_id) DO UPDATE SET content_type = EXCLUDED.content_type, bytes = EXCLUDED.bytes,
            sha256 = EXCLUDED.sha256, qr_payload = EXCLUDED.qr_payload, width = EXCLUDED.width,
            height = EXCLUDED.height, uploaded_at = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind(group_id)
    .bind(img.content_type)
    .bind(&img.bytes)
    .bind(&img.sha256)
    .bind(&img.payload)
    .bind(img.width as i32)
    .bind(img.height as i32)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE groups SET updated_at = now() WHERE id = $1").bind(group_id).execute(conn).await?;
    Ok(())
}

pub async fn qr_image(conn: &mut PgConnection, group_id: i64) -> sqlx::Result<Option<(String, Vec<u8>, String)>> {
    sqlx::query_as("SELECT content_type, bytes, sha256 FROM group_qr_images WHERE group_id = $1")
        .bind(group_id)
        .fetch_optional(conn)
        .await
}

/// Counts for the dashboard, within scope.
#[derive(Debug, Default, sqlx::FromRow)]
pub struct Overview {
    pub active: i64,
    pub paused: i64,
    pub archived: i64,
    pub qr_expiring: i64,
    pub qr_expired: i64,
    pub no_target: i64,
    pub members_reported: i64,
}

/// How many groups (not archived) there are on `platform`.
pub async fn count_on_platform(conn: &mut PgConnection, platform: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM groups WHERE platform = $1 AND status <> 'archived'")
        .bind(platform)
        .fetch_one(conn)
        .await
}

/// The dashboard's counts; a QR image expiring within `expiring_hours` (`alerts.expiring_hours`,
/// the same window the alerts and the live-code pages use) counts as expiring.
pub async fn overview(conn: &mut PgConnection, scope: Option<&[i64]>, expiring_hours: i64) -> sqlx::Result<Overview> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE g.status = 'active') AS active,
                count(*) FILTER (WHERE g.status = 'paused') AS paused,
                count(*) FILTER (WHERE g.status = 'archived') AS archived,
                count(*) FILTER (WHERE g.status <> 'archived' AND q.expires_at > now()
                                 AND q.expires_at <= now() + make_interval(hours => $2::int)) AS qr_expiring,
                count(*) FILTER (WHERE g.status <> 'archived' AND q.expires_at <= now()) AS qr_expired,
                count(*) FILTER (WHERE g.status <> 'archived' AND g.join_url IS NULL AND q.group_id IS NULL) AS no_target,
                COALESCE(sum(g.member_count) FILTER (WHERE g.status <> 'archived'), 0)::bigint AS members_reported
         FROM groups g LEFT JOIN group_qr_images q ON q.group_id = g.id
         WHERE ($1::bigint[] IS NULL OR g.id = ANY($1))",
    )
    .bind(scope)
    .bind(expiring_hours.clamp(0, i32::MAX as i64) as i32)
    .fetch_one(conn)
    .await
}

/// Moves the group's reported member count by `delta` (±1) when a count is reported: the one
/// statement that keeps `member_count` in step with memberships, called by `store::memberships`
/// only.
pub(super) async fn count_member(conn: &mut PgConnection, group_id: i64, delta: i32) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE groups SET member_count = GREATEST(member_count + $2, 0), updated_at = now()
         WHERE id = $1 AND member_count IS NOT NULL",
    )
    .bind(group_id)
    .bind(delta)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a group to a scoped principal's groups (a group it has just created or linked); a
/// principal with every group needs nothing.
pub async fn grant(conn: &mut PgConnection, p: &crate::auth::Principal, group_id: i64) -> sqlx::Result<()> {
    if p.group_filter().is_none() {
        return Ok(());
    }
    let sql = match p.kind {
        crate::auth::ActorKind::Operator => {
            "INSERT INTO operator_groups (operator_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        crate::auth::ActorKind::Token => {
            "INSERT INTO api_token_groups (token_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
    };
    sqlx::query(sql).bind(p.id).bind(group_id).execute(conn).await?;
    Ok(())
}

/// Sets a group's member count as its platform reports it (the bridges' member-count refresh).
/// The one writer of a reported count, so that live codes route on what the platform says.
/// Returns whether the group exists.
pub async fn set_member_count(conn: &mut PgConnection, group_id: i64, count: i32) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE groups SET member_count = $2, updated_at = now() WHERE id = $1 AND member_count IS DISTINCT FROM $2",
    )
    .bind(group_id)
    .bind(count.clamp(0, 1_000_000))
    .execute(&mut *conn)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(true);
    }
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)").bind(group_id).fetch_one(conn).await
}
