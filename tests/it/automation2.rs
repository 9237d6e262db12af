//! The questionnaire entry mode (入群问卷) against the fake bots: on Telegram the bot sends the
//! applicant a signed link through `user_chat_id`; the public page renders the questions; bad or
//! overlong answers come back with messages and write nothing; good answers are stored on the
//! member and approve the request once (`approveChatJoinRequest`), however often the form is
//! posted; the answers show on the member's page and in the queue (page and API). On QQ the
//! bot cannot write to an applicant: the request waits in the queue.

use std::time::Duration;

use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakebots::{FakeBot, Flavor, TELEGRAM_TOKEN};
use crate::harness::{post_hook, TestApp};

const SECRET: &str = "automation-secret_2";

fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 2000;
    c.outbound.member_count_interval_secs = 0;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

async fn bridge(app: &TestApp, kind: &str, fake: &FakeBot) -> i64 {
    let (platform, token) = if kind == "telegram" { ("telegram", TELEGRAM_TOKEN) } else { ("qq", "onebot-token") };
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
         VALUES ($1, $2, 'bot', $3, $4, $5, 0, 0) RETURNING id",
    )
    .bind(kind)
    .bind(platform)
    .bind(SECRET)
    .bind(fake.base())
    .bind(token)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

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

async fn api(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

/// A rule set in questionnaire mode attached to `group`; its id.
async fn questionnaire(app: &TestApp, token: &str, group: i64, questions: Value) -> i64 {
    let (s, b) = api(app, token, reqwest::Method::POST, "/api/v1/rule-sets", Some(json!({"name": "问卷入群"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    let path = format!("/api/v1/rule-sets/{id}/attachments");
    let (s, b) = api(app, token, reqwest::Method::POST, &path, Some(json!({"to": "group", "group_id": group}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let path = format!("/api/v1/rule-sets/{id}/entry-policy");
    let (s, b) = api(
        app,
        token,
        reqwest::Method::PUT,
        &path,
        Some(json!({"mode": "questionnaire", "questions": questions, "expire_hours": 24})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entry_policy"]["mode"], "questionnaire");
    // The webhook path reads rule sets from a per-process cache told by NOTIFY.
    tokio::time::sleep(Duration::from_millis(300)).await;
    id
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn answers(app: &TestApp) -> Vec<(String, String, Option<i64>)> {
    sqlx::query_as("SELECT question, answer, member_id FROM join_request_answers ORDER BY join_request_id, position")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, user: &str) -> String {
    sqlx::query_scalar("SELECT status FROM join_requests WHERE user_id = $1")
        .bind(user)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_telegram_applicant_answers_the_questionnaire_once_and_is_approved_once() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", &fake).await;
    let g = linked(&app, b, "读书会", "-100810").await;
    let token = app.token("admin", true, &[]).await;
    // Questionnaire mode needs questions; at most ten.
    let (s, _) = api(&app, &token, reqwest::Method::POST, "/api/v1/rule-sets", Some(json!({"name": "x"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        "/api/v1/rule-sets/1/entry-policy",
        Some(json!({"mode": "questionnaire", "questions": []})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let eleven: Vec<String> = (0..11).map(|i| format!("q{i}")).collect();
    let (s, _) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        "/api/v1/rule-sets/1/entry-policy",
        Some(json!({"mode": "questionnaire", "questions": eleven})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let rs = questionnaire(&app, &token, g, json!(["你从哪里知道我们？", "你想读什么书？"])).await;
    // The rule-set page shows the questions for editing.
    let admin = app.admin().await;
    let html = admin.get(app.url(&format!("/rule-sets/{rs}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("你从哪里知道我们？\n你想读什么书？"), "{html}");

    let update = json!({"update_id": 900, "chat_join_request": {"chat": {"id": -100810, "type": "supergroup"},
        "from": {"id": 41, "is_bot": false, "first_name": "阿青"}, "user_chat_id": 4141, "date": now(), "bio": ""}});
    let body = serde_json::to_vec(&update).unwrap();
    let (s, _) =
        post_hook(&app, &format!("/hooks/telegram/{b}"), &body, &[("x-telegram-bot-api-secret-token", SECRET.into())])
            .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The bot writes to the applicant's private chat with the link.
    let sent = fake.wait_method("sendMessage", 1).await;
    assert_eq!(sent[0].body["chat_id"], 4141, "{:?}", sent[0].body);
    let text = sent[0].body["text"].as_str().unwrap();
    assert!(text.contains("读书会") && text.contains("24"), "{text}");
    let at = text.find("/q/").expect("the link");
    let path: String = text[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    assert!(text[..at].ends_with(&app.url("")), "an absolute link: {text}");
    assert_eq!(status_of(&app, "41").await, "pending");

    // The page renders the questions, phone-sized, in the group's language.
    let c = reqwest::Client::new();
    let r = c.get(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    let page = r.text().await.unwrap();
    for needle in ["你从哪里知道我们？", "你想读什么书？", "name=\"a0\"", "name=\"a1\"", "width=device-width", "读书会"]
    {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    // An altered link opens nothing.
    let last = if path.ends_with('x') { "y" } else { "x" };
    let altered = format!("{}{last}", &path[..path.len() - 1]);
    assert_eq!(c.get(app.url(&altered)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(app.url("/q/..%2F..%2Fetc")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    // A missing answer and an overlong one: the form again, with messages; nothing written.
    let long = "长".repeat(501);
    let r = c.post(app.url(&path)).form(&[("a0", "朋友推荐"), ("a1", "  ")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("请回答这个问题") && page.contains("朋友推荐"), "{page}");
    let r = c.post(app.url(&path)).form(&[("a0", long.as_str()), ("a1", "三体")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("最多 500 字"));
    let huge = "x".repeat(70 * 1024);
    let r = c.post(app.url(&path)).form(&[("a0", huge.as_str()), ("a1", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answers(&app).await.is_empty());
    assert_eq!(status_of(&app, "41").await, "pending");
    assert!(fake.calls_of("approveChatJoinRequest").is_empty());

    // Good answers: stored on the member, the request approved; a second post changes nothing.
    let r = c.post(app.url(&path)).form(&[("a0", " 朋友推荐 "), ("a1", "三体")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("入群申请已通过"));
    let r = c.post(app.url(&path)).form(&[("a0", "别的"), ("a1", "别的")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let member: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE platform = 'telegram' AND external_user_id = '41'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        answers(&app).await,
        vec![
            ("你从哪里知道我们？".to_string(), "朋友推荐".to_string(), Some(member)),
            ("你想读什么书？".to_string(), "三体".to_string(), Some(member)),
        ]
    );
    assert_eq!(status_of(&app, "41").await, "approved");
    let approved = fake.wait_method("approveChatJoinRequest", 1).await;
    assert_eq!((approved[0].body["chat_id"].as_i64(), approved[0].body["user_id"].as_i64()), (Some(-100810), Some(41)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls_of("approveChatJoinRequest").len(), 1, "approved once");
    // The page now says it is done.
    assert!(c.get(app.url(&path)).send().await.unwrap().text().await.unwrap().contains("入群申请已通过"));
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM bot_activity WHERE group_id = $1 ORDER BY id")
        .bind(g)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kinds, ["join_questionnaire", "join_approved"]);

    // Operators see the answers on the member's page, in the queue page and in the API.
    let html = admin.get(app.url(&format!("/members/{member}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"questionnaire-answers\"") && html.contains("三体"), "{html}");
    let html = admin.get(app.url("/join-requests?status=all")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("你想读什么书？") && html.contains("三体"), "{html}");
    let (s, q) = api(&app, &token, reqwest::Method::GET, "/api/v1/join-requests?status=approved", None).await;
    assert_eq!(s, StatusCode::OK);
    let item = &q["items"][0];
    assert_eq!(item["questions"], json!(["你从哪里知道我们？", "你想读什么书？"]));
    assert_eq!(item["answers"][1]["answer"], "三体", "{item}");
}

#[tokio::test]
async fn a_qq_request_under_a_questionnaire_waits_in_the_queue() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let b = bridge(&app, "onebot11", &fake).await;
    let g = linked(&app, b, "QQ 读书会", "820001").await;
    let token = app.token("admin", true, &[]).await;
    questionnaire(&app, &token, g, json!(["你从哪里知道我们？"])).await;
    let body = serde_json::to_vec(&json!({"time": now(), "self_id": 10001000, "post_type": "request",
        "request_type": "group", "sub_type": "add", "group_id": 820001, "user_id": 77, "comment": "朋友", "flag": "f77"}))
    .unwrap();
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    let (s, _) = post_hook(
        &app,
        &format!("/hooks/onebot11/{b}"),
        &body,
        &[("x-signature", sig), ("x-self-id", "10001000".into())],
    )
    .await;
    assert!(s.is_success(), "{s}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for method in ["send_private_msg", "send_msg", "set_group_add_request"] {
        assert!(fake.calls_of(method).is_empty(), "no message to the applicant, no answer: {:?}", fake.calls());
    }
    let (status, expires, questions): (String, Option<chrono::DateTime<chrono::Utc>>, Vec<String>) =
        sqlx::query_as("SELECT status, expires_at, questions FROM join_requests WHERE user_id = '77'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    assert!(expires.is_some(), "it expires by the policy");
    assert!(questions.is_empty());
    let log: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT kind, rule, answer FROM bot_activity WHERE group_id = $1")
            .bind(g)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(log, [("join_held".to_string(), "entry:questionnaire".to_string(), Some("queue".to_string()))]);
    let (_, q) = api(&app, &token, reqwest::Method::GET, "/api/v1/join-requests?status=pending", None).await;
    assert_eq!(q["items"].as_array().unwrap().len(), 1);
}
