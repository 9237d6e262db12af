//! Live codes, their targets and channels, slot reservation, scan events and statistics.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use crate::auth::{ActorKind, Principal};
use crate::domain::group::GroupStatus;
use crate::domain::live_code::{FallbackKind, LiveCodeSpec, LiveCodeStatus, Mode, ScanOutcome};
use crate::domain::Platform;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveCodeRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub status: LiveCodeStatus,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub mode: Mode,
    pub sticky_days: i32,
    pub fallback_kind: FallbackKind,
    pub fallback_url: Option<String>,
    pub fallback_message: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fallback_sha: Option<String>,
    /// The landing page (see `LiveCodeSpec`); `page_lang` None: the visitor's language.
    pub page_lang: Option<crate::i18n::Lang>,
    pub page_title: String,
    pub page_text: String,
    pub paused_text: String,
    pub ended_text: String,
    pub logo_sha: Option<String>,
}

impl LiveCodeRow {
    /// Active and inside its window.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.status.is_active() && self.starts_at.is_none_or(|s| s <= now) && self.ends_at.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TargetRow {
    pub id: i64,
    pub live_code_id: i64,
    pub group_id: i64,
    pub group_name: String,
    pub platform: Platform,
    pub position: i32,
    pub scan_limit: i32,
    pub used: i32,
    pub generation: i32,
    pub enabled: bool,
    pub group_status: GroupStatus,
    pub member_count: Option<i32>,
    pub capacity: i32,
    pub join_url: Option<String>,
    pub qr_sha256: Option<String>,
    pub qr_expires_at: Option<DateTime<Utc>>,
}

impl TargetRow {
    pub fn state(&self) -> crate::domain::live_code::TargetState {
        crate::domain::live_code::TargetState {
            id: self.id,
            position: self.position,
            enabled: self.enabled,
            scan_limit: self.scan_limit as i64,
            used: self.used as i64,
            group_active: self.group_status.is_active(),
            member_count: self.member_count,
            capacity: self.capacity,
            qr_expires_at: if self.join_url.is_none() { self.qr_expires_at } else { None },
            joinable: self.join_url.is_some() || self.qr_sha256.is_some(),
        }
    }
    /// Percentage of the limit used, 0–100, for fill bars.
    pub fn fill_percent(&self) -> i64 {
        if self.scan_limit <= 0 {
            100
        } else {
            (self.used as i64 * 100 / self.scan_limit as i64).clamp(0, 100)
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT c.id, c.slug, c.name, c.status, c.starts_at, c.ends_at, c.mode, c.sticky_days,
        c.fallback_kind, c.fallback_url, c.fallback_message, c.created_at, c.updated_at, f.sha256 AS fallback_sha,
        c.page_lang, c.page_title, c.page_text, c.paused_text, c.ended_text, lg.sha256 AS logo_sha
    FROM live_codes c LEFT JOIN live_code_fallback_images f ON f.live_code_id = c.id
        LEFT JOIN live_code_logos lg ON lg.live_code_id = c.id";

/// Who asks about live codes: the group scope (`None`: every group) and, for ownership, the
/// operator or API token asking.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub scope: Option<Vec<i64>>,
    pub operator_id: Option<i64>,
    pub token_id: Option<i64>,
}

impl Access {
    pub fn of(p: &Principal) -> Access {
        let (operator_id, token_id) = match p.kind {
            ActorKind::Operator => (Some(p.id), None),
            ActorKind::Token => (None, Some(p.id)),
        };
        Access { scope: p.group_filter(), operator_id, token_id }
    }

    /// Every live code (background work, and reads right after a checked change).
    pub fn all() -> Access {
        Access::default()
    }
}

/// What a scoped principal sees and may change: the codes it owns, whatever their targets, and
/// codes with at least one target whose every target is in its scope. A code without targets
/// is its owner's alone (and every admin's): `NOT EXISTS` a target outside the scope would hold
/// for anyone. `$1` scope, `$2` operator, `$3` token.
const SCOPE: &str = "($1::bigint[] IS NULL
    OR c.owner_operator_id = $2 OR c.owner_token_id = $3
    OR (EXISTS (SELECT 1 FROM live_code_targets t WHERE t.live_code_id = c.id)
        AND NOT EXISTS (SELECT 1 FROM live_code_targets t WHERE t.live_code_id = c.id AND NOT (t.group_id = ANY($1)))))";

fn bind_access<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    a: &'q Access,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(a.scope.as_deref()).bind(a.operator_id).bind(a.token_id)
}

pub async fn list(conn: &mut PgConnection, access: &Access) -> sqlx::Result<Vec<LiveCodeRow>> {
    let sql = format!("{SELECT} WHERE {SCOPE} ORDER BY c.status, c.name, c.id");
    bind_access(sqlx::query_as(&sql), access).fetch_all(conn).await
}

pub async fn get(conn: &mut PgConnection, id: i64, access: &Access) -> sqlx::Result<Option<LiveCodeRow>> {
    let sql = format!("{SELECT} WHERE {SCOPE} AND c.id = $4");
    bind_access(sqlx::query_as(&sql), access).bind(id).fetch_optional(conn).await
}

pub async fn by_slug(conn: &mut PgConnection, slug: &str) -> sqlx::Result<Option<LiveCodeRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE lower(c.slug) = lower($1)")).bind(slug).fetch_optional(conn).await
}

/// Inserts a live code owned by `owner` (the creating operator or token).
pub async fn insert(conn: &mut PgConnection, s: &LiveCodeSpec, owner: &Access) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO live_codes (slug, name, status, starts_at, ends_at, mode, sticky_days, fallback_kind, fallback_url,
            fallback_message, owner_operator_id, owner_token_id, page_lang, page_title, page_text, paused_text, ended_text)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
    )
    .bind(&s.slug)
    .bind(&s.name)
    .bind(s.status)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(s.mode)
    .bind(s.sticky_days)
    .bind(s.fallback_kind)
    .bind(&s.fallback_url)
    .bind(&s.fallback_message)
    .bind(owner.operator_id)
    .bind(owner.token_id)
    .bind(s.page_lang)
    .bind(&s.page_title)
    .bind(&s.page_text)
    .bind(&s.paused_text)
    .bind(&s.ended_text)
    .fetch_one(conn)
    .await
}

pub async fn update(conn: &mut PgConnection, id: i64, s: &LiveCodeSpec) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE live_codes SET slug = $2, name = $3, status = $4, starts_at = $5, ends_at = $6, mode = $7, sticky_days = $8,
            fallback_kind = $9, fallback_url = $10, fallback_message = $11, page_lang = $12, page_title = $13,
            page_text = $14, paused_text = $15, ended_text = $16, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&s.slug)
    .bind(&s.name)
    .bind(s.status)
    .bind(s.starts_at)
    .bind(s.ends_at)
    .bind(s.mode)
    .bind(s.sticky_days)
    .bind(s.fallback_kind)
    .bind(&s.fallback_url)
    .bind(&s.fallback_message)
    .bind(s.page_lang)
    .bind(&s.page_title)
    .bind(&s.page_text)
    .bind(&s.paused_text)
    .bind(&s.ended_text)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    // The code first: it waits for an event batch that holds the code's row (`scan::events`),
    // so that the events deleted next include that batch's.
    let deleted = sqlx::query("DELETE FROM live_codes WHERE id = $1").bind(id).execute(&mut *conn).await?;
    // scan_events has no foreign key (it is written by COPY at high rates): delete by hand.
    sqlx::query("DELETE FROM scan_events WHERE live_code_id = $1").bind(id).execute(&mut *conn).await?;
    Ok(deleted.rows_affected() == 1)
}

/// Of `ids`, the live codes that exist, locked against deletion (`FOR KEY SHARE`, which does not
/// wait for or block edits) until the transaction ends: the event writer's batch then never
/// meets a code deleted under it.
pub async fn existing_locked(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT id FROM live_codes WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
        .bind(ids)
        .fetch_all(conn)
        .await
}

pub async fn put_fallback_image(
    conn: &mut PgConnection,
    id: i64,
    content_type: &str,
    bytes: &[u8],
    sha: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO live_code_fallback_images (live_code_id, content_type, bytes, sha256) VALUES ($1, $2, $3, $4)
         ON CONFLICT (live_code_id) DO UPDATE SET content_type = EXCLUDED.content_type, bytes = EXCLUDED.bytes,
            sha256 = EXCLUDED.sha256, uploaded_at = now()",
    )
    .bind(id)
    .bind(content_type)
    .bind(bytes)
    .bind(sha)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn fallback_image(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<(String, Vec<u8>, String)>> {
    sqlx::query_as("SELECT content_type, bytes, sha256 FROM live_code_fallback_images WHERE live_code_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn put_logo(
    conn: &mut PgConnection,
    id: i64,
    content_type: &str,
    bytes: &[u8],
    sha: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO live_code_logos (live_code_id, content_type, bytes, sha256) VALUES ($1, $2, $3, $4)
         ON CONFLICT (live_code_id) DO UPDATE SET content_type = EXCLUDED.content_type, bytes = EXCLUDED.bytes,
            sha256 = EXCLUDED.sha256, uploaded_at = now()",
    )
    .bind(id)
    .bind(content_type)
    .bind(bytes)
    .bind(sha)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_logo(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM live_code_logos WHERE live_code_id = $1").bind(id).execute(conn).await?;
    Ok(())
}

pub async fn logo(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<(String, Vec<u8>, String)>> {
    sqlx::query_as("SELECT content_type, bytes, sha256 FROM live_code_logos WHERE live_code_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

// ---- targets ----

const TARGETS: &str =
    "SELECT t.id, t.live_code_id, t.group_id, g.name AS group_name, g.platform, t.position, t.scan_limit,
        t.used, t.generation, t.enabled, g.status AS group_status, g.member_count, g.capacity, g.join_url,
        q.sha256 AS qr_sha256, q.expires_at AS qr_expires_at
    FROM live_code_targets t JOIN groups g ON g.id = t.group_id LEFT JOIN group_qr_images q ON q.group_id = g.id";

pub async fn targets(conn: &mut PgConnection, code_id: i64) -> sqlx::Result<Vec<TargetRow>> {
    sqlx::query_as(&format!("{TARGETS} WHERE t.live_code_id = $1 ORDER BY t.position, t.id"))
        .bind(code_id)
        .fetch_all(conn)
        .await
}

/// Each target's stored slot counter, by target id.
pub async fn used_counts(conn: &mut PgConnection, code_id: i64) -> sqlx::Result<Vec<(i64, i32)>> {
    sqlx::query_as("SELECT id, used FROM live_code_targets WHERE live_code_id = $1").bind(code_id).fetch_all(conn).await
}

pub async fn target(conn: &mut PgConnection, code_id: i64, target_id: i64) -> sqlx::Result<Option<TargetRow>> {
    sqlx::query_as(&format!("{TARGETS} WHERE t.live_code_id = $1 AND t.id = $2"))
        .bind(code_id)
        .bind(target_id)
        .fetch_optional(conn)
        .await
}

/// Targets of every live code, for the dashboard and alerts.
pub async fn all_targets(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<TargetRow>> {
    sqlx::query_as(&format!(
        "{TARGETS} WHERE ($1::bigint[] IS NULL OR t.group_id = ANY($1)) ORDER BY t.live_code_id, t.position"
    ))
    .bind(scope)
    .fetch_all(conn)
    .await
}

/// Adds a group as the last target. A unique violation (`live_code_targets_live_code_id_group_id_key`)
/// means the group is a target already.
pub async fn add_target(conn: &mut PgConnection, code_id: i64, group_id: i64, limit: i32) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit)
         VALUES ($1, $2, COALESCE((SELECT max(position) + 1 FROM live_code_targets WHERE live_code_id = $1), 1), $3)
         RETURNING id",
    )
    .bind(code_id)
    .bind(group_id)
    .bind(limit)
    .fetch_one(conn)
    .await
}

/// Changes the limit and the enabled flag. Slots already taken stay counted; processes holding
/// reserved slots give them back when they see the new limit.
pub async fn update_target(
    conn: &mut PgConnection,
    code_id: i64,
    target_id: i64,
    limit: i32,
    enabled: bool,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE live_code_targets SET enabled = $4, scan_limit = $3
         WHERE live_code_id = $1 AND id = $2",
    )
    .bind(code_id)
    .bind(target_id)
    .bind(limit)
    .bind(enabled)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Sets the counter back to zero (a new generation); returns the old count.
pub async fn reset_target(conn: &mut PgConnection, code_id: i64, target_id: i64) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar(
        "UPDATE live_code_targets t SET used = 0, generation = t.generation + 1
         FROM (SELECT id, used FROM live_code_targets WHERE live_code_id = $1 AND id = $2 FOR UPDATE) old
         WHERE t.id = old.id RETURNING old.used",
    )
    .bind(code_id)
    .bind(target_id)
    .fetch_optional(conn)
    .await
}

pub async fn remove_target(conn: &mut PgConnection, code_id: i64, target_id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM live_code_targets WHERE live_code_id = $1 AND id = $2")
        .bind(code_id)
        .bind(target_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves a target one place up (-1) or down (+1) by swapping positions with its neighbour.
pub async fn move_target(conn: &mut PgConnection, code_id: i64, target_id: i64, up: bool) -> sqlx::Result<bool> {
    let rows: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, position FROM live_code_targets WHERE live_code_id = $1 ORDER BY position, id FOR UPDATE",
    )
    .bind(code_id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(i) = rows.iter().position(|(id, _)| *id == target_id) else { return Ok(false) };
    let j = if up { i.checked_sub(1) } else { (i + 1 < rows.len()).then_some(i + 1) };
    let Some(j) = j else { return Ok(true) };
    // Renumber densely with the two swapped, so positions stay unique and ordered.
    let mut order: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    order.swap(i, j);
    for (pos, id) in order.iter().enumerate() {
        sqlx::query("UPDATE live_code_targets SET position = $2 WHERE id = $1")
            .bind(id)
            .bind(pos as i32 + 1)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

// ---- slots ----

/// Takes up to a block of slots from a target in one conditional UPDATE — `1 / share` of what is
/// left, at least one, at most `max_block`: never more than the limit allows, however many
/// processes ask at once (the row lock orders them). Returns the slots granted (0 when the
/// target is used up) and the target's generation.
pub async fn reserve(conn: &mut PgConnection, target_id: i64, max_block: i64, share: i64) -> sqlx::Result<(i64, i32)> {
    let row: Option<(i32, i32)> = sqlx::query_as(
        "WITH cur AS (
            SELECT id, LEAST(GREATEST((scan_limit - used) / $3::int, 1), $2::int, scan_limit - used) AS grant_n
            FROM live_code_targets WHERE id = $1 FOR UPDATE)
         UPDATE live_code_targets t SET used = t.used + cur.grant_n
         FROM cur WHERE t.id = cur.id AND cur.grant_n > 0
         RETURNING cur.grant_n, t.generation",
    )
    .bind(target_id)
    .bind(max_block.min(i32::MAX as i64) as i32)
    .bind(share.clamp(1, i32::MAX as i64) as i32)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(n, g)| (n as i64, g)).unwrap_or((0, 0)))
}

/// Gives unused reserved slots back (at shutdown, or when the limit changed), unless the
/// counter has been reset since they were taken.
pub async fn give_back(conn: &mut PgConnection, target_id: i64, n: i64, generation: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE live_code_targets SET used = GREATEST(used - $2, 0) WHERE id = $1 AND generation = $3")
        .bind(target_id)
        .bind(n.min(i32::MAX as i64) as i32)
        .bind(generation)
        .execute(conn)
        .await?;
    Ok(())
}

// ---- channels ----

pub async fn channels(conn: &mut PgConnection, code_id: i64) -> sqlx::Result<Vec<ChannelRow>> {
    sqlx::query_as("SELECT id, key, name, created_at FROM live_code_channels WHERE live_code_id = $1 ORDER BY key")
        .bind(code_id)
        .fetch_all(conn)
        .await
}

pub async fn add_channel(conn: &mut PgConnection, code_id: i64, key: &str, name: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("INSERT INTO live_code_channels (live_code_id, key, name) VALUES ($1, $2, $3) RETURNING id")
        .bind(code_id)
        .bind(key)
        .bind(name)
        .fetch_one(conn)
        .await
}

pub async fn delete_channel(conn: &mut PgConnection, code_id: i64, channel_id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM live_code_channels WHERE live_code_id = $1 AND id = $2")
        .bind(code_id)
        .bind(channel_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

// ---- statistics (from the pre-aggregated tables) ----

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DailyRow {
    pub day: NaiveDate,
    pub outcome: ScanOutcome,
    pub scans: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyedCount {
    pub key: String,
    pub scans: i64,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub daily: Vec<DailyRow>,
    pub by_target: Vec<(i64, i64)>,
    pub by_channel: Vec<KeyedCount>,
    pub unique_visitors: i64,
    pub long_presses: i64,
    pub fallbacks: i64,
    /// New visitors turned away by the per-address limit (`scan.new_scans_per_address`).
    pub refused: i64,
    pub previews: i64,
    pub landed: i64,
}

pub async fn stats(conn: &mut PgConnection, code_id: i64, from: NaiveDate, to: NaiveDate) -> sqlx::Result<Stats> {
    let daily: Vec<DailyRow> = sqlx::query_as(
        "SELECT day, outcome, sum(scans)::bigint AS scans FROM scan_daily
         WHERE live_code_id = $1 AND day BETWEEN $2 AND $3 GROUP BY day, outcome ORDER BY day",
    )
    .bind(code_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let by_target: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT target_id, sum(scans)::bigint FROM scan_daily
         WHERE live_code_id = $1 AND day BETWEEN $2 AND $3 AND outcome IN ('new', 'sticky') GROUP BY target_id",
    )
    .bind(code_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let by_channel: Vec<KeyedCount> = sqlx::query_as(
        "SELECT channel AS key, sum(scans)::bigint AS scans FROM scan_daily
         WHERE live_code_id = $1 AND day BETWEEN $2 AND $3 AND outcome IN ('new', 'sticky', 'fallback')
         GROUP BY channel ORDER BY channel",
    )
    .bind(code_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let sketches: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT registers FROM scan_daily_uniques WHERE live_code_id = $1 AND day BETWEEN $2 AND $3",
    )
    .bind(code_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut union = crate::domain::hll::Sketch::default();
    for s in sketches {
        union.merge(&crate::domain::hll::Sketch::from_bytes(&s));
    }
    let unique_visitors = union.estimate() as i64;
    let sum = |o: ScanOutcome| daily.iter().filter(|d| d.outcome == o).map(|d| d.scans).sum::<i64>();
    Ok(Stats {
        long_presses: sum(ScanOutcome::LongPress),
        fallbacks: sum(ScanOutcome::Fallback),
        refused: sum(ScanOutcome::Refused),
        previews: sum(ScanOutcome::Preview),
        landed: sum(ScanOutcome::New) + sum(ScanOutcome::Sticky),
        daily,
        by_target,
        by_channel,
        unique_visitors,
    })
}

// ---- admin pages ----

/// The live code, locked for the rest of the transaction, if the scope sees it: every change
/// of a live code or its targets starts here, so concurrent changes of one code run in turn and
/// the scope check holds until the commit.
pub async fn lock(conn: &mut PgConnection, id: i64, access: &Access) -> sqlx::Result<Option<LiveCodeRow>> {
    let sql = format!("{SELECT} WHERE {SCOPE} AND c.id = $4 FOR UPDATE OF c");
    bind_access(sqlx::query_as(&sql), access).bind(id).fetch_optional(conn).await
}

/// Scans (routed to a target or to the fallback) per live code on one day of the counters.
pub async fn scans_on(conn: &mut PgConnection, day: NaiveDate) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT live_code_id, sum(scans)::bigint FROM scan_daily
         WHERE day = $1 AND outcome IN ('new', 'sticky', 'fallback') GROUP BY live_code_id",
    )
    .bind(day)
    .fetch_all(conn)
    .await
}
