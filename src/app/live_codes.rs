//! Live codes, their targets and channels. Every change locks the code first (in the
//! principal's scope, else 404), so that concurrent changes of one code run in turn and the
//! scope check holds until the commit; a change of a target also needs the target's group in
//! scope, even on one's own code. Every change tells this process's scan cache after the
//! commit (the old slug and the new one when the slug changed).

use sqlx::PgConnection;

use super::{invalid, record, AfterCommit, Done};
use crate::auth::Principal;
use crate::domain::live_code::{default_scan_limit, FallbackKind, LiveCodeSpec};
use crate::domain::qr::PublicImage;
use crate::error::{on_unique, AppError, AppResult, FieldErrors};
use crate::store::groups;
use crate::store::live_codes::{self as store, Access, ChannelRow, LiveCodeRow, TargetRow};

fn slug_taken(e: sqlx::Error) -> AppError {
    on_unique(e, "live_codes_slug_key", "slug", "error.slug_taken")
}

fn details(spec: &LiveCodeSpec) -> serde_json::Value {
    serde_json::json!({
        "name": spec.name, "slug": spec.slug, "active": spec.status.is_active(), "mode": spec.mode,
        "sticky_days": spec.sticky_days, "starts_at": spec.starts_at, "ends_at": spec.ends_at,
        "fallback_kind": spec.fallback_kind, "fallback_url": spec.fallback_url,
    })
}

fn target_details(t: &TargetRow) -> serde_json::Value {
    serde_json::json!({"target_id": t.id, "group_id": t.group_id, "group_name": t.group_name})
}

/// An image fallback needs an image: one given now, or one stored before.
fn check_image(spec: &LiveCodeSpec, given: bool, stored: bool) -> AppResult<()> {
    if spec.fallback_kind == FallbackKind::Image && !given && !stored {
        return Err(invalid("fallback_image", "live_codes.error.image_required"));
    }
    Ok(())
}

/// Stores the fallback image, if any, and writes the audit row of a create or update.
async fn image_and_audit(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &LiveCodeSpec,
    image: Option<&PublicImage>,
    action: &str,
) -> AppResult<()> {
    let mut d = details(spec);
    if let Some(img) = image {
        store::put_fallback_image(conn, id, img.content_type, &img.bytes, &img.sha256).await?;
        d["fallback_image_sha256"] = serde_json::json!(img.sha256);
    }
    record(conn, who, action, "live_code", Some(id), d).await
}

/// The live code, if the principal may see it (else 404); for reads.
pub async fn load(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<LiveCodeRow> {
    store::get(conn, id, &Access::of(who)).await?.ok_or(AppError::NotFound)
}

/// The live code, locked for the rest of the transaction, if the principal may change it.
pub async fn lock(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<LiveCodeRow> {
    who.require_write()?;
    store::lock(conn, id, &Access::of(who)).await?.ok_or(AppError::NotFound)
}

/// Creates a live code owned by the principal (an operator or API token). `live_code.create`.
pub async fn create(
    conn: &mut PgConnection,
    who: &Principal,
    spec: &LiveCodeSpec,
    image: Option<&PublicImage>,
) -> AppResult<Done<LiveCodeRow>> {
    who.require_write()?;
    check_image(spec, image.is_some(), false)?;
    let id = store::insert(conn, spec, &Access::of(who)).await.map_err(slug_taken)?;
    image_and_audit(conn, who, id, spec, image, "live_code.create").await?;
    let row = store::get(conn, id, &Access::all()).await?.ok_or(AppError::NotFound)?;
    // The scan path may have cached "no such code" for this slug.
    Ok(Done::new(row, AfterCommit::invalidate([spec.slug.clone()])))
}

/// Changes a live code's settings (and its fallback image). A changed slug frees the old one:
/// the scan cache forgets both. `live_code.update`.
pub async fn update(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &LiveCodeSpec,
    image: Option<&PublicImage>,
) -> AppResult<Done<LiveCodeRow>> {
    let old = lock(conn, who, id).await?;
    check_image(spec, image.is_some(), old.fallback_sha.is_some())?;
    store::update(conn, id, spec).await.map_err(slug_taken)?;
    image_and_audit(conn, who, id, spec, image, "live_code.update").await?;
    let row = store::get(conn, id, &Access::all()).await?.ok_or(AppError::NotFound)?;
    Ok(Done::new(row, AfterCommit::invalidate([old.slug, spec.slug.clone()])))
}

/// Deletes a live code with its targets, channels and statistics. `live_code.delete`.
pub async fn delete(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<LiveCodeRow>> {
    let c = lock(conn, who, id).await?;
    store::delete(conn, id).await?;
    record(conn, who, "live_code.delete", "live_code", Some(id), serde_json::json!({"name": c.name, "slug": c.slug}))
        .await?;
    let slug = c.slug.clone();
    Ok(Done::new(c, AfterCommit::invalidate([slug])))
}

/// The end of a change of `c`: its audit row; the scan cache forgets it after the commit.
async fn changed<T>(
    conn: &mut PgConnection,
    who: &Principal,
    c: &LiveCodeRow,
    action: &str,
    details: serde_json::Value,
    value: T,
) -> AppResult<Done<T>> {
    record(conn, who, action, "live_code", Some(c.id), details).await?;
    Ok(Done::new(value, AfterCommit::invalidate([c.slug.clone()])))
}

/// A target to add: the group and, when given, its scan limit (already within
/// `domain::live_code::MAX_SCAN_LIMIT`).
#[derive(Debug, Clone, Copy)]
pub struct NewTarget {
    pub group_id: i64,
    pub scan_limit: Option<i32>,
}

/// Adds a group as the last target; without a limit, the room the group reports. A group the
/// principal cannot use (outside its scope, or none) is a bad `group_id`; one that is a target
/// already, `error.target_exists`. `live_code.target_add`.
pub async fn add_target(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    t: NewTarget,
) -> AppResult<Done<TargetRow>> {
    let c = lock(conn, who, code_id).await?;
    let g = if who.sees_group(t.group_id) { groups::get(conn, t.group_id).await? } else { None };
    let Some(g) = g else { return Err(invalid("group_id", "error.choice")) };
    let limit = t.scan_limit.unwrap_or_else(|| default_scan_limit(g.capacity, g.member_count));
    let tid = store::add_target(conn, c.id, g.id, limit)
        .await
        .map_err(|e| on_unique(e, "live_code_targets_live_code_id_group_id_key", "group_id", "error.target_exists"))?;
    let row = store::target(conn, c.id, tid).await?.ok_or(AppError::NotFound)?;
    let details = serde_json::json!({"target_id": tid, "group_id": g.id, "group_name": g.name, "scan_limit": limit});
    changed(conn, who, &c, "live_code.target_add", details, row).await
}

/// The locked code and its target `tid` (else 404), whose group the principal must have.
pub async fn target_of(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    tid: i64,
) -> AppResult<(LiveCodeRow, TargetRow)> {
    let c = lock(conn, who, code_id).await?;
    let t = store::target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    who.require_group(t.group_id)?;
    Ok((c, t))
}

/// Sets a target's scan limit (already within `MAX_SCAN_LIMIT`). Slots already taken stay
/// counted. `live_code.target_limit`.
pub async fn set_limit(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    tid: i64,
    limit: i32,
) -> AppResult<Done<TargetRow>> {
    let (c, t) = target_of(conn, who, code_id, tid).await?;
    store::update_target(conn, code_id, tid, limit, t.enabled).await?;
    let mut d = target_details(&t);
    d["old_limit"] = serde_json::json!(t.scan_limit);
    d["scan_limit"] = serde_json::json!(limit);
    let row = store::target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    changed(conn, who, &c, "live_code.target_limit", d, row).await
}

/// Turns a target on or off. `live_code.target_enable` / `live_code.target_disable`.
pub async fn set_enabled(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    tid: i64,
    enabled: bool,
) -> AppResult<Done<TargetRow>> {
    let (c, t) = target_of(conn, who, code_id, tid).await?;
    store::update_target(conn, code_id, tid, t.scan_limit, enabled).await?;
    let action = if enabled { "live_code.target_enable" } else { "live_code.target_disable" };
    let row = store::target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    changed(conn, who, &c, action, target_details(&t), row).await
}

/// Where to move a target in the try order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    /// To this place (1 = first), clamped to the targets there are.
    To(i32),
}

/// Moves a target in the try order (a move past either end changes nothing, and is recorded
/// all the same). `live_code.target_move`.
pub async fn move_target(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    tid: i64,
    to: Move,
) -> AppResult<Done<TargetRow>> {
    let (c, t) = target_of(conn, who, code_id, tid).await?;
    let order = store::targets(conn, code_id).await?;
    let n = order.len() as i32;
    let from = order.iter().position(|x| x.id == tid).map_or(1, |i| i as i32 + 1);
    let want = match to {
        Move::Up => (from - 1).max(1),
        Move::Down => (from + 1).min(n),
        Move::To(p) => p.clamp(1, n.max(1)),
    };
    for _ in 0..(from - want).abs() {
        store::move_target(conn, code_id, tid, want < from).await?;
    }
    let mut d = target_details(&t);
    d["from_position"] = serde_json::json!(from);
    d["to_position"] = serde_json::json!(want);
    let row = store::target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    changed(conn, who, &c, "live_code.target_move", d, row).await
}

/// Sets a target's counter back to zero (a new generation). `live_code.target_reset` with the
/// old count.
pub async fn reset_target(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    tid: i64,
) -> AppResult<Done<TargetRow>> {
    let (c, t) = target_of(conn, who, code_id, tid).await?;
    let old = store::reset_target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    let mut d = target_details(&t);
    d["old_used"] = serde_json::json!(old);
    let row = store::target(conn, code_id, tid).await?.ok_or(AppError::NotFound)?;
    changed(conn, who, &c, "live_code.target_reset", d, row).await
}

/// Removes a target. `live_code.target_remove`.
pub async fn remove_target(conn: &mut PgConnection, who: &Principal, code_id: i64, tid: i64) -> AppResult<Done<()>> {
    let (c, t) = target_of(conn, who, code_id, tid).await?;
    if !store::remove_target(conn, code_id, tid).await? {
        return Err(AppError::NotFound);
    }
    let mut d = target_details(&t);
    d["used"] = serde_json::json!(t.used);
    d["scan_limit"] = serde_json::json!(t.scan_limit);
    changed(conn, who, &c, "live_code.target_remove", d, ()).await
}

/// A channel to add, checked: a key for `?ch=` and a name.
pub fn channel(key: &str, name: &str) -> Result<(String, String), FieldErrors> {
    let mut errors = FieldErrors::new();
    let key = key.trim().to_string();
    if !crate::domain::live_code::valid_channel_key(&key) {
        errors.add("key", "error.channel_key");
    }
    let name = crate::domain::required_text(name, 120, "name", &mut errors);
    if errors.is_empty() {
        Ok((key, name))
    } else {
        Err(errors)
    }
}

/// Adds a channel (checked by [`channel`]). `live_code.channel_add`.
pub async fn add_channel(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    key: &str,
    name: &str,
) -> AppResult<Done<ChannelRow>> {
    let c = lock(conn, who, code_id).await?;
    let cid = store::add_channel(conn, code_id, key, name)
        .await
        .map_err(|e| on_unique(e, "live_code_channels_live_code_id_key_key", "key", "error.channel_taken"))?;
    let row = store::channels(conn, code_id).await?.into_iter().find(|ch| ch.id == cid).ok_or(AppError::NotFound)?;
    let details = serde_json::json!({"channel_id": cid, "key": key, "name": name});
    changed(conn, who, &c, "live_code.channel_add", details, row).await
}

/// A channel of a live code, by id (admin pages) or key (API).
#[derive(Debug, Clone, Copy)]
pub enum ChannelRef<'a> {
    Id(i64),
    Key(&'a str),
}

/// The channel, if the live code has it.
pub async fn channel_of(conn: &mut PgConnection, code_id: i64, which: ChannelRef<'_>) -> AppResult<ChannelRow> {
    store::channels(conn, code_id)
        .await?
        .into_iter()
        .find(|ch| match which {
            ChannelRef::Id(id) => ch.id == id,
            ChannelRef::Key(k) => ch.key == k,
        })
        .ok_or(AppError::NotFound)
}

/// Deletes a channel (its statistics stay). `live_code.channel_delete`.
pub async fn delete_channel(
    conn: &mut PgConnection,
    who: &Principal,
    code_id: i64,
    which: ChannelRef<'_>,
) -> AppResult<Done<ChannelRow>> {
    let c = lock(conn, who, code_id).await?;
    let ch = channel_of(conn, code_id, which).await?;
    store::delete_channel(conn, code_id, ch.id).await?;
    let details = serde_json::json!({"channel_id": ch.id, "key": ch.key, "name": ch.name});
    changed(conn, who, &c, "live_code.channel_delete", details, ch).await
}
