//! Moderation rules, pure: what a rule looks for (keywords, links outside an allow-list, phone
//! numbers, QQ/WeChat contacts, other groups' invite links, floods, links from new members), what
//! it does (delete, warn along the rule set's ladder, mute, kick), and the judge that reads a
//! message against a rule set compiled once. The judge runs while a webhook is answered: it
//! reads the text once into reusable per-thread buffers, allocates nothing for a clean message,
//! and takes microseconds. Flood counts are kept in memory per process ([`FloodTracker`]).

use std::collections::HashMap;
use std::sync::Mutex;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use crate::domain::text_enum;
use crate::error::FieldErrors;

// ---------------------------------------------------------------- rules

/// What a rule looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RuleKind {
    /// Any of a list of words (case, full-width forms and spaces between letters ignored).
    Keywords,
    /// A link or a bare domain outside the allow-list (`example[.]com`, `ｅｘａｍｐｌｅ。ｃｏｍ`,
    /// `example 点 com` count as links).
    Links,
    /// A phone number (Chinese mobile numbers, also with +86, spaces or dashes, or international
    /// numbers starting with +).
    Phone,
    /// A QQ or WeChat number offered in the chat ("加我QQ 12345678", "vx: abc_123").
    Contact,
    /// An invite to another group: QQ group share links and group numbers, Telegram `t.me/+…`
    /// and `t.me/joinchat/…`, WeChat group links (allow-list entries are exempt).
    Invite,
    /// Too many messages: `count` within `seconds`, or `consecutive` in a row in the chat.
    Flood,
    /// A link from a member who joined less than `hours` ago.
    Quarantine,
}

impl RuleKind {
    pub const ALL: [RuleKind; 7] = [
        RuleKind::Keywords,
        RuleKind::Links,
        RuleKind::Phone,
        RuleKind::Contact,
        RuleKind::Invite,
        RuleKind::Flood,
        RuleKind::Quarantine,
    ];
    pub const NAMES: &'static [&'static str] =
        &["keywords", "links", "phone", "contact", "invite", "flood", "quarantine"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<RuleKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}
text_enum!(RuleKind);

/// What a rule does besides deleting the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Only what `delete` says.
    Nothing,
    /// A strike: the rule set's ladder decides (warn, mute, kick).
    Warn,
    Mute {
        seconds: u32,
    },
    Kick,
}

/// One step of a rule set's escalation ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Warn,
    Mute { seconds: u32 },
    Kick,
}

impl Step {
    /// `warn`, `mute:3600`, `kick` — the ladder's text form (forms and the column).
    pub fn code(self) -> String {
        match self {
            Step::Warn => "warn".into(),
            Step::Mute { seconds } => format!("mute:{seconds}"),
            Step::Kick => "kick".into(),
        }
    }

    /// `warn`, `kick`, `mute:<seconds>` or `mute <n>m|h|d` (also `tmute 1h`).
    pub fn parse(s: &str) -> Option<Step> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "warn" | "警告" => return Some(Step::Warn),
            "kick" | "踢出" | "ban" => return Some(Step::Kick),
            _ => {}
        }
        let rest = s.strip_prefix("tmute").or_else(|| s.strip_prefix("mute")).or_else(|| s.strip_prefix("禁言"))?;
        let seconds = parse_duration(rest.trim_start_matches([':', ' ', '：']))?;
        Some(Step::Mute { seconds })
    }
}

/// `90`, `90s`, `10m`, `1h`, `2d`, `1w` → seconds (1 s to 366 days).
pub fn parse_duration(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "s" | "秒" => 1,
        "m" | "min" | "分钟" => 60,
        "h" | "小时" => 3600,
        "d" | "天" => 86_400,
        "w" | "周" => 7 * 86_400,
        _ => return None,
    };
    let secs = n.checked_mul(mult)?;
    (1..=366 * 86_400).contains(&secs).then_some(secs as u32)
}

/// A duration in the largest whole unit: `1h`, `90m`, `2d`.
pub fn format_duration(seconds: u32) -> String {
    for (unit, n) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= n && seconds.is_multiple_of(n) {
            return format!("{}{unit}", seconds / n);
        }
    }
    format!("{seconds}s")
}

/// One rule as stored and edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    /// 0 for a rule not stored yet.
    #[serde(default)]
    pub id: i64,
    pub kind: RuleKind,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Keywords (`keywords`); allowed domains (`links`, `quarantine`) or allowed invite links
    /// (`invite`).
    #[serde(default)]
    pub words: Vec<String>,
    /// Flood: this many messages within `seconds` (0: off).
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub seconds: u32,
    /// Flood: this many messages in a row in the chat (0: off).
    #[serde(default)]
    pub consecutive: u32,
    /// Quarantine: members who joined less than this many hours ago.
    #[serde(default)]
    pub hours: u32,
    /// Delete the message.
    #[serde(default = "yes")]
    pub delete: bool,
    pub response: Response,
}

fn yes() -> bool {
    true
}

pub const MAX_RULES: usize = 30;
pub const MAX_WORDS: usize = 500;
pub const MAX_WORD_LEN: usize = 100;
pub const MAX_STEPS: usize = 8;
pub const DEFAULT_WARN_DAYS: u32 = 30;

/// A rule set's ladder and exemptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ladder {
    /// The steps, in order: the n-th active warning (counting this one) takes step n; past the
    /// end, the last step again.
    pub steps: Vec<Step>,
    /// Warnings count for this many days.
    pub warn_days: u32,
    /// Members with any of these tags are never acted on.
    #[serde(default)]
    pub exempt_tags: Vec<String>,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            steps: vec![Step::Warn, Step::Warn, Step::Mute { seconds: 3600 }, Step::Kick],
            warn_days: DEFAULT_WARN_DAYS,
            exempt_tags: vec![],
        }
    }
}

/// Rules and ladder as typed in a form or sent to the API, before checking.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct ModerationRaw {
    /// `warn, warn, mute 1h, kick` (comma or arrow separated).
    #[serde(default)]
    pub ladder: String,
    #[serde(default)]
    pub warn_days: String,
    #[serde(default)]
    pub exempt_tags: String,
}

impl Ladder {
    pub fn text(&self) -> String {
        self.steps.iter().map(|s| s.code()).collect::<Vec<_>>().join(", ")
    }

    pub fn parse(raw: &ModerationRaw) -> Result<Ladder, FieldErrors> {
        let mut e = FieldErrors::new();
        let mut steps = Vec::new();
        for part in raw.ladder.split([',', '，', '>', '→', '\n']).map(|p| p.trim().trim_matches(['-', ' '])) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match Step::parse(part) {
                Some(s) => steps.push(s),
                None => {
                    e.add("ladder", "moderation.error.step");
                    break;
                }
            }
        }
        if steps.is_empty() && !e.has("ladder") {
            steps = Ladder::default().steps;
        }
        let warn_days = match raw.warn_days.trim() {
            "" => DEFAULT_WARN_DAYS,
            s => match s.parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) => n,
                _ => {
                    e.add("warn_days", "error.number_range");
                    DEFAULT_WARN_DAYS
                }
            },
        };
        let ladder = Ladder { steps, warn_days, exempt_tags: split_words(&raw.exempt_tags) };
        if let Err(more) = ladder.check() {
            for (f, keys) in more.0 {
                for k in keys {
                    if !e.has(&f) {
                        e.add(&f, k);
                    }
                }
            }
        }
        e.into_result_fe(ladder)
    }

    /// Bounded and meaningful: 1 to 8 steps, mutes of 1 s to 366 days, warnings counting 1 to
    /// 3650 days, at most 20 exempt tags of up to 40 characters.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            e.add("ladder", "moderation.error.too_many_steps");
        }
        if self.steps.iter().any(|s| matches!(s, Step::Mute { seconds } if !(1..=366 * 86_400).contains(seconds))) {
            e.add("ladder", "moderation.error.step");
        }
        if !(1..=3650).contains(&self.warn_days) {
            e.add("warn_days", "error.number_range");
        }
        if self.exempt_tags.len() > 20 || self.exempt_tags.iter().any(|t| t.trim().is_empty() || t.chars().count() > 40)
        {
            e.add("exempt_tags", "moderation.error.tags");
        }
        e.into_result_fe(())
    }

    /// The step the `strike`-th active warning (1-based) takes, and whether it is the one before
    /// the last (the member is told what comes next).
    pub fn step(&self, strike: u32) -> (Step, bool) {
        let n = self.steps.len();
        if n == 0 {
            return (Step::Warn, false);
        }
        let i = (strike.max(1) as usize - 1).min(n - 1);
        (self.steps[i], n >= 2 && i == n - 2)
    }
}

trait IntoResultFe {
    fn into_result_fe<T>(self, v: T) -> Result<T, FieldErrors>;
}

impl IntoResultFe for FieldErrors {
    fn into_result_fe<T>(self, v: T) -> Result<T, FieldErrors> {
        if self.is_empty() {
            Ok(v)
        } else {
            Err(self)
        }
    }
}

/// Words from a text area or a comma list: one per line or comma, trimmed, no empties or
/// duplicates.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in s.split(['\n', ',', '，', '、']).map(str::trim).filter(|w| !w.is_empty()) {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    }
    out
}

/// One rule as typed in the form.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct RuleRaw {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub enabled: Option<String>,
    #[serde(default)]
    pub words: String,
    #[serde(default)]
    pub count: String,
    #[serde(default)]
    pub seconds: String,
    #[serde(default)]
    pub consecutive: String,
    #[serde(default)]
    pub hours: String,
    #[serde(default)]
    pub delete: Option<String>,
    /// `nothing`, `warn`, `mute 10m`, `kick`.
    #[serde(default)]
    pub response: String,
}

fn num(s: &str, min: u32, max: u32, field: &str, e: &mut FieldErrors) -> u32 {
    match s.trim() {
        "" => 0,
        s => match s.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                e.add(field, "error.number_range");
                0
            }
        },
    }
}

impl RuleRaw {
    pub fn parse(&self, id: i64) -> Result<Rule, FieldErrors> {
        let mut e = FieldErrors::new();
        let kind = RuleKind::parse(&self.kind).unwrap_or_else(|| {
            e.add_choice("kind", RuleKind::NAMES);
            RuleKind::Keywords
        });
        let response = match self.response.trim().to_ascii_lowercase().as_str() {
            "" | "nothing" => Response::Nothing,
            "warn" => Response::Warn,
            "kick" => Response::Kick,
            other => match Step::parse(other) {
                Some(Step::Mute { seconds }) => Response::Mute { seconds },
                _ => {
                    e.add("response", "moderation.error.response");
                    Response::Nothing
                }
            },
        };
        let rule = Rule {
            id,
            kind,
            enabled: self.enabled.is_some(),
            words: split_words(&self.words),
            count: num(&self.count, 2, 100, "count", &mut e),
            seconds: num(&self.seconds, 1, 3600, "seconds", &mut e),
            consecutive: num(&self.consecutive, 2, 100, "consecutive", &mut e),
            hours: num(&self.hours, 1, 24 * 30, "hours", &mut e),
            delete: self.delete.is_some(),
            response,
        };
        if let Err(more) = rule.check() {
            for (f, keys) in more.0 {
                for k in keys {
                    e.add(&f, k);
                }
            }
        }
        e.into_result_fe(rule)
    }
}

impl Rule {
    /// The rule's own consistency: what its kind needs, bounded sizes.
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut e = FieldErrors::new();
        if self.words.len() > MAX_WORDS || self.words.iter().any(|w| w.chars().count() > MAX_WORD_LEN) {
            e.add("words", "moderation.error.words_size");
        }
        match self.kind {
            RuleKind::Keywords if self.words.is_empty() => e.add("words", "moderation.error.words_needed"),
            RuleKind::Links | RuleKind::Quarantine if self.words.iter().any(|w| normal_domain(w).is_none()) => {
                e.add("words", "moderation.error.domain")
            }
            RuleKind::Flood => {
                let timed = self.count > 0 && self.seconds > 0;
                if !timed && self.consecutive == 0 {
                    e.add("count", "moderation.error.flood_needed");
                }
                if (self.count > 0) != (self.seconds > 0) {
                    e.add("seconds", "moderation.error.flood_pair");
                }
                if self.count > 100 || self.consecutive > 100 || self.seconds > 3600 {
                    e.add("count", "error.number_range");
                }
            }
            _ => {}
        }
        if self.kind == RuleKind::Quarantine && !(1..=720).contains(&self.hours) {
            e.add("hours", "error.number_range");
        }
        if let Response::Mute { seconds } = self.response {
            if !(1..=366 * 86_400).contains(&seconds) {
                e.add("response", "moderation.error.response");
            }
        }
        if !self.delete && self.response == Response::Nothing {
            e.add("response", "moderation.error.does_nothing");
        }
        e.into_result_fe(())
    }

    /// `warn`, `mute 10m`, `kick`, `nothing` (the form's text).
    pub fn response_text(&self) -> String {
        match self.response {
            Response::Nothing => "nothing".into(),
            Response::Warn => "warn".into(),
            Response::Mute { seconds } => format!("mute {}", format_duration(seconds)),
            Response::Kick => "kick".into(),
        }
    }
}

/// `https://www.Example.com/` → `example.com`; `None` when it is not a domain.
pub fn normal_domain(s: &str) -> Option<String> {
    let mut s = s.trim().to_ascii_lowercase();
    for p in ["https://", "http://"] {
        if let Some(r) = s.strip_prefix(p) {
            s = r.to_string();
        }
    }
    let s = s.split('/').next().unwrap_or("").trim_start_matches("www.").trim_end_matches('.');
    let ok = s.contains('.')
        && s.len() <= 253
        && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    ok.then(|| s.to_string())
}

// ---------------------------------------------------------------- the judge

/// Who wrote a message, as the judge needs it.
#[derive(Clone, Copy, Debug)]
pub struct Author<'a> {
    /// The platform's user id.
    pub user_id: &'a str,
    /// owner | admin | member, as the bridge reported it.
    pub role: Option<&'a str>,
}

impl Author<'_> {
    /// Owners and admins are never acted on.
    pub fn exempt(&self) -> bool {
        matches!(self.role, Some("owner" | "admin" | "creator" | "administrator"))
    }
}

/// A rule that a message broke.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The rule's id (`Rule::id`) and its position in the set.
    pub rule_id: i64,
    pub index: usize,
    pub kind: RuleKind,
    pub delete: bool,
    pub response: Response,
    /// What was found (a keyword, a domain, a number), at most 100 characters.
    pub evidence: String,
    /// Quarantine: it holds only when the member joined less than this many hours ago, which
    /// the caller checks.
    pub joined_within_hours: Option<u32>,
}

enum Matcher {
    Keywords(AhoCorasick),
    Domains { allow: Vec<String>, links_only_new: Option<u32> },
    Phone,
    Contact,
    Invite { allow: Vec<String> },
    Flood { count: u32, seconds: u32, consecutive: u32 },
}

struct Compiled {
    rule: Rule,
    matcher: Matcher,
}

/// A rule set's moderation compiled once: keyword automata built, domains normalised.
pub struct Judge {
    rules: Vec<Compiled>,
    pub ladder: Ladder,
    /// Whether a flood rule needs this process's message counts.
    needs_flood: bool,
}

/// Whether a rule set with these rules can be compiled (keyword automata within their size
/// limit): checked when the rules are saved.
pub fn compile(rules: &[Rule], ladder: Ladder) -> Result<Judge, FieldErrors> {
    let mut out = Vec::with_capacity(rules.len());
    let mut e = FieldErrors::new();
    if rules.len() > MAX_RULES {
        e.add("rules", "moderation.error.too_many_rules");
    }
    for r in rules.iter().filter(|r| r.enabled) {
        let matcher = match r.kind {
            RuleKind::Keywords => {
                let words: Vec<String> = r.words.iter().map(|w| squeeze(w)).filter(|w| !w.is_empty()).collect();
                // Bounded by MAX_WORDS × MAX_WORD_LEN, checked when saved.
                match AhoCorasickBuilder::new().match_kind(MatchKind::LeftmostFirst).build(&words) {
                    Ok(ac) => Matcher::Keywords(ac),
                    Err(_) => {
                        e.add("words", "moderation.error.words_size");
                        continue;
                    }
                }
            }
            RuleKind::Links => Matcher::Domains {
                allow: r.words.iter().filter_map(|w| normal_domain(w)).collect(),
                links_only_new: None,
            },
            RuleKind::Quarantine => Matcher::Domains {
                allow: r.words.iter().filter_map(|w| normal_domain(w)).collect(),
                links_only_new: Some(r.hours.max(1)),
            },
            RuleKind::Phone => Matcher::Phone,
            RuleKind::Contact => Matcher::Contact,
            RuleKind::Invite => Matcher::Invite {
                allow: r.words.iter().map(|w| w.trim().to_ascii_lowercase().replace("https://", "")).collect(),
            },
            RuleKind::Flood => Matcher::Flood {
                count: r.count.min(100),
                seconds: r.seconds.min(3600),
                consecutive: r.consecutive.min(100),
            },
        };
        out.push(Compiled { rule: r.clone(), matcher });
    }
    let needs_flood = out.iter().any(|c| matches!(c.matcher, Matcher::Flood { .. }));
    e.into_result_fe(Judge { rules: out, ladder, needs_flood })
}

thread_local! {
    /// The normalised and squeezed text of the message being judged: reused, so judging a
    /// message allocates nothing once a thread has seen a long one.
    static BUFS: std::cell::RefCell<[String; 3]> = const { std::cell::RefCell::new([String::new(), String::new(), String::new()]) };
}

impl Judge {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules `text` breaks, in the rule set's order (empty: none, and nothing allocated).
    /// `chat` keys the flood counts (one per linked group); `now_ms` is the message's time.
    pub fn judge(&self, flood: &FloodTracker, chat: i64, author: Author<'_>, text: &str, now_ms: i64) -> Vec<Verdict> {
        let mut out = Vec::new();
        if self.rules.is_empty() || author.exempt() {
            return out;
        }
        let flood_hit =
            if self.needs_flood { flood.record(chat, author.user_id, now_ms, self.flood_window()) } else { None };
        BUFS.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else { return };
            let [norm, compact, squeezed] = &mut *b;
            normalize(text, norm, compact, squeezed);
            for (index, c) in self.rules.iter().enumerate() {
                let found: Option<(String, Option<u32>)> = match &c.matcher {
                    Matcher::Keywords(ac) => {
                        ac.find(squeezed.as_str()).map(|m| (squeezed[m.range()].to_string(), None))
                    }
                    Matcher::Domains { allow, links_only_new } => {
                        first_domain(norm, |host, _| !allowed(host, allow)).map(|h| (h.to_string(), *links_only_new))
                    }
                    Matcher::Phone => phone(norm).map(|p| (p, None)),
                    Matcher::Contact => contact(compact).map(|p| (p, None)),
                    Matcher::Invite { allow } => invite(norm, compact, allow).map(|p| (p, None)),
                    Matcher::Flood { count, seconds, consecutive } => flood_hit.and_then(|(in_window, in_row)| {
                        let timed = *count > 0 && in_window.is_some_and(|f| f.within(*seconds) >= *count);
                        let row = *consecutive > 0 && in_row >= *consecutive;
                        if timed || row {
                            flood.reset(chat, author.user_id);
                            Some((if timed { format!("{count}/{seconds}s") } else { format!("{consecutive}×") }, None))
                        } else {
                            None
                        }
                    }),
                };
                if let Some((mut evidence, joined)) = found {
                    if evidence.len() > 100 {
                        let cut = (0..=100).rev().find(|i| evidence.is_char_boundary(*i)).unwrap_or(0);
                        evidence.truncate(cut);
                    }
                    out.push(Verdict {
                        rule_id: c.rule.id,
                        index,
                        kind: c.rule.kind,
                        delete: c.rule.delete,
                        response: c.rule.response,
                        evidence,
                        joined_within_hours: joined,
                    });
                }
            }
        });
        out
    }

    /// The longest window any flood rule looks back (ms).
    fn flood_window(&self) -> i64 {
        self.rules
            .iter()
            .filter_map(|c| match c.matcher {
                Matcher::Flood { seconds, .. } => Some(i64::from(seconds) * 1000),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

fn allowed(host: &str, allow: &[String]) -> bool {
    let host = host.strip_prefix("www.").unwrap_or(host);
    allow.iter().any(|a| {
        host == a
            || (host.len() > a.len() && host.ends_with(a.as_str()) && host.as_bytes()[host.len() - a.len() - 1] == b'.')
    })
}

// ---------------------------------------------------------------- text normalisation

/// `text` lower-cased with full-width forms folded to ASCII and the usual ways of hiding a dot
/// (`。`, `[.]`, `(dot)`, ` 点 `, `example . com`) turned into `.`, runs of whitespace as one
/// space, into `norm`; the same without whitespace, into `compact`; and without the separators
/// people put between letters (`c-a-s-i-n-o`) too, into `squeezed`.
fn normalize(text: &str, norm: &mut String, compact: &mut String, squeezed: &mut String) {
    norm.clear();
    compact.clear();
    squeezed.clear();
    let mut it = text.char_indices();
    // Whitespace seen and not written yet; whitespace right after a joined dot is dropped.
    let mut space = false;
    let mut glue = false;
    while let Some((i, raw)) = it.next() {
        let c = fold(raw);
        let rest = &text[i + raw.len_utf8()..];
        if matches!(c, '[' | '(' | '{' | '【' | '「') {
            if let Some(n) = bracketed_dot(rest) {
                // Skip what the bracket held, up to its closing bracket.
                let mut skipped = 0;
                while skipped < n {
                    match it.next() {
                        Some((_, ch)) => skipped += ch.len_utf8(),
                        None => break,
                    }
                }
                norm.push('.');
                (space, glue) = (false, true);
                continue;
            }
        }
        let joined_dot = match c {
            '点' | '點' => ends_alnum(norm) && next_alnum(rest),
            // "example . com": a dot with spaces on both sides between letters.
            '.' => space && ends_alnum(norm) && rest.starts_with(char::is_whitespace) && next_alnum(rest),
            _ => false,
        };
        if joined_dot {
            norm.push('.');
            (space, glue) = (false, true);
            continue;
        }
        if c.is_whitespace() {
            space = !glue;
            continue;
        }
        if space && !norm.is_empty() {
            norm.push(' ');
        }
        (space, glue) = (false, false);
        norm.push(c);
    }
    for c in norm.chars().filter(|c| *c != ' ') {
        compact.push(c);
        if !matches!(c, '-' | '_' | '*' | '~' | '|' | '/' | '\\' | '·' | '•' | '.' | '丨' | '^' | '`' | '\'' | '"')
        {
            squeezed.push(c);
        }
    }
}

/// After the bracket at the start of `rest`'s predecessor: the bytes up to and including the
/// closing bracket when it held a dot.
fn bracketed_dot(rest: &str) -> Option<usize> {
    let lower: String = rest.chars().take(6).map(fold).collect();
    for inner in [".", "dot", "点", "。"] {
        for close in [']', ')', '}', '】', '」'] {
            let pat = format!("{inner}{close}");
            if lower.starts_with(&pat) {
                return Some(rest.chars().take(pat.chars().count()).map(char::len_utf8).sum());
            }
        }
    }
    None
}

fn ends_alnum(norm: &str) -> bool {
    norm.chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn next_alnum(rest: &str) -> bool {
    rest.chars().map(fold).find(|c| *c != ' ').is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Full-width ASCII to ASCII, ideographic full stops to `.`, ASCII lower-cased.
fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c).to_ascii_lowercase(),
        '\u{3000}' => ' ',
        '。' | '｡' | '︒' => '.',
        _ => c.to_ascii_lowercase(),
    }
}

/// A keyword as the squeezed text holds it.
fn squeeze(w: &str) -> String {
    let (mut n, mut c, mut s) = (String::new(), String::new(), String::new());
    normalize(w, &mut n, &mut c, &mut s);
    s
}

// ---------------------------------------------------------------- links

/// Top-level domains taken as a link without a scheme or `www.`.
const STRONG_TLDS: &[&str] = &[
    "com", "net", "org", "cn", "io", "xyz", "top", "info", "vip", "club", "site", "online", "shop", "app", "dev", "cc",
    "ly", "gl", "tk", "ru", "uk", "de", "jp", "hk", "tw", "kr", "sg", "biz", "ink", "pub", "pro", "live", "fun", "icu",
    "link", "store", "tech", "wang", "ltd", "group", "work", "cloud", "asia", "mobi", "win", "bid", "loan", "gov",
    "edu", "mil", "ws", "su", "ml", "ga", "cf", "gq", "cyou", "buzz", "press", "best", "today", "website", "space",
    "world", "news", "xin", "ren", "red", "kim", "vn", "th", "ph", "my", "id", "au", "ca", "fr", "nl", "eu", "br",
    "fm", "gg", "im", "tv", "sh", "la", "ai",
];
/// Top-level domains that are also words ("it.me", "go.to"): a link only with a scheme, `www.`,
/// a path, or three labels.
const WEAK_TLDS: &[&str] = &["me", "to", "in", "it", "is", "at", "be", "so", "no", "us", "do", "am", "co", "one"];

/// The first host in `norm` for which `want(host, path)` holds.
fn first_domain<'a>(norm: &'a str, mut want: impl FnMut(&'a str, &'a str) -> bool) -> Option<&'a str> {
    let b = norm.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_host_byte(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_host_byte(b[i]) {
            i += 1;
        }
        let run = norm[start..i].trim_matches(|c| c == '.' || c == '-');
        if !run.contains('.') {
            continue;
        }
        let schemed = norm[..start].ends_with("://");
        let path_end = {
            let mut j = i;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] < 0x80 {
                j += 1;
            }
            j
        };
        let path = &norm[i..path_end];
        let host = run;
        if is_link(host, schemed, path.starts_with('/')) && want(host, path) {
            return Some(host);
        }
    }
    None
}

fn is_host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

fn is_link(host: &str, schemed: bool, has_path: bool) -> bool {
    let labels = host.split('.').count();
    if host.split('.').any(str::is_empty) {
        return false;
    }
    let tld = host.rsplit('.').next().unwrap_or("");
    if tld.bytes().all(|c| c.is_ascii_digit()) {
        // An address like 1.2.3.4, or a number like 3.14 or a version 1.2.
        return labels == 4 && (schemed || has_path);
    }
    if schemed {
        return true;
    }
    if STRONG_TLDS.contains(&tld) {
        // "1.cn"-like tokens are too short to be domains people type.
        return host.len() >= 4;
    }
    WEAK_TLDS.contains(&tld) && (host.starts_with("www.") || has_path || labels >= 3)
}

// ---------------------------------------------------------------- numbers

fn digit_of(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '零' | '〇' => Some(0),
        '一' | '壹' | '①' | '⑴' | '幺' => Some(1),
        '二' | '贰' | '两' | '②' => Some(2),
        '三' | '叁' | '③' => Some(3),
        '四' | '肆' | '④' => Some(4),
        '五' | '伍' | '⑤' => Some(5),
        '六' | '陆' | '⑥' => Some(6),
        '七' | '柒' | '⑦' => Some(7),
        '八' | '捌' | '⑧' => Some(8),
        '九' | '玖' | '⑨' => Some(9),
        _ => None,
    }
}

/// Runs of digits (also Chinese numerals) with at most one separator between two digits; for
/// each, the digits and whether a `+` came before. Stops at the first run `f` takes.
fn digit_runs<T>(text: &str, mut f: impl FnMut(&[u8], bool) -> Option<T>) -> Option<T> {
    let mut buf = [0u8; 24];
    let mut n = 0usize;
    let mut plus = false;
    let mut gap = false;
    let mut prev: Option<char> = None;
    let mut chinese = 0usize;
    let flush = |buf: &[u8], plus: bool, chinese: usize, f: &mut dyn FnMut(&[u8], bool) -> Option<T>| {
        // A run of mostly Chinese numerals that short is ordinary text ("一二三").
        if buf.len() >= 5 && (chinese == 0 || buf.len() >= 7) {
            f(buf, plus)
        } else {
            None
        }
    };
    for c in text.chars() {
        if let Some(d) = digit_of(c) {
            if n == 0 {
                plus = prev == Some('+');
                chinese = 0;
            }
            if !c.is_ascii_digit() {
                chinese += 1;
            }
            if n < buf.len() {
                buf[n] = d + b'0';
            }
            n += 1;
            gap = false;
        } else if n > 0 && !gap && matches!(c, ' ' | '-' | '.' | '_' | '—') {
            gap = true;
        } else {
            if n > 0 {
                if let Some(t) = flush(&buf[..n.min(buf.len())], plus, chinese, &mut f) {
                    return Some(t);
                }
            }
            n = 0;
            gap = false;
        }
        prev = Some(c);
    }
    if n > 0 {
        return flush(&buf[..n.min(buf.len())], plus, chinese, &mut f);
    }
    None
}

fn is_mobile(d: &[u8]) -> bool {
    d.len() == 11 && d[0] == b'1' && (b'3'..=b'9').contains(&d[1])
}

fn phone(norm: &str) -> Option<String> {
    digit_runs(norm, |d, plus| {
        let cn = is_mobile(d) || (d.len() == 13 && d.starts_with(b"86") && is_mobile(&d[2..]));
        let intl = plus && (8..=15).contains(&d.len());
        (cn || intl).then(|| String::from_utf8_lossy(d).into_owned())
    })
}

/// Words that announce a QQ number.
const QQ_CUES: &[&str] = &["qq", "扣扣", "企鹅", "q号", "球球", "抠抠"];
/// Words that announce a WeChat id.
const WX_CUES: &[&str] =
    &["微信", "vx", "v信", "wx", "weixin", "wechat", "薇信", "威信", "微心", "加v", "+v", "➕v", "v:"];
/// Words that announce a group number.
const GROUP_CUES: &[&str] = &["群号", "q群", "qq群", "加群", "扣群"];

/// The text right after the first of `cues`, past separators (`:`, `：`, `号`, `是`).
fn following<'a>(squeezed: &'a str, cues: &[&str]) -> Option<&'a str> {
    let mut best: Option<usize> = None;
    for cue in cues {
        let mut from = 0;
        while let Some(p) = squeezed[from..].find(cue) {
            let end = from + p + cue.len();
            let rest = skip_separators(&squeezed[end..]);
            if id_start(rest) {
                best = Some(best.map_or(end, |b: usize| b.min(end)));
                break;
            }
            from = end;
        }
    }
    best.map(|b| skip_separators(&squeezed[b..]))
}

fn skip_separators(s: &str) -> &str {
    s.trim_start_matches([':', '：', '号', '是', '=', '+', '(', ')', '（', '）', '码', '#'])
}

fn id_start(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || digit_of(c).is_some())
}

fn contact(compact: &str) -> Option<String> {
    if let Some(rest) = following(compact, QQ_CUES) {
        if let Some(n) =
            digit_runs(rest, |d, _| (5..=11).contains(&d.len()).then(|| String::from_utf8_lossy(d).into_owned()))
        {
            if rest.chars().next().and_then(digit_of).is_some() {
                return Some(format!("QQ {n}"));
            }
        }
    }
    if let Some(rest) = following(compact, WX_CUES) {
        // A WeChat id: a letter then 5–19 letters, digits, - or _; or a phone number.
        let id: String =
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(20).collect();
        let valid_id = id.len() >= 6 && id.starts_with(|c: char| c.is_ascii_alphabetic());
        let digits =
            digit_runs(rest, |d, _| (5..=13).contains(&d.len()).then(|| String::from_utf8_lossy(d).into_owned()));
        if valid_id {
            return Some(format!("WeChat {id}"));
        }
        if let (Some(d), true) = (digits, rest.chars().next().and_then(digit_of).is_some()) {
            return Some(format!("WeChat {d}"));
        }
    }
    None
}

fn invite(norm: &str, compact: &str, allow: &[String]) -> Option<String> {
    let mut found = None;
    first_domain(norm, |host, path| {
        let host_l = host.strip_prefix("www.").unwrap_or(host);
        let path_l = path.trim_start_matches('/');
        let is_invite = match host_l {
            "qm.qq.com" | "qun.qq.com" | "jq.qq.com" | "qr.qq.com" | "u.wechat.com" => true,
            "t.me" | "telegram.me" | "telegram.dog" => path_l.starts_with('+') || path_l.starts_with("joinchat"),
            "weixin.qq.com" => path_l.starts_with("g/"),
            "work.weixin.qq.com" => path_l.starts_with("gm/") || path_l.starts_with("g/"),
            "discord.gg" | "chat.whatsapp.com" => true,
            "discord.com" => path_l.starts_with("invite"),
            _ => false,
        };
        if !is_invite {
            return false;
        }
        let link = format!("{host_l}{path}");
        if allow.iter().any(|a| !a.is_empty() && link.starts_with(a.trim_start_matches("www."))) {
            return false;
        }
        found = Some(link);
        true
    });
    if found.is_some() {
        return found;
    }
    let rest = following(compact, GROUP_CUES)?;
    rest.chars().next().and_then(digit_of)?;
    digit_runs(rest, |d, _| (5..=12).contains(&d.len()).then(|| format!("group {}", String::from_utf8_lossy(d))))
}

// ---------------------------------------------------------------- flood

/// Recent message times of one member in one chat (ms, newest last, at most [`FLOOD_KEEP`]).
#[derive(Default)]
struct Recent {
    times: std::collections::VecDeque<i64>,
    last: i64,
}

const FLOOD_KEEP: usize = 100;
const SHARDS: usize = 16;

/// Message counts per (chat, member) and who wrote last per chat, in memory, bounded
/// (`capacity` members; the stalest half is dropped when full). Per process: with several Shoal
/// processes behind a load balancer each sees only its share of a chat's messages, so a flood
/// spread over N processes needs up to N times the messages to be noticed (stick a bridge to
/// one process, or accept the slack).
pub struct FloodTracker {
    shards: Vec<Mutex<Shard>>,
    capacity: usize,
}

#[derive(Default)]
struct Shard {
    members: HashMap<(i64, u64), Recent>,
    /// Per chat: the last author and how many messages in a row they wrote.
    chats: HashMap<i64, (u64, u32)>,
}

/// The result of recording one message: the timed window (when a timed rule needs one) and the
/// run of consecutive messages.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    /// Times of the member's recent messages, newest first, as offsets (ms) from now.
    recent: [u32; FLOOD_KEEP],
    len: usize,
}

impl Flood {
    /// Messages (this one included) within the last `seconds`.
    pub fn within(&self, seconds: u32) -> u32 {
        let limit = u64::from(seconds) * 1000;
        self.recent[..self.len].iter().take_while(|d| u64::from(**d) < limit).count() as u32
    }
}

fn hash_user(user: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.hash(&mut h);
    h.finish()
}

impl Default for FloodTracker {
    fn default() -> Self {
        FloodTracker::new(200_000)
    }
}

impl FloodTracker {
    pub fn new(capacity: usize) -> FloodTracker {
        FloodTracker {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity: capacity.max(SHARDS),
        }
    }

    fn shard(&self, chat: i64) -> &Mutex<Shard> {
        &self.shards[(chat.unsigned_abs() as usize) % SHARDS]
    }

    /// Records a message at `now_ms`; the member's recent messages within `window_ms` and the
    /// length of their run of consecutive messages in the chat.
    pub fn record(&self, chat: i64, user: &str, now_ms: i64, window_ms: i64) -> Option<(Option<Flood>, u32)> {
        let user = hash_user(user);
        let Ok(mut s) = self.shard(chat).lock() else { return None };
        let per_shard = self.capacity / SHARDS;
        if s.members.len() >= per_shard {
            // Drop the stalest half: a member silent that long has no flood to finish.
            let mut lasts: Vec<i64> = s.members.values().map(|r| r.last).collect();
            let mid = lasts.len() / 2;
            let (_, cut, _) = lasts.select_nth_unstable(mid);
            let cut = *cut;
            s.members.retain(|_, r| r.last > cut);
            if s.chats.len() >= per_shard {
                s.chats.clear();
            }
        }
        let run = {
            let e = s.chats.entry(chat).or_insert((user, 0));
            if e.0 == user {
                e.1 = e.1.saturating_add(1);
            } else {
                *e = (user, 1);
            }
            e.1
        };
        let window = if window_ms > 0 {
            let r = s.members.entry((chat, user)).or_default();
            r.last = now_ms;
            while r.times.front().is_some_and(|t| now_ms - *t >= window_ms) || r.times.len() >= FLOOD_KEEP {
                r.times.pop_front();
            }
            r.times.push_back(now_ms);
            let mut f = Flood { recent: [0; FLOOD_KEEP], len: 0 };
            for t in r.times.iter().rev() {
                f.recent[f.len] = (now_ms - *t).clamp(0, u32::MAX as i64) as u32;
                f.len += 1;
            }
            Some(f)
        } else {
            None
        };
        Some((window, run))
    }

    /// Forgets a member's counts after a flood was acted on, so that one burst is one offence.
    pub fn reset(&self, chat: i64, user: &str) {
        let user = hash_user(user);
        if let Ok(mut s) = self.shard(chat).lock() {
            s.members.remove(&(chat, user));
            if let Some(e) = s.chats.get_mut(&chat) {
                if e.0 == user {
                    e.1 = 0;
                }
            }
        }
    }

    /// Members tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok().map(|s| s.members.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------- what is done

/// What the bot does about one verdict, once the member's active warnings are known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub delete: bool,
    /// The warning, mute or kick (None: deletion only).
    pub step: Option<Step>,
    /// A warning row is written (a strike on the ladder).
    pub strike: Option<u32>,
    /// How many strikes the ladder has.
    pub of: u32,
    /// This is the step before the last: the member is told what comes next.
    pub last_notice: Option<Step>,
}

/// What `v` means for a member with `active` unexpired, unpardoned warnings.
pub fn decide(v: &Verdict, ladder: &Ladder, active: u32) -> Decision {
    let of = ladder.steps.len() as u32;
    match v.response {
        Response::Nothing => Decision { delete: v.delete, step: None, strike: None, of, last_notice: None },
        Response::Mute { seconds } => {
            Decision { delete: v.delete, step: Some(Step::Mute { seconds }), strike: None, of, last_notice: None }
        }
        Response::Kick => Decision { delete: v.delete, step: Some(Step::Kick), strike: None, of, last_notice: None },
        Response::Warn => {
            let strike = active + 1;
            let (step, before_last) = ladder.step(strike);
            Decision {
                delete: v.delete,
                step: Some(step),
                strike: Some(strike),
                of,
                last_notice: before_last.then(|| *ladder.steps.last().unwrap_or(&Step::Kick)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: RuleKind, words: &[&str]) -> Rule {
        Rule {
            id: 1,
            kind,
            enabled: true,
            words: words.iter().map(|w| w.to_string()).collect(),
            count: 0,
            seconds: 0,
            consecutive: 0,
            hours: 24,
            delete: true,
            response: Response::Warn,
        }
    }

    fn hits(r: Rule, text: &str) -> Option<String> {
        let j = compile(&[r], Ladder::default()).unwrap();
        let t = FloodTracker::default();
        j.judge(&t, 1, Author { user_id: "u", role: None }, text, 0).into_iter().next().map(|v| v.evidence)
    }

    #[test]
    fn links_outside_the_allow_list_are_found_also_when_hidden() {
        let r = || rule(RuleKind::Links, &["example.org", "https://www.shoal.dev/"]);
        for (text, host) in [
            ("see https://evil.test/x", Some("evil.test")),
            ("go to spam.com now", Some("spam.com")),
            ("ｓｐａｍ。ｃｏｍ", Some("spam.com")),
            ("spam[.]com", Some("spam.com")),
            ("spam(dot)com", Some("spam.com")),
            ("spam 点 com", Some("spam.com")),
            ("spam . com", Some("spam.com")),
            ("WWW.Spam.Cn", Some("www.spam.cn")),
            ("docs at https://example.org/a and sub.example.org", None),
            ("www.shoal.dev rocks", None),
            ("it.me is a word pair, so is go.to", None),
            ("join t.me/somechannel", Some("t.me")),
            ("pi is 3.14 and v1.2.3", None),
            ("我到家了。明天见", None),
            ("notexample.org", Some("notexample.org")),
            ("签到", None),
        ] {
            assert_eq!(hits(r(), text).as_deref(), host, "{text}");
        }
    }

    #[test]
    fn keywords_match_through_case_width_and_spacing() {
        let r = || rule(RuleKind::Keywords, &["代开发票", "Casino"]);
        assert_eq!(hits(r(), "本店 代 开 发 票").as_deref(), Some("代开发票"));
        assert_eq!(hits(r(), "ＣＡＳＩＮＯ bonus").as_deref(), Some("casino"));
        assert_eq!(hits(r(), "c-a-s-i-n-o").as_deref(), Some("casino"));
        assert_eq!(hits(r(), "发票已开好"), None);
    }

    #[test]
    fn phone_numbers_are_found_in_their_usual_shapes() {
        let r = || rule(RuleKind::Phone, &[]);
        assert!(hits(r(), "call 13812345678").is_some());
        assert!(hits(r(), "电话 138-1234-5678").is_some());
        assert!(hits(r(), "+86 138 1234 5678").is_some());
        assert!(hits(r(), "一三八一二三四五六七八").is_some());
        assert!(hits(r(), "+44 20 7946 0958").is_some());
        assert!(hits(r(), "订单 12345 共 3 件").is_none());
        assert!(hits(r(), "12345678901234567").is_none());
    }

    #[test]
    fn qq_and_wechat_contacts_and_other_groups_invites_are_found() {
        let c = || rule(RuleKind::Contact, &[]);
        assert_eq!(hits(c(), "加我QQ：12345678").as_deref(), Some("QQ 12345678"));
        assert_eq!(hits(c(), "扣扣 8765 4321").as_deref(), Some("QQ 87654321"));
        assert_eq!(hits(c(), "vx: abc_1234").as_deref(), Some("WeChat abc_1234"));
        assert_eq!(hits(c(), "加 微 信 13812345678").as_deref(), Some("WeChat 13812345678"));
        assert!(hits(c(), "我的qq坏了").is_none());
        assert!(hits(c(), "wx好用吗").is_none());
        let i = || rule(RuleKind::Invite, &["t.me/+OurOwn"]);
        assert!(hits(i(), "快来 https://qm.qq.com/q/AbCd").is_some());
        assert!(hits(i(), "t.me/+XyZ123 join").is_some());
        assert!(hits(i(), "https://t.me/joinchat/AAAA").is_some());
        assert!(hits(i(), "https://t.me/+ourown").is_none(), "allow-listed");
        assert!(hits(i(), "t.me/shoalnews").is_none(), "a public channel is not a group invite");
        assert_eq!(hits(i(), "Q群：123456789").as_deref(), Some("group 123456789"));
    }

    #[test]
    fn quarantine_verdicts_say_the_join_window() {
        let j = compile(&[rule(RuleKind::Quarantine, &[])], Ladder::default()).unwrap();
        let v = j.judge(&FloodTracker::default(), 1, Author { user_id: "u", role: None }, "x.com/y", 0);
        assert_eq!(v[0].joined_within_hours, Some(24));
        assert!(j.judge(&FloodTracker::default(), 1, Author { user_id: "u", role: None }, "hello", 0).is_empty());
    }

    #[test]
    fn admins_and_owners_are_exempt() {
        let j = compile(&[rule(RuleKind::Keywords, &["spam"])], Ladder::default()).unwrap();
        let t = FloodTracker::default();
        for role in ["owner", "admin", "creator", "administrator"] {
            assert!(j.judge(&t, 1, Author { user_id: "u", role: Some(role) }, "spam", 0).is_empty());
        }
        assert_eq!(j.judge(&t, 1, Author { user_id: "u", role: Some("member") }, "spam", 0).len(), 1);
    }

    #[test]
    fn floods_count_messages_in_a_window_and_in_a_row_and_one_burst_is_one_offence() {
        let mut r = rule(RuleKind::Flood, &[]);
        r.count = 5;
        r.seconds = 10;
        let j = compile(&[r], Ladder::default()).unwrap();
        let t = FloodTracker::default();
        let a = Author { user_id: "u", role: None };
        let flagged: Vec<bool> = (0..10).map(|i| !j.judge(&t, 7, a, "hi", i * 1000).is_empty()).collect();
        assert_eq!(flagged, [false, false, false, false, true, false, false, false, false, true]);
        // Slow enough: never.
        let slow: usize = (0..20).map(|i| j.judge(&t, 8, a, "hi", i * 3000).len()).sum();
        assert_eq!(slow, 0);

        let mut r = rule(RuleKind::Flood, &[]);
        r.consecutive = 3;
        let j = compile(&[r], Ladder::default()).unwrap();
        let b = Author { user_id: "b", role: None };
        let seq = [a, a, b, a, a, a];
        let flagged: Vec<bool> = seq.iter().map(|w| !j.judge(&t, 9, *w, "x", 0).is_empty()).collect();
        assert_eq!(flagged, [false, false, false, false, false, true]);
    }

    #[test]
    fn the_flood_tracker_stays_bounded() {
        let t = FloodTracker::new(1600);
        for u in 0..10_000 {
            t.record(u % 50, &u.to_string(), u, 10_000);
        }
        assert!(t.len() <= 1600, "{}", t.len());
    }

    #[test]
    fn the_ladder_escalates_and_warns_before_the_last_step() {
        let l = Ladder::default();
        let v = Verdict {
            rule_id: 1,
            index: 0,
            kind: RuleKind::Links,
            delete: true,
            response: Response::Warn,
            evidence: String::new(),
            joined_within_hours: None,
        };
        let steps: Vec<(Option<Step>, Option<Step>)> =
            (0..6).map(|a| decide(&v, &l, a)).map(|d| (d.step, d.last_notice)).collect();
        assert_eq!(
            steps,
            [
                (Some(Step::Warn), None),
                (Some(Step::Warn), None),
                (Some(Step::Mute { seconds: 3600 }), Some(Step::Kick)),
                (Some(Step::Kick), None),
                (Some(Step::Kick), None),
                (Some(Step::Kick), None),
            ]
        );
        assert_eq!(decide(&v, &l, 2).strike, Some(3));
        let mute = Verdict { response: Response::Mute { seconds: 60 }, ..v };
        assert_eq!(decide(&mute, &l, 5).step, Some(Step::Mute { seconds: 60 }));
        assert_eq!(decide(&mute, &l, 5).strike, None);
    }

    #[test]
    fn ladders_and_rules_parse_from_their_forms() {
        let l = Ladder::parse(&ModerationRaw {
            ladder: "warn → warn → mute 1h → kick".into(),
            warn_days: "".into(),
            exempt_tags: "vip, 托".into(),
        })
        .unwrap();
        assert_eq!(l.steps, Ladder::default().steps);
        assert_eq!(l.warn_days, 30);
        assert_eq!(l.exempt_tags, ["vip", "托"]);
        assert_eq!(l.text(), "warn, warn, mute:3600, kick");
        assert_eq!(Ladder::parse(&ModerationRaw { ladder: l.text(), ..Default::default() }).unwrap().steps, l.steps);
        assert!(Ladder::parse(&ModerationRaw { ladder: "warn, explode".into(), ..Default::default() }).is_err());
        assert!(Ladder::parse(&ModerationRaw { warn_days: "0".into(), ..Default::default() }).is_err());
        assert_eq!(parse_duration("90m"), Some(5400));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(format_duration(5400), "90m");
        let raw = RuleRaw {
            kind: "flood".into(),
            enabled: Some("on".into()),
            count: "5".into(),
            response: "mute 10m".into(),
            ..Default::default()
        };
        let e = raw.parse(0).unwrap_err();
        assert!(e.has("seconds"));
        let raw = RuleRaw { seconds: "10".into(), ..raw };
        let r = raw.parse(0).unwrap();
        assert_eq!(r.response, Response::Mute { seconds: 600 });
        assert!(!r.delete);
        let e = RuleRaw {
            kind: "links".into(),
            words: "not a domain".into(),
            response: "warn".into(),
            ..Default::default()
        }
        .parse(0)
        .unwrap_err();
        assert!(e.has("words"));
    }
}
