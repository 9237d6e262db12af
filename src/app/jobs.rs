//! Admin actions on durable jobs: send a failed, dead or unknown job round again, or cancel one
//! that has not run yet.

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::store::audit::{self, Actor};
use crate::store::jobs::{self, JobRow};

/// Queues a failed, dead, unknown or cancelled job to run now, its attempts counted afresh.
/// 404 for a job that does not exist, 409 for one in another state.
pub async fn retry(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<JobRow> {
    who.require_admin()?;
    let before = jobs::get(conn, id).await?.ok_or(AppError::NotFound)?;
    let job = jobs::retry(conn, id).await?.ok_or_else(|| conflict(&before))?;
    crate::broadcasts::follow_jobs(conn, &[id]).await?;
    record(conn, who, "job.retry", &before).await?;
    Ok(job)
}

/// Cancels a job that is queued or waits for a retry. 404 / 409 as for `retry`.
pub async fn cancel(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<JobRow> {
    who.require_admin()?;
    let before = jobs::get(conn, id).await?.ok_or(AppError::NotFound)?;
    let job = jobs::cancel(conn, id).await?.ok_or_else(|| conflict(&before))?;
    crate::broadcasts::follow_jobs(conn, &[id]).await?;
    record(conn, who, "job.cancel", &before).await?;
    Ok(job)
}

fn conflict(job: &JobRow) -> AppError {
    AppError::Conflict(format!("the job is {}", job.state.as_str()))
}

async fn record(conn: &mut PgConnection, who: &Principal, action: &str, before: &JobRow) -> AppResult<()> {
    let details = serde_json::json!({"kind": before.kind, "state": before.state, "attempts": before.attempts});
    audit::record(conn, Actor::Principal(who), action, "job", Some(before.id.to_string()), details).await?;
    Ok(())
}
