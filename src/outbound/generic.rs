//! The generic bridge's outbound side: Shoal POSTs each action as JSON to the operator's
//! endpoint, signed with the scheme Shoal verifies inbound (`X-Shoal-Timestamp`,
//! `X-Shoal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`).
//!
//! The body is `{"bridge_id": 1, "action": {…}}` with the action as the API takes it
//! (`{"action": "send", "chat_id": "…", "text": "…"}`), or `{"action": "member_count",
//! "chat_id": "…"}` to ask for a chat's member count. Any 2xx is done; the answer may carry
//! `{"message_id": "…"}` or `{"member_count": 42}`. 429 (with `Retry-After` seconds), 502 and
//! 503 are tried again later; 500 and 504 leave a send's outcome unknown; other statuses fail.

use serde_json::{json, Value};

use super::{snippet, status_reply, transport_reply, ApiCall, Reply, Secret};
use crate::domain::action::Action;
use crate::domain::bridge::sign_generic;

pub fn plan(bridge_id: i64, action: &Action) -> Vec<ApiCall> {
    vec![ApiCall {
        action: action.name(),
        method: "action",
        body: json!({"bridge_id": bridge_id, "action": action}),
        chat_id: Some(action.chat_id().to_string()),
        target: action.target().map(str::to_string),
    }]
}

pub fn member_count(bridge_id: i64, chat_id: &str) -> ApiCall {
    ApiCall {
        action: "member_count",
        method: "action",
        body: json!({"bridge_id": bridge_id, "action": {"action": "member_count", "chat_id": chat_id}}),
        chat_id: Some(chat_id.to_string()),
        target: None,
    }
}

pub async fn execute(http: &reqwest::Client, url: &str, secret: &Secret, call: &ApiCall) -> Reply {
    let body = serde_json::to_vec(&call.body).unwrap_or_default();
    let ts = chrono::Utc::now().timestamp();
    let signature = sign_generic(secret.expose(), ts, &body);
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-shoal-timestamp", ts.to_string())
        .header("x-shoal-signature", signature)
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return transport_reply(e),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Reply::Unknown { status: Some(status), error: super::error_chain(&e.without_url()) },
    };
    interpret(status, retry_after, &body)
}

pub fn interpret(status: u16, retry_after: Option<u64>, body: &[u8]) -> Reply {
    match status {
        200..=299 => {
            let data: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let text = |v: &Value| match v {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            let result = data.get("member_count").and_then(text).or_else(|| data.get("message_id").and_then(text));
            Reply::Ok { status, result, data }
        }
        429 => Reply::NotSent {
            status: Some(429),
            error: format!("HTTP 429: {}", snippet(body, 200)),
            retry_after: Some(std::time::Duration::from_secs(retry_after.unwrap_or(5))),
        },
        _ => status_reply(status, format!("HTTP {status}: {}", snippet(body, 200))),
    }
}
