//! Fake bot APIs on 127.0.0.1:0 for the outbound tests: real HTTP servers that behave like
//! go-cqhttp, NapCat (and LLOneBot) and the Telegram Bot API in the ways Shoal depends on,
//! record every request they receive (with its arrival time), and can be told to fail, stall or
//! hang up on the next calls.
//!
//! - go-cqhttp: `Authorization: Bearer` (or `?access_token=`); a missing token is 401, a wrong
//!   one 403, both with an empty body; an unknown action is HTTP 404 with retcode 1404; errors
//!   carry `msg` and `wording`.
//! - NapCat: a missing or wrong token is 403 `{"message":"token verify failed!"}`; a failed
//!   handler and an unknown action are HTTP 200 with `status: "failed", retcode: 200` and the
//!   text in `message` (and `wording`); `set_group_ban` without `duration` fails.
//! - Telegram: `/bot<token>/<method>`; a wrong token is 401; a kicked chat answers 403 "bot was
//!   kicked"; a migrated chat answers 400 with `parameters.migrate_to_chat_id`; injected 429s
//!   carry `parameters.retry_after`; `createChatInviteLink` checks `name` (≤ 32 characters) and
//!   `member_limit` (1–99999, never with `creates_join_request`) and answers a `ChatInviteLink`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    GoCqhttp,
    NapCat,
    Telegram,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Call {
    pub at: Instant,
    /// The action (OneBot) or method (Telegram).
    pub method: String,
    pub authorization: Option<String>,
    /// Telegram: the token in the path.
    pub token: Option<String>,
    pub body: Value,
}

impl Call {
    /// The chat the call is about: OneBot `group_id`, Telegram `chat_id` (as text).
    pub fn chat(&self) -> String {
        let v = self.body.get("chat_id").or_else(|| self.body.get("group_id")).cloned().unwrap_or(Value::Null);
        match v {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// What the fake does with the next matching call instead of its usual answer.
#[derive(Clone, Debug)]
pub enum Inject {
    /// Answer with this status and JSON body.
    Answer(u16, Value),
    /// Answer with this status and a plain body (a proxy's error page).
    Plain(u16, &'static str),
    /// Wait this long, then answer as usual (the client times out first).
    Stall(Duration),
    /// Read the request and close the connection without an answer.
    HangUp,
}

#[derive(Default)]
struct Behaviour {
    /// Per method ("*": any), in order.
    inject: HashMap<String, VecDeque<Inject>>,
    kicked: HashSet<String>,
    migrated: HashMap<String, String>,
    member_count: i64,
    webhook: Option<Value>,
    next_message_id: i64,
    /// Invite links made so far.
    links: u64,
}

pub struct FakeBot {
    pub flavor: Flavor,
    pub addr: std::net::SocketAddr,
    pub token: String,
    calls: Arc<Mutex<Vec<Call>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

#[derive(Clone)]
struct Shared {
    flavor: Flavor,
    token: String,
    calls: Arc<Mutex<Vec<Call>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

pub const TELEGRAM_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

impl FakeBot {
    pub async fn start(flavor: Flavor) -> FakeBot {
        let token = match flavor {
            Flavor::Telegram => TELEGRAM_TOKEN.to_string(),
            _ => "onebot-token".to_string(),
        };
        let calls = Arc::new(Mutex::new(Vec::new()));
        let behaviour =
            Arc::new(Mutex::new(Behaviour { member_count: 321, next_message_id: 1000, ..Default::default() }));
        let shared = Shared { flavor, token: token.clone(), calls: calls.clone(), behaviour: behaviour.clone() };
        let app = match flavor {
            Flavor::Telegram => Router::new().route("/{bot}/{method}", post(telegram)).with_state(shared),
            _ => Router::new().route("/{action}", any(onebot)).with_state(shared),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeBot { flavor, addr, token, calls, behaviour }
    }

    /// The address Shoal is given: the OneBot HTTP API, or the Bot API server.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// The next calls of `method` ("*": any) get `inject`, in the order given.
    pub fn inject(&self, method: &str, inject: Inject) {
        self.behaviour.lock().unwrap().inject.entry(method.to_string()).or_default().push_back(inject);
    }

    /// Telegram: the bot was removed from `chat`.
    pub fn kick_from(&self, chat: &str) {
        self.behaviour.lock().unwrap().kicked.insert(chat.to_string());
    }

    /// Telegram: the bot is back in `chat`.
    pub fn unkick(&self, chat: &str) {
        self.behaviour.lock().unwrap().kicked.remove(chat);
    }

    /// Telegram: `old` became a supergroup with id `new`.
    pub fn migrate(&self, old: &str, new: &str) {
        self.behaviour.lock().unwrap().migrated.insert(old.to_string(), new.to_string());
    }

    pub fn set_member_count(&self, n: i64) {
        self.behaviour.lock().unwrap().member_count = n;
    }

    /// Waits until at least `n` calls arrived (up to 20 s).
    pub async fn wait_calls(&self, n: usize) -> Vec<Call> {
        self.wait(n, None).await
    }

    /// The calls of `method` once there are at least `n` (up to 20 s; other calls may come in
    /// between).
    pub async fn wait_method(&self, method: &str, n: usize) -> Vec<Call> {
        self.wait(n, Some(method)).await
    }

    async fn wait(&self, n: usize, method: Option<&str>) -> Vec<Call> {
        for _ in 0..400 {
            let c = match method {
                Some(m) => self.calls_of(m),
                None => self.calls(),
            };
            if c.len() >= n {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let what = method.unwrap_or("any method");
        panic!("expected {n} calls of {what} at the fake {:?}, got {:?}", self.flavor, self.calls());
    }
}

fn take_inject(shared: &Shared, method: &str) -> Option<Inject> {
    let mut b = shared.behaviour.lock().unwrap();
    for key in [method, "*"] {
        if let Some(q) = b.inject.get_mut(key) {
            if let Some(i) = q.pop_front() {
                return Some(i);
            }
        }
    }
    None
}

fn json_response(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// What an injection changes: Some(answer) to answer now, None to go on (after a stall).
async fn apply(inject: Option<Inject>) -> Option<Response> {
    match inject? {
        Inject::Answer(status, body) => Some(json_response(status, body)),
        Inject::Plain(status, text) => Some((StatusCode::from_u16(status).unwrap(), text).into_response()),
        Inject::Stall(d) => {
            tokio::time::sleep(d).await;
            None
        }
        // A panicking handler makes the server drop the connection without an answer.
        Inject::HangUp => std::panic::resume_unwind(Box::new("the fake bot hangs up")),
    }
}

// ---------------------------------------------------------------- OneBot v11

fn ob_ok(data: Value) -> Value {
    json!({"status": "ok", "retcode": 0, "data": data, "echo": null})
}

fn ob_failed(flavor: Flavor, retcode: i64, text: &str) -> Value {
    match flavor {
        Flavor::GoCqhttp => json!({"status": "failed", "retcode": retcode, "data": null, "msg": text, "wording": text}),
        _ => {
            json!({"status": "failed", "retcode": retcode, "data": null, "message": text, "wording": text, "echo": null})
        }
    }
}

async fn onebot(
    State(shared): State<Shared>,
    Path(action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    shared.calls.lock().unwrap().push(Call {
        at: Instant::now(),
        method: action.clone(),
        authorization: authorization.clone(),
        token: None,
        body: body.clone(),
    });
    if let Some(r) = apply(take_inject(&shared, &action)).await {
        return r;
    }
    let given = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query.get("access_token").cloned());
    match (shared.flavor, given) {
        (_, Some(t)) if t == shared.token => {}
        (Flavor::NapCat, _) => {
            return (StatusCode::FORBIDDEN, r#"{"message":"token verify failed!"}"#).into_response();
        }
        (_, None) => return StatusCode::UNAUTHORIZED.into_response(),
        (_, Some(_)) => return StatusCode::FORBIDDEN.into_response(),
    }
    let flavor = shared.flavor;
    let mut b = shared.behaviour.lock().unwrap();
    let answer = match action.as_str() {
        "send_group_msg" => {
            if body.get("group_id").is_none() || body.get("message").is_none() {
                ob_failed(flavor, 100, "missing group_id or message")
            } else {
                b.next_message_id += 1;
                ob_ok(json!({"message_id": b.next_message_id}))
            }
        }
        "delete_msg" | "set_group_kick" => ob_ok(Value::Null),
        "set_group_ban" => {
            if flavor == Flavor::NapCat && body.get("duration").is_none() {
                ob_failed(flavor, 200, "duration is required")
            } else {
                ob_ok(Value::Null)
            }
        }
        "set_group_add_request" => {
            if body.get("flag").is_none() {
                ob_failed(flavor, 100, "flag is required")
            } else {
                ob_ok(Value::Null)
            }
        }
        "get_group_info" => ob_ok(json!({
            "group_id": body.get("group_id"), "group_name": "Fake group",
            "member_count": b.member_count, "max_member_count": 500})),
        "get_group_member_list" => {
            ob_ok(Value::Array((0..b.member_count).map(|i| json!({"user_id": 10_000 + i})).collect()))
        }
        _ => {
            return match flavor {
                Flavor::GoCqhttp => json_response(404, ob_failed(flavor, 1404, "API_NOT_FOUND")),
                _ => json_response(200, ob_failed(flavor, 200, &format!("不支持的Api {action}"))),
            };
        }
    };
    json_response(200, answer)
}

// ---------------------------------------------------------------- Telegram

fn tg_error(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    json_response(code, body)
}

async fn telegram(State(shared): State<Shared>, Path((bot, method)): Path<(String, String)>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = bot.strip_prefix("bot").map(str::to_string);
    shared.calls.lock().unwrap().push(Call {
        at: Instant::now(),
        method: method.clone(),
        authorization: None,
        token: token.clone(),
        body: body.clone(),
    });
    if let Some(r) = apply(take_inject(&shared, &method)).await {
        return r;
    }
    if token.as_deref() != Some(shared.token.as_str()) {
        return tg_error(401, "Unauthorized", None);
    }
    let chat = match body.get("chat_id") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let mut b = shared.behaviour.lock().unwrap();
    if !chat.is_empty() {
        if b.kicked.contains(&chat) {
            return tg_error(403, "Forbidden: bot was kicked from the group chat", None);
        }
        if let Some(new) = b.migrated.get(&chat) {
            let new: i64 = new.parse().unwrap();
            return tg_error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                Some(json!({"migrate_to_chat_id": new})),
            );
        }
    }
    let result = match method.as_str() {
        "sendMessage" | "sendPhoto" => {
            b.next_message_id += 1;
            json!({"message_id": b.next_message_id, "date": 0, "chat": {"id": body["chat_id"], "type": "supergroup"}})
        }
        "deleteMessage"
        | "restrictChatMember"
        | "banChatMember"
        | "unbanChatMember"
        | "approveChatJoinRequest"
        | "declineChatJoinRequest" => json!(true),
        "getChatMemberCount" => json!(b.member_count),
        // As the Bot API: a name of at most 32 characters, a member limit of 1–99999 that
        // cannot go with `creates_join_request` (400), and the link made by the bot.
        "createChatInviteLink" => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            let asks = body.get("creates_join_request").and_then(Value::as_bool).unwrap_or(false);
            let limit = body.get("member_limit").and_then(Value::as_i64);
            if name.chars().count() > 32 {
                return tg_error(400, "Bad Request: invite link name is too long", None);
            }
            if limit.is_some_and(|l| !(1..=99_999).contains(&l)) {
                return tg_error(400, "Bad Request: wrong member limit specified", None);
            }
            if asks && limit.is_some() {
                return tg_error(
                    400,
                    "Bad Request: member limit can't be specified for links requiring administrator approval",
                    None,
                );
            }
            b.links += 1;
            let mut link = json!({"invite_link": format!("https://t.me/+fAkE{:06}{}", b.links, chat.trim_start_matches('-')),
                "creator": {"id": 1, "is_bot": true, "first_name": "Shoal", "username": "shoal_bot"},
                "creates_join_request": asks, "is_primary": false, "is_revoked": false});
            if !name.is_empty() {
                link["name"] = json!(name);
            }
            if let Some(l) = limit {
                link["member_limit"] = json!(l);
            }
            link
        }
        "setWebhook" => {
            b.webhook = Some(body.clone());
            json!(true)
        }
        "getWebhookInfo" => {
            let w = b.webhook.clone().unwrap_or(json!({}));
            json!({"url": w.get("url").cloned().unwrap_or(json!("")), "has_custom_certificate": false,
                   "pending_update_count": 0, "allowed_updates": w.get("allowed_updates").cloned().unwrap_or(json!([]))})
        }
        _ => return tg_error(404, "Not Found: method not found", None),
    };
    json_response(200, json!({"ok": true, "result": result}))
}

/// The most calls in any window of `window` among `times` (sorted or not).
pub fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end].duration_since(t[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
