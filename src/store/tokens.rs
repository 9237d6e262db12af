//! API tokens: shown once, stored as SHA-256 hashes, scoped like operators.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::auth::{ActorKind, Principal, Role};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, to recognise a token by (never enough to use it).
    pub prefix: String,
    pub role: Role,
    pub all_groups: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub group_ids: Vec<i64>,
}

const SELECT: &str = "SELECT t.id, t.name, t.prefix, t.role, t.all_groups, t.created_at, t.last_used_at, t.revoked_at,
        COALESCE(ARRAY(SELECT group_id FROM api_token_groups tg WHERE tg.token_id = t.id ORDER BY group_id), '{}') AS group_ids
    FROM api_tokens t";

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<TokenRow>> {
    sqlx::query_as(&format!("{SELECT} ORDER BY t.revoked_at IS NOT NULL, t.created_at DESC")).fetch_all(conn).await
}

pub struct NewToken<'a> {
    pub name: &'a str,
    pub hash: &'a [u8],
    pub prefix: &'a str,
    pub role: Role,
    pub all_groups: bool,
    pub group_ids: &'a [i64],
    pub created_by: Option<i64>,
}

impl std::fmt::Debug for NewToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("hash", &"[redacted]")
            .field("prefix", &self.prefix)
            .field("role", &self.role)
            .field("all_groups", &self.all_groups)
            .field("group_ids", &self.group_ids)
            .field("created_by", &self.created_by)
            .finish()
    }
}

pub async fn create(conn: &mut PgConnection, t: NewToken<'_>) -> sqlx::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (name, token_hash, prefix, role, all_groups, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(t.name)
    .bind(t.hash)
    .bind(t.prefix)
    .bind(t.role)
    .bind(t.all_groups || t.role == Role::Admin)
    .bind(t.created_by)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO api_token_groups (token_id, group_id)
         SELECT $1, g.id FROM groups g WHERE g.id = ANY($2)",
    )
    .bind(id)
    .bind(t.group_ids)
    .execute(conn)
    .await?;
    Ok(id)
}

/// A token's name, for the question before revoking it.
pub async fn name_of(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM api_tokens WHERE id = $1").bind(id).fetch_optional(conn).await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<TokenRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE t.id = $1")).bind(id).fetch_optional(conn).await
}

pub async fn revoke(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The principal behind a bearer token (looked up by hash; revoked tokens are refused).
pub async fn principal(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<Option<Principal>> {
    let row: Option<TokenRow> = sqlx::query_as(&format!("{SELECT} WHERE t.token_hash = $1 AND t.revoked_at IS NULL"))
        .bind(hash)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    // Record use at most once a minute, so reads stay cheap.
    sqlx::query(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(row.id)
    .execute(conn)
    .await?;
    let role = row.role;
    Ok(Some(Principal {
        kind: ActorKind::Token,
        id: row.id,
        name: format!("token:{}", row.name),
        role,
        scope: super::operators::scope_of(role, row.all_groups, &row.group_ids),
        language: None,
    }))
}
