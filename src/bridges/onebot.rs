//! OneBot v11 (NapCat, go-cqhttp, LLOneBot) over HTTP POST: `X-Signature: sha1=<hex
//! HMAC-SHA1(secret, body)>`, reports as JSON with CQ-code strings or segment arrays, and the
//! quick operation as the answer. Only the reply of a quick operation is portable (NapCat
//! ignores quick delete, kick and ban, and always quotes the message it answers), so the answer
//! carries one reply with `at_sender` set explicitly, and every other action waits for the API.

use axum::http::HeaderMap;
use chrono::Utc;
use serde_json::{json, Value};

use super::{header, Handled, Protocol};
use crate::domain::action::Action;
use crate::domain::bridge::{
    chat_text, display_name, id_of, json_of, shape, time_of, Chat, Delivery, DeliveryKind, Event, EventBody, Kind,
    LeaveReason, ParseError, Parsed, User,
};
use crate::domain::Platform;

pub struct OneBot;

impl Protocol for OneBot {
    fn kind(&self) -> Kind {
        Kind::OneBot11
    }

    fn default_platform(&self) -> Option<Platform> {
        Some(Platform::Qq)
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], secret: &str, _now: i64) -> bool {
        verify(secret, header(headers, "x-signature"), body)
    }

    fn parse(&self, body: &[u8]) -> Result<Parsed, ParseError> {
        parse(body)
    }

    /// CQ codes: a reply is a CQ-code string (Shoal sends no `auto_escape`, so an operator's
    /// template may hold CQ codes on purpose), hence `&` `[` `]` `,` of a value are escaped as
    /// `&amp;` `&#91;` `&#93;` `&#44;`, which go-cqhttp and NapCat turn back into the
    /// characters. Escaping the values works whether or not a bridge honours `auto_escape`;
    /// asking for it instead would show an operator's CQ codes as text.
    fn escape(&self, text: &str) -> String {
        escape_cq(text)
    }

    /// `[CQ:at,qq=…]` (a QQ number is digits; anything else is named as text).
    fn mention(&self, user_id: &str, name: &str) -> String {
        if !user_id.is_empty() && user_id.len() <= 20 && user_id.bytes().all(|b| b.is_ascii_digit()) {
            format!("[CQ:at,qq={user_id}]")
        } else {
            escape_cq(name)
        }
    }

    /// The quick operation holds one `Send` into the delivery's chat (not answering another
    /// message): `{"reply": text, "at_sender": mention}`. The rest is for later.
    fn answer(&self, d: &Delivery, actions: Vec<Action>) -> Handled {
        let chat = d.events.first().map(|e| e.chat.id.as_str());
        let message = d.events.first().and_then(|e| match &e.body {
            EventBody::Message { message_id, .. } => Some(message_id.as_str()),
            _ => None,
        });
        let mut answer = None;
        let mut later = Vec::new();
        for a in actions {
            match &a {
                Action::Send { chat_id, text, reply_to, mention, .. }
                    if answer.is_none()
                        && Some(chat_id.as_str()) == chat
                        && reply_to.as_deref().is_none_or(|r| Some(r) == message) =>
                {
                    answer = Some(json!({"reply": text, "at_sender": mention}));
                }
                // A picture for the same chat joins the reply as an image segment.
                Action::SendPhoto { chat_id, url, .. } if answer.is_some() && Some(chat_id.as_str()) == chat => {
                    if let Some(Value::String(reply)) = answer.as_mut().and_then(|a| a.get_mut("reply")) {
                        reply.push_str(&format!("[CQ:image,file={}]", escape_cq(url)));
                    }
                }
                _ => later.push(a),
            }
        }
        Handled { answer, later }
    }
}

/// Constant-time check of `X-Signature: sha1=<hex HMAC-SHA1(secret, body)>`.
pub fn verify(secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha1=")) else { return false };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// CQ-code escaping of a plain text: `&` → `&amp;`, `[` → `&#91;`, `]` → `&#93;`, `,` → `&#44;`.
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

fn role(v: Option<&Value>) -> Option<&'static str> {
    match v.and_then(Value::as_str) {
        Some("owner") => Some("owner"),
        Some("admin") => Some("admin"),
        Some("member") => Some("member"),
        _ => None,
    }
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let v = json_of(body)?;
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
            // Sent as "anonymous" in a QQ group: user_id is the placeholder 80000000 shared by
            // every anonymous sender, never a member.
            if obj.get("sub_type").and_then(Value::as_str) == Some("anonymous")
                || obj.get("anonymous").is_some_and(|a| !a.is_null())
            {
                return Ok(Parsed::Ignored("an anonymous message"));
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
            let name = display_name(card.or(nick).unwrap_or(&user_id));
            Ok(Parsed::Events(Delivery {
                dedupe_key: format!("msg:{self_id}:{message_id}"),
                kind: DeliveryKind::Message,
                self_id: Some(self_id),
                events: vec![Event {
                    chat: Chat { id: group_id, title: None },
                    user: User { id: user_id, name, role: role(sender.and_then(|s| s.get("role"))) },
                    at,
                    sent_at,
                    body: EventBody::Message {
                        text: text.trim().to_string(),
                        message_id,
                        thread_id: None,
                        force_checkin: false,
                    },
                }],
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
                kind: if notice == "group_increase" { DeliveryKind::Join } else { DeliveryKind::Leave },
                self_id: Some(self_id),
                events: vec![Event {
                    chat: Chat { id: group_id, title: None },
                    user: User { name: user_id.clone(), id: user_id, role: None },
                    at,
                    sent_at,
                    body,
                }],
            }))
        }
        "message_sent" => Ok(Parsed::Ignored("the bot's own message")),
        "meta_event" => Ok(Parsed::Ignored("meta event")),
        "request" => {
            // Someone asks to join a group (`sub_type` add); an invitation of the bot itself
            // into a group (`invite`) is for the owner to answer.
            if obj.get("request_type").and_then(Value::as_str) != Some("group")
                || obj.get("sub_type").and_then(Value::as_str) != Some("add")
            {
                return Ok(Parsed::Ignored("request"));
            }
            let group_id = obj.get("group_id").and_then(id_of).ok_or_else(|| shape("group_id missing"))?;
            let user_id = obj.get("user_id").and_then(id_of).ok_or_else(|| shape("user_id missing"))?;
            let flag = obj.get("flag").and_then(Value::as_str).filter(|f| !f.is_empty() && f.len() <= 200);
            let flag = flag.ok_or_else(|| shape("flag missing"))?.to_string();
            let comment = obj.get("comment").and_then(Value::as_str).map(chat_text).unwrap_or_default();
            // go-cqhttp's extension: the member who invited the applicant (0 or absent: nobody).
            let inviter = obj.get("invitor_id").and_then(id_of).filter(|i| i != "0" && *i != user_id).map(|id| User {
                name: id.clone(),
                id,
                role: None,
            });
            Ok(Parsed::Events(Delivery {
                dedupe_key: format!("request:{self_id}:{flag}"),
                kind: DeliveryKind::JoinRequest,
                self_id: Some(self_id),
                events: vec![Event {
                    chat: Chat { id: group_id, title: None },
                    user: User { name: user_id.clone(), id: user_id, role: None },
                    at,
                    sent_at,
                    body: EventBody::JoinRequest {
                        request: flag,
                        answer: comment,
                        user_chat_id: None,
                        invite_link_name: None,
                        inviter,
                    },
                }],
            }))
        }
        _ => Ok(Parsed::Ignored("unknown post_type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_codes_lose_the_bot_mention_and_are_unescaped() {
        assert_eq!(cq_text("[CQ:at,qq=10001000] 打卡", "10001000").trim(), "打卡");
        assert_eq!(cq_text("[CQ:at,qq=42] 签到", "10001000").trim(), "@42 签到");
        assert_eq!(cq_text("&#91;hi&#93; &amp; [CQ:face,id=1]ok", "1"), "[hi] & ok");
        assert_eq!(cq_text("打卡 &#91;第3天&#93;", "1"), "打卡 [第3天]");
    }

    #[test]
    fn cq_escaping_turns_codes_into_plain_text_and_cq_text_reads_it_back() {
        let card = "[CQ:at,qq=all][CQ:image,file=http://x.test/a.png]&";
        let escaped = OneBot.escape(card);
        assert_eq!(escaped, "&#91;CQ:at&#44;qq=all&#93;&#91;CQ:image&#44;file=http://x.test/a.png&#93;&amp;");
        assert!(!escaped.contains('[') && !escaped.contains(','));
        assert_eq!(cq_text(&escaped, "1"), card, "a bridge reads back exactly the name");
    }

    #[test]
    fn ids_may_be_strings_and_the_bots_own_and_anonymous_messages_are_ignored() {
        let b = br#"{"time":1,"self_id":"99","post_type":"message","message_type":"group","message_id":"-5","group_id":"7","user_id":"8","message":"hi","sender":{"nickname":"n","card":""}}"#;
        let Parsed::Events(d) = parse(b).unwrap() else { panic!() };
        assert_eq!(d.dedupe_key, "msg:99:-5");
        assert_eq!(d.events[0].user.name, "n");
        let own = br#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":99,"message":"x"}"#;
        assert_eq!(parse(own).unwrap(), Parsed::Ignored("the bot's own message"));
        let anonymous = br#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","sub_type":"anonymous","message_id":1,"group_id":7,"user_id":80000000,"anonymous":{"id":1,"name":"x","flag":"f"},"message":"x"}"#;
        assert_eq!(parse(anonymous).unwrap(), Parsed::Ignored("an anonymous message"));
        assert!(matches!(parse(b"{\"post_type\":"), Err(ParseError::Malformed(_))));
        assert!(matches!(
            parse(br#"{"post_type":"message","self_id":1,"message_type":"group","message":5}"#),
            Err(ParseError::Shape(_))
        ));
        let b = br#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":"8\u0000","message":"x"}"#;
        assert!(matches!(parse(b), Err(ParseError::Shape(_))));
        let b = br#"{"time":"soon","self_id":99,"post_type":"message","message_type":"group","message_id":1,"group_id":7,"user_id":8,"message":"x"}"#;
        assert!(matches!(parse(b), Err(ParseError::Shape(_))), "a time that is not unix seconds");
    }

    #[test]
    fn the_quick_reply_carries_one_reply_and_the_rest_waits_for_the_api() {
        let b = r#"{"time":1,"self_id":99,"post_type":"message","message_type":"group","message_id":5,"group_id":7,"user_id":8,"message":"签到"}"#.as_bytes();
        let Parsed::Events(d) = parse(b).unwrap() else { panic!() };
        let send = |chat: &str, reply_to: &str| Action::Send {
            chat_id: chat.into(),
            text: "ok".into(),
            reply_to: Some(reply_to.into()),
            thread_id: None,
            mention: false,
            user_id: None,
        };
        let reply = send("7", "5");
        let delete = Action::Delete { chat_id: "7".into(), message_id: "5".into() };
        let h = OneBot.answer(&d, vec![reply.clone(), delete.clone()]);
        assert_eq!(h.answer, Some(json!({"reply": "ok", "at_sender": false})), "at_sender is always set");
        assert_eq!(h.later, vec![delete.clone()]);
        // A second send, a send elsewhere, or one answering another message go by the API.
        let elsewhere = send("8", "5");
        let other = send("7", "4");
        let h = OneBot.answer(&d, vec![elsewhere.clone(), other.clone(), reply.clone(), reply.clone()]);
        assert_eq!(h.answer, Some(json!({"reply": "ok", "at_sender": false})));
        assert_eq!(h.later, vec![elsewhere, other, reply]);
        let mention = Action::Send {
            mention: true,
            reply_to: None,
            chat_id: "7".into(),
            text: "hi".into(),
            thread_id: None,
            user_id: None,
        };
        assert_eq!(OneBot.answer(&d, vec![mention]).answer, Some(json!({"reply": "hi", "at_sender": true})));
        let only_later = OneBot.answer(&d, vec![delete.clone()]);
        assert_eq!((only_later.answer, only_later.later), (None, vec![delete]));
    }

    #[test]
    fn a_join_request_keeps_go_cqhttps_invitor_but_not_zero_or_the_applicant() {
        let body = |invitor: &str| {
            format!(
                r#"{{"time":1,"self_id":1,"post_type":"request","request_type":"group","sub_type":"add","group_id":9,"user_id":5,"comment":"","flag":"f"{invitor}}}"#
            )
        };
        let inviter = |b: String| match parse(b.as_bytes()).unwrap() {
            Parsed::Events(d) => match &d.events[0].body {
                EventBody::JoinRequest { inviter, .. } => inviter.as_ref().map(|u| u.id.clone()),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(inviter(body(r#","invitor_id":7"#)).as_deref(), Some("7"));
        assert_eq!(inviter(body(r#","invitor_id":0"#)), None);
        assert_eq!(inviter(body(r#","invitor_id":5"#)), None);
        assert_eq!(inviter(body("")), None);
    }
}
