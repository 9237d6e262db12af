//! What Shoal asks a bot to do in a chat: the answer to a delivery (a reply, a deletion, a mute…)
//! and every outbound call a job makes. Protocol-neutral: each bridge protocol turns an action
//! into its own call (OneBot v11 `send_group_msg`, Telegram `sendMessage`, the generic bridge's
//! signed POST), and says which actions it can carry in the immediate answer to a webhook.

use serde::{Deserialize, Serialize};

/// One thing a bot should do in one chat. Ids are the platform's, as text (QQ numbers, Telegram
/// chat and message ids); `text` is plain text, already escaped for the platform by whoever
/// built it ([`crate::bridges::Protocol::escape`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    },
    /// Delete a message.
    Delete { chat_id: String, message_id: String },
    /// Keep a member from speaking for `seconds` (0 lifts it).
    Mute { chat_id: String, user_id: String, seconds: u32 },
    /// Remove a member; `ban` also keeps them from coming back.
    Kick { chat_id: String, user_id: String, ban: bool },
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
            | Action::Delete { chat_id, .. }
            | Action::Mute { chat_id, .. }
            | Action::Kick { chat_id, .. }
            | Action::JoinRequest { chat_id, .. } => chat_id,
        }
    }

    /// A short name for logs and the call log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Send { .. } => "send",
            Action::Delete { .. } => "delete",
            Action::Mute { .. } => "mute",
            Action::Kick { .. } => "kick",
            Action::JoinRequest { .. } => "join_request",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_json_with_a_tag() {
        let a = Action::Send {
            chat_id: "-100123".into(),
            text: "hi".into(),
            reply_to: Some("7".into()),
            thread_id: None,
            mention: true,
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["action"], "send");
        assert!(v.get("thread_id").is_none());
        assert_eq!(serde_json::from_value::<Action>(v).unwrap(), a);
        assert_eq!(a.chat_id(), "-100123");
    }
}
