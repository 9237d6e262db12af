//! Every request Shoal sends out (alert webhooks, bots' APIs) goes through one policy: http(s)
//! only, no private, loopback, link-local or otherwise internal address — checked on the URL when
//! it is saved, on literal addresses before sending, and on every address a host name resolves to
//! at connect time (so DNS cannot point it inside) — and no redirects, unless the configuration
//! allows them (`[outbound]`).
//!
//! Bots that act: [`ApiCall`] is one request to a bot's API, built by the protocol modules
//! ([`onebot`], [`telegram`], [`generic`]) from an [`Action`](crate::domain::action::Action) and
//! read back into a [`Reply`] that says whether it happened, did not, or may have. [`Bots`]
//! holds the HTTP client and the bridges' settings per process; [`dispatch`] runs the jobs that
//! make the calls, through the shared rate limits, and logs each one.
//!
//! Whether a failed call is tried again (the rule, documented in docs/ARCHITECTURE.md): only
//! when it is known not to have happened — no connection could be made, the platform said to
//! wait (429 with `retry_after`), or a gateway in front of the bot answered 502 or 503 without
//! the bot's own answer. A call that may have reached the bot (a timeout after the request was
//! sent, a connection dropped before the answer, a 500 or 504) is `unknown`: a send is then
//! never repeated by itself; an idempotent action (delete, mute, kick, join answer) is. A call
//! the bot refused (an error status, a bad token) is `failed` and not repeated.

pub mod dispatch;
pub mod generic;
pub mod onebot;
pub mod telegram;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// `[outbound]` in the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboundConfig {
    /// Allow every private and loopback address (a Shoal inside a trusted network).
    pub allow_private_addresses: bool,
    /// Hosts, addresses or CIDR blocks that may be private all the same (e.g. "127.0.0.1",
    /// "bot.lan", "10.0.0.0/8").
    pub allowed_hosts: Vec<String>,
    /// Redirects followed, each checked like the first URL; 0 follows none.
    pub max_redirects: usize,
    /// Milliseconds a bot's API has to answer a call; later, a call that went out is `unknown`.
    pub bot_timeout_ms: u64,
    /// The Telegram Bot API server of bridges that name none.
    pub telegram_api_base: String,
    /// Milliseconds added to every rate-limit window, for the time between a call's grant and
    /// its arrival at the platform.
    pub limit_margin_ms: u64,
    /// Seconds between refreshes of linked groups' member counts from their bots (0: never).
    pub member_count_interval_secs: u64,
    /// Days the bots' call log is kept.
    pub keep_calls_days: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow_private_addresses: false,
            allowed_hosts: Vec::new(),
            max_redirects: 0,
            bot_timeout_ms: 10_000,
            telegram_api_base: "https://api.telegram.org".into(),
            limit_margin_ms: 100,
            member_count_interval_secs: 3600,
            keep_calls_days: 30,
        }
    }
}

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("only http and https URLs can be called")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL is not valid")]
    Invalid,
    #[error("{0} is a private, loopback or link-local address")]
    Private(IpAddr),
    #[error("{0} resolves only to private, loopback or link-local addresses")]
    PrivateName(String),
}

impl Refused {
    /// The i18n key of the message a form shows for it.
    pub fn message_key(&self) -> &'static str {
        match self {
            Refused::Scheme | Refused::NoHost | Refused::Invalid => "error.url",
            Refused::Private(_) | Refused::PrivateName(_) => "error.url_private",
        }
    }
}

/// One allowed entry: a host name, or an address block.
#[derive(Debug, Clone)]
enum Allowed {
    Name(String),
    Block(IpAddr, u8),
}

/// The outbound policy, shared by every client built from it.
#[derive(Debug, Clone)]
pub struct Policy {
    allow_all: bool,
    allowed: Vec<Allowed>,
    max_redirects: usize,
}

impl Policy {
    pub fn new(cfg: &OutboundConfig) -> Policy {
        let allowed = cfg.allowed_hosts.iter().filter_map(|h| parse_allowed(h.trim())).collect();
        Policy { allow_all: cfg.allow_private_addresses, allowed, max_redirects: cfg.max_redirects }
    }

    fn name_allowed(&self, host: &str) -> bool {
        self.allow_all || self.allowed.iter().any(|a| matches!(a, Allowed::Name(n) if n.eq_ignore_ascii_case(host)))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allow_all
            || is_public(ip)
            || self.allowed.iter().any(|a| matches!(a, Allowed::Block(net, bits) if in_block(ip, *net, *bits)))
    }

    /// Checks a URL before it is saved or called: scheme, host, and a literal address.
    pub fn check(&self, url: &str) -> Result<Url, Refused> {
        let url = Url::parse(url.trim()).map_err(|_| Refused::Invalid)?;
        self.check_parsed(&url)?;
        Ok(url)
    }

    fn check_parsed(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        let Some(host) = url.host_str() else { return Err(Refused::NoHost) };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        // "localhost" never needs DNS to be internal.
        let d = bare.trim_end_matches('.').to_ascii_lowercase();
        if (d == "localhost" || d.ends_with(".localhost")) && !self.name_allowed(&d) {
            return Err(Refused::PrivateName(d));
        }
        Ok(())
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.ip_allowed(ip) {
            Ok(())
        } else {
            Err(Refused::Private(ip))
        }
    }

    /// A client that follows this policy: no proxy from the environment, redirects only as
    /// configured (each checked), and a resolver that drops internal addresses.
    pub fn client(&self, user_agent: &str, timeout: Duration) -> reqwest::Client {
        let max = self.max_redirects;
        let for_redirects = self.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                attempt.error(format!("more than {max} redirects"))
            } else if let Err(e) = for_redirects.check_parsed(attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        });
        let redirect = if max == 0 { reqwest::redirect::Policy::none() } else { redirect };
        reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(redirect)
            .no_proxy()
            .dns_resolver(Arc::new(Guarded(self.clone())))
            .build()
            .unwrap_or_default()
    }
}

/// The resolver: the system's, minus the addresses the policy refuses.
struct Guarded(Policy);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let keep: Vec<SocketAddr> = if policy.name_allowed(&host) {
                found
            } else {
                found.into_iter().filter(|a| policy.ip_allowed(a.ip())).collect()
            };
            if keep.is_empty() {
                return Err(Box::new(Refused::PrivateName(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(keep.into_iter()) as Addrs)
        })
    }
}

// ---------------------------------------------------------------- bots

/// A credential (a bot token, an access token, a signing secret): kept as given, shown by
/// neither `Debug` nor `Display`, so that no log line or error carries it.
#[derive(Clone, PartialEq, Eq, sqlx::Type, Deserialize)]
#[sqlx(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One request to a bot's API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// What Shoal asked for, protocol-neutral (send, delete, mute, kick, join_request,
    /// member_count, set_webhook, webhook_info): the call log's "action".
    pub action: &'static str,
    /// The protocol's method: OneBot's action, Telegram's method, the generic bridge's "action".
    pub method: &'static str,
    pub body: serde_json::Value,
    /// The chat it acts in (rate limits count per chat); None for a call about the bot itself.
    pub chat_id: Option<String>,
    /// The member or message acted on, for the call log.
    pub target: Option<String>,
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done. `result`: what is worth keeping (a sent message's id, a member count); `data` the
    /// platform's whole result.
    Ok { status: u16, result: Option<String>, data: serde_json::Value },
    /// The bot answered that it did not do it: not tried again.
    Failed { status: Option<u16>, error: String },
    /// Known not to have happened: tried again later (after `retry_after` when the platform
    /// said how long to wait).
    NotSent { status: Option<u16>, error: String, retry_after: Option<Duration> },
    /// The request may have reached the bot and no answer says what came of it.
    Unknown { status: Option<u16>, error: String },
    /// Telegram: the group became a supergroup; the call did not happen and must go to the new id.
    Migrated { status: u16, new_chat_id: String, error: String },
    /// The bot is no longer in the chat (Telegram 403 "bot was kicked").
    Kicked { status: u16, error: String },
}

impl Reply {
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Ok { status, .. } | Reply::Migrated { status, .. } | Reply::Kicked { status, .. } => Some(*status),
            Reply::Failed { status, .. } | Reply::NotSent { status, .. } | Reply::Unknown { status, .. } => *status,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Ok { .. } => None,
            Reply::Failed { error, .. }
            | Reply::NotSent { error, .. }
            | Reply::Unknown { error, .. }
            | Reply::Migrated { error, .. }
            | Reply::Kicked { error, .. } => Some(error),
        }
    }

    /// How it shows in the call log.
    pub fn outcome(&self) -> crate::store::outbound::CallOutcome {
        use crate::store::outbound::CallOutcome;
        match self {
            Reply::Ok { .. } => CallOutcome::Ok,
            Reply::Unknown { .. } => CallOutcome::Unknown,
            Reply::Failed { .. } | Reply::NotSent { .. } | Reply::Migrated { .. } | Reply::Kicked { .. } => {
                CallOutcome::Failed
            }
        }
    }
}

/// A transport error in terms of whether the request reached the bot. No connection (refused,
/// unreachable, DNS, TLS handshake): not sent. Refused by the outbound policy: failed for good.
/// Anything after the connection was made (a timeout, a reset, a closed connection): unknown.
/// The URL is left out of the text (a Telegram URL holds the bot token).
pub fn transport_reply(e: reqwest::Error) -> Reply {
    let refused = {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut found = false;
        while let Some(err) = cur {
            if err.downcast_ref::<Refused>().is_some() {
                found = true;
                break;
            }
            cur = err.source();
        }
        found
    };
    let connect = e.is_connect();
    let error = error_chain(&e.without_url());
    if refused {
        Reply::Failed { status: None, error }
    } else if connect {
        Reply::NotSent { status: None, error, retry_after: None }
    } else {
        Reply::Unknown { status: None, error }
    }
}

/// An answer without the bot's own verdict, by its HTTP status: a gateway with no bot behind it
/// (502, 503) means not sent; another 5xx, unknown; anything else, failed.
pub fn status_reply(status: u16, what: String) -> Reply {
    match status {
        502 | 503 => Reply::NotSent { status: Some(status), error: what, retry_after: None },
        500..=599 => Reply::Unknown { status: Some(status), error: what },
        _ => Reply::Failed { status: Some(status), error: what },
    }
}

/// At most `max` characters of an answer, for an error text.
pub fn snippet(body: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// A platform id as JSON: a number when it is one (OneBot and Telegram want integers), else the
/// text (a Telegram `@channelusername`).
pub fn id_value(s: &str) -> serde_json::Value {
    match s.trim().parse::<i64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(s.trim()),
    }
}

/// Call-log rows of jobs still running in this process: the job runner writes them in the same
/// transaction as the jobs' settlements (`jobs::Runner`), so that a batch of calls costs one
/// commit, and a call's row and its job's outcome are never one without the other.
#[derive(Default)]
pub struct CallBuffer(Mutex<Vec<crate::store::outbound::NewCall>>);

impl CallBuffer {
    pub fn push(&self, call: crate::store::outbound::NewCall) {
        if let Ok(mut v) = self.0.lock() {
            v.push(call);
        }
    }
    pub fn take(&self) -> Vec<crate::store::outbound::NewCall> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// A bridge's settings as calls need them, with the chats whose link is broken.
#[derive(Debug)]
pub struct BotBridge {
    pub bridge: crate::store::outbound::OutboundBridge,
    pub broken: HashSet<String>,
}

/// The bots of one process: the HTTP client for their APIs (the outbound policy, the bot
/// timeout, connections kept alive) and each bridge's settings, read again after a second (a
/// change made in this process is seen at once: [`Bots::evict`]).
pub struct Bots {
    http: reqwest::Client,
    policy: Policy,
    pub config: OutboundConfig,
    cache: Mutex<HashMap<i64, (Instant, Arc<BotBridge>)>>,
}

impl Bots {
    pub const TTL: Duration = Duration::from_secs(1);

    pub fn new(config: &OutboundConfig) -> Bots {
        let policy = Policy::new(config);
        let http = policy.client("Shoal", Duration::from_millis(config.bot_timeout_ms.max(100)));
        Bots { http, policy, config: config.clone(), cache: Mutex::new(HashMap::new()) }
    }

    /// A bridge and its broken chats, from the cache when fresh.
    pub async fn get(&self, db: &sqlx::PgPool, id: i64) -> sqlx::Result<Option<Arc<BotBridge>>> {
        if let Some((at, b)) = self.cache.lock().ok().and_then(|m| m.get(&id).cloned()) {
            if at.elapsed() < Self::TTL {
                return Ok(Some(b));
            }
        }
        let mut conn = db.acquire().await?;
        let Some(bridge) = crate::store::outbound::bridge(&mut conn, id).await? else {
            self.evict(id);
            return Ok(None);
        };
        let broken = crate::store::outbound::broken_chats(&mut conn, id).await?.into_iter().collect();
        let b = Arc::new(BotBridge { bridge, broken });
        if let Ok(mut m) = self.cache.lock() {
            m.insert(id, (Instant::now(), b.clone()));
        }
        Ok(Some(b))
    }

    /// How long a call can last at most: its place in the rate limits counts as taken until
    /// then unless it ends sooner (the bot timeout, and a second for the rest of the round).
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.config.bot_timeout_ms.max(100) + 1000)
    }

    pub fn evict(&self, id: i64) {
        if let Ok(mut m) = self.cache.lock() {
            m.remove(&id);
        }
    }

    /// The Telegram Bot API server a bridge uses.
    pub fn telegram_base<'a>(&'a self, b: &'a crate::store::outbound::OutboundBridge) -> &'a str {
        b.api_base_url.as_deref().unwrap_or(&self.config.telegram_api_base).trim_end_matches('/')
    }

    /// Whether the bridge has what its bot's API needs: OneBot and generic an address,
    /// Telegram a bot token.
    pub fn ready(b: &crate::store::outbound::OutboundBridge) -> bool {
        use crate::domain::bridge::Kind;
        match b.kind {
            Kind::OneBot11 | Kind::Generic => b.api_base_url.is_some(),
            Kind::Telegram => b.access_token.is_some(),
        }
    }

    /// Makes one call (no rate limit, no log: see [`dispatch`]).
    pub async fn call(&self, b: &crate::store::outbound::OutboundBridge, call: &ApiCall) -> Reply {
        use crate::domain::bridge::Kind;
        let not_ready =
            || Reply::Failed { status: None, error: "the bridge has no API address or token for its bot".into() };
        let url = match b.kind {
            Kind::OneBot11 => match &b.api_base_url {
                Some(base) => format!("{}/{}", base.trim_end_matches('/'), call.method),
                None => return not_ready(),
            },
            Kind::Telegram => match &b.access_token {
                // The token is checked by the policy only as part of a URL; no error shows it.
                Some(_) => self.telegram_base(b).to_string(),
                None => return not_ready(),
            },
            Kind::Generic => match &b.api_base_url {
                Some(url) => url.clone(),
                None => return not_ready(),
            },
        };
        if let Err(refused) = self.policy.check(&url) {
            return Reply::Failed {
                status: None,
                error: format!("{refused}: allow it under [outbound] if it is yours"),
            };
        }
        match b.kind {
            Kind::OneBot11 => onebot::execute(&self.http, &url, b.access_token.as_ref(), call).await,
            Kind::Telegram => {
                let token = b.access_token.as_ref().map(Secret::expose).unwrap_or_default();
                telegram::execute(&self.http, &format!("{url}/bot{token}/{}", call.method), call).await
            }
            Kind::Generic => generic::execute(&self.http, &url, &b.secret, call).await,
        }
    }
}

/// An error and its sources in one line, for logs and the delivery records operators read.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

fn parse_allowed(s: &str) -> Option<Allowed> {
    if s.is_empty() {
        return None;
    }
    if let Some((net, bits)) = s.split_once('/') {
        let net: IpAddr = net.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(Allowed::Block(net, bits));
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(Allowed::Block(ip, if ip.is_ipv4() { 32 } else { 128 })),
        Err(_) => Some(Allowed::Name(s.trim_end_matches('.').to_string())),
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (canonical(ip), canonical(net)) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits.min(128)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether an address is on the public internet (not private, loopback, link-local, shared,
/// reserved, multicast or documentation space).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4() {
        // ::a.b.c.d (deprecated compatible form) and NAT64 64:ff9b::a.b.c.d carry an IPv4 address.
        if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
            return public_v4(v4);
        }
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b {
        let v4 = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
        return public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Policy {
        Policy::new(&OutboundConfig::default())
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        let p = strict();
        for bad in [
            "http://127.0.0.1/x",
            "http://127.8.9.1:8080/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://localhost:5700/",
            "http://api.localhost/",
        ] {
            assert!(
                matches!(p.check(bad), Err(Refused::Private(_) | Refused::PrivateName(_))),
                "{bad} should be refused"
            );
        }
        for good in ["https://example.com/hook", "http://93.184.216.34/", "https://[2606:4700::1111]/"] {
            assert!(p.check(good).is_ok(), "{good} should pass");
        }
        assert_eq!(p.check("ftp://example.com/"), Err(Refused::Scheme));
        assert_eq!(p.check("javascript:alert(1)"), Err(Refused::Scheme));
        assert_eq!(p.check("not a url"), Err(Refused::Invalid));
    }

    #[test]
    fn configured_hosts_and_blocks_are_allowed() {
        let p = Policy::new(&OutboundConfig {
            allowed_hosts: vec!["127.0.0.1".into(), "10.0.0.0/8".into(), "bot.lan".into(), "localhost".into()],
            ..Default::default()
        });
        assert!(p.check("http://127.0.0.1:5700/").is_ok());
        assert!(p.check("http://10.200.0.9/").is_ok());
        assert!(p.check("http://localhost/").is_ok());
        assert!(p.check("http://192.168.0.1/").is_err());
        assert!(p.check("http://127.0.0.2/").is_err());
        assert!(p.name_allowed("BOT.lan"));
        let all = Policy::new(&OutboundConfig { allow_private_addresses: true, ..Default::default() });
        assert!(all.check("http://192.168.0.1/").is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_connecting() {
        let client = strict().client("test", Duration::from_secs(2));
        let err = client.get("http://localhost:9/").send().await.expect_err("refused");
        let text = error_chain(&err);
        assert!(text.contains("private, loopback or link-local"), "{text}");
    }
}
