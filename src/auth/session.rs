//! Typed access to the session: the logged-in operator, the CSRF token, flash messages.

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::error::{AppError, AppResult};

const OPERATOR_ID: &str = "operator_id";
/// The operator's `session_epoch` at login; a session from an older epoch is logged out.
const EPOCH: &str = "epoch";
const CSRF: &str = "csrf";
const FLASH: &str = "flash";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    /// "success" or "error".
    pub kind: String,
    /// An i18n key.
    pub key: String,
}

pub struct TypedSession(pub Session);

fn internal(e: tower_sessions::session::Error) -> AppError {
    AppError::Other(anyhow::anyhow!("session store: {e}"))
}

impl TypedSession {
    pub async fn operator_id(&self) -> AppResult<Option<i64>> {
        self.0.get(OPERATOR_ID).await.map_err(internal)
    }

    /// Logs in: a new session id (defeats fixation), the operator id, the operator's session
    /// epoch and a fresh CSRF token.
    pub async fn log_in(&self, operator_id: i64, epoch: i32) -> AppResult<()> {
        self.0.cycle_id().await.map_err(internal)?;
        self.0.insert(OPERATOR_ID, operator_id).await.map_err(internal)?;
        self.0.insert(EPOCH, epoch).await.map_err(internal)?;
        self.0.insert(CSRF, super::random_token(32)).await.map_err(internal)?;
        Ok(())
    }

    /// The session epoch this session was logged in under (0 for sessions from before epochs).
    pub async fn epoch(&self) -> AppResult<i32> {
        Ok(self.0.get(EPOCH).await.map_err(internal)?.unwrap_or(0))
    }

    /// Keeps this session after its own password change moved the epoch on: a new id, the new
    /// epoch.
    pub async fn renew(&self, epoch: i32) -> AppResult<()> {
        self.0.cycle_id().await.map_err(internal)?;
        self.0.insert(EPOCH, epoch).await.map_err(internal)
    }

    pub async fn log_out(&self) -> AppResult<()> {
        self.0.flush().await.map_err(internal)
    }

    /// The session's CSRF token, created on first use.
    pub async fn csrf_token(&self) -> AppResult<String> {
        if let Some(t) = self.0.get::<String>(CSRF).await.map_err(internal)? {
            return Ok(t);
        }
        let t = super::random_token(32);
        self.0.insert(CSRF, t.clone()).await.map_err(internal)?;
        Ok(t)
    }

    pub async fn existing_csrf_token(&self) -> AppResult<Option<String>> {
        self.0.get::<String>(CSRF).await.map_err(internal)
    }

    pub async fn flash(&self, kind: &str, key: &str) -> AppResult<()> {
        let mut list: Vec<Flash> = self.0.get(FLASH).await.map_err(internal)?.unwrap_or_default();
        list.push(Flash { kind: kind.into(), key: key.into() });
        self.0.insert(FLASH, list).await.map_err(internal)
    }

    pub async fn take_flashes(&self) -> AppResult<Vec<Flash>> {
        Ok(self.0.remove::<Vec<Flash>>(FLASH).await.map_err(internal)?.unwrap_or_default())
    }
}
