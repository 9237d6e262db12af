//! Statements about the database itself rather than Shoal's data: readiness, expired sessions,
//! the embedded cluster's database, and the statement timeout around migrations.

use sqlx::PgConnection;

/// The database answers.
pub async fn ping(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(conn).await?;
    Ok(())
}

/// Deletes sessions that have expired (the session store's table, `public.sessions`).
pub async fn delete_expired_sessions(conn: &mut PgConnection) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expiry_date < now()").execute(conn).await?.rows_affected())
}

/// Whether the cluster has a database called `name` (asked on the `postgres` database).
pub async fn database_exists(conn: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(name).fetch_one(conn).await
}

/// Creates the database `name` (the embedded cluster's, at its first start). `name` comes from
/// Shoal's configuration, never from a request; a double quote in it is refused.
pub async fn create_database(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    if name.contains('"') || name.contains('\0') {
        return Err(sqlx::Error::Protocol(format!("{name:?} cannot be a database name")));
    }
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(conn).await?;
    Ok(())
}

/// No statement timeout on this connection (migrations may build large indexes).
pub async fn lift_statement_timeout(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SET statement_timeout = 0").execute(conn).await?;
    Ok(())
}

/// The connection's configured statement timeout again.
pub async fn restore_statement_timeout(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("RESET statement_timeout").execute(conn).await?;
    Ok(())
}
