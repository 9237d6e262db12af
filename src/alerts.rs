//! Operator alerts: a background check finds live-code conditions — a target's group QR
//! expiring soon, a target nearly full, a live code with no eligible target — and raises each
//! once (a unique index on open alerts settles races between processes), with a delivery job in
//! the same transaction: the job system delivers it to the configured webhook, retries, and
//! survives restarts; every attempt is logged. A condition that clears is closed, and fires
//! again only if it comes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::config::{AlertConfig, Config};
pub use crate::domain::alert::{AlertKind as Kind, AlertSubject};
use crate::jobs::{JobContext, Outcome};
use crate::outbound::{error_chain, Policy};
use crate::store::alerts::{self, NewDelivery};
use crate::store::jobs::{self, Claimed, JobKind};
use crate::store::live_codes::{self, LiveCodeRow, TargetRow};

/// A condition that holds now, ready to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub condition: Kind,
    pub subject_kind: AlertSubject,
    pub subject_id: i64,
    pub payload: serde_json::Value,
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
        for t in mine.iter().copied().filter(|t| t.enabled && t.group_status.is_active()) {
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
                    Condition { condition: f.kind, subject_kind: AlertSubject::Target, subject_id: t.id, payload }
                }
                None => Condition {
                    condition: f.kind,
                    subject_kind: AlertSubject::LiveCode,
                    subject_id: f.code.id,
                    payload: json!({"live_code": code, "targets": f.targets}),
                },
            }
        })
        .collect();
    Ok(out)
}

/// Raises new conditions and clears gone ones, and enqueues a delivery job for each alert it
/// raised, in the same transaction; returns the ids of alerts this call raised.
pub async fn sync(db: &PgPool, config: &Config, conditions: &[Condition]) -> sqlx::Result<Vec<i64>> {
    let mut tx = db.begin().await?;
    let mut raised = Vec::new();
    for c in conditions {
        raised.extend(alerts::raise(&mut tx, c.condition, c.subject_kind, c.subject_id, &c.payload).await?);
    }
    let holding: HashSet<(Kind, AlertSubject, i64)> =
        conditions.iter().map(|c| (c.condition, c.subject_kind, c.subject_id)).collect();
    for (id, cond, kind, subject) in alerts::lock_open(&mut tx).await? {
        if !holding.contains(&(cond, kind, subject)) {
            alerts::clear(&mut tx, id).await?;
        }
    }
    if !raised.is_empty() && alerts::webhook_url(&mut tx).await?.is_some() {
        for id in &raised {
            let job = crate::jobs::new_job(
                config,
                JobKind::AlertDelivery,
                json!({"alert_id": id}),
                Some(format!("alert:{id}")),
            );
            jobs::enqueue(&mut tx, &job).await?;
        }
    }
    tx.commit().await?;
    Ok(raised)
}

/// The job that delivers one alert: one attempt per run; the job system retries it after each
/// configured delay (`alerts.retry_delays_ms`) until a 2xx, and every attempt is logged.
pub async fn deliver_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let Some(alert_id) = job.job.payload.get("alert_id").and_then(|v| v.as_i64()) else {
        return Outcome::Dead { error: "the job names no alert".into() };
    };
    let loaded = async {
        let mut conn = ctx.db.acquire().await?;
        Ok::<_, sqlx::Error>((alerts::webhook_url(&mut conn).await?, alerts::get(&mut conn, alert_id).await?))
    }
    .await;
    let (url, alert) = match loaded {
        Ok((Some(url), Some(alert))) => (url, alert),
        // Nothing to deliver to, or the alert is gone: done, there is nothing left to do.
        Ok(_) => return Outcome::Done,
        Err(e) => return Outcome::Retry { error: e.to_string(), after: None },
    };
    let body = json!({"alert_id": alert.id, "condition": alert.condition, "subject_kind": alert.subject_kind,
        "subject_id": alert.subject_id, "raised_at": alert.raised_at, "details": alert.payload});
    let policy = Policy::new(&ctx.config.outbound);
    let (status, error, ok, permanent) = match policy.check(&url) {
        Err(refused) => (None, Some(refused.to_string()), false, true),
        Ok(url) => match ctx.http.post(url).json(&body).send().await {
            Ok(r) => (Some(r.status().as_u16() as i32), None, r.status().is_success(), false),
            Err(e) => (None, Some(error_chain(&e.without_url())), false, false),
        },
    };
    let delivery =
        NewDelivery { alert_id, url: &url, attempt: job.job.attempts, status_code: status, error, succeeded: ok };
    let logged = async { alerts::log_delivery(&mut *ctx.db.acquire().await?, &delivery).await }.await;
    if let Err(e) = logged {
        tracing::warn!(error = %e, "could not log an alert delivery");
    }
    let error = || match (&delivery.status_code, &delivery.error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(e)) => e.clone(),
        (None, None) => String::new(),
    };
    if ok {
        Outcome::Done
    } else if permanent {
        Outcome::Dead { error: error() }
    } else {
        // The n-th retry waits the n-th configured delay (the last one repeats).
        let delays = &ctx.config.alerts.retry_delays_ms;
        let n = (job.job.attempts as usize).saturating_sub(1);
        let after = delays.get(n).or(delays.last()).map(|ms| jitter(Duration::from_millis(*ms)));
        Outcome::Retry { error: error(), after }
    }
}

/// Between nine tenths and all of `d`, so that retries of many alerts do not come in step.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.9..=1.0))
}

/// Runs the checks every `check_interval_ms`, or at once when `poke` is notified (a scan fell
/// back). Deliveries are jobs (see `sync`).
pub fn spawn(db: PgPool, config: Arc<Config>, poke: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = &config.alerts;
        let period = Duration::from_millis(cfg.check_interval_ms.max(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = poke.notified() => {}
            }
            if let Err(e) = async { sync(&db, &config, &current(&db, cfg).await?).await }.await {
                tracing::warn!(error = %e, "alert check failed");
            }
        }
    })
}
