//! What bridge deliveries become, whatever their protocol: Shoal's own `Event`s in a
//! `Delivery`, and the rule for event times. Each protocol (OneBot v11, Telegram Bot API,
//! Shoal's generic schema) lives in its own module under `crate::bridges`, which verifies,
//! parses into these types and answers; no protocol type leaks past it.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// Kept for callers of the old path: the generic protocol's signature and body.
pub use crate::bridges::generic::{sign as sign_generic, GenericEvent};

/// A bridge's protocol, as stored in `bridges.kind`. Its behaviour is
/// [`Kind::protocol`](crate::bridges::Protocol): this enum only names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    OneBot11,
    Telegram,
    Generic,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::OneBot11, Kind::Telegram, Kind::Generic];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OneBot11 => "onebot11",
            Kind::Telegram => "telegram",
            Kind::Generic => "generic",
        }
    }
}

/// Event times Shoal accepts at all: from 2000-01-01 to 2100-01-01 (unix seconds).
pub const EVENT_TIME_RANGE: std::ops::Range<i64> = 946_684_800..4_102_444_800;

#[derive(Clone, Debug, PartialEq)]
pub struct Chat {
    pub id: String,
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    /// owner | admin | member, when the bridge says.
    pub role: Option<&'static str>,
}

/// Why a membership ended; a bridge reports `Leave`, `Kick` or `KickMe`.
pub use crate::domain::member::LeaveReason;

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    /// A chat message; `text` has mentions of the bot removed (CQ codes unescaped) and is
    /// trimmed.
    Message {
        text: String,
        message_id: String,
        /// The forum topic it was posted in (Telegram), where a reply must go too.
        thread_id: Option<String>,
        force_checkin: bool,
    },
    Join {
        inviter: Option<User>,
        invite_link_name: Option<String>,
    },
    Leave {
        reason: LeaveReason,
    },
    /// A request to join the chat (OneBot `request/group/add`, Telegram `chat_join_request`),
    /// answered by the group's entry policy (`automation`).
    JoinRequest {
        /// What answers it on the platform: OneBot's `flag`, Telegram's user id.
        request: String,
        /// What the applicant wrote (OneBot `comment`, Telegram `bio`).
        answer: String,
        /// Telegram: the private chat the bot may write to the applicant in.
        user_chat_id: Option<String>,
        /// The invite link's name (Telegram `invite_link.name`): a member's code when Shoal
        /// made the link.
        invite_link_name: Option<String>,
        /// Who invited the applicant, when the platform says (go-cqhttp `invitor_id`).
        inviter: Option<User>,
    },
}

impl EventBody {
    /// A join or a leave: recorded even when it arrives late (at its arrival time).
    pub fn is_membership_change(&self) -> bool {
        matches!(self, EventBody::Join { .. } | EventBody::Leave { .. })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub chat: Chat,
    pub user: User,
    /// When it happened: the event's own time once [`Delivery::settle_time`] accepted it, else
    /// the time it arrived.
    pub at: DateTime<Utc>,
    /// The event's own time as the bridge gave it (unix seconds), if it gave one.
    pub sent_at: Option<i64>,
    pub body: EventBody,
}

/// What a delivery is about, as its log row (`bridge_events.kind`) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    Message,
    Join,
    Leave,
    JoinRequest,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Message => "message",
            DeliveryKind::Join => "join",
            DeliveryKind::Leave => "leave",
            DeliveryKind::JoinRequest => "join_request",
        }
    }
}

/// What a delivery holds once parsed.
#[derive(Debug, PartialEq)]
pub struct Delivery {
    /// Unique per bridge: retries of the same delivery carry the same key.
    pub dedupe_key: String,
    pub kind: DeliveryKind,
    /// The bot's own id, when the protocol says.
    pub self_id: Option<String>,
    pub events: Vec<Event>,
}

/// How a delivery's event times compare with its arrival ([`Delivery::settle_time`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timing {
    /// Every event time lies within the tolerance (or there is none): events keep their times.
    OnTime,
    /// Some event happened longer ago than the tolerance (a bot that was offline and delivers
    /// late): it is re-timed to its arrival.
    Late,
    /// Some event time is in the future beyond the tolerance, or outside
    /// [`EVENT_TIME_RANGE`]: not a time to trust at all.
    Outside,
}

impl Delivery {
    /// Takes the events' own times where they lie within `tolerance_secs` of `now` (0: any time
    /// in [`EVENT_TIME_RANGE`]); an event without a time, or one whose time is not taken,
    /// happened `now`. The worst [`Timing`] of the events.
    pub fn settle_time(&mut self, now: DateTime<Utc>, tolerance_secs: i64) -> Timing {
        let mut timing = Timing::OnTime;
        for e in &mut self.events {
            e.at = now;
            let Some(t) = e.sent_at else { continue };
            let this = if !EVENT_TIME_RANGE.contains(&t) {
                Timing::Outside
            } else if tolerance_secs <= 0 || (t - now.timestamp()).abs() <= tolerance_secs {
                Timing::OnTime
            } else if t < now.timestamp() {
                Timing::Late
            } else {
                Timing::Outside
            };
            if this == Timing::OnTime {
                match Utc.timestamp_opt(t, 0).single() {
                    Some(at) => e.at = at,
                    None => timing = timing.max(Timing::Outside),
                }
            }
            timing = timing.max(this);
        }
        timing
    }

    /// Whether a delivery of this timing counts (members, activity, check-ins, points, a reply):
    /// on time, or late but only joins and leaves (recorded at their arrival). Anything else
    /// is recorded as seen and counts for nothing: a late message must not back-date a
    /// check-in, nor be moved to a day it was not sent on.
    pub fn counts(&self, timing: Timing) -> bool {
        match timing {
            Timing::OnTime => true,
            Timing::Late => self.events.iter().all(|e| e.body.is_membership_change()),
            Timing::Outside => false,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Events(Delivery),
    /// Valid, but nothing Shoal acts on (heartbeats, requests, the bot's own messages): 204.
    Ignored(&'static str),
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    Malformed(String),
    #[error("the JSON does not have the expected shape: {0}")]
    Shape(String),
}

pub fn shape(msg: &str) -> ParseError {
    ParseError::Shape(msg.to_string())
}

/// The body as JSON, or a malformed delivery.
pub fn json_of(body: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))
}

/// An id given as a number or a string (1 to 128 characters, no control characters: an id
/// with a NUL cannot be stored and no platform makes one).
pub fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control) => Some(s.clone()),
        _ => None,
    }
}

/// Text from a chat (a message, a name, a title) without NUL characters, which PostgreSQL
/// cannot store: a member whose nickname holds one must not make the bridge's delivery fail
/// again and again, so the character is dropped rather than the delivery refused.
pub fn chat_text(s: &str) -> String {
    s.replace('\0', "")
}

/// A display name from a chat: without NULs, trimmed, at most 120 characters.
pub fn display_name(s: &str) -> String {
    chat_text(s).trim().chars().take(120).collect()
}

/// An event's own time: absent (or null) is `None` (it happens on arrival); anything but whole
/// unix seconds is a malformed delivery.
pub fn time_of(v: Option<&Value>, field: &str) -> Result<Option<i64>, ParseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ParseError::Shape(format!("{field} must be unix seconds"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_count_only_within_the_tolerance_and_the_supported_years() {
        let now = Utc.timestamp_opt(1_796_000_000, 0).unwrap();
        let delivery = |sent_at: Option<i64>, body: EventBody| Delivery {
            dedupe_key: "k".into(),
            kind: DeliveryKind::Leave,
            self_id: None,
            events: vec![Event {
                chat: Chat { id: "c".into(), title: None },
                user: User { id: "u".into(), name: "n".into(), role: None },
                at: now,
                sent_at,
                body,
            }],
        };
        let leave = || EventBody::Leave { reason: LeaveReason::Leave };
        let message = || EventBody::Message {
            text: "签到".into(),
            message_id: "1".into(),
            thread_id: None,
            force_checkin: false,
        };
        let settle = |sent_at: Option<i64>, tolerance: i64| {
            let mut d = delivery(sent_at, leave());
            let timing = d.settle_time(now, tolerance);
            (timing, d.events[0].at.timestamp())
        };
        let t = now.timestamp();
        assert_eq!(settle(None, 600), (Timing::OnTime, t));
        assert_eq!(settle(Some(t - 600), 600), (Timing::OnTime, t - 600));
        assert_eq!(settle(Some(t + 601), 600), (Timing::Outside, t), "too early");
        assert_eq!(settle(Some(t - 365 * 86_400), 600), (Timing::Late, t), "a year late: re-timed");
        assert_eq!(settle(Some(0), 600), (Timing::Outside, t));
        assert_eq!(
            settle(Some(t - 365 * 86_400), 0),
            (Timing::OnTime, t - 365 * 86_400),
            "no tolerance: history counts"
        );
        for absurd in [-300_000_000_000, 8_000_000_000_000, i64::MIN, i64::MAX, 0] {
            assert_eq!(settle(Some(absurd), 0), (Timing::Outside, t), "{absurd} never counts");
        }
        // Late joins and leaves count (at their arrival); late messages do not.
        let late_leave = delivery(Some(t - 3600), leave());
        assert!(late_leave.counts(Timing::Late) && !late_leave.counts(Timing::Outside));
        let late_message = delivery(Some(t - 3600), message());
        assert!(!late_message.counts(Timing::Late) && late_message.counts(Timing::OnTime));
    }
}
