//! The points ledger: append-only entries, a balance kept beside them in the same transaction,
//! never negative, and idempotency keys so that an award is applied once.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub member_id: i64,
    pub delta: i64,
    pub kind: String,
    pub reference: String,
    pub idempotency_key: String,
    #[serde(skip)]
    pub request_hash: Option<String>,
    pub operator_id: Option<i64>,
    pub note: String,
    pub at: DateTime<Utc>,
}

pub struct NewEntry<'a> {
    pub member_id: i64,
    pub delta: i64,
    pub kind: &'a str,
    pub reference: &'a str,
    pub idempotency_key: &'a str,
    pub request_hash: Option<&'a str>,
    pub operator_id: Option<i64>,
    pub note: &'a str,
}

#[derive(Debug)]
pub enum Applied {
    /// Written now.
    New(Entry),
    /// The key was used before: the original entry.
    Existing(Entry),
    /// A spend larger than the balance: nothing written.
    Insufficient { balance: i64 },
}

const COLUMNS: &str = "id, member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note, at";

pub async fn by_key(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<Entry>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM points_ledger WHERE idempotency_key = $1"))
        .bind(key)
        .fetch_optional(conn)
        .await
}

pub async fn balance(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar("SELECT balance FROM points_accounts WHERE member_id = $1")
        .bind(member_id)
        .fetch_optional(conn)
        .await?
        .unwrap_or(0))
}

/// Applies one entry inside the caller's transaction. The account row is locked first, so
/// concurrent spends are ordered and the balance check cannot be raced.
pub async fn apply(conn: &mut PgConnection, e: NewEntry<'_>) -> sqlx::Result<Applied> {
    if let Some(existing) = by_key(&mut *conn, e.idempotency_key).await? {
        return Ok(Applied::Existing(existing));
    }
    sqlx::query("INSERT INTO points_accounts (member_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(e.member_id)
        .execute(&mut *conn)
        .await?;
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM points_accounts WHERE member_id = $1 FOR UPDATE")
        .bind(e.member_id)
        .fetch_one(&mut *conn)
        .await?;
    if balance + e.delta < 0 {
        return Ok(Applied::Insufficient { balance });
    }
    let inserted: Option<Entry> = sqlx::query_as(&format!(
        "INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(e.member_id)
    .bind(e.delta)
    .bind(e.kind)
    .bind(e.reference)
    .bind(e.idempotency_key)
    .bind(e.request_hash)
    .bind(e.operator_id)
    .bind(e.note)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(entry) = inserted else {
        // Raced with another request using the same key: theirs stands.
        return Ok(Applied::Existing(by_key(conn, e.idempotency_key).await?.ok_or(sqlx::Error::RowNotFound)?));
    };
    sqlx::query("UPDATE points_accounts SET balance = balance + $2, updated_at = now() WHERE member_id = $1")
        .bind(e.member_id)
        .bind(e.delta)
        .execute(conn)
        .await?;
    Ok(Applied::New(entry))
}

pub async fn entries(conn: &mut PgConnection, member_id: i64, limit: i64) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM points_ledger WHERE member_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
    ))
    .bind(member_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
