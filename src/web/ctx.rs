//! The request context of an admin page: who is logged in, in which language, their CSRF token
//! and flash messages; and the `Layout` every page template embeds.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::auth::session::{Flash, TypedSession};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, Tr};
use crate::web::zone::DisplayTz;
use crate::AppState;

pub const LANG_COOKIE: &str = "shoal_lang";
/// The CSRF token of a visitor without a session (login, setup, language switch): a random value
/// in this cookie that the form must repeat. Guest pages never write a session row.
pub const GUEST_CSRF_COOKIE: &str = "shoal_csrf";

/// The language of a request: the operator's setting, else the language cookie, else
/// `Accept-Language`, else English.
pub fn request_lang(headers: &HeaderMap, operator: Option<Lang>) -> Lang {
    operator
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)))
        .or_else(|| Lang::from_accept_language(headers))
        .unwrap_or_default()
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The client address: the socket peer, or, behind `hops` trusted proxies, the address the
/// outermost of them saw: the `hops`-th `X-Forwarded-For` entry from the right. Entries further
/// left were sent by the client and may be anything. Several headers count as one list; a
/// missing or unparseable entry falls back to the peer. `hops == 0` ignores the header.
pub fn client_addr(headers: &HeaderMap, peer: Option<SocketAddr>, hops: usize) -> Option<IpAddr> {
    if hops > 0 {
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let entry = entries.len().checked_sub(hops).and_then(|i| entries.get(i));
        if let Some(ip) = entry.and_then(|s| s.parse::<IpAddr>().ok()) {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip())
}

/// [`client_addr`] as text, "unknown" when there is none.
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, hops: usize) -> String {
    client_addr(headers, peer, hops).map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into())
}

/// What every admin page handler gets: a logged-in principal and the means to render.
pub struct Ctx {
    pub principal: Principal,
    pub session: TypedSession,
    pub tr: Tr,
    /// The zone every timestamp on the page is shown in (see `web::zone`).
    pub time: DisplayTz,
    /// Path and query of this request, for `?next=` and the language switch.
    pub path: String,
}

/// A guest page's context (login, setup): no principal.
pub struct GuestCtx {
    pub session: TypedSession,
    pub tr: Tr,
    pub time: DisplayTz,
    pub path: String,
    pub ip: String,
    /// The guest CSRF token (from its cookie, or new).
    guest_csrf: String,
    /// True when `guest_csrf` is new and its cookie must be set.
    new_guest_csrf: bool,
}

/// The guest CSRF token a request carries, if it looks like one of ours.
pub fn guest_csrf_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, GUEST_CSRF_COOKIE)
        .filter(|t| t.len() >= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

fn path_of(parts: &Parts) -> String {
    parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into())
}

async fn session_of(parts: &mut Parts, state: &AppState) -> Result<Session, Response> {
    Session::from_request_parts(parts, state).await.map_err(|e| e.into_response())
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session = TypedSession(session_of(parts, state).await?);
        let path = path_of(parts);
        let login = || super::redirect(&format!("/login?next={}", urlencoding::encode(&path)));
        let Some(id) = session.operator_id().await.map_err(IntoResponse::into_response)? else {
            return Err(login());
        };
        let mut conn = state.db.acquire().await.map_err(|e| AppError::from(e).into_response())?;
        let found = crate::store::operators::session_principal(&mut conn, id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        let epoch = session.epoch().await.map_err(IntoResponse::into_response)?;
        let Some((principal, _)) = found.filter(|(_, current)| *current == epoch) else {
            // Disabled or deleted since the login, or its password changed: end the session.
            let _ = session.log_out().await;
            return Err(login());
        };
        let tr = Tr(request_lang(&parts.headers, principal.language));
        let own_zone = crate::store::operators::display_timezone(&mut conn, id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        let time = DisplayTz::pick(own_zone, state.config.display_timezone, tr.lang());
        Ok(Ctx { principal, session, tr, time, path })
    }
}

impl FromRequestParts<AppState> for GuestCtx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session = TypedSession(session_of(parts, state).await?);
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let ip = client_ip(&parts.headers, peer, state.config.auth.forwarded_hops());
        let existing = guest_csrf_token(&parts.headers);
        let new_guest_csrf = existing.is_none();
        let guest_csrf = existing.unwrap_or_else(|| crate::auth::random_token(32));
        let tr = Tr(request_lang(&parts.headers, None));
        let time = DisplayTz::pick(None, state.config.display_timezone, tr.lang());
        Ok(GuestCtx { session, tr, time, path: path_of(parts), ip, guest_csrf, new_guest_csrf })
    }
}

/// The logged-in user as the layout shows them.
pub struct UserBox {
    pub name: String,
    pub role: &'static str,
}

/// Shared by every page: language, navigation, CSRF token, flashes.
pub struct Layout {
    pub tr: Tr,
    /// Formats every timestamp the page shows: `{{ l.time.at(x) }}`.
    pub time: DisplayTz,
    pub title: String,
    /// Which navigation entry is current ("" for none).
    pub nav: &'static str,
    pub user: Option<UserBox>,
    pub is_admin: bool,
    pub csrf: String,
    pub flashes: Vec<Flash>,
    pub path: String,
}

pub const NAV: &[(&str, &str, &str)] = &[
    ("dashboard", "/", "nav.dashboard"),
    ("groups", "/groups", "nav.groups"),
    ("members", "/members", "nav.members"),
    ("live_codes", "/live-codes", "nav.live_codes"),
    ("bridges", "/bridges", "nav.bridges"),
    ("points", "/points", "nav.points"),
    ("posters", "/posters", "nav.posters"),
    ("broadcasts", "/broadcasts", "nav.broadcasts"),
    ("campaigns", "/campaigns", "nav.campaigns"),
    ("automation", "/rule-sets", "nav.automation"),
    ("settings", "/settings", "nav.settings"),
];

impl Layout {
    pub fn other_lang(&self) -> Lang {
        match self.tr.lang() {
            Lang::En => Lang::ZhCn,
            Lang::ZhCn => Lang::En,
        }
    }
    pub fn nav_items(&self) -> Vec<(&'static str, &'static str, &'static str, bool)> {
        NAV.iter().map(|(id, href, key)| (*id, *href, self.tr.t(key), *id == self.nav)).collect()
    }
}

impl Ctx {
    /// The layout for a page titled by the i18n key `title_key`.
    pub async fn layout(&self, title_key: &str, nav: &'static str) -> AppResult<Layout> {
        self.layout_titled(self.tr.t(title_key).to_string(), nav).await
    }

    pub async fn layout_titled(&self, title: String, nav: &'static str) -> AppResult<Layout> {
        Ok(Layout {
            tr: self.tr,
            time: self.time,
            title,
            nav,
            user: Some(UserBox { name: self.principal.name.clone(), role: self.principal.role.as_str() }),
            is_admin: self.principal.is_admin(),
            csrf: self.session.csrf_token().await?,
            flashes: self.session.take_flashes().await?,
            path: self.path.clone(),
        })
    }

    pub async fn flash(&self, kind: &str, key: &str) -> AppResult<()> {
        self.session.flash(kind, key).await
    }

    pub fn scope(&self) -> Option<Vec<i64>> {
        self.principal.group_filter()
    }
}

impl GuestCtx {
    /// The layout of a guest page. Its CSRF token is the session's when there is a session, else
    /// the guest cookie's: rendering a guest page never creates a session.
    pub async fn layout(&self, title_key: &str) -> AppResult<Layout> {
        let csrf = match self.session.existing_csrf_token().await? {
            Some(t) => t,
            None => self.guest_csrf.clone(),
        };
        Ok(Layout {
            tr: self.tr,
            time: self.time,
            title: self.tr.t(title_key).to_string(),
            nav: "",
            user: None,
            is_admin: false,
            csrf,
            flashes: self.session.take_flashes().await?,
            path: self.path.clone(),
        })
    }

    /// Sets the guest CSRF cookie on a guest page when the visitor had none.
    pub fn with_guest_cookie(&self, mut resp: Response, secure: bool) -> Response {
        if self.new_guest_csrf {
            let secure = if secure { "; Secure" } else { "" };
            let c = format!("{GUEST_CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}", self.guest_csrf);
            if let Ok(v) = header::HeaderValue::from_str(&c) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        resp
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    tr: Tr,
    code: u16,
    title: &'static str,
    message: &'static str,
}

/// A page for an error status that says what happened in the reader's language and nothing more.
pub fn error_page(lang: Lang, status: StatusCode) -> Response {
    let tr = Tr(lang);
    let key = match status.as_u16() {
        401 => "error.page.401",
        403 => "error.page.403",
        404 => "error.page.404",
        408 => "error.page.408",
        413 => "error.page.413",
        422 => "error.page.422",
        429 => "error.page.429",
        400..=499 => "error.page.400",
        _ => "error.page.500",
    };
    let page = ErrorPage {
        tr,
        code: status.as_u16(),
        title: tr.t(&format!("{key}.title")),
        message: tr.t(&format!("{key}.message")),
    };
    match page.render() {
        Ok(body) => super::html(status, body),
        Err(_) => status.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_names_a_valid_one() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        // The client wrote the first entry itself; our one proxy appended the second.
        h.insert("x-forwarded-for", "198.51.100.66, 203.0.113.7".parse().unwrap());
        assert_eq!(client_ip(&h, Some(peer), 1), "203.0.113.7");
        assert_eq!(client_ip(&h, Some(peer), 2), "198.51.100.66");
        assert_eq!(client_ip(&h, Some(peer), 3), "10.0.0.9", "fewer entries than proxies: the peer");
        assert_eq!(client_ip(&h, Some(peer), 0), "10.0.0.9");
        h.insert("x-forwarded-for", "not-an-address".parse().unwrap());
        assert_eq!(client_ip(&h, Some(peer), 1), "10.0.0.9");
        h.insert("x-forwarded-for", "203.0.113.7, not-an-address".parse().unwrap());
        assert_eq!(client_ip(&h, Some(peer), 1), "10.0.0.9", "never a hop further left");
        let mut two = HeaderMap::new();
        two.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        two.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        assert_eq!(client_ip(&two, Some(peer), 1), "2.2.2.2");
        assert_eq!(client_ip(&HeaderMap::new(), None, 1), "unknown");
    }
}
