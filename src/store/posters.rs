//! Poster templates and public poster links.
//!
//! Scope: a template with a group is seen by principals that see the group; a template without
//! one is shared and seen by everyone. `scope` is `Principal::group_filter()` (None: every group).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::poster::background::Background;
use crate::poster::template::{Layout, TemplateSpec};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: i64,
    pub name: String,
    pub group_id: Option<i64>,
    pub group_name: Option<String>,
    pub version: i32,
    pub layout: Json<Layout>,
    pub background_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TemplateRow {
    pub fn has_background(&self) -> bool {
        self.background_sha256.is_some()
    }
}

const SELECT: &str = "SELECT t.id, t.name, t.group_id, g.name AS group_name, t.version, t.layout,
        t.background_sha256, t.created_at, t.updated_at
    FROM poster_templates t LEFT JOIN groups g ON g.id = t.group_id";

const IN_SCOPE: &str = "($1::bigint[] IS NULL OR t.group_id IS NULL OR t.group_id = ANY($1))";

/// Templates in scope, by name.
pub async fn list(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Vec<TemplateRow>> {
    let sql = format!("{SELECT} WHERE {IN_SCOPE} ORDER BY t.name, t.id");
    sqlx::query_as(&sql).bind(scope).fetch_all(conn).await
}

/// Templates in scope after `after`, by id (the API's cursor pages).
pub async fn list_after(
    conn: &mut PgConnection,
    scope: Option<&[i64]>,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<TemplateRow>> {
    let sql = format!("{SELECT} WHERE {IN_SCOPE} AND t.id > $2 ORDER BY t.id LIMIT $3");
    sqlx::query_as(&sql).bind(scope).bind(after).bind(limit).fetch_all(conn).await
}

/// One template, if in scope.
pub async fn get(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<TemplateRow>> {
    let sql = format!("{SELECT} WHERE {IN_SCOPE} AND t.id = $2");
    sqlx::query_as(&sql).bind(scope).bind(id).fetch_optional(conn).await
}

/// One template in scope, locked for a change.
pub async fn lock(conn: &mut PgConnection, id: i64, scope: Option<&[i64]>) -> sqlx::Result<Option<TemplateRow>> {
    let sql = format!("{SELECT} WHERE {IN_SCOPE} AND t.id = $2 FOR UPDATE OF t");
    sqlx::query_as(&sql).bind(scope).bind(id).fetch_optional(conn).await
}

/// The stored background image (bytes, content type) of a template.
pub async fn background(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<(Vec<u8>, String)>> {
    sqlx::query_as("SELECT background, background_type FROM poster_templates WHERE id = $1 AND background IS NOT NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The current version of a template and its background image bytes (for drawing its static
/// layer); `(None, None)` when the template is gone.
pub async fn background_of_version(conn: &mut PgConnection, id: i64) -> sqlx::Result<(Option<i32>, Option<Vec<u8>>)> {
    let row: Option<(i32, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT version, background FROM poster_templates WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(v, b)| (Some(v), b)).unwrap_or((None, None)))
}

pub async fn insert(conn: &mut PgConnection, spec: &TemplateSpec, bg: Option<&Background>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO poster_templates (name, group_id, layout, background, background_type, background_sha256)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&spec.name)
    .bind(spec.group_id)
    .bind(Json(&spec.layout))
    .bind(bg.map(|b| &b.bytes))
    .bind(bg.map(|b| b.content_type))
    .bind(bg.map(|b| &b.sha256))
    .fetch_one(conn)
    .await
}

/// What a change does to the background image.
pub enum BackgroundChange<'a> {
    Keep,
    Replace(&'a Background),
    Remove,
}

/// Changes a template and bumps its version; the new version.
pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    spec: &TemplateSpec,
    bg: BackgroundChange<'_>,
) -> sqlx::Result<i32> {
    let (set, new) = match bg {
        BackgroundChange::Keep => (false, None),
        BackgroundChange::Replace(b) => (true, Some(b)),
        BackgroundChange::Remove => (true, None),
    };
    sqlx::query_scalar(
        "UPDATE poster_templates SET name = $2, group_id = $3, layout = $4, version = version + 1, updated_at = now(),
            background = CASE WHEN $5 THEN $6 ELSE background END,
            background_type = CASE WHEN $5 THEN $7 ELSE background_type END,
            background_sha256 = CASE WHEN $5 THEN $8 ELSE background_sha256 END
         WHERE id = $1 RETURNING version",
    )
    .bind(id)
    .bind(&spec.name)
    .bind(spec.group_id)
    .bind(Json(&spec.layout))
    .bind(set)
    .bind(new.map(|b| &b.bytes))
    .bind(new.map(|b| b.content_type))
    .bind(new.map(|b| &b.sha256))
    .fetch_one(conn)
    .await
}

/// Deletes a template and its links.
pub async fn delete(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM poster_templates WHERE id = $1").bind(id).execute(conn).await?.rows_affected() == 1)
}

/// A public poster link as the admin pages and the API show it (never its token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub id: i64,
    pub template_id: i64,
    pub member_id: Option<i64>,
    pub name: String,
    pub qr_url: String,
    pub vars: Json<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub struct NewLink<'a> {
    pub token_hash: &'a [u8],
    pub template_id: i64,
    pub member_id: Option<i64>,
    pub name: &'a str,
    pub qr_url: &'a str,
    pub vars: &'a BTreeMap<String, String>,
}

pub async fn insert_link(conn: &mut PgConnection, l: &NewLink<'_>) -> sqlx::Result<LinkRow> {
    sqlx::query_as(
        "INSERT INTO poster_links (token_hash, template_id, member_id, name, qr_url, vars)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, template_id, member_id, name, qr_url, vars, created_at, revoked_at",
    )
    .bind(l.token_hash)
    .bind(l.template_id)
    .bind(l.member_id)
    .bind(l.name)
    .bind(l.qr_url)
    .bind(Json(l.vars))
    .fetch_one(conn)
    .await
}

/// A template's links, newest first (at most `limit`).
pub async fn links(conn: &mut PgConnection, template_id: i64, limit: i64) -> sqlx::Result<Vec<LinkRow>> {
    sqlx::query_as(
        "SELECT id, template_id, member_id, name, qr_url, vars, created_at, revoked_at
         FROM poster_links WHERE template_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(template_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn link(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<LinkRow>> {
    sqlx::query_as(
        "SELECT id, template_id, member_id, name, qr_url, vars, created_at, revoked_at FROM poster_links WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Revokes a link; false when it was revoked already.
pub async fn revoke_link(conn: &mut PgConnection, id: i64) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE poster_links SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// What `/p/{token}` draws: a live link with its template's current version and layout, and the
/// member's current name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PublicLink {
    pub id: i64,
    pub template_id: i64,
    pub version: i32,
    pub layout: Json<Layout>,
    pub name: String,
    pub qr_url: String,
    pub vars: Json<BTreeMap<String, String>>,
}

pub async fn public_link(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<PublicLink>> {
    sqlx::query_as(
        "SELECT l.id, l.template_id, t.version, t.layout, COALESCE(m.display_name, l.name) AS name, l.qr_url, l.vars
         FROM poster_links l
         JOIN poster_templates t ON t.id = l.template_id
         LEFT JOIN members m ON m.id = l.member_id
         WHERE l.token_hash = $1 AND l.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}
