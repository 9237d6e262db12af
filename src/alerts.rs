//! Operator alerts: a background check finds live-code conditions — a target's group QR
//! expiring soon, a target nearly full, a live code with no eligible target — and raises each
//! once (a unique index on open alerts settles races between processes). The process that
//! raised it delivers it to the configured webhook with retries and logs every attempt. A
//! condition that clears is closed, and fires again only if it comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::AlertConfig;
use crate::store::live_codes::{self, LiveCodeRow, TargetRow};

/// A condition that holds now, ready to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub condition: &'static str,
    pub subject_kind: &'static str,
    pub subject_id: i64,
    pub payload: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A target's group joins by QR image and the image expires within `expiring_hours`.
    ExpiringSoon,
    /// A target has used `nearly_full_percent` of its limit or more.
    NearlyFull,
    /// A live code whose next scan would go to the fallback.
    Exhausted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ExpiringSoon => "expiring_soon",
            Kind::NearlyFull => "nearly_full",
            Kind::Exhausted => "exhausted",
        }
    }
}

/// One condition found among live codes: the dashboard lists these, alerts raise them.
pub struct Finding<'a> {
    pub kind: Kind,
    pub code: &'a LiveCodeRow,
    /// The target concerned (none for `Exhausted`).
    pub target: Option<&'a TargetRow>,
    /// How many targets the code has.
    pub targets: usize,
}

/// Every condition that holds at `now` among `codes` and their `targets` (pure).
pub fn findings<'a>(
    codes: &'a [LiveCodeRow],
    targets: &'a [TargetRow],
    cfg: &AlertConfig,
    now: DateTime<Utc>,
) -> Vec<Finding<'a>> {
    let soon = now + chrono::Duration::hours(cfg.expiring_hours);
    let mut out = Vec::new();
    for c in codes.iter().filter(|c| c.live(now)) {
        let mine: Vec<&TargetRow> = targets.iter().filter(|t| t.live_code_id == c.id).collect();
        for t in mine.iter().copied().filter(|t| t.enabled && t.group_status == "active") {
            let finding = |kind| Finding { kind, code: c, target: Some(t), targets: mine.len() };
            if t.join_url.is_none() && t.qr_expires_at.is_some_and(|at| at <= soon) {
                out.push(finding(Kind::ExpiringSoon));
            }
            if t.scan_limit > 0 && (t.used as i64) * 100 >= cfg.nearly_full_percent * t.scan_limit as i64 {
                out.push(finding(Kind::NearlyFull));
            }
        }
        if !mine.iter().any(|t| t.state().eligible(now)) {
            out.push(Finding { kind: Kind::Exhausted, code: c, target: None, targets: mine.len() });
        }
    }
    out
}

/// Every condition to alert on now, across all live codes.
pub async fn current(db: &PgPool, cfg: &AlertConfig) -> sqlx::Result<Vec<Condition>> {
    let mut conn = db.acquire().await?;
    let codes = live_codes::list(&mut conn, &live_codes::Access::all()).await?;
    let targets = live_codes::all_targets(&mut conn, None).await?;
    drop(conn);
    let out = findings(&codes, &targets, cfg, Utc::now())
        .into_iter()
        // A code still being set up (no targets yet) shows on the dashboard but alerts nobody.
        .filter(|f| !(f.kind == Kind::Exhausted && f.targets == 0))
        .map(|f| {
            let code = json!({"id": f.code.id, "slug": f.code.slug, "name": f.code.name});
            match f.target {
                Some(t) => {
                    let target = json!({"id": t.id, "group_id": t.group_id, "group_name": t.group_name, "used": t.used, "scan_limit": t.scan_limit});
                    let mut payload = json!({"live_code": code, "target": target});
                    if f.kind == Kind::ExpiringSoon {
                        payload["expires_at"] = json!(t.qr_expires_at);
                    }
                    Condition { condition: f.kind.as_str(), subject_kind: "target", subject_id: t.id, payload }
                }
                None => Condition {
                    condition: f.kind.as_str(),
                    subject_kind: "live_code",
                    subject_id: f.code.id,
                    payload: json!({"live_code": code, "targets": f.targets}),
                },
            }
        })
        .collect();
    Ok(out)
}

/// Raises new conditions and clears gone ones; returns the ids of alerts this call raised.
pub async fn sync(db: &PgPool, conditions: &[Condition]) -> sqlx::Result<Vec<i64>> {
    let mut tx = db.begin().await?;
    let mut raised = Vec::new();
    for c in conditions {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (condition, subject_kind, subject_id, payload) VALUES ($1, $2, $3, $4)
             ON CONFLICT (condition, subject_kind, subject_id) WHERE cleared_at IS NULL DO NOTHING RETURNING id",
        )
        .bind(c.condition)
        .bind(c.subject_kind)
        .bind(c.subject_id)
        .bind(&c.payload)
        .fetch_optional(&mut *tx)
        .await?;
        raised.extend(id);
    }
    let holding: HashSet<(String, String, i64)> =
        conditions.iter().map(|c| (c.condition.to_string(), c.subject_kind.to_string(), c.subject_id)).collect();
    let open: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, condition, subject_kind, subject_id FROM alerts WHERE cleared_at IS NULL FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, cond, kind, subject) in open {
        if !holding.contains(&(cond, kind, subject)) {
            sqlx::query("UPDATE alerts SET cleared_at = now() WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(raised)
}

pub async fn webhook_url(db: &PgPool) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT webhook_url FROM alert_settings").fetch_optional(db).await.map(Option::flatten)
}

/// Delivers one alert: an attempt, then a retry after each configured delay until a 2xx.
pub async fn deliver(db: PgPool, client: reqwest::Client, cfg: AlertConfig, alert_id: i64) {
    let Ok(Some(url)) = webhook_url(&db).await else { return };
    let row: Option<(String, String, i64, serde_json::Value, chrono::DateTime<Utc>)> =
        sqlx::query_as("SELECT condition, subject_kind, subject_id, payload, raised_at FROM alerts WHERE id = $1")
            .bind(alert_id)
            .fetch_optional(&db)
            .await
            .ok()
            .flatten();
    let Some((condition, kind, subject, payload, raised_at)) = row else { return };
    let body = json!({"alert_id": alert_id, "condition": condition, "subject_kind": kind, "subject_id": subject, "raised_at": raised_at, "details": payload});
    let delays = std::iter::once(0).chain(cfg.retry_delays_ms.iter().copied());
    for (attempt, delay) in delays.enumerate() {
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let result = client.post(&url).timeout(Duration::from_secs(cfg.timeout_secs)).json(&body).send().await;
        let (status, error, ok) = match result {
            Ok(r) => (Some(r.status().as_u16() as i32), None, r.status().is_success()),
            Err(e) => (None, Some(e.without_url().to_string()), false),
        };
        let logged = sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, url, attempt, status_code, error, succeeded) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(alert_id)
        .bind(&url)
        .bind(attempt as i32 + 1)
        .bind(status)
        .bind(error)
        .bind(ok)
        .execute(&db)
        .await;
        if let Err(e) = logged {
            tracing::warn!(error = %e, "could not log an alert delivery");
        }
        if ok {
            return;
        }
    }
    tracing::warn!(alert_id, "alert webhook delivery failed after all retries");
}

/// Runs the checks every `check_interval_ms`, or at once when `poke` is notified (a scan fell
/// back), until `stop` resolves.
pub fn spawn(db: PgPool, cfg: AlertConfig, poke: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().user_agent("Shoal alerts").build().unwrap_or_default();
        let period = Duration::from_millis(cfg.check_interval_ms.max(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = poke.notified() => {}
            }
            match async { sync(&db, &current(&db, &cfg).await?).await }.await {
                Ok(raised) => {
                    for id in raised {
                        tokio::spawn(deliver(db.clone(), client.clone(), cfg.clone(), id));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert check failed"),
            }
        }
    })
}
