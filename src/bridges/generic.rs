//! Shoal's generic bridge: any bot that can sign with HMAC-SHA256 posts one event as JSON
//! (`GenericEvent`, in the OpenAPI document) and reads the answer: `{"reply": text, "actions":
//! [...]}`, every action in the answer (the reply's text also as `reply`, for bots that only
//! post a text).

use axum::http::HeaderMap;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use super::{header, Handled, Protocol};
use crate::domain::action::Action;
use crate::domain::bridge::{
    chat_text, json_of, Chat, Delivery, DeliveryKind, Event, EventBody, Kind, LeaveReason, ParseError, Parsed, User,
};
use crate::domain::Platform;

pub struct Generic;

impl Protocol for Generic {
    fn kind(&self) -> Kind {
        Kind::Generic
    }

    /// A generic bridge can report any platform: the operator says which.
    fn default_platform(&self) -> Option<Platform> {
        None
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], secret: &str, now: i64) -> bool {
        verify(secret, header(headers, "x-shoal-timestamp"), header(headers, "x-shoal-signature"), body, now)
    }

    fn parse(&self, body: &[u8]) -> Result<Parsed, ParseError> {
        parse(body)
    }

    /// Plain text by contract.
    fn escape(&self, text: &str) -> String {
        text.to_string()
    }

    /// Everything goes in the answer: `actions`, and `reply` with the text of the first `Send`
    /// into the delivery's chat.
    fn answer(&self, d: &Delivery, actions: Vec<Action>) -> Handled {
        if actions.is_empty() {
            return Handled { answer: None, later: Vec::new() };
        }
        let chat = d.events.first().map(|e| e.chat.id.as_str());
        let reply = actions.iter().find_map(|a| match a {
            Action::Send { chat_id, text, .. } if Some(chat_id.as_str()) == chat => Some(text.clone()),
            _ => None,
        });
        let mut answer = json!({"actions": actions});
        if let Some(text) = reply {
            answer["reply"] = Value::String(text);
        }
        Handled { answer: Some(answer), later: Vec::new() }
    }
}

/// `X-Shoal-Timestamp: <unix>` and `X-Shoal-Signature: v1=<hex HMAC-SHA256(secret,
/// "<timestamp>.<body>")>`, within 5 minutes of `now`, compared in constant time.
pub fn verify(secret: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> bool {
    let (Some(ts), Some(sig)) = (timestamp, signature) else { return false };
    let Ok(t) = ts.trim().parse::<i64>() else { return false };
    if (now - t).abs() > 300 {
        return false;
    }
    let Some(Ok(given)) = sig.trim().strip_prefix("v1=").map(hex::decode) else { return false };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(ts.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The signature of `body` at `timestamp` (for clients, tests, and Shoal's own posts).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The generic webhook body (documented in the OpenAPI document).
#[derive(Debug, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericEvent {
    /// Unique per bridge; a retry repeats it.
    pub event_id: String,
    /// `checkin`, `message`, `join` or `leave`.
    pub kind: String,
    /// The chat's id on its platform.
    pub group_id: String,
    pub member_id: String,
    pub display_name: Option<String>,
    /// Message text (`message`). A `checkin` needs none; any text it has is kept as the
    /// check-in's note (after a keyword, if it starts with one).
    pub text: Option<String>,
    /// Unix seconds; default: when it arrives. An event more than
    /// `bridges.event_time_tolerance_secs` (10 minutes by default) off, or outside the years
    /// 2000–2100, is recorded but counts for nothing (no check-in, no points) and gets no reply;
    /// a late `join` or `leave` is recorded at its arrival.
    pub timestamp: Option<i64>,
    /// Member id of whoever invited the member (`join`).
    pub inviter: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let v = json_of(body)?;
    let e: GenericEvent = serde_json::from_value(v).map_err(|e| ParseError::Shape(e.to_string()))?;
    let bad = |f: &str| ParseError::Shape(format!("{f} must be 1 to 128 characters, none of them a control character"));
    for (name, val) in [("event_id", &e.event_id), ("group_id", &e.group_id), ("member_id", &e.member_id)] {
        if val.trim().is_empty() || val.len() > 128 || val.chars().any(char::is_control) {
            return Err(bad(name));
        }
    }
    if e.inviter.as_deref().is_some_and(|i| i.trim().is_empty() || i.len() > 128 || i.chars().any(char::is_control)) {
        return Err(bad("inviter"));
    }
    let at = Utc::now();
    let name = e
        .display_name
        .as_deref()
        .map(chat_text)
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| e.member_id.clone());
    let user = User { id: e.member_id.clone(), name: name.trim().chars().take(120).collect(), role: None };
    let (body, kind) = match e.kind.as_str() {
        "checkin" | "message" => (
            EventBody::Message {
                text: chat_text(e.text.as_deref().unwrap_or_default()).trim().to_string(),
                message_id: e.event_id.clone(),
                thread_id: None,
                force_checkin: e.kind == "checkin",
            },
            DeliveryKind::Message,
        ),
        "join" => (
            EventBody::Join {
                inviter: e.inviter.clone().filter(|i| *i != e.member_id).map(|id| User {
                    name: id.clone(),
                    id,
                    role: None,
                }),
                invite_link_name: None,
            },
            DeliveryKind::Join,
        ),
        "leave" => (EventBody::Leave { reason: LeaveReason::Leave }, DeliveryKind::Leave),
        _ => return Ok(Parsed::Ignored("unknown kind")),
    };
    Ok(Parsed::Events(Delivery {
        dedupe_key: format!("event:{}", e.event_id),
        kind,
        self_id: None,
        events: vec![Event { chat: Chat { id: e.group_id, title: None }, user, at, sent_at: e.timestamp, body }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_expire_after_five_minutes() {
        let body = br#"{"event_id":"1"}"#;
        let sig = sign("s3cret", 1_000_000, body);
        assert!(verify("s3cret", Some("1000000"), Some(&sig), body, 1_000_100));
        assert!(!verify("s3cret", Some("1000000"), Some(&sig), body, 1_000_301));
        assert!(!verify("other", Some("1000000"), Some(&sig), body, 1_000_000));
        assert!(!verify("s3cret", Some("1000001"), Some(&sig), body, 1_000_000));
    }

    #[test]
    fn nul_characters_are_dropped_from_chat_text_and_refused_in_ids() {
        let b = br#"{"event_id":"e1","kind":"message","group_id":"g","member_id":"m","display_name":"a\u0000b","text":"hi\u0000"}"#;
        let Parsed::Events(d) = parse(b).unwrap() else { panic!() };
        assert_eq!(d.events[0].user.name, "ab");
        assert_eq!(
            d.events[0].body,
            EventBody::Message { text: "hi".into(), message_id: "e1".into(), thread_id: None, force_checkin: false }
        );
        let b = br#"{"event_id":"e1","kind":"message","group_id":"g\u0000","member_id":"m"}"#;
        assert!(matches!(parse(b), Err(ParseError::Shape(_))));
    }

    #[test]
    fn the_answer_carries_every_action_and_the_reply_text() {
        let b = br#"{"event_id":"e1","kind":"checkin","group_id":"g","member_id":"m"}"#;
        let Parsed::Events(d) = parse(b).unwrap() else { panic!() };
        let send = Action::Send {
            chat_id: "g".into(),
            text: "ok".into(),
            reply_to: Some("e1".into()),
            thread_id: None,
            mention: false,
        };
        let delete = Action::Delete { chat_id: "g".into(), message_id: "e1".into() };
        let h = Generic.answer(&d, vec![send, delete]);
        let a = h.answer.unwrap();
        assert_eq!(a["reply"], "ok");
        assert_eq!(a["actions"][1]["action"], "delete");
        assert!(h.later.is_empty());
        assert_eq!(Generic.answer(&d, vec![]).answer, None);
    }
}
