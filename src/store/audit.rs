//! The audit log: who changed what, appended in the same transaction as the change.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::auth::{ActorKind, Principal};

/// Who wrote an audit row, as stored in `audit_log.actor_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ActorType {
    Operator,
    Token,
    /// Shoal itself: the command line, first-start setup.
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::Operator => "operator",
            ActorType::Token => "token",
            ActorType::System => "system",
        }
    }
}

crate::domain::text_enum!(ActorType);

impl From<ActorKind> for ActorType {
    fn from(k: ActorKind) -> ActorType {
        match k {
            ActorKind::Operator => ActorType::Operator,
            ActorKind::Token => ActorType::Token,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_kind: ActorType,
    pub actor_name: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditRow {
    pub fn by_system(&self) -> bool {
        self.actor_kind == ActorType::System
    }
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
        Actor::Principal(p) => (ActorType::from(p.kind), Some(p.id), p.name.as_str()),
        Actor::System(name) => (ActorType::System, None, name),
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

/// What the audit log page filters by; None is "any".
#[derive(Debug, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One page of the rows matching `f`, newest first, and how many match.
pub async fn list_filtered(
    conn: &mut PgConnection,
    f: &Filter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<AuditRow>, i64)> {
    const WHERE: &str = "WHERE ($1::text IS NULL OR actor_name = $1) AND ($2::text IS NULL OR action = $2)
          AND ($3::text IS NULL OR target_kind = $3) AND ($4::text IS NULL OR target_id = $4)
          AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6)";
    let rows = sqlx::query_as::<_, AuditRow>(&format!(
        "SELECT id, at, actor_kind, actor_name, action, target_kind, target_id, details
         FROM audit_log {WHERE} ORDER BY at DESC, id DESC LIMIT $7 OFFSET $8"
    ))
    .bind(&f.actor)
    .bind(&f.action)
    .bind(&f.target_kind)
    .bind(&f.target_id)
    .bind(f.from)
    .bind(f.until)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM audit_log {WHERE}"))
        .bind(&f.actor)
        .bind(&f.action)
        .bind(&f.target_kind)
        .bind(&f.target_id)
        .bind(f.from)
        .bind(f.until)
        .fetch_one(conn)
        .await?;
    Ok((rows, total))
}

/// The values the filters offer: who has acted, which actions and which kinds of object occur.
pub async fn filter_choices(conn: &mut PgConnection) -> sqlx::Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let actors =
        sqlx::query_scalar("SELECT DISTINCT actor_name FROM audit_log ORDER BY 1").fetch_all(&mut *conn).await?;
    let actions = sqlx::query_scalar("SELECT DISTINCT action FROM audit_log ORDER BY 1").fetch_all(&mut *conn).await?;
    let kinds = sqlx::query_scalar("SELECT DISTINCT target_kind FROM audit_log ORDER BY 1").fetch_all(conn).await?;
    Ok((actors, actions, kinds))
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
