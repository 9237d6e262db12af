//! Secrets Shoal makes for itself and keeps in `app_secrets`, shared by every process of an
//! installation (the scan cookie's signing key).

use sqlx::PgConnection;

/// Secret bytes; `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([redacted; {}])", self.0.len())
    }
}

/// The secret called `name`: the stored one, or `fresh` stored now when there is none (the
/// first process to ask wins; every other gets the winner's).
pub async fn get_or_create(conn: &mut PgConnection, name: &str, fresh: &[u8]) -> sqlx::Result<SecretBytes> {
    sqlx::query("INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(fresh)
        .execute(&mut *conn)
        .await?;
    let value: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM app_secrets WHERE name = $1").bind(name).fetch_one(conn).await?;
    Ok(SecretBytes(value))
}
