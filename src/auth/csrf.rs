//! CSRF protection for every state-changing request of the admin UI: the session's token must
//! come back in the `_csrf` form field (urlencoded or multipart) or the `X-CSRF-Token` header.
//! Checked here once, before any handler runs, so no form can forget it.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequest, Multipart, Request, State};
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
    let expected = session.existing_csrf_token().await?.ok_or(AppError::Csrf)?;
    if let Some(h) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        return if super::secret_eq(h.as_bytes(), expected.as_bytes()) { Ok(req) } else { Err(AppError::Csrf) };
    }
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let multipart = content_type.starts_with("multipart/form-data");
    let limit = if multipart {
        state.config.http.max_upload_bytes + crate::web::MULTIPART_OVERHEAD
    } else {
        state.config.http.max_body_bytes
    };
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, limit).await.map_err(|_| AppError::PayloadTooLarge)?;

    let given: Option<String> = if multipart {
        let probe = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
        let mut mp = Multipart::from_request(probe, &()).await.map_err(|_| AppError::Csrf)?;
        let mut found = None;
        while let Ok(Some(field)) = mp.next_field().await {
            if field.name() == Some(FIELD) {
                found = field.text().await.ok();
                break;
            }
        }
        found
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
