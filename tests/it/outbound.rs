//! Bots that act: every action reaches go-cqhttp, NapCat, Telegram and a generic endpoint in
//! the protocol's shape; success is read from each protocol's envelope; a send whose outcome is
//! unknown is never sent again; calls that never reached the bot are; rate limits hold in every
//! window, across two Shoal processes; a migrated Telegram group follows its new id; a kicked
//! bot marks the link broken; member counts come from the bots; and the outbound page and API.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode as S;
use serde_json::{json, Value};
use shoal::store::jobs::JobState;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fakebots::{max_in_window, FakeBot, Flavor, Inject, TELEGRAM_TOKEN};
use crate::harness::{url_of, TestApp};

/// Lets Shoal call the fakes on 127.0.0.1, looks for due jobs often, retries soon, and gives
/// bots half a second to answer.
fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 500;
    c.outbound.limit_margin_ms = 50;
    c.outbound.member_count_interval_secs = 0;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(fast).await
}

/// A bridge of `kind` whose bot is at `base` with `token`; no rate limits unless set after.
async fn bridge(app: &TestApp, kind: &str, base: Option<&str>, token: Option<&str>) -> i64 {
    let platform = match kind {
        "telegram" => "telegram",
        "generic" => "other",
        _ => "qq",
    };
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
         VALUES ($1, $2, $3, 'the-bridge-secret_1', $4, $5, 0, 0) RETURNING id",
    )
    .bind(kind)
    .bind(platform)
    .bind(format!("{kind} bot"))
    .bind(base)
    .bind(token)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn set_limits(app: &TestApp, bridge: i64, chat: (i32, i32), bot: (i32, i32)) {
    sqlx::query(
        "UPDATE bridges SET chat_rate_limit = $2, chat_rate_window_ms = $3, bot_rate_limit = $4, bot_rate_window_ms = $5
         WHERE id = $1",
    )
    .bind(bridge)
    .bind(chat.0)
    .bind(chat.1)
    .bind(bot.0)
    .bind(bot.1)
    .execute(&app.db)
    .await
    .unwrap();
}

/// A group linked through `bridge` to `chat`.
async fn linked(app: &TestApp, bridge: i64, name: &str, chat: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id)
         SELECT $1, platform, 500, $2, id FROM bridges WHERE id = $3 RETURNING id",
    )
    .bind(name)
    .bind(chat)
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Queues an action through the API; the job's id.
async fn queue(app: &TestApp, token: &str, bridge: i64, action: Value) -> i64 {
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/bridges/{bridge}/actions")))
        .bearer_auth(token)
        .json(&action)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, S::ACCEPTED, "{body}");
    body["job_id"].as_i64().unwrap()
}

fn send(chat: &str, text: &str) -> Value {
    json!({"action": "send", "chat_id": chat, "text": text})
}

async fn job(app: &TestApp, id: i64) -> (JobState, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Waits until job `id` is in one of `states` (up to 30 s).
async fn wait_job(app: &TestApp, id: i64, states: &[JobState]) -> (JobState, i32, Option<String>) {
    for _ in 0..600 {
        let j = job(app, id).await;
        if states.contains(&j.0) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} never reached {states:?}: {:?}", job(app, id).await);
}

async fn wait_done(app: &TestApp, ids: &[i64]) {
    for id in ids {
        let j = wait_job(app, *id, &[JobState::Done, JobState::Dead, JobState::Unknown]).await;
        assert_eq!(j.0, JobState::Done, "job {id}: {j:?}");
    }
}

/// (outcome, method, error) of the bridge's calls, oldest first.
async fn calls(app: &TestApp, bridge: i64) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as("SELECT outcome::text, method, error FROM bot_calls WHERE bridge_id = $1 ORDER BY id")
        .bind(bridge)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

fn all_actions(chat: &str) -> Vec<Value> {
    vec![
        json!({"action": "send", "chat_id": chat, "text": "早上好 &#91;1&#93;", "reply_to": "55", "mention": true, "user_id": "9001"}),
        json!({"action": "send_photo", "chat_id": chat, "url": "https://example.com/p.png", "caption": "海报"}),
        json!({"action": "delete", "chat_id": chat, "message_id": "77"}),
        json!({"action": "mute", "chat_id": chat, "user_id": "9001", "seconds": 600}),
        json!({"action": "mute", "chat_id": chat, "user_id": "9001", "seconds": 0}),
        json!({"action": "kick", "chat_id": chat, "user_id": "9002", "ban": false}),
        json!({"action": "kick", "chat_id": chat, "user_id": "9003", "ban": true}),
        json!({"action": "join_request", "chat_id": chat, "request": "flag-1", "approve": true}),
        json!({"action": "join_request", "chat_id": chat, "request": "flag-2", "approve": false, "reason": "满员"}),
    ]
}

// ---------------------------------------------------------------- each action, each bot

async fn onebot_actions_arrive_in_shape(flavor: Flavor) {
    let app = spawn().await;
    let fake = FakeBot::start(flavor).await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let token = app.token("admin", true, &[]).await;
    let mut ids = Vec::new();
    // One at a time, so that the fake sees them in order.
    for a in all_actions("123456") {
        let id = queue(&app, &token, b, a).await;
        wait_done(&app, &[id]).await;
        ids.push(id);
    }
    let got = fake.calls();
    let methods: Vec<&str> = got.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "send_group_msg",
            "send_group_msg",
            "delete_msg",
            "set_group_ban",
            "set_group_ban",
            "set_group_kick",
            "set_group_kick",
            "set_group_add_request",
            "set_group_add_request"
        ]
    );
    for c in &got {
        assert_eq!(c.authorization.as_deref(), Some("Bearer onebot-token"), "{c:?}");
    }
    assert_eq!(
        got[0].body,
        json!({"group_id": 123456, "message": "[CQ:reply,id=55][CQ:at,qq=9001] 早上好 &#91;1&#93;", "auto_escape": false})
    );
    assert_eq!(got[1].body["message"], "[CQ:image,file=https://example.com/p.png]海报");
    assert_eq!(got[2].body, json!({"message_id": 77}));
    assert_eq!(got[3].body, json!({"group_id": 123456, "user_id": 9001, "duration": 600}));
    // Lifting a ban still sends `duration` (NapCat requires it).
    assert_eq!(got[4].body["duration"], 0);
    assert_eq!(got[5].body["reject_add_request"], false);
    assert_eq!(got[6].body["reject_add_request"], true);
    assert_eq!(got[7].body, json!({"flag": "flag-1", "sub_type": "add", "type": "add", "approve": true, "reason": ""}));
    assert_eq!(got[8].body["approve"], false);
    assert_eq!(got[8].body["reason"], "满员");
    let log = calls(&app, b).await;
    assert_eq!(log.len(), 9);
    assert!(log.iter().all(|(o, _, e)| o == "ok" && e.is_none()), "{log:?}");
    let sent: Option<String> = sqlx::query_scalar(
        "SELECT result FROM bot_calls WHERE bridge_id = $1 AND method = 'send_group_msg' ORDER BY id LIMIT 1",
    )
    .bind(b)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(sent.as_deref(), Some("1001"), "the sent message's id is kept");
}

#[tokio::test]
async fn every_action_reaches_go_cqhttp_in_its_shape_with_the_bearer_token() {
    onebot_actions_arrive_in_shape(Flavor::GoCqhttp).await;
}

#[tokio::test]
async fn every_action_reaches_napcat_in_its_shape_with_the_bearer_token() {
    onebot_actions_arrive_in_shape(Flavor::NapCat).await;
}

#[tokio::test]
async fn every_action_reaches_telegram_in_its_shape() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let token = app.token("admin", true, &[]).await;
    let mut actions = all_actions("-1001234");
    actions[0] =
        json!({"action": "send", "chat_id": "-1001234", "text": "打卡成功", "reply_to": "55", "thread_id": "7"});
    actions[7] = json!({"action": "join_request", "chat_id": "-1001234", "request": "5001", "approve": true});
    actions[8] = json!({"action": "join_request", "chat_id": "-1001234", "request": "5002", "approve": false});
    for a in actions {
        let id = queue(&app, &token, b, a).await;
        wait_done(&app, &[id]).await;
    }
    let got = fake.calls();
    let methods: Vec<&str> = got.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "sendMessage",
            "sendPhoto",
            "deleteMessage",
            "restrictChatMember",
            "restrictChatMember",
            "banChatMember",
            "unbanChatMember",
            "banChatMember",
            "approveChatJoinRequest",
            "declineChatJoinRequest"
        ]
    );
    assert!(got.iter().all(|c| c.token.as_deref() == Some(TELEGRAM_TOKEN)));
    assert_eq!(
        got[0].body,
        json!({"chat_id": -1001234, "text": "打卡成功", "message_thread_id": 7,
               "reply_parameters": {"message_id": 55, "allow_sending_without_reply": true}})
    );
    assert!(got[0].body.get("parse_mode").is_none(), "plain text");
    assert_eq!(got[1].body, json!({"chat_id": -1001234, "photo": "https://example.com/p.png", "caption": "海报"}));
    assert_eq!(got[2].body, json!({"chat_id": -1001234, "message_id": 77}));
    assert_eq!(got[3].body["permissions"]["can_send_messages"], false);
    assert!(got[3].body["until_date"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 500);
    assert_eq!(got[4].body["permissions"]["can_send_messages"], true);
    assert!(got[4].body.get("until_date").is_none());
    assert_eq!(got[6].body, json!({"chat_id": -1001234, "user_id": 9002, "only_if_banned": true}));
    assert_eq!(got[7].body["user_id"], 9003);
    assert_eq!(got[8].body, json!({"chat_id": -1001234, "user_id": 5001}));
    assert_eq!(calls(&app, b).await.iter().filter(|c| c.0 == "ok").count(), 10);
}

#[tokio::test]
async fn the_generic_bridge_posts_each_action_signed_like_its_deliveries() {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(bool, Value)>>> = Arc::default();
    let g = got.clone();
    let receiver = axum::Router::new().route(
        "/actions",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
                let now = chrono::Utc::now().timestamp();
                let ok = shoal::bridges::generic::verify(
                    "the-bridge-secret_1",
                    h("x-shoal-timestamp").as_deref(),
                    h("x-shoal-signature").as_deref(),
                    &body,
                    now,
                );
                g.lock().unwrap().push((ok, serde_json::from_slice(&body).unwrap()));
                axum::Json(json!({"message_id": "m-1"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let app = spawn().await;
    let b = bridge(&app, "generic", Some(&format!("http://{addr}/actions")), None).await;
    let token = app.token("admin", true, &[]).await;
    let id = queue(&app, &token, b, send("room-1", "hello")).await;
    wait_done(&app, &[id]).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0].0, "signed with the bridge's secret");
    assert_eq!(
        got[0].1,
        json!({"bridge_id": b, "action": {"action": "send", "chat_id": "room-1", "text": "hello", "mention": false}})
    );
    let result: Option<String> = sqlx::query_scalar("SELECT result FROM bot_calls WHERE bridge_id = $1")
        .bind(b)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(result.as_deref(), Some("m-1"));
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn napcat_failures_are_read_from_the_envelope_and_never_retried() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::NapCat).await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let token = app.token("admin", true, &[]).await;
    // HTTP 200, status failed, retcode 200, the text in `message`.
    fake.inject(
        "send_group_msg",
        Inject::Answer(
            200,
            json!({"status": "failed", "retcode": 200, "data": null, "message": "群不存在", "wording": "群不存在"}),
        ),
    );
    let id = queue(&app, &token, b, send("1", "hi")).await;
    let (state, attempts, error) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!((state, attempts), (JobState::Dead, 1));
    assert_eq!(error.as_deref(), Some("retcode 200: 群不存在"));

    // A wrong token: NapCat's 403.
    let wrong = bridge(&app, "onebot11", Some(&fake.base()), Some("wrong")).await;
    let id = queue(&app, &token, wrong, send("1", "hi")).await;
    let (state, _, error) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!(state, JobState::Dead);
    assert!(error.unwrap().contains("refused the access token (HTTP 403)"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.calls_of("send_group_msg").len(), 2, "each failure was tried once");
    let log = calls(&app, b).await;
    assert_eq!(log, vec![("failed".into(), "send_group_msg".into(), Some("retcode 200: 群不存在".into()))]);
}

#[tokio::test]
async fn go_cqhttp_errors_carry_msg_and_wording_and_a_missing_token_is_refused() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let token = app.token("admin", true, &[]).await;
    fake.inject(
        "set_group_ban",
        Inject::Answer(
            200,
            json!({"status": "failed", "retcode": 102, "msg": "NO_PERMISSION", "wording": "机器人不是管理员"}),
        ),
    );
    let id = queue(&app, &token, b, json!({"action": "mute", "chat_id": "1", "user_id": "2", "seconds": 60})).await;
    let (state, _, error) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!(state, JobState::Dead);
    assert_eq!(error.as_deref(), Some("retcode 102: NO_PERMISSION — 机器人不是管理员"));
    // Another admin answered the request first: done, not failed.
    fake.inject(
        "set_group_add_request",
        Inject::Answer(
            200,
            json!({"status": "failed", "retcode": 100, "msg": "FLAG_HAS_BEEN_CHECKED", "wording": "消息已被处理"}),
        ),
    );
    let id = queue(&app, &token, b, json!({"action": "join_request", "chat_id": "1", "request": "f", "approve": true}))
        .await;
    wait_done(&app, &[id]).await;
    let tokenless = bridge(&app, "onebot11", Some(&fake.base()), None).await;
    let id = queue(&app, &token, tokenless, send("1", "hi")).await;
    let (state, _, error) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!(state, JobState::Dead);
    assert!(error.unwrap().contains("HTTP 401"));
}

#[tokio::test]
async fn a_send_whose_outcome_is_unknown_is_never_sent_again_and_shows_as_unknown() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let token = app.token("admin", true, &[]).await;
    // No answer within the bot timeout (500 ms) after the request went out.
    fake.inject("sendMessage", Inject::Stall(Duration::from_secs(2)));
    let timed_out = queue(&app, &token, b, send("-100", "once")).await;
    // The connection closes after the request was read.
    fake.inject("sendMessage", Inject::HangUp);
    let hung_up = queue(&app, &token, b, send("-100", "once more")).await;
    for id in [timed_out, hung_up] {
        let (state, attempts, error) = wait_job(&app, id, &[JobState::Unknown, JobState::Done, JobState::Dead]).await;
        assert_eq!((state, attempts), (JobState::Unknown, 1), "{error:?}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.calls_of("sendMessage").len(), 2, "each send went out exactly once");
    let log = calls(&app, b).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|(o, _, _)| o == "unknown"), "{log:?}");
    // The Jobs page and the API show it; the outbound page lists it with the failures.
    let admin = app.admin().await;
    let page = admin.get(app.url("/settings/jobs?state=unknown")).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(&format!("id=\"job-{timed_out}\"")) && page.contains("Outcome unknown")
            || page.contains("结果未知")
    );
    let j: Value = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/jobs/{timed_out}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["state"], "unknown");
    let out = admin.get(app.url(&format!("/bridges/{b}/outbound"))).send().await.unwrap().text().await.unwrap();
    let failed = &out[out.find("id=\"failed-calls\"").unwrap()..out.find("id=\"ok-calls\"").unwrap()];
    assert_eq!(failed.matches("data-outcome=\"unknown\"").count(), 2);
}

#[tokio::test]
async fn an_idempotent_action_whose_outcome_is_unknown_is_tried_again() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let token = app.token("admin", true, &[]).await;
    fake.inject("delete_msg", Inject::Stall(Duration::from_secs(2)));
    let id = queue(&app, &token, b, json!({"action": "delete", "chat_id": "1", "message_id": "5"})).await;
    wait_done(&app, &[id]).await;
    assert_eq!(fake.calls_of("delete_msg").len(), 2);
    let outcomes: Vec<String> = calls(&app, b).await.into_iter().map(|c| c.0).collect();
    assert_eq!(outcomes, ["unknown", "ok"]);
}

#[tokio::test]
async fn calls_that_never_reached_the_bot_are_tried_again() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.jobs.max_attempts = 3;
    })
    .await;
    let token = app.token("admin", true, &[]).await;
    // Nothing listens there: connection refused, three attempts, then dead.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let nowhere = bridge(&app, "onebot11", Some(&format!("http://{closed}")), Some("t")).await;
    let id = queue(&app, &token, nowhere, send("1", "hi")).await;
    let (state, attempts, _) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!((state, attempts), (JobState::Dead, 3));
    let log = calls(&app, nowhere).await;
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|(o, _, _)| o == "failed"));
    // A proxy in front of the bot answers 502 (its own page, not the bot's answer): tried again.
    let fake = FakeBot::start(Flavor::NapCat).await;
    let proxied = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    fake.inject("send_group_msg", Inject::Plain(502, "<html><body>502 Bad Gateway</body></html>"));
    let id = queue(&app, &token, proxied, send("1", "hi")).await;
    wait_done(&app, &[id]).await;
    assert_eq!(fake.calls_of("send_group_msg").len(), 2);
    // A 504 from the proxy: the bot may have got it, so a send is not repeated.
    fake.inject("send_group_msg", Inject::Plain(504, "Gateway Timeout"));
    let id = queue(&app, &token, proxied, send("1", "hi again")).await;
    assert_eq!(wait_job(&app, id, &[JobState::Unknown, JobState::Done, JobState::Dead]).await.0, JobState::Unknown);
}

#[tokio::test]
async fn telegram_429_waits_retry_after_and_holds_the_chat_meanwhile() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    set_limits(&app, b, (100, 1000), (0, 1000)).await;
    let token = app.token("admin", true, &[]).await;
    fake.inject(
        "sendMessage",
        Inject::Answer(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2", "parameters": {"retry_after": 2}}),
        ),
    );
    let first = queue(&app, &token, b, send("-100", "first")).await;
    fake.wait_method("sendMessage", 1).await;
    let second = queue(&app, &token, b, send("-100", "second")).await;
    wait_done(&app, &[first, second]).await;
    let got = fake.calls_of("sendMessage");
    assert_eq!(got.len(), 3, "the refused send went again, once");
    let refused_at = got[0].at;
    for c in &got[1..] {
        assert!(
            c.at.duration_since(refused_at) >= Duration::from_millis(1900),
            "{:?} after the 429",
            c.at - refused_at
        );
    }
    let log = calls(&app, b).await;
    assert_eq!(log[0].0, "failed");
    assert!(log[0].2.as_deref().unwrap().contains("retry after 2"));
}

#[tokio::test]
async fn a_kicked_bot_marks_the_link_broken_until_a_call_succeeds_again() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let g = linked(&app, b, "跑团", "-100777").await;
    let token = app.token("admin", true, &[]).await;
    fake.kick_from("-100777");
    let id = queue(&app, &token, b, send("-100777", "hi")).await;
    let (state, _, error) = wait_job(&app, id, &[JobState::Dead, JobState::Done]).await;
    assert_eq!(state, JobState::Dead);
    assert!(error.unwrap().contains("bot was kicked"));
    let (broken, reason): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
        sqlx::query_as("SELECT link_broken_at, link_broken_reason FROM groups WHERE id = $1")
            .bind(g)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(broken.is_some());
    assert!(reason.unwrap().contains("kicked"));
    let admin = app.admin().await;
    let page = admin.get(app.url(&format!("/bridges/{b}/outbound"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("link-broken"));
    let view: Value = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/bridges/{b}/outbound")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(view["linked_chats"][0]["link_broken_at"].is_string());
    // The bot is added back: the test message from the page goes through and mends the link.
    fake.unkick("-100777");
    let r = app
        .post_form(
            &admin,
            &format!("/bridges/{b}/outbound"),
            &format!("/bridges/{b}/outbound/test"),
            &[("group_id", &g.to_string())],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    for _ in 0..200 {
        let broken: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT link_broken_at FROM groups WHERE id = $1")
                .bind(g)
                .fetch_one(&app.db)
                .await
                .unwrap();
        if broken.is_none() {
            let sent = fake.calls_of("sendMessage");
            assert!(sent.last().unwrap().body["text"].as_str().unwrap().contains("跑团"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the link stayed broken: {:?}", calls(&app, b).await);
}

#[tokio::test]
async fn a_group_that_became_a_supergroup_follows_its_new_chat_id() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let g = linked(&app, b, "读书会", "-4001").await;
    let token = app.token("admin", true, &[]).await;
    fake.migrate("-4001", "-1004001");
    let id = queue(&app, &token, b, send("-4001", "hello")).await;
    wait_done(&app, &[id]).await;
    let chats: Vec<String> = fake.calls_of("sendMessage").iter().map(|c| c.chat()).collect();
    assert_eq!(chats, ["-4001", "-1004001"]);
    let chat: String = sqlx::query_scalar("SELECT external_chat_id FROM groups WHERE id = $1")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(chat, "-1004001");
    // Later actions for the old id follow it too.
    let id = queue(&app, &token, b, send("-4001", "again")).await;
    wait_done(&app, &[id]).await;
    assert_eq!(fake.calls_of("sendMessage").last().unwrap().chat(), "-1004001");
}

// ---------------------------------------------------------------- rate limits

#[tokio::test]
async fn rate_limits_are_never_exceeded_in_any_window_per_chat_and_per_bot() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    // 5 per 2 s per chat, 6 per second for the bot.
    set_limits(&app, b, (5, 2000), (6, 1000)).await;
    let token = app.token("admin", true, &[]).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        for chat in ["-1", "-2"] {
            ids.push(queue(&app, &token, b, send(chat, &format!("{chat} #{i}"))).await);
        }
    }
    // Deletes and mutes count too.
    for i in 0..4 {
        ids.push(
            queue(&app, &token, b, json!({"action": "delete", "chat_id": "-1", "message_id": format!("{i}")})).await,
        );
    }
    wait_done(&app, &ids).await;
    let got = fake.calls();
    assert_eq!(got.len(), 28);
    for chat in ["-1", "-2"] {
        let times: Vec<Instant> = got.iter().filter(|c| c.chat() == chat).map(|c| c.at).collect();
        let most = max_in_window(&times, Duration::from_secs(2));
        assert!(most <= 5, "chat {chat}: {most} calls within 2 s");
        assert_eq!(most, 5, "the limit is used, not just undershot");
    }
    let all: Vec<Instant> = got.iter().map(|c| c.at).collect();
    assert!(max_in_window(&all, Duration::from_secs(1)) <= 6);
    // Waiting for the limit is not an attempt.
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM jobs WHERE kind = 'bot_action'").fetch_all(&app.db).await.unwrap();
    assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
}

async fn shoal_process(url: &str, envs: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", url)
        .env("SHOAL_LISTEN", "127.0.0.1:0")
        .env("SHOAL_LOG_FORMAT", "json")
        .env("SHOAL_DATABASE__MAX_CONNECTIONS", "8")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("Shoal is listening on http://") {
                return a.trim().to_string();
            }
        }
        panic!("shoal exited");
    })
    .await
    .unwrap();
    // Keep reading its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shoal_processes_keep_one_limit_between_them() {
    // This process only enqueues; two real Shoal processes run the jobs.
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.jobs.workers = 0;
    })
    .await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    set_limits(&app, b, (4, 1500), (0, 1000)).await;
    let token = app.token("admin", true, &[]).await;
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(queue(&app, &token, b, send("-9", &format!("#{i}"))).await);
    }
    let url = url_of(&app.db_opts);
    let env = [
        ("SHOAL_OUTBOUND__ALLOWED_HOSTS", "[\"127.0.0.1\"]"),
        ("SHOAL_OUTBOUND__LIMIT_MARGIN_MS", "50"),
        ("SHOAL_OUTBOUND__MEMBER_COUNT_INTERVAL_SECS", "0"),
        ("SHOAL_JOBS__POLL_MS", "20"),
        ("SHOAL_JOBS__WORKERS", "8"),
    ];
    let procs = [shoal_process(&url, &env).await, shoal_process(&url, &env).await];
    wait_done(&app, &ids).await;
    // Both processes took part: each counted attempts of its own.
    let mut per_process = Vec::new();
    for (_, addr) in &procs {
        let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        let n: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("jobs_attempts_total{") && l.contains("bot_action"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum();
        per_process.push(n);
    }
    drop(procs);
    assert!(per_process.iter().all(|n| *n >= 1.0), "attempts per process: {per_process:?}");
    let got = fake.calls_of("sendMessage");
    assert_eq!(got.len(), 16);
    let times: Vec<Instant> = got.iter().map(|c| c.at).collect();
    let most = max_in_window(&times, Duration::from_millis(1500));
    assert_eq!(most, 4, "at most 4 in any 1.5 s across both processes");
}

// ---------------------------------------------------------------- member counts

#[tokio::test]
async fn member_counts_come_from_each_bot_on_request() {
    let onebot = FakeBot::start(Flavor::NapCat).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    tg.set_member_count(42);
    let app = spawn().await;
    let ob = bridge(&app, "onebot11", Some(&onebot.base()), Some(&onebot.token)).await;
    let tb = bridge(&app, "telegram", Some(&tg.base()), Some(TELEGRAM_TOKEN)).await;
    let qq_group = linked(&app, ob, "QQ 群", "20001").await;
    let tg_group = linked(&app, tb, "TG 群", "-1002").await;
    let token = app.token("admin", true, &[]).await;
    let client = reqwest::Client::new();
    for b in [ob, tb] {
        let r = client
            .post(app.url(&format!("/api/v1/bridges/{b}/member-counts")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), S::ACCEPTED);
    }
    let count = |g: i64| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, Option<i32>>("SELECT member_count FROM groups WHERE id = $1")
                .bind(g)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    for _ in 0..200 {
        if count(qq_group).await == Some(321) && count(tg_group).await == Some(42) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((count(qq_group).await, count(tg_group).await), (Some(321), Some(42)));
    assert_eq!(onebot.calls_of("get_group_info")[0].body, json!({"group_id": 20001, "no_cache": true}));
    assert_eq!(tg.calls_of("getChatMemberCount")[0].body, json!({"chat_id": -1002}));
}

#[tokio::test]
async fn member_counts_are_refreshed_on_schedule() {
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    fake.set_member_count(77);
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.outbound.member_count_interval_secs = 1;
    })
    .await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let g = linked(&app, b, "定时", "30003").await;
    for _ in 0..200 {
        let n: Option<i32> = sqlx::query_scalar("SELECT member_count FROM groups WHERE id = $1")
            .bind(g)
            .fetch_one(&app.db)
            .await
            .unwrap();
        if n == Some(77) {
            let sweeps: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE kind = 'member_count_refresh' AND dedupe_key LIKE 'member_counts:%'",
            )
            .fetch_one(&app.db)
            .await
            .unwrap();
            assert!(sweeps >= 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the member count was never refreshed: {:?}", fake.calls());
}

// ---------------------------------------------------------------- pages and API

#[tokio::test]
async fn the_outbound_page_lists_failures_first_and_sends_a_test_message() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let b = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let g = linked(&app, b, "晨跑群", "40004").await;
    let token = app.token("admin", true, &[]).await;
    let ok = queue(&app, &token, b, send("40004", "first")).await;
    wait_done(&app, &[ok]).await;
    fake.inject(
        "send_group_msg",
        Inject::Answer(
            200,
            json!({"status": "failed", "retcode": 100, "msg": "SEND_MSG_API_ERROR", "wording": "风控"}),
        ),
    );
    let bad = queue(&app, &token, b, send("40004", "second")).await;
    wait_job(&app, bad, &[JobState::Dead]).await;

    let admin = app.admin().await;
    let detail = admin.get(app.url(&format!("/bridges/{b}"))).send().await.unwrap().text().await.unwrap();
    assert!(detail.contains(&format!("href=\"/bridges/{b}/outbound\"")), "the bridge page links its outbound side");
    let page = admin.get(app.url(&format!("/bridges/{b}/outbound"))).send().await.unwrap().text().await.unwrap();
    let (failed_at, ok_at) = (page.find("id=\"failed-calls\"").unwrap(), page.find("id=\"ok-calls\"").unwrap());
    assert!(failed_at < ok_at, "failures come first");
    let failed = &page[failed_at..ok_at];
    assert!(failed.contains("SEND_MSG_API_ERROR — 风控"));
    assert!(!failed.contains("data-outcome=\"ok\""));
    assert!(page[ok_at..].contains("data-outcome=\"ok\""));
    assert!(page.contains("data-ready=\"true\""));
    assert!(page.contains("NapCat") && page.contains("go-cqhttp") && page.contains("LLOneBot"), "setup steps for each");

    // The test message: CSRF-protected, queued as a job, posted to the linked chat.
    let r = admin
        .post(app.url(&format!("/bridges/{b}/outbound/test")))
        .form(&[("group_id", g.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::FORBIDDEN, "no CSRF token, nothing queued");
    assert_eq!(fake.calls_of("send_group_msg").len(), 2);
    let r = app
        .post_form(
            &admin,
            &format!("/bridges/{b}/outbound"),
            &format!("/bridges/{b}/outbound/test"),
            &[("group_id", &g.to_string())],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let got = fake.wait_calls(3).await;
    let text = got[2].body["message"].as_str().unwrap();
    assert!(text.contains("晨跑群"), "{text}");
    assert_eq!(got[2].body["group_id"], 40004);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'bridge.test_message'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audit, 1);
    // A group that is not linked through this bridge gets a message and nothing is queued.
    let other = app.group("别的群").await;
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&app.db).await.unwrap();
    let r = app
        .post_form(
            &admin,
            &format!("/bridges/{b}/outbound"),
            &format!("/bridges/{b}/outbound/test"),
            &[("group_id", &other.to_string())],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&app.db).await.unwrap();
    assert_eq!(jobs_before, jobs_after);
    // The API does the same.
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/bridges/{b}/test-message")))
        .bearer_auth(&token)
        .json(&json!({"group_id": other}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/bridges/{b}/test-message")))
        .bearer_auth(&token)
        .json(&json!({"group_id": g}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::ACCEPTED);
    fake.wait_calls(4).await;
}

#[tokio::test]
async fn a_telegram_bridge_registers_its_webhook_from_the_page_and_the_api() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let admin = app.admin().await;
    let page = admin.get(app.url(&format!("/bridges/{b}/outbound"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"not-https\""), "the test server's public URL is http: a warning");
    let r =
        app.post_form(&admin, &format!("/bridges/{b}/outbound"), &format!("/bridges/{b}/outbound/webhook"), &[]).await;
    assert_eq!(r.status(), S::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"webhook-info\""));
    let set = fake.calls_of("setWebhook");
    assert_eq!(set.len(), 1);
    let want_url = app.url(&format!("/hooks/telegram/{b}"));
    assert_eq!(set[0].body["url"], json!(want_url));
    assert_eq!(set[0].body["secret_token"], "the-bridge-secret_1");
    let updates: Vec<String> =
        set[0].body["allowed_updates"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    for u in ["message", "edited_message", "chat_member", "chat_join_request", "my_chat_member"] {
        assert!(updates.contains(&u.to_string()), "{u} in {updates:?}");
    }
    assert_eq!(fake.calls_of("getWebhookInfo").len(), 1);
    assert!(page.contains(&want_url), "getWebhookInfo's url is shown");

    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/bridges/{b}/telegram-webhook")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["https"], false);
    assert_eq!(report["set"], false);
    assert_eq!(report["info"]["url"], json!(want_url));
    assert_eq!(fake.calls_of("setWebhook").len(), 1, "GET only reads");
    // Telegram refuses: the report says so.
    fake.inject("setWebhook", Inject::Answer(400, json!({"ok": false, "error_code": 400, "description": "Bad Request: bad webhook: HTTPS url must be provided for webhook"})));
    let report: Value = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/bridges/{b}/telegram-webhook")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["set"], false);
    assert!(report["error"].as_str().unwrap().contains("HTTPS url must be provided"));
    let calls = calls(&app, b).await;
    assert!(calls.iter().any(|(o, m, _)| o == "failed" && m == "setWebhook"));
    // A OneBot bridge has no webhook to register.
    let ob = bridge(&app, "onebot11", Some("http://127.0.0.1:9"), None).await;
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/bridges/{ob}/telegram-webhook")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::CONFLICT);
}

#[tokio::test]
async fn outbound_settings_are_checked_alike_on_the_page_and_the_api_and_secrets_never_show() {
    // No [outbound] exceptions here: loopback addresses are refused.
    let app = TestApp::spawn().await;
    let tg = bridge(&app, "telegram", None, None).await;
    let token = app.token("admin", true, &[]).await;
    let client = reqwest::Client::new();
    let patch = |body: Value| {
        client.patch(app.url(&format!("/api/v1/bridges/{tg}/outbound"))).bearer_auth(&token).json(&body).send()
    };
    let r = patch(json!({"access_token": "not-a-token"})).await.unwrap();
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "access_token");
    let r = patch(json!({"api_base_url": "http://127.0.0.1:8081"})).await.unwrap();
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let r = patch(json!({"chat_rate_limit": 5, "chat_rate_window_ms": 50})).await.unwrap();
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let unchanged: (Option<String>, Option<i32>) =
        sqlx::query_as("SELECT access_token, chat_rate_limit FROM bridges WHERE id = $1")
            .bind(tg)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(unchanged, (None, Some(0)), "refused changes write nothing");

    let r = patch(json!({"access_token": TELEGRAM_TOKEN, "chat_rate_limit": 5, "chat_rate_window_ms": 2000, "bot_rate_limit": null}))
        .await
        .unwrap();
    assert_eq!(r.status(), S::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains(TELEGRAM_TOKEN), "the token is never shown");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["access_token_set"], true);
    assert_eq!(view["ready"], true);
    assert_eq!(view["effective_limits"]["chat"], json!({"limit": 5, "window_ms": 2000}));
    assert_eq!(view["effective_limits"]["bot"], json!({"limit": 30, "window_ms": 1000}), "null: Telegram's default");
    let audit: Vec<Value> = sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'bridge.outbound_update'")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(!audit[0].to_string().contains(TELEGRAM_TOKEN));
    assert_eq!(audit[0]["access_token"], "changed");

    // The edit page checks the same way.
    let admin = app.admin().await;
    let edit = format!("/bridges/{tg}/edit");
    let r = app
        .post_form(&admin, &edit, &edit, &[("name", "TG"), ("platform", "telegram"), ("access_token", "nope")])
        .await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let r = app
        .post_form(
            &admin,
            &edit,
            &edit,
            &[("name", "TG"), ("platform", "telegram"), ("api_base_url", "http://10.0.0.5:8081")],
        )
        .await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let form = admin.get(app.url(&edit)).send().await.unwrap().text().await.unwrap();
    assert!(form.contains("Bot token") || form.contains("机器人令牌"), "the token field says what it is for Telegram");
    // The limits form on the outbound page.
    let page = format!("/bridges/{tg}/outbound");
    let r = app
        .post_form(
            &admin,
            &page,
            &format!("{page}/limits"),
            &[("chat_rate_limit", "-3"), ("chat_rate_window_secs", "2")],
        )
        .await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let r = app
        .post_form(
            &admin,
            &page,
            &format!("{page}/limits"),
            &[
                ("chat_rate_limit", "20"),
                ("chat_rate_window_secs", "60"),
                ("bot_rate_limit", ""),
                ("bot_rate_window_secs", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let limits: (Option<i32>, Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT chat_rate_limit, chat_rate_window_ms, bot_rate_limit FROM bridges WHERE id = $1")
            .bind(tg)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(limits, (Some(20), Some(60_000), None));

    // Debug never prints a credential.
    let mut conn = app.db.acquire().await.unwrap();
    let b = shoal::store::outbound::bridge(&mut conn, tg).await.unwrap().unwrap();
    let debug = format!("{b:?}");
    assert!(!debug.contains(TELEGRAM_TOKEN) && !debug.contains("the-bridge-secret_1"), "{debug}");
}

#[tokio::test]
async fn the_call_log_api_pages_newest_first_and_filters_failures() {
    let app = spawn().await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", Some(&fake.base()), Some(TELEGRAM_TOKEN)).await;
    let token = app.token("admin", true, &[]).await;
    fake.kick_from("-5");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(queue(&app, &token, b, send("-6", &format!("{i}"))).await);
    }
    let kicked = queue(&app, &token, b, send("-5", "x")).await;
    wait_done(&app, &ids).await;
    wait_job(&app, kicked, &[JobState::Dead]).await;
    let client = reqwest::Client::new();
    let get = |q: &str| client.get(app.url(&format!("/api/v1/bridges/{b}/calls{q}"))).bearer_auth(&token).send();
    let page: Value = get("?limit=2").await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest: Value = get(&format!("?limit=2&cursor={cursor}")).await.unwrap().json().await.unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    let cursor = rest["next_cursor"].as_str().unwrap().to_string();
    let end: Value = get(&format!("?limit=2&cursor={cursor}")).await.unwrap().json().await.unwrap();
    assert!(end["items"].as_array().unwrap().is_empty() && end["next_cursor"].is_null());
    let first_ids: Vec<i64> = page["items"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert!(first_ids[0] > first_ids[1], "newest first");
    let failures: Value = get("?failures=true").await.unwrap().json().await.unwrap();
    let items = failures["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["outcome"], "failed");
    assert_eq!(items[0]["method"], "sendMessage");
    assert_eq!(items[0]["chat_id"], "-5");
    assert_eq!(items[0]["status_code"], 403);
    assert!(items[0]["latency_ms"].as_i64().unwrap() >= 0);
    let oks: Value = get("?outcome=ok").await.unwrap().json().await.unwrap();
    assert_eq!(oks["items"].as_array().unwrap().len(), 3);
    assert_eq!(get("?outcome=maybe").await.unwrap().status(), S::BAD_REQUEST);
    assert_eq!(
        client.get(app.url("/api/v1/bridges/99999/calls")).bearer_auth(&token).send().await.unwrap().status(),
        S::NOT_FOUND
    );
    let viewer = app.token("viewer", true, &[]).await;
    assert_eq!(
        client.get(app.url(&format!("/api/v1/bridges/{b}/calls"))).bearer_auth(&viewer).send().await.unwrap().status(),
        S::FORBIDDEN
    );
}

#[tokio::test]
async fn bad_actions_and_unready_bridges_queue_nothing() {
    let app = spawn().await;
    let token = app.token("admin", true, &[]).await;
    let unready = bridge(&app, "onebot11", None, None).await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let ready = bridge(&app, "onebot11", Some(&fake.base()), Some(&fake.token)).await;
    let client = reqwest::Client::new();
    let post = |b: i64, body: Value| {
        client.post(app.url(&format!("/api/v1/bridges/{b}/actions"))).bearer_auth(&token).json(&body).send()
    };
    assert_eq!(post(unready, send("1", "hi")).await.unwrap().status(), S::CONFLICT);
    assert_eq!(post(ready, send("1", "")).await.unwrap().status(), S::UNPROCESSABLE_ENTITY);
    assert_eq!(post(ready, send("a b", "hi")).await.unwrap().status(), S::UNPROCESSABLE_ENTITY);
    assert_eq!(
        post(ready, json!({"action": "explode", "chat_id": "1"})).await.unwrap().status(),
        S::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        post(ready, json!({"action": "mute", "chat_id": "1", "user_id": "2", "seconds": 40_000_000}))
            .await
            .unwrap()
            .status(),
        S::UNPROCESSABLE_ENTITY
    );
    assert_eq!(post(99_999, send("1", "hi")).await.unwrap().status(), S::NOT_FOUND);
    assert_eq!(app.count("jobs").await, 0);
    let viewer = app.token("operator", true, &[]).await;
    let r = client
        .post(app.url(&format!("/api/v1/bridges/{ready}/actions")))
        .bearer_auth(&viewer)
        .json(&send("1", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), S::FORBIDDEN);
    assert_eq!(app.count("jobs").await, 0);
}
