//! Operator alerts: the webhook setting, raised and cleared conditions, and the delivery log.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::alert::{AlertKind, AlertSubject};

pub async fn webhook_url(conn: &mut PgConnection) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT webhook_url FROM alert_settings").fetch_optional(conn).await.map(Option::flatten)
}

pub async fn set_webhook_url(conn: &mut PgConnection, url: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE alert_settings SET webhook_url = $1, updated_at = now()").bind(url).execute(conn).await?;
    Ok(())
}

/// Opens an alert unless the same condition is open already; its id when this call opened it.
pub async fn raise(
    conn: &mut PgConnection,
    condition: AlertKind,
    subject_kind: AlertSubject,
    subject_id: i64,
    payload: &serde_json::Value,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO alerts (condition, subject_kind, subject_id, payload) VALUES ($1, $2, $3, $4)
         ON CONFLICT (condition, subject_kind, subject_id) WHERE cleared_at IS NULL DO NOTHING RETURNING id",
    )
    .bind(condition)
    .bind(subject_kind)
    .bind(subject_id)
    .bind(payload)
    .fetch_optional(conn)
    .await
}

/// Open alerts, locked for this transaction (others skip them): (id, condition, kind, subject).
pub async fn lock_open(conn: &mut PgConnection) -> sqlx::Result<Vec<(i64, AlertKind, AlertSubject, i64)>> {
    sqlx::query_as(
        "SELECT id, condition, subject_kind, subject_id FROM alerts WHERE cleared_at IS NULL FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(conn)
    .await
}

pub async fn clear(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE alerts SET cleared_at = now() WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub condition: AlertKind,
    pub subject_kind: AlertSubject,
    pub subject_id: i64,
    pub payload: serde_json::Value,
    pub raised_at: DateTime<Utc>,
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<AlertRow>> {
    sqlx::query_as("SELECT id, condition, subject_kind, subject_id, payload, raised_at FROM alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// One attempt to deliver an alert.
pub struct NewDelivery<'a> {
    pub alert_id: i64,
    pub url: &'a str,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub succeeded: bool,
}

pub async fn log_delivery(conn: &mut PgConnection, d: &NewDelivery<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO alert_deliveries (alert_id, url, attempt, status_code, error, succeeded) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(d.alert_id)
    .bind(d.url)
    .bind(d.attempt)
    .bind(d.status_code)
    .bind(&d.error)
    .bind(d.succeeded)
    .execute(conn)
    .await?;
    Ok(())
}

/// The words an operator recognises an alert by: the live code's name and the target's group.
const SUBJECT: &str =
    "COALESCE(a.payload #>> '{live_code,name}', '') || COALESCE(' · ' || (a.payload #>> '{target,group_name}'), '')";

#[derive(sqlx::FromRow)]
pub struct OpenAlert {
    pub raised_at: DateTime<Utc>,
    pub condition: AlertKind,
    pub subject: String,
}

pub async fn list_open(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<OpenAlert>> {
    sqlx::query_as(&format!(
        "SELECT a.raised_at, a.condition, {SUBJECT} AS subject FROM alerts a WHERE a.cleared_at IS NULL
         ORDER BY a.raised_at DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    pub at: DateTime<Utc>,
    pub condition: AlertKind,
    pub subject: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub succeeded: bool,
}

pub async fn list_deliveries(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(&format!(
        "SELECT d.at, a.condition, {SUBJECT} AS subject, d.attempt, d.status_code, d.error, d.succeeded
         FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id ORDER BY d.at DESC, d.id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}
