//! Operators, their group scopes, the first-start setup token and login-failure throttling.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::auth::{ActorKind, Principal, Role, Scope};
use crate::domain::Zone;
use crate::i18n::Lang;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub all_groups: bool,
    pub language: Option<Lang>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Ids of the groups assigned to a scoped operator.
    pub group_ids: Vec<i64>,
    /// Moves on with every password change; sessions of an older epoch are logged out.
    pub session_epoch: i32,
}

const SELECT: &str = "SELECT o.id, o.username, o.role, o.all_groups, o.language, o.disabled_at, o.created_at, o.session_epoch,
        COALESCE(ARRAY(SELECT group_id FROM operator_groups og WHERE og.operator_id = o.id ORDER BY group_id), '{}') AS group_ids
    FROM operators o";

pub async fn any_exists(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM operators)").fetch_one(conn).await
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<OperatorRow>> {
    sqlx::query_as(&format!("{SELECT} ORDER BY o.username")).fetch_all(conn).await
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<OperatorRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE o.id = $1")).bind(id).fetch_optional(conn).await
}

/// What a login attempt checks. `Debug` shows no hash.
#[derive(sqlx::FromRow)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
    pub session_epoch: i32,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("password_hash", &"[redacted]")
            .field("session_epoch", &self.session_epoch)
            .finish()
    }
}

/// The id, password hash and session epoch for a login attempt (disabled operators cannot log
/// in).
pub async fn credentials(conn: &mut PgConnection, username: &str) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as("SELECT id, password_hash, session_epoch FROM operators WHERE username = $1 AND disabled_at IS NULL")
        .bind(username)
        .fetch_optional(conn)
        .await
}

/// Usernames of the operators with these ids (ledger entries name who made them).
pub async fn names(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as("SELECT id, username FROM operators WHERE id = ANY($1)").bind(ids).fetch_all(conn).await
}

pub async fn password_hash(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM operators WHERE id = $1").bind(id).fetch_optional(conn).await
}

/// The principal behind a session, or None when the operator is gone or disabled.
pub async fn principal(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Principal>> {
    Ok(session_principal(conn, id).await?.map(|(p, _)| p))
}

/// [`principal`] with the operator's current session epoch.
pub async fn session_principal(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<(Principal, i32)>> {
    let Some(row) = get(conn, id).await? else { return Ok(None) };
    if row.disabled_at.is_some() {
        return Ok(None);
    }
    let epoch = row.session_epoch;
    Ok(Some((row.into_principal(), epoch)))
}

impl OperatorRow {
    pub fn role(&self) -> Role {
        self.role
    }
    /// Every group, by role or by setting.
    pub fn sees_all_groups(&self) -> bool {
        self.role == Role::Admin || self.all_groups
    }
    pub fn into_principal(self) -> Principal {
        let role = self.role;
        Principal {
            kind: ActorKind::Operator,
            id: self.id,
            role,
            scope: scope_of(role, self.all_groups, &self.group_ids),
            language: self.language,
            name: self.username,
        }
    }
}

pub fn scope_of(role: Role, all_groups: bool, group_ids: &[i64]) -> Scope {
    if role == Role::Admin || all_groups {
        Scope::All
    } else {
        Scope::Groups(group_ids.iter().copied().collect::<HashSet<i64>>())
    }
}

pub struct NewOperator<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub all_groups: bool,
    pub group_ids: &'a [i64],
    pub language: Option<Lang>,
}

impl std::fmt::Debug for NewOperator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOperator")
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("role", &self.role)
            .field("all_groups", &self.all_groups)
            .field("group_ids", &self.group_ids)
            .field("language", &self.language)
            .finish()
    }
}

pub async fn create(conn: &mut PgConnection, op: NewOperator<'_>) -> sqlx::Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO operators (username, password_hash, role, all_groups, language)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(op.username)
    .bind(op.password_hash)
    .bind(op.role)
    .bind(op.all_groups || op.role == Role::Admin)
    .bind(op.language)
    .fetch_one(&mut *conn)
    .await?;
    set_groups(conn, id, op.group_ids).await?;
    Ok(id)
}

pub async fn set_groups(conn: &mut PgConnection, id: i64, group_ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM operator_groups WHERE operator_id = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO operator_groups (operator_id, group_id)
         SELECT $1, g.id FROM groups g WHERE g.id = ANY($2) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(group_ids)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_access(
    conn: &mut PgConnection,
    id: i64,
    role: Role,
    all_groups: bool,
    group_ids: &[i64],
) -> sqlx::Result<()> {
    sqlx::query("UPDATE operators SET role = $2, all_groups = $3, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(role)
        .bind(all_groups || role == Role::Admin)
        .execute(&mut *conn)
        .await?;
    set_groups(conn, id, group_ids).await
}

/// Disables (or re-enables) an operator; a disabled operator's sessions stop working at once
/// because every request reloads the principal.
pub async fn set_disabled(conn: &mut PgConnection, id: i64, disabled: bool) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE operators SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at, now()) ELSE NULL END,
                updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(disabled)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn disable_by_username(conn: &mut PgConnection, username: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE operators SET disabled_at = COALESCE(disabled_at, now()), updated_at = now()
         WHERE username = $1 RETURNING id",
    )
    .bind(username)
    .fetch_optional(conn)
    .await
}

/// Active admins other than `except` (an admin cannot remove the last admin).
pub async fn other_active_admins(conn: &mut PgConnection, except: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM operators WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1")
        .bind(except)
        .fetch_one(conn)
        .await
}

/// Sets a new password and moves the session epoch on, which ends every session logged in
/// under the old one; returns the new epoch.
pub async fn set_password(conn: &mut PgConnection, id: i64, hash: &str) -> sqlx::Result<i32> {
    let epoch: Option<i32> = sqlx::query_scalar(
        "UPDATE operators SET password_hash = $2, session_epoch = session_epoch + 1, updated_at = now()
         WHERE id = $1 RETURNING session_epoch",
    )
    .bind(id)
    .bind(hash)
    .fetch_optional(conn)
    .await?;
    Ok(epoch.unwrap_or(0))
}

pub async fn set_language(conn: &mut PgConnection, id: i64, lang: Option<Lang>) -> sqlx::Result<()> {
    sqlx::query("UPDATE operators SET language = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(lang)
        .execute(conn)
        .await?;
    Ok(())
}

/// The operator's own display time zone, if they chose one (a stored name that is no zone is an
/// error, not a silent default).
pub async fn display_timezone(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Zone>> {
    let zone: Option<Option<Zone>> = sqlx::query_scalar("SELECT display_timezone FROM operators WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(zone.flatten())
}

/// Sets (or with None clears) the operator's display time zone.
pub async fn set_display_timezone(conn: &mut PgConnection, id: i64, zone: Option<Zone>) -> sqlx::Result<()> {
    sqlx::query("UPDATE operators SET display_timezone = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(zone)
        .execute(conn)
        .await?;
    Ok(())
}

// ---- first-start setup token ----

/// Replaces any earlier setup token with this one (only the hash is stored).
pub async fn replace_setup_token(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM setup_tokens").execute(&mut *conn).await?;
    sqlx::query("INSERT INTO setup_tokens (token_hash) VALUES ($1)").bind(hash).execute(conn).await?;
    Ok(())
}

/// True while `hash` is a live setup token and no operator exists yet.
pub async fn setup_token_valid(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM setup_tokens WHERE token_hash = $1)
            AND NOT EXISTS (SELECT 1 FROM operators)",
    )
    .bind(hash)
    .fetch_one(conn)
    .await
}

/// Consumes the token: true for exactly one caller, even when two submit at once.
pub async fn consume_setup_token(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1").bind(hash).execute(&mut *conn).await?;
    if r.rows_affected() == 1 {
        sqlx::query("DELETE FROM setup_tokens").execute(conn).await?;
        Ok(true)
    } else {
        Ok(false)
    }
}

// ---- login throttling ----

/// Attempts not (yet) followed by a success within the window, for this username or this IP,
/// whichever is larger.
pub async fn recent_failures(conn: &mut PgConnection, username: &str, ip: &str, window_secs: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT GREATEST(
            (SELECT count(*) FROM login_failures WHERE username = $1 AND at > now() - make_interval(secs => $3)),
            (SELECT count(*) FROM login_failures WHERE ip = $2 AND at > now() - make_interval(secs => $3)))",
    )
    .bind(username)
    .bind(ip)
    .bind(window_secs as f64)
    .fetch_one(conn)
    .await
}

/// Records a login attempt before its password is checked (a success clears it again with
/// [`clear_failures`]).
pub async fn record_failure(conn: &mut PgConnection, username: &str, ip: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO login_failures (username, ip) VALUES ($1, $2)")
        .bind(username)
        .bind(ip)
        .execute(&mut *conn)
        .await?;
    // Keep the table small: anything older than a day no longer matters.
    sqlx::query("DELETE FROM login_failures WHERE at < now() - interval '1 day'").execute(conn).await?;
    Ok(())
}

pub async fn clear_failures(conn: &mut PgConnection, username: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE username = $1").bind(username).execute(conn).await?;
    Ok(())
}
