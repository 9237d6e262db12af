//! Live-code rules, free of I/O: which targets are eligible, in which order a scan tries them,
//! who is a link-preview crawler, and how visitors' addresses are anonymised.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{optional_text, required_text, text_enum};
use crate::error::FieldErrors;

/// The largest scan limit of a target, whichever way it is set (form or API).
pub const MAX_SCAN_LIMIT: i64 = 10_000_000;

/// A scan limit as given: a whole number from 0 to [`MAX_SCAN_LIMIT`], else `error.number_range`
/// on `field`.
pub fn scan_limit(n: i64, field: &str, errors: &mut FieldErrors) -> Option<i32> {
    if (0..=MAX_SCAN_LIMIT).contains(&n) {
        Some(n as i32)
    } else {
        errors.add(field, "error.number_range");
        None
    }
}

/// A scan limit typed into a form ([`scan_limit`]; anything but a whole number is out of range).
pub fn parse_scan_limit(input: &str, field: &str, errors: &mut FieldErrors) -> Option<i32> {
    match input.trim().parse::<i64>() {
        Ok(n) => scan_limit(n, field, errors),
        Err(_) => {
            errors.add(field, "error.number_range");
            None
        }
    }
}

/// The default limit of a new target: the room the group reports, at least one, at most
/// [`MAX_SCAN_LIMIT`].
pub fn default_scan_limit(capacity: i32, member_count: Option<i32>) -> i32 {
    (capacity as i64 - member_count.unwrap_or(0) as i64).clamp(1, MAX_SCAN_LIMIT) as i32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Mode {
    /// Fill targets in order: the first eligible target takes the scan.
    Fill,
    /// The least-filled eligible target (used / limit) takes the scan.
    Balance,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fill => "fill",
            Mode::Balance => "balance",
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "fill" => Some(Mode::Fill),
            "balance" => Some(Mode::Balance),
            _ => None,
        }
    }

    /// A process reserves blocks of `1 / share` of a target's remaining slots. In balance mode
    /// the slots other processes hold count as used until they are handed out, so a block is the
    /// most a cross-process split can be off by: 1/32 keeps it within a few percent. Fill mode
    /// needs no such precision and takes bigger blocks (fewer reservations).
    pub fn block_share(self) -> i64 {
        match self {
            Mode::Fill => 8,
            Mode::Balance => 32,
        }
    }
}

text_enum!(Mode);

/// Whether a live code takes scans (within its window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum LiveCodeStatus {
    Active,
    Paused,
}

impl LiveCodeStatus {
    pub const NAMES: &'static [&'static str] = &["active", "paused"];
    pub fn as_str(self) -> &'static str {
        match self {
            LiveCodeStatus::Active => "active",
            LiveCodeStatus::Paused => "paused",
        }
    }
    pub fn is_active(self) -> bool {
        self == LiveCodeStatus::Active
    }
}

text_enum!(LiveCodeStatus);

/// What a scan gets when no target can take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum FallbackKind {
    /// A page saying every group is full, with the message.
    None,
    /// A redirect to the fallback URL.
    Url,
    /// The uploaded fallback image (an owner's or customer service QR code).
    Image,
}

impl FallbackKind {
    pub const NAMES: &'static [&'static str] = &["none", "url", "image"];
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackKind::None => "none",
            FallbackKind::Url => "url",
            FallbackKind::Image => "image",
        }
    }
    pub fn is_url(self) -> bool {
        self == FallbackKind::Url
    }
    pub fn is_image(self) -> bool {
        self == FallbackKind::Image
    }
}

text_enum!(FallbackKind);

/// What became of one scan, as recorded in `scan_events` and counted in `scan_daily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ScanOutcome {
    /// A new visitor sent to a target (a slot taken).
    New,
    /// A returning visitor sent to their group again (no slot).
    Sticky,
    /// Every group full: the fallback.
    Fallback,
    /// Turned away by the per-address limit (the busy page).
    Refused,
    /// A link-preview fetcher (no slot).
    Preview,
    /// A long press on the QR image of the target page.
    LongPress,
}

impl ScanOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::New => "new",
            ScanOutcome::Sticky => "sticky",
            ScanOutcome::Fallback => "fallback",
            ScanOutcome::Refused => "refused",
            ScanOutcome::Preview => "preview",
            ScanOutcome::LongPress => "long_press",
        }
    }
    /// Routed to a target (new or returning).
    pub fn landed(self) -> bool {
        matches!(self, ScanOutcome::New | ScanOutcome::Sticky)
    }
}

text_enum!(ScanOutcome);

/// What the routing rules need to know about one target and its group.
#[derive(Clone, Debug)]
pub struct TargetState {
    pub id: i64,
    pub position: i32,
    pub enabled: bool,
    pub scan_limit: i64,
    pub used: i64,
    pub group_active: bool,
    pub member_count: Option<i32>,
    pub capacity: i32,
    /// Joined by QR image: when the image stops working.
    pub qr_expires_at: Option<DateTime<Utc>>,
    /// The group has a join target at all (invite URL or QR image).
    pub joinable: bool,
}

impl TargetState {
    /// Eligible apart from its slot counter: enabled, group active and joinable, not full by the
    /// reported member count, QR image not expired.
    pub fn open(&self, now: DateTime<Utc>) -> bool {
        self.enabled
            && self.group_active
            && self.joinable
            && self.member_count.is_none_or(|n| n < self.capacity)
            && self.qr_expires_at.is_none_or(|at| at > now)
    }

    /// Eligible for a new scan: open, and fewer slots used than its limit.
    pub fn eligible(&self, now: DateTime<Utc>) -> bool {
        self.open(now) && self.used < self.scan_limit
    }

    pub fn fill_ratio(&self) -> f64 {
        fill_ratio(self.used, self.scan_limit)
    }
}

/// `used / limit`; a target without slots counts as full.
fn fill_ratio(used: i64, limit: i64) -> f64 {
    if limit <= 0 {
        1.0
    } else {
        used as f64 / limit as f64
    }
}

/// Indexes of the open targets in the order a scan should try them. Slot counters are checked
/// by the caller (they change between the snapshot and the scan). Balance mode orders by
/// `used(i)`, the caller's best count of target `i`'s used slots right now (the snapshot's
/// counter is up to a cache period old: every scan of a burst would see the same one).
pub fn try_order(mode: Mode, targets: &[TargetState], used: impl Fn(usize) -> i64, now: DateTime<Utc>) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..targets.len()).filter(|&i| targets[i].open(now)).collect();
    match mode {
        Mode::Fill => idx.sort_by_key(|&i| (targets[i].position, targets[i].id)),
        Mode::Balance => idx.sort_by(|&a, &b| {
            let (ta, tb) = (&targets[a], &targets[b]);
            fill_ratio(used(a), ta.scan_limit)
                .partial_cmp(&fill_ratio(used(b), tb.scan_limit))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(ta.position.cmp(&tb.position))
                .then(ta.id.cmp(&tb.id))
        }),
    }
    idx
}

/// Who fetched a live-code link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum UaClass {
    /// A link-preview fetcher or other bot: gets a preview page and never uses a slot.
    Crawler,
    Wechat,
    Qq,
    Mobile,
    Desktop,
    Other,
    /// A scan taken through the API (`POST /api/v1/live-codes/{slug}/scans`).
    Api,
}

impl UaClass {
    pub fn as_str(self) -> &'static str {
        match self {
            UaClass::Crawler => "crawler",
            UaClass::Wechat => "wechat",
            UaClass::Qq => "qq",
            UaClass::Mobile => "mobile",
            UaClass::Desktop => "desktop",
            UaClass::Other => "other",
            UaClass::Api => "api",
        }
    }
}

text_enum!(UaClass);

/// Substrings (lower case) of the User-Agents of link-preview fetchers and crawlers.
const CRAWLERS: &[&str] = &[
    "facebookexternalhit",
    "facebot",
    "meta-externalagent",
    "twitterbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp/",
    "linkedinbot",
    "skypeuripreview",
    "embedly",
    "pinterest",
    "redditbot",
    "vkshare",
    "googlebot",
    "bingbot",
    "applebot",
    "yandex",
    "baiduspider",
    "bytespider",
    "sogou",
    "360spider",
    "yisouspider",
    "petalbot",
    "headlesschrome",
    "bot/",
    "bot;",
    "crawler",
    "spider",
    "preview",
];

/// Every pattern the classification looks for, matched in one case-insensitive pass.
const OTHERS: &[(&str, UaClass)] = &[
    ("micromessenger", UaClass::Wechat),
    (" qq/", UaClass::Qq),
    ("mqqbrowser", UaClass::Qq),
    ("mobile", UaClass::Mobile),
    ("android", UaClass::Mobile),
    ("iphone", UaClass::Mobile),
    ("windows", UaClass::Desktop),
    ("macintosh", UaClass::Desktop),
    ("x11", UaClass::Desktop),
];

static MATCHER: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    // A DFA: the fastest search, and with a few dozen short patterns its size is small.
    aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .ascii_case_insensitive(true)
        .build(CRAWLERS.iter().copied().chain(OTHERS.iter().map(|(p, _)| *p)))
        .expect("static patterns")
});

/// The class of a User-Agent: crawler before WeChat before QQ before mobile before desktop.
///
/// Scans come from a few phone and app versions at a time, so each worker thread remembers the
/// class of the User-Agents it saw last (64 of them) and matches a new one only once.
pub fn classify_user_agent(ua: &str) -> UaClass {
    const SLOTS: usize = 64;
    type Seen = Vec<Option<(Box<str>, UaClass)>>;
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(vec![None; SLOTS]);
    }
    if ua.len() > 512 {
        return match_user_agent(ua);
    }
    // The slot comes from the length and the last bytes (where versions differ); a hit is
    // confirmed on the whole string.
    let slot = ua.bytes().rev().take(16).fold(ua.len(), |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % SLOTS;
    let hit = SEEN.with_borrow(|seen| seen[slot].as_ref().filter(|(s, _)| &**s == ua).map(|&(_, class)| class));
    hit.unwrap_or_else(|| {
        let class = match_user_agent(ua);
        SEEN.with_borrow_mut(|seen| seen[slot] = Some((ua.into(), class)));
        class
    })
}

fn match_user_agent(ua: &str) -> UaClass {
    let rank = |c: UaClass| match c {
        UaClass::Crawler => 0,
        UaClass::Wechat => 1,
        UaClass::Qq => 2,
        UaClass::Mobile => 3,
        UaClass::Desktop => 4,
        UaClass::Other | UaClass::Api => 5,
    };
    let mut best =
        if ua.len() >= 3 && ua[ua.len() - 3..].eq_ignore_ascii_case("bot") { UaClass::Crawler } else { UaClass::Other };
    for m in MATCHER.find_overlapping_iter(ua) {
        let i = m.pattern().as_usize();
        let class = if i < CRAWLERS.len() { UaClass::Crawler } else { OTHERS[i - CRAWLERS.len()].1 };
        if rank(class) < rank(best) {
            best = class;
            if best == UaClass::Crawler {
                break;
            }
        }
    }
    best
}

/// An address with its host part dropped: IPv4 to /24, IPv6 to /48 (an IPv4-mapped IPv6
/// address as the IPv4 address it maps).
pub fn anonymize_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let v4 = |o: [u8; 4]| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0));
    match ip {
        IpAddr::V4(a) => v4(a.octets()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => v4(m.octets()),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

/// A new unguessable slug: 10 characters of a URL-safe alphabet without look-alikes (~58 bits).
pub fn random_slug() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..10).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

pub fn valid_slug(s: &str) -> bool {
    (3..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn valid_channel_key(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A live code's settings as typed into a form.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LiveCodeRaw {
    pub name: String,
    pub slug: String,
    pub status: String,
    pub mode: String,
    pub sticky_days: String,
    pub starts_at: String,
    pub ends_at: String,
    pub fallback_kind: String,
    pub fallback_url: String,
    pub fallback_message: String,
    /// The landing page: its language (`zh-CN`, `en`; empty: the visitor's browser decides),
    /// title, short text, and the texts shown while the code is paused or has ended.
    pub page_lang: String,
    pub page_title: String,
    pub page_text: String,
    pub paused_text: String,
    pub ended_text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LiveCodeSpec {
    pub name: String,
    pub slug: String,
    pub status: LiveCodeStatus,
    pub mode: Mode,
    pub sticky_days: i32,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub fallback_kind: FallbackKind,
    pub fallback_url: Option<String>,
    pub fallback_message: String,
    pub page_lang: Option<crate::i18n::Lang>,
    pub page_title: String,
    pub page_text: String,
    pub paused_text: String,
    pub ended_text: String,
}

impl LiveCodeRaw {
    pub fn blank() -> LiveCodeRaw {
        LiveCodeRaw {
            slug: random_slug(),
            status: "active".into(),
            mode: "fill".into(),
            sticky_days: "7".into(),
            fallback_kind: "none".into(),
            ..LiveCodeRaw::default()
        }
    }

    /// Parses the form; times are local to `tz`.
    pub fn parse(&self, tz: chrono_tz::Tz) -> Result<LiveCodeSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let name = required_text(&self.name, 120, "name", &mut e);
        let slug = self.slug.trim().to_string();
        if !valid_slug(&slug) {
            e.add("slug", "error.slug");
        }
        let status = match self.status.trim() {
            "" | "active" => LiveCodeStatus::Active,
            "paused" => LiveCodeStatus::Paused,
            _ => {
                e.add_choice("status", LiveCodeStatus::NAMES);
                LiveCodeStatus::Active
            }
        };
        let mode = match self.mode.trim() {
            "" => Mode::Fill,
            m => Mode::parse(m).unwrap_or_else(|| {
                e.add_choice("mode", &["fill", "balance"]);
                Mode::Fill
            }),
        };
        let sticky_days = match self.sticky_days.trim() {
            "" => 7,
            s => match s.parse::<i32>() {
                Ok(n) if (0..=365).contains(&n) => n,
                _ => {
                    e.add("sticky_days", "error.number_range");
                    7
                }
            },
        };
        let mut instant = |v: &str, field: &str| -> Option<DateTime<Utc>> {
            if v.trim().is_empty() {
                return None;
            }
            let at = super::group::parse_instant(v, tz);
            if at.is_none() {
                e.add(field, "error.datetime");
            }
            at
        };
        let starts_at = instant(&self.starts_at, "starts_at");
        let ends_at = instant(&self.ends_at, "ends_at");
        if let (Some(s), Some(t)) = (starts_at, ends_at) {
            if t <= s {
                e.add("ends_at", "error.ends_before_start");
            }
        }
        let fallback_kind = match self.fallback_kind.trim() {
            "" | "none" => FallbackKind::None,
            "url" => FallbackKind::Url,
            "image" => FallbackKind::Image,
            _ => {
                e.add_choice("fallback_kind", FallbackKind::NAMES);
                FallbackKind::None
            }
        };
        let url = self.fallback_url.trim();
        let fallback_url = if url.is_empty() {
            if fallback_kind == FallbackKind::Url {
                e.add("fallback_url", "error.required");
            }
            None
        } else {
            if !super::group::valid_http_url(url) {
                e.add("fallback_url", "error.url");
            }
            Some(url.to_string())
        };
        let fallback_message = optional_text(&self.fallback_message, 500, "fallback_message", &mut e);
        let page_lang = match self.page_lang.trim() {
            "" => None,
            "zh-CN" => Some(crate::i18n::Lang::ZhCn),
            "en" => Some(crate::i18n::Lang::En),
            _ => {
                e.add_choice("page_lang", &["zh-CN", "en"]);
                None
            }
        };
        let page_title = optional_text(&self.page_title, 60, "page_title", &mut e);
        let page_text = optional_text(&self.page_text, 300, "page_text", &mut e);
        let paused_text = optional_text(&self.paused_text, 300, "paused_text", &mut e);
        let ended_text = optional_text(&self.ended_text, 300, "ended_text", &mut e);
        if e.is_empty() {
            Ok(LiveCodeSpec {
                name,
                slug,
                status,
                mode,
                sticky_days,
                starts_at,
                ends_at,
                fallback_kind,
                fallback_url,
                fallback_message,
                page_lang,
                page_title,
                page_text,
                paused_text,
                ended_text,
            })
        } else {
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: i64, position: i32, limit: i64, used: i64) -> TargetState {
        TargetState {
            id,
            position,
            enabled: true,
            scan_limit: limit,
            used,
            group_active: true,
            member_count: None,
            capacity: 200,
            qr_expires_at: None,
            joinable: true,
        }
    }

    #[test]
    fn fill_tries_targets_in_position_order_and_skips_closed_ones() {
        let now = Utc::now();
        let mut ts = vec![target(1, 2, 100, 0), target(2, 1, 100, 100), target(3, 3, 100, 0)];
        ts[2].qr_expires_at = Some(now - chrono::Duration::minutes(1));
        assert_eq!(try_order(Mode::Fill, &ts, |i| ts[i].used, now), vec![1, 0]);
        assert!(!ts[1].eligible(now), "used up");
        assert!(ts[0].eligible(now));
    }

    #[test]
    fn balance_prefers_the_least_filled_target() {
        let now = Utc::now();
        let ts = vec![target(1, 1, 100, 50), target(2, 2, 200, 20), target(3, 3, 10, 9)];
        assert_eq!(try_order(Mode::Balance, &ts, |i| ts[i].used, now), vec![1, 0, 2]);
    }

    #[test]
    fn balance_orders_by_the_callers_count_not_the_snapshots() {
        let now = Utc::now();
        // The snapshot says both are empty; the live counts say the first took one scan.
        let ts = vec![target(1, 1, 1000, 0), target(2, 2, 1000, 0)];
        let live = [1, 0];
        assert_eq!(try_order(Mode::Balance, &ts, |i| live[i], now), vec![1, 0]);
        assert_eq!(try_order(Mode::Fill, &ts, |i| live[i], now), vec![0, 1], "fill ignores counts");
    }

    #[test]
    fn a_full_or_paused_group_or_disabled_target_is_not_open() {
        let now = Utc::now();
        let mut t = target(1, 1, 100, 0);
        t.member_count = Some(200);
        assert!(!t.open(now), "reported full");
        let mut t = target(1, 1, 100, 0);
        t.group_active = false;
        assert!(!t.open(now));
        let mut t = target(1, 1, 100, 0);
        t.enabled = false;
        assert!(!t.open(now));
        let mut t = target(1, 1, 100, 0);
        t.joinable = false;
        assert!(!t.open(now));
    }

    #[test]
    fn link_preview_fetchers_are_crawlers_and_phones_are_not() {
        for ua in [
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "TelegramBot (like TwitterBot)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Twitterbot/1.0",
            "WhatsApp/2.23.20.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0)",
        ] {
            assert_eq!(classify_user_agent(ua), UaClass::Crawler, "{ua}");
        }
        let wechat = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.38(0x1800262c) NetType/WIFI Language/zh_CN";
        assert_eq!(classify_user_agent(wechat), UaClass::Wechat);
        assert_eq!(classify_user_agent("Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36"), UaClass::Mobile);
        assert_eq!(classify_user_agent(""), UaClass::Other);
    }

    #[test]
    fn remembered_user_agents_keep_their_class_even_when_they_share_a_slot() {
        // Same length and same last 16 bytes: the same slot of the per-thread memory.
        let tail = " Safari/537.36 x";
        let bot = format!("Twitterbot/1.0 (x){tail}");
        let phone = format!("Android 14; Mobile{tail}");
        assert_eq!(bot.len(), phone.len());
        for _ in 0..3 {
            assert_eq!(classify_user_agent(&bot), UaClass::Crawler);
            assert_eq!(classify_user_agent(&phone), UaClass::Mobile);
        }
        let long = format!("{}Googlebot", "x".repeat(600));
        assert_eq!(classify_user_agent(&long), UaClass::Crawler);
    }

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(anonymize_ip("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(anonymize_ip("2001:db8:abcd:12::1".parse().unwrap()).to_string(), "2001:db8:abcd::");
        assert_eq!(anonymize_ip("::ffff:198.51.100.9".parse().unwrap()).to_string(), "198.51.100.0");
    }

    #[test]
    fn scan_limits_stop_at_ten_million_and_default_to_the_room_left() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_scan_limit(" 10000000 ", "l", &mut e), Some(10_000_000));
        assert_eq!(scan_limit(0, "l", &mut e), Some(0));
        assert!(e.is_empty());
        for bad in ["10000001", "-1", "x", ""] {
            let mut e = FieldErrors::new();
            assert_eq!(parse_scan_limit(bad, "l", &mut e), None, "{bad}");
            assert!(e.has("l"));
        }
        assert_eq!(default_scan_limit(200, Some(150)), 50);
        assert_eq!(default_scan_limit(200, None), 200);
        assert_eq!(default_scan_limit(200, Some(230)), 1);
    }

    #[test]
    fn slugs_and_channel_keys() {
        let s = random_slug();
        assert!(valid_slug(&s) && s.len() == 10);
        assert!(!valid_slug("a b") && !valid_slug("ab"));
        assert!(valid_channel_key("poster-a") && !valid_channel_key("Poster") && !valid_channel_key(""));
    }
}
