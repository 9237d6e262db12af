//! What Shoal asks a bot to do in a chat: the answer to a delivery (a reply, a deletion, a mute…)
//! and every outbound call a job makes. Protocol-neutral: each bridge protocol turns an action
//! into its own call (OneBot v11 `send_group_msg`, Telegram `sendMessage`, the generic bridge's
//! signed POST), and says which actions it can carry in the immediate answer to a webhook.

use serde::{Deserialize, Serialize};

/// One thing a bot should do in one chat. Ids are the platform's, as text (QQ numbers, Telegram
/// chat and message ids); `text` is plain text, already escaped for the platform by whoever
/// built it ([`crate::bridges::Protocol::escape`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Send a text to the chat, optionally answering a message and inside a forum topic.
    Send {
        chat_id: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
        /// Mention the sender of `reply_to` (OneBot `at_sender`); the text then does not repeat
        /// the name.
        #[serde(default)]
        mention: bool,
        /// Whom `mention` names when the action goes through the bot's API rather than as the
        /// answer to a delivery (OneBot `[CQ:at,qq=…]`; Telegram's reply already notifies).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// Send a picture (an http(s) URL the platform fetches) with an optional caption.
    SendPhoto {
        chat_id: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
    },
    /// Delete a message.
    Delete { chat_id: String, message_id: String },
    /// Keep a member from speaking for `seconds` (0 lifts it).
    Mute { chat_id: String, user_id: String, seconds: u32 },
    /// Remove a member; `ban` also keeps them from coming back.
    Kick { chat_id: String, user_id: String, ban: bool },
    /// Lift a ban, so that a removed member may come back (Telegram `unbanChatMember` with
    /// `only_if_banned`, which never removes a member who is in the chat). OneBot v11 has no
    /// such call: the action fails there, saying so.
    Unban { chat_id: String, user_id: String },
    /// Answer a request to join: OneBot's `flag`, Telegram's user id.
    JoinRequest {
        chat_id: String,
        request: String,
        approve: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Action {
    /// The chat the action happens in (rate limits count per chat).
    pub fn chat_id(&self) -> &str {
        match self {
            Action::Send { chat_id, .. }
            | Action::SendPhoto { chat_id, .. }
            | Action::Delete { chat_id, .. }
            | Action::Mute { chat_id, .. }
            | Action::Kick { chat_id, .. }
            | Action::Unban { chat_id, .. }
            | Action::JoinRequest { chat_id, .. } => chat_id,
        }
    }

    /// A short name for logs and the call log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Send { .. } => "send",
            Action::SendPhoto { .. } => "send_photo",
            Action::Delete { .. } => "delete",
            Action::Mute { .. } => "mute",
            Action::Kick { .. } => "kick",
            Action::Unban { .. } => "unban",
            Action::JoinRequest { .. } => "join_request",
        }
    }

    /// Whether doing it twice leaves the chat as doing it once (a mute, a kick, a deletion, an
    /// answer to a join request). A send is not: a second attempt after an unknown outcome could
    /// post the message twice, so it is never repeated by itself.
    pub fn idempotent(&self) -> bool {
        !matches!(self, Action::Send { .. } | Action::SendPhoto { .. })
    }

    /// The member or message acted on, for the call log.
    pub fn target(&self) -> Option<&str> {
        match self {
            Action::Send { reply_to, .. } | Action::SendPhoto { reply_to, .. } => reply_to.as_deref(),
            Action::Delete { message_id, .. } => Some(message_id),
            Action::Mute { user_id, .. } | Action::Kick { user_id, .. } | Action::Unban { user_id, .. } => {
                Some(user_id)
            }
            Action::JoinRequest { request, .. } => Some(request),
        }
    }

    /// The same action in the chat's new id (a Telegram group that became a supergroup).
    pub fn with_chat_id(&self, new: &str) -> Action {
        let mut a = self.clone();
        match &mut a {
            Action::Send { chat_id, .. }
            | Action::SendPhoto { chat_id, .. }
            | Action::Delete { chat_id, .. }
            | Action::Mute { chat_id, .. }
            | Action::Kick { chat_id, .. }
            | Action::Unban { chat_id, .. }
            | Action::JoinRequest { chat_id, .. } => *chat_id = new.to_string(),
        }
        a
    }
}

/// Marks of a mention inside an action's text, for platforms whose mentions are not text
/// (Telegram's `text_mention` entities): `MENTION_OPEN user_id MENTION_MID name MENTION_CLOSE`.
/// Private-use characters, which the Telegram protocol's `escape` removes from every value, so
/// only Shoal writes them; the Telegram adapter turns them into entities ([`take_mentions`]).
pub const MENTION_OPEN: char = '\u{E000}';
pub const MENTION_MID: char = '\u{E001}';
pub const MENTION_CLOSE: char = '\u{E002}';

/// `name` marked as a mention of `user_id` (see [`MENTION_OPEN`]).
pub fn mention_marker(user_id: &str, name: &str) -> String {
    format!("{MENTION_OPEN}{user_id}{MENTION_MID}{name}{MENTION_CLOSE}")
}

/// A mention found in a text: where (in UTF-16 code units, as Telegram counts) and whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mention {
    pub offset: usize,
    pub length: usize,
    pub user_id: String,
}

/// The text without its mention marks, and the mentions they made.
pub fn take_mentions(text: &str) -> (String, Vec<Mention>) {
    if !text.contains(MENTION_OPEN) {
        return (text.to_string(), vec![]);
    }
    let mut out = String::with_capacity(text.len());
    let mut units = 0usize;
    let mut mentions = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find(MENTION_OPEN) {
        let before = &rest[..open];
        out.push_str(before);
        units += before.encode_utf16().count();
        let after = &rest[open + MENTION_OPEN.len_utf8()..];
        let parsed = after.find(MENTION_MID).and_then(|mid| {
            let close = after[mid..].find(MENTION_CLOSE)? + mid;
            Some((&after[..mid], &after[mid + MENTION_MID.len_utf8()..close], close))
        });
        match parsed {
            Some((user_id, name, close)) => {
                let length = name.encode_utf16().count();
                if length > 0 {
                    mentions.push(Mention { offset: units, length, user_id: user_id.to_string() });
                }
                out.push_str(name);
                units += length;
                rest = &after[close + MENTION_CLOSE.len_utf8()..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    let out: String = out.chars().filter(|c| !matches!(*c, MENTION_OPEN | MENTION_MID | MENTION_CLOSE)).collect();
    (out, mentions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_marks_become_utf16_offsets() {
        let t = format!("欢迎 {} 和 {}！", mention_marker("5", "Mei 🐟"), mention_marker("6", "Li"));
        let (text, m) = take_mentions(&t);
        assert_eq!(text, "欢迎 Mei 🐟 和 Li！");
        assert_eq!(m[0], Mention { offset: 3, length: 6, user_id: "5".into() });
        assert_eq!(m[1], Mention { offset: 12, length: 2, user_id: "6".into() });
        assert_eq!(take_mentions("plain").0, "plain");
    }

    #[test]
    fn actions_round_trip_through_json_with_a_tag() {
        let a = Action::Send {
            chat_id: "-100123".into(),
            text: "hi".into(),
            reply_to: Some("7".into()),
            thread_id: None,
            mention: true,
            user_id: None,
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["action"], "send");
        assert!(v.get("thread_id").is_none());
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        assert_eq!(a.chat_id(), "-100123");
        assert!(!a.idempotent());
        assert_eq!(a.with_chat_id("-100999").chat_id(), "-100999");
        let old: Action =
            serde_json::from_value(serde_json::json!({"action": "send", "chat_id": "1", "text": "x"})).unwrap();
        assert!(matches!(old, Action::Send { mention: false, user_id: None, .. }));
        let kick = Action::Kick { chat_id: "1".into(), user_id: "2".into(), ban: true };
        assert!(kick.idempotent());
        assert_eq!(kick.target(), Some("2"));
    }
}
