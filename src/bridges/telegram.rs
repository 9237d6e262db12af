//! Telegram Bot API webhooks: `X-Telegram-Bot-Api-Secret-Token` (the `secret_token` given to
//! `setWebhook`), updates as JSON, and one method call as the answer (a `sendMessage` answering
//! the message, in its forum topic). Only what members send in groups counts: edits, channel
//! posts, linked-channel forwards and messages sent on behalf of a chat are never check-ins and
//! never make members.

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

pub struct Telegram;

impl Protocol for Telegram {
    fn kind(&self) -> Kind {
        Kind::Telegram
    }

    fn default_platform(&self) -> Option<Platform> {
        Some(Platform::Telegram)
    }

    fn verify(&self, headers: &HeaderMap, _body: &[u8], secret: &str, _now: i64) -> bool {
        verify(secret, header(headers, "x-telegram-bot-api-secret-token"))
    }

    fn parse(&self, body: &[u8]) -> Result<Parsed, ParseError> {
        parse(body)
    }

    /// Replies go without `parse_mode`, i.e. as plain text: nothing to escape. (A reply sent
    /// with `parse_mode` HTML must escape `<` `>` `&` here first.)
    /// Private-use mention marks (`domain::action::MENTION_OPEN`…) are removed: only Shoal writes
    /// them.
    fn escape(&self, text: &str) -> String {
        use crate::domain::action::{MENTION_CLOSE, MENTION_MID, MENTION_OPEN};
        text.chars().filter(|c| !matches!(*c, MENTION_OPEN | MENTION_MID | MENTION_CLOSE)).collect()
    }

    /// A `text_mention` entity (it works for members without a username), written as marks that
    /// the outbound adapter turns into `entities`.
    fn mention(&self, user_id: &str, name: &str) -> String {
        crate::domain::action::mention_marker(user_id, &self.escape(name))
    }

    /// The webhook answer is one method call: the first `Send`, as `sendMessage` (answering its
    /// message, in its topic). The rest is for later.
    fn answer(&self, _d: &Delivery, actions: Vec<Action>) -> Handled {
        let mut answer = None;
        let mut later = Vec::new();
        for a in actions {
            match &a {
                Action::Send { chat_id, text, reply_to, thread_id, .. } if answer.is_none() => {
                    let mut m = json!({"method": "sendMessage", "chat_id": number_or_text(chat_id), "text": text});
                    if let Some(r) = reply_to {
                        m["reply_parameters"] =
                            json!({"message_id": number_or_text(r), "allow_sending_without_reply": true});
                    }
                    if let Some(t) = thread_id {
                        m["message_thread_id"] = number_or_text(t);
                    }
                    answer = Some(m);
                }
                _ => later.push(a),
            }
        }
        Handled { answer, later }
    }
}

/// Telegram's ids are integers in JSON (a chat may also be `@username`).
fn number_or_text(id: &str) -> Value {
    id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(id))
}

/// Constant-time check of `X-Telegram-Bot-Api-Secret-Token`.
pub fn verify(secret: &str, header: Option<&str>) -> bool {
    header.is_some_and(|h| crate::auth::secret_eq(h.as_bytes(), secret.as_bytes()))
}

fn user(u: &Value) -> Option<User> {
    let id = u.get("id").and_then(id_of)?;
    let first = u.get("first_name").and_then(Value::as_str).unwrap_or("");
    let last = u.get("last_name").and_then(Value::as_str).unwrap_or("");
    let name = display_name(&format!("{first} {last}"));
    Some(User { name: if name.is_empty() { id.clone() } else { name }, id, role: None })
}

fn chat(c: &Value) -> Option<Chat> {
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

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let v = json_of(body)?;
    let update_id = v.get("update_id").and_then(Value::as_i64).ok_or_else(|| shape("update_id missing"))?;
    let key = format!("update:{update_id}");
    for (field, why) in [
        ("edited_message", "an edited message"),
        ("channel_post", "a channel post"),
        ("edited_channel_post", "an edited channel post"),
    ] {
        if v.get(field).is_some() {
            return Ok(Parsed::Ignored(why));
        }
    }
    if let Some(m) = v.get("message") {
        let chat_v = m.get("chat").ok_or_else(|| shape("message.chat missing"))?;
        if !matches!(chat_v.get("type").and_then(Value::as_str), Some("group") | Some("supergroup")) {
            return Ok(Parsed::Ignored("not a group chat"));
        }
        // A channel's post forwarded into its linked discussion group comes from "Telegram"
        // (777000) on behalf of the channel; an anonymous admin posts as the group itself.
        if m.get("is_automatic_forward").and_then(Value::as_bool) == Some(true) {
            return Ok(Parsed::Ignored("an automatic forward from a linked channel"));
        }
        if m.get("sender_chat").is_some_and(|c| !c.is_null()) {
            return Ok(Parsed::Ignored("sent on behalf of a chat"));
        }
        let chat = chat(chat_v).ok_or_else(|| shape("chat.id missing"))?;
        let sent_at = time_of(m.get("date"), "message.date")?;
        let at = Utc::now();
        if let Some(members) = m.get("new_chat_members").and_then(Value::as_array) {
            let adder = m.get("from").and_then(user);
            let events = members
                .iter()
                .filter(|u| !u.get("is_bot").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(user)
                .map(|u| Event {
                    chat: chat.clone(),
                    body: EventBody::Join { inviter: adder.clone().filter(|a| a.id != u.id), invite_link_name: None },
                    user: u,
                    at,
                    sent_at,
                })
                .collect();
            return Ok(Parsed::Events(Delivery { dedupe_key: key, kind: DeliveryKind::Join, self_id: None, events }));
        }
        if let Some(left) = m.get("left_chat_member").and_then(user) {
            let by = m.get("from").and_then(user);
            let reason = if by.is_some_and(|b| b.id != left.id) { LeaveReason::Kick } else { LeaveReason::Leave };
            return Ok(Parsed::Events(Delivery {
                dedupe_key: key,
                kind: DeliveryKind::Leave,
                self_id: None,
                events: vec![Event { chat, user: left, at, sent_at, body: EventBody::Leave { reason } }],
            }));
        }
        let from = m.get("from").ok_or_else(|| shape("message.from missing"))?;
        if from.get("is_bot").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(Parsed::Ignored("a bot's message"));
        }
        let Some(text) = m.get("text").and_then(Value::as_str) else { return Ok(Parsed::Ignored("no text")) };
        let user = user(from).ok_or_else(|| shape("from.id missing"))?;
        let message_id = m.get("message_id").and_then(id_of).ok_or_else(|| shape("message_id missing"))?;
        // In a forum, a message in a topic (not the General one) says so; an answer belongs there.
        let thread_id = match m.get("is_topic_message").and_then(Value::as_bool) {
            Some(true) => m.get("message_thread_id").and_then(id_of),
            _ => None,
        };
        return Ok(Parsed::Events(Delivery {
            dedupe_key: key,
            kind: DeliveryKind::Message,
            self_id: None,
            events: vec![Event {
                chat,
                user,
                at,
                sent_at,
                body: EventBody::Message {
                    text: strip_bot_name(&chat_text(text)),
                    message_id,
                    thread_id,
                    force_checkin: false,
                },
            }],
        }));
    }
    if let Some(cm) = v.get("chat_member") {
        let chat = cm.get("chat").and_then(chat).ok_or_else(|| shape("chat_member.chat missing"))?;
        let old = cm.pointer("/old_chat_member/status").and_then(Value::as_str).unwrap_or("");
        let new = cm.pointer("/new_chat_member/status").and_then(Value::as_str).unwrap_or("");
        let user =
            cm.pointer("/new_chat_member/user").and_then(user).ok_or_else(|| shape("new_chat_member.user missing"))?;
        let sent_at = time_of(cm.get("date"), "chat_member.date")?;
        let at = Utc::now();
        let inside = |s: &str| matches!(s, "member" | "administrator" | "creator" | "restricted");
        let body = if !inside(old) && inside(new) {
            let link = cm.get("invite_link");
            EventBody::Join {
                inviter: link.and_then(|l| l.get("creator")).and_then(self::user).filter(|c| c.id != user.id),
                invite_link_name: link.and_then(|l| l.get("name")).and_then(Value::as_str).map(chat_text),
            }
        } else if inside(old) && !inside(new) {
            let by = cm.get("from").and_then(self::user);
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
        let kind = if matches!(body, EventBody::Join { .. }) { DeliveryKind::Join } else { DeliveryKind::Leave };
        return Ok(Parsed::Events(Delivery {
            dedupe_key: key,
            kind,
            self_id: None,
            events: vec![Event { chat, user, at, sent_at, body }],
        }));
    }
    if let Some(r) = v.get("chat_join_request") {
        let chat = r.get("chat").and_then(chat).ok_or_else(|| shape("chat_join_request.chat missing"))?;
        let user = r.get("from").and_then(user).ok_or_else(|| shape("chat_join_request.from missing"))?;
        let sent_at = time_of(r.get("date"), "chat_join_request.date")?;
        let answer = r.get("bio").and_then(Value::as_str).map(chat_text).unwrap_or_default();
        let user_chat_id = r.get("user_chat_id").and_then(id_of);
        let invite_link_name = r.pointer("/invite_link/name").and_then(Value::as_str).map(chat_text);
        return Ok(Parsed::Events(Delivery {
            dedupe_key: key,
            kind: DeliveryKind::JoinRequest,
            self_id: None,
            events: vec![Event {
                chat,
                body: EventBody::JoinRequest {
                    request: user.id.clone(),
                    answer,
                    user_chat_id,
                    invite_link_name,
                    inviter: None,
                },
                user,
                at: Utc::now(),
                sent_at,
            }],
        }));
    }
    Ok(Parsed::Ignored("update type not handled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_lose_the_bot_name() {
        assert_eq!(strip_bot_name("/checkin@shoal_demo_bot"), "/checkin");
        assert_eq!(strip_bot_name("  /checkin@x now "), "/checkin now");
        assert_eq!(strip_bot_name("签到"), "签到");
    }

    fn message(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"update_id":1,"message":{{"message_id":9,"from":{{"id":5,"is_bot":false,"first_name":"Mei"}},"chat":{{"id":-100,"type":"supergroup"}},"date":1,"text":"签到"{extra}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_topic_message_keeps_its_thread_and_the_answer_goes_there() {
        let Parsed::Events(d) = parse(&message(r#","is_topic_message":true,"message_thread_id":77"#)).unwrap() else {
            panic!()
        };
        let EventBody::Message { thread_id, message_id, .. } = &d.events[0].body else { panic!() };
        assert_eq!((thread_id.as_deref(), message_id.as_str()), (Some("77"), "9"));
        // A reply thread in a group that is not a forum is not a topic.
        let Parsed::Events(d) = parse(&message(r#","message_thread_id":5"#)).unwrap() else { panic!() };
        assert!(matches!(&d.events[0].body, EventBody::Message { thread_id: None, .. }));
        let send = Action::Send {
            chat_id: "-100".into(),
            text: "ok".into(),
            reply_to: Some("9".into()),
            thread_id: Some("77".into()),
            mention: false,
            user_id: None,
        };
        let delete = Action::Delete { chat_id: "-100".into(), message_id: "9".into() };
        let h = Telegram.answer(&d, vec![send, delete.clone()]);
        let a = h.answer.unwrap();
        assert_eq!(a["method"], "sendMessage");
        assert_eq!((a["chat_id"].clone(), a["message_thread_id"].clone()), (json!(-100), json!(77)));
        assert_eq!(a["reply_parameters"]["message_id"], 9);
        assert_eq!(h.later, vec![delete], "one method call per answer");
    }

    #[test]
    fn edits_channel_posts_and_forwards_are_ignored() {
        let edited = r#"{"update_id":2,"edited_message":{"message_id":9,"from":{"id":5,"is_bot":false,"first_name":"M"},"chat":{"id":-100,"type":"supergroup"},"date":1,"edit_date":2,"text":"签到"}}"#.as_bytes();
        assert_eq!(parse(edited).unwrap(), Parsed::Ignored("an edited message"));
        let post = r#"{"update_id":3,"channel_post":{"message_id":9,"chat":{"id":-200,"type":"channel"},"date":1,"text":"签到"}}"#.as_bytes();
        assert_eq!(parse(post).unwrap(), Parsed::Ignored("a channel post"));
        assert_eq!(
            parse(&message(r#","is_automatic_forward":true"#)).unwrap(),
            Parsed::Ignored("an automatic forward from a linked channel")
        );
        assert_eq!(
            parse(&message(r#","sender_chat":{"id":-200,"type":"channel"}"#)).unwrap(),
            Parsed::Ignored("sent on behalf of a chat")
        );
    }

    #[test]
    fn a_join_request_keeps_its_links_name() {
        let body = r#"{"update_id":4,"chat_join_request":{"chat":{"id":-100,"type":"supergroup"},"from":{"id":8,"is_bot":false,"first_name":"Ann"},"user_chat_id":8,"date":1,"invite_link":{"invite_link":"https://t.me/+x","creator":{"id":1,"is_bot":true,"first_name":"B"},"creates_join_request":true,"is_primary":false,"is_revoked":false,"name":"abcdefgh23"}}}"#;
        let Parsed::Events(d) = parse(body.as_bytes()).unwrap() else { panic!() };
        let EventBody::JoinRequest { invite_link_name, inviter, .. } = &d.events[0].body else { panic!() };
        assert_eq!((invite_link_name.as_deref(), inviter), (Some("abcdefgh23"), &None));
    }
}
