//! Bridge webhooks: `POST /hooks/{kind}/{bridge_id}`. The signature is checked over the raw
//! bytes before anything is parsed; a rejected delivery writes nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::bridges;
use crate::domain::bridge::{self, Kind, ParseError, Parsed};
use crate::error::AppError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{kind}/{bridge_id}", post(hook))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn hook(
    State(state): State<AppState>,
    Path((kind, bridge_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(kind) = Kind::parse(&kind) else { return AppError::NotFound.into_response() };
    let Ok(bridge_id) = bridge_id.parse::<i64>() else { return AppError::NotFound.into_response() };
    let bridge = match state.bridges.get(&state.db, bridge_id).await {
        Ok(Some(b)) if b.kind() == kind => b,
        Ok(_) => return AppError::NotFound.into_response(),
        Err(e) => return AppError::from(e).into_response(),
    };
    let reject = |status: u16, reason: &str, err: AppError| {
        state.bridge_errors.push(bridge.id, status, reason);
        err.into_response()
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reject(413, "body over the size limit", AppError::PayloadTooLarge)
        }
        Err(e) => return reject(400, &e.body_text(), AppError::BadRequest(e.body_text())),
    };
    let now = chrono::Utc::now().timestamp();
    let authentic = match kind {
        Kind::OneBot11 => bridge::verify_onebot(&bridge.secret, header(&headers, "x-signature"), &body),
        Kind::Telegram => bridge::verify_telegram(&bridge.secret, header(&headers, "x-telegram-bot-api-secret-token")),
        Kind::Generic => bridge::verify_generic(
            &bridge.secret,
            header(&headers, "x-shoal-timestamp"),
            header(&headers, "x-shoal-signature"),
            &body,
            now,
        ),
    };
    if !authentic {
        return reject(401, "missing or wrong signature", AppError::Unauthorized);
    }
    let parsed = match kind {
        Kind::OneBot11 => bridge::parse_onebot(&body),
        Kind::Telegram => bridge::parse_telegram(&body),
        Kind::Generic => bridge::parse_generic(&body),
    };
    let mut delivery = match parsed {
        Ok(Parsed::Events(d)) => d,
        Ok(Parsed::Ignored(_)) => return StatusCode::NO_CONTENT.into_response(),
        Err(ParseError::Malformed(m)) => return reject(400, &m, AppError::BadRequest(format!("malformed JSON: {m}"))),
        Err(ParseError::Shape(m)) => return reject(422, &m.clone(), AppError::Unprocessable(m)),
    };
    let tolerance = state.config.bridges.event_time_tolerance_secs;
    if !delivery.settle_time(chrono::Utc::now(), tolerance) {
        // Recorded, counted for nothing, no reply; the bridge's page says why.
        let sent = delivery.events.iter().find_map(|e| e.sent_at).unwrap_or_default();
        state.bridge_errors.push(
            bridge.id,
            204,
            &format!(
                "event time {sent} (unix seconds) is outside the tolerance of {tolerance} s: recorded, not counted"
            ),
        );
        return match bridges::record_only(&state.db, &state.bridges, &bridge, &delivery).await {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => AppError::from(e).into_response(),
        };
    }
    match bridges::handle(&state.db, &state.bridges, &bridge, &delivery).await {
        Ok(Some(reply)) => (StatusCode::OK, Json(reply)).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

/// The generic bridge webhook, for the OpenAPI document (the handler is `hook`).
/// Sign as `X-Shoal-Timestamp: <unix seconds>` and
/// `X-Shoal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; requests more
/// than 5 minutes off are refused. A repeated `event_id` changes nothing and gets the same reply.
/// NUL characters are dropped from `display_name` and `text` (ids holding one are refused with
/// 422); an event whose `timestamp` is outside `bridges.event_time_tolerance_secs` is recorded
/// and answered 204, counting for nothing.
#[utoipa::path(post, path = "/hooks/generic/{bridge_id}", tag = "bridges",
    request_body = crate::domain::bridge::GenericEvent,
    params(("bridge_id" = i64, Path, description = "the bridge's id"),
        ("X-Shoal-Timestamp" = String, Header, description = "unix seconds"), ("X-Shoal-Signature" = String, Header, description = "v1=<hex HMAC-SHA256>")),
    security(()),
    responses((status = 200, description = "a reply to post in the chat: {\"reply\": \"…\"}"), (status = 204, description = "processed, nothing to say"),
        (status = 400, body = crate::api::ProblemDoc), (status = 401, body = crate::api::ProblemDoc), (status = 413, body = crate::api::ProblemDoc),
        (status = 422, body = crate::api::ProblemDoc)))]
pub async fn generic_webhook_doc() {}
