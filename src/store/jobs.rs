//! The job queue's SQL: enqueue inside the caller's transaction, claim due jobs (and jobs whose
//! lease ran out) with `FOR UPDATE SKIP LOCKED`, settle an attempt only while still holding the
//! lease, and the admin's view, retry and cancel.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

/// What a job does; the runner dispatches on it. Stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// POST one raised alert to the alert webhook.
    AlertDelivery,
    /// One action through a bridge's bot (send, delete, mute, kick, answer a join request):
    /// `outbound::dispatch`.
    BotAction,
    /// Ask a bridge's bot how many members a linked chat has (one group), or enqueue that for
    /// every linked group (no group named).
    MemberCountRefresh,
    /// One occurrence of a broadcast: its deliveries and their bot_action jobs, and the next
    /// occurrence's job (`broadcasts`).
    BroadcastOccurrence,
    /// Confirm one invite record once its hold period is over (`app::invites::confirm_job`).
    InviteConfirm,
    /// Post one welcome for a batch of joins (`automation`).
    Welcome,
    /// Decline (or let lapse) a held join request nobody answered in time (`automation`).
    JoinRequestExpiry,
    /// Make one member's personal invite link for one group through its bot
    /// (`app::invite_links::job`).
    InviteLink,
}

impl JobKind {
    pub const ALL: &[JobKind] = &[
        JobKind::AlertDelivery,
        JobKind::BotAction,
        JobKind::MemberCountRefresh,
        JobKind::BroadcastOccurrence,
        JobKind::InviteConfirm,
        JobKind::Welcome,
        JobKind::JoinRequestExpiry,
        JobKind::InviteLink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::AlertDelivery => "alert_delivery",
            JobKind::BotAction => "bot_action",
            JobKind::MemberCountRefresh => "member_count_refresh",
            JobKind::BroadcastOccurrence => "broadcast_occurrence",
            JobKind::InviteConfirm => "invite_confirm",
            JobKind::Welcome => "welcome",
            JobKind::JoinRequestExpiry => "join_request_expiry",
            JobKind::InviteLink => "invite_link",
        }
    }
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "job_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its first run (or for a retry an admin asked for).
    Queued,
    /// Claimed by a process until its lease ends.
    Running,
    /// Its last attempt failed; it runs again at `run_at`.
    Failed,
    /// Every attempt failed; it waits for an admin.
    Dead,
    /// An outbound call went out and no answer came back: repeating it could do the thing twice,
    /// so it is never retried by itself.
    Unknown,
    Done,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::Failed,
        JobState::Dead,
        JobState::Unknown,
        JobState::Done,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Unknown => "unknown",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// An admin may send it round again.
    pub fn retryable(self) -> bool {
        matches!(self, JobState::Failed | JobState::Dead | JobState::Unknown | JobState::Cancelled)
    }

    /// An admin may stop it before it (next) runs.
    pub fn cancellable(self) -> bool {
        matches!(self, JobState::Queued | JobState::Failed)
    }
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub dedupe_key: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    pub id: i64,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, kind, payload, state, attempts, max_attempts, run_at, locked_by, lease_until, \
                       last_error, dedupe_key, created_at, updated_at, finished_at";

/// Counts the jobs this process enqueued: the job runners' nudgers (`jobs::nudger`) watch it
/// and tell every process once the enqueuing transaction has had time to commit.
pub static ENQUEUED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Tells this process's nudger that jobs were enqueued; every statement that inserts jobs calls it.
pub(crate) fn count_enqueued() {
    ENQUEUED.send_modify(|n| *n = n.wrapping_add(1));
}

/// Inserts a job in the caller's transaction, so that it exists exactly when the change that
/// causes it commits. With a `dedupe_key` that exists already nothing is inserted (`None`).
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<Option<i64>> {
    count_enqueued();
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, run_at, max_attempts, dedupe_key)
         VALUES ($1, $2, COALESCE($3, now()), $4, $5)
         ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
         RETURNING id",
    )
    .bind(job.kind)
    .bind(&job.payload)
    .bind(job.run_at)
    .bind(job.max_attempts)
    .bind(&job.dedupe_key)
    .fetch_optional(conn)
    .await
}

/// A claimed job: the row as it is now, and whether an earlier claim's lease ran out (the process
/// that held it died or stalled mid-attempt).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    #[sqlx(flatten)]
    pub job: JobRow,
    pub reclaimed: bool,
}

/// Claims up to `limit` due jobs for `worker` for `lease`: each claim counts an attempt. Jobs
/// whose lease ran out (their process died) come first, then due jobs in the order they are
/// due. Each kind is read from its own partial index in order, up to the limit: one condition
/// for both made PostgreSQL read the indexes as bitmaps, which never learn that an entry is
/// dead, so every claim walked every job claimed since the last vacuum again.
pub async fn claim(conn: &mut PgConnection, worker: &str, lease: Duration, limit: i64) -> sqlx::Result<Vec<Claimed>> {
    let sql = format!(
        "WITH expired AS (
             SELECT id, true AS reclaimed FROM jobs
             WHERE state = 'running' AND lease_until < now()
             ORDER BY lease_until
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), due AS (
             SELECT id, false AS reclaimed FROM jobs
             WHERE state IN ('queued', 'failed') AND run_at <= now()
             ORDER BY run_at, id
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), picked AS (
             SELECT * FROM expired UNION ALL SELECT * FROM due LIMIT $3
         )
         UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, locked_by = $1,
                lease_until = now() + $2 * interval '1 millisecond', updated_at = now()
         FROM picked WHERE j.id = picked.id
         RETURNING {}, picked.reclaimed",
        COLUMNS.split(", ").map(|c| format!("j.{c}")).collect::<Vec<_>>().join(", ")
    );
    sqlx::query_as(&sql).bind(worker).bind(lease.as_millis() as i64).bind(limit).fetch_all(conn).await
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    Done,
    /// Try again at `at`, or dead when this was the last attempt.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// No point in trying again.
    Dead {
        error: String,
    },
    /// The outcome of an outbound call is not known.
    Unknown {
        error: String,
    },
    /// Not tried: put back until `at` (a rate limit), the claim not counted as an attempt.
    Later {
        at: DateTime<Utc>,
    },
}

/// Records how an attempt ended, only while `worker` still holds the job (a job whose lease ran
/// out and was claimed again is not settled twice). Returns the new state, or `None` when the
/// lease was lost.
pub async fn settle(conn: &mut PgConnection, id: i64, worker: &str, how: &Settle) -> sqlx::Result<Option<JobState>> {
    let (state, error, at) = parts(how);
    sqlx::query_scalar(
        "UPDATE jobs SET
             state = CASE WHEN $2 = 'failed' AND attempts >= max_attempts THEN 'dead' ELSE $2 END::job_state,
             attempts = CASE WHEN $2 = 'queued' THEN GREATEST(attempts - 1, 0) ELSE attempts END,
             last_error = COALESCE($3, last_error),
             run_at = COALESCE($4, run_at),
             locked_by = NULL, lease_until = NULL, updated_at = now(),
             finished_at = CASE WHEN $2 = 'done' THEN now() END
         WHERE id = $1 AND state = 'running' AND locked_by = $5
         RETURNING state",
    )
    .bind(id)
    .bind(state)
    .bind(error.map(|e| truncate(e, 2000)))
    .bind(at)
    .bind(worker)
    .fetch_optional(conn)
    .await
}

/// Settles many attempts in one statement, each only while `worker` still holds its job (as
/// [`settle`]). Returns the new state of each job settled; a job missing from it had lost its
/// lease.
pub async fn settle_many(
    conn: &mut PgConnection,
    worker: &str,
    items: &[(i64, Settle)],
) -> sqlx::Result<Vec<(i64, JobState)>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut states = Vec::with_capacity(items.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(items.len());
    let mut ats: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(items.len());
    for (id, how) in items {
        let (state, error, at) = parts(how);
        ids.push(*id);
        states.push(state);
        errors.push(error.map(|e| truncate(e, 2000)));
        ats.push(at);
    }
    sqlx::query_as(
        "UPDATE jobs j SET
             state = CASE WHEN s.state = 'failed' AND j.attempts >= j.max_attempts THEN 'dead' ELSE s.state END::job_state,
             attempts = CASE WHEN s.state = 'queued' THEN GREATEST(j.attempts - 1, 0) ELSE j.attempts END,
             last_error = COALESCE(s.error, j.last_error),
             run_at = COALESCE(s.at, j.run_at),
             locked_by = NULL, lease_until = NULL, updated_at = now(),
             finished_at = CASE WHEN s.state = 'done' THEN now() END
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS s(id, state, error, at)
         WHERE j.id = s.id AND j.state = 'running' AND j.locked_by = $5
         RETURNING j.id, j.state",
    )
    .bind(ids)
    .bind(states)
    .bind(errors)
    .bind(ats)
    .bind(worker)
    .fetch_all(conn)
    .await
}

fn parts(how: &Settle) -> (&'static str, Option<&str>, Option<DateTime<Utc>>) {
    match how {
        Settle::Done => ("done", None, None),
        Settle::Retry { error, at } => ("failed", Some(error), Some(*at)),
        Settle::Dead { error } => ("dead", Some(error), None),
        Settle::Unknown { error } => ("unknown", Some(error), None),
        Settle::Later { at } => ("queued", None, Some(*at)),
    }
}

/// Jobs per state, every state listed.
pub async fn counts(conn: &mut PgConnection) -> sqlx::Result<Vec<(JobState, i64)>> {
    let rows: Vec<(JobState, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state").fetch_all(conn).await?;
    Ok(JobState::ALL
        .into_iter()
        .map(|s| (s, rows.iter().find(|(r, _)| *r == s).map(|(_, n)| *n).unwrap_or(0)))
        .collect())
}

/// A page of jobs, newest first; `before` is the last id of the previous page.
pub async fn list(
    conn: &mut PgConnection,
    state: Option<JobState>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE ($1::job_state IS NULL OR state = $1) AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(state)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")).bind(id).fetch_optional(conn).await
}

/// Sends a failed, dead, unknown or cancelled job round again now, with its attempts counted
/// afresh. `None` when the job is in another state (or gone).
pub async fn retry(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = now(), updated_at = now(), finished_at = NULL
         WHERE id = $1 AND state IN ('failed', 'dead', 'unknown', 'cancelled')
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Cancels a job that has not started (or waits for a retry). `None` in any other state.
pub async fn cancel(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "UPDATE jobs SET state = 'cancelled', updated_at = now(), finished_at = now()
         WHERE id = $1 AND state IN ('queued', 'failed')
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Deletes finished jobs (done, cancelled) older than `keep`.
pub async fn prune(conn: &mut PgConnection, keep: Duration) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND updated_at < now() - $1 * interval '1 second'",
    )
    .bind(keep.as_secs() as i64)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Tells every process's job runner that jobs may be due (`jobs::nudger`): a statement of its
/// own, so that the commit of the change that enqueued them never waits on the notification.
pub async fn notify(db: &sqlx::PgPool) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify('shoal_jobs', '')").execute(db).await?;
    Ok(())
}
