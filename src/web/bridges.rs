//! Bridge pages (admins only): the list, a new bridge whose generated secret is shown once with
//! the webhook URL and setup steps, secret rotation (shown once again), and a status page with
//! counts, recent deliveries, this process's rejections and the chats no group claims yet, each
//! of which can be linked to a group or become one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sqlx::PgConnection;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::bridges::Rejection;
use crate::domain::bridge::Kind;
use crate::domain::group::valid_http_url;
use crate::domain::{optional_text, required_text, Platform};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::audit::{self, Actor};
use crate::store::bridges::{self as store_bridges, BridgeView, ChatRow, EventRow, KindCount, ListRow, NewBridge};
use crate::AppState;

/// Deliveries listed on the status page.
const RECENT_EVENTS: i64 = 50;
/// Unlinked chats listed on the status page.
const MAX_CHATS: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bridges", get(list))
        .route("/bridges/new", get(new_form).post(create))
        .route("/bridges/{id}", get(detail))
        .route("/bridges/{id}/edit", get(edit_form).post(update))
        .route("/bridges/{id}/rotate", post(rotate))
        .route("/bridges/{id}/chats/link", post(link_chat))
        .route("/bridges/{id}/chats/create-group", post(create_group))
}

pub const KINDS: [Kind; 3] = Kind::ALL;

/// The platform a bridge of `kind` reports unless the operator says otherwise.
fn default_platform(kind: Kind) -> Option<Platform> {
    kind.protocol().default_platform()
}

/// Where a bridge delivers its events.
fn webhook_url(state: &AppState, kind: &str, id: i64) -> String {
    format!("{}/hooks/{kind}/{id}", state.config.public_base())
}

async fn view(conn: &mut PgConnection, id: i64) -> AppResult<BridgeView> {
    store_bridges::view(conn, id).await?.ok_or(AppError::NotFound)
}

// ---------------------------------------------------------------- list

#[derive(Template)]
#[template(path = "bridges/list.html")]
struct ListPage {
    l: Layout,
    rows: Vec<ListRow>,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let rows = store_bridges::list(&mut conn).await?;
    drop(conn);
    let page = ListPage { l: ctx.layout("bridges.title", "bridges").await?, rows };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- create

/// The new-bridge form as typed.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct BridgeRaw {
    kind: String,
    name: String,
    platform: String,
    api_base_url: String,
    access_token: String,
    /// Editing only: remove the stored access token (a blank token field keeps it).
    clear_access_token: Option<String>,
}

#[derive(Debug, PartialEq)]
struct BridgeSpec {
    kind: Kind,
    name: String,
    platform: Platform,
    api_base_url: Option<String>,
    access_token: Option<String>,
}

impl BridgeRaw {
    fn parse(&self) -> Result<BridgeSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let kind = Kind::parse(self.kind.trim());
        if kind.is_none() {
            e.add("kind", "error.choice");
        }
        let name = required_text(&self.name, 120, "name", &mut e);
        let platform = match self.platform.trim() {
            "" => match kind.map(default_platform) {
                Some(Some(p)) => Some(p),
                // A generic bridge can report any platform: the operator says which.
                Some(None) => {
                    e.add("platform", "bridges.error.platform_required");
                    None
                }
                None => None,
            },
            p => {
                let p = Platform::parse(p);
                if p.is_none() {
                    e.add("platform", "error.choice");
                }
                p
            }
        };
        let url = optional_text(&self.api_base_url, 500, "api_base_url", &mut e);
        if !url.is_empty() && !valid_http_url(&url) {
            e.add("api_base_url", "error.url");
        }
        let token = optional_text(&self.access_token, 500, "access_token", &mut e);
        match (kind, platform) {
            (Some(kind), Some(platform)) if e.is_empty() => Ok(BridgeSpec {
                kind,
                name,
                platform,
                api_base_url: Some(url).filter(|u| !u.is_empty()),
                access_token: Some(token).filter(|t| !t.is_empty()),
            }),
            _ => Err(e),
        }
    }
}

#[derive(Template)]
#[template(path = "bridges/form.html")]
struct FormPage {
    l: Layout,
    /// The bridge being edited; None for a new one.
    editing: Option<BridgeView>,
    raw: BridgeRaw,
    errors: FieldErrors,
    kinds: [Kind; 3],
    platforms: [Platform; 6],
}

async fn form_page(
    ctx: &Ctx,
    editing: Option<BridgeView>,
    raw: BridgeRaw,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let l = match &editing {
        Some(b) => ctx.layout_titled(format!("{} · {}", ctx.tr.t("bridges.edit"), b.name), "bridges").await?,
        None => ctx.layout("bridges.new", "bridges").await?,
    };
    let page = FormPage { l, editing, raw, errors, kinds: KINDS, platforms: Platform::ALL };
    render(status, &page)
}

async fn new_form(ctx: Ctx) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let raw = BridgeRaw { kind: Kind::OneBot11.as_str().into(), ..BridgeRaw::default() };
    form_page(&ctx, None, raw, FieldErrors::new(), StatusCode::OK).await
}

/// The one page that shows a bridge's secret: right after it was made.
#[derive(Template)]
#[template(path = "bridges/secret.html")]
struct SecretPage {
    l: Layout,
    b: BridgeView,
    webhook: String,
    secret: String,
    rotated: bool,
}

async fn secret_page(
    state: &AppState,
    ctx: &Ctx,
    id: i64,
    secret: String,
    rotated: bool,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let b = view(&mut conn, id).await?;
    drop(conn);
    let title = if rotated { "bridges.rotated_title" } else { "bridges.created_title" };
    let page = SecretPage {
        l: ctx.layout_titled(format!("{} · {}", ctx.tr.t(title), b.name), "bridges").await?,
        webhook: webhook_url(state, &b.kind, b.id),
        b,
        secret,
        rotated,
    };
    render(status, &page)
}

async fn create(State(state): State<AppState>, ctx: Ctx, Form(raw): Form<BridgeRaw>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(errors) => return form_page(&ctx, None, raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let secret = crate::auth::random_token(24);
    let mut tx = state.db.begin().await?;
    let new = NewBridge {
        kind: spec.kind,
        platform: spec.platform.as_str(),
        name: &spec.name,
        secret: &secret,
        api_base_url: spec.api_base_url.as_deref(),
        access_token: spec.access_token.as_deref(),
    };
    let id = store_bridges::create(&mut tx, &new).await?;
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "bridge.create",
        "bridge",
        Some(id.to_string()),
        serde_json::json!({
            "kind": spec.kind.as_str(), "platform": spec.platform.as_str(), "name": spec.name,
            "api_base_url": spec.api_base_url, "access_token_set": spec.access_token.is_some(),
        }),
    )
    .await?;
    tx.commit().await?;
    secret_page(&state, &ctx, id, secret, false, StatusCode::CREATED).await
}

// ---------------------------------------------------------------- edit

async fn edit_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let b = view(&mut *state.db.acquire().await?, id).await?;
    let raw = BridgeRaw {
        kind: b.kind.clone(),
        name: b.name.clone(),
        platform: b.platform.clone(),
        api_base_url: b.api_base_url.clone().unwrap_or_default(),
        ..BridgeRaw::default()
    };
    form_page(&ctx, Some(b), raw, FieldErrors::new(), StatusCode::OK).await
}

/// Saves name, platform, API URL and access token. The kind stays: it decides the webhook URL
/// and how deliveries are signed. A blank token keeps the stored one.
async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(mut raw): Form<BridgeRaw>,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut tx = state.db.begin().await?;
    let b = view(&mut tx, id).await?;
    raw.kind = b.kind.clone();
    let spec = match raw.parse() {
        Ok(s) => s,
        Err(errors) => {
            drop(tx);
            return form_page(&ctx, Some(b), raw, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let clear = raw.clear_access_token.is_some() && spec.access_token.is_none();
    store_bridges::update(
        &mut tx,
        id,
        &spec.name,
        spec.platform.as_str(),
        spec.api_base_url.as_deref(),
        spec.access_token.as_deref(),
        clear,
    )
    .await?;
    let token = match (&spec.access_token, clear) {
        (Some(_), _) => "changed",
        (None, true) => "removed",
        (None, false) => "kept",
    };
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "bridge.update",
        "bridge",
        Some(id.to_string()),
        serde_json::json!({
            "name": spec.name, "platform": spec.platform.as_str(), "api_base_url": spec.api_base_url,
            "access_token": token,
        }),
    )
    .await?;
    tx.commit().await?;
    // The platform decides which groups the bridge's chats map to.
    state.bridges.evict(id);
    ctx.flash("success", "bridges.updated").await?;
    Ok(redirect(&format!("/bridges/{id}")))
}

async fn rotate(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    if !crate::web::confirm::given(&body) {
        let mut conn = state.db.acquire().await?;
        let b = view(&mut conn, id).await?;
        drop(conn);
        let question =
            ctx.tr.f("confirm.about", &[("name", &b.name), ("question", &ctx.tr.t("bridges.rotate_confirm"))]);
        let action = format!("/bridges/{id}/rotate");
        let cancel = format!("/bridges/{id}");
        let ask = crate::web::confirm::Ask {
            nav: "bridges",
            question,
            action: &action,
            button_key: "bridges.rotate",
            cancel: &cancel,
        };
        return crate::web::confirm::page(&ctx, ask).await;
    }
    let secret = crate::auth::random_token(24);
    let mut tx = state.db.begin().await?;
    if !store_bridges::set_secret(&mut tx, id, &secret).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "bridge.rotate_secret",
        "bridge",
        Some(id.to_string()),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    state.bridges.evict(id);
    secret_page(&state, &ctx, id, secret, true, StatusCode::OK).await
}

// ---------------------------------------------------------------- status page

#[derive(Template)]
#[template(path = "bridges/detail.html")]
struct DetailPage {
    l: Layout,
    b: BridgeView,
    webhook: String,
    counts: Vec<KindCount>,
    total_day: i64,
    total_month: i64,
    events: Vec<EventRow>,
    rejections: Vec<Rejection>,
    chats: Vec<ChatRow>,
    /// Groups a chat can be linked to: the bridge's platform, no chat id yet, not archived.
    candidates: Vec<(i64, String)>,
    /// Why no group can take a chat: none on the platform at all, or each has a chat already.
    no_candidates: String,
}

async fn detail(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let b = view(&mut conn, id).await?;
    let counts: Vec<KindCount> = store_bridges::counts(&mut conn, id).await?;
    let events: Vec<EventRow> = store_bridges::recent_events(&mut conn, id, RECENT_EVENTS).await?;
    let chats: Vec<ChatRow> = store_bridges::unlinked_chats(&mut conn, id, MAX_CHATS).await?;
    let candidates = store_bridges::link_candidates(&mut conn, &b.platform, ctx.scope().as_deref()).await?;
    let platform_groups = crate::store::groups::count_on_platform(&mut conn, &b.platform).await?;
    drop(conn);
    let no_candidates = if platform_groups == 0 {
        ctx.tr.f("bridges.no_platform_groups", &[("platform", &ctx.tr.tk("platform", &b.platform))])
    } else {
        ctx.tr.t("bridges.no_candidates").to_string()
    };
    let page = DetailPage {
        no_candidates,
        l: ctx.layout_titled(b.name.clone(), "bridges").await?,
        webhook: webhook_url(&state, &b.kind, b.id),
        total_day: counts.iter().map(|c| c.last_day).sum(),
        total_month: counts.iter().map(|c| c.last_month).sum(),
        counts,
        events,
        rejections: state.bridge_errors.list(id),
        chats,
        candidates,
        b,
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- unlinked chats

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatForm {
    chat_id: String,
    group_id: String,
}

/// Ends a chat action that changed nothing: a flash error and back to the status page.
async fn refuse(ctx: &Ctx, bridge_id: i64, key: &str) -> AppResult<Response> {
    ctx.flash("error", key).await?;
    Ok(redirect(&format!("/bridges/{bridge_id}#chats")))
}

/// The bridge's platform and the unlinked chat's title, the chat row locked; `None` when the
/// chat is no longer unlinked.
async fn lock_chat(conn: &mut PgConnection, bridge_id: i64, chat_id: &str) -> AppResult<Option<(String, String)>> {
    let (platform, title) = store_bridges::lock_chat(conn, bridge_id, chat_id).await?.ok_or(AppError::NotFound)?;
    Ok(title.map(|t| (platform, t)))
}

async fn link_chat(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ChatForm>,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let Ok(group_id) = f.group_id.trim().parse::<i64>() else {
        return refuse(&ctx, id, "bridges.error.choose_group").await;
    };
    ctx.principal.require_group(group_id)?;
    let mut tx = state.db.begin().await?;
    let Some((platform, title)) = lock_chat(&mut tx, id, &f.chat_id).await? else {
        drop(tx);
        return refuse(&ctx, id, "bridges.error.chat_gone").await;
    };
    let linked = store_bridges::link_chat(&mut tx, group_id, &platform, &f.chat_id, id).await;
    match linked {
        Ok(true) => {}
        Ok(false) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.error.group_unavailable").await;
        }
        Err(e) if store_bridges::is_chat_conflict(&e) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.error.chat_taken").await;
        }
        Err(e) => return Err(e.into()),
    }
    store_bridges::forget_chat(&mut tx, id, &f.chat_id).await?;
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "bridge.link_chat",
        "group",
        Some(group_id.to_string()),
        serde_json::json!({"bridge_id": id, "chat_id": f.chat_id, "title": title}),
    )
    .await?;
    tx.commit().await?;
    ctx.flash("success", "bridges.chat_linked").await?;
    Ok(redirect(&format!("/bridges/{id}#chats")))
}

/// A group name from a chat: its title, else its id; at most 120 characters.
fn group_name(title: &str, chat_id: &str) -> String {
    let t = title.trim();
    let name = if t.is_empty() { chat_id.trim() } else { t };
    name.chars().take(120).collect()
}

async fn create_group(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<ChatForm>,
) -> AppResult<Response> {
    ctx.principal.require_admin()?;
    let mut tx = state.db.begin().await?;
    let Some((platform, title)) = lock_chat(&mut tx, id, &f.chat_id).await? else {
        drop(tx);
        return refuse(&ctx, id, "bridges.error.chat_gone").await;
    };
    let platform = Platform::parse(&platform).unwrap_or(Platform::Other);
    let name = group_name(&title, &f.chat_id);
    let capacity = platform.default_capacity();
    let inserted =
        store_bridges::create_group_for_chat(&mut tx, &name, platform.as_str(), capacity, &f.chat_id, id).await;
    let group_id = match inserted {
        Ok(g) => g,
        Err(e) if store_bridges::is_chat_conflict(&e) => {
            drop(tx);
            return refuse(&ctx, id, "bridges.error.chat_taken").await;
        }
        Err(e) => return Err(e.into()),
    };
    super::groups::grant_group(&mut tx, &ctx.principal, group_id).await?;
    store_bridges::forget_chat(&mut tx, id, &f.chat_id).await?;
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "group.create",
        "group",
        Some(group_id.to_string()),
        serde_json::json!({
            "name": name, "platform": platform.as_str(), "capacity": capacity,
            "external_chat_id": f.chat_id, "bridge_id": id,
        }),
    )
    .await?;
    tx.commit().await?;
    ctx.flash("success", "bridges.group_created").await?;
    Ok(redirect(&format!("/groups/{group_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, platform: &str) -> BridgeRaw {
        BridgeRaw { kind: kind.into(), name: "Bot".into(), platform: platform.into(), ..BridgeRaw::default() }
    }

    #[test]
    fn the_platform_defaults_by_kind_and_generic_bridges_must_choose() {
        assert_eq!(raw("onebot11", "").parse().unwrap().platform, Platform::Qq);
        assert_eq!(raw("telegram", "").parse().unwrap().platform, Platform::Telegram);
        assert!(raw("generic", "").parse().unwrap_err().has("platform"));
        assert_eq!(raw("generic", "wechat").parse().unwrap().platform, Platform::Wechat);
        assert!(raw("icq", "qq").parse().unwrap_err().has("kind"));
        assert!(raw("generic", "myspace").parse().unwrap_err().has("platform"));
    }

    #[test]
    fn the_api_url_must_be_http_and_blank_optionals_are_none() {
        let ok = raw("onebot11", "").parse().unwrap();
        assert_eq!((ok.api_base_url, ok.access_token), (None, None));
        let bad = BridgeRaw { api_base_url: "ftp://x".into(), ..raw("onebot11", "") };
        assert!(bad.parse().unwrap_err().has("api_base_url"));
        let good = BridgeRaw { api_base_url: " http://127.0.0.1:3000 ".into(), ..raw("onebot11", "") };
        assert_eq!(good.parse().unwrap().api_base_url.as_deref(), Some("http://127.0.0.1:3000"));
        let nameless = BridgeRaw { name: "  ".into(), ..raw("telegram", "") };
        assert!(nameless.parse().unwrap_err().has("name"));
    }

    #[test]
    fn group_names_come_from_the_title_or_the_chat_id() {
        assert_eq!(group_name(" Yoga ", "1"), "Yoga");
        assert_eq!(group_name("", "-100123"), "-100123");
        assert_eq!(group_name(&"长".repeat(200), "1").chars().count(), 120);
    }
}
