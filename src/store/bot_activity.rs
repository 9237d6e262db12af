//! The per-group activity log of what the bots did and why (`bot_activity`). The platform's
//! answer to an action sent as an outbound job is that job's latest `bot_calls` row, joined
//! when the log is read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::action::Action;
use crate::domain::rule_set::ActivityKind;

/// One thing the bot did (or was asked to do).
#[derive(Debug, Clone)]
pub struct NewActivity<'a> {
    pub group_id: i64,
    pub member_id: Option<i64>,
    pub user_id: Option<&'a str>,
    pub bridge_id: Option<i64>,
    pub kind: ActivityKind,
    pub action: Option<&'a Action>,
    pub rule_set_id: Option<i64>,
    /// Which rule ("welcome", "keyword:12", "entry:keyword"…).
    pub rule: &'a str,
    pub reason: &'a str,
    /// The outbound job carrying `action`.
    pub job_id: Option<i64>,
    /// An answer known at once.
    pub answer: Option<&'a str>,
}

pub async fn record(conn: &mut PgConnection, a: &NewActivity<'_>) -> sqlx::Result<i64> {
    let action = a.action.map(serde_json::to_value).transpose().map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query_scalar(
        "INSERT INTO bot_activity (group_id, member_id, user_id, bridge_id, kind, action, rule_set_id, rule, reason,
                                   job_id, answer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, left($8, 200), left($9, 2000), $10, left($11, 2000)) RETURNING id",
    )
    .bind(a.group_id)
    .bind(a.member_id)
    .bind(a.user_id)
    .bind(a.bridge_id)
    .bind(a.kind)
    .bind(action)
    .bind(a.rule_set_id)
    .bind(a.rule)
    .bind(a.reason)
    .bind(a.job_id)
    .bind(a.answer)
    .fetch_one(conn)
    .await
}

/// A log row with the platform's answer, when the job carrying it has one.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct ActivityRow {
    pub id: i64,
    pub group_id: i64,
    pub member_id: Option<i64>,
    pub member_name: Option<String>,
    pub user_id: Option<String>,
    pub kind: ActivityKind,
    #[schema(value_type = Option<Object>)]
    pub action: Option<serde_json::Value>,
    pub rule_set_id: Option<i64>,
    pub rule: String,
    pub reason: String,
    pub job_id: Option<i64>,
    /// The answer known at once, else the outbound call's outcome (ok / failed / unknown)
    /// with its error or result.
    pub answer: Option<String>,
    pub at: DateTime<Utc>,
}

/// A group's log, newest first, `limit` rows before the row `before` (a cursor).
pub async fn list(
    conn: &mut PgConnection,
    group_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<ActivityRow>> {
    sqlx::query_as(
        "SELECT a.id, a.group_id, a.member_id, m.display_name AS member_name, a.user_id, a.kind, a.action,
                a.rule_set_id, a.rule, a.reason, a.job_id,
                COALESCE(a.answer, (SELECT c.outcome::text || COALESCE(': ' || COALESCE(c.error, c.result), '')
                                    FROM bot_calls c WHERE c.job_id = a.job_id ORDER BY c.id DESC LIMIT 1)) AS answer,
                a.at
         FROM bot_activity a LEFT JOIN members m ON m.id = a.member_id
         WHERE a.group_id = $1 AND ($2::bigint IS NULL OR a.id < $2)
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind(group_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Sets the answer of a row written before it was known.
pub async fn set_answer(conn: &mut PgConnection, id: i64, answer: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE bot_activity SET answer = left($2, 2000) WHERE id = $1")
        .bind(id)
        .bind(answer)
        .execute(conn)
        .await?;
    Ok(())
}
