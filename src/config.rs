//! Typed configuration, layered: `config/default.toml` → optional `config/local.toml` →
//! `SHOAL_*` environment variables (and `DATABASE_URL`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The defaults file, compiled in so that the binary runs from any directory.
const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Serialize, Deserialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// The zone the admin UI shows times in unless an operator chose another (`web::zone`);
    /// a name that is not an IANA zone stops the configuration from loading.
    pub display_timezone: crate::domain::Zone,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub scan: ScanConfig,
    pub alerts: AlertConfig,
    pub jobs: crate::jobs::JobsConfig,
    pub outbound: crate::outbound::OutboundConfig,
    pub bridges: BridgesConfig,
    pub posters: crate::poster::PostersConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BridgesConfig {
    /// Seconds an event's own time may differ from its arrival and still count (0: no limit
    /// within the years 2000 to 2100).
    pub event_time_tolerance_secs: i64,
    /// Plain group messages (no answer) are written in batches this often (0: each at once).
    pub chatter_flush_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertConfig {
    pub check_interval_ms: u64,
    pub expiring_hours: i64,
    pub nearly_full_percent: i64,
    pub retry_delays_ms: Vec<u64>,
    pub timeout_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanConfig {
    pub redirect_status: u16,
    pub max_block: i64,
    /// How many milliseconds of a target's scans one reservation covers (`scan::slots`).
    pub block_ms: u64,
    pub cache_ttl_ms: u64,
    /// The zone whose calendar days the scan statistics count (and live-code windows are typed in).
    pub stats_timezone: crate::domain::Zone,
    pub events_flush_ms: u64,
    pub new_scans_per_address: u32,
    pub address_window_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub pg_bin_dir: String,
    /// PostgreSQL's `statement_timeout` on every pool connection, in milliseconds (0: none).
    pub statement_timeout_ms: u64,
}

impl DatabaseConfig {
    /// The pool size: `max_connections`, or for 0 four per CPU core (4 to 64).
    pub fn pool_size(&self) -> u32 {
        match self.max_connections {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                (cores * 4).clamp(4, 64)
            }
            n => n,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionConfig {
    pub secure: bool,
    pub idle_minutes: i64,
    pub cookie_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthConfig {
    pub throttle_max_failures: i64,
    pub throttle_window_secs: i64,
    pub trust_forwarded_for: bool,
    /// How many reverse proxies of yours each request passes (only with `trust_forwarded_for`).
    pub trusted_proxies: usize,
}

impl AuthConfig {
    /// How many `X-Forwarded-For` hops, counted from the right, were added by trusted proxies
    /// (0: the header is not trusted at all).
    pub fn forwarded_hops(&self) -> usize {
        if self.trust_forwarded_for {
            self.trusted_proxies.max(1)
        } else {
            0
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    pub max_upload_bytes: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub header_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_header_bytes: usize,
    pub image_decodes: usize,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("pg_bin_dir", &self.pg_bin_dir)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("display_timezone", &self.display_timezone)
            .field("log_format", &self.log_format)
            .field("database", &self.database)
            .field("session", &self.session)
            .field("auth", &self.auth)
            .field("http", &self.http)
            .field("scan", &self.scan)
            .field("alerts", &self.alerts)
            .field("jobs", &self.jobs)
            .field("outbound", &self.outbound)
            .field("bridges", &self.bridges)
            .field("posters", &self.posters)
            .finish()
    }
}

/// Hides the password of a connection URL (`postgres://user:secret@host` → `postgres://user:***@host`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Loads the layers from `config_dir` (where `default.toml` may override the compiled-in
    /// defaults and `local.toml` is optional) and the process environment.
    pub fn load(config_dir: &Path) -> Result<Config, Box<figment::Error>> {
        Self::figment(config_dir).extract().map_err(Box::new)
    }

    pub fn figment(config_dir: &Path) -> Figment {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::file(config_dir.join("default.toml")))
            .merge(Toml::file(config_dir.join("local.toml")))
            .merge(Env::prefixed("SHOAL_").split("__"));
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                fig = fig.merge(Serialized::default("database.url", url));
            }
        }
        fig
    }

    /// Defaults only, for tests and tools that want a base to tweak.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("compiled-in default.toml is valid")
    }

    pub fn public_base(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_in_database_url() {
        assert_eq!(redact_url("postgres://shoal:hunter2@db:5432/shoal"), "postgres://shoal:***@db:5432/shoal");
        assert_eq!(redact_url("postgres://db/shoal"), "postgres://db/shoal");
        let mut c = Config::defaults();
        c.database.url = "postgres://u:topsecret@h/d".into();
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn time_zones_are_parsed_when_the_configuration_loads() {
        let c = Config::defaults();
        assert_eq!(c.display_timezone.tz(), chrono_tz::Asia::Shanghai);
        let bad = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Serialized::default("display_timezone", "Mars/Olympus"))
            .extract::<Config>();
        assert!(bad.is_err(), "an unknown zone is refused, not replaced");
    }

    #[test]
    fn compiled_defaults_parse() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert!(!c.session.secure);
    }

    #[test]
    fn the_pool_defaults_to_four_connections_per_core_and_a_set_size_stands() {
        let mut c = Config::defaults();
        let cores = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(c.database.pool_size(), (cores * 4).clamp(4, 64));
        c.database.max_connections = 7;
        assert_eq!(c.database.pool_size(), 7);
    }
}
