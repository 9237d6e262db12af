//! Poster templates and public poster links: create, change, delete, link, revoke; and drawing a
//! poster through the caches (`draw`), for the admin preview, the API, `/p/{token}` and, later,
//! a campaign's member posters (`member_poster`).
//!
//! Who may do what: a template with a group belongs to that group — principals that see the
//! group read it, those that may write change it; a template without a group is shared — every
//! principal reads it, only admins and principals with every group change it. Viewers only read.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::poster::background::Background;
use crate::poster::template::{LinkSpec, TemplateSpec};
use crate::poster::{FontError, Format, Layout, PosterData, PosterKey, RenderError};
use crate::store::posters::{self, BackgroundChange, LinkRow, NewLink, TemplateRow};
use crate::AppState;

/// Whether `who` may change templates of `group_id` (None: shared templates).
pub fn may_write(who: &Principal, group_id: Option<i64>) -> bool {
    who.can_write()
        && match group_id {
            None => who.is_admin() || who.group_filter().is_none(),
            Some(g) => who.sees_group(g),
        }
}

/// The group a template is put in must be one the principal may write to; a group it cannot see
/// gets the same answer as one that does not exist.
async fn check_group(conn: &mut PgConnection, who: &Principal, group_id: Option<i64>) -> AppResult<()> {
    let mut fe = FieldErrors::new();
    match group_id {
        None if !may_write(who, None) => fe.add("group_id", "posters.error.shared_needs_all_groups"),
        None => {}
        Some(g) => {
            let known = who.sees_group(g) && crate::store::groups::get(conn, g).await?.is_some();
            if !known {
                fe.add("group_id", "posters.error.unknown_group");
            }
        }
    }
    fe.into_result(())
}

fn details(spec: &TemplateSpec, bg: Option<&str>) -> serde_json::Value {
    serde_json::json!({"name": spec.name, "group_id": spec.group_id,
        "elements": spec.layout.elements.len(), "background_sha256": bg})
}

/// Creates a template; the new row.
pub async fn create(
    conn: &mut PgConnection,
    who: &Principal,
    spec: &TemplateSpec,
    bg: Option<&Background>,
) -> AppResult<TemplateRow> {
    who.require_write()?;
    check_group(conn, who, spec.group_id).await?;
    let id = posters::insert(conn, spec, bg).await?;
    let d = details(spec, bg.map(|b| b.sha256.as_str()));
    super::record(conn, who, "poster_template.create", "poster_template", Some(id), d).await?;
    posters::get(conn, id, None).await?.ok_or(AppError::NotFound)
}

/// A template in the principal's scope, locked, that the principal may change (404 out of
/// scope, 403 when it may only read it).
async fn writable(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<TemplateRow> {
    who.require_write()?;
    let row = posters::lock(conn, id, who.group_filter().as_deref()).await?.ok_or(AppError::NotFound)?;
    if !may_write(who, row.group_id) {
        return Err(AppError::Forbidden);
    }
    Ok(row)
}

/// Changes a template (its version goes up, so every cached drawing of it is stale).
pub async fn update(
    state: &AppState,
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    spec: &TemplateSpec,
    bg: BackgroundChange<'_>,
) -> AppResult<TemplateRow> {
    let before = writable(conn, who, id).await?;
    if spec.group_id != before.group_id {
        check_group(conn, who, spec.group_id).await?;
    }
    let sha = match &bg {
        BackgroundChange::Keep => before.background_sha256.clone(),
        BackgroundChange::Replace(b) => Some(b.sha256.clone()),
        BackgroundChange::Remove => None,
    };
    posters::update(conn, id, spec, bg).await?;
    let d = details(spec, sha.as_deref());
    super::record(conn, who, "poster_template.update", "poster_template", Some(id), d).await?;
    state.posters.forget_template(id);
    state.posters.links.forget(None, Some(id));
    posters::get(conn, id, None).await?.ok_or(AppError::NotFound)
}

/// Deletes a template and its links.
pub async fn delete(state: &AppState, conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<()> {
    let before = writable(conn, who, id).await?;
    posters::delete(conn, id).await?;
    let d = serde_json::json!({"name": before.name, "group_id": before.group_id});
    super::record(conn, who, "poster_template.delete", "poster_template", Some(id), d).await?;
    state.posters.forget_template(id);
    state.posters.links.forget(None, Some(id));
    Ok(())
}

/// Makes a public link to a poster of the template: the link row and its secret token (shown
/// once; only its hash is kept). With a member, the member must be in the principal's scope.
pub async fn create_link(
    conn: &mut PgConnection,
    who: &Principal,
    template_id: i64,
    spec: &LinkSpec,
) -> AppResult<(LinkRow, String)> {
    who.require_write()?;
    let scope = who.group_filter();
    posters::get(conn, template_id, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    let mut name = spec.name.clone();
    if let Some(m) = spec.member_id {
        let Some(member) = crate::store::members::get(conn, m, scope.as_deref()).await? else {
            let mut fe = FieldErrors::new();
            fe.add("member_id", "posters.error.unknown_member");
            return Err(AppError::Validation(fe));
        };
        if name.is_empty() {
            name = member.display_name;
        }
    }
    let token = crate::auth::random_token(32);
    let row = posters::insert_link(
        conn,
        &NewLink {
            token_hash: &crate::auth::token_hash(&token),
            template_id,
            member_id: spec.member_id,
            name: &name,
            qr_url: &spec.qr_url,
            vars: &spec.vars,
        },
    )
    .await?;
    let d = serde_json::json!({"template_id": template_id, "member_id": spec.member_id, "name": name});
    super::record(conn, who, "poster_link.create", "poster_link", Some(row.id), d).await?;
    Ok((row, token))
}

/// Revokes a link of a template in the principal's scope: `/p/{token}` answers 404 from now on.
pub async fn revoke_link(
    state: &AppState,
    conn: &mut PgConnection,
    who: &Principal,
    link_id: i64,
) -> AppResult<LinkRow> {
    who.require_write()?;
    let link = posters::link(conn, link_id).await?.ok_or(AppError::NotFound)?;
    posters::get(conn, link.template_id, who.group_filter().as_deref()).await?.ok_or(AppError::NotFound)?;
    if posters::revoke_link(conn, link_id).await? {
        let d = serde_json::json!({"template_id": link.template_id, "name": link.name});
        super::record(conn, who, "poster_link.revoke", "poster_link", Some(link_id), d).await?;
    }
    state.posters.links.forget(Some(link_id), None);
    posters::link(conn, link_id).await?.ok_or(AppError::NotFound)
}

/// Why a poster could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// No fonts: one sentence to show (posters only; the rest of Shoal works).
    #[error(transparent)]
    Fonts(#[from] FontError),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<RenderError> for DrawError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Fonts(f) => DrawError::Fonts(f),
            other => DrawError::App(AppError::Other(anyhow::anyhow!(other))),
        }
    }
}

impl From<sqlx::Error> for DrawError {
    fn from(e: sqlx::Error) -> Self {
        DrawError::App(e.into())
    }
}

fn joined(e: tokio::task::JoinError) -> DrawError {
    DrawError::App(AppError::Other(anyhow::anyhow!("poster drawing failed: {e}")))
}

/// A poster of a stored template version: from the cache, else drawn on the blocking pool (at
/// most `posters.renders` at once) over the template's static layer (drawn first if this
/// process has not) and kept.
pub async fn draw(
    state: &AppState,
    template_id: i64,
    version: i32,
    layout: &Arc<Layout>,
    data: PosterData,
    format: Format,
) -> Result<Bytes, DrawError> {
    let key = PosterKey::new(template_id, version, &data, format);
    if let Some(b) = state.posters.cached(&key) {
        return Ok(b);
    }
    let _permit = state.posters.permit().await;
    // Drawn by another request while this one waited?
    if let Some(b) = state.posters.cached(&key) {
        return Ok(b);
    }
    let base = match state.posters.static_layer(template_id, version) {
        Some(b) => b,
        None => {
            let mut conn = state.db.acquire().await?;
            let (stored_version, bg) = posters::background_of_version(&mut conn, template_id).await?;
            drop(conn);
            // Changed meanwhile: draw this once without keeping a layer under the wrong version.
            let keep = (stored_version == Some(version)).then_some((template_id, version));
            let (p, layout) = (state.posters.clone(), layout.clone());
            tokio::task::spawn_blocking(move || p.build_static_layer(keep, &layout, bg.as_deref()))
                .await
                .map_err(joined)??
        }
    };
    let (p, layout) = (state.posters.clone(), layout.clone());
    let bytes = tokio::task::spawn_blocking(move || p.draw(&base, &layout, &data, format)).await.map_err(joined)??;
    state.posters.remember(key, bytes.clone());
    Ok(bytes)
}

/// A poster of a layout that is not stored (the template form's preview): drawn every time.
pub async fn draw_unsaved(
    state: &AppState,
    layout: Layout,
    background: Option<Vec<u8>>,
    data: PosterData,
    format: Format,
) -> Result<Bytes, DrawError> {
    let _permit = state.posters.permit().await;
    let p = state.posters.clone();
    tokio::task::spawn_blocking(move || {
        let base = p.build_static_layer(None, &layout, background.as_deref())?;
        p.draw(&base, &layout, &data, format)
    })
    .await
    .map_err(joined)?
    .map_err(DrawError::from)
}

/// The data shown on previews: a made-up member.
pub fn sample_data(public_base: &str, lang: crate::i18n::Lang, name: Option<&str>) -> PosterData {
    let tr = crate::i18n::Tr(lang);
    let vars = BTreeMap::from([
        ("campaign".to_string(), tr.t("posters.sample.campaign").to_string()),
        ("streak".to_string(), "7".to_string()),
        ("days".to_string(), "30".to_string()),
        ("invites".to_string(), "3".to_string()),
        ("date".to_string(), chrono::Utc::now().format("%Y-%m-%d").to_string()),
    ]);
    PosterData {
        name: name.map(str::to_string).unwrap_or_else(|| tr.t("posters.sample.name").to_string()),
        avatar: None,
        qr_url: format!("{public_base}/l/sample?r=SAMPLE"),
        vars,
    }
}

/// A member's poster from a template, for callers that know the member (a campaign's
/// `/api/v1/campaigns/{id}/members/{member}/poster`, a bot command): the member's current name,
/// `qr_url` (their personal link) and the caller's placeholder values (`{campaign}`,
/// `{invites}`, …; `{date}` defaults to today in the display time zone). The template and the
/// member must be in the principal's scope (404 otherwise). `avatar` is the member's picture
/// when the caller fetched one (a slow fetch should be given up, not waited for).
#[allow(clippy::too_many_arguments)]
pub async fn member_poster(
    state: &AppState,
    who: &Principal,
    template_id: i64,
    member_id: i64,
    qr_url: String,
    mut vars: BTreeMap<String, String>,
    avatar: Option<Vec<u8>>,
    format: Format,
) -> Result<Bytes, DrawError> {
    let scope = who.group_filter();
    let mut conn = state.db.acquire().await?;
    let t = posters::get(&mut conn, template_id, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    let m = crate::store::members::get(&mut conn, member_id, scope.as_deref()).await?.ok_or(AppError::NotFound)?;
    drop(conn);
    if !vars.contains_key("date") {
        let tz: chrono_tz::Tz = state.config.display_timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
        vars.insert("date".into(), chrono::Utc::now().with_timezone(&tz).format("%Y-%m-%d").to_string());
    }
    let data = PosterData { name: m.display_name, avatar, qr_url, vars };
    draw(state, t.id, t.version, &Arc::new(t.layout.0), data, format).await
}
