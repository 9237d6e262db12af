//! Getting a database: the configured server, or Shoal's own embedded cluster; and migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::{Config, DatabaseConfig};
use crate::pg::{self, EmbeddedPostgres, StartOptions};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool plus, when Shoal started one, the embedded cluster to stop at the end.
pub struct Database {
    pub pool: PgPool,
    pub embedded: Option<EmbeddedPostgres>,
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
        let pool = PgPoolOptions::new()
            .max_connections(config.database.pool_size())
            .acquire_timeout(Duration::from_secs(config.database.acquire_timeout_secs))
            .connect_with(opts)
            .await;
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
