//! Rule sets and their attachments to groups and tags; a group's effective rule set. Every write
//! here fires `NOTIFY shoal_rule_sets` (a statement trigger), which empties every process's
//! `automation::RuleSetCache`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::rule_set::{Attachment, RuleSetSpec, Source};

#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct RuleSetRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// Bumped by every change to the rule set or to its rules.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "rs.id, rs.name, rs.description, rs.version, rs.created_at, rs.updated_at";

/// A rule set in the list: how many groups and tags it is attached to.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct RuleSetSummary {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub rule_set: RuleSetRow,
    pub groups: i64,
    pub tags: i64,
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<RuleSetSummary>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS},
                (SELECT count(*) FROM rule_set_groups a WHERE a.rule_set_id = rs.id) AS groups,
                (SELECT count(*) FROM rule_set_tags t WHERE t.rule_set_id = rs.id) AS tags
         FROM rule_sets rs ORDER BY lower(rs.name), rs.id LIMIT 1000"
    ))
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<RuleSetRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM rule_sets rs WHERE rs.id = $1")).bind(id).fetch_optional(conn).await
}

/// Locks the rule set's row for this transaction (writes to its rules bump its version).
pub async fn lock(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<RuleSetRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM rule_sets rs WHERE rs.id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Unique violation `rule_sets_name_key` when the name is taken (case-insensitive).
pub async fn create(conn: &mut PgConnection, spec: &RuleSetSpec) -> sqlx::Result<RuleSetRow> {
    sqlx::query_as(&format!("INSERT INTO rule_sets AS rs (name, description) VALUES ($1, $2) RETURNING {COLUMNS}"))
        .bind(&spec.name)
        .bind(&spec.description)
        .fetch_one(conn)
        .await
}

pub async fn update(conn: &mut PgConnection, id: i64, spec: &RuleSetSpec) -> sqlx::Result<Option<RuleSetRow>> {
    sqlx::query_as(&format!(
        "UPDATE rule_sets rs SET name = $2, description = $3, version = version + 1, updated_at = now()
         WHERE rs.id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&spec.name)
    .bind(&spec.description)
    .fetch_optional(conn)
    .await
}

/// Marks a change to something hanging off the rule set (its welcome, keyword replies, entry
/// policy, moderation rules): a new version, and the caches are told.
pub async fn bump(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE rule_sets SET version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes the rule set with its attachments (and whatever references it with a cascade).
pub async fn delete(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM rule_sets WHERE id = $1").bind(id).execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// Attaches the rule set; a group's or tag's previous attachment is replaced.
pub async fn attach(conn: &mut PgConnection, rule_set_id: i64, to: &Attachment) -> sqlx::Result<()> {
    match to {
        Attachment::Group { group_id } => {
            sqlx::query(
                "INSERT INTO rule_set_groups (group_id, rule_set_id) VALUES ($1, $2)
                 ON CONFLICT (group_id) DO UPDATE SET rule_set_id = EXCLUDED.rule_set_id, attached_at = now()",
            )
            .bind(group_id)
            .bind(rule_set_id)
            .execute(conn)
            .await?;
        }
        Attachment::Tag { tag, priority } => {
            sqlx::query(
                "INSERT INTO rule_set_tags (tag, rule_set_id, priority) VALUES ($1, $2, $3)
                 ON CONFLICT (tag) DO UPDATE SET rule_set_id = EXCLUDED.rule_set_id, priority = EXCLUDED.priority,
                                                 attached_at = now()",
            )
            .bind(tag)
            .bind(rule_set_id)
            .bind(priority)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Removes the attachment if it is this rule set's; whether there was one.
pub async fn detach(conn: &mut PgConnection, rule_set_id: i64, from: &Attachment) -> sqlx::Result<bool> {
    let r = match from {
        Attachment::Group { group_id } => {
            sqlx::query("DELETE FROM rule_set_groups WHERE group_id = $1 AND rule_set_id = $2")
                .bind(group_id)
                .bind(rule_set_id)
                .execute(conn)
                .await?
        }
        Attachment::Tag { tag, .. } => {
            sqlx::query("DELETE FROM rule_set_tags WHERE tag = $1 AND rule_set_id = $2")
                .bind(tag)
                .bind(rule_set_id)
                .execute(conn)
                .await?
        }
    };
    Ok(r.rows_affected() == 1)
}

/// A group attached to a rule set.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AttachedGroup {
    pub group_id: i64,
    pub name: String,
}

/// A tag attached to a rule set.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AttachedTag {
    pub tag: String,
    pub priority: i32,
}

pub async fn attached_groups(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Vec<AttachedGroup>> {
    sqlx::query_as(
        "SELECT g.id AS group_id, g.name FROM rule_set_groups a JOIN groups g ON g.id = a.group_id
         WHERE a.rule_set_id = $1 ORDER BY g.name, g.id",
    )
    .bind(rule_set_id)
    .fetch_all(conn)
    .await
}

pub async fn attached_tags(conn: &mut PgConnection, rule_set_id: i64) -> sqlx::Result<Vec<AttachedTag>> {
    sqlx::query_as("SELECT tag, priority FROM rule_set_tags WHERE rule_set_id = $1 ORDER BY priority DESC, tag")
        .bind(rule_set_id)
        .fetch_all(conn)
        .await
}

/// A group's effective rule set and whence it comes.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Effective {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub rule_set: RuleSetRow,
    pub source: Source,
    /// The tag it comes through (`source` = tag).
    pub tag: Option<String>,
}

/// The rule set that applies to the group: its own, else its tags' by priority, then tag order
/// (`domain::rule_set::pick`).
pub async fn effective(conn: &mut PgConnection, group_id: i64) -> sqlx::Result<Option<Effective>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS}, c.source, c.tag FROM (
             SELECT a.rule_set_id, 'group'::text AS source, NULL::text AS tag, 0 AS rank, 0 AS priority
             FROM rule_set_groups a WHERE a.group_id = $1
             UNION ALL
             SELECT t.rule_set_id, 'tag', t.tag, 1, t.priority
             FROM groups g JOIN rule_set_tags t ON t.tag = ANY (g.tags) WHERE g.id = $1
         ) c JOIN rule_sets rs ON rs.id = c.rule_set_id
         ORDER BY c.rank, c.priority DESC, c.tag LIMIT 1"
    ))
    .bind(group_id)
    .fetch_optional(conn)
    .await
}

/// The groups a rule set is in effect for (its own groups, and tagged groups without a rule
/// set of their own nor a tag that outranks it), up to `limit`.
pub async fn effective_groups(
    conn: &mut PgConnection,
    rule_set_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<AttachedGroup>> {
    sqlx::query_as(
        "SELECT g.id AS group_id, g.name FROM groups g
         WHERE (SELECT c.rule_set_id FROM (
                    SELECT a.rule_set_id, 0 AS rank, 0 AS priority, NULL::text AS tag
                    FROM rule_set_groups a WHERE a.group_id = g.id
                    UNION ALL
                    SELECT t.rule_set_id, 1, t.priority, t.tag FROM rule_set_tags t WHERE t.tag = ANY (g.tags)
                ) c ORDER BY c.rank, c.priority DESC, c.tag LIMIT 1) = $1
           AND (EXISTS (SELECT 1 FROM rule_set_groups a WHERE a.group_id = g.id AND a.rule_set_id = $1)
                OR g.tags && ARRAY(SELECT tag FROM rule_set_tags WHERE rule_set_id = $1))
         ORDER BY g.name, g.id LIMIT $2",
    )
    .bind(rule_set_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
