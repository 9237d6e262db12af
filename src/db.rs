//! Getting a database: the configured server, or Shoal's own embedded cluster; and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::{Config, DatabaseConfig};
use crate::pg::{self, EmbeddedPostgres, StartOptions};

/// A pooled connection idle this long is pinged before it is handed out; one returned more
/// recently was tested when it came back (sqlx pings on release).
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool plus, when Shoal started one, the embedded cluster to stop at the end.
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
}

/// The pool's options: size and wait from the configuration, and how connections are tested.
pub fn pool_options(cfg: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(cfg.pool_size())
        .acquire_timeout(Duration::from_secs(cfg.acquire_timeout_secs))
        // sqlx pings every connection it hands out (a round trip) and again every one it
        // takes back. A connection back from use a moment ago needs no second test: only one
        // that sat idle is pinged before use (see `IDLE_BEFORE_PING`); a dead one is dropped
        // and another taken.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Database {
    /// Connects to `database.url`, or starts the embedded cluster when it is empty.
    pub async fn open(config: &Config) -> anyhow::Result<Database> {
        let (opts, embedded) = if config.database.url.is_empty() {
            let bin_dir = pg::find_bin_dir(&config.database.pg_bin_dir)?;
            let started = std::time::Instant::now();
            let cluster = EmbeddedPostgres::start(StartOptions {
                data_dir: config.data_dir.join("postgres"),
                bin_dir,
                remove_on_stop: None,
            })
            .await?;
            tracing::info!(
                data_dir = %cluster.data_dir().display(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "embedded PostgreSQL cluster is running"
            );
            (cluster.connect_options(pg::APP_DATABASE), Some(cluster))
        } else {
            (config.database.url.parse::<PgConnectOptions>()?, None)
        };
        let opts = session_settings(opts, &config.database);
        let pool = pool_options(&config.database).connect_with(opts).await;
        match pool {
            Ok(pool) => Ok(Database { pool, embedded }),
            Err(e) => {
                if let Some(c) = embedded {
                    let _ = c.stop().await;
                }
                Err(anyhow::anyhow!("could not connect to PostgreSQL: {e}"))
            }
        }
    }

    /// Closes the pool, then stops the embedded cluster if there is one.
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(c) = self.embedded {
            if let Err(e) = c.stop().await {
                tracing::warn!(error = %e, "stopping the embedded cluster failed");
            }
        }
    }
}

/// What every pool connection is started with, whichever server it goes to: the statement
/// timeout (`database.statement_timeout_ms`), sent in the startup packet so that no statement
/// runs before it applies.
pub fn session_settings(opts: PgConnectOptions, db: &DatabaseConfig) -> PgConnectOptions {
    opts.options([("statement_timeout", format!("{}ms", db.statement_timeout_ms))])
}

/// Applies the embedded migrations. They may build indexes over millions of rows, so they run
/// on one connection without the statement timeout, which is restored before the connection
/// goes back to the pool (or the connection is closed when that fails).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    crate::store::system::lift_statement_timeout(&mut conn).await?;
    let result = MIGRATOR.run(&mut *conn).await;
    if crate::store::system::restore_statement_timeout(&mut conn).await.is_err() {
        conn.close_on_drop();
    }
    result?;
    Ok(())
}
