//! Groups: create, change (with the QR image replaced in place), archive and restore.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{record, Done};
use crate::auth::Principal;
use crate::domain::group::{local_input_value, GroupRaw, GroupSpec, GroupStatus};
use crate::domain::qr::QrImage;
use crate::error::{on_unique, AppError, AppResult};
use crate::store::groups::{self, GroupRow};

/// Who may set or change a group's chat (its platform and chat id): admins and principals with
/// every group. A principal scoped to some groups could otherwise claim another community's chat
/// and receive its deliveries and members, and the "taken" answer would tell them it exists.
pub fn may_set_chat(p: &Principal) -> bool {
    p.is_admin() || p.group_filter().is_none()
}

/// Refuses a chat change by a principal that may not make it ([`may_set_chat`]); keeping the
/// chat as it is, or clearing it, is everyone's. Checked before the uniqueness of the chat, so
/// that "taken" reveals nothing.
fn check_chat_change(p: &Principal, current: Option<&GroupRow>, spec: &GroupSpec) -> AppResult<()> {
    let Some(chat) = &spec.external_chat_id else { return Ok(()) };
    let unchanged = current.is_some_and(|g| g.external_chat_id.as_deref() == Some(chat) && g.platform == spec.platform);
    if may_set_chat(p) || unchanged {
        return Ok(());
    }
    Err(super::invalid("external_chat_id", "error.chat_id_admin_only"))
}

fn chat_taken(e: sqlx::Error) -> AppError {
    on_unique(e, "groups_external_chat_key", "external_chat_id", "error.external_chat_taken")
}

fn details(spec: &GroupSpec) -> serde_json::Value {
    serde_json::json!({
        "name": spec.name, "platform": spec.platform, "join_url": spec.join_url,
        "capacity": spec.capacity, "member_count": spec.member_count, "timezone": spec.timezone,
        "external_chat_id": spec.external_chat_id, "status": spec.status, "tags": spec.tags,
    })
}

/// The expiry to store with a new QR image: as given, else the platform's default from now.
fn qr_expiry(spec: &GroupSpec) -> Option<DateTime<Utc>> {
    spec.qr_expires_at
        .or_else(|| spec.platform.default_qr_validity_days().map(|d| Utc::now() + chrono::Duration::days(d)))
}

/// Creates a group (with its QR image, if any); a scoped principal gets the group into its
/// scope. `group.create`.
pub async fn create(
    conn: &mut PgConnection,
    who: &Principal,
    spec: &GroupSpec,
    qr: Option<&QrImage>,
) -> AppResult<Done<GroupRow>> {
    who.require_write()?;
    check_chat_change(who, None, spec)?;
    let id = groups::insert(conn, spec).await.map_err(chat_taken)?;
    groups::grant(conn, who, id).await?;
    if let Some(img) = qr {
        groups::put_qr(conn, id, img, qr_expiry(spec)).await?;
    }
    let mut d = details(spec);
    d["qr_sha256"] = serde_json::json!(qr.map(|q| q.sha256.clone()));
    record(conn, who, "group.create", "group", Some(id), d).await?;
    let row = groups::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(row))
}

/// The group, if the principal's scope has it (else 404).
pub async fn load(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<GroupRow> {
    who.require_group(id)?;
    groups::get(conn, id).await?.ok_or(AppError::NotFound)
}

/// Changes a group. The QR expiry changes only when `spec` names one; a new QR image gets a
/// fresh expiry unless the expiry was moved too (`group.qr_replace`). `group.update`.
pub async fn update(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &GroupSpec,
    qr: Option<&QrImage>,
) -> AppResult<Done<GroupRow>> {
    who.require_write()?;
    let current = load(conn, who, id).await?;
    check_chat_change(who, Some(&current), spec)?;
    groups::update(conn, id, spec).await.map_err(chat_taken)?;
    let mut d = details(spec);
    if let Some(img) = qr {
        let moved = spec.qr_expires_at.filter(|at| Some(*at) != current.qr_expires_at);
        let expiry = moved.or_else(|| qr_expiry(&GroupSpec { qr_expires_at: None, ..spec.clone() }));
        groups::put_qr(conn, id, img, expiry).await?;
        d["qr_sha256"] = serde_json::json!(img.sha256);
        let replaced = serde_json::json!({"sha256": img.sha256, "expires_at": expiry});
        record(conn, who, "group.qr_replace", "group", Some(id), replaced).await?;
    }
    record(conn, who, "group.update", "group", Some(id), d).await?;
    let row = groups::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(row))
}

/// Archives (`group.archive`) or restores (`group.restore`) a group; groups are never deleted.
pub async fn set_status(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    status: GroupStatus,
) -> AppResult<Done<GroupRow>> {
    who.require_write()?;
    load(conn, who, id).await?;
    groups::set_status(conn, id, status).await?;
    let action = if status == GroupStatus::Archived { "group.archive" } else { "group.restore" };
    record(conn, who, action, "group", Some(id), serde_json::json!({})).await?;
    let row = groups::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(row))
}

/// A stored group as a form shows it, and as the base an API change overlays (the QR expiry in
/// the group's zone).
pub fn raw_of(g: &GroupRow) -> GroupRaw {
    GroupRaw {
        name: g.name.clone(),
        platform: g.platform.as_str().to_string(),
        join_url: g.join_url.clone().unwrap_or_default(),
        capacity: g.capacity.to_string(),
        member_count: g.member_count.map(|n| n.to_string()).unwrap_or_default(),
        timezone: g.timezone.name().to_string(),
        external_chat_id: g.external_chat_id.clone().unwrap_or_default(),
        status: g.status.as_str().to_string(),
        tags: g.tags.join(", "),
        notes: g.notes.clone(),
        qr_expires_at: g.qr_expires_at.map(|at| local_input_value(at, g.timezone.tz())).unwrap_or_default(),
    }
}
