//! Bridge adapters: each protocol's JSON (OneBot v11, Telegram Bot API, Shoal's generic schema)
//! is translated into Shoal's own `Event`s here, and Shoal's reply back into the protocol's
//! answer. No protocol type leaks past this module. Signatures are checked before any parsing,
//! over the raw bytes, in constant time.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OneBot11,
    Telegram,
    Generic,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "onebot11" => Some(Kind::OneBot11),
            "telegram" => Some(Kind::Telegram),
            "generic" => Some(Kind::Generic),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OneBot11 => "onebot11",
            Kind::Telegram => "telegram",
            Kind::Generic => "generic",
        }
    }

    /// `value` made safe to put into a message sent through this kind of bridge: every value
    /// substituted into an outbound text (a member's name, any text from a chat) goes through
    /// here, so that it reads as plain text and never as markup of the platform.
    ///
    /// - OneBot v11: CQ codes. A reply is a CQ-code string (Shoal sends no `auto_escape`, so an
    ///   operator's template may hold CQ codes on purpose), hence `&` `[` `]` `,` of a value are
    ///   escaped as `&amp;` `&#91;` `&#93;` `&#44;`, which go-cqhttp and NapCat turn back into
    ///   the characters. Escaping the values works whether or not a bridge honours
    ///   `auto_escape`; asking for it instead would show an operator's CQ codes as text.
    /// - Telegram: replies go without `parse_mode`, i.e. as plain text: nothing to escape.
    ///   (A reply sent with `parse_mode` HTML must escape `<` `>` `&` here first.)
    /// - Generic: plain text by contract.
    pub fn escape(self, value: &str) -> String {
        match self {
            Kind::OneBot11 => escape_cq(value),
            Kind::Telegram | Kind::Generic => value.to_string(),
        }
    }
}

/// CQ-code escaping of a plain text (OneBot v11): `&` → `&amp;`, `[` → `&#91;`, `]` → `&#93;`,
/// `,` → `&#44;`.
pub fn escape_cq(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '[' => out.push_str("&#91;"),
            ']' => out.push_str("&#93;"),
            ',' => out.push_str("&#44;"),
            c => out.push(c),
        }
    }
    out
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    Leave,
    Kick,
    KickMe,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Leave => "leave",
            LeaveReason::Kick => "kick",
            LeaveReason::KickMe => "kick_me",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    /// A chat message; `text` has mentions of the bot removed and is trimmed.
    Message {
        text: String,
        message_id: String,
        force_checkin: bool,
    },
    Join {
        inviter: Option<User>,
        invite_link_name: Option<String>,
    },
    Leave {
        reason: LeaveReason,
    },
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

/// What a delivery holds once parsed.
#[derive(Debug, PartialEq)]
pub struct Delivery {
    /// Unique per bridge: retries of the same delivery carry the same key.
    pub dedupe_key: String,
    pub kind: &'static str,
    /// The bot's own id, when the protocol says.
    pub self_id: Option<String>,
    pub events: Vec<Event>,
    /// Where a Telegram reply goes: (chat id, message id).
    pub reply_to: Option<(Value, Value)>,
}

impl Delivery {
    /// Takes the events' own times where they lie within `tolerance_secs` of `now` (0: any time
    /// in [`EVENT_TIME_RANGE`]); an event without a time happened `now`. False when an event's
    /// time lies outside: such a delivery is recorded but must not count (no activity, no
    /// check-in, no points, no reply), and its time must not reach the database.
    pub fn settle_time(&mut self, now: DateTime<Utc>, tolerance_secs: i64) -> bool {
        let mut on_time = true;
        for e in &mut self.events {
            e.at = now;
            let Some(t) = e.sent_at else { continue };
            let within =
                EVENT_TIME_RANGE.contains(&t) && (tolerance_secs <= 0 || (t - now.timestamp()).abs() <= tolerance_secs);
            match Utc.timestamp_opt(t, 0).single() {
                Some(at) if within => e.at = at,
                _ => on_time = false,
            }
        }
        on_time
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

fn shape(msg: &str) -> ParseError {
    ParseError::Shape(msg.to_string())
}

/// An id given as a number or a string (1 to 128 characters, no control characters: an id
/// with a NUL cannot be stored and no platform makes one).
fn id_of(v: &Value) -> Option<String> {
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

/// An event's own time: absent (or null) is `None` (it happens on arrival); anything but whole
/// unix seconds is a malformed delivery.
fn time_of(v: Option<&Value>, field: &str) -> Result<Option<i64>, ParseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ParseError::Shape(format!("{field} must be unix seconds"))),
    }
}

// ---- signatures ----

/// Constant-time check of `X-Signature: sha1=<hex HMAC-SHA1(secret, body)>` (OneBot v11).
pub fn verify_onebot(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha1=")) else { return false };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Constant-time check of `X-Telegram-Bot-Api-Secret-Token`.
pub fn verify_telegram(secret: &str, header: Option<&str>) -> bool {
    header.is_some_and(|h| crate::auth::secret_eq(h.as_bytes(), secret.as_bytes()))
}

/// The generic scheme: `X-Shoal-Timestamp: <unix>` and
/// `X-Shoal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, within 5 minutes.
pub fn verify_generic(secret: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> bool {
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

/// The generic signature for `body` at `timestamp` (for clients and tests).
pub fn sign_generic(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

// ---- OneBot v11 ----

/// Text of a CQ-code message: text kept (unescaped), `[CQ:at,qq=<self>]` dropped, other codes
/// dropped too (images, faces…); mentions of others are kept as `@id` so a check-in must be bare.
fn cq_text(s: &str, self_id: &str) -> String {
    let unescape = |t: &str| t.replace("&#91;", "[").replace("&#93;", "]").replace("&#44;", ",").replace("&amp;", "&");
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("[CQ:") {
        out.push_str(&unescape(&rest[..start]));
        let Some(end) = rest[start..].find(']') else {
            rest = &rest[start..];
            break;
        };
        let code = &rest[start + 4..start + end];
        let mut parts = code.split(',');
        if parts.next() == Some("at") {
            let qq = parts.find_map(|p| p.strip_prefix("qq=")).unwrap_or("");
            if qq != self_id {
                out.push('@');
                out.push_str(&unescape(qq));
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(&unescape(rest));
    out
}

fn segments_text(segs: &[Value], self_id: &str) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg.get("type").and_then(Value::as_str) {
            Some("text") => out.push_str(seg.pointer("/data/text").and_then(Value::as_str).unwrap_or("")),
            Some("at") => {
                let qq = seg.pointer("/data/qq").and_then(id_of).unwrap_or_default();
                if qq != self_id {
                    out.push('@');
                    out.push_str(&qq);
                }
            }
            _ => {}
        }
    }
    out
}

fn onebot_role(v: Option<&Value>) -> Option<&'static str> {
    match v.and_then(Value::as_str) {
        Some("owner") => Some("owner"),
        Some("admin") => Some("admin"),
        Some("member") => Some("member"),
        _ => None,
    }
}

pub fn parse_onebot(body: &[u8]) -> Result<Parsed, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| shape("not an object"))?;
    let post_type = obj.get("post_type").and_then(Value::as_str).ok_or_else(|| shape("post_type missing"))?;
    let self_id = obj.get("self_id").and_then(id_of).ok_or_else(|| shape("self_id missing"))?;
    let sent_at = time_of(obj.get("time"), "time")?;
    let at = Utc::now();
    match post_type {
        "message" => {
            if obj.get("message_type").and_then(Value::as_str) != Some("group") {
                return Ok(Parsed::Ignored("not a group message"));
            }
            let user_id = obj.get("user_id").and_then(id_of).ok_or_else(|| shape("user_id missing"))?;
            if user_id == self_id {
                return Ok(Parsed::Ignored("the bot's own message"));
            }
            let group_id = obj.get("group_id").and_then(id_of).ok_or_else(|| shape("group_id missing"))?;
            let message_id = obj.get("message_id").and_then(id_of).ok_or_else(|| shape("message_id missing"))?;
            let text = match obj.get("message") {
                Some(Value::String(s)) => cq_text(s, &self_id),
                Some(Value::Array(segs)) => segments_text(segs, &self_id),
                _ => return Err(shape("message must be a string or an array")),
            };
            let text = chat_text(&text);
            let sender = obj.get("sender");
            let card = sender.and_then(|s| s.get("card")).and_then(Value::as_str).filter(|c| !c.trim().is_empty());
            let nick = sender.and_then(|s| s.get("nickname")).and_then(Value::as_str);
            let name = chat_text(card.or(nick).unwrap_or(&user_id)).trim().chars().take(120).collect();
            Ok(Parsed::Events(Delivery {
                dedupe_key: format!("msg:{self_id}:{message_id}"),
                kind: "message",
                self_id: Some(self_id),
                events: vec![Event {
                    chat: Chat { id: group_id, title: None },
                    user: User { id: user_id, name, role: onebot_role(sender.and_then(|s| s.get("role"))) },
                    at,
                    sent_at,
                    body: EventBody::Message { text: text.trim().to_string(), message_id, force_checkin: false },
                }],
                reply_to: None,
            }))
        }
        "notice" => {
            let notice = obj.get("notice_type").and_then(Value::as_str).unwrap_or("");
            if notice != "group_increase" && notice != "group_decrease" {
                return Ok(Parsed::Ignored("notice not handled"));
            }
            let group_id = obj.get("group_id").and_then(id_of).ok_or_else(|| shape("group_id missing"))?;
            let user_id = obj.get("user_id").and_then(id_of).ok_or_else(|| shape("user_id missing"))?;
            let operator = obj.get("operator_id").and_then(id_of).filter(|o| o != "0" && *o != user_id);
            let sub = obj.get("sub_type").and_then(Value::as_str).unwrap_or("");
            let time = obj.get("time").and_then(Value::as_i64).unwrap_or(0);
            let body = if notice == "group_increase" {
                EventBody::Join {
                    inviter: operator.filter(|_| sub == "invite" || sub == "approve").map(|id| User {
                        name: id.clone(),
                        id,
                        role: None,
                    }),
                    invite_link_name: None,
                }
            } else {
                EventBody::Leave {
                    reason: match sub {
                        "kick" => LeaveReason::Kick,
                        "kick_me" => LeaveReason::KickMe,
                        _ => LeaveReason::Leave,
                    },
                }
            };
            Ok(Parsed::Events(Delivery {
                dedupe_key: format!("notice:{self_id}:{notice}:{group_id}:{user_id}:{time}"),
                kind: if notice == "group_increase" { "join" } else { "leave" },
                self_id: Some(self_id),
                events: vec![Event {
                    chat: Chat { id: group_id, title: None },
                    user: User { name: user_id.clone(), id: user_id, role: None },
                    at,
                    sent_at,
                    body,
                }],
                reply_to: None,
            }))
        }
        "message_sent" => Ok(Parsed::Ignored("the bot's own message")),
        "meta_event" => Ok(Parsed::Ignored("meta event")),
        "request" => Ok(Parsed::Ignored("request")),
        _ => Ok(Parsed::Ignored("unknown post_type")),
    }
}

/// The quick-operation answer: `{"reply": …, "at_sender": true}`.
pub fn onebot_reply(text: &str) -> Value {
    json!({"reply": text, "at_sender": true})
}

// ---- Telegram ----

fn tg_user(u: &Value) -> Option<User> {
    let id = u.get("id").and_then(id_of)?;
    let first = u.get("first_name").and_then(Value::as_str).unwrap_or("");
    let last = u.get("last_name").and_then(Value::as_str).unwrap_or("");
    let name = chat_text(&format!("{first} {last}")).trim().chars().take(120).collect::<String>();
    Some(User { name: if name.is_empty() { id.clone() } else { name }, id, role: None })
}

fn tg_chat(c: &Value) -> Option<Chat> {
    Some(Chat { id: c.get("id").and_then(id_of)?, title: c.get("title").and_then(Value::as_str).map(chat_text) })
}

/// `/checkin@shoal_bot rest` → `/checkin rest`: commands may name the bot.
fn strip_bot_name(text: &str) -> String {
    let text = text.trim();
    if let Some(cmd) = text.strip_prefix('/') {
        let (head, tail) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
        let name = head.split('@').next().unwrap_or(head);
        return format!("/{name} {tail}").trim().to_string();
    }
    text.to_string()
}

pub fn parse_telegram(body: &[u8]) -> Result<Parsed, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let update_id = v.get("update_id").and_then(Value::as_i64).ok_or_else(|| shape("update_id missing"))?;
    let key = format!("update:{update_id}");
    if let Some(m) = v.get("message") {
        let chat_v = m.get("chat").ok_or_else(|| shape("message.chat missing"))?;
        if !matches!(chat_v.get("type").and_then(Value::as_str), Some("group") | Some("supergroup")) {
            return Ok(Parsed::Ignored("not a group chat"));
        }
        if m.get("sender_chat").is_some() {
            return Ok(Parsed::Ignored("sent on behalf of a chat"));
        }
        let chat = tg_chat(chat_v).ok_or_else(|| shape("chat.id missing"))?;
        let sent_at = time_of(m.get("date"), "message.date")?;
        let at = Utc::now();
        let message_id = m.get("message_id").cloned().unwrap_or(Value::Null);
        let reply_to = Some((chat_v.get("id").cloned().unwrap_or(Value::Null), message_id.clone()));
        if let Some(members) = m.get("new_chat_members").and_then(Value::as_array) {
            let adder = m.get("from").and_then(tg_user);
            let events = members
                .iter()
                .filter(|u| !u.get("is_bot").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(tg_user)
                .map(|u| Event {
                    chat: chat.clone(),
                    body: EventBody::Join { inviter: adder.clone().filter(|a| a.id != u.id), invite_link_name: None },
                    user: u,
                    at,
                    sent_at,
                })
                .collect();
            return Ok(Parsed::Events(Delivery {
                dedupe_key: key,
                kind: "join",
                self_id: None,
                events,
                reply_to: None,
            }));
        }
        if let Some(left) = m.get("left_chat_member").and_then(tg_user) {
            let by = m.get("from").and_then(tg_user);
            let reason = if by.is_some_and(|b| b.id != left.id) { LeaveReason::Kick } else { LeaveReason::Leave };
            return Ok(Parsed::Events(Delivery {
                dedupe_key: key,
                kind: "leave",
                self_id: None,
                events: vec![Event { chat, user: left, at, sent_at, body: EventBody::Leave { reason } }],
                reply_to: None,
            }));
        }
        let from = m.get("from").ok_or_else(|| shape("message.from missing"))?;
        if from.get("is_bot").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(Parsed::Ignored("a bot's message"));
        }
        let Some(text) = m.get("text").and_then(Value::as_str) else { return Ok(Parsed::Ignored("no text")) };
        let user = tg_user(from).ok_or_else(|| shape("from.id missing"))?;
        return Ok(Parsed::Events(Delivery {
            dedupe_key: key,
            kind: "message",
            self_id: None,
            events: vec![Event {
                chat,
                user,
                at,
                sent_at,
                body: EventBody::Message {
                    text: strip_bot_name(&chat_text(text)),
                    message_id: id_of(&message_id).unwrap_or_default(),
                    force_checkin: false,
                },
            }],
            reply_to,
        }));
    }
    if let Some(cm) = v.get("chat_member") {
        let chat = cm.get("chat").and_then(tg_chat).ok_or_else(|| shape("chat_member.chat missing"))?;
        let old = cm.pointer("/old_chat_member/status").and_then(Value::as_str).unwrap_or("");
        let new = cm.pointer("/new_chat_member/status").and_then(Value::as_str).unwrap_or("");
        let user = cm
            .pointer("/new_chat_member/user")
            .and_then(tg_user)
            .ok_or_else(|| shape("new_chat_member.user missing"))?;
        let sent_at = time_of(cm.get("date"), "chat_member.date")?;
        let at = Utc::now();
        let inside = |s: &str| matches!(s, "member" | "administrator" | "creator" | "restricted");
        let body = if !inside(old) && inside(new) {
            let link = cm.get("invite_link");
            EventBody::Join {
                inviter: link.and_then(|l| l.get("creator")).and_then(tg_user).filter(|c| c.id != user.id),
                invite_link_name: link.and_then(|l| l.get("name")).and_then(Value::as_str).map(chat_text),
            }
        } else if inside(old) && !inside(new) {
            let by = cm.get("from").and_then(tg_user);
            EventBody::Leave {
                reason: if new == "kicked" || by.is_some_and(|b| b.id != user.id) {
                    LeaveReason::Kick
                } else {
                    LeaveReason::Leave
                },
            }
        } else {
            return Ok(Parsed::Ignored("no membership change"));
        };
        let kind = if matches!(body, EventBody::Join { .. }) { "join" } else { "leave" };
        return Ok(Parsed::Events(Delivery {
            dedupe_key: key,
            kind,
            self_id: None,
            events: vec![Event { chat, user, at, sent_at, body }],
            reply_to: None,
        }));
    }
    Ok(Parsed::Ignored("update type not handled"))
}

/// A `sendMessage` method answer replying to the message that triggered it.
pub fn telegram_reply(chat_id: &Value, message_id: &Value, text: &str) -> Value {
    json!({"method": "sendMessage", "chat_id": chat_id, "text": text, "reply_parameters": {"message_id": message_id}})
}

// ---- generic ----

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
    /// Message text (`message`; a `checkin` needs none).
    pub text: Option<String>,
    /// Unix seconds; default: when it arrives. An event more than
    /// `bridges.event_time_tolerance_secs` (10 minutes by default) off, or outside the years
    /// 2000–2100, is recorded but counts for nothing (no check-in, no points) and gets no reply.
    pub timestamp: Option<i64>,
    /// Member id of whoever invited the member (`join`).
    pub inviter: Option<String>,
}

pub fn parse_generic(body: &[u8]) -> Result<Parsed, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
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
    let body = match e.kind.as_str() {
        "checkin" => EventBody::Message {
            text: chat_text(e.text.as_deref().unwrap_or_default()),
            message_id: e.event_id.clone(),
            force_checkin: true,
        },
        "message" => EventBody::Message {
            text: chat_text(e.text.as_deref().unwrap_or_default()).trim().to_string(),
            message_id: e.event_id.clone(),
            force_checkin: false,
        },
        "join" => EventBody::Join {
            inviter: e.inviter.clone().filter(|i| *i != e.member_id).map(|id| User {
                name: id.clone(),
                id,
                role: None,
            }),
            invite_link_name: None,
        },
        "leave" => EventBody::Leave { reason: LeaveReason::Leave },
        _ => return Ok(Parsed::Ignored("unknown kind")),
    };
    let kind = match e.kind.as_str() {
        "checkin" | "message" => "message",
        "join" => "join",
        _ => "leave",
    };
    Ok(Parsed::Events(Delivery {
        dedupe_key: format!("event:{}", e.event_id),
        kind,
        self_id: None,
        events: vec![Event { chat: Chat { id: e.group_id, title: None }, user, at, sent_at: e.timestamp, body }],
        reply_to: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_codes_lose_the_bot_mention_and_are_unescaped() {
        assert_eq!(cq_text("[CQ:at,qq=10001000] 打卡", "10001000").trim(), "打卡");
        assert_eq!(cq_text("[CQ:at,qq=42] 签到", "10001000").trim(), "@42 签到");
        assert_eq!(cq_text("&#91;hi&#93; &amp; [CQ:face,id=1]ok", "1"), "[hi] & ok");
    }

    #[test]
    fn cq_escaping_turns_codes_into_plain_text_and_cq_text_reads_it_back() {
        let card = "[CQ:at,qq=all][CQ:image,file=http://x.test/a.png]&";
        let escaped = Kind::OneBot11.escape(card);
        assert_eq!(escaped, "&#91;CQ:at&#44;qq=all&#93;&#91;CQ:image&#44;file=http://x.test/a.png&#93;&amp;");
        assert!(!escaped.contains('[') && !escaped.contains(','));
        assert_eq!(cq_text(&escaped, "1"), card, "a bridge reads back exactly the name");
        assert_eq!(Kind::Telegram.escape(card), card, "Telegram replies are plain text");
        assert_eq!(Kind::Generic.escape(card), card);
    }

    #[test]
    fn event_times_count_only_within_the_tolerance_and_the_supported_years() {
        let now = Utc.timestamp_opt(1_796_000_000, 0).unwrap();
        let delivery = |sent_at: Option<i64>| Delivery {
            dedupe_key: "k".into(),
            kind: "message",
            self_id: None,
            events: vec![Event {
                chat: Chat { id: "c".into(), title: None },
                user: User { id: "u".into(), name: "n".into(), role: None },
                at: now,
                sent_at,
                body: EventBody::Leave { reason: LeaveReason::Leave },
            }],
            reply_to: None,
        };
        let settle = |sent_at: Option<i64>, tolerance: i64| {
            let mut d = delivery(sent_at);
            let ok = d.settle_time(now, tolerance);
            (ok, d.events[0].at.timestamp())
        };
        let t = now.timestamp();
        assert_eq!(settle(None, 600), (true, t));
        assert_eq!(settle(Some(t - 600), 600), (true, t - 600));
        assert_eq!(settle(Some(t + 601), 600), (false, t), "too early");
        assert_eq!(settle(Some(t - 365 * 86_400), 600), (false, t), "a year late");
        assert_eq!(settle(Some(0), 600), (false, t));
        assert_eq!(settle(Some(t - 365 * 86_400), 0), (true, t - 365 * 86_400), "no tolerance: history counts");
        for absurd in [-300_000_000_000, 8_000_000_000_000, i64::MIN, i64::MAX, 0] {
            assert_eq!(settle(Some(absurd), 0), (false, t), "{absurd} never counts");
        }
    }

    #[test]
    fn nul_characters_are_dropped_from_chat_text_and_refused_in_ids() {
        let b = br#"{"event_id":"e1","kind":"message","group_id":"g","member_id":"m","display_name":"a\u0000b","text":"hi\u0000"}"#;
        let Parsed::Events(d) = parse_generic(b).unwrap() else { panic!() };
        assert_eq!(d.events[0].user.name, "ab");
        assert_eq!(
            d.events[0].body,
            EventBody::Message { text: "hi".into(), message_id: "e1".into(), force_checkin: false }
        );
        let b = br#"{"event_id":"e1","kind":"message","group_id":"g\u0000","member_id":"m"}"#;
        assert!(matches!(parse_generic(b), Err(ParseError::Shape(_))));
        let b = br#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":"8\u0000","message":"x"}"#;
        assert!(matches!(parse_onebot(b), Err(ParseError::Shape(_))));
        let b = br#"{"time":"soon","self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":8,"message":"x"}"#;
        assert!(matches!(parse_onebot(b), Err(ParseError::Shape(_))), "a time that is not unix seconds");
    }

    #[test]
    fn telegram_commands_lose_the_bot_name() {
        assert_eq!(strip_bot_name("/checkin@shoal_demo_bot"), "/checkin");
        assert_eq!(strip_bot_name("  /checkin@x now "), "/checkin now");
        assert_eq!(strip_bot_name("签到"), "签到");
    }

    #[test]
    fn generic_signatures_expire_after_five_minutes() {
        let body = br#"{"event_id":"1"}"#;
        let sig = sign_generic("s3cret", 1_000_000, body);
        assert!(verify_generic("s3cret", Some("1000000"), Some(&sig), body, 1_000_100));
        assert!(!verify_generic("s3cret", Some("1000000"), Some(&sig), body, 1_000_301));
        assert!(!verify_generic("other", Some("1000000"), Some(&sig), body, 1_000_000));
        assert!(!verify_generic("s3cret", Some("1000001"), Some(&sig), body, 1_000_000));
    }

    #[test]
    fn onebot_ids_may_be_strings_and_the_bots_own_messages_are_ignored() {
        let b = br#"{"time":1,"self_id":"99","post_type":"message","message_type":"group","message_id":"-5","group_id":"7","user_id":"8","message":"hi","sender":{"nickname":"n","card":""}}"#;
        let Parsed::Events(d) = parse_onebot(b).unwrap() else { panic!() };
        assert_eq!(d.dedupe_key, "msg:99:-5");
        assert_eq!(d.events[0].user.name, "n");
        let own = br#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":99,"message":"x"}"#;
        assert_eq!(parse_onebot(own).unwrap(), Parsed::Ignored("the bot's own message"));
        assert!(matches!(parse_onebot(b"{\"post_type\":"), Err(ParseError::Malformed(_))));
        assert!(matches!(
            parse_onebot(br#"{"post_type":"message","self_id":1,"message_type":"group","message":5}"#),
            Err(ParseError::Shape(_))
        ));
    }
}
