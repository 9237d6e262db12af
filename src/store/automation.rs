//! The SQL of a rule set's automation: its welcome, keyword replies and entry policy (read
//! together for the per-process cache), welcome batches, keyword cooldowns, join requests.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::automation::{EntryMode, EntryPolicy, Fallback, KeywordSpec, MatchKind, RequestStatus, Welcome};

// ---- settings ----------------------------------------------------------------------------------

pub async fn welcome(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Option<Welcome>> {
    sqlx::query_as(
        "SELECT enabled, template, image_url, rules_link, delay_secs, window_secs, delete_previous
         FROM rule_set_welcome WHERE rule_set_id = $1",
    )
    .bind(rule_set_id)
    .fetch_optional(conn)
    .await
}

pub async fn set_welcome(conn: &mut PgConnection, rule_set_id: i64, w: Option<&Welcome>) -> sqlx::Result<()> {
    let Some(w) = w else {
        sqlx::query("DELETE FROM rule_set_welcome WHERE rule_set_id = $1").bind(rule_set_id).execute(conn).await?;
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO rule_set_welcome (rule_set_id, enabled, template, image_url, rules_link, delay_secs, window_secs,
                                       delete_previous)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (rule_set_id) DO UPDATE SET enabled = $2, template = $3, image_url = $4, rules_link = $5,
             delay_secs = $6, window_secs = $7, delete_previous = $8, updated_at = now()",
    )
    .bind(rule_set_id)
    .bind(w.enabled)
    .bind(&w.template)
    .bind(&w.image_url)
    .bind(&w.rules_link)
    .bind(w.delay_secs)
    .bind(w.window_secs)
    .bind(w.delete_previous)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct EntryRow {
    mode: EntryMode,
    keywords: Vec<String>,
    otherwise: Fallback,
    decline_reason: String,
    expire_hours: i32,
    on_expiry: Fallback,
    questions: Vec<String>,
}

pub async fn entry(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Option<EntryPolicy>> {
    let row: Option<EntryRow> = sqlx::query_as(
        "SELECT mode, keywords, otherwise, decline_reason, expire_hours, on_expiry, questions FROM rule_set_entry
         WHERE rule_set_id = $1",
    )
    .bind(rule_set_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| EntryPolicy {
        mode: r.mode,
        keywords: r.keywords,
        otherwise: r.otherwise,
        decline_reason: r.decline_reason,
        expire_hours: r.expire_hours,
        on_expiry: r.on_expiry,
        questions: r.questions,
    }))
}

pub async fn set_entry(conn: &mut PgConnection, rule_set_id: i64, p: Option<&EntryPolicy>) -> sqlx::Result<()> {
    let Some(p) = p else {
        sqlx::query("DELETE FROM rule_set_entry WHERE rule_set_id = $1").bind(rule_set_id).execute(conn).await?;
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO rule_set_entry (rule_set_id, mode, keywords, otherwise, decline_reason, expire_hours, on_expiry,
                                     questions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (rule_set_id) DO UPDATE SET mode = $2, keywords = $3, otherwise = $4, decline_reason = $5,
             expire_hours = $6, on_expiry = $7, questions = $8, updated_at = now()",
    )
    .bind(rule_set_id)
    .bind(p.mode)
    .bind(&p.keywords)
    .bind(p.otherwise)
    .bind(&p.decline_reason)
    .bind(p.expire_hours)
    .bind(p.on_expiry)
    .bind(&p.questions)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored keyword reply.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct KeywordRow {
    pub id: i64,
    pub rule_set_id: i64,
    pub match_kind: MatchKind,
    pub pattern: String,
    pub reply_text: String,
    pub image_url: Option<String>,
    pub cooldown_secs: i32,
    pub hours_from: Option<i16>,
    pub hours_to: Option<i16>,
    pub priority: i32,
}

impl KeywordRow {
    pub fn spec(&self) -> KeywordSpec {
        KeywordSpec {
            match_kind: self.match_kind,
            pattern: self.pattern.clone(),
            reply_text: self.reply_text.clone(),
            image_url: self.image_url.clone(),
            cooldown_secs: self.cooldown_secs,
            hours_from: self.hours_from,
            hours_to: self.hours_to,
            priority: self.priority,
        }
    }
}

const KEYWORD_COLUMNS: &str =
    "id, rule_set_id, match_kind, pattern, reply_text, image_url, cooldown_secs, hours_from, hours_to, priority";

/// A rule set's keyword replies, highest priority first (then the oldest).
pub async fn keywords(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Vec<KeywordRow>> {
    sqlx::query_as(&format!(
        "SELECT {KEYWORD_COLUMNS} FROM keyword_replies WHERE rule_set_id = $1 ORDER BY priority DESC, id LIMIT 500"
    ))
    .bind(rule_set_id)
    .fetch_all(conn)
    .await
}

pub async fn add_keyword(conn: &mut PgConnection, rule_set_id: i64, k: &KeywordSpec) -> sqlx::Result<KeywordRow> {
    sqlx::query_as(&format!(
        "INSERT INTO keyword_replies (rule_set_id, match_kind, pattern, reply_text, image_url, cooldown_secs,
                                      hours_from, hours_to, priority)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {KEYWORD_COLUMNS}"
    ))
    .bind(rule_set_id)
    .bind(k.match_kind)
    .bind(&k.pattern)
    .bind(&k.reply_text)
    .bind(&k.image_url)
    .bind(k.cooldown_secs)
    .bind(k.hours_from)
    .bind(k.hours_to)
    .bind(k.priority)
    .fetch_one(conn)
    .await
}

pub async fn delete_keyword(conn: &mut PgConnection, rule_set_id: i64, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM keyword_replies WHERE id = $1 AND rule_set_id = $2")
        .bind(id)
        .bind(rule_set_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims the keyword's cooldown in the chat: true when it was free (the reply may go), and
/// then it is taken until `cooldown_secs` from now. Settled by the database across processes.
pub async fn claim_cooldown(
    conn: &mut PgConnection,
    keyword_id: i64,
    chat_id: &str,
    cooldown_secs: i32,
) -> sqlx::Result<bool> {
    let claimed: Option<i32> = sqlx::query_scalar(
        "INSERT INTO keyword_cooldowns AS c (keyword_id, chat_id, until) VALUES ($1, $2, now() + $3 * interval '1 second')
         ON CONFLICT (keyword_id, chat_id) DO UPDATE SET until = EXCLUDED.until WHERE c.until <= now()
         RETURNING 1",
    )
    .bind(keyword_id)
    .bind(chat_id)
    .bind(cooldown_secs)
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}

/// Keeps a delivery's answer for its retries (the form `bridges::Stored` reads back).
pub async fn store_delivery_answer(
    conn: &mut PgConnection,
    bridge_id: i64,
    dedupe_key: &str,
    reply: &serde_json::Value,
    status: i32,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE bridge_events SET reply = $3, status = $4 WHERE bridge_id = $1 AND dedupe_key = $2")
        .bind(bridge_id)
        .bind(dedupe_key)
        .bind(reply)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

// ---- welcome batches ---------------------------------------------------------------------------

/// Adds a new member to the group's open welcome batch, opening one due at `due_in_secs` from
/// now if there is none: the batch's id and whether this call opened it (then its job is due).
#[allow(clippy::too_many_arguments)]
pub async fn add_to_welcome_batch(
    conn: &mut PgConnection,
    group_id: i64,
    bridge_id: i64,
    chat_id: &str,
    due_in_secs: i32,
    user_id: &str,
    name: &str,
    member_id: Option<i64>,
) -> sqlx::Result<(i64, bool, DateTime<Utc>)> {
    // DO UPDATE (of nothing that changes) so that the open row comes back, locked: the job
    // closing it waits for this transaction and then sees the member.
    let (id, opened, due): (i64, bool, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO welcome_batches AS b (group_id, bridge_id, chat_id, due_at)
         VALUES ($1, $2, $3, now() + $4 * interval '1 second')
         ON CONFLICT (group_id) WHERE closed_at IS NULL DO UPDATE SET group_id = b.group_id
         RETURNING id, xmax = 0, due_at",
    )
    .bind(group_id)
    .bind(bridge_id)
    .bind(chat_id)
    .bind(due_in_secs)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO welcome_members (batch_id, user_id, name, member_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (batch_id, user_id) DO NOTHING",
    )
    .bind(id)
    .bind(user_id)
    .bind(name)
    .bind(member_id)
    .execute(conn)
    .await?;
    Ok((id, opened, due))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClosedBatch {
    pub id: i64,
    pub group_id: i64,
    pub bridge_id: i64,
    pub chat_id: String,
}

/// Closes an open batch (None: closed already); new joins open the next one.
pub async fn close_welcome_batch(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<ClosedBatch>> {
    sqlx::query_as(
        "UPDATE welcome_batches SET closed_at = now() WHERE id = $1 AND closed_at IS NULL
         RETURNING id, group_id, bridge_id, chat_id",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A batch's members in the order they joined: (user id, name, member id).
pub async fn welcome_members(
    conn: &mut PgConnection,
    batch_id: i64,
) -> sqlx::Result<Vec<(String, String, Option<i64>)>> {
    sqlx::query_as(
        "SELECT user_id, name, member_id FROM welcome_members WHERE batch_id = $1 ORDER BY joined_at, user_id",
    )
    .bind(batch_id)
    .fetch_all(conn)
    .await
}

pub async fn set_welcome_job(conn: &mut PgConnection, batch_id: i64, job_id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE welcome_batches SET job_id = $2 WHERE id = $1")
        .bind(batch_id)
        .bind(job_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The previous welcome of the group that went out: (batch id, the platform's message id).
pub async fn previous_welcome(
    conn: &mut PgConnection,
    group_id: i64,
    before: i64,
) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as(
        "SELECT b.id, c.result FROM welcome_batches b
         JOIN LATERAL (SELECT result FROM bot_calls c WHERE c.job_id = b.job_id AND c.outcome = 'ok' AND c.result IS NOT NULL
                       ORDER BY c.id DESC LIMIT 1) c ON TRUE
         WHERE b.group_id = $1 AND b.id < $2 AND b.job_id IS NOT NULL
         ORDER BY b.id DESC LIMIT 1",
    )
    .bind(group_id)
    .bind(before)
    .fetch_optional(conn)
    .await
}

// ---- join requests -----------------------------------------------------------------------------

pub struct NewRequest<'a> {
    pub group_id: i64,
    pub bridge_id: i64,
    pub chat_id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub member_id: Option<i64>,
    pub request: &'a str,
    pub answer: &'a str,
    pub user_chat_id: Option<&'a str>,
    pub rule_set_id: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct RequestRow {
    pub id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub bridge_id: i64,
    pub chat_id: String,
    pub user_id: String,
    pub name: String,
    pub member_id: Option<i64>,
    pub request: String,
    pub answer: String,
    pub status: RequestStatus,
    pub rule_set_id: Option<i64>,
    pub decided_by: Option<String>,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The questionnaire sent to the applicant (empty: none was sent).
    pub questions: Vec<String>,
    /// The applicant's answers to it, once given (filled by `app::automation::list`).
    #[sqlx(skip)]
    pub answers: Vec<crate::store::questionnaire::AnswerRow>,
}

const REQUEST_COLUMNS: &str = "r.id, r.group_id, g.name AS group_name, r.bridge_id, r.chat_id, r.user_id, r.name, \
     r.member_id, r.request, r.answer, r.status, r.rule_set_id, r.decided_by, r.reason, r.expires_at, r.created_at, \
     r.decided_at, r.questions";

/// Records a request as pending (a repeated request from the same applicant refreshes the
/// pending one); its id.
pub async fn upsert_request(conn: &mut PgConnection, r: &NewRequest<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO join_requests AS j (group_id, bridge_id, chat_id, user_id, name, member_id, request, answer,
                                          user_chat_id, rule_set_id)
         VALUES ($1, $2, $3, $4, left($5, 200), $6, $7, left($8, 1000), $9, $10)
         ON CONFLICT (bridge_id, chat_id, user_id) WHERE status = 'pending'
         DO UPDATE SET request = EXCLUDED.request, answer = EXCLUDED.answer, name = EXCLUDED.name,
                       user_chat_id = EXCLUDED.user_chat_id
         RETURNING id",
    )
    .bind(r.group_id)
    .bind(r.bridge_id)
    .bind(r.chat_id)
    .bind(r.user_id)
    .bind(r.name)
    .bind(r.member_id)
    .bind(r.request)
    .bind(r.answer)
    .bind(r.user_chat_id)
    .bind(r.rule_set_id)
    .fetch_one(conn)
    .await
}

pub async fn set_expiry(conn: &mut PgConnection, id: i64, hours: i32) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar(
        "UPDATE join_requests SET expires_at = now() + $2 * interval '1 hour' WHERE id = $1 RETURNING expires_at",
    )
    .bind(id)
    .bind(hours)
    .fetch_one(conn)
    .await
}

/// Decides a pending request (None when it is not pending any more): the row as it is now.
pub async fn decide(
    conn: &mut PgConnection,
    id: i64,
    status: RequestStatus,
    by: &str,
    reason: &str,
) -> sqlx::Result<Option<RequestRow>> {
    sqlx::query_as(&format!(
        "WITH d AS (UPDATE join_requests SET status = $2, decided_by = $3, reason = left($4, 200), decided_at = now()
                    WHERE id = $1 AND status = 'pending' RETURNING *)
         SELECT {REQUEST_COLUMNS} FROM d r JOIN groups g ON g.id = r.group_id"
    ))
    .bind(id)
    .bind(status)
    .bind(by)
    .bind(reason)
    .fetch_optional(conn)
    .await
}

pub async fn request(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<RequestRow>> {
    sqlx::query_as(&format!(
        "SELECT {REQUEST_COLUMNS} FROM join_requests r JOIN groups g ON g.id = r.group_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Requests in scope (`groups` None: all), newest first, optionally of one status, before a
/// cursor.
pub async fn requests(
    conn: &mut PgConnection,
    groups: Option<&[i64]>,
    status: Option<RequestStatus>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<RequestRow>> {
    sqlx::query_as(&format!(
        "SELECT {REQUEST_COLUMNS} FROM join_requests r JOIN groups g ON g.id = r.group_id
         WHERE ($1::bigint[] IS NULL OR r.group_id = ANY ($1)) AND ($2::text IS NULL OR r.status = $2)
           AND ($3::bigint IS NULL OR r.id < $3)
         ORDER BY r.id DESC LIMIT $4"
    ))
    .bind(groups)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}
