//! OneBot v11 (NapCat, go-cqhttp, LLOneBot): `POST {api_base_url}/{action}` with a JSON body and
//! `Authorization: Bearer {access_token}`. Success only when `status == "ok"` and
//! `retcode == 0`, whatever the HTTP status: NapCat answers HTTP 200 with `status: "failed",
//! retcode: 200` for a failed handler and an unknown action, and 403 for a missing or wrong
//! token. The error text is `msg` + `wording` (go-cqhttp) or `message` + `wording` (NapCat,
//! LLOneBot).

use serde_json::{json, Value};

use super::{id_value, snippet, status_reply, transport_reply, ApiCall, Reply, Secret};
use crate::bridges::onebot::escape_cq;
use crate::domain::action::Action;

/// The calls that carry out `action`. Texts are CQ-code strings already escaped by whoever
/// built them (`Kind::escape`), so `auto_escape` is false (and said so: implementations differ
/// in their default); a reply and a mention are CQ codes put in front.
pub fn plan(action: &Action) -> Result<Vec<ApiCall>, String> {
    let call = |action: &'static str, method: &'static str, chat: &str, target: Option<&str>, body: Value| ApiCall {
        action,
        method,
        body,
        chat_id: Some(chat.to_string()),
        target: target.map(str::to_string),
    };
    Ok(vec![match action {
        Action::Send { chat_id, text, reply_to, mention, user_id, .. } => {
            let mut message = String::new();
            if let Some(r) = reply_to {
                message.push_str(&format!("[CQ:reply,id={}]", escape_cq(r)));
            }
            if *mention {
                if let Some(u) = user_id {
                    message.push_str(&format!("[CQ:at,qq={}] ", escape_cq(u)));
                }
            }
            message.push_str(text);
            call(
                "send",
                "send_group_msg",
                chat_id,
                reply_to.as_deref(),
                json!({"group_id": id_value(chat_id), "message": message, "auto_escape": false}),
            )
        }
        Action::SendPhoto { chat_id, url, caption, reply_to, .. } => {
            let mut message = String::new();
            if let Some(r) = reply_to {
                message.push_str(&format!("[CQ:reply,id={}]", escape_cq(r)));
            }
            message.push_str(&format!("[CQ:image,file={}]", escape_cq(url)));
            if let Some(c) = caption {
                message.push_str(c);
            }
            call(
                "send_photo",
                "send_group_msg",
                chat_id,
                reply_to.as_deref(),
                json!({"group_id": id_value(chat_id), "message": message, "auto_escape": false}),
            )
        }
        Action::Delete { chat_id, message_id } => {
            call("delete", "delete_msg", chat_id, Some(message_id), json!({"message_id": id_value(message_id)}))
        }
        // NapCat requires `duration`; 0 lifts the ban.
        Action::Mute { chat_id, user_id, seconds } => call(
            "mute",
            "set_group_ban",
            chat_id,
            Some(user_id),
            json!({"group_id": id_value(chat_id), "user_id": id_value(user_id), "duration": seconds}),
        ),
        Action::Kick { chat_id, user_id, ban } => call(
            "kick",
            "set_group_kick",
            chat_id,
            Some(user_id),
            json!({"group_id": id_value(chat_id), "user_id": id_value(user_id), "reject_add_request": ban}),
        ),
        // A kick with `reject_add_request` is lifted only in the QQ client.
        Action::Unban { .. } => {
            return Err(
                "OneBot v11 has no call to lift a ban: an owner or admin can lift it in the QQ group's settings".into(),
            )
        }
        // go-cqhttp finds the request by `sub_type`; NapCat ignores it; `type` is the older name.
        Action::JoinRequest { chat_id, request, approve, reason } => call(
            "join_request",
            "set_group_add_request",
            chat_id,
            Some(request),
            json!({"flag": request, "sub_type": "add", "type": "add", "approve": approve,
                   "reason": reason.clone().unwrap_or_default()}),
        ),
    }])
}

/// `get_group_info` with `no_cache`: `data.member_count`.
pub fn member_count(chat_id: &str) -> ApiCall {
    ApiCall {
        action: "member_count",
        method: "get_group_info",
        body: json!({"group_id": id_value(chat_id), "no_cache": true}),
        chat_id: Some(chat_id.to_string()),
        target: None,
    }
}

/// `get_group_member_list`: the members, when `get_group_info` gives no count.
pub fn member_list(chat_id: &str) -> ApiCall {
    ApiCall {
        action: "member_count",
        method: "get_group_member_list",
        body: json!({"group_id": id_value(chat_id)}),
        chat_id: Some(chat_id.to_string()),
        target: None,
    }
}

pub async fn execute(http: &reqwest::Client, url: &str, token: Option<&Secret>, call: &ApiCall) -> Reply {
    let mut req = http.post(url).json(&call.body);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return transport_reply(e),
    };
    let status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(body) => interpret(call.method, status, &body),
        Err(e) => Reply::Unknown { status: Some(status), error: super::error_chain(&e.without_url()) },
    }
}

/// An answer read by the envelope first, the HTTP status only when there is none.
pub fn interpret(method: &str, status: u16, body: &[u8]) -> Reply {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let envelope = parsed.filter(|v| v.get("status").is_some() || v.get("retcode").is_some());
    let Some(v) = envelope else {
        let what = match status {
            401 | 403 => format!("the bot's API refused the access token (HTTP {status})"),
            404 => format!("the bot's API does not know {method} (HTTP 404)"),
            200..=299 => {
                // An answer without the bot's verdict: it got the request and said nothing usable.
                return Reply::Unknown {
                    status: Some(status),
                    error: format!("no status/retcode in the answer: {}", snippet(body, 200)),
                };
            }
            _ => format!("HTTP {status}: {}", snippet(body, 200)),
        };
        return status_reply(status, what);
    };
    let state = v.get("status").and_then(Value::as_str).unwrap_or("");
    let retcode = v.get("retcode").and_then(Value::as_i64);
    // `async` (retcode 1) is an accepted `_async` call.
    if (state == "ok" && retcode == Some(0)) || (state == "async" && retcode == Some(1)) {
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        return Reply::Ok { status, result: result_of(method, &data), data };
    }
    let text = error_text(&v);
    // go-cqhttp: another admin answered the request first. It is answered: done.
    if method == "set_group_add_request" && text.contains("FLAG_HAS_BEEN_CHECKED") {
        return Reply::Ok { status, result: Some("already answered".into()), data: Value::Null };
    }
    let code = retcode.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
    Reply::Failed { status: Some(status), error: format!("retcode {code}: {text}") }
}

/// `msg` (go-cqhttp) or `message` (NapCat, LLOneBot), and `wording` when it says more.
fn error_text(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    match (s("msg").or(s("message")), s("wording")) {
        (Some(m), Some(w)) if m != w => format!("{m} — {w}"),
        (Some(m), _) => m.to_string(),
        (None, Some(w)) => w.to_string(),
        (None, None) => format!("status {}", v.get("status").and_then(Value::as_str).unwrap_or("?")),
    }
}

/// What is worth keeping of a success: a sent message's id, a group's member count.
fn result_of(method: &str, data: &Value) -> Option<String> {
    let text = |v: &Value| match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    };
    match method {
        "send_group_msg" => data.get("message_id").and_then(text),
        "get_group_info" => data.get("member_count").and_then(text),
        "get_group_member_list" => data.as_array().map(|a| a.len().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_needs_status_ok_and_retcode_zero_whatever_the_http_status() {
        let ok = br#"{"status":"ok","retcode":0,"data":{"message_id":123}}"#;
        assert!(matches!(interpret("send_group_msg", 200, ok), Reply::Ok { result: Some(r), .. } if r == "123"));
        // NapCat: HTTP 200, failed, retcode 200, `message`.
        let napcat =
            br#"{"status":"failed","retcode":200,"data":null,"message":"group not found","wording":"group not found"}"#;
        assert_eq!(
            interpret("send_group_msg", 200, napcat),
            Reply::Failed { status: Some(200), error: "retcode 200: group not found".into() }
        );
        // go-cqhttp: `msg` and `wording`.
        let gocq =
            r#"{"status":"failed","retcode":100,"msg":"SEND_MSG_API_ERROR","wording":"请参考 go-cqhttp 端输出"}"#
                .as_bytes();
        assert_eq!(
            interpret("send_group_msg", 200, gocq),
            Reply::Failed {
                status: Some(200),
                error: "retcode 100: SEND_MSG_API_ERROR — 请参考 go-cqhttp 端输出".into()
            }
        );
        let checked =
            r#"{"status":"failed","retcode":100,"msg":"FLAG_HAS_BEEN_CHECKED","wording":"消息已被处理"}"#.as_bytes();
        assert!(matches!(interpret("set_group_add_request", 200, checked), Reply::Ok { .. }));
        assert!(matches!(
            interpret("send_group_msg", 403, b"{\"message\":\"token verify failed\"}"),
            Reply::Failed { status: Some(403), .. }
        ));
        assert!(matches!(interpret("nope", 404, b""), Reply::Failed { .. }));
        assert!(matches!(interpret("send_group_msg", 502, b"<html>bad gateway</html>"), Reply::NotSent { .. }));
        assert!(matches!(interpret("send_group_msg", 504, b""), Reply::Unknown { .. }));
        assert!(matches!(interpret("send_group_msg", 200, b"hello"), Reply::Unknown { .. }));
    }

    #[test]
    fn actions_become_onebot_calls() {
        let send = Action::Send {
            chat_id: "123".into(),
            text: "hi &#91;1&#93;".into(),
            reply_to: Some("55".into()),
            thread_id: None,
            mention: true,
            user_id: Some("9".into()),
        };
        let c = &plan(&send).unwrap()[0];
        assert_eq!(c.method, "send_group_msg");
        assert_eq!(
            c.body,
            json!({"group_id": 123, "message": "[CQ:reply,id=55][CQ:at,qq=9] hi &#91;1&#93;", "auto_escape": false})
        );
        let mute = Action::Mute { chat_id: "123".into(), user_id: "9".into(), seconds: 0 };
        assert_eq!(plan(&mute).unwrap()[0].body["duration"], 0);
    }
}
