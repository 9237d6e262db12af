//! The audit log: who changed what, appended in the same transaction as the change.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::auth::Principal;

#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_name: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
}

/// Who did it: an operator, an API token, or Shoal itself (CLI, setup).
pub enum Actor<'a> {
    Principal(&'a Principal),
    System(&'a str),
}

pub async fn record(
    conn: &mut PgConnection,
    actor: Actor<'_>,
    action: &str,
    target_kind: &str,
    target_id: Option<String>,
    details: serde_json::Value,
) -> sqlx::Result<()> {
    let (kind, id, name) = match actor {
        Actor::Principal(p) => (p.kind.as_str(), Some(p.id), p.name.as_str()),
        Actor::System(name) => ("system", None, name),
    };
    sqlx::query(
        "INSERT INTO audit_log (actor_kind, actor_id, actor_name, action, target_kind, target_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(kind)
    .bind(id)
    .bind(name)
    .bind(action)
    .bind(target_kind)
    .bind(target_id)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut PgConnection, limit: i64, offset: i64) -> sqlx::Result<(Vec<AuditRow>, i64)> {
    let rows = sqlx::query_as::<_, AuditRow>(
        "SELECT id, at, actor_kind, actor_name, action, target_kind, target_id, details
         FROM audit_log ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(conn).await?;
    Ok((rows, total))
}
