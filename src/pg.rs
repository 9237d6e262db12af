//! The embedded PostgreSQL cluster: found on the system, initialised under the data dir, run on a
//! Unix socket only (as the `postgres` system user when Shoal runs as root), stopped with Shoal.
//!
//! The cluster is started by a small `sh` watchdog whose stdin is a pipe from this process. When
//! Shoal stops — cleanly or killed — the pipe closes, the watchdog wakes and stops the cluster, so
//! no postgres process outlives its owner.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Name of the database Shoal uses inside its own cluster.
pub const APP_DATABASE: &str = "shoal";
/// The cluster listens on no TCP port; the port only names the socket file.
const SOCKET_PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL to use an existing server.")]
    BinariesMissing,
    #[error("Shoal runs as root, so its PostgreSQL cluster must run as the `postgres` system user, which does not exist: install the postgresql package or run Shoal as a normal user.")]
    NoPostgresUser,
    #[error("could not initialise the PostgreSQL cluster in {dir}: {detail}")]
    Init { dir: PathBuf, detail: String },
    #[error("could not start the PostgreSQL cluster in {dir}: {detail}")]
    Start { dir: PathBuf, detail: String },
    #[error("I/O error around the PostgreSQL cluster: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the server binaries live: the configured dir, else PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir(configured: &str) -> Result<PathBuf, PgError> {
    let has_all = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if !configured.is_empty() {
        let dir = PathBuf::from(configured);
        return if has_all(&dir) { Ok(dir) } else { Err(PgError::BinariesMissing) };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or(PgError::BinariesMissing)
}

/// The uid/gid the cluster must run as: `postgres` when we are root, else ourselves (None).
fn postgres_user() -> Result<Option<(u32, u32)>, PgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam reads a static buffer; we copy the two integers out at once and do not
    // call it concurrently from elsewhere in this process.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(PgError::NoPostgresUser);
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A running cluster owned by this process.
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    /// None when another Shoal process owns the running cluster and this one only attached.
    watchdog: Option<Child>,
    stdin: Option<ChildStdin>,
}

#[derive(Debug, Clone)]
pub struct StartOptions {
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Remove this directory after the cluster has stopped (throwaway test clusters).
    pub remove_on_stop: Option<PathBuf>,
}

impl EmbeddedPostgres {
    /// Initialises the cluster if `data_dir` holds none, starts it and creates the app database.
    pub async fn start(opts: StartOptions) -> Result<EmbeddedPostgres, PgError> {
        let user = postgres_user()?;
        let data_dir = absolute(&opts.data_dir)?;
        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&opts.bin_dir, &data_dir, user).await?;
        } else if data_dir.join("postmaster.pid").exists() {
            // Another Shoal process (say `shoal serve` while this is `shoal operator create`)
            // runs the cluster: use it, and leave stopping it to its owner.
            let attached = EmbeddedPostgres { data_dir: data_dir.clone(), watchdog: None, stdin: None };
            if attached.ensure_database(APP_DATABASE).await.is_ok() {
                return Ok(attached);
            }
        }

        let script = r#"
trap '' INT TERM HUP
pgctl() { if [ -n "$AS_POSTGRES" ]; then runuser -u postgres -- "$BIN/pg_ctl" "$@"; else "$BIN/pg_ctl" "$@"; fi; }
if ! pgctl -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 -o "-c listen_addresses='' -k '$PGDATA' -p $PGPORT_SOCKET" start >/dev/null 2>&1; then
  echo failed; exit 1
fi
echo ready
cat >/dev/null
pgctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1
if [ -n "$RMDIR" ]; then rm -rf "$RMDIR"; fi
echo stopped
"#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .env("BIN", &opts.bin_dir)
            .env("PGDATA", &data_dir)
            .env("PGPORT_SOCKET", SOCKET_PORT.to_string())
            .env("AS_POSTGRES", if user.is_some() { "1" } else { "" })
            .env("RMDIR", opts.remove_on_stop.as_deref().unwrap_or(Path::new("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Own process group: a Ctrl-C on the terminal must not kill the watchdog before it
            // has stopped the cluster.
            .process_group(0)
            .kill_on_drop(false);
        let mut watchdog = cmd.spawn()?;
        let stdin = watchdog.stdin.take();
        let stdout = watchdog.stdout.take().ok_or_else(|| start_err(&data_dir, "no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await? {
            Some(line) if line == "ready" => {}
            _ => {
                let _ = watchdog.wait().await;
                return Err(start_err(&data_dir, &log_tail(&data_dir).await));
            }
        }
        // Keep draining stdout in the background so the final "stopped" cannot block on a full pipe.
        watchdog.stdout = None;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let pg = EmbeddedPostgres { data_dir, watchdog: Some(watchdog), stdin };
        pg.ensure_database(APP_DATABASE).await?;
        Ok(pg)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Connection options for `database` over the cluster's Unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.data_dir).port(SOCKET_PORT).username("postgres").database(database)
    }

    /// The same as a URL, for child processes and `DATABASE_URL`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{SOCKET_PORT}/{database}?host={}",
            urlencoding::encode(&self.data_dir.to_string_lossy())
        )
    }

    async fn ensure_database(&self, name: &str) -> Result<(), PgError> {
        use sqlx::{ConnectOptions, Connection};
        let mut conn =
            self.connect_options("postgres").connect().await.map_err(|e| start_err(&self.data_dir, &e.to_string()))?;
        let exists = crate::store::system::database_exists(&mut conn, name)
            .await
            .map_err(|e| start_err(&self.data_dir, &e.to_string()))?;
        if !exists {
            crate::store::system::create_database(&mut conn, name)
                .await
                .map_err(|e| start_err(&self.data_dir, &e.to_string()))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Stops the cluster (fast shutdown) and waits for it.
    pub async fn stop(mut self) -> Result<(), PgError> {
        drop(self.stdin.take());
        if let Some(mut w) = self.watchdog.take() {
            w.wait().await?;
        }
        Ok(())
    }

    /// Whether this process started (and will stop) the cluster.
    pub fn is_owner(&self) -> bool {
        self.watchdog.is_some()
    }
}

async fn init_cluster(bin: &Path, data_dir: &Path, user: Option<(u32, u32)>) -> Result<(), PgError> {
    std::fs::create_dir_all(data_dir)?;
    let mut cmd = match user {
        Some((uid, gid)) => {
            std::os::unix::fs::chown(data_dir, Some(uid), Some(gid))?;
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join("initdb"));
            c
        }
        None => Command::new(bin.join("initdb")),
    };
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        .stdin(Stdio::null());
    let out = cmd.output().await?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.contains("Permission denied") && user.is_some() {
            detail.push_str(" (the `postgres` user must be able to reach this directory: choose a data dir outside root-only directories)");
        }
        return Err(PgError::Init { dir: data_dir.to_path_buf(), detail });
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, PgError> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

fn start_err(dir: &Path, detail: &str) -> PgError {
    PgError::Start { dir: dir.to_path_buf(), detail: detail.to_string() }
}

async fn log_tail(dir: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = tokio::fs::File::open(dir.join("server.log")).await {
        let _ = f.read_to_string(&mut s).await;
    }
    let lines: Vec<&str> = s.lines().rev().take(5).collect();
    if lines.is_empty() {
        "pg_ctl failed before writing a log (is another cluster running on this data dir?)".into()
    } else {
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}
