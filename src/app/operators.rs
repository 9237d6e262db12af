//! Operator accounts: an admin creates and changes them; everyone changes their own password
//! and display time zone. Passwords are hashed here (Argon2id), inside the use case, so that a
//! command never carries a hash made elsewhere.

use sqlx::PgConnection;

use super::{invalid, record, Done};
use crate::auth::{password, Principal, Role};
use crate::domain::Zone;
use crate::error::{on_unique, AppError, AppResult};
use crate::store::operators::{self, NewOperator};

/// A new operator, checked (`domain::parse_username`, `domain::check_password`). `Debug` shows
/// no password.
pub struct NewAccount {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub all_groups: bool,
    pub groups: Vec<i64>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("role", &self.role)
            .field("all_groups", &self.all_groups)
            .field("groups", &self.groups)
            .finish()
    }
}

/// Creates an operator (admins only). `operator.create`.
pub async fn create(conn: &mut PgConnection, who: &Principal, a: NewAccount) -> AppResult<Done<i64>> {
    who.require_admin()?;
    let hash = password::hash(a.password).await?;
    let id = operators::create(
        conn,
        NewOperator {
            username: &a.username,
            password_hash: &hash,
            role: a.role,
            all_groups: a.all_groups,
            group_ids: &a.groups,
            language: None,
        },
    )
    .await
    .map_err(|e| on_unique(e, "operators_username_key", "username", "error.username_taken"))?;
    let details =
        serde_json::json!({"username": a.username, "role": a.role, "all_groups": a.all_groups, "groups": a.groups});
    record(conn, who, "operator.create", "operator", Some(id), details).await?;
    Ok(Done::plain(id))
}

/// An admin's change of an operator's access, with an optional new password. `Debug` shows no
/// password.
pub struct AccessChange {
    pub role: Role,
    pub all_groups: bool,
    pub groups: Vec<i64>,
    pub disabled: bool,
    /// A new password (checked), which ends the operator's sessions.
    pub password: Option<String>,
}

impl std::fmt::Debug for AccessChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessChange")
            .field("role", &self.role)
            .field("all_groups", &self.all_groups)
            .field("groups", &self.groups)
            .field("disabled", &self.disabled)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Changes an operator's role, groups and state, and resets the password when given (which ends
/// every session of theirs). The service is never left without an active admin (`role`,
/// `error.last_admin`). The acting admin's new session epoch, when they reset their own
/// password. `operator.update`.
pub async fn update(
    conn: &mut PgConnection,
    who: &Principal,
    id: i64,
    c: AccessChange,
) -> AppResult<Done<Option<i32>>> {
    who.require_admin()?;
    let op = operators::get(conn, id).await?.ok_or(AppError::NotFound)?;
    if op.role == Role::Admin
        && (c.role != Role::Admin || c.disabled)
        && operators::other_active_admins(conn, id).await? == 0
    {
        return Err(invalid("role", "error.last_admin"));
    }
    operators::update_access(conn, id, c.role, c.all_groups, &c.groups).await?;
    operators::set_disabled(conn, id, c.disabled).await?;
    let reset = c.password.is_some();
    let mut own_epoch = None;
    if let Some(pw) = c.password {
        let hash = password::hash(pw).await?;
        let epoch = operators::set_password(conn, id, &hash).await?;
        own_epoch = (id == who.id).then_some(epoch);
    }
    let details = serde_json::json!({"role": c.role, "all_groups": c.all_groups, "groups": c.groups, "disabled": c.disabled, "password_reset": reset});
    record(conn, who, "operator.update", "operator", Some(id), details).await?;
    Ok(Done::plain(own_epoch))
}

/// Changes one's own password after checking the current one (`current`,
/// `error.password_wrong`); every other session ends. The new session epoch.
/// `operator.password`.
pub async fn change_password(
    conn: &mut PgConnection,
    who: &Principal,
    current: String,
    new: String,
) -> AppResult<Done<i32>> {
    let hash = operators::password_hash(conn, who.id).await?;
    if !password::verify(hash, current).await {
        return Err(invalid("current", "error.password_wrong"));
    }
    let new_hash = password::hash(new).await?;
    let epoch = operators::set_password(conn, who.id, &new_hash).await?;
    record(conn, who, "operator.password", "operator", Some(who.id), serde_json::json!({})).await?;
    Ok(Done::plain(epoch))
}

/// Sets (or with None clears) one's own display time zone. `operator.timezone`.
pub async fn set_timezone(conn: &mut PgConnection, who: &Principal, zone: Option<Zone>) -> AppResult<Done<()>> {
    operators::set_display_timezone(conn, who.id, zone).await?;
    record(conn, who, "operator.timezone", "operator", Some(who.id), serde_json::json!({"timezone": zone})).await?;
    Ok(Done::plain(()))
}
