//! `/api/v1/tokens` (admins): API tokens — list, create (the secret is in the answer, once),
//! revoke. The same use cases as Settings → API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiAuth, ApiJson};
use crate::app;
use crate::auth::Role;
use crate::error::{AppResult, FieldErrors};
use crate::store::tokens::{self, TokenRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

/// An API token (never its secret).
#[derive(Serialize, ToSchema)]
pub struct Token {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, to recognise it by.
    pub prefix: String,
    pub role: Role,
    /// Every group (admins always).
    pub all_groups: bool,
    pub group_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for Token {
    fn from(t: TokenRow) -> Token {
        Token {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            role: t.role,
            all_groups: t.all_groups || t.role == Role::Admin,
            group_ids: t.group_ids,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<Token>,
}

/// Every API token, live ones first (admins only).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 403, body = super::ProblemDoc)))]
async fn list_tokens(State(state): State<AppState>, ApiAuth(p): ApiAuth) -> AppResult<Json<TokenList>> {
    p.require_admin()?;
    let mut conn = state.db.acquire().await?;
    let items = tokens::list(&mut conn).await?.into_iter().map(Token::from).collect();
    Ok(Json(TokenList { items }))
}

/// A token to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// 1 to 80 characters.
    pub name: String,
    pub role: Role,
    /// Every group; otherwise only `group_ids`.
    pub all_groups: Option<bool>,
    pub group_ids: Option<Vec<i64>>,
}

/// A token just created, with its secret: shown this once, never stored.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: Token,
    pub secret: String,
}

/// Create a token (admins only).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenBody,
    responses((status = 201, body = CreatedToken), (status = 403, body = super::ProblemDoc), (status = 422, body = super::ProblemDoc)))]
async fn create_token(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    ApiJson(body): ApiJson<TokenBody>,
) -> AppResult<Response> {
    p.require_admin()?;
    let mut fe = FieldErrors::new();
    let name = crate::domain::required_text(&body.name, 80, "name", &mut fe);
    fe.into_result(())?;
    let spec = app::tokens::NewTokenSpec {
        name,
        role: body.role,
        all_groups: body.all_groups.unwrap_or(false),
        groups: body.group_ids.unwrap_or_default(),
    };
    let mut tx = state.db.begin().await?;
    let created = app::tokens::create(&mut tx, &p, &spec).await?.commit(tx, &state).await?;
    let out = CreatedToken { token: created.token.into(), secret: created.secret };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Revoke a token at once (admins only).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::ProblemDoc), (status = 404, body = super::ProblemDoc)))]
async fn revoke_token(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    app::tokens::revoke(&mut tx, &p, id).await?.commit(tx, &state).await?;
    Ok(StatusCode::NO_CONTENT)
}
