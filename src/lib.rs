//! Shoal: a self-hosted group-operations service. `main.rs` only parses the command line; this
//! library holds everything else so that tests can start the real application on port 0.

pub mod alerts;
pub mod api;
pub mod app;
pub mod automation;

pub mod auth;
pub mod bridges;
pub mod broadcasts;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod i18n;
pub mod jobs;
pub mod moderation;
pub mod outbound;
pub mod pg;
pub mod poster;
pub mod scan;
pub mod store;
pub mod telemetry;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;

/// Everything a request handler may need, cloned cheaply into every request.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub scan: Arc<scan::ScanRuntime>,
    pub bridge_errors: Arc<bridges::RecentErrors>,
    pub bridges: Arc<bridges::BridgeCache>,
    /// Outbound HTTP under the `[outbound]` policy.
    pub http: reqwest::Client,
    /// Bridges' bot APIs (`outbound::Bots`): their client and cached settings.
    pub bots: Arc<outbound::Bots>,
    /// Poster fonts, static layers and finished posters of this process.
    pub posters: Arc<poster::Posters>,
    /// Members' own pages (`/m/{token}`): link signing and the per-address view limit.
    pub member_pages: Arc<app::member_page::MemberPages>,
    /// Members' pictures for posters, fetched through the platforms and kept a while.
    pub avatars: Arc<app::avatars::Avatars>,
    /// Effective rule sets per group, cached (`automation`).
    pub automation: Arc<automation::Automation>,
    /// Moderation's compiled rule sets and flood counts of this process.
    pub moderation: Arc<moderation::Moderator>,
    /// Plain group messages waiting to be written in a batch (`bridges::chatter`).
    pub chatter: Arc<bridges::chatter::ChatterSink>,
}

impl AppState {
    /// Builds the state and starts its background writer; call inside a Tokio runtime.
    pub fn new(db: PgPool, config: Config) -> AppState {
        let scan = Arc::new(scan::ScanRuntime::start(db.clone(), &config.scan));
        let http =
            outbound::Policy::new(&config.outbound).client("Shoal", Duration::from_secs(config.alerts.timeout_secs));
        let bots = Arc::new(outbound::Bots::new(&config.outbound));
        let posters = Arc::new(poster::Posters::new(&config.posters));
        let config = Arc::new(config);
        let member_pages = Arc::new(app::member_page::MemberPages::new(config.public_base()));
        let bridges = bridges::BridgeCache::with_public_base(config.public_base());
        let automation = Arc::new(automation::Automation::new(config.clone()));
        let moderation = Arc::new(moderation::Moderator::new(config.clone()));
        let chatter = Arc::new(bridges::chatter::ChatterSink::start(
            db.clone(),
            Duration::from_millis(config.bridges.chatter_flush_ms),
        ));
        AppState {
            chatter,
            db,
            config,
            automation,
            scan,
            bridge_errors: Arc::default(),
            bridges: Arc::new(bridges),
            http,
            bots,
            posters,
            member_pages,
            avatars: Arc::default(),
            moderation,
        }
    }

    /// What background jobs get to work with.
    pub fn job_context(&self) -> jobs::JobContext {
        jobs::JobContext {
            db: self.db.clone(),
            config: self.config.clone(),
            http: self.http.clone(),
            bots: self.bots.clone(),
            calls: Arc::default(),
        }
    }
}

/// Serves the application on `listener` until `shutdown` resolves, then finishes in-flight
/// requests (bounded by `http.shutdown_grace_secs`) and returns.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = std::time::Duration::from_secs(state.config.http.shutdown_grace_secs);
    let session_cleanup = web::spawn_session_cleanup(state.db.clone());
    let metrics_upkeep = telemetry::spawn_metrics_upkeep();
    let alert_checks = alerts::spawn(state.db.clone(), state.config.clone(), state.scan.fallback_seen.clone());
    let jobs = jobs::Runner::spawn(state.job_context());
    let rule_set_listener = state.automation.rule_sets.spawn_listener(state.db.clone());
    // Member-count refreshes and call-log pruning, where jobs run.
    let outbound_upkeep = (state.config.jobs.workers > 0)
        .then(|| outbound::dispatch::spawn_upkeep(state.db.clone(), state.config.clone()));
    let (db, scan, chatter) = (state.db.clone(), state.scan.clone(), state.chatter.clone());
    let limits = web::serve::Limits::from_config(&state.config.http, state.config.auth.trust_forwarded_for);
    let app = web::fast::MakeApp::new(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serve = web::serve::serve(listener, app, limits, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx2 = stop_rx.clone();
    tokio::select! {
        res = serve => res?,
        _ = async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within the grace period");
        }
    }
    drop(stop_rx);
    session_cleanup.abort();
    metrics_upkeep.abort();
    alert_checks.abort();
    rule_set_listener.abort();
    if let Some(t) = outbound_upkeep {
        t.abort();
    }
    // Jobs in hand may finish within the grace period; the rest run again after their lease.
    jobs.stop(grace).await;
    // No request is running any more: give reserved slots back and write queued scan events.
    scan.shutdown(&db).await;
    chatter.flush_and_stop().await;
    Ok(())
}
