//! CSRF protection for every state-changing request of the admin UI: the session's token (for a
//! visitor without a session: the guest cookie's, see `web::ctx::GUEST_CSRF_COOKIE`) must come
//! back in the `_csrf` form field (urlencoded or multipart) or the `X-CSRF-Token` header.
//! Checked here once, before any handler runs, so no form can forget it.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::session::TypedSession;
use crate::error::AppError;
use crate::AppState;

pub const FIELD: &str = "_csrf";
pub const HEADER: &str = "x-csrf-token";

pub async fn guard(State(state): State<AppState>, session: Session, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    match check(&state, TypedSession(session), req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, session: TypedSession, req: Request) -> Result<Request, AppError> {
    // A session's own token; a visitor without one (login, setup) repeats its guest cookie.
    let expected = match session.existing_csrf_token().await? {
        Some(t) => t,
        None => crate::web::ctx::guest_csrf_token(req.headers()).ok_or(AppError::Csrf)?,
    };
    if let Some(h) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        return if super::secret_eq(h.as_bytes(), expected.as_bytes()) { Ok(req) } else { Err(AppError::Csrf) };
    }
    // The boundary is case-sensitive (browsers send `----WebKitFormBoundaryAbC…`): keep the raw
    // header for it and compare only the media type in lower case.
    let raw_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let content_type = raw_type.to_ascii_lowercase();
    let multipart = content_type.starts_with("multipart/form-data");
    let limit = if multipart {
        state.config.http.max_upload_bytes + crate::web::MULTIPART_OVERHEAD
    } else {
        state.config.http.max_body_bytes
    };
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit).await.map_err(|_| AppError::PayloadTooLarge)?;

    let given: Option<String> = if multipart {
        boundary(&raw_type).and_then(|b| multipart_field(&bytes, &b, FIELD))
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes).find(|(k, _)| k == FIELD).map(|(_, v)| v.into_owned())
    } else {
        None
    };
    match given {
        Some(g) if super::secret_eq(g.as_bytes(), expected.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(AppError::Csrf),
    }
}

/// The multipart boundary named in a `multipart/form-data; boundary=…` content type.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The value of the text part called `name` in a multipart body. The body is already in memory
/// (and size-checked), so this only scans it; a file part is never copied.
fn multipart_field(body: &[u8], boundary: &str, name: &str) -> Option<String> {
    let delimiter = format!("--{boundary}");
    let wanted = format!("name=\"{name}\"");
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&rest[..header_end]).ok()?;
        let content = &rest[header_end + 4..];
        let end = find(content, delimiter.as_bytes())?;
        let is_wanted = headers.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("content-disposition:") && l.split(';').any(|p| p.trim() == wanted)
        });
        if is_wanted {
            let value = content[..end].strip_suffix(b"\r\n").unwrap_or(&content[..end]);
            return String::from_utf8(value.to_vec()).ok();
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_a_multipart_body_but_not_in_a_file_named_like_it() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"_csrf\"\r\n\r\nname=\"_csrf\" fake\r\n--XyZ\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\ntok123\r\n--XyZ--\r\n";
        assert_eq!(boundary("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(multipart_field(body, "XyZ", "_csrf").as_deref(), Some("tok123"));
        assert_eq!(multipart_field(body, "XyZ", "other"), None);
    }

    #[test]
    fn the_boundary_keeps_its_case() {
        let ct = "multipart/form-data; Boundary=----WebKitFormBoundaryAbC9";
        assert_eq!(boundary(ct).as_deref(), Some("----WebKitFormBoundaryAbC9"));
        let body = b"------WebKitFormBoundaryAbC9\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\ntok\r\n------WebKitFormBoundaryAbC9--\r\n";
        assert_eq!(multipart_field(body, &boundary(ct).unwrap(), "_csrf").as_deref(), Some("tok"));
    }
}
