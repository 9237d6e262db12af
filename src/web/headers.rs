//! Security headers on every answer — admin pages, public scan pages, the API, static files and
//! errors — set once here, for the router (a layer) and for the fast paths (`web::fast`).
//!
//! The policy fits what the templates do: scripts only from `/static` (the vendored htmx and
//! `press.js`), never inline; styles from `/static` plus inline `style` attributes and
//! `<style>` blocks (fill bars, charts and the scan pages' own small stylesheet), which cannot
//! run code. No page may be framed, by another origin or our own.

use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One year; sent only when `session.secure` says Shoal is reached over HTTPS.
pub const HSTS: &str = "max-age=31536000";

/// The values, validated once at compile time; a clone of a static value copies no bytes.
const CSP_VALUE: HeaderValue = HeaderValue::from_static(CSP);
const DENY: HeaderValue = HeaderValue::from_static("DENY");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const SAME_ORIGIN: HeaderValue = HeaderValue::from_static("same-origin");
const HSTS_VALUE: HeaderValue = HeaderValue::from_static(HSTS);

/// Adds the security headers a response does not set itself.
pub fn apply(headers: &mut HeaderMap, https: bool) {
    headers.reserve(5);
    let set = |h: &mut HeaderMap, name: HeaderName, value: HeaderValue| {
        h.entry(name).or_insert(value);
    };
    set(headers, CONTENT_SECURITY_POLICY, CSP_VALUE);
    set(headers, X_FRAME_OPTIONS, DENY);
    set(headers, X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    set(headers, REFERRER_POLICY, SAME_ORIGIN);
    if https {
        set(headers, STRICT_TRANSPORT_SECURITY, HSTS_VALUE);
    }
}

/// The router's layer around [`apply`].
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    apply(resp.headers_mut(), state.config.session.secure);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_added_and_hsts_only_over_https() {
        let mut h = HeaderMap::new();
        apply(&mut h, false);
        assert_eq!(h[X_FRAME_OPTIONS], "DENY");
        assert!(h[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
        assert!(h.get(STRICT_TRANSPORT_SECURITY).is_none());
        apply(&mut h, true);
        assert_eq!(h[STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
