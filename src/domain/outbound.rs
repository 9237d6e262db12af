//! Rules for what Shoal sends through bots, free of I/O: the rate limits each kind of bridge gets
//! unless its settings say otherwise, their bounds, and what a bot credential looks like.

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::bridge::Kind;
use crate::error::FieldErrors;

/// At most `limit` calls in any `window_ms`; a limit of 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rate {
    pub limit: i32,
    pub window_ms: i32,
}

impl Rate {
    pub const fn new(limit: i32, window_ms: i32) -> Rate {
        Rate { limit, window_ms }
    }
    pub fn unlimited(self) -> bool {
        self.limit <= 0
    }
}

/// The limits one bridge's calls obey: per chat, and for the bot as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    pub chat: Rate,
    pub bot: Rate,
}

pub const MAX_LIMIT: i32 = 10_000;
pub const MIN_WINDOW_MS: i32 = 100;
pub const MAX_WINDOW_MS: i32 = 86_400_000;

impl Limits {
    /// What each kind gets by default. Telegram: 20 messages a minute in a group and 30 a second
    /// for the bot (the Bot FAQ). QQ: one a second per group (no published limit; bursts invite
    /// 风控, so one a second is the community's rule of thumb). Generic: none (the operator's
    /// endpoint paces itself).
    pub fn defaults(kind: Kind) -> Limits {
        match kind {
            Kind::Telegram => Limits { chat: Rate::new(20, 60_000), bot: Rate::new(30, 1_000) },
            Kind::OneBot11 => Limits { chat: Rate::new(1, 1_000), bot: Rate::new(0, 1_000) },
            Kind::Generic => Limits { chat: Rate::new(0, 1_000), bot: Rate::new(0, 1_000) },
        }
    }

    /// The limits in force: each stored value, else the kind's default.
    pub fn effective(kind: Kind, s: &LimitSettings) -> Limits {
        let d = Limits::defaults(kind);
        Limits {
            chat: Rate::new(
                s.chat_rate_limit.unwrap_or(d.chat.limit),
                s.chat_rate_window_ms.unwrap_or(d.chat.window_ms),
            ),
            bot: Rate::new(s.bot_rate_limit.unwrap_or(d.bot.limit), s.bot_rate_window_ms.unwrap_or(d.bot.window_ms)),
        }
    }
}

/// A bridge's own limits as stored: None takes the kind's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitSettings {
    /// Calls per chat and window (0: no limit; null: the kind's default).
    #[schema(minimum = 0, maximum = 10000)]
    pub chat_rate_limit: Option<i32>,
    /// The per-chat window in milliseconds (100 to 86400000; null: the default).
    #[schema(minimum = 100, maximum = 86400000)]
    pub chat_rate_window_ms: Option<i32>,
    /// Calls for the whole bot per window (0: no limit; null: the kind's default).
    #[schema(minimum = 0, maximum = 10000)]
    pub bot_rate_limit: Option<i32>,
    /// The bot's window in milliseconds (100 to 86400000; null: the default).
    #[schema(minimum = 100, maximum = 86400000)]
    pub bot_rate_window_ms: Option<i32>,
}

impl LimitSettings {
    /// Checks every value's range, naming the field of each bad one.
    pub fn check(&self, e: &mut FieldErrors) {
        for (field, v) in [("chat_rate_limit", self.chat_rate_limit), ("bot_rate_limit", self.bot_rate_limit)] {
            if v.is_some_and(|v| !(0..=MAX_LIMIT).contains(&v)) {
                e.add(field, "bridges.outbound.error.limit");
            }
        }
        for (field, v) in
            [("chat_rate_window_ms", self.chat_rate_window_ms), ("bot_rate_window_ms", self.bot_rate_window_ms)]
        {
            if v.is_some_and(|v| !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&v)) {
                e.add(field, "bridges.outbound.error.window");
            }
        }
    }
}

/// The limits form as typed: whole numbers of calls, windows in seconds (decimals allowed);
/// blank takes the kind's default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct LimitsRaw {
    pub chat_rate_limit: String,
    pub chat_rate_window_secs: String,
    pub bot_rate_limit: String,
    pub bot_rate_window_secs: String,
}

impl LimitsRaw {
    pub fn from_settings(s: &LimitSettings) -> LimitsRaw {
        let secs = |ms: Option<i32>| ms.map(format_secs).unwrap_or_default();
        LimitsRaw {
            chat_rate_limit: s.chat_rate_limit.map(|v| v.to_string()).unwrap_or_default(),
            chat_rate_window_secs: secs(s.chat_rate_window_ms),
            bot_rate_limit: s.bot_rate_limit.map(|v| v.to_string()).unwrap_or_default(),
            bot_rate_window_secs: secs(s.bot_rate_window_ms),
        }
    }

    /// The settings, or every field's error (the form's field names: the windows' errors are
    /// reported on `*_secs`).
    pub fn parse(&self) -> Result<LimitSettings, FieldErrors> {
        let mut e = FieldErrors::new();
        let limit = |s: &str, field: &str, e: &mut FieldErrors| -> Option<i32> {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            match s.parse::<i32>() {
                Ok(v) if (0..=MAX_LIMIT).contains(&v) => Some(v),
                _ => {
                    e.add(field, "bridges.outbound.error.limit");
                    None
                }
            }
        };
        let window = |s: &str, field: &str, e: &mut FieldErrors| -> Option<i32> {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.1..=86_400.0).contains(&v) => Some((v * 1000.0).round() as i32),
                _ => {
                    e.add(field, "bridges.outbound.error.window");
                    None
                }
            }
        };
        let out = LimitSettings {
            chat_rate_limit: limit(&self.chat_rate_limit, "chat_rate_limit", &mut e),
            chat_rate_window_ms: window(&self.chat_rate_window_secs, "chat_rate_window_secs", &mut e),
            bot_rate_limit: limit(&self.bot_rate_limit, "bot_rate_limit", &mut e),
            bot_rate_window_ms: window(&self.bot_rate_window_secs, "bot_rate_window_secs", &mut e),
        };
        if e.is_empty() {
            Ok(out)
        } else {
            Err(e)
        }
    }
}

/// Milliseconds as seconds for a form: "60", "1.5", "0.25".
pub fn format_secs(ms: i32) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        let s = format!("{:.3}", ms as f64 / 1000.0);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A Telegram bot token as @BotFather gives it: the bot's numeric id, a colon, and a secret of
/// letters, digits, `_` and `-`.
pub fn valid_telegram_token(s: &str) -> bool {
    let Some((id, secret)) = s.split_once(':') else { return false };
    !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && (20..=100).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The longest text a send may carry (Telegram's limit; QQ allows more).
pub const MAX_TEXT_CHARS: usize = 4096;
/// The longest mute: Telegram restricts forever beyond 366 days.
pub const MAX_MUTE_SECS: u32 = 366 * 86_400;

/// Checks an action before it is queued: every id present and short, texts within the
/// platforms' limits, a picture's URL http(s). Errors name the action's fields.
pub fn check_action(a: &Action) -> Result<(), FieldErrors> {
    let mut e = FieldErrors::new();
    let id = |v: &str, field: &str, e: &mut FieldErrors| {
        let v = v.trim();
        if v.is_empty() {
            e.add(field, "error.required");
        } else if v.chars().count() > 128 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            e.add(field, "bridges.outbound.error.id");
        }
    };
    let opt_id = |v: &Option<String>, field: &str, e: &mut FieldErrors| {
        if let Some(v) = v {
            id(v, field, e);
        }
    };
    let text = |v: &str, max: usize, field: &str, e: &mut FieldErrors| {
        if v.trim().is_empty() {
            e.add(field, "error.required");
        } else if v.chars().count() > max {
            e.add(field, "error.too_long");
        }
        if v.contains('\0') {
            e.add(field, "error.nul");
        }
    };
    id(a.chat_id(), "chat_id", &mut e);
    match a {
        Action::Send { text: t, reply_to, thread_id, user_id, .. } => {
            text(t, MAX_TEXT_CHARS, "text", &mut e);
            opt_id(reply_to, "reply_to", &mut e);
            opt_id(thread_id, "thread_id", &mut e);
            opt_id(user_id, "user_id", &mut e);
        }
        Action::SendPhoto { url, caption, reply_to, thread_id, .. } => {
            if !super::group::valid_http_url(url.trim()) {
                e.add("url", "error.url");
            }
            if let Some(c) = caption {
                text(c, 1024, "caption", &mut e);
            }
            opt_id(reply_to, "reply_to", &mut e);
            opt_id(thread_id, "thread_id", &mut e);
        }
        Action::Delete { message_id, .. } => id(message_id, "message_id", &mut e),
        Action::Mute { user_id, seconds, .. } => {
            id(user_id, "user_id", &mut e);
            if *seconds > MAX_MUTE_SECS {
                e.add("seconds", "bridges.outbound.error.seconds");
            }
        }
        Action::Kick { user_id, .. } | Action::Unban { user_id, .. } => id(user_id, "user_id", &mut e),
        Action::JoinRequest { request, reason, .. } => {
            id(request, "request", &mut e);
            if let Some(r) = reason {
                if r.chars().count() > 200 {
                    e.add("reason", "error.too_long");
                }
            }
        }
    }
    if e.is_empty() {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_defaults_and_stored_values_override_them() {
        let tg = Limits::defaults(Kind::Telegram);
        assert_eq!((tg.chat, tg.bot), (Rate::new(20, 60_000), Rate::new(30, 1_000)));
        assert_eq!(Limits::defaults(Kind::OneBot11).chat, Rate::new(1, 1_000));
        assert!(Limits::defaults(Kind::Generic).chat.unlimited());
        let s = LimitSettings { chat_rate_limit: Some(5), chat_rate_window_ms: Some(2_000), ..Default::default() };
        let e = Limits::effective(Kind::Telegram, &s);
        assert_eq!(e.chat, Rate::new(5, 2_000));
        assert_eq!(e.bot, Rate::new(30, 1_000));
    }

    #[test]
    fn the_form_takes_seconds_and_blanks_and_refuses_what_is_out_of_range() {
        let raw = LimitsRaw {
            chat_rate_limit: " 5 ".into(),
            chat_rate_window_secs: "2".into(),
            bot_rate_limit: "".into(),
            bot_rate_window_secs: "0.5".into(),
        };
        let s = raw.parse().unwrap();
        assert_eq!(s.chat_rate_limit, Some(5));
        assert_eq!(s.chat_rate_window_ms, Some(2_000));
        assert_eq!(s.bot_rate_limit, None);
        assert_eq!(s.bot_rate_window_ms, Some(500));
        assert_eq!(LimitsRaw::from_settings(&s).bot_rate_window_secs, "0.5");
        let bad = LimitsRaw {
            chat_rate_limit: "-1".into(),
            chat_rate_window_secs: "0".into(),
            bot_rate_limit: "x".into(),
            bot_rate_window_secs: "NaN".into(),
        };
        let e = bad.parse().unwrap_err();
        for f in ["chat_rate_limit", "chat_rate_window_secs", "bot_rate_limit", "bot_rate_window_secs"] {
            assert!(e.has(f), "{f}");
        }
        let mut e = FieldErrors::new();
        LimitSettings { chat_rate_window_ms: Some(50), bot_rate_limit: Some(10_001), ..Default::default() }
            .check(&mut e);
        assert!(e.has("chat_rate_window_ms") && e.has("bot_rate_limit"));
    }

    #[test]
    fn actions_are_checked_before_they_are_queued() {
        let send = |text: &str| Action::Send {
            chat_id: "123".into(),
            text: text.into(),
            reply_to: None,
            thread_id: None,
            mention: false,
            user_id: None,
        };
        assert!(check_action(&send("hi")).is_ok());
        assert!(check_action(&send(" ")).unwrap_err().has("text"));
        assert!(check_action(&send(&"x".repeat(4097))).unwrap_err().has("text"));
        let mute = Action::Mute { chat_id: "a b".into(), user_id: "".into(), seconds: MAX_MUTE_SECS + 1 };
        let e = check_action(&mute).unwrap_err();
        assert!(e.has("chat_id") && e.has("user_id") && e.has("seconds"));
        let photo = Action::SendPhoto {
            chat_id: "1".into(),
            url: "ftp://x".into(),
            caption: None,
            reply_to: None,
            thread_id: None,
        };
        assert!(check_action(&photo).unwrap_err().has("url"));
    }

    #[test]
    fn telegram_tokens_have_an_id_a_colon_and_a_secret() {
        assert!(valid_telegram_token("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(!valid_telegram_token("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(!valid_telegram_token("12ab:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"));
        assert!(!valid_telegram_token("123:short"));
        assert!(!valid_telegram_token("123:AAHdqTcvCH1vGWJxfSeofSAs0K5PAL/saw"));
    }
}
