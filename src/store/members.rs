//! Members (one person on one platform) and their memberships in groups.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::like_pattern;
use crate::domain::member::MemberSpec;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub id: i64,
    pub platform: String,
    pub external_user_id: String,
    pub display_name: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Open memberships (in scope, for lists).
    pub group_count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub q: Option<String>,
    pub platform: Option<String>,
    pub group_id: Option<i64>,
    pub tag: Option<String>,
    pub scope: Option<Vec<i64>>,
}

// A scoped principal sees a member when the member has (or had) a membership in one of its groups.
const FROM_WHERE: &str = " FROM members m
    WHERE ($1::bigint[] IS NULL OR EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.group_id = ANY($1)))
      AND ($2::text IS NULL OR m.display_name ILIKE $2 ESCAPE '\\' OR m.external_user_id ILIKE $2 ESCAPE '\\')
      AND ($3::text IS NULL OR m.platform = $3)
      AND ($4::bigint IS NULL OR EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.group_id = $4 AND s.left_at IS NULL))
      AND ($5::text IS NULL OR $5 = ANY(m.tags))";

const COLUMNS: &str = "SELECT m.id, m.platform, m.external_user_id, m.display_name, m.tags, m.notes, m.last_active_at,
        m.created_at, m.updated_at,
        (SELECT count(*) FROM memberships s WHERE s.member_id = m.id AND s.left_at IS NULL
            AND ($1::bigint[] IS NULL OR s.group_id = ANY($1))) AS group_count";

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q Filter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(f.scope.as_deref())
        .bind(f.q.as_deref().map(like_pattern))
        .bind(f.platform.as_deref())
        .bind(f.group_id)
        .bind(f.tag.as_deref())
}

pub async fn list(conn: &mut PgConnection, f: &Filter, limit: i64, offset: i64) -> sqlx::Result<(Vec<MemberRow>, i64)> {
    let sql = format!("{COLUMNS}{FROM_WHERE} ORDER BY m.display_name, m.id LIMIT $6 OFFSET $7");
    let rows =
        bind_filter(sqlx::query_as::<_, MemberRow>(&sql), f).bind(limit).bind(offset).fetch_all(&mut *conn).await?;
    let (total,): (i64,) =
        bind_filter(sqlx::query_as(&format!("SELECT count(*){FROM_WHERE}")), f).fetch_one(conn).await?;
    Ok((rows, total))
}

pub async fn list_after(conn: &mut PgConnection, f: &Filter, after: i64, limit: i64) -> sqlx::Result<Vec<MemberRow>> {
    let sql = format!("{COLUMNS}{FROM_WHERE} AND m.id > $6 ORDER BY m.id LIMIT $7");
    bind_filter(sqlx::query_as::<_, MemberRow>(&sql), f).bind(after).bind(limit).fetch_all(conn).await
}

/// One member, if visible within `scope`.
pub async fn get(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<MemberRow>> {
    let f = Filter { scope: scope.map(|s| s.to_vec()), ..Filter::default() };
    let sql = format!("{COLUMNS}{FROM_WHERE} AND m.id = $6");
    bind_filter(sqlx::query_as::<_, MemberRow>(&sql), &f).bind(id).fetch_optional(conn).await
}

pub async fn memberships(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<MembershipRow>> {
    sqlx::query_as(
        "SELECT s.id, s.group_id, g.name AS group_name, s.role, s.joined_at, s.left_at
         FROM memberships s JOIN groups g ON g.id = s.group_id
         WHERE s.member_id = $1 AND ($2::bigint[] IS NULL OR s.group_id = ANY($2))
         ORDER BY s.left_at IS NOT NULL, s.joined_at DESC",
    )
    .bind(member_id)
    .bind(scope)
    .fetch_all(conn)
    .await
}

/// Inserts a new member; a duplicate (platform, external id) is a unique violation on
/// `members_platform_external_user_id_key`.
pub async fn insert(conn: &mut PgConnection, m: &MemberSpec) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name, tags, notes)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(m.platform.as_str())
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .fetch_one(conn)
    .await
}

/// Inserts or updates by (platform, external id); returns the id and whether it was new.
pub async fn upsert(conn: &mut PgConnection, m: &MemberSpec) -> sqlx::Result<(i64, bool)> {
    sqlx::query_as(
        "INSERT INTO members (platform, external_user_id, display_name, tags, notes)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (platform, external_user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
            tags = CASE WHEN cardinality(EXCLUDED.tags) > 0 THEN EXCLUDED.tags ELSE members.tags END,
            notes = CASE WHEN EXCLUDED.notes <> '' THEN EXCLUDED.notes ELSE members.notes END,
            updated_at = now()
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(m.platform.as_str())
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .fetch_one(conn)
    .await
}

pub async fn update(conn: &mut PgConnection, id: i64, m: &MemberSpec) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE members SET platform = $2, external_user_id = $3, display_name = $4, tags = $5, notes = $6, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(m.platform.as_str())
    .bind(&m.external_user_id)
    .bind(&m.display_name)
    .bind(&m.tags)
    .bind(&m.notes)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Opens a membership unless one is open already (then only the role changes).
pub async fn join(conn: &mut PgConnection, member_id: i64, group_id: i64, role: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO memberships (member_id, group_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(member_id)
    .bind(group_id)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

/// Closes the open membership, if any.
pub async fn leave(conn: &mut PgConnection, member_id: i64, group_id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE memberships SET left_at = now() WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL",
    )
    .bind(member_id)
    .bind(group_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Every member in scope with one open membership per line (or none), for CSV export.
#[derive(Debug, sqlx::FromRow)]
pub struct ExportRow {
    pub platform: String,
    pub external_user_id: String,
    pub display_name: String,
    pub group_id: Option<i64>,
    pub role: Option<String>,
    pub tags: Vec<String>,
    pub notes: String,
    pub balance: i64,
    pub last_active_at: Option<DateTime<Utc>>,
}

pub async fn export(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<ExportRow>> {
    sqlx::query_as(
        "SELECT m.platform, m.external_user_id, m.display_name, s.group_id, s.role, m.tags, m.notes,
                COALESCE(pa.balance, 0) AS balance, m.last_active_at
         FROM members m
         LEFT JOIN points_accounts pa ON pa.member_id = m.id
         LEFT JOIN memberships s ON s.member_id = m.id AND s.left_at IS NULL
            AND ($1::bigint[] IS NULL OR s.group_id = ANY($1))
         WHERE ($1::bigint[] IS NULL OR s.group_id IS NOT NULL)
         ORDER BY m.id, s.group_id",
    )
    .bind(scope)
    .fetch_all(conn)
    .await
}

pub async fn count(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM members m
         WHERE ($1::bigint[] IS NULL OR EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.group_id = ANY($1)))",
    )
    .bind(scope)
    .fetch_one(conn)
    .await
}
