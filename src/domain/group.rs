//! What a valid group is. Both the admin form and the JSON API fill a `GroupRaw` (text fields as
//! typed by a person) and parse it into a `GroupSpec`, so both give the same errors.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{optional_text, parse_tags, parse_zone, required_text, text_enum, Platform, Zone};
use crate::error::FieldErrors;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum GroupStatus {
    Active,
    Paused,
    Archived,
}

impl GroupStatus {
    pub const ALL: [GroupStatus; 3] = [GroupStatus::Active, GroupStatus::Paused, GroupStatus::Archived];
    pub const NAMES: &'static [&'static str] = &["active", "paused", "archived"];
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Active => "active",
            GroupStatus::Paused => "paused",
            GroupStatus::Archived => "archived",
        }
    }
    pub fn parse(s: &str) -> Option<GroupStatus> {
        GroupStatus::ALL.into_iter().find(|g| g.as_str() == s.trim())
    }
    pub fn is_active(self) -> bool {
        self == GroupStatus::Active
    }
    pub fn is_archived(self) -> bool {
        self == GroupStatus::Archived
    }
}

text_enum!(GroupStatus);

/// A group as typed into a form: every field text, nothing checked yet.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct GroupRaw {
    pub name: String,
    pub platform: String,
    pub join_url: String,
    pub capacity: String,
    pub member_count: String,
    pub timezone: String,
    pub external_chat_id: String,
    pub status: String,
    pub tags: String,
    pub notes: String,
    /// Local date-time (`YYYY-MM-DDTHH:MM`, in the group's timezone) or RFC 3339.
    pub qr_expires_at: String,
}

/// A valid group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub platform: Platform,
    pub join_url: Option<String>,
    pub capacity: i32,
    pub member_count: Option<i32>,
    pub timezone: Zone,
    pub external_chat_id: Option<String>,
    pub status: GroupStatus,
    pub tags: Vec<String>,
    pub notes: String,
    pub qr_expires_at: Option<DateTime<Utc>>,
}

pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";
pub const DEFAULT_ZONE: Zone = Zone(chrono_tz::Asia::Shanghai);

/// An absolute http(s) URL without spaces, at most 2048 characters.
pub fn valid_http_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && s.len() <= 2048 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn parse_int(input: &str, min: i64, max: i64, field: &str, errors: &mut FieldErrors) -> Option<i32> {
    let s = input.trim();
    if s.is_empty() {
        return None;
    }
    match s.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n as i32),
        _ => {
            errors.add(field, "error.number_range");
            None
        }
    }
}

/// Parses a local `YYYY-MM-DDTHH:MM[:SS]` in `tz`, or an RFC 3339 instant.
pub fn parse_instant(input: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let s = input.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive).earliest().map(|d| d.with_timezone(&Utc))
}

/// Formats an instant for a `datetime-local` input in `tz`.
pub fn local_input_value(at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%dT%H:%M").to_string()
}

impl GroupRaw {
    /// A blank form with the defaults a new group starts from.
    pub fn blank() -> GroupRaw {
        GroupRaw {
            platform: Platform::Wechat.as_str().into(),
            timezone: DEFAULT_TIMEZONE.into(),
            status: GroupStatus::Active.as_str().into(),
            ..GroupRaw::default()
        }
    }

    pub fn parse(&self) -> Result<GroupSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let name = required_text(&self.name, 120, "name", &mut e);
        let platform = Platform::parse(&self.platform).unwrap_or_else(|| {
            e.add_choice("platform", Platform::NAMES);
            Platform::Other
        });
        let join_url = self.join_url.trim();
        let join_url = if join_url.is_empty() {
            None
        } else {
            if !valid_http_url(join_url) {
                e.add("join_url", "error.url");
            }
            Some(join_url.to_string())
        };
        let capacity =
            parse_int(&self.capacity, 1, 1_000_000, "capacity", &mut e).unwrap_or(platform.default_capacity());
        let member_count = parse_int(&self.member_count, 0, 1_000_000, "member_count", &mut e);
        let timezone = if self.timezone.trim().is_empty() {
            Some(DEFAULT_ZONE)
        } else {
            parse_zone(&self.timezone, "timezone", &mut e)
        };
        let ext = optional_text(&self.external_chat_id, 128, "external_chat_id", &mut e);
        let status = if self.status.trim().is_empty() {
            GroupStatus::Active
        } else {
            GroupStatus::parse(&self.status).unwrap_or_else(|| {
                e.add_choice("status", GroupStatus::NAMES);
                GroupStatus::Active
            })
        };
        let tags = parse_tags(&self.tags, "tags", &mut e);
        let notes = optional_text(&self.notes, 4000, "notes", &mut e);
        let qr_expires_at = if self.qr_expires_at.trim().is_empty() {
            None
        } else {
            let at = parse_instant(&self.qr_expires_at, timezone.unwrap_or(DEFAULT_ZONE).tz());
            if at.is_none() {
                e.add("qr_expires_at", "error.datetime");
            }
            at
        };
        match timezone {
            Some(timezone) if e.is_empty() => Ok(GroupSpec {
                name,
                platform,
                join_url,
                capacity,
                member_count,
                timezone,
                external_chat_id: (!ext.is_empty()).then_some(ext),
                status,
                tags,
                notes,
                qr_expires_at,
            }),
            _ => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, platform: &str) -> GroupRaw {
        GroupRaw { name: name.into(), platform: platform.into(), ..GroupRaw::blank() }
    }

    #[test]
    fn blank_capacity_takes_the_platform_default() {
        assert_eq!(raw("A", "wechat").parse().unwrap().capacity, 200);
        assert_eq!(raw("A", "qq").parse().unwrap().capacity, 500);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let r = GroupRaw {
            name: "  ".into(),
            platform: "myspace".into(),
            join_url: "javascript:alert(1)".into(),
            capacity: "0".into(),
            member_count: "-3".into(),
            timezone: "Nowhere/City".into(),
            status: "deleted".into(),
            qr_expires_at: "tomorrow".into(),
            ..GroupRaw::default()
        };
        let e = r.parse().unwrap_err();
        for f in ["name", "platform", "join_url", "capacity", "member_count", "timezone", "status", "qr_expires_at"] {
            assert!(e.has(f), "{f} should have an error");
        }
    }

    #[test]
    fn local_expiry_is_read_in_the_group_timezone() {
        let r = GroupRaw { qr_expires_at: "2026-12-01T08:00".into(), ..raw("A", "wechat") };
        let spec = r.parse().unwrap();
        assert_eq!(spec.qr_expires_at.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(local_input_value(spec.qr_expires_at.unwrap(), chrono_tz::Asia::Shanghai), "2026-12-01T08:00");
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(valid_http_url("https://t.me/+abc"));
        assert!(valid_http_url("http://qm.qq.com/q/xyz?x=1"));
        assert!(!valid_http_url("https://"));
        assert!(!valid_http_url("ftp://x"));
        assert!(!valid_http_url("https://a b"));
    }
}
