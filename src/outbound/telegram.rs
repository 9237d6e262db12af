//! The Telegram Bot API: `{base}/bot{token}/{method}` (the base is api.telegram.org or a local
//! Bot API server), JSON bodies, answers `{ok, result | description, error_code, parameters}`.
//! A 429 says how long to wait (`parameters.retry_after`); a group that became a supergroup
//! answers with `parameters.migrate_to_chat_id`; a bot removed from a group gets 403 "bot was
//! kicked".

use serde_json::{json, Value};

use super::{id_value, snippet, status_reply, transport_reply, ApiCall, Reply};
use crate::domain::action::Action;

/// The updates a Shoal bridge needs. `chat_member` and `chat_join_request` are not sent unless
/// named.
pub const ALLOWED_UPDATES: [&str; 5] =
    ["message", "edited_message", "chat_member", "chat_join_request", "my_chat_member"];

const PERMISSIONS: [&str; 14] = [
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
];

fn permissions(allowed: bool) -> Value {
    Value::Object(PERMISSIONS.iter().map(|p| (p.to_string(), Value::Bool(allowed))).collect())
}

fn int(s: &str, what: &str) -> Result<Value, String> {
    s.trim().parse::<i64>().map(Value::from).map_err(|_| format!("{what} {s:?} is not a Telegram id"))
}

/// The calls that carry out `action` at `now` (unix seconds: a mute's end). Texts go without
/// `parse_mode`, as plain text.
pub fn plan(action: &Action, now: i64) -> Result<Vec<ApiCall>, String> {
    let call = |action: &'static str, method: &'static str, chat: &str, target: Option<&str>, body: Value| ApiCall {
        action,
        method,
        body,
        chat_id: Some(chat.to_string()),
        target: target.map(str::to_string),
    };
    let reply_params = |reply_to: &Option<String>| -> Result<Option<Value>, String> {
        reply_to
            .as_deref()
            .map(|m| Ok(json!({"message_id": int(m, "message")?, "allow_sending_without_reply": true})))
            .transpose()
    };
    Ok(match action {
        Action::Send { chat_id, text, reply_to, thread_id, .. } => {
            let (text, mentions) = crate::domain::action::take_mentions(text);
            let mut body = json!({"chat_id": id_value(chat_id), "text": text});
            if !mentions.is_empty() {
                body["entities"] = entities(&mentions)?;
            }
            if let Some(t) = thread_id {
                body["message_thread_id"] = int(t, "topic")?;
            }
            if let Some(r) = reply_params(reply_to)? {
                body["reply_parameters"] = r;
            }
            vec![call("send", "sendMessage", chat_id, reply_to.as_deref(), body)]
        }
        Action::SendPhoto { chat_id, url, caption, reply_to, thread_id } => {
            let mut body = json!({"chat_id": id_value(chat_id), "photo": url});
            if let Some(c) = caption {
                let (c, mentions) = crate::domain::action::take_mentions(c);
                body["caption"] = json!(c);
                if !mentions.is_empty() {
                    body["caption_entities"] = entities(&mentions)?;
                }
            }
            if let Some(t) = thread_id {
                body["message_thread_id"] = int(t, "topic")?;
            }
            if let Some(r) = reply_params(reply_to)? {
                body["reply_parameters"] = r;
            }
            vec![call("send_photo", "sendPhoto", chat_id, reply_to.as_deref(), body)]
        }
        Action::Delete { chat_id, message_id } => vec![call(
            "delete",
            "deleteMessage",
            chat_id,
            Some(message_id),
            json!({"chat_id": id_value(chat_id), "message_id": int(message_id, "message")?}),
        )],
        Action::Mute { chat_id, user_id, seconds } => {
            let mut body = json!({"chat_id": id_value(chat_id), "user_id": int(user_id, "user")?,
                "permissions": permissions(*seconds == 0), "use_independent_chat_permissions": true});
            if *seconds > 0 {
                // Under 30 seconds Telegram restricts forever: a short mute lasts 30 seconds.
                body["until_date"] = json!(now + i64::from(*seconds).max(31));
            }
            vec![call("mute", "restrictChatMember", chat_id, Some(user_id), body)]
        }
        Action::Kick { chat_id, user_id, ban } => {
            let user = int(user_id, "user")?;
            let mut calls = vec![call(
                "kick",
                "banChatMember",
                chat_id,
                Some(user_id),
                json!({"chat_id": id_value(chat_id), "user_id": user, "revoke_messages": false}),
            )];
            if !ban {
                // Removed, not banned: lift the ban at once so that they may come back.
                calls.push(call(
                    "kick",
                    "unbanChatMember",
                    chat_id,
                    Some(user_id),
                    json!({"chat_id": id_value(chat_id), "user_id": user, "only_if_banned": true}),
                ));
            }
            calls
        }
        // `only_if_banned`: without it, the call also removes a member who is in the chat.
        Action::Unban { chat_id, user_id } => vec![call(
            "unban",
            "unbanChatMember",
            chat_id,
            Some(user_id),
            json!({"chat_id": id_value(chat_id), "user_id": int(user_id, "user")?, "only_if_banned": true}),
        )],
        Action::JoinRequest { chat_id, request, approve, .. } => vec![call(
            "join_request",
            if *approve { "approveChatJoinRequest" } else { "declineChatJoinRequest" },
            chat_id,
            Some(request),
            json!({"chat_id": id_value(chat_id), "user_id": int(request, "user")?}),
        )],
    })
}

/// `text_mention` entities for the mentions Shoal marked in a text.
fn entities(mentions: &[crate::domain::action::Mention]) -> Result<Value, String> {
    let mut out = Vec::with_capacity(mentions.len());
    for m in mentions {
        out.push(json!({"type": "text_mention", "offset": m.offset, "length": m.length,
                        "user": {"id": int(&m.user_id, "user")?, "is_bot": false, "first_name": ""}}));
    }
    Ok(Value::Array(out))
}

pub fn member_count(chat_id: &str) -> ApiCall {
    ApiCall {
        action: "member_count",
        method: "getChatMemberCount",
        body: json!({"chat_id": id_value(chat_id)}),
        chat_id: Some(chat_id.to_string()),
        target: None,
    }
}

/// `setWebhook` with the bridge's secret as `secret_token` and the updates Shoal reads.
pub fn set_webhook(url: &str, secret: &str) -> ApiCall {
    ApiCall {
        action: "set_webhook",
        method: "setWebhook",
        body: json!({"url": url, "secret_token": secret, "allowed_updates": ALLOWED_UPDATES}),
        chat_id: None,
        target: None,
    }
}

pub fn webhook_info() -> ApiCall {
    ApiCall { action: "webhook_info", method: "getWebhookInfo", body: json!({}), chat_id: None, target: None }
}

/// POSTs the call to `url` (which holds the token: never shown).
pub async fn execute(http: &reqwest::Client, url: &str, call: &ApiCall) -> Reply {
    let resp = match http.post(url).json(&call.body).send().await {
        Ok(r) => r,
        Err(e) => return transport_reply(e),
    };
    let status = resp.status().as_u16();
    let retry_header = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match resp.bytes().await {
        Ok(body) => interpret(call.method, status, retry_header, &body),
        Err(e) => Reply::Unknown { status: Some(status), error: super::error_chain(&e.without_url()) },
    }
}

/// Words of a 403 that mean the bot is not in the chat any more.
fn kicked(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    d.contains("kicked") || d.contains("not a member") || d.contains("chat was deleted")
}

pub fn interpret(method: &str, status: u16, retry_header: Option<u64>, body: &[u8]) -> Reply {
    let v: Option<Value> = serde_json::from_slice(body).ok().filter(|v: &Value| v.get("ok").is_some());
    let Some(v) = v else {
        if status == 429 {
            return Reply::NotSent {
                status: Some(429),
                error: "HTTP 429: too many requests".into(),
                retry_after: Some(std::time::Duration::from_secs(retry_header.unwrap_or(5))),
            };
        }
        let what = match status {
            401 | 404 => format!("the Bot API refused the bot token (HTTP {status})"),
            _ => format!("HTTP {status}: {}", snippet(body, 200)),
        };
        return status_reply(status, what);
    };
    if v["ok"] == Value::Bool(true) {
        let data = v.get("result").cloned().unwrap_or(Value::Null);
        let result = match (method, &data) {
            ("sendMessage" | "sendPhoto", d) => d.get("message_id").map(|m| m.to_string()),
            ("getChatMemberCount", Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        return Reply::Ok { status, result, data };
    }
    let code = v.get("error_code").and_then(Value::as_u64).map(|c| c as u16).unwrap_or(status);
    let description = v.get("description").and_then(Value::as_str).unwrap_or("").to_string();
    let error = format!("{code}: {description}");
    let params = v.get("parameters");
    if let Some(new) = params.and_then(|p| p.get("migrate_to_chat_id")).filter(|n| !n.is_null()) {
        let new_chat_id = match new {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Reply::Migrated { status, new_chat_id, error };
    }
    if code == 429 {
        let secs = params.and_then(|p| p.get("retry_after")).and_then(Value::as_u64).or(retry_header).unwrap_or(5);
        return Reply::NotSent { status: Some(status), error, retry_after: Some(std::time::Duration::from_secs(secs)) };
    }
    if code == 403 && kicked(&description) {
        return Reply::Kicked { status, error };
    }
    if code >= 500 {
        return status_reply(code, error);
    }
    Reply::Failed { status: Some(status), error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_say_done_wait_moved_kicked_or_failed() {
        let ok = br#"{"ok":true,"result":{"message_id":77,"chat":{"id":-100}}}"#;
        assert!(matches!(interpret("sendMessage", 200, None, ok), Reply::Ok { result: Some(r), .. } if r == "77"));
        let count = br#"{"ok":true,"result":42}"#;
        assert!(
            matches!(interpret("getChatMemberCount", 200, None, count), Reply::Ok { result: Some(r), .. } if r == "42")
        );
        let wait = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert!(matches!(interpret("sendMessage", 429, None, wait),
            Reply::NotSent { retry_after: Some(d), .. } if d.as_secs() == 7));
        let moved = br#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#;
        assert!(matches!(interpret("sendMessage", 400, None, moved),
            Reply::Migrated { new_chat_id, .. } if new_chat_id == "-1001234567890"));
        let kicked =
            br#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the supergroup chat"}"#;
        assert!(matches!(interpret("sendMessage", 403, None, kicked), Reply::Kicked { .. }));
        let rights = br#"{"ok":false,"error_code":400,"description":"Bad Request: not enough rights to restrict/unrestrict chat member"}"#;
        assert!(matches!(interpret("restrictChatMember", 400, None, rights), Reply::Failed { .. }));
        assert!(matches!(
            interpret("sendMessage", 401, None, br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#),
            Reply::Failed { .. }
        ));
        assert!(matches!(interpret("sendMessage", 502, None, b"Bad Gateway"), Reply::NotSent { .. }));
        assert!(matches!(interpret("sendMessage", 500, None, b""), Reply::Unknown { .. }));
    }

    #[test]
    fn a_kick_without_ban_lifts_the_ban_and_short_mutes_last_thirty_seconds() {
        let kick = Action::Kick { chat_id: "-100".into(), user_id: "5".into(), ban: false };
        let calls = plan(&kick, 0).unwrap();
        assert_eq!(calls.iter().map(|c| c.method).collect::<Vec<_>>(), ["banChatMember", "unbanChatMember"]);
        assert_eq!(calls[1].body["only_if_banned"], true);
        let mute = Action::Mute { chat_id: "-100".into(), user_id: "5".into(), seconds: 10 };
        let c = &plan(&mute, 1000).unwrap()[0];
        assert_eq!(c.body["until_date"], 1031);
        assert_eq!(c.body["permissions"]["can_send_messages"], false);
        let lift = Action::Mute { chat_id: "-100".into(), user_id: "5".into(), seconds: 0 };
        let c = &plan(&lift, 1000).unwrap()[0];
        assert!(c.body.get("until_date").is_none());
        assert_eq!(c.body["permissions"]["can_send_messages"], true);
        let bad = Action::Mute { chat_id: "-100".into(), user_id: "bob".into(), seconds: 0 };
        assert!(plan(&bad, 0).is_err());
    }
}
