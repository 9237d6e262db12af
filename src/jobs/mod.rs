//! Durable jobs: the runner of one Shoal process. Jobs live in PostgreSQL (`store::jobs`); any
//! process claims due ones with `FOR UPDATE SKIP LOCKED` for a lease, runs each in its own task,
//! and settles it (done, retry with backoff and jitter, dead after its last attempt, or unknown
//! when an outbound call may have happened). A process that dies leaves its jobs `running` until
//! their lease ends; then any process claims them again. Idle runners wake on `NOTIFY
//! shoal_jobs` and poll as a fallback. The NOTIFY is not sent by the transaction that inserts a
//! job (PostgreSQL serialises the commits of notifying transactions, WAL flush included): the
//! enqueuing process's nudger sends it a moment later, on its own ([`nudger`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::store::jobs::{self, Claimed, JobKind, NewJob, Settle};
use crate::Config;

/// `[jobs]` in the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobsConfig {
    /// Jobs this process runs at once (0: none — the process only enqueues).
    pub workers: usize,
    /// Milliseconds between looks for due jobs when no notification came.
    pub poll_ms: u64,
    /// Seconds a claim holds a job; a job not settled by then is claimed again elsewhere.
    pub lease_secs: u64,
    /// First retry delay (milliseconds); doubled per attempt, up to `backoff_max_ms`, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Attempts before a job is dead, unless its kind says otherwise.
    pub max_attempts: i32,
    /// Days finished (done, cancelled) jobs are kept for the admin's view.
    pub keep_finished_days: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 4,
            poll_ms: 1000,
            lease_secs: 60,
            backoff_base_ms: 5000,
            backoff_max_ms: 3_600_000,
            max_attempts: 5,
            keep_finished_days: 7,
        }
    }
}

/// What an attempt came to, as a handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// Try again later: after `after`, or after the runner's backoff.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Trying again cannot help.
    Dead {
        error: String,
    },
    /// An outbound call went out and its outcome is unknown: never repeated by itself.
    Unknown {
        error: String,
    },
    /// Not attempted (a rate limit): run again at `at`, without counting an attempt.
    Later {
        at: chrono::DateTime<Utc>,
    },
}

/// What a job handler may use.
#[derive(Clone)]
pub struct JobContext {
    pub db: PgPool,
    pub config: Arc<Config>,
    /// Outbound HTTP under the configured policy (`outbound`).
    pub http: reqwest::Client,
    /// Bridges' bot APIs: their client and bridge settings (`outbound::Bots`).
    pub bots: Arc<crate::outbound::Bots>,
    /// Call-log rows of this process's running jobs, written with their settlements.
    pub calls: Arc<crate::outbound::CallBuffer>,
}

/// Builds a job for `kind` with the configured attempts.
pub fn new_job(config: &Config, kind: JobKind, payload: serde_json::Value, dedupe_key: Option<String>) -> NewJob {
    let max_attempts = match kind {
        // One attempt, then one per configured retry delay.
        JobKind::AlertDelivery => config.alerts.retry_delays_ms.len() as i32 + 1,
        JobKind::BotAction => config.jobs.max_attempts,
        // The next sweep asks again anyway.
        JobKind::MemberCountRefresh => 3,
        JobKind::BroadcastOccurrence => config.jobs.max_attempts,
        JobKind::InviteConfirm => 10,
        JobKind::Welcome | JobKind::JoinRequestExpiry | JobKind::InviteLink => config.jobs.max_attempts,
    };
    NewJob { kind, payload, run_at: None, max_attempts: max_attempts.clamp(1, 100), dedupe_key }
}

async fn run_one(ctx: &JobContext, job: &Claimed) -> Outcome {
    match job.job.kind {
        JobKind::AlertDelivery => crate::alerts::deliver_job(ctx, job).await,
        JobKind::BotAction => crate::outbound::dispatch::bot_action_job(ctx, job).await,
        JobKind::MemberCountRefresh => crate::outbound::dispatch::member_count_job(ctx, job).await,
        JobKind::BroadcastOccurrence => crate::broadcasts::occurrence_job(ctx, job).await,
        JobKind::InviteConfirm => crate::app::invites::confirm_job(ctx, job).await,
        JobKind::Welcome => crate::automation::welcome_job(ctx, job).await,
        JobKind::JoinRequestExpiry => crate::automation::expiry_job(ctx, job).await,
        JobKind::InviteLink => crate::app::invite_links::job(ctx, job).await,
    }
}

/// What an attempt that outlived its time limit came to. A bot action may have reached the bot
/// meanwhile, so it is never repeated blindly.
fn timed_out(kind: JobKind) -> Outcome {
    let error = "the job took longer than its lease".to_string();
    match kind {
        // The call may have made a link meanwhile.
        JobKind::BotAction | JobKind::InviteLink => Outcome::Unknown { error },
        JobKind::AlertDelivery
        | JobKind::MemberCountRefresh
        | JobKind::BroadcastOccurrence
        | JobKind::InviteConfirm
        | JobKind::Welcome
        | JobKind::JoinRequestExpiry => Outcome::Retry { error, after: None },
    }
}

/// The delay before retry number `attempt` (1 = the first retry): exponential, capped, and
/// jittered to between half and all of it so that failing jobs do not retry in step.
pub fn backoff(cfg: &JobsConfig, attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 30) as u32 - 1;
    let full = cfg.backoff_base_ms.saturating_mul(1u64 << exp.min(20)).min(cfg.backoff_max_ms).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(full / 2..=full))
}

/// A running job runner; `stop` finishes the jobs in hand and returns.
pub struct Runner {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner {
    pub fn spawn(ctx: JobContext) -> Runner {
        let (stop, stopped) = watch::channel(false);
        let nudges = tokio::spawn(nudger(ctx.db.clone(), stopped.clone()));
        let task = tokio::spawn(async move {
            run(ctx, stopped).await;
            // A process that runs no jobs still tells the others of its jobs until it stops.
            let _ = nudges.await;
        });
        Runner { stop, task }
    }

    /// Stops claiming, waits up to `grace` for the jobs in hand, then gives up on the rest (their
    /// lease ends and another process runs them again).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let short = uuid::Uuid::new_v4().simple().to_string();
    format!("{}:{}:{}", host.trim(), std::process::id(), &short[..8])
}

async fn run(ctx: JobContext, mut stopped: watch::Receiver<bool>) {
    let cfg = ctx.config.jobs.clone();
    if cfg.workers == 0 {
        return;
    }
    let worker = worker_id();
    let slots = Arc::new(Semaphore::new(cfg.workers));
    // After a full batch, claim again once a quarter of the slots is free: one claim for many
    // jobs, not one per finished job.
    let refill = (cfg.workers / 4).max(1);
    let mut running: JoinSet<()> = JoinSet::new();
    let (settle_tx, settle_rx) = mpsc::channel::<Settled>(cfg.workers.max(16) * 4);
    let settler = tokio::spawn(settler(ctx.clone(), worker.clone(), settle_rx));
    let mut listener = listen(&ctx.db).await;
    let poll = Duration::from_millis(cfg.poll_ms.max(10));
    let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3600);
    loop {
        if *stopped.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        let free = slots.available_permits();
        let mut claimed = 0;
        if free > 0 {
            match claim(&ctx.db, &worker, &cfg, free as i64).await {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (ctx, cfg, tx) = (ctx.clone(), cfg.clone(), settle_tx.clone());
                        running.spawn(async move {
                            attempt(&ctx, &cfg, job, &tx).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim jobs"),
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(3600) {
            last_prune = tokio::time::Instant::now();
            prune(&ctx.db, &cfg).await;
        }
        // A full batch means more may be due: look again as soon as there is room for a few.
        if claimed > 0 && claimed == free {
            while slots.available_permits() < refill && !running.is_empty() && !*stopped.borrow() {
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = stopped.changed() => {}
                }
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = notified(&mut listener) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = stopped.changed() => {}
        }
    }
    while running.join_next().await.is_some() {}
    drop(settle_tx);
    let _ = settler.await;
}

/// How one attempt ended, on its way to the settler.
struct Settled {
    id: i64,
    kind: JobKind,
    how: Settle,
}

/// Settles finished attempts in batches: whatever arrived while the previous batch was being
/// written goes in one transaction with the call-log rows of those jobs (one commit for many
/// jobs). Only while this process still holds each job's lease (`store::jobs::settle_many`).
async fn settler(ctx: JobContext, worker: String, mut rx: mpsc::Receiver<Settled>) {
    const MAX_BATCH: usize = 512;
    let mut batch: Vec<Settled> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let items: Vec<(i64, Settle)> = batch.iter().map(|s| (s.id, s.how.clone())).collect();
        let written = async {
            let mut tx = ctx.db.begin().await?;
            // The calls of the jobs being settled are in the buffer already (a job logs its
            // calls before it ends); rows of jobs still running may come along, earlier.
            crate::store::outbound::log_calls(&mut tx, &ctx.calls.take()).await?;
            let states = jobs::settle_many(&mut tx, &worker, &items).await?;
            // Broadcast deliveries follow their bot_action jobs in the same transaction.
            let actions: Vec<i64> = batch.iter().filter(|s| s.kind == JobKind::BotAction).map(|s| s.id).collect();
            crate::broadcasts::follow_jobs(&mut tx, &actions).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(states)
        }
        .await;
        match written {
            Ok(states) => {
                for s in &batch {
                    match states.iter().find(|(id, _)| *id == s.id).map(|(_, st)| *st) {
                        Some(jobs::JobState::Done | jobs::JobState::Queued) => {}
                        Some(state) => tracing::info!(
                            job = s.id,
                            kind = s.kind.as_str(),
                            state = state.as_str(),
                            "job attempt did not finish it"
                        ),
                        None => tracing::warn!(
                            job = s.id,
                            kind = s.kind.as_str(),
                            "job lease was lost before it was settled"
                        ),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(jobs = batch.len(), error = %e, "could not settle jobs; their leases will run out")
            }
        }
        batch.clear();
    }
}

/// How long the nudger waits after a job was enqueued before it tells the runners: time for the
/// enqueuing transaction to commit, and for more jobs to join the same notification.
const COMMIT_GRACE: Duration = Duration::from_millis(5);
/// A second notification this long after the first, for a transaction that took longer to
/// commit (the runners' polling covers what is slower still).
const FOLLOW_UP: Duration = Duration::from_millis(100);

/// Sends `NOTIFY shoal_jobs` to every process (this one included) shortly after this process
/// enqueued jobs ([`jobs::ENQUEUED`]): at most one per [`COMMIT_GRACE`], plus a follow-up.
/// It runs whether or not this process runs jobs itself.
async fn nudger(db: PgPool, mut stopped: watch::Receiver<bool>) {
    let mut enqueued = jobs::ENQUEUED.subscribe();
    enqueued.mark_unchanged();
    let mut follow_up: Option<tokio::time::Instant> = None;
    loop {
        let fresh = tokio::select! {
            changed = enqueued.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
            _ = tokio::time::sleep_until(follow_up.unwrap_or_else(tokio::time::Instant::now)), if follow_up.is_some() => false,
            _ = stopped.changed() => return,
        };
        if fresh {
            tokio::time::sleep(COMMIT_GRACE).await;
            enqueued.mark_unchanged();
            follow_up = Some(tokio::time::Instant::now() + FOLLOW_UP);
        } else {
            follow_up = None;
        }
        if let Err(e) = jobs::notify(&db).await {
            tracing::warn!(error = %e, "jobs: could not notify the runners; they poll");
        }
    }
}

async fn listen(db: &PgPool) -> Option<PgListener> {
    let mut l = match PgListener::connect_with(db).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "jobs: no LISTEN connection, polling only");
            return None;
        }
    };
    match l.listen("shoal_jobs").await {
        Ok(()) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "jobs: LISTEN failed, polling only");
            None
        }
    }
}

/// Resolves on a notification; never when there is no listener.
async fn notified(listener: &mut Option<PgListener>) {
    match listener {
        Some(l) => {
            if l.try_recv().await.is_err() {
                // The connection dropped: sqlx reconnects on the next call; back off a little.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn claim(db: &PgPool, worker: &str, cfg: &JobsConfig, limit: i64) -> sqlx::Result<Vec<Claimed>> {
    let mut conn = db.acquire().await?;
    jobs::claim(&mut conn, worker, Duration::from_secs(cfg.lease_secs.max(1)), limit).await
}

async fn prune(db: &PgPool, cfg: &JobsConfig) {
    let keep = Duration::from_secs(cfg.keep_finished_days.saturating_mul(86_400));
    match db.acquire().await {
        Ok(mut conn) => {
            if let Err(e) = jobs::prune(&mut conn, keep).await {
                tracing::warn!(error = %e, "could not prune finished jobs");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not prune finished jobs"),
    }
}

/// Runs one claimed job (bounded by most of its lease) and hands its settlement to the settler.
async fn attempt(ctx: &JobContext, cfg: &JobsConfig, job: Claimed, settle: &mpsc::Sender<Settled>) {
    let id = job.job.id;
    let kind = job.job.kind;
    // Settle before the lease ends, so that no other process claims a job still running here.
    let limit = Duration::from_secs(cfg.lease_secs.max(2)).mul_f64(0.8);
    let started = std::time::Instant::now();
    let outcome = match tokio::time::timeout(limit, run_one(ctx, &job)).await {
        Ok(o) => o,
        Err(_) => timed_out(job.job.kind),
    };
    metrics::counter!("jobs_attempts_total", "kind" => kind.as_str(), "outcome" => outcome_label(&outcome))
        .increment(1);
    metrics::histogram!("job_duration_seconds", "kind" => kind.as_str()).record(started.elapsed().as_secs_f64());
    let how = match outcome {
        Outcome::Done => Settle::Done,
        Outcome::Retry { error, after } => {
            let wait = after.unwrap_or_else(|| backoff(cfg, job.job.attempts));
            let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
            Settle::Retry { error, at }
        }
        Outcome::Dead { error } => Settle::Dead { error },
        Outcome::Unknown { error } => Settle::Unknown { error },
        Outcome::Later { at } => Settle::Later { at },
    };
    if settle.send(Settled { id, kind, how }).await.is_err() {
        tracing::warn!(job = id, kind = kind.as_str(), "no settler: the job's lease will run out");
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
        Outcome::Unknown { .. } => "unknown",
        Outcome::Later { .. } => "later",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_into_the_upper_half() {
        let cfg = JobsConfig { backoff_base_ms: 1000, backoff_max_ms: 10_000, ..JobsConfig::default() };
        for _ in 0..200 {
            let first = backoff(&cfg, 1).as_millis();
            assert!((500..=1000).contains(&first), "{first}");
            let third = backoff(&cfg, 3).as_millis();
            assert!((2000..=4000).contains(&third), "{third}");
            let late = backoff(&cfg, 25).as_millis();
            assert!((5000..=10_000).contains(&late), "{late}");
        }
    }
}
