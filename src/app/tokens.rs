//! API tokens: an admin creates one (its secret shown once) and revokes it.

use sqlx::PgConnection;

use super::{record, Done};
use crate::auth::{random_token, token_hash, Principal, Role};
use crate::error::{AppError, AppResult};
use crate::store::tokens::{self, NewToken, TokenRow};

/// Prefix of every API token, so that leaked tokens are easy to recognise (secret scanners).
pub const TOKEN_PREFIX: &str = "shoal_";

/// A new token's secret: [`TOKEN_PREFIX`] and 256 random bits.
pub fn new_secret() -> String {
    format!("{TOKEN_PREFIX}{}", random_token(32))
}

/// A token to create, checked: a name of 1 to 80 characters, a role and a scope.
#[derive(Debug, Clone)]
pub struct NewTokenSpec {
    pub name: String,
    pub role: Role,
    pub all_groups: bool,
    pub groups: Vec<i64>,
}

/// A token just created: its row and its secret, which is never stored and never shown again.
/// `Debug` shows no secret.
pub struct Created {
    pub token: TokenRow,
    pub secret: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created").field("token", &self.token).field("secret", &"[redacted]").finish()
    }
}

/// Creates a token (admins only); only its SHA-256 is stored. `token.create`.
pub async fn create(conn: &mut PgConnection, who: &Principal, spec: &NewTokenSpec) -> AppResult<Done<Created>> {
    who.require_admin()?;
    let secret = new_secret();
    let created_by = super::points::operator_of(who);
    let id = tokens::create(
        conn,
        NewToken {
            name: &spec.name,
            hash: &token_hash(&secret),
            prefix: &secret[..TOKEN_PREFIX.len() + 4],
            role: spec.role,
            all_groups: spec.all_groups,
            group_ids: &spec.groups,
            created_by,
        },
    )
    .await?;
    let details = serde_json::json!({"name": spec.name, "role": spec.role, "groups": spec.groups});
    record(conn, who, "token.create", "token", Some(id), details).await?;
    let token = tokens::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(Created { token, secret }))
}

/// Revokes a token at once (admins only); 404 for one that does not exist or is revoked already.
/// `token.revoke`.
pub async fn revoke(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<()>> {
    who.require_admin()?;
    if !tokens::revoke(conn, id).await? {
        return Err(AppError::NotFound);
    }
    record(conn, who, "token.revoke", "token", Some(id), serde_json::json!({})).await?;
    Ok(Done::plain(()))
}
