//! Who is asking, and what they may do: roles, group scopes, sessions, API tokens, CSRF and
//! login throttling.

pub mod csrf;
pub mod password;
pub mod session;

use std::collections::HashSet;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::i18n::Lang;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

crate::domain::text_enum!(Role);

/// Which groups a principal may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Groups(HashSet<i64>),
}

/// What a principal is: an operator (admin pages) or an API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Operator,
    Token,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Operator => "operator",
            ActorKind::Token => "token",
        }
    }
}

/// An authenticated operator or API token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: ActorKind,
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub language: Option<Lang>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    pub fn can_write(&self) -> bool {
        self.role != Role::Viewer
    }
    pub fn sees_group(&self, group_id: i64) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Groups(ids) => ids.contains(&group_id),
        }
    }
    /// For SQL: `None` means every group, else the ids in scope (`$n::bigint[] IS NULL OR …`).
    pub fn group_filter(&self) -> Option<Vec<i64>> {
        match &self.scope {
            Scope::All => None,
            Scope::Groups(ids) => {
                let mut v: Vec<i64> = ids.iter().copied().collect();
                v.sort_unstable();
                Some(v)
            }
        }
    }
    pub fn require_write(&self) -> AppResult<()> {
        if self.can_write() {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
    pub fn require_admin(&self) -> AppResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }
    /// A group outside the scope answers 404, as if it did not exist.
    pub fn require_group(&self, group_id: i64) -> AppResult<()> {
        if self.sees_group(group_id) {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }
}

/// A random URL-safe secret of `bytes` bytes.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a high-entropy secret (API and setup tokens): lookups by hash, never by secret.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time equality for secrets.
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
