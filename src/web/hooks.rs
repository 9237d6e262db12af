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
use crate::domain::bridge::{Kind, ParseError, Parsed, Timing};
use crate::error::AppError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{kind}/{bridge_id}", post(hook))
}

async fn hook(
    State(state): State<AppState>,
    Path((kind, bridge_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => BodyError::TooLarge,
        _ => BodyError::Unreadable(e.body_text()),
    });
    deliver(&state, &kind, &bridge_id, &headers, body).await
}

/// Why a webhook's body could not be read.
pub enum BodyError {
    /// Over `http.max_body_bytes`.
    TooLarge,
    Unreadable(String),
}

/// A webhook delivery to `/hooks/{kind}/{bridge_id}`, however it reached us: through the
/// router, or through the connection's own fast path (`web::fast`), which reads the body under
/// the same limit.
pub async fn deliver(
    state: &AppState,
    kind: &str,
    bridge_id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BodyError>,
) -> Response {
    let Some(kind) = Kind::parse(kind) else { return AppError::NotFound.into_response() };
    let Ok(bridge_id) = bridge_id.parse::<i64>() else { return AppError::NotFound.into_response() };
    let bridge = match state.bridges.get(&state.db, bridge_id).await {
        Ok(Some(b)) if b.kind == kind => b,
        Ok(_) => return AppError::NotFound.into_response(),
        Err(e) => return AppError::from(e).into_response(),
    };
    let protocol = kind.protocol();
    let reject = |status: u16, reason: &str, err: AppError| {
        state.bridge_errors.push(bridge.id, status, reason);
        err.into_response()
    };
    let body = match body {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return reject(413, "body over the size limit", AppError::PayloadTooLarge),
        Err(BodyError::Unreadable(m)) => return reject(400, &m, AppError::BadRequest(m.clone())),
    };
    if !protocol.verify(headers, &body, &bridge.secret, chrono::Utc::now().timestamp()) {
        return reject(401, "missing or wrong signature", AppError::Unauthorized);
    }
    let mut delivery = match protocol.parse(&body) {
        Ok(Parsed::Events(d)) => d,
        Ok(Parsed::Ignored(_)) => return StatusCode::NO_CONTENT.into_response(),
        Err(ParseError::Malformed(m)) => return reject(400, &m, AppError::BadRequest(format!("malformed JSON: {m}"))),
        Err(ParseError::Shape(m)) => return reject(422, &m.clone(), AppError::Unprocessable(m)),
    };
    let tolerance = state.config.bridges.event_time_tolerance_secs;
    let timing = delivery.settle_time(chrono::Utc::now(), tolerance);
    if timing != Timing::OnTime {
        let sent = delivery.events.iter().find_map(|e| e.sent_at).unwrap_or_default();
        if delivery.counts(timing) {
            // Late joins and leaves: recorded at their arrival.
            tracing::info!(bridge = bridge.id, sent, tolerance, "a late membership change, recorded at its arrival");
        } else {
            // Recorded, counted for nothing, no reply; the bridge's page says why.
            state.bridge_errors.push(
                bridge.id,
                204,
                &format!(
                    "event time {sent} (unix seconds) is outside the tolerance of {tolerance} s: recorded, not counted"
                ),
            );
            return match bridges::record_only(&state.db, &state.bridges, &bridge, &delivery).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => AppError::from(e).into_response(),
            };
        }
    }
    match bridges::handle(state, &bridge, &delivery).await {
        // `later` (actions the protocol cannot carry in its answer) were enqueued as outbound
        // jobs in the delivery's own transaction.
        Ok(bridges::Handled { answer: Some(answer), .. }) => (StatusCode::OK, Json(answer)).into_response(),
        Ok(bridges::Handled { answer: None, .. }) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

/// The generic bridge webhook, for the OpenAPI document (the handler is `hook`).
/// Sign as `X-Shoal-Timestamp: <unix seconds>` and
/// `X-Shoal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; requests more
/// than 5 minutes off are refused. A repeated `event_id` changes nothing and gets the same reply.
/// NUL characters are dropped from `display_name` and `text` (ids holding one are refused with
/// 422); an event whose `timestamp` is outside `bridges.event_time_tolerance_secs` is recorded
/// and answered 204, counting for nothing, except a late `join` or `leave`, recorded at its
/// arrival. A `checkin` (or a `message` starting with a check-in keyword, then a space or
/// punctuation) keeps the text after the keyword as the check-in's note. The answer holds every
/// action Shoal asks of the bot (`actions`, each tagged by `action`: `send`, `delete`, `mute`,
/// `kick`, `join_request`) and, when one is a message to the chat, its text as `reply`.
#[utoipa::path(post, path = "/hooks/generic/{bridge_id}", tag = "bridges",
    request_body = crate::bridges::generic::GenericEvent,
    params(("bridge_id" = i64, Path, description = "the bridge's id"),
        ("X-Shoal-Timestamp" = String, Header, description = "unix seconds"), ("X-Shoal-Signature" = String, Header, description = "v1=<hex HMAC-SHA256>")),
    security(()),
    responses((status = 200, description = "what to do in the chat: {\"reply\": \"…\", \"actions\": [{\"action\": \"send\", \"chat_id\": \"…\", \"text\": \"…\"}]}"), (status = 204, description = "processed, nothing to say"),
        (status = 400, body = crate::api::ProblemDoc), (status = 401, body = crate::api::ProblemDoc), (status = 413, body = crate::api::ProblemDoc),
        (status = 422, body = crate::api::ProblemDoc)))]
pub async fn generic_webhook_doc() {}
