//! Fission's SQL: campaigns, invite records (one credited record per invitee and campaign by a
//! unique partial index; state changes by conditional updates), pending referrals from scans,
//! the rewards a campaign paid, leaderboards and a member's progress.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::invite::{CampaignSpec, CampaignStatus, InviteReason, InviteSource, InviteState, Stage};

// ---------------------------------------------------------------- campaigns

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    pub group_ids: Vec<i64>,
    pub live_code_id: Option<i64>,
    /// The live code's slug (personal links are `/l/{slug}?r={code}`).
    pub live_code_slug: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub status: CampaignStatus,
    pub hold_days: i32,
    pub rejoin_days: i32,
    #[schema(value_type = Vec<Stage>)]
    pub stages: Json<Vec<Stage>>,
    pub level2_points: i64,
    pub poster_template_id: Option<i64>,
    pub reply_progress: String,
    pub reply_stage: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CAMPAIGN: &str =
    "SELECT c.id, c.name, c.group_ids, c.live_code_id, l.slug AS live_code_slug, c.starts_at, c.ends_at,
        c.status, c.hold_days, c.rejoin_days, c.stages, c.level2_points, c.poster_template_id, c.reply_progress,
        c.reply_stage, c.created_at, c.updated_at
    FROM campaigns c LEFT JOIN live_codes l ON l.id = c.live_code_id";

/// Campaigns whose groups all lie in `scope` (None: all), newest first.
pub async fn list(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(&format!(
        "{CAMPAIGN} WHERE ($1::bigint[] IS NULL OR c.group_ids <@ $1) ORDER BY c.id DESC LIMIT 500"
    ))
    .bind(scope)
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<CampaignRow>> {
    sqlx::query_as(&format!("{CAMPAIGN} WHERE c.id = $1 AND ($2::bigint[] IS NULL OR c.group_ids <@ $2)"))
        .bind(id)
        .bind(scope)
        .fetch_optional(conn)
        .await
}

pub async fn insert(conn: &mut PgConnection, c: &CampaignSpec, live_code_id: Option<i64>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO campaigns (name, group_ids, live_code_id, starts_at, ends_at, status, hold_days, rejoin_days,
            stages, level2_points, poster_template_id, reply_progress, reply_stage)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(&c.name)
    .bind(&c.group_ids)
    .bind(live_code_id)
    .bind(c.starts_at)
    .bind(c.ends_at)
    .bind(c.status)
    .bind(c.hold_days)
    .bind(c.rejoin_days)
    .bind(Json(&c.stages))
    .bind(c.level2_points)
    .bind(c.poster_template_id)
    .bind(&c.reply_progress)
    .bind(&c.reply_stage)
    .fetch_one(conn)
    .await
}

pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    c: &CampaignSpec,
    live_code_id: Option<i64>,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE campaigns SET name = $2, group_ids = $3, live_code_id = $4, starts_at = $5, ends_at = $6, status = $7,
            hold_days = $8, rejoin_days = $9, stages = $10, level2_points = $11, poster_template_id = $12,
            reply_progress = $13, reply_stage = $14, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&c.name)
    .bind(&c.group_ids)
    .bind(live_code_id)
    .bind(c.starts_at)
    .bind(c.ends_at)
    .bind(c.status)
    .bind(c.hold_days)
    .bind(c.rejoin_days)
    .bind(Json(&c.stages))
    .bind(c.level2_points)
    .bind(c.poster_template_id)
    .bind(&c.reply_progress)
    .bind(&c.reply_stage)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Active campaigns covering `group` at `at`.
pub async fn campaigns_for_group(
    conn: &mut PgConnection,
    group: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(&format!(
        "{CAMPAIGN} WHERE c.status = 'active' AND c.group_ids @> ARRAY[$1::bigint]
           AND (c.starts_at IS NULL OR c.starts_at <= $2) AND (c.ends_at IS NULL OR c.ends_at > $2)
         ORDER BY c.id"
    ))
    .bind(group)
    .bind(at)
    .fetch_all(conn)
    .await
}

// ---------------------------------------------------------------- members and codes

/// The member whose personal code this is.
pub async fn member_by_code(conn: &mut PgConnection, code: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM members WHERE invite_code = $1").bind(code).fetch_optional(conn).await
}

/// The member's personal code (None: no such member), given on first use: a member who never
/// asks for a link costs nothing at insert, so the check-in statement that creates members does
/// not pay for a code and its index entry. Stable once given.
pub async fn code_of(conn: &mut PgConnection, member: i64) -> sqlx::Result<Option<String>> {
    let current: Option<Option<String>> = sqlx::query_scalar("SELECT invite_code FROM members WHERE id = $1")
        .bind(member)
        .fetch_optional(&mut *conn)
        .await?;
    match current {
        None => Ok(None),
        Some(Some(code)) => Ok(Some(code)),
        // A concurrent first use may give it first: then its code stands and is read back.
        Some(None) => sqlx::query_scalar(
            "WITH given AS (UPDATE members SET invite_code = shoal_invite_code() WHERE id = $1 AND invite_code IS NULL
                 RETURNING invite_code)
             SELECT COALESCE((SELECT invite_code FROM given), (SELECT invite_code FROM members WHERE id = $1))",
        )
        .bind(member)
        .fetch_one(conn)
        .await,
    }
}

/// Whether `member` was in any group other than through the membership opened at `at` in
/// `group` within `days` days before `at`: a membership that ended within the window, or one
/// in another group that began before `at` and is still open.
pub async fn was_member_recently(
    conn: &mut PgConnection,
    member: i64,
    group: i64,
    at: DateTime<Utc>,
    days: i32,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE member_id = $1 AND (
            (left_at IS NOT NULL AND left_at <= $3 AND left_at > $3 - $4 * interval '1 day')
            OR (left_at IS NULL AND group_id <> $2 AND joined_at < $3)))",
    )
    .bind(member)
    .bind(group)
    .bind(at)
    .bind(days)
    .fetch_one(conn)
    .await
}

/// Orders every crediting and reward decision of one inviter in one campaign (transaction lock).
pub async fn lock_inviter(conn: &mut PgConnection, campaign: i64, inviter: i64) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('invite:' || $1::text || ':' || $2::text, 0))")
        .bind(campaign)
        .bind(inviter)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- records

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct RecordRow {
    pub id: i64,
    pub campaign_id: i64,
    pub inviter_member_id: i64,
    pub inviter_name: String,
    pub invitee_member_id: i64,
    pub invitee_name: String,
    pub level2_member_id: Option<i64>,
    pub group_id: Option<i64>,
    pub source: InviteSource,
    pub invite_link_name: Option<String>,
    pub state: InviteState,
    pub reason: Option<InviteReason>,
    pub joined_at: DateTime<Utc>,
    pub hold_until: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

const RECORD: &str =
    "SELECT r.id, r.campaign_id, r.inviter_member_id, a.display_name AS inviter_name, r.invitee_member_id,
        b.display_name AS invitee_name, r.level2_member_id, r.group_id, r.source, r.invite_link_name, r.state, r.reason,
        r.joined_at, r.hold_until, r.decided_at, r.decided_by, r.created_at
    FROM invite_records r JOIN members a ON a.id = r.inviter_member_id JOIN members b ON b.id = r.invitee_member_id";

/// A record to write.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    pub campaign_id: i64,
    pub inviter: i64,
    pub invitee: i64,
    pub level2: Option<i64>,
    pub group_id: i64,
    pub source: InviteSource,
    pub invite_link_name: Option<&'a str>,
    pub state: InviteState,
    pub reason: Option<InviteReason>,
    pub joined_at: DateTime<Utc>,
    /// When the hold ends (the confirmation job is due then).
    pub hold_until: DateTime<Utc>,
}

/// Writes a record; a credited state (pending, flagged) that another record of the invitee in
/// the campaign holds already writes nothing (`None`): the unique partial index decides, also
/// between concurrent joins (the second waits for the first to commit, then finds it).
pub async fn insert_record(conn: &mut PgConnection, r: &NewRecord<'_>) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO invite_records (campaign_id, inviter_member_id, invitee_member_id, level2_member_id, group_id, source,
            invite_link_name, state, reason, joined_at, hold_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (campaign_id, invitee_member_id) WHERE state IN ('pending', 'flagged', 'confirmed') DO NOTHING
         RETURNING id",
    )
    .bind(r.campaign_id)
    .bind(r.inviter)
    .bind(r.invitee)
    .bind(r.level2)
    .bind(r.group_id)
    .bind(r.source)
    .bind(r.invite_link_name)
    .bind(r.state)
    .bind(r.reason)
    .bind(r.joined_at)
    .bind(r.hold_until)
    .fetch_optional(conn)
    .await
}

/// The inviter credited with `member` in the campaign (pending, flagged or confirmed).
pub async fn credited_inviter(conn: &mut PgConnection, campaign: i64, member: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT inviter_member_id FROM invite_records
         WHERE campaign_id = $1 AND invitee_member_id = $2 AND state IN ('pending', 'flagged', 'confirmed')",
    )
    .bind(campaign)
    .bind(member)
    .fetch_optional(conn)
    .await
}

/// Credited records of the inviter in the campaign written since `since` (burst signal).
pub async fn credited_since(
    conn: &mut PgConnection,
    campaign: i64,
    inviter: i64,
    since: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM invite_records WHERE campaign_id = $1 AND inviter_member_id = $2
            AND state IN ('pending', 'flagged', 'confirmed') AND created_at >= $3",
    )
    .bind(campaign)
    .bind(inviter)
    .bind(since)
    .fetch_one(conn)
    .await
}

pub async fn record(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<RecordRow>> {
    sqlx::query_as(&format!("{RECORD} WHERE r.id = $1")).bind(id).fetch_optional(conn).await
}

/// Locks a record's row (a decision or a confirmation reads and changes it).
pub async fn lock_record(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<RecordRow>> {
    sqlx::query_as(&format!("{RECORD} WHERE r.id = $1 FOR UPDATE OF r")).bind(id).fetch_optional(conn).await
}

/// Confirms a pending record whose hold is over: true once, for the one caller that changed it.
pub async fn confirm(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE invite_records SET state = 'confirmed', decided_at = now()
         WHERE id = $1 AND state = 'pending' AND hold_until <= now()",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves a record from one of `from` to `to`; false when it was in none of them.
pub async fn set_state(
    conn: &mut PgConnection,
    id: i64,
    from: &[InviteState],
    to: InviteState,
    reason: Option<InviteReason>,
    operator: Option<i64>,
) -> sqlx::Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let r = sqlx::query(
        "UPDATE invite_records SET state = $3, reason = COALESCE($4, reason), decided_at = now(), decided_by = $5
         WHERE id = $1 AND state = ANY($2)",
    )
    .bind(id)
    .bind(&from)
    .bind(to)
    .bind(reason)
    .bind(operator)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Credited records of an invitee in a group whose hold had not ended at `at`: a leave at `at`
/// reverses them. Locked, oldest first.
pub async fn held_at(
    conn: &mut PgConnection,
    invitee: i64,
    group: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<Vec<RecordRow>> {
    sqlx::query_as(&format!(
        "{RECORD} WHERE r.invitee_member_id = $1 AND r.group_id = $2 AND r.state IN ('pending', 'flagged', 'confirmed')
            AND r.hold_until > $3 AND r.joined_at <= $3
         ORDER BY r.id FOR UPDATE OF r"
    ))
    .bind(invitee)
    .bind(group)
    .bind(at)
    .fetch_all(conn)
    .await
}

/// Whether the invitee's membership in the group is still open.
pub async fn still_member(conn: &mut PgConnection, member: i64, group: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL)",
    )
    .bind(member)
    .bind(group)
    .fetch_one(conn)
    .await
}

/// Confirmed records of the inviter in the campaign.
pub async fn confirmed_count(conn: &mut PgConnection, campaign: i64, inviter: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM invite_records WHERE campaign_id = $1 AND inviter_member_id = $2 AND state = 'confirmed'",
    )
    .bind(campaign)
    .bind(inviter)
    .fetch_one(conn)
    .await
}

/// The filters of the record list.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub campaign: Option<i64>,
    pub inviter: Option<i64>,
    pub state: Option<InviteState>,
    /// Only records older (smaller id) than this.
    pub before: Option<i64>,
    pub limit: i64,
}

/// Records newest first, of campaigns inside `scope`.
pub async fn records(conn: &mut PgConnection, f: &RecordFilter, scope: Option<&[i64]>) -> sqlx::Result<Vec<RecordRow>> {
    sqlx::query_as(&format!(
        "{RECORD} JOIN campaigns c ON c.id = r.campaign_id
         WHERE ($1::bigint IS NULL OR r.campaign_id = $1) AND ($2::bigint IS NULL OR r.inviter_member_id = $2)
           AND ($3::text IS NULL OR r.state = $3) AND ($4::bigint IS NULL OR r.id < $4)
           AND ($6::bigint[] IS NULL OR c.group_ids <@ $6)
         ORDER BY r.id DESC LIMIT $5"
    ))
    .bind(f.campaign)
    .bind(f.inviter)
    .bind(f.state)
    .bind(f.before)
    .bind(f.limit)
    .bind(scope)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct LeaderRow {
    pub member_id: i64,
    pub display_name: String,
    pub confirmed: i64,
    pub pending: i64,
    pub points: i64,
}

/// A campaign's inviters by confirmed invites (then pending), with the points its rewards paid.
pub async fn leaderboard(conn: &mut PgConnection, campaign: i64, limit: i64) -> sqlx::Result<Vec<LeaderRow>> {
    sqlx::query_as(
        "SELECT m.id AS member_id, m.display_name, t.confirmed, t.pending,
                COALESCE((SELECT sum(points) FROM invite_rewards w
                          WHERE w.campaign_id = $1 AND w.member_id = m.id AND w.reversed_at IS NULL), 0)::bigint AS points
         FROM (SELECT inviter_member_id, count(*) FILTER (WHERE state = 'confirmed') AS confirmed,
                      count(*) FILTER (WHERE state IN ('pending', 'flagged')) AS pending
               FROM invite_records WHERE campaign_id = $1 GROUP BY inviter_member_id) t
         JOIN members m ON m.id = t.inviter_member_id
         WHERE t.confirmed + t.pending > 0
         ORDER BY t.confirmed DESC, t.pending DESC, m.id LIMIT $2",
    )
    .bind(campaign)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A member's counts in a campaign: (confirmed, pending incl. flagged).
pub async fn counts_of(conn: &mut PgConnection, campaign: i64, member: i64) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'confirmed'), count(*) FILTER (WHERE state IN ('pending', 'flagged'))
         FROM invite_records WHERE campaign_id = $1 AND inviter_member_id = $2",
    )
    .bind(campaign)
    .bind(member)
    .fetch_one(conn)
    .await
}

/// Campaigns a member's invites can count in: active ones covering a group the member is in.
pub async fn campaigns_of_member(conn: &mut PgConnection, member: i64) -> sqlx::Result<Vec<CampaignRow>> {
    sqlx::query_as(&format!(
        "{CAMPAIGN} WHERE c.status = 'active' AND (c.ends_at IS NULL OR c.ends_at > now())
           AND (EXISTS (SELECT 1 FROM memberships ms WHERE ms.member_id = $1 AND ms.left_at IS NULL AND ms.group_id = ANY(c.group_ids))
                OR EXISTS (SELECT 1 FROM invite_records r WHERE r.campaign_id = c.id AND r.inviter_member_id = $1))
         ORDER BY c.id"
    ))
    .bind(member)
    .fetch_all(conn)
    .await
}

/// A member's latest records as inviter in a campaign.
pub async fn records_of(
    conn: &mut PgConnection,
    campaign: i64,
    member: i64,
    limit: i64,
) -> sqlx::Result<Vec<RecordRow>> {
    sqlx::query_as(&format!(
        "{RECORD} WHERE r.campaign_id = $1 AND r.inviter_member_id = $2 ORDER BY r.id DESC LIMIT $3"
    ))
    .bind(campaign)
    .bind(member)
    .bind(limit)
    .fetch_all(conn)
    .await
}

// ---------------------------------------------------------------- referrals (scans with ?r=)

/// A scan with a personal code, sent to `group` (None: no group, e.g. the fallback).
pub async fn insert_referral(
    conn: &mut PgConnection,
    inviter: i64,
    live_code: i64,
    group: Option<i64>,
    client: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO invite_referrals (inviter_member_id, live_code_id, group_id, client) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(inviter)
    .bind(live_code)
    .bind(group)
    .bind(client)
    .fetch_one(conn)
    .await
}

/// Distinct personal codes `client` scanned in the last day.
pub async fn codes_scanned_by(conn: &mut PgConnection, client: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(DISTINCT inviter_member_id) FROM invite_referrals WHERE client = $1 AND scanned_at > now() - interval '1 day'",
    )
    .bind(client)
    .fetch_one(conn)
    .await
}

/// The one unmatched referral sent to `group` within `minutes` before `at`, locked: the only
/// case where a join on a platform that names no inviter can be tied to a scan. Two or more
/// candidates are ambiguous: none is taken. Returns (referral id, inviter, client).
pub async fn sole_referral(
    conn: &mut PgConnection,
    group: i64,
    at: DateTime<Utc>,
    minutes: i64,
) -> sqlx::Result<Option<(i64, i64, String)>> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, inviter_member_id, client FROM invite_referrals
         WHERE group_id = $1 AND matched_record_id IS NULL AND scanned_at <= $2 AND scanned_at > $2 - $3 * interval '1 minute'
         ORDER BY id LIMIT 2 FOR UPDATE SKIP LOCKED",
    )
    .bind(group)
    .bind(at)
    .bind(minutes)
    .fetch_all(conn)
    .await?;
    Ok(if rows.len() == 1 { rows.into_iter().next() } else { None })
}

pub async fn match_referral(conn: &mut PgConnection, referral: i64, record: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE invite_referrals SET matched_record_id = $2 WHERE id = $1")
        .bind(referral)
        .bind(record)
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- rewards

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RewardRow {
    pub id: i64,
    pub stage: i64,
    pub round: i32,
    pub points: i64,
    pub tag: Option<String>,
}

/// The rewards of a member at a level in a campaign that stand (not reversed).
pub async fn active_rewards(
    conn: &mut PgConnection,
    campaign: i64,
    member: i64,
    level: i16,
) -> sqlx::Result<Vec<RewardRow>> {
    sqlx::query_as(
        "SELECT id, stage, round, points, tag FROM invite_rewards
         WHERE campaign_id = $1 AND member_id = $2 AND level = $3 AND reversed_at IS NULL ORDER BY stage",
    )
    .bind(campaign)
    .bind(member)
    .bind(level)
    .fetch_all(conn)
    .await
}

/// A new reward row (the next round of this stage); `None` when one stands already.
pub async fn insert_reward(
    conn: &mut PgConnection,
    campaign: i64,
    member: i64,
    level: i16,
    stage: i64,
    points: i64,
    tag: Option<&str>,
) -> sqlx::Result<Option<RewardRow>> {
    sqlx::query_as(
        "INSERT INTO invite_rewards (campaign_id, member_id, level, stage, round, points, tag)
         SELECT $1, $2, $3, $4, COALESCE(max(round), 0) + 1, $5, $6 FROM invite_rewards
         WHERE campaign_id = $1 AND member_id = $2 AND level = $3 AND stage = $4
         ON CONFLICT (campaign_id, member_id, level, stage) WHERE reversed_at IS NULL DO NOTHING
         RETURNING id, stage, round, points, tag",
    )
    .bind(campaign)
    .bind(member)
    .bind(level)
    .bind(stage)
    .bind(points)
    .bind(tag)
    .fetch_optional(conn)
    .await
}

pub async fn set_reward_entry(conn: &mut PgConnection, reward: i64, entry: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE invite_rewards SET entry_id = $2 WHERE id = $1").bind(reward).bind(entry).execute(conn).await?;
    Ok(())
}

/// Marks a reward reversed, with its compensating entry (if any was written) and the shortfall.
pub async fn reverse_reward(
    conn: &mut PgConnection,
    reward: i64,
    entry: Option<i64>,
    shortfall: i64,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE invite_rewards SET reversed_at = now(), reversal_entry_id = $2, shortfall = $3 WHERE id = $1 AND reversed_at IS NULL",
    )
    .bind(reward)
    .bind(entry)
    .bind(shortfall)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Adds a tag to a member (a stage's reward).
pub async fn add_tag(conn: &mut PgConnection, member: i64, tag: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE members SET tags = array_append(tags, $2), updated_at = now() WHERE id = $1 AND NOT ($2 = ANY(tags))",
    )
    .bind(member)
    .bind(tag)
    .execute(conn)
    .await?;
    Ok(())
}

/// A group's bot: its bridge and chat id, when linked.
pub async fn group_chat(conn: &mut PgConnection, group: i64) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as(
        "SELECT bridge_id, external_chat_id FROM groups WHERE id = $1 AND bridge_id IS NOT NULL AND external_chat_id IS NOT NULL",
    )
    .bind(group)
    .fetch_optional(conn)
    .await
}

/// The member's platform id (for a mention).
pub async fn external_id(conn: &mut PgConnection, member: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT external_user_id FROM members WHERE id = $1").bind(member).fetch_optional(conn).await
}

// ---------------------------------------------------------------- the bot's poster

/// The public poster link (`/p/{token}`) of a member in a campaign, by its token's hash: made on
/// first use with the member's personal link as its QR and `vars` as its placeholders, brought
/// up to date (QR, placeholders) afterwards. False when an operator revoked it: a revoked link
/// is never revived.
pub async fn member_poster_link(
    conn: &mut PgConnection,
    token_hash: &[u8],
    template_id: i64,
    member: i64,
    qr_url: &str,
    vars: &std::collections::BTreeMap<String, String>,
) -> sqlx::Result<bool> {
    let live: Option<i64> = sqlx::query_scalar(
        "INSERT INTO poster_links (token_hash, template_id, member_id, name, qr_url, vars)
         SELECT $1, $2, m.id, m.display_name, $4, $5 FROM members m WHERE m.id = $3
         ON CONFLICT (token_hash) DO UPDATE SET qr_url = EXCLUDED.qr_url, vars = EXCLUDED.vars, name = EXCLUDED.name
             WHERE poster_links.revoked_at IS NULL
               AND (poster_links.qr_url, poster_links.vars, poster_links.name)
                   IS DISTINCT FROM (EXCLUDED.qr_url, EXCLUDED.vars, EXCLUDED.name)
         RETURNING id",
    )
    .bind(token_hash)
    .bind(template_id)
    .bind(member)
    .bind(qr_url)
    .bind(Json(vars))
    .fetch_optional(&mut *conn)
    .await?;
    if live.is_some() {
        return Ok(true);
    }
    // Unchanged (no update, no row back) or revoked.
    let revoked: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT revoked_at FROM poster_links WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(conn)
            .await?;
    Ok(matches!(revoked, Some(None)))
}
