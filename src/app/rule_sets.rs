//! Rule sets: create, change, delete, attach to groups and tags, detach; a group's activity log.
//!
//! Who may do what: a rule set is shared (like a shared poster template) — every principal reads
//! it; only admins and principals with every group create, change or delete one, or attach it
//! to a tag (a tag reaches groups outside any scope). A principal that may write to a group
//! attaches any rule set to it, or detaches the group's own.

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::rule_set::{Attachment, RuleSetSpec};
use crate::error::{on_unique, AppError, AppResult, FieldErrors};
use crate::store::bot_activity::{self, ActivityRow};
use crate::store::rule_sets::{self, RuleSetRow};

use super::{AfterCommit, Done};

fn done<T>(value: T) -> Done<T> {
    Done::new(value, AfterCommit::rule_sets())
}

/// Whether `who` may change rule sets themselves (and tag attachments).
pub fn may_write(who: &Principal) -> bool {
    who.can_write() && (who.is_admin() || who.group_filter().is_none())
}

fn require_shared_write(who: &Principal) -> AppResult<()> {
    if may_write(who) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

fn taken(e: sqlx::Error) -> AppError {
    on_unique(e, "rule_sets_name_key", "name", "rule_sets.error.name_taken")
}

pub async fn create(conn: &mut PgConnection, who: &Principal, spec: &RuleSetSpec) -> AppResult<Done<RuleSetRow>> {
    require_shared_write(who)?;
    let row = rule_sets::create(conn, spec).await.map_err(taken)?;
    let d = serde_json::json!({"name": spec.name});
    super::record(conn, who, "rule_set.create", "rule_set", Some(row.id), d).await?;
    Ok(done(row))
}

pub async fn update(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &RuleSetSpec,
) -> AppResult<Done<RuleSetRow>> {
    require_shared_write(who)?;
    let row = rule_sets::update(conn, id, spec).await.map_err(taken)?.ok_or(AppError::NotFound)?;
    let d = serde_json::json!({"name": spec.name, "version": row.version});
    super::record(conn, who, "rule_set.update", "rule_set", Some(id), d).await?;
    Ok(done(row))
}

pub async fn delete(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<()>> {
    require_shared_write(who)?;
    let before = rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    rule_sets::delete(conn, id).await?;
    super::record(conn, who, "rule_set.delete", "rule_set", Some(id), serde_json::json!({"name": before.name})).await?;
    Ok(done(()))
}

/// Checks that `who` may attach to or detach from `to`, and that the group exists.
async fn check_attachment(conn: &mut PgConnection, who: &Principal, to: &Attachment) -> AppResult<()> {
    who.require_write()?;
    match to {
        Attachment::Group { group_id } => {
            if !who.sees_group(*group_id) || crate::store::groups::get(conn, *group_id).await?.is_none() {
                let mut fe = FieldErrors::new();
                fe.add("group_id", "rule_sets.error.unknown_group");
                return Err(AppError::Validation(fe));
            }
        }
        Attachment::Tag { tag, priority } => {
            require_shared_write(who)?;
            let mut fe = FieldErrors::new();
            let t = tag.trim();
            if t.is_empty() || t.chars().count() > 32 || t.contains('\0') {
                fe.add("tag", "rule_sets.error.tag");
            }
            if !(-1000..=1000).contains(priority) {
                fe.add("priority", "error.number_range");
            }
            fe.into_result(())?;
        }
    }
    Ok(())
}

fn trimmed(to: &Attachment) -> Attachment {
    match to {
        Attachment::Tag { tag, priority } => Attachment::Tag { tag: tag.trim().to_string(), priority: *priority },
        g => g.clone(),
    }
}

/// Attaches the rule set to a group (replacing the group's own) or a tag (replacing the tag's).
pub async fn attach(conn: &mut PgConnection, who: &Principal, id: i64, to: &Attachment) -> AppResult<Done<()>> {
    let to = trimmed(to);
    check_attachment(conn, who, &to).await?;
    rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    rule_sets::attach(conn, id, &to).await?;
    let d = serde_json::to_value(&to).unwrap_or_default();
    super::record(conn, who, "rule_set.attach", "rule_set", Some(id), d).await?;
    Ok(done(()))
}

/// Detaches the rule set from a group or tag (404 when it was not attached there).
pub async fn detach(conn: &mut PgConnection, who: &Principal, id: i64, from: &Attachment) -> AppResult<Done<()>> {
    let from = trimmed(from);
    check_attachment(conn, who, &from).await?;
    if !rule_sets::detach(conn, id, &from).await? {
        return Err(AppError::NotFound);
    }
    let d = serde_json::to_value(&from).unwrap_or_default();
    super::record(conn, who, "rule_set.detach", "rule_set", Some(id), d).await?;
    Ok(done(()))
}

/// A group's activity log, newest first (a group out of scope answers 404).
pub async fn activity(
    conn: &mut PgConnection,
    who: &Principal,
    group_id: i64,
    before: Option<i64>,
    limit: i64,
) -> AppResult<Vec<ActivityRow>> {
    who.require_group(group_id)?;
    crate::store::groups::get(conn, group_id).await?.ok_or(AppError::NotFound)?;
    Ok(bot_activity::list(conn, group_id, before, limit.clamp(1, 200)).await?)
}

/// A rule set with everything it holds, for its page and `GET /api/v1/rule-sets/{id}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RuleSetDetail {
    #[serde(flatten)]
    pub rule_set: RuleSetRow,
    pub welcome: Option<crate::domain::automation::Welcome>,
    pub keyword_replies: Vec<crate::store::automation::KeywordRow>,
    pub entry_policy: Option<crate::domain::automation::EntryPolicy>,
    pub groups: Vec<rule_sets::AttachedGroup>,
    pub tags: Vec<rule_sets::AttachedTag>,
}

/// Every principal reads rule sets (they are shared); scoped principals see only their own
/// groups among the attachments.
pub async fn detail(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<RuleSetDetail> {
    use crate::store::automation as auto;
    let rule_set = rule_sets::get(conn, id).await?.ok_or(AppError::NotFound)?;
    let mut groups = rule_sets::attached_groups(conn, id).await?;
    groups.retain(|g| who.sees_group(g.group_id));
    Ok(RuleSetDetail {
        welcome: auto::welcome(conn, id).await?,
        keyword_replies: auto::keywords(conn, id).await?,
        entry_policy: auto::entry(conn, id).await?,
        tags: rule_sets::attached_tags(conn, id).await?,
        groups,
        rule_set,
    })
}

/// Sets (or with None removes) the rule set's welcome.
pub async fn set_welcome(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    welcome: Option<&crate::domain::automation::Welcome>,
) -> AppResult<Done<()>> {
    require_shared_write(who)?;
    rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    crate::store::automation::set_welcome(conn, id, welcome).await?;
    rule_sets::bump(conn, id).await?;
    let d = serde_json::to_value(welcome).unwrap_or_default();
    super::record(conn, who, "rule_set.welcome", "rule_set", Some(id), d).await?;
    Ok(done(()))
}

/// Adds a keyword reply (its pattern was checked and compiled when parsed).
pub async fn add_keyword(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &crate::domain::automation::KeywordSpec,
) -> AppResult<Done<crate::store::automation::KeywordRow>> {
    require_shared_write(who)?;
    rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    let row = crate::store::automation::add_keyword(conn, id, spec).await?;
    rule_sets::bump(conn, id).await?;
    let d = serde_json::json!({"keyword_id": row.id, "match_kind": spec.match_kind, "pattern": spec.pattern});
    super::record(conn, who, "rule_set.keyword_add", "rule_set", Some(id), d).await?;
    Ok(done(row))
}

pub async fn delete_keyword(conn: &mut PgConnection, who: &Principal, id: i64, keyword_id: i64) -> AppResult<Done<()>> {
    require_shared_write(who)?;
    rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    if !crate::store::automation::delete_keyword(conn, id, keyword_id).await? {
        return Err(AppError::NotFound);
    }
    rule_sets::bump(conn, id).await?;
    let d = serde_json::json!({"keyword_id": keyword_id});
    super::record(conn, who, "rule_set.keyword_delete", "rule_set", Some(id), d).await?;
    Ok(done(()))
}

/// Sets (or with None removes) the rule set's entry policy.
pub async fn set_entry(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    policy: Option<&crate::domain::automation::EntryPolicy>,
) -> AppResult<Done<()>> {
    require_shared_write(who)?;
    rule_sets::lock(conn, id).await?.ok_or(AppError::NotFound)?;
    crate::store::automation::set_entry(conn, id, policy).await?;
    rule_sets::bump(conn, id).await?;
    let d = serde_json::to_value(policy).unwrap_or_default();
    super::record(conn, who, "rule_set.entry", "rule_set", Some(id), d).await?;
    Ok(done(()))
}
