//! The JSON API under `/api/v1`: bearer-token auth, problem+json errors (RFC 9457), cursor
//! pagination, and an OpenAPI 3.1 document generated from the handlers at `/api/openapi.json`.

pub mod bridge_outbound;
pub mod broadcasts;
pub mod checkin_poster;
pub mod checkins;
mod doc;
pub mod groups;
pub mod invite_links;
pub mod invites;
pub mod jobs;
pub mod live_codes;
pub mod members;
pub mod moderation;
pub mod points;
pub mod posters;
pub mod rule_sets;
pub mod tokens;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{token_hash, Principal};
use crate::error::AppError;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shoal API", description = "Groups and members of a Shoal installation. Authenticate with `Authorization: Bearer <token>` (tokens are created by admins under Settings → API tokens). Errors are `application/problem+json` (RFC 9457)."),
    paths(crate::web::hooks::generic_webhook_doc),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ProblemDoc, FieldProblemDoc, crate::bridges::generic::GenericEvent))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An RFC 9457 problem document, as every error of this API answers.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: Option<String>,
    pub errors: Option<Vec<FieldProblemDoc>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FieldProblem)]
pub struct FieldProblemDoc {
    pub field: String,
    pub messages: Vec<String>,
    /// The values the field may take, when it must be one of a fixed set.
    pub allowed: Option<Vec<String>>,
}

fn open_api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(groups::router())
        .merge(members::router())
        .merge(live_codes::router())
        .merge(points::router())
        .merge(jobs::router())
        .merge(checkins::router())
        .merge(tokens::router())
        .merge(bridge_outbound::router())
        .merge(posters::router())
        .merge(checkin_poster::router())
        .merge(broadcasts::router())
        .merge(invites::router())
        .merge(invite_links::router())
        .merge(moderation::router())
        .merge(rule_sets::router())
}

/// The OpenAPI document of every `/api` route, as served: what the annotations say, completed
/// by [`doc::refine`] with what every operation can answer and the create/patch schemas.
pub fn openapi() -> serde_json::Value {
    let mut doc = serde_json::to_value(open_api_router().into_openapi()).unwrap_or_default();
    doc::refine(&mut doc);
    doc
}

pub fn router() -> Router<AppState> {
    let (router, _) = open_api_router().split_for_parts();
    let json = openapi().to_string();
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route("/api/{*rest}", axum::routing::any(|| async { AppError::NotFound }))
        .layer(axum::middleware::from_fn(refuse_nul))
        .layer(axum::middleware::from_fn(problem_errors))
}

/// PostgreSQL cannot store or compare text holding a NUL character, so no query parameter or
/// path segment of the API may hold one: a query parameter is a 422 naming it, a path a 400.
/// (JSON bodies are checked by [`ApiJson`].)
async fn refuse_nul(req: Request, next: axum::middleware::Next) -> Response {
    if req.uri().path().contains("%00") {
        return AppError::BadRequest("the path must not contain a NUL character (%00)".into()).into_response();
    }
    if let Some(q) = req.uri().query() {
        let mut fe = crate::error::FieldErrors::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k.contains('\0') || v.contains('\0') {
                fe.add(&k.replace('\0', ""), "error.nul");
            }
        }
        if !fe.is_empty() {
            return AppError::Validation(fe).into_response();
        }
    }
    next.run(req).await
}

/// The top-level field of a JSON body that holds a NUL character (in a key or a string, at any
/// depth), if any.
fn nul_field(v: &serde_json::Value) -> Option<String> {
    fn holds_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(holds_nul),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
            _ => false,
        }
    }
    match v {
        serde_json::Value::Object(o) => {
            o.iter().find(|(k, v)| k.contains('\0') || holds_nul(v)).map(|(k, _)| k.replace('\0', ""))
        }
        other => holds_nul(other).then(|| "body".to_string()),
    }
}

/// Every error answer of the API is a problem document, also those axum gives on its own: a
/// query string or path segment that does not parse (400), a method a route lacks (405).
async fn problem_errors(req: Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if status.as_u16() < 400 || resp.extensions().get::<crate::error::ErrorMarker>().is_some() {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let detail = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.trim().is_empty());
    let slug = match status.as_u16() {
        400 => "bad-request",
        405 => "method-not-allowed",
        _ => "error",
    };
    let mut body = serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
    });
    if let Some(d) = detail {
        body["detail"] = serde_json::Value::String(d);
    }
    let mut out = (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
    if let Some(v) = allow {
        out.headers_mut().insert(header::ALLOW, v);
    }
    out
}

/// The API caller, from `Authorization: Bearer <token>`.
pub struct ApiAuth(pub Principal);

impl FromRequestParts<AppState> for ApiAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthorized)?;
        let mut conn = state.db.acquire().await?;
        // Looked up by SHA-256: the comparison happens on hashes inside an index, so the secret
        // itself is never compared byte by byte.
        let principal =
            crate::store::tokens::principal(&mut conn, &token_hash(token)).await?.ok_or(AppError::Unauthorized)?;
        Ok(ApiAuth(principal))
    }
}

/// A JSON body whose rejections are problem documents: 400 malformed, 413 too large,
/// 415 wrong content type, 422 wrong shape or a NUL character in any string (naming the field).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => {
                if let Some(field) = nul_field(&v) {
                    let mut fe = crate::error::FieldErrors::new();
                    fe.add(&field, "error.nul");
                    return Err(AppError::Validation(fe));
                }
                serde_json::from_value(v).map(ApiJson).map_err(|e| {
                    AppError::Unprocessable(format!("Failed to deserialize the JSON body into the target type: {e}"))
                })
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::UnsupportedMediaType),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(AppError::BadRequest(format!("malformed JSON: {}", e.body_text())))
            }
            Err(JsonRejection::JsonDataError(e)) => Err(AppError::Unprocessable(e.body_text())),
            Err(JsonRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge)
            }
            Err(e) => Err(AppError::BadRequest(e.body_text())),
        }
    }
}

/// Cursor pagination: `?cursor=<opaque>&limit=<1..=200>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `next_cursor` of the previous page; absent or empty: the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

impl PageParams {
    /// (id after which to continue, limit), or 400 for a bad cursor or limit.
    pub fn resolve(&self) -> Result<(i64, i64), AppError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::BadRequest("limit must be between 1 and 200".into()));
        }
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => decode_cursor(c).ok_or_else(|| AppError::BadRequest("invalid cursor".into()))?,
        };
        Ok((after, limit))
    }
}

pub fn encode_cursor(id: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    std::str::from_utf8(&bytes).ok()?.strip_prefix("id:")?.parse().ok()
}

/// The next cursor when a full page came back.
pub fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    (items.len() as i64 == limit).then(|| items.last().map(|x| encode_cursor(id(x)))).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        let p = PageParams { cursor: Some("%%%".into()), limit: None };
        assert!(p.resolve().is_err());
        let p = PageParams { cursor: None, limit: Some(500) };
        assert!(p.resolve().is_err());
        let p = PageParams { cursor: Some(String::new()), limit: None };
        assert_eq!(p.resolve().ok(), Some((0, 50)), "an empty cursor is the first page");
    }
}
