//! Domain types and pure rules, free of SQL and HTTP: what a valid group, member or operator is.
//! Forms and JSON bodies are parsed into these (`TryFrom`), so invalid values never reach SQL.

pub mod action;
pub mod alert;
pub mod automation;
pub mod bridge;
pub mod broadcast;
pub mod checkin;
pub mod checkin_poster;
pub mod csv_import;
pub mod group;
pub mod hll;
pub mod invite;
pub mod invite_link;
pub mod live_code;
pub mod member;
pub mod member_page;
pub mod moderation;
pub mod outbound;
pub mod points;
pub mod qr;
pub mod questionnaire;
pub mod rule_set;
pub mod signed;

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

/// `Display` and `AsRef<str>` for an enum with `as_str`: templates show it and look up its
/// words (`tr.tk("platform", &g.platform)`) without turning it into a string first.
macro_rules! text_enum {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}
pub(crate) use text_enum;

/// The chat platform a group or member lives on (stored as its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Platform {
    Wechat,
    Qq,
    Telegram,
    Discord,
    Whatsapp,
    Other,
}

impl Platform {
    pub const ALL: [Platform; 6] =
        [Platform::Wechat, Platform::Qq, Platform::Telegram, Platform::Discord, Platform::Whatsapp, Platform::Other];
    /// The names of [`Platform::ALL`], as the API and forms take them.
    pub const NAMES: &'static [&'static str] = &["wechat", "qq", "telegram", "discord", "whatsapp", "other"];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Wechat => "wechat",
            Platform::Qq => "qq",
            Platform::Telegram => "telegram",
            Platform::Discord => "discord",
            Platform::Whatsapp => "whatsapp",
            Platform::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s.trim().to_ascii_lowercase())
    }

    /// The usual member limit of a group on this platform, used when the operator gives none.
    pub fn default_capacity(self) -> i32 {
        match self {
            Platform::Wechat => 200,
            Platform::Qq => 500,
            Platform::Telegram => 200_000,
            Platform::Discord => 500_000,
            Platform::Whatsapp => 1024,
            Platform::Other => 500,
        }
    }

    /// How long an uploaded group QR stays valid by default (WeChat group QR codes: 7 days).
    pub fn default_qr_validity_days(self) -> Option<i64> {
        match self {
            Platform::Wechat => Some(7),
            _ => None,
        }
    }
}

text_enum!(Platform);

/// An IANA time zone, parsed once where it is read (configuration, a stored row) and kept as
/// `chrono_tz::Tz` from then on. Stored and shown as its name; as a `str` it is that name, so it
/// goes wherever a zone name is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone(pub chrono_tz::Tz);

impl Zone {
    pub fn parse(s: &str) -> Option<Zone> {
        s.trim().parse::<chrono_tz::Tz>().ok().map(Zone)
    }
    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl std::ops::Deref for Zone {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.name()
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl From<chrono_tz::Tz> for Zone {
    fn from(tz: chrono_tz::Tz) -> Zone {
        Zone(tz)
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
        let s = String::deserialize(d)?;
        Zone::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown time zone {s:?} (an IANA name)")))
    }
}

impl sqlx::Type<sqlx::Postgres> for Zone {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Zone {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Zone, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Zone::parse(s).ok_or_else(|| format!("stored time zone {s:?} is not an IANA name").into())
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Zone {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0.name(), buf)
    }
}

/// Tags: lowercase-insensitive, trimmed, unique, at most 20 of at most 32 characters each.
/// `|` separates tags too: it is the tag separator of the members CSV, so a tag containing it
/// would not survive an export and re-import.
pub fn parse_tags(input: &str, field: &str, errors: &mut FieldErrors) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for raw in input.split([',', '，', ';', '|']) {
        let tag = raw.trim();
        if tag.is_empty() {
            continue;
        }
        if tag.chars().count() > 32 {
            errors.add(field, "error.tag_too_long");
            return Vec::new();
        }
        if tag.contains('\0') {
            errors.add(field, "error.nul");
            return Vec::new();
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    if tags.len() > 20 {
        errors.add(field, "error.too_many_tags");
    }
    tags
}

/// A trimmed text of 1..=max characters.
pub fn required_text(input: &str, max: usize, field: &str, errors: &mut FieldErrors) -> String {
    let s = input.trim();
    if s.is_empty() {
        errors.add(field, "error.required");
    } else if s.chars().count() > max {
        errors.add(field, "error.too_long");
    }
    no_nul(s, field, errors);
    s.to_string()
}

/// A trimmed text of at most `max` characters (may be empty).
pub fn optional_text(input: &str, max: usize, field: &str, errors: &mut FieldErrors) -> String {
    let s = input.trim();
    if s.chars().count() > max {
        errors.add(field, "error.too_long");
    }
    no_nul(s, field, errors);
    s.to_string()
}

/// The most characters a list's search text or tag filter may have. A `%…%` pattern costs more
/// the longer it is (a 60 000-character one took 19 s a query at a million members), and no name,
/// id or tag is longer than 128.
pub const MAX_FILTER_CHARS: usize = 100;

/// A list filter as typed: trimmed, `None` when blank; longer than [`MAX_FILTER_CHARS`] is an
/// error on `field`, so that the list answers with a message and runs no query.
pub fn filter_text(input: Option<&str>, field: &str, errors: &mut FieldErrors) -> Option<String> {
    let s = input.map(str::trim).filter(|s| !s.is_empty())?;
    if s.chars().count() > MAX_FILTER_CHARS {
        errors.add(field, "error.filter_too_long");
    }
    no_nul(s, field, errors);
    Some(s.to_string())
}

/// PostgreSQL cannot store a NUL character in text: refused as a field error, never a 500.
pub fn no_nul(input: &str, field: &str, errors: &mut FieldErrors) {
    if input.contains('\0') {
        errors.add(field, "error.nul");
    }
}

/// An IANA time zone name such as `Asia/Shanghai`, as a [`Zone`] (None after an error on `field`).
pub fn parse_zone(input: &str, field: &str, errors: &mut FieldErrors) -> Option<Zone> {
    let zone = Zone::parse(input).filter(|_| !input.contains('\0'));
    if zone.is_none() {
        errors.add(field, "error.timezone");
    }
    zone
}

/// An IANA timezone name such as `Asia/Shanghai`.
pub fn parse_timezone(input: &str, field: &str, errors: &mut FieldErrors) -> String {
    let s = input.trim();
    match s.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz.name().to_string(),
        Err(_) => {
            errors.add(field, "error.timezone");
            s.to_string()
        }
    }
}

/// An operator's login name: 2–32 of a-z 0-9 _ . - starting with a letter or digit.
pub fn parse_username(input: &str, field: &str, errors: &mut FieldErrors) -> String {
    let s = input.trim().to_ascii_lowercase();
    let ok = (2..=32).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !ok {
        errors.add(field, "error.username");
    }
    s
}

pub fn check_password(pw: &str, confirm: Option<&str>, field: &str, errors: &mut FieldErrors) {
    let n = pw.chars().count();
    if n < crate::auth::password::MIN_LEN {
        errors.add(field, "error.password_short");
    } else if n > crate::auth::password::MAX_LEN {
        errors.add(field, "error.too_long");
    }
    if let Some(c) = confirm {
        if c != pw {
            errors.add("password_confirm", "error.password_mismatch");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_deduplicated_and_split_on_chinese_commas() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_tags(" vip, 北京，vip ,, new ", "tags", &mut e), vec!["vip", "北京", "new"]);
        assert!(e.is_empty());
        parse_tags(&"x".repeat(33), "tags", &mut e);
        assert!(e.has("tags"));
    }

    #[test]
    fn text_with_a_nul_character_is_a_field_error() {
        let mut e = FieldErrors::new();
        required_text("a\0b", 10, "name", &mut e);
        optional_text("\0", 10, "notes", &mut e);
        assert!(e.has("name") && e.has("notes"), "{e:?}");
        let mut e = FieldErrors::new();
        parse_tags("a\0b", "tags", &mut e);
        parse_timezone("Asia/Shanghai\0", "timezone", &mut e);
        assert!(e.has("tags") && e.has("timezone"), "{e:?}");
    }

    #[test]
    fn timezones_must_be_iana_names() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_timezone(" Europe/Berlin ", "tz", &mut e), "Europe/Berlin");
        assert!(e.is_empty());
        parse_timezone("Mars/Olympus", "tz", &mut e);
        assert!(e.has("tz"));
    }

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_username("Alice_1", "u", &mut e), "alice_1");
        assert!(e.is_empty());
        for bad in ["a", "-abc", "has space", "ü-ber", &"x".repeat(33)] {
            let mut e = FieldErrors::new();
            parse_username(bad, "u", &mut e);
            assert!(e.has("u"), "{bad} should be rejected");
        }
    }

    #[test]
    fn platform_names_are_the_names_of_all_platforms() {
        let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, Platform::NAMES);
    }

    #[test]
    fn platform_defaults() {
        assert_eq!(Platform::parse("WeChat"), Some(Platform::Wechat));
        assert_eq!(Platform::Wechat.default_capacity(), 200);
        assert_eq!(Platform::Qq.default_capacity(), 500);
        assert_eq!(Platform::Wechat.default_qr_validity_days(), Some(7));
        assert_eq!(Platform::parse("icq"), None);
    }
}
