//! Broadcasts (定时群发) and check-in reminders: what an operator asks for (`BroadcastRaw`, as
//! typed in the form or the API), checked into a `BroadcastSpec`; when a recurring broadcast
//! happens next in a group's time zone (`Recurrence::next_after`, DST-aware); and the states of a
//! broadcast and of its per-group deliveries.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::{group::parse_instant, no_nul, Zone};
use crate::error::FieldErrors;

/// The longest broadcast text (a Telegram message holds 4 096; a QQ message far more).
pub const MAX_TEXT: usize = 2000;
/// At most this many groups chosen by id.
pub const MAX_GROUPS: usize = 500;
/// A text sent with a picture is its caption: Telegram takes at most 1 024 characters.
pub const MAX_CAPTION: usize = 1024;
/// At most this many members named in one reminder (the rest are not named).
pub const MAX_MENTIONS: usize = 50;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s.trim() { $($s => Some($name::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

text_enum!(
    /// Who a broadcast goes to.
    Audience {
        /// The groups chosen by id.
        Groups = "groups",
        /// The groups carrying a tag when an occurrence is sent.
        Tag = "tag",
        /// The groups whose check-in reminder is on when an occurrence is sent.
        Reminders = "reminders",
    }
);

text_enum!(
    /// Where a broadcast stands.
    BroadcastState {
        /// Has occurrences to come.
        Scheduled = "scheduled",
        /// Its one occurrence was handed to the bots (its deliveries say how each went).
        Done = "done",
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Where one group's copy of an occurrence stands.
    DeliveryState {
        /// Waiting for its turn (the rate limits) or being sent.
        Queued = "queued",
        /// The platform took it: `message_id` is its id.
        Sent = "sent",
        /// It did not go out: `error` says why.
        Failed = "failed",
        /// It may or may not have gone out (a timeout, a process that stopped mid-send); never
        /// sent again by itself.
        Unknown = "unknown",
        /// Stopped before it went out.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// How often a recurring broadcast happens.
    Every {
        Daily = "daily",
        Weekly = "weekly",
    }
);

/// Every day, or on some weekdays, at a local time (in each group's own zone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recurrence {
    pub every: Every,
    /// `HH:MM`, local to each group.
    #[schema(value_type = String, example = "21:00")]
    pub at: NaiveTime,
    /// Weekly: 1 = Monday … 7 = Sunday (ISO); ignored for daily.
    #[serde(default)]
    pub weekdays: Vec<u8>,
}

impl Recurrence {
    fn on(&self, day: NaiveDate) -> bool {
        match self.every {
            Every::Daily => true,
            Every::Weekly => self.weekdays.contains(&(day.weekday().number_from_monday() as u8)),
        }
    }

    /// The first occurrence strictly after `after`, in zone `tz`. A local time that does not
    /// exist on a day (the hour skipped when clocks go forward) happens when the gap ends, at the
    /// same offset from its start (02:30 in a 02:00–03:00 gap is 03:30); a local time that
    /// happens twice (clocks go back) happens the first time only.
    pub fn next_after(&self, tz: Zone, after: DateTime<Utc>) -> DateTime<Utc> {
        let tz = tz.tz();
        let start = after.with_timezone(&tz).date_naive();
        for d in 0..=8 {
            let day = start + Duration::days(d);
            if !self.on(day) {
                continue;
            }
            let local = day.and_time(self.at);
            let at = match tz.from_local_datetime(&local) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
                LocalResult::None => {
                    // In a gap: the offset before the gap, applied to the wall time, lands after it.
                    let before = tz.from_local_datetime(&(local - Duration::hours(3))).earliest();
                    match before {
                        Some(b) => {
                            let offset = chrono::Offset::fix(b.offset()).local_minus_utc();
                            Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset))))
                        }
                        None => continue,
                    }
                }
            };
            if at > after {
                return at;
            }
        }
        // Weekly with no weekday cannot happen (parse refuses it); a week later is safe.
        after + Duration::days(7)
    }
}

/// Weekday names in order (1 = Monday).
pub const WEEKDAYS: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

/// A broadcast as typed (form or API): text fields, checked by [`BroadcastRaw::parse`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BroadcastRaw {
    pub text: String,
    /// `groups` (default), `tag` or `reminders`.
    pub audience: String,
    pub group_ids: Vec<i64>,
    pub tag: String,
    pub mention_unchecked: bool,
    /// Empty: now. RFC 3339, or `YYYY-MM-DDTHH:MM` in the given display zone.
    pub send_at: String,
    /// Empty: once. `daily` or `weekly`.
    pub every: String,
    /// `HH:MM` for a recurring broadcast.
    pub at: String,
    /// 1–7 (Monday = 1), or `mon`…`sun`.
    pub weekdays: Vec<String>,
}

/// When a broadcast happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    Now,
    At(DateTime<Utc>),
    Every(Recurrence),
}

/// A checked broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastSpec {
    pub text: String,
    pub audience: Audience,
    pub group_ids: Vec<i64>,
    pub tag: Option<String>,
    pub mention_unchecked: bool,
    pub when: When,
    /// Set by the entrance once the upload is checked (`poster::background::validate`).
    pub image: Option<BroadcastImage>,
}

/// A checked, re-encoded picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastImage {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

fn parse_weekday(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    if let Ok(n) = s.parse::<u8>() {
        return (1..=7).contains(&n).then_some(n);
    }
    WEEKDAYS.iter().position(|w| w.to_string().to_ascii_lowercase() == s).map(|i| i as u8 + 1)
}

impl BroadcastRaw {
    /// Checks every field; `tz` reads a local `send_at`; `now` refuses a time in the past.
    pub fn parse(&self, tz: Zone, now: DateTime<Utc>) -> Result<BroadcastSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let text = self.text.trim().replace("\r\n", "\n");
        no_nul(&text, "text", &mut e);
        if text.is_empty() {
            e.add("text", "error.required");
        } else if text.chars().count() > MAX_TEXT {
            e.add("text", "error.too_long");
        }
        let audience = if self.audience.trim().is_empty() {
            Audience::Groups
        } else {
            Audience::parse(&self.audience).unwrap_or_else(|| {
                e.add_choice("audience", Audience::NAMES);
                Audience::Groups
            })
        };
        let mut group_ids = Vec::new();
        let mut tag = None;
        match audience {
            Audience::Groups => {
                for id in &self.group_ids {
                    if !group_ids.contains(id) {
                        group_ids.push(*id);
                    }
                }
                if group_ids.is_empty() {
                    e.add("group_ids", "broadcasts.error.no_groups");
                } else if group_ids.len() > MAX_GROUPS || group_ids.iter().any(|i| *i < 1) {
                    e.add("group_ids", "broadcasts.error.too_many_groups");
                }
            }
            Audience::Tag => {
                let t = self.tag.trim();
                no_nul(t, "tag", &mut e);
                if t.is_empty() {
                    e.add("tag", "error.required");
                } else if t.chars().count() > 32 {
                    e.add("tag", "error.too_long");
                } else {
                    tag = Some(t.to_string());
                }
            }
            Audience::Reminders => {}
        }
        let every = self.every.trim();
        let when = if every.is_empty() || every == "once" {
            let s = self.send_at.trim();
            if s.is_empty() {
                When::Now
            } else {
                no_nul(s, "send_at", &mut e);
                match parse_instant(s, tz.tz()) {
                    Some(at) if at <= now => {
                        e.add("send_at", "broadcasts.error.past");
                        When::Now
                    }
                    Some(at) if at > now + Duration::days(366) => {
                        e.add("send_at", "broadcasts.error.too_far");
                        When::Now
                    }
                    Some(at) => When::At(at),
                    None => {
                        e.add("send_at", "error.datetime");
                        When::Now
                    }
                }
            }
        } else {
            let kind = Every::parse(every).unwrap_or_else(|| {
                e.add_choice("every", Every::NAMES);
                Every::Daily
            });
            let at = NaiveTime::parse_from_str(self.at.trim(), "%H:%M").ok().unwrap_or_else(|| {
                e.add("at", "broadcasts.error.time");
                NaiveTime::MIN
            });
            let mut weekdays = Vec::new();
            if kind == Every::Weekly {
                for w in &self.weekdays {
                    match parse_weekday(w) {
                        Some(n) if !weekdays.contains(&n) => weekdays.push(n),
                        Some(_) => {}
                        None => {
                            e.add("weekdays", "broadcasts.error.weekdays");
                            break;
                        }
                    }
                }
                if weekdays.is_empty() {
                    e.add("weekdays", "broadcasts.error.weekdays");
                }
                weekdays.sort_unstable();
            }
            When::Every(Recurrence { every: kind, at, weekdays })
        };
        if !e.is_empty() {
            return Err(e);
        }
        Ok(BroadcastSpec {
            text,
            audience,
            group_ids,
            tag,
            mention_unchecked: self.mention_unchecked,
            when,
            image: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekly(at: &str, days: &[u8]) -> Recurrence {
        Recurrence {
            every: Every::Weekly,
            at: NaiveTime::parse_from_str(at, "%H:%M").unwrap(),
            weekdays: days.to_vec(),
        }
    }

    #[test]
    fn weekly_occurrences_keep_their_local_time_across_a_dst_change() {
        let ny = Zone::parse("America/New_York").unwrap();
        let mondays = weekly("09:00", &[1]);
        // Monday 2 March 2026 09:00 EST is 14:00 UTC; clocks go forward on Sunday 8 March.
        let first = mondays.next_after(ny, utc("2026-03-01T00:00:00Z"));
        assert_eq!(first, utc("2026-03-02T14:00:00Z"));
        let second = mondays.next_after(ny, first);
        assert_eq!(second, utc("2026-03-09T13:00:00Z"), "09:00 EDT, one hour earlier in UTC");
        // And back in autumn (1 November 2026).
        let autumn = mondays.next_after(ny, utc("2026-10-27T00:00:00Z"));
        assert_eq!(autumn, utc("2026-11-02T14:00:00Z"));
        // Shanghai has no DST: 21:00 is 13:00 UTC every day.
        let sh = Zone::parse("Asia/Shanghai").unwrap();
        let daily =
            Recurrence { every: Every::Daily, at: NaiveTime::from_hms_opt(21, 0, 0).unwrap(), weekdays: vec![] };
        assert_eq!(daily.next_after(sh, utc("2026-03-08T13:00:00Z")), utc("2026-03-09T13:00:00Z"));
        assert_eq!(daily.next_after(sh, utc("2026-03-08T12:59:59Z")), utc("2026-03-08T13:00:00Z"));
    }

    #[test]
    fn a_local_time_in_the_skipped_hour_happens_after_the_gap_and_a_repeated_one_once() {
        let ny = Zone::parse("America/New_York").unwrap();
        let sundays = weekly("02:30", &[7]);
        // 8 March 2026 02:30 does not exist in New York: 03:30 EDT = 07:30 UTC.
        assert_eq!(sundays.next_after(ny, utc("2026-03-07T00:00:00Z")), utc("2026-03-08T07:30:00Z"));
        // 1 November 2026 01:30 happens twice: the first (EDT, 05:30 UTC) only.
        let early = weekly("01:30", &[7]);
        let first = early.next_after(ny, utc("2026-10-31T12:00:00Z"));
        assert_eq!(first, utc("2026-11-01T05:30:00Z"));
        assert_eq!(early.next_after(ny, first), utc("2026-11-08T06:30:00Z"));
    }

    #[test]
    fn several_weekdays_and_per_group_zones() {
        let r = weekly("08:00", &[1, 3, 5]);
        let tokyo = Zone::parse("Asia/Tokyo").unwrap();
        let london = Zone::parse("Europe/London").unwrap();
        // Wednesday 4 March 2026, 00:00 UTC.
        let after = utc("2026-03-04T00:00:00Z");
        assert_eq!(
            r.next_after(tokyo, after),
            utc("2026-03-05T23:00:00Z"),
            "Wednesday 08:00 has passed in Tokyo (09:00 JST), Thursday is not a day: Friday 08:00 JST"
        );
        assert_eq!(r.next_after(london, after), utc("2026-03-04T08:00:00Z"));
    }

    #[test]
    fn parsing_checks_every_field() {
        let sh = Zone::parse("Asia/Shanghai").unwrap();
        let now = utc("2026-03-04T00:00:00Z");
        let ok = BroadcastRaw { text: " hi ".into(), group_ids: vec![3, 3, 4], ..Default::default() }
            .parse(sh, now)
            .unwrap();
        assert_eq!((ok.text.as_str(), ok.group_ids.clone(), ok.when.clone()), ("hi", vec![3, 4], When::Now));
        let at = BroadcastRaw {
            text: "x".into(),
            group_ids: vec![1],
            send_at: "2026-03-04T09:30".into(),
            ..Default::default()
        }
        .parse(sh, now)
        .unwrap();
        assert_eq!(at.when, When::At(utc("2026-03-04T01:30:00Z")));
        let bad = BroadcastRaw {
            text: "".into(),
            audience: "tag".into(),
            send_at: "2020-01-01T00:00".into(),
            ..Default::default()
        }
        .parse(sh, now)
        .unwrap_err();
        assert!(bad.has("text") && bad.has("tag") && bad.has("send_at"));
        let weekly = BroadcastRaw {
            text: "x".into(),
            audience: "reminders".into(),
            every: "weekly".into(),
            at: "21:00".into(),
            weekdays: vec!["sun".into(), "1".into()],
            ..Default::default()
        }
        .parse(sh, now)
        .unwrap();
        assert_eq!(weekly.when, When::Every(super::tests::weekly("21:00", &[1, 7])));
        let no_days = BroadcastRaw {
            text: "x".into(),
            group_ids: vec![1],
            every: "weekly".into(),
            at: "25:00".into(),
            ..Default::default()
        }
        .parse(sh, now)
        .unwrap_err();
        assert!(no_days.has("weekdays") && no_days.has("at"));
    }
}
