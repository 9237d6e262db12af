//! `/api/v1/members/{id}/points`: a member's balance and ledger, and awards or deductions with
//! an idempotency key (a repeat returns the original entry; the same key with a different body
//! is a 409).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::app;
use crate::app::points::Adjusted;
use crate::domain::points::{AdjustmentRaw, IdempotencyKey, MAX_CALLER_KEY};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::points::{self, Entry};
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
    app::members::load(&mut conn, &p, id).await?;
    let balance = points::balance(&mut conn, id).await?;
    let entries = points::entries(&mut conn, id, 100).await?;
    Ok(Json(Points { member_id: id, balance, entries }))
}

/// An award (positive) or deduction (negative), at most 10 000 000 either way, the same rules as
/// the admin page's adjustment. The idempotency key comes in the `Idempotency-Key` header or the
/// body.
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
    let raw = AdjustmentRaw {
        delta: body.delta.to_string(),
        kind: body.kind.clone().unwrap_or_else(|| "api".into()),
        reference: body.reference.clone().unwrap_or_default(),
        note: body.note.clone().unwrap_or_default(),
    };
    let mut fe = raw.parse().err().unwrap_or_default();
    if key.is_empty() || key.chars().count() > MAX_CALLER_KEY {
        fe.add("idempotency_key", "error.required");
    }
    crate::domain::no_nul(&key, "idempotency_key", &mut fe);
    fe.into_result(())?;
    let adj = raw.parse().map_err(AppError::Validation)?;
    let key = IdempotencyKey::api(p.id, &key);
    let mut tx = state.db.begin().await?;
    let done = app::points::adjust(&mut tx, &p, id, &adj, &key).await?;
    match done.value.clone() {
        Adjusted::New { entry, balance } => {
            done.commit(tx, &state).await?;
            Ok((StatusCode::CREATED, Json(Applied2 { entry, balance, created: true })).into_response())
        }
        Adjusted::Replayed { entry, balance } => {
            done.commit(tx, &state).await?;
            Ok((StatusCode::OK, Json(Applied2 { entry, balance, created: false })).into_response())
        }
        Adjusted::Insufficient { balance } => {
            tracing::debug!(member = id, balance, "refused a spend below zero");
            let mut fe = FieldErrors::new();
            fe.add("delta", "error.insufficient_points");
            Err(AppError::Validation(fe))
        }
    }
}
