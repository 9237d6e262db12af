//! `/api/v1/members/{id}/points`: a member's balance and ledger, and awards or deductions with
//! an idempotency key (a repeat returns the original entry; the same key with a different body
//! is a 409).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::audit::{self, Actor};
use crate::store::points::{self, Applied, Entry, NewEntry};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_points, post_points))
}

#[derive(Serialize, ToSchema)]
pub struct Points {
    pub member_id: i64,
    pub balance: i64,
    /// The latest 100 entries, newest first.
    pub entries: Vec<Entry>,
}

/// A member's balance and latest ledger entries.
#[utoipa::path(get, path = "/api/v1/members/{id}/points", tag = "points", params(("id" = i64, Path)),
    responses((status = 200, body = Points), (status = 404, body = super::ProblemDoc)))]
async fn get_points(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<Json<Points>> {
    let mut conn = state.db.acquire().await?;
    crate::store::members::get(&mut conn, id, p.group_filter().as_deref()).await?.ok_or(AppError::NotFound)?;
    let balance = points::balance(&mut conn, id).await?;
    let entries = points::entries(&mut conn, id, 100).await?;
    Ok(Json(Points { member_id: id, balance, entries }))
}

/// An award (positive) or deduction (negative). The idempotency key comes in the
/// `Idempotency-Key` header or the body.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsBody {
    pub delta: i64,
    /// `api` (default) or `adjustment`.
    pub kind: Option<String>,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Applied2 {
    pub entry: Entry,
    pub balance: i64,
    /// False when this is the stored answer to an earlier request with the same key.
    pub created: bool,
}

/// Award or deduct points, exactly once per idempotency key.
#[utoipa::path(post, path = "/api/v1/members/{id}/points", tag = "points", params(("id" = i64, Path)), request_body = PointsBody,
    responses((status = 201, body = Applied2), (status = 200, body = Applied2, description = "a replay of an earlier request"),
        (status = 409, body = super::ProblemDoc, description = "the key was used with a different body"),
        (status = 422, body = super::ProblemDoc, description = "invalid, or the balance would go negative")))]
async fn post_points(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PointsBody>,
) -> AppResult<Response> {
    p.require_write()?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| body.idempotency_key.clone())
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let mut fe = FieldErrors::new();
    if key.is_empty() || key.len() > 200 {
        fe.add("idempotency_key", "error.required");
    }
    if body.delta == 0 || body.delta.unsigned_abs() > 1_000_000_000 {
        fe.add("delta", "error.number_range");
    }
    let kind = body.kind.as_deref().unwrap_or("api");
    if kind != "api" && kind != "adjustment" {
        fe.add_choice("kind", &["api", "adjustment"]);
    }
    crate::domain::no_nul(&key, "idempotency_key", &mut fe);
    let note = crate::domain::optional_text(body.note.as_deref().unwrap_or(""), 500, "note", &mut fe);
    let reference = crate::domain::optional_text(body.reference.as_deref().unwrap_or(""), 200, "reference", &mut fe);
    fe.into_result(())?;
    // What makes two requests "the same": everything but the key itself.
    let hash =
        hex::encode(Sha256::digest(serde_json::json!([id, body.delta, kind, reference, note]).to_string().as_bytes()));
    let mut tx = state.db.begin().await?;
    crate::store::members::get(&mut tx, id, p.group_filter().as_deref()).await?.ok_or(AppError::NotFound)?;
    let api_key = format!("api:{}:{key}", p.id);
    let applied = points::apply(
        &mut tx,
        NewEntry {
            member_id: id,
            delta: body.delta,
            kind,
            reference: &reference,
            idempotency_key: &api_key,
            request_hash: Some(&hash),
            operator_id: None,
            note: &note,
        },
    )
    .await?;
    match applied {
        Applied::New { entry, balance } => {
            audit::record(
                &mut tx,
                Actor::Principal(&p),
                "points.apply",
                "member",
                Some(id.to_string()),
                serde_json::json!({"delta": body.delta, "kind": kind, "key": key}),
            )
            .await?;
            tx.commit().await?;
            Ok((StatusCode::CREATED, Json(Applied2 { entry, balance, created: true })).into_response())
        }
        Applied::Existing(entry) => {
            if entry.member_id != id || entry.request_hash.as_deref() != Some(hash.as_str()) {
                return Err(AppError::Conflict("this idempotency key was used with a different request".into()));
            }
            let balance = points::balance(&mut tx, id).await?;
            tx.commit().await?;
            Ok((StatusCode::OK, Json(Applied2 { entry, balance, created: false })).into_response())
        }
        Applied::Insufficient { balance } => {
            let mut fe = FieldErrors::new();
            fe.add("delta", "error.insufficient_points");
            drop(tx);
            tracing::debug!(member = id, balance, "refused a spend below zero");
            Err(AppError::Validation(fe))
        }
    }
}
