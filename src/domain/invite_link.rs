//! Per-member platform invite links (Telegram `createChatInviteLink` named with the member's
//! invite code) and join hints (what a join request said about the inviter), as rules without
//! I/O: the link's states, the call's body, the window in which a hint still names the inviter.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::text_enum;

/// Where a member's link for a group stands (`member_invite_links.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LinkStatus {
    /// Asked for; the job has not had an answer yet.
    Pending,
    /// The bot made it: `invite_link` holds it, and it is used from now on.
    Created,
    /// The bot refused (no right to invite, not in the chat): the job is dead and can be
    /// retried from Settings → Jobs.
    Failed,
    /// The call may have happened without an answer: never repeated by itself.
    Unknown,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Pending => "pending",
            LinkStatus::Created => "created",
            LinkStatus::Failed => "failed",
            LinkStatus::Unknown => "unknown",
        }
    }
}
text_enum!(LinkStatus);

/// A join request's hint is matched to the applicant's join in the group within this many
/// hours (an approval usually follows within minutes; a queue may wait longer).
pub const HINT_WINDOW_HOURS: i64 = 24;

/// Telegram's limit on a link's `name`.
pub const MAX_NAME_CHARS: usize = 32;

/// The body of `createChatInviteLink` for a member's link: named with their code; a link that
/// asks to join for groups where plain links are not reported (public groups). No
/// `member_limit` (Telegram refuses it together with `creates_join_request`) and no expiry: the
/// link is the member's for good.
pub fn create_body(chat_id: Value, code: &str, creates_join_request: bool) -> Value {
    let name: String = code.chars().take(MAX_NAME_CHARS).collect();
    json!({"chat_id": chat_id, "name": name, "creates_join_request": creates_join_request})
}

/// The link in `createChatInviteLink`'s result (a `ChatInviteLink`), when it is one.
pub fn link_of(result: &Value) -> Option<String> {
    let link = result.get("invite_link")?.as_str()?.trim();
    (link.starts_with("https://") || link.starts_with("http://"))
        .then(|| link.to_string())
        .filter(|l| l.len() <= 300 && !l.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_names_the_link_with_the_code_and_never_sets_a_member_limit() {
        let b = create_body(json!(-100), "abcdefgh23", true);
        assert_eq!(b, json!({"chat_id": -100, "name": "abcdefgh23", "creates_join_request": true}));
        assert!(b.get("member_limit").is_none());
    }

    #[test]
    fn only_a_link_is_taken_from_the_result() {
        assert_eq!(link_of(&json!({"invite_link": "https://t.me/+AbC"})).as_deref(), Some("https://t.me/+AbC"));
        assert_eq!(link_of(&json!({"invite_link": "javascript:x"})), None);
        assert_eq!(link_of(&json!(true)), None);
    }
}
