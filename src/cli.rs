//! The command line: `serve` (the default), `migrate`, `operator …`, `token …`, `config`.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::{password, random_token, token_hash, Role};
use crate::config::Config;
use crate::db::{self, Database};
use crate::store::audit::{self, Actor};
use crate::store::{operators, tokens};
use crate::{telemetry, AppState};

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "Self-hosted group operations: groups, live codes, bridges, check-ins and points"
)]
pub struct Cli {
    /// Directory holding default.toml and the optional local.toml.
    #[arg(long, global = true, default_value = "config")]
    pub config_dir: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage operator accounts.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Time uncached poster rendering on this machine (no database needed); see bench/posters.sh.
    PosterBench {
        /// Posters to draw.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Write the benchmark's background, template (as an API body) and one poster here.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Create an operator. The password is read from stdin with --password-stdin, else generated
    /// and printed once.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "admin")]
        role: String,
        /// Give an operator or viewer access to every group.
        #[arg(long)]
        all_groups: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List operators.
    List,
    /// Disable an operator (their sessions stop working at once).
    Disable {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token with access to every group and print it once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "viewer")]
        role: String,
    },
}

pub fn main(cli: Cli) -> ExitCode {
    let config = match Config::load(&cli.config_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command, config: Config) -> anyhow::Result<()> {
    if let Command::Config = cmd {
        println!("{config:#?}");
        return Ok(());
    }
    if let Command::PosterBench { iterations, out_dir } = cmd {
        return tokio::task::spawn_blocking(move || {
            crate::poster::bench::run(&config.posters, iterations, out_dir.as_deref())
        })
        .await?;
    }
    let db = Database::open(&config).await?;
    let result = run_command(cmd, config, &db).await;
    db.close().await;
    result
}

async fn run_command(cmd: Command, config: Config, db: &Database) -> anyhow::Result<()> {
    db::migrate(&db.pool).await?;
    match cmd {
        Command::Serve => serve(config, db).await,
        Command::Migrate => {
            println!("migrations applied");
            Ok(())
        }
        Command::Operator(OperatorCmd::Create { username, role, all_groups, password_stdin }) => {
            let mut errors = crate::error::FieldErrors::new();
            let username = crate::domain::parse_username(&username, "username", &mut errors);
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("role must be admin, operator or viewer"))?;
            let (pw, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (password::generate(), true)
            };
            crate::domain::check_password(&pw, None, "password", &mut errors);
            if !errors.is_empty() {
                anyhow::bail!(
                    "invalid input: username must be 2–32 of a-z 0-9 _ . - and the password at least {} characters",
                    password::MIN_LEN
                );
            }
            let hash = password::hash(pw.clone()).await?;
            let mut tx = db.pool.begin().await?;
            let id = operators::create(
                &mut tx,
                operators::NewOperator {
                    username: &username,
                    password_hash: &hash,
                    role,
                    all_groups,
                    group_ids: &[],
                    language: None,
                },
            )
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    anyhow::anyhow!("operator {username} exists already")
                }
                _ => e.into(),
            })?;
            audit::record(
                &mut tx,
                Actor::System("cli"),
                "operator.create",
                "operator",
                Some(id.to_string()),
                serde_json::json!({"username": username, "role": role.as_str()}),
            )
            .await?;
            tx.commit().await?;
            println!("created {} operator {username} (id {id})", role.as_str());
            if generated {
                println!("password (shown once): {pw}");
            }
            Ok(())
        }
        Command::Operator(OperatorCmd::List) => {
            let mut conn = db.pool.acquire().await?;
            println!("{:<6} {:<24} {:<9} {:<10} status", "id", "username", "role", "groups");
            for o in operators::list(&mut conn).await? {
                let groups = if o.sees_all_groups() { "all".to_string() } else { o.group_ids.len().to_string() };
                let status = if o.disabled_at.is_some() { "disabled" } else { "active" };
                println!("{:<6} {:<24} {:<9} {:<10} {status}", o.id, o.username, o.role, groups);
            }
            Ok(())
        }
        Command::Operator(OperatorCmd::Disable { username }) => {
            let mut tx = db.pool.begin().await?;
            let id = operators::disable_by_username(&mut tx, &username.to_ascii_lowercase())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no operator named {username}"))?;
            audit::record(
                &mut tx,
                Actor::System("cli"),
                "operator.disable",
                "operator",
                Some(id.to_string()),
                serde_json::json!({}),
            )
            .await?;
            tx.commit().await?;
            println!("disabled {username}");
            Ok(())
        }
        Command::Token(TokenCmd::Create { name, role }) => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("role must be admin, operator or viewer"))?;
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().count() > 80 {
                anyhow::bail!("the token name must be 1 to 80 characters");
            }
            let secret = crate::web::settings::new_token_secret();
            let mut tx = db.pool.begin().await?;
            let id = tokens::create(
                &mut tx,
                tokens::NewToken {
                    name: &name,
                    hash: &token_hash(&secret),
                    prefix: &secret[..crate::web::settings::TOKEN_PREFIX.len() + 4],
                    role,
                    all_groups: true,
                    group_ids: &[],
                    created_by: None,
                },
            )
            .await?;
            audit::record(
                &mut tx,
                Actor::System("cli"),
                "token.create",
                "token",
                Some(id.to_string()),
                serde_json::json!({"name": name, "role": role.as_str()}),
            )
            .await?;
            tx.commit().await?;
            println!("{secret}");
            Ok(())
        }
        Command::Config | Command::PosterBench { .. } => Ok(()),
    }
}

async fn serve(mut config: Config, db: &Database) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("could not listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.public_url.trim().is_empty() {
        config.public_url = format!("http://{addr}");
    }
    let mut conn = db.pool.acquire().await?;
    if !operators::any_exists(&mut conn).await? {
        let token = random_token(24);
        operators::replace_setup_token(&mut conn, &token_hash(&token)).await?;
        // Printed, never logged: it is a secret for whoever started the service.
        println!("No operator exists yet. Create the first admin at: {}/setup?token={token}", config.public_base());
    }
    drop(conn);
    println!("Shoal is listening on http://{addr}");
    if std::io::stdout().is_terminal() {
        println!("Press Ctrl-C to stop.");
    }
    tracing::info!(%addr, "listening");
    let state = AppState::new(db.pool.clone(), config);
    crate::run(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped serving; closing the database");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
