//! Moderation's SQL: a rule set's rules and ladder, the action log (which is also the warnings),
//! what the ladder counts for a member, pardons and undos.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use crate::domain::action::Action;
use crate::domain::moderation::{Ladder, Response, Rule, RuleKind, Step};
use crate::domain::rule_set::ActivityKind;
use crate::store::checkins::Message;
use crate::store::jobs::NewJob;

#[derive(FromRow)]
struct RuleRow {
    id: i64,
    kind: RuleKind,
    enabled: bool,
    words: Vec<String>,
    flood_count: i32,
    flood_seconds: i32,
    consecutive: i32,
    quarantine_hours: i32,
    delete_message: bool,
    response: String,
    mute_seconds: i32,
}

impl From<RuleRow> for Rule {
    fn from(r: RuleRow) -> Rule {
        let response = match r.response.as_str() {
            "warn" => Response::Warn,
            "kick" => Response::Kick,
            "mute" => Response::Mute { seconds: r.mute_seconds.max(1) as u32 },
            _ => Response::Nothing,
        };
        Rule {
            id: r.id,
            kind: r.kind,
            enabled: r.enabled,
            words: r.words,
            count: r.flood_count.max(0) as u32,
            seconds: r.flood_seconds.max(0) as u32,
            consecutive: r.consecutive.max(0) as u32,
            hours: r.quarantine_hours.max(0) as u32,
            delete: r.delete_message,
            response,
        }
    }
}

fn response_columns(r: &Response) -> (&'static str, i32) {
    match r {
        Response::Nothing => ("nothing", 0),
        Response::Warn => ("warn", 0),
        Response::Mute { seconds } => ("mute", (*seconds).min(i32::MAX as u32) as i32),
        Response::Kick => ("kick", 0),
    }
}

/// A rule set's rules, in order.
pub async fn rules(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Vec<Rule>> {
    let rows: Vec<RuleRow> = sqlx::query_as(
        "SELECT id, kind, enabled, words, flood_count, flood_seconds, consecutive, quarantine_hours,
                delete_message, response, mute_seconds
         FROM moderation_rules WHERE rule_set_id = $1 ORDER BY position, id",
    )
    .bind(rule_set_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Rule::from).collect())
}

/// A rule set's ladder (the default when none was saved).
pub async fn ladder(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Ladder> {
    let row: Option<(String, i32, Vec<String>)> =
        sqlx::query_as("SELECT ladder, warn_days, exempt_tags FROM moderation_settings WHERE rule_set_id = $1")
            .bind(rule_set_id)
            .fetch_optional(conn)
            .await?;
    Ok(match row {
        None => Ladder::default(),
        Some((ladder, warn_days, exempt_tags)) => {
            let steps: Vec<Step> = ladder.split(',').filter_map(Step::parse).collect();
            Ladder {
                steps: if steps.is_empty() { Ladder::default().steps } else { steps },
                warn_days: warn_days.max(1) as u32,
                exempt_tags,
            }
        }
    })
}

/// Replaces a rule set's rules with `rules` (in this order): rules with the id of one of the
/// set's rules are updated, id 0 inserted, the set's other rules deleted (their log rows keep
/// their kind and lose the link). The rules' ids, in order.
pub async fn replace_rules(conn: &mut PgConnection, rule_set_id: i64, rules: &[Rule]) -> sqlx::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(rules.len());
    for (position, r) in rules.iter().enumerate() {
        let (response, mute_seconds) = response_columns(&r.response);
        let updated: Option<i64> = if r.id > 0 {
            sqlx::query_scalar(
                "UPDATE moderation_rules SET position = $3, kind = $4, enabled = $5, words = $6, flood_count = $7,
                        flood_seconds = $8, consecutive = $9, quarantine_hours = $10, delete_message = $11,
                        response = $12, mute_seconds = $13, updated_at = now()
                 WHERE id = $1 AND rule_set_id = $2 RETURNING id",
            )
            .bind(r.id)
            .bind(rule_set_id)
            .bind(position as i32)
            .bind(r.kind)
            .bind(r.enabled)
            .bind(&r.words)
            .bind(r.count as i32)
            .bind(r.seconds as i32)
            .bind(r.consecutive as i32)
            .bind(r.hours as i32)
            .bind(r.delete)
            .bind(response)
            .bind(mute_seconds)
            .fetch_optional(&mut *conn)
            .await?
        } else {
            None
        };
        let id = match updated {
            Some(id) => id,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO moderation_rules (rule_set_id, position, kind, enabled, words, flood_count,
                            flood_seconds, consecutive, quarantine_hours, delete_message, response, mute_seconds)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                )
                .bind(rule_set_id)
                .bind(position as i32)
                .bind(r.kind)
                .bind(r.enabled)
                .bind(&r.words)
                .bind(r.count as i32)
                .bind(r.seconds as i32)
                .bind(r.consecutive as i32)
                .bind(r.hours as i32)
                .bind(r.delete)
                .bind(response)
                .bind(mute_seconds)
                .fetch_one(&mut *conn)
                .await?
            }
        };
        ids.push(id);
    }
    sqlx::query("DELETE FROM moderation_rules WHERE rule_set_id = $1 AND NOT (id = ANY($2))")
        .bind(rule_set_id)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    Ok(ids)
}

pub async fn save_ladder(conn: &mut PgConnection, rule_set_id: i64, l: &Ladder) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO moderation_settings (rule_set_id, ladder, warn_days, exempt_tags) VALUES ($1, $2, $3, $4)
         ON CONFLICT (rule_set_id) DO UPDATE
         SET ladder = EXCLUDED.ladder, warn_days = EXCLUDED.warn_days, exempt_tags = EXCLUDED.exempt_tags,
             updated_at = now()",
    )
    .bind(rule_set_id)
    .bind(l.text())
    .bind(l.warn_days as i32)
    .bind(&l.exempt_tags)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the ladder needs to know about a member who broke a rule in a group.
#[derive(Debug, FromRow)]
pub struct Standing {
    /// Unexpired, unpardoned warnings in the group.
    pub active: i64,
    /// When their open membership began.
    pub joined_at: Option<DateTime<Utc>>,
    /// `owner` or `admin` when their open membership says so (Telegram messages carry no role).
    pub role: Option<String>,
    pub tags: Vec<String>,
}

/// The name of the transaction-scoped advisory lock on a member's warnings in a group, taken
/// (with the delivery's claim, `store::bridges::claim_delivery_then_lock`) before
/// [`standing_and_message`], so that two messages judged at once take two strikes, not the
/// same one twice.
pub fn warnings_lock(group_id: i64, user_id: &str) -> String {
    format!("moderation:{group_id}:{user_id}")
}

/// In one statement: the member's standing in the group, read before their message is recorded
/// (so that a member first seen through this message has no join time: Shoal did not see them
/// join), and the message's writes (member, membership, activity; the statement of
/// `checkins::message_in_transaction` for a plain message). The member's id and standing. The
/// caller holds [`warnings_lock`].
pub async fn standing_and_message(conn: &mut PgConnection, m: &Message<'_>) -> sqlx::Result<(i64, Standing)> {
    #[derive(FromRow)]
    struct Row {
        member: i64,
        #[sqlx(flatten)]
        standing: Standing,
    }
    let sql = concat!(
        "WITH fresh AS (SELECT), ",
        crate::store::bridges::message_ctes!(),
        ", who AS (SELECT id, tags FROM members WHERE platform = $1 AND external_user_id = $2)
         SELECT (SELECT id FROM m) AS member,
                (SELECT count(*) FROM moderation_actions
                 WHERE group_id = $5 AND user_id = $2 AND strike IS NOT NULL AND pardoned_at IS NULL
                   AND expires_at > now()) AS active,
                (SELECT max(s.joined_at) FROM memberships s JOIN who ON who.id = s.member_id
                 WHERE s.group_id = $5 AND s.left_at IS NULL) AS joined_at,
                (SELECT min(s.role) FROM memberships s JOIN who ON who.id = s.member_id
                 WHERE s.group_id = $5 AND s.left_at IS NULL AND s.role IN ('owner', 'admin')) AS role,
                COALESCE((SELECT tags FROM who), '{}') AS tags"
    );
    let row: Row = crate::store::checkins::bind_message(sqlx::query_as(sql), m, None).fetch_one(conn).await?;
    Ok((row.member, row.standing))
}

/// One moderation action to record.
#[derive(Debug)]
pub struct NewAction<'a> {
    pub group_id: i64,
    pub member_id: Option<i64>,
    pub bridge_id: i64,
    pub chat_id: &'a str,
    pub user_id: &'a str,
    pub message_id: Option<&'a str>,
    pub excerpt: &'a str,
    pub rule_set_id: i64,
    pub rule_id: Option<i64>,
    pub rule_kind: RuleKind,
    pub evidence: &'a str,
    pub deleted: bool,
    pub step: Option<Step>,
    pub strike: Option<u32>,
    pub warn_days: u32,
}

/// One of the bot's actions taken on a violation: the outbound job that carries it (with a
/// dedupe key) and what the group's activity log calls it.
#[derive(Debug)]
pub struct ActionJob<'a> {
    pub job: &'a NewJob,
    pub kind: ActivityKind,
    pub action: &'a Action,
}

pub fn step_columns(step: Option<Step>) -> (&'static str, Option<i32>) {
    match step {
        None => ("none", None),
        Some(Step::Warn) => ("warn", None),
        Some(Step::Mute { seconds }) => ("mute", Some(seconds.min(i32::MAX as u32) as i32)),
        Some(Step::Kick) => ("kick", None),
    }
}

/// Records a violation in one statement: the outbound jobs (a job whose dedupe key is queued
/// already is not queued again and gets no id), the action row with the new jobs' ids in the
/// order given, and an activity-log row per job naming `rule` with the evidence as the reason.
/// The action row's id. A violation is judged while its webhook waits, and each statement is a
/// round trip to a database that is busy with every other message.
pub async fn record(
    conn: &mut PgConnection,
    a: &NewAction<'_>,
    jobs: &[ActionJob<'_>],
    rule: &str,
) -> sqlx::Result<i64> {
    let (step, mute) = step_columns(a.step);
    let excerpt: String = a.excerpt.chars().take(300).collect();
    let evidence: String = a.evidence.chars().take(400).collect();
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut run_at = Vec::with_capacity(jobs.len());
    let mut attempts = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    let mut activity = Vec::with_capacity(jobs.len());
    let mut actions = Vec::with_capacity(jobs.len());
    for j in jobs {
        kinds.push(j.job.kind.as_str());
        payloads.push(&j.job.payload);
        run_at.push(j.job.run_at);
        attempts.push(j.job.max_attempts);
        keys.push(j.job.dedupe_key.as_deref());
        activity.push(j.kind.as_str());
        actions.push(serde_json::to_value(j.action).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
    }
    if !jobs.is_empty() {
        super::jobs::count_enqueued();
    }
    sqlx::query_scalar(
        "WITH planned AS (
             SELECT * FROM unnest($18::text[], $19::jsonb[], $20::timestamptz[], $21::int[], $22::text[],
                                  $23::text[], $24::jsonb[]) WITH ORDINALITY
                 AS p(kind, payload, run_at, max_attempts, dedupe_key, activity, action, n)
         ), queued AS (
             INSERT INTO jobs (kind, payload, run_at, max_attempts, dedupe_key)
             SELECT kind, payload, COALESCE(run_at, now()), max_attempts, dedupe_key FROM planned ORDER BY n
             ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
             RETURNING id, dedupe_key
         ), logged AS (
             INSERT INTO bot_activity (group_id, member_id, user_id, bridge_id, kind, action, rule_set_id, rule,
                                       reason, job_id)
             SELECT $1, $2, $5, $3, p.activity, p.action, $8, left($17, 200), left($25, 2000), q.id
             FROM planned p LEFT JOIN queued q ON q.dedupe_key = p.dedupe_key
             ORDER BY p.n
         )
         INSERT INTO moderation_actions (group_id, member_id, bridge_id, chat_id, user_id, message_id, excerpt,
                rule_set_id, rule_id, rule_kind, evidence, deleted, step, mute_seconds, strike, expires_at, job_ids)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 (SELECT id FROM moderation_rules WHERE id = $9), $10, $11, $12, $13, $14, $15,
                 CASE WHEN $15::int IS NULL THEN NULL ELSE now() + make_interval(days => $16) END,
                 ARRAY(SELECT q.id FROM planned p JOIN queued q ON q.dedupe_key = p.dedupe_key ORDER BY p.n))
         RETURNING id",
    )
    .bind(a.group_id)
    .bind(a.member_id)
    .bind(a.bridge_id)
    .bind(a.chat_id)
    .bind(a.user_id)
    .bind(a.message_id)
    .bind(excerpt)
    .bind(a.rule_set_id)
    .bind(a.rule_id)
    .bind(a.rule_kind)
    .bind(evidence)
    .bind(a.deleted)
    .bind(step)
    .bind(mute)
    .bind(a.strike.map(|s| s as i32))
    .bind(a.warn_days as i32)
    .bind(rule)
    .bind(kinds)
    .bind(payloads)
    .bind(run_at)
    .bind(attempts)
    .bind(keys)
    .bind(activity)
    .bind(actions)
    .bind(a.evidence)
    .fetch_one(conn)
    .await
}

/// A row of the action log, with names and the jobs' states (the platform's answer).
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ActionRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub group_id: i64,
    pub group_name: String,
    pub member_id: Option<i64>,
    pub member_name: Option<String>,
    pub bridge_id: i64,
    pub chat_id: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub excerpt: String,
    pub rule_set_id: Option<i64>,
    pub rule_id: Option<i64>,
    pub rule_kind: RuleKind,
    pub evidence: String,
    pub deleted: bool,
    /// none | warn | mute | kick
    pub step: String,
    pub mute_seconds: Option<i32>,
    /// The warning's number on the ladder (null: not a warning).
    pub strike: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub pardoned_at: Option<DateTime<Utc>>,
    pub pardoned_by: Option<String>,
    pub undone_at: Option<DateTime<Utc>>,
    pub undone_by: Option<String>,
    /// The outbound jobs and where they stand: `done`, `dead: <error>`… (empty once pruned).
    pub answers: Vec<String>,
    pub job_ids: Vec<i64>,
}

impl ActionRow {
    /// A warning that still counts on the ladder.
    pub fn active_warning(&self, now: &DateTime<Utc>) -> bool {
        self.strike.is_some() && self.pardoned_at.is_none() && self.expires_at.is_some_and(|e| e > *now)
    }

    /// A mute or kick that can be lifted.
    pub fn undoable(&self) -> bool {
        self.undone_at.is_none() && matches!(self.step.as_str(), "mute" | "kick")
    }
}

/// Which log rows to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub scope: Option<Vec<i64>>,
    pub group_id: Option<i64>,
    pub member_id: Option<i64>,
    pub rule_kind: Option<RuleKind>,
    /// Only warnings (rows with a strike).
    pub warnings_only: bool,
    /// Rows with an id below this (the next page).
    pub before: Option<i64>,
    pub limit: i64,
}

fn select() -> QueryBuilder<'static, Postgres> {
    QueryBuilder::new(
        "SELECT a.id, a.at, a.group_id, g.name AS group_name, a.member_id, m.display_name AS member_name,
                a.bridge_id, a.chat_id, a.user_id, a.message_id, a.excerpt, a.rule_set_id, a.rule_id, a.rule_kind,
                a.evidence, a.deleted, a.step, a.mute_seconds, a.strike, a.expires_at, a.pardoned_at, a.pardoned_by,
                a.undone_at, a.undone_by, a.job_ids,
                ARRAY(SELECT j.state::text || COALESCE(': ' || left(j.last_error, 200), '')
                      FROM unnest(a.job_ids || a.undo_job_ids) WITH ORDINALITY AS u(id, n)
                      JOIN jobs j ON j.id = u.id ORDER BY u.n) AS answers
         FROM moderation_actions a JOIN groups g ON g.id = a.group_id LEFT JOIN members m ON m.id = a.member_id
         WHERE true",
    )
}

pub async fn list(conn: &mut PgConnection, f: &Filter) -> sqlx::Result<Vec<ActionRow>> {
    let mut b = select();
    if let Some(scope) = &f.scope {
        b.push(" AND a.group_id = ANY(").push_bind(scope.clone()).push(")");
    }
    if let Some(g) = f.group_id {
        b.push(" AND a.group_id = ").push_bind(g);
    }
    if let Some(m) = f.member_id {
        b.push(" AND a.member_id = ").push_bind(m);
    }
    if let Some(k) = f.rule_kind {
        b.push(" AND a.rule_kind = ").push_bind(k);
    }
    if f.warnings_only {
        b.push(" AND a.strike IS NOT NULL");
    }
    if let Some(before) = f.before {
        b.push(" AND a.id < ").push_bind(before);
    }
    b.push(" ORDER BY a.id DESC LIMIT ").push_bind(f.limit.clamp(1, 500));
    b.build_query_as().fetch_all(conn).await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<ActionRow>> {
    let mut b = select();
    b.push(" AND a.id = ").push_bind(id);
    b.build_query_as().fetch_optional(conn).await
}

/// Takes a warning off the ladder; false when it was no warning or was pardoned already.
pub async fn pardon(conn: &mut PgConnection, id: i64, by: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE moderation_actions SET pardoned_at = now(), pardoned_by = $2
         WHERE id = $1 AND strike IS NOT NULL AND pardoned_at IS NULL",
    )
    .bind(id)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a mute or kick undone with the jobs that lift it; false when it was undone already.
pub async fn undo(conn: &mut PgConnection, id: i64, by: &str, job_ids: &[i64]) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE moderation_actions SET undone_at = now(), undone_by = $2, undo_job_ids = $3
         WHERE id = $1 AND undone_at IS NULL AND step IN ('mute', 'kick')",
    )
    .bind(id)
    .bind(by)
    .bind(job_ids)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
