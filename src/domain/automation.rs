//! Bot automation a rule set carries, as pure rules: the welcome message (template, batching
//! window), keyword auto-replies (exact / contains / bounded regular expression, cooldown,
//! enabled hours, priority) and the entry threshold (入群门槛) that judges join requests.
//! Forms and JSON bodies fill the `*Raw` structs; `parse` gives the valid spec or field errors.

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::group::valid_http_url;
use super::{optional_text, required_text, text_enum};
use crate::error::FieldErrors;

/// Words members type that Shoal answers itself: a keyword reply never answers them (the
/// check-in keywords and the make-up keyword of the group come on top).
pub const BUILTIN_COMMANDS: &[&str] = &["我的", "邀请", "/me", "/invite"];

// ---------------------------------------------------------------------------------------------
// Welcome

/// The longest welcome template.
pub const MAX_TEMPLATE_CHARS: usize = 1000;

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct WelcomeRaw {
    /// "on"/"true" or empty; the API sends a boolean.
    #[serde(deserialize_with = "lenient_bool")]
    pub enabled: bool,
    pub template: String,
    pub image_url: String,
    pub rules_link: String,
    pub delay_secs: String,
    pub window_secs: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub delete_previous: bool,
}

/// A rule set's welcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Welcome {
    pub enabled: bool,
    /// Placeholders: `{name}` (a real mention of each new member), `{group}`, `{rules_link}`,
    /// `{checkin_keyword}`.
    pub template: String,
    pub image_url: Option<String>,
    pub rules_link: String,
    /// Seconds to wait after the batching window before posting.
    pub delay_secs: i32,
    /// Joins within this many seconds of the first are welcomed in one message.
    pub window_secs: i32,
    /// Delete the previous welcome when posting a new one.
    pub delete_previous: bool,
}

pub const DEFAULT_WINDOW_SECS: i32 = 60;

/// Numbers typed as text: empty gives `default`, else it must lie in `range`.
fn number(input: &str, default: i32, range: std::ops::RangeInclusive<i32>, field: &str, e: &mut FieldErrors) -> i32 {
    let s = input.trim();
    if s.is_empty() {
        return default;
    }
    match s.parse::<i32>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            e.add(field, "error.number_range");
            default
        }
    }
}

fn url(input: &str, field: &str, e: &mut FieldErrors) -> Option<String> {
    let s = input.trim();
    if s.is_empty() {
        None
    } else if valid_http_url(s) {
        Some(s.to_string())
    } else {
        e.add(field, "automation.error.url");
        None
    }
}

impl WelcomeRaw {
    pub fn of(w: &Welcome) -> WelcomeRaw {
        WelcomeRaw {
            enabled: w.enabled,
            template: w.template.clone(),
            image_url: w.image_url.clone().unwrap_or_default(),
            rules_link: w.rules_link.clone(),
            delay_secs: w.delay_secs.to_string(),
            window_secs: w.window_secs.to_string(),
            delete_previous: w.delete_previous,
        }
    }

    pub fn parse(&self) -> Result<Welcome, FieldErrors> {
        let mut e = FieldErrors::new();
        let template = required_text(&self.template, MAX_TEMPLATE_CHARS, "template", &mut e);
        let image_url = url(&self.image_url, "image_url", &mut e);
        let rules_link = optional_text(&self.rules_link, 500, "rules_link", &mut e);
        let delay_secs = number(&self.delay_secs, 0, 0..=3600, "delay_secs", &mut e);
        let window_secs = number(&self.window_secs, DEFAULT_WINDOW_SECS, 0..=3600, "window_secs", &mut e);
        fields_ok(
            e,
            Welcome {
                enabled: self.enabled,
                template,
                image_url,
                rules_link,
                delay_secs,
                window_secs,
                delete_previous: self.delete_previous,
            },
        )
    }
}

/// The values a welcome's placeholders take, each already escaped for the platform (the
/// names as the platform's mentions).
pub struct WelcomeValues<'a> {
    pub mentions: &'a [String],
    pub group: &'a str,
    pub rules_link: &'a str,
    pub checkin_keyword: &'a str,
    /// Between two names: "、" in Chinese, ", " otherwise.
    pub separator: &'a str,
}

impl Welcome {
    /// The message: the template with every placeholder replaced in one pass (a value holding
    /// `{group}` is not replaced again).
    pub fn render(&self, v: &WelcomeValues<'_>) -> String {
        let names = v.mentions.join(v.separator);
        super::checkin::render(
            &self.template,
            &[
                ("name", names),
                ("group", v.group.to_string()),
                ("rules_link", v.rules_link.to_string()),
                ("checkin_keyword", v.checkin_keyword.to_string()),
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Keyword replies

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum MatchKind {
    /// The whole message (trimmed, case-insensitive).
    Exact,
    /// Anywhere in the message (case-insensitive).
    Contains,
    /// A regular expression (the `regex` crate: linear time; compiled size bounded).
    Regex,
}

impl MatchKind {
    pub const ALL: [MatchKind; 3] = [MatchKind::Exact, MatchKind::Contains, MatchKind::Regex];
    pub const NAMES: &'static [&'static str] = &["exact", "contains", "regex"];
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::Contains => "contains",
            MatchKind::Regex => "regex",
        }
    }
    pub fn parse(s: &str) -> Option<MatchKind> {
        MatchKind::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}
text_enum!(MatchKind);

/// The longest pattern, and the most memory a compiled regular expression may take: a pattern
/// past either is refused when it is saved, never at match time.
pub const MAX_PATTERN_CHARS: usize = 200;
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
pub const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;

/// Compiles a keyword pattern with the size limits; `None` when it is refused.
pub fn compile_regex(pattern: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .nest_limit(20)
        .build()
        .ok()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct KeywordRaw {
    /// exact | contains | regex
    pub match_kind: String,
    pub pattern: String,
    pub reply_text: String,
    pub image_url: String,
    pub cooldown_secs: String,
    /// Local hour (0–23) from which the rule answers, in the group's time zone; empty: always.
    pub hours_from: String,
    /// Local hour (1–24) until which it answers.
    pub hours_to: String,
    pub priority: String,
}

/// A valid keyword reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeywordSpec {
    pub match_kind: MatchKind,
    pub pattern: String,
    pub reply_text: String,
    pub image_url: Option<String>,
    pub cooldown_secs: i32,
    pub hours_from: Option<i16>,
    pub hours_to: Option<i16>,
    pub priority: i32,
}

impl KeywordRaw {
    pub fn parse(&self) -> Result<KeywordSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let match_kind =
            MatchKind::parse(if self.match_kind.trim().is_empty() { "contains" } else { self.match_kind.as_str() })
                .unwrap_or_else(|| {
                    e.add_choice("match_kind", MatchKind::NAMES);
                    MatchKind::Contains
                });
        let pattern = required_text(&self.pattern, MAX_PATTERN_CHARS, "pattern", &mut e);
        if match_kind == MatchKind::Regex
            && !pattern.is_empty()
            && !e.has("pattern")
            && compile_regex(&pattern).is_none()
        {
            e.add("pattern", "automation.error.regex");
        }
        let reply_text = optional_text(&self.reply_text, 2000, "reply_text", &mut e);
        let image_url = url(&self.image_url, "image_url", &mut e);
        if reply_text.is_empty() && image_url.is_none() && !e.has("image_url") {
            e.add("reply_text", "automation.error.reply_needed");
        }
        let cooldown_secs = number(&self.cooldown_secs, 60, 0..=86_400, "cooldown_secs", &mut e);
        let from = self.hours_from.trim();
        let to = self.hours_to.trim();
        let (hours_from, hours_to) = if from.is_empty() && to.is_empty() {
            (None, None)
        } else {
            let f = number(from, 0, 0..=23, "hours_from", &mut e) as i16;
            let t = number(to, 24, 1..=24, "hours_to", &mut e) as i16;
            if f == t {
                e.add("hours_to", "automation.error.hours");
            }
            (Some(f), Some(t))
        };
        let priority = number(&self.priority, 0, -1000..=1000, "priority", &mut e);
        fields_ok(
            e,
            KeywordSpec { match_kind, pattern, reply_text, image_url, cooldown_secs, hours_from, hours_to, priority },
        )
    }
}

/// A keyword reply ready to match: its pattern compiled once (per rule-set version).
#[derive(Clone, Debug)]
pub struct Keyword {
    pub id: i64,
    pub spec: KeywordSpec,
    lowered: String,
    regex: Option<regex::Regex>,
}

impl Keyword {
    /// `None` when a stored regular expression no longer compiles (it was checked when saved).
    pub fn new(id: i64, spec: KeywordSpec) -> Option<Keyword> {
        let regex = match spec.match_kind {
            MatchKind::Regex => Some(compile_regex(&spec.pattern)?),
            _ => None,
        };
        Some(Keyword { id, lowered: spec.pattern.trim().to_lowercase(), spec, regex })
    }

    pub fn matches(&self, text: &str) -> bool {
        match self.spec.match_kind {
            MatchKind::Exact => text.trim().to_lowercase() == self.lowered,
            MatchKind::Contains => text.to_lowercase().contains(&self.lowered),
            MatchKind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(text)),
        }
    }

    /// Whether the rule answers at `at` in `tz` (hours `[from, to)`, over midnight when
    /// `from > to`).
    pub fn active_at(&self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> bool {
        let (Some(from), Some(to)) = (self.spec.hours_from, self.spec.hours_to) else { return true };
        let h = at.with_timezone(&tz).hour() as i16;
        if from < to {
            (from..to).contains(&h)
        } else {
            h >= from || h < to
        }
    }
}

/// The keyword reply that answers `text`: none for a built-in command (`reserved`: the group's
/// check-in and make-up keywords too), else the matching rule active now with the highest
/// priority (then the oldest). `keywords` is sorted by priority, highest first, then id.
pub fn pick_keyword<'a>(
    keywords: &'a [Keyword],
    text: &str,
    reserved: &[&str],
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Option<&'a Keyword> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let lowered = t.to_lowercase();
    let builtin = |w: &str| {
        let w = w.trim().to_lowercase();
        !w.is_empty() && (lowered == w || lowered.starts_with(&format!("{w} ")))
    };
    if BUILTIN_COMMANDS.iter().any(|w| builtin(w)) || reserved.iter().any(|w| builtin(w)) {
        return None;
    }
    keywords.iter().find(|k| k.matches(t) && k.active_at(at, tz))
}

// ---------------------------------------------------------------------------------------------
// Entry threshold

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EntryMode {
    /// Approve every request.
    ApproveAll,
    /// Approve when the request's answer contains one of the keywords; else `otherwise`.
    Keyword,
    /// Hold every request for an operator (the approval queue).
    Manual,
    /// Telegram: the bot sends the applicant a link to a questionnaire (`questions`); answering
    /// it approves the request. Where the bot cannot write to the applicant (QQ through OneBot,
    /// a request without `user_chat_id`) the request is held for an operator as in `manual`.
    Questionnaire,
}

impl EntryMode {
    pub const ALL: [EntryMode; 4] =
        [EntryMode::ApproveAll, EntryMode::Keyword, EntryMode::Manual, EntryMode::Questionnaire];
    pub const NAMES: &'static [&'static str] = &["approve_all", "keyword", "manual", "questionnaire"];
    pub fn as_str(self) -> &'static str {
        match self {
            EntryMode::ApproveAll => "approve_all",
            EntryMode::Keyword => "keyword",
            EntryMode::Manual => "manual",
            EntryMode::Questionnaire => "questionnaire",
        }
    }
    pub fn parse(s: &str) -> Option<EntryMode> {
        EntryMode::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}
text_enum!(EntryMode);

/// What happens to a request the keyword rule does not approve, and to a held request that
/// nobody answered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Fallback {
    Decline,
    /// Keyword mode: hold for an operator. On expiry: leave it unanswered (the platform lets it
    /// lapse) and mark it expired.
    Hold,
}

impl Fallback {
    pub const ALL: [Fallback; 2] = [Fallback::Decline, Fallback::Hold];
    pub const NAMES: &'static [&'static str] = &["decline", "hold"];
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Decline => "decline",
            Fallback::Hold => "hold",
        }
    }
    pub fn parse(s: &str) -> Option<Fallback> {
        Fallback::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}
text_enum!(Fallback);

#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default)]
pub struct EntryRaw {
    pub mode: String,
    /// One keyword a line (or separated by commas).
    pub keywords: String,
    pub otherwise: String,
    pub decline_reason: String,
    pub expire_hours: String,
    pub on_expiry: String,
    /// Questionnaire mode: one question a line.
    pub questions: String,
}

/// A rule set's entry threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryPolicy {
    pub mode: EntryMode,
    pub keywords: Vec<String>,
    pub otherwise: Fallback,
    pub decline_reason: String,
    /// Hours a held request waits for an operator (or for the applicant's answers).
    pub expire_hours: i32,
    pub on_expiry: Fallback,
    /// Questionnaire mode: what the applicant is asked (1 to 10 questions).
    #[serde(default)]
    pub questions: Vec<String>,
}

impl EntryRaw {
    pub fn of(p: &EntryPolicy) -> EntryRaw {
        EntryRaw {
            mode: p.mode.as_str().into(),
            keywords: p.keywords.join("\n"),
            otherwise: p.otherwise.as_str().into(),
            decline_reason: p.decline_reason.clone(),
            expire_hours: p.expire_hours.to_string(),
            on_expiry: p.on_expiry.as_str().into(),
            questions: p.questions.join("\n"),
        }
    }

    pub fn parse(&self) -> Result<EntryPolicy, FieldErrors> {
        let mut e = FieldErrors::new();
        let mode = EntryMode::parse(&self.mode).unwrap_or_else(|| {
            e.add_choice("mode", EntryMode::NAMES);
            EntryMode::Manual
        });
        let mut keywords: Vec<String> = Vec::new();
        for k in self.keywords.split(['\n', ',', '，']) {
            let k = k.trim();
            if k.is_empty() || keywords.iter().any(|x| x == k) {
                continue;
            }
            if k.chars().count() > 50 || k.contains('\0') {
                e.add("keywords", "automation.error.keyword_too_long");
                break;
            }
            keywords.push(k.to_string());
        }
        if keywords.len() > 50 {
            e.add("keywords", "automation.error.too_many_keywords");
        }
        if mode == EntryMode::Keyword && keywords.is_empty() {
            e.add("keywords", "automation.error.keywords_needed");
        }
        let fallback = |s: &str, field: &str, e: &mut FieldErrors| {
            if s.trim().is_empty() {
                return Fallback::Decline;
            }
            Fallback::parse(s).unwrap_or_else(|| {
                e.add_choice(field, Fallback::NAMES);
                Fallback::Decline
            })
        };
        let otherwise = fallback(&self.otherwise, "otherwise", &mut e);
        let on_expiry = fallback(&self.on_expiry, "on_expiry", &mut e);
        let decline_reason = optional_text(&self.decline_reason, 200, "decline_reason", &mut e);
        let expire_hours = number(&self.expire_hours, 72, 1..=720, "expire_hours", &mut e);
        let questions = super::questionnaire::parse_questions(&self.questions, &mut e);
        if mode == EntryMode::Questionnaire && questions.is_empty() && !e.has("questions") {
            e.add("questions", "auto2.error.questions_needed");
        }
        fields_ok(e, EntryPolicy { mode, keywords, otherwise, decline_reason, expire_hours, on_expiry, questions })
    }
}

/// What the policy says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Decline,
    Hold,
    /// Send the applicant the questionnaire (held for an operator where that cannot be done).
    Ask,
}

impl EntryPolicy {
    /// The verdict on a request whose applicant wrote `answer` (case-insensitive containment).
    pub fn judge(&self, answer: &str) -> Verdict {
        let or_else = match self.otherwise {
            Fallback::Decline => Verdict::Decline,
            Fallback::Hold => Verdict::Hold,
        };
        match self.mode {
            EntryMode::ApproveAll => Verdict::Approve,
            EntryMode::Manual => Verdict::Hold,
            EntryMode::Questionnaire => Verdict::Ask,
            EntryMode::Keyword => {
                let a = answer.to_lowercase();
                if self.keywords.iter().any(|k| a.contains(&k.to_lowercase())) {
                    Verdict::Approve
                } else {
                    or_else
                }
            }
        }
    }
}

/// Where a join request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Declined,
    Expired,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 4] =
        [RequestStatus::Pending, RequestStatus::Approved, RequestStatus::Declined, RequestStatus::Expired];
    pub const NAMES: &'static [&'static str] = &["pending", "approved", "declined", "expired"];
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Declined => "declined",
            RequestStatus::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<RequestStatus> {
        RequestStatus::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}
text_enum!(RequestStatus);

/// A checkbox as a form sends it ("on", "true", "1") or as JSON (a boolean); absent is false.
pub fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        B(bool),
        S(String),
    }
    Ok(match Option::<B>::deserialize(d)? {
        Some(B::B(b)) => b,
        Some(B::S(s)) => matches!(s.trim(), "on" | "true" | "1" | "yes"),
        None => false,
    })
}

/// `v` when no field has an error, else the errors.
fn fields_ok<T>(e: FieldErrors, v: T) -> Result<T, FieldErrors> {
    if e.is_empty() {
        Ok(v)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn kw(id: i64, kind: &str, pattern: &str, priority: &str) -> Keyword {
        let spec = KeywordRaw {
            match_kind: kind.into(),
            pattern: pattern.into(),
            reply_text: "r".into(),
            priority: priority.into(),
            ..Default::default()
        }
        .parse()
        .unwrap();
        Keyword::new(id, spec).unwrap()
    }

    #[test]
    fn an_oversized_or_invalid_regex_is_refused_when_saved() {
        for p in [
            "(a{1000}){1000}",
            "\\w{500}\\w{500}\\w{500}",
            "(unclosed",
            "((((((((((((((((((((((a))))))))))))))))))))))",
        ] {
            let e = KeywordRaw {
                match_kind: "regex".into(),
                pattern: p.into(),
                reply_text: "x".into(),
                ..Default::default()
            }
            .parse()
            .unwrap_err();
            assert!(e.has("pattern"), "{p} was accepted");
        }
        assert!(KeywordRaw {
            match_kind: "regex".into(),
            pattern: "价格|多少钱".into(),
            reply_text: "x".into(),
            ..Default::default()
        }
        .parse()
        .is_ok());
    }

    #[test]
    fn keywords_match_by_kind_and_builtins_keep_precedence() {
        let ks = [kw(1, "regex", "^(价格|多少钱)", "5"), kw(2, "contains", "价格", "1"), kw(3, "exact", "我的", "9")];
        let mut sorted = ks.to_vec();
        sorted.sort_by(|a, b| b.spec.priority.cmp(&a.spec.priority).then(a.id.cmp(&b.id)));
        let at = Utc::now();
        let tz = chrono_tz::Asia::Shanghai;
        assert_eq!(pick_keyword(&sorted, "价格是多少", &[], at, tz).map(|k| k.id), Some(1));
        assert_eq!(pick_keyword(&sorted, "问下价格", &[], at, tz).map(|k| k.id), Some(2));
        assert_eq!(pick_keyword(&sorted, "我的", &[], at, tz).map(|k| k.id), None, "a built-in command");
        assert_eq!(pick_keyword(&sorted, "价格", &["价格"], at, tz).map(|k| k.id), None, "the group's own keyword");
    }

    #[test]
    fn enabled_hours_are_local_and_may_cross_midnight() {
        let mut k = kw(1, "contains", "x", "0");
        k.spec.hours_from = Some(22);
        k.spec.hours_to = Some(2);
        let tz = chrono_tz::Asia::Shanghai;
        let at = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap(); // UTC+8
        assert!(k.active_at(at(15), tz)); // 23:00 local
        assert!(k.active_at(at(17), tz)); // 01:00 local
        assert!(!k.active_at(at(4), tz)); // 12:00 local
    }

    #[test]
    fn the_entry_policy_judges_the_answer() {
        let p = EntryRaw {
            mode: "keyword".into(),
            keywords: "小红书\n朋友".into(),
            otherwise: "hold".into(),
            ..Default::default()
        }
        .parse()
        .unwrap();
        assert_eq!(p.judge("从小红书看到的"), Verdict::Approve);
        assert_eq!(p.judge("随便"), Verdict::Hold);
        assert!(EntryRaw { mode: "keyword".into(), ..Default::default() }.parse().unwrap_err().has("keywords"));
    }

    #[test]
    fn a_welcome_names_everyone_once() {
        let w = WelcomeRaw { template: "欢迎 {name} 加入 {group}！".into(), ..Default::default() }.parse().unwrap();
        assert_eq!(w.window_secs, 60);
        let names = ["[CQ:at,qq=1]".to_string(), "[CQ:at,qq=2]".to_string()];
        let text = w.render(&WelcomeValues {
            mentions: &names,
            group: "{name}",
            rules_link: "",
            checkin_keyword: "签到",
            separator: "、",
        });
        assert_eq!(text, "欢迎 [CQ:at,qq=1]、[CQ:at,qq=2] 加入 {name}！");
    }
}
