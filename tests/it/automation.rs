//! Group automation against the fake bots: a wave of joins welcomed in one message naming
//! everyone, keyword replies with their cooldown, a pathological pattern refused at save, join
//! requests answered per policy (and from the approval queue) through
//! `set_group_add_request` / `approveChatJoinRequest`, actions a webhook answer cannot carry
//! going out as jobs once, the activity log, and the pages showing what the API holds.

use std::time::Duration;

use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakebots::{FakeBot, Flavor, TELEGRAM_TOKEN};
use crate::harness::{post_hook, TestApp};

const SECRET: &str = "automation-secret_1";

fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 2000;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

/// A bridge of `kind` whose bot is the fake; no rate limits.
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

async fn linked(app: &TestApp, bridge: i64, name: &str, chat: &str, tags: &[&str]) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id, tags)
         SELECT $1, platform, 500, $2, id, $4 FROM bridges WHERE id = $3 RETURNING id",
    )
    .bind(name)
    .bind(chat)
    .bind(bridge)
    .bind(tags.iter().map(|t| t.to_string()).collect::<Vec<_>>())
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

/// A rule set made through the API, attached as `attach`; its id.
async fn rule_set(app: &TestApp, token: &str, name: &str, attach: Value) -> i64 {
    let (s, b) = api(app, token, reqwest::Method::POST, "/api/v1/rule-sets", Some(json!({"name": name}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    let (s, b) =
        api(app, token, reqwest::Method::POST, &format!("/api/v1/rule-sets/{id}/attachments"), Some(attach)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    id
}

async fn onebot_post(app: &TestApp, bridge: i64, body: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    post_hook(
        app,
        &format!("/hooks/onebot11/{bridge}"),
        &body,
        &[("x-signature", sig), ("x-self-id", "10001000".into())],
    )
    .await
}

async fn telegram_post(app: &TestApp, bridge: i64, body: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    post_hook(app, &format!("/hooks/telegram/{bridge}"), &body, &[("x-telegram-bot-api-secret-token", SECRET.into())])
        .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn qq_join(group: &str, user: i64) -> Value {
    json!({"time": now(), "self_id": 10001000, "post_type": "notice", "notice_type": "group_increase",
           "sub_type": "approve", "group_id": group.parse::<i64>().unwrap(), "user_id": user, "operator_id": 0})
}

fn qq_message(group: &str, user: i64, id: i64, text: &str) -> Value {
    json!({"time": now(), "self_id": 10001000, "post_type": "message", "message_type": "group", "sub_type": "normal",
           "message_id": id, "group_id": group.parse::<i64>().unwrap(), "user_id": user, "message": text,
           "sender": {"user_id": user, "nickname": format!("user{user}"), "card": ""}})
}

async fn activity_kinds(app: &TestApp, group: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM bot_activity WHERE group_id = $1 ORDER BY id")
        .bind(group)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn three_joins_within_the_window_are_welcomed_in_one_message_mentioning_each() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::NapCat).await;
    let b = bridge(&app, "onebot11", &fake).await;
    let g = linked(&app, b, "Yoga [QQ]", "700100", &[]).await;
    let token = app.token("admin", true, &[]).await;
    let rs = rule_set(&app, &token, "Welcome set", json!({"to": "group", "group_id": g})).await;
    let (s, body) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/rule-sets/{rs}/welcome"),
        Some(json!({"template": "欢迎 {name} 加入 {group}，发送{checkin_keyword}签到", "window_secs": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for user in [111, 222, 333] {
        let (s, _) = onebot_post(&app, b, qq_join("700100", user)).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let sent = fake.wait_method("send_group_msg", 1).await;
    // Nothing else comes for the same batch.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent_after = fake.calls_of("send_group_msg");
    assert_eq!(sent_after.len(), 1, "one message for the wave: {sent_after:?}");
    let text = sent[0].body["message"].as_str().unwrap().to_string();
    for user in [111, 222, 333] {
        assert!(text.contains(&format!("[CQ:at,qq={user}]")), "{text}");
    }
    assert!(text.contains("Yoga &#91;QQ&#93;"), "the group's name is escaped: {text}");
    assert!(text.contains("签到"), "{text}");
    assert_eq!(activity_kinds(&app, g).await, vec!["welcome"; 3]);
    // A later join opens a new batch.
    onebot_post(&app, b, qq_join("700100", 444)).await;
    let sent = fake.wait_method("send_group_msg", 2).await;
    assert!(sent[1].body["message"].as_str().unwrap().contains("[CQ:at,qq=444]"));
    // The activity page shows the welcomes with the platform's answer.
    let admin = app.admin().await;
    let page = admin.get(app.url(&format!("/groups/{g}/activity"))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("data-kind=\"welcome\"") && html.contains("Welcome set"), "{html}");
}

#[tokio::test]
async fn a_telegram_welcome_mentions_members_with_text_mention_entities() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", &fake).await;
    let g = linked(&app, b, "Runners", "-100500", &["sport"]).await;
    let token = app.token("admin", true, &[]).await;
    // Attached through a tag.
    let rs = rule_set(&app, &token, "Tagged", json!({"to": "tag", "tag": "sport"})).await;
    api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/rule-sets/{rs}/welcome"),
        Some(json!({"template": "Hi {name}!", "window_secs": 1})),
    )
    .await;
    let members: Vec<Value> = [(11, "Ann"), (12, "Bo \u{E000}x")]
        .iter()
        .map(|(id, n)| json!({"id": id, "is_bot": false, "first_name": n}))
        .collect();
    let update = json!({"update_id": 9001, "message": {"message_id": 5, "date": now(),
        "chat": {"id": -100500, "type": "supergroup"}, "from": {"id": 11, "is_bot": false, "first_name": "Ann"},
        "new_chat_members": members}});
    assert_eq!(telegram_post(&app, b, update).await.0, StatusCode::NO_CONTENT);
    let sent = fake.wait_method("sendMessage", 1).await;
    let body = &sent[0].body;
    assert_eq!(body["text"], "Hi Ann、Bo x!", "marks a member typed are dropped: {body}");
    let e = body["entities"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0]["type"].as_str(), e[0]["offset"].as_i64(), e[0]["length"].as_i64()),
        (Some("text_mention"), Some(3), Some(3))
    );
    assert_eq!(e[1]["user"]["id"], 12);
    assert_eq!(activity_kinds(&app, g).await.len(), 2);
}

#[tokio::test]
async fn a_keyword_reply_answers_once_per_cooldown_and_builtins_keep_precedence() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::NapCat).await;
    let b = bridge(&app, "onebot11", &fake).await;
    let g = linked(&app, b, "Shop", "700200", &[]).await;
    let token = app.token("admin", true, &[]).await;
    let rs = rule_set(&app, &token, "Keywords", json!({"to": "group", "group_id": g})).await;
    let (s, k) = api(&app, &token, reqwest::Method::POST, &format!("/api/v1/rule-sets/{rs}/keyword-replies"),
        Some(json!({"match_kind": "regex", "pattern": "^(价格|多少钱)", "reply_text": "价格见群公告", "cooldown_secs": 60}))).await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    api(
        &app,
        &token,
        reqwest::Method::POST,
        &format!("/api/v1/rule-sets/{rs}/keyword-replies"),
        Some(json!({"match_kind": "contains", "pattern": "签到", "reply_text": "never"})),
    )
    .await;

    let (s, a) = onebot_post(&app, b, qq_message("700200", 1, 1, "价格多少")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["reply"], "价格见群公告");
    // The same delivery again: the same answer, nothing new.
    let (s, again) = onebot_post(&app, b, qq_message("700200", 1, 1, "价格多少")).await;
    assert_eq!((s, &again), (StatusCode::OK, &a));
    // Within the cooldown another member asks: no answer.
    let (s, _) = onebot_post(&app, b, qq_message("700200", 2, 2, "多少钱啊")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // A check-in is a check-in, not the "签到" keyword reply.
    let (s, c) = onebot_post(&app, b, qq_message("700200", 3, 3, "签到")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!c["reply"].as_str().unwrap().contains("never"), "{c}");
    assert_eq!(activity_kinds(&app, g).await, vec!["keyword_reply"]);
    // Once the cooldown is over, it answers again.
    sqlx::query("UPDATE keyword_cooldowns SET until = now() - interval '1 second'").execute(&app.db).await.unwrap();
    let (s, _) = onebot_post(&app, b, qq_message("700200", 2, 4, "多少钱啊")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(activity_kinds(&app, g).await.len(), 2);
}

#[tokio::test]
async fn actions_the_answer_cannot_carry_go_out_as_jobs_once() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", &fake).await;
    let g = linked(&app, b, "Pics", "-100600", &[]).await;
    let token = app.token("admin", true, &[]).await;
    let rs = rule_set(&app, &token, "Pictures", json!({"to": "group", "group_id": g})).await;
    api(&app, &token, reqwest::Method::POST, &format!("/api/v1/rule-sets/{rs}/keyword-replies"),
        Some(json!({"match_kind": "exact", "pattern": "menu", "image_url": "https://example.com/menu.png", "cooldown_secs": 0}))).await;
    let update = json!({"update_id": 77, "message": {"message_id": 9, "date": now(),
        "chat": {"id": -100600, "type": "supergroup"}, "from": {"id": 5, "is_bot": false, "first_name": "Mei"}, "text": "Menu"}});
    // A photo is not a webhook answer of Telegram's: it waits for the API.
    assert_eq!(telegram_post(&app, b, update.clone()).await.0, StatusCode::NO_CONTENT);
    assert_eq!(telegram_post(&app, b, update).await.0, StatusCode::NO_CONTENT);
    let photos = fake.wait_method("sendPhoto", 1).await;
    assert_eq!(photos[0].body["photo"], "https://example.com/menu.png");
    assert_eq!(photos[0].body["reply_parameters"]["message_id"], 9);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls_of("sendPhoto").len(), 1, "a retried delivery enqueues nothing new");
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'bot_action' AND dedupe_key LIKE 'delivery:%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(jobs, 1);
    // The log row carries the platform's answer once the job ran.
    let (s, log) = api(&app, &token, reqwest::Method::GET, &format!("/api/v1/groups/{g}/activity"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(log["items"][0]["kind"], "keyword_reply");
    for _ in 0..100 {
        let (_, log) = api(&app, &token, reqwest::Method::GET, &format!("/api/v1/groups/{g}/activity"), None).await;
        if log["items"][0]["answer"].as_str().is_some_and(|a| a.starts_with("ok")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the activity row never got the platform's answer");
}

#[tokio::test]
async fn a_pathological_regex_is_refused_at_save_by_the_api_and_the_page() {
    let app = TestApp::spawn_with(fast).await;
    let token = app.token("admin", true, &[]).await;
    let g = app.group("G").await;
    let rs = rule_set(&app, &token, "Regex", json!({"to": "group", "group_id": g})).await;
    let before = app.count("keyword_replies").await;
    let (s, p) = api(
        &app,
        &token,
        reqwest::Method::POST,
        &format!("/api/v1/rule-sets/{rs}/keyword-replies"),
        Some(json!({"match_kind": "regex", "pattern": "(a{1000}){1000}", "reply_text": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "pattern", "{p}");
    let admin = app.admin().await;
    let r = app
        .post_form(
            &admin,
            &format!("/rule-sets/{rs}"),
            &format!("/rule-sets/{rs}/keywords"),
            &[("match_kind", "regex"), ("pattern", "\\w{500}\\w{500}\\w{500}"), ("reply_text", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("err-pattern"), "the form shows the pattern's error");
    assert_eq!(app.count("keyword_replies").await, before, "nothing written");
}

fn qq_request(group: &str, user: i64, comment: &str, flag: &str) -> Value {
    json!({"time": now(), "self_id": 10001000, "post_type": "request", "request_type": "group", "sub_type": "add",
           "group_id": group.parse::<i64>().unwrap(), "user_id": user, "comment": comment, "flag": flag})
}

#[tokio::test]
async fn qq_join_requests_are_approved_or_declined_by_the_keyword_policy() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::GoCqhttp).await;
    let b = bridge(&app, "onebot11", &fake).await;
    let g = linked(&app, b, "Yoga", "700300", &[]).await;
    let token = app.token("admin", true, &[]).await;
    let rs = rule_set(&app, &token, "Entry", json!({"to": "group", "group_id": g})).await;
    let (s, body) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/rule-sets/{rs}/entry-policy"),
        Some(json!({"mode": "keyword", "keywords": ["瑜伽"], "otherwise": "decline", "decline_reason": "请回答问题"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        onebot_post(&app, b, qq_request("700300", 501, "想加入瑜伽群", "flag-ok")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(onebot_post(&app, b, qq_request("700300", 502, "随便看看", "flag-no")).await.0, StatusCode::NO_CONTENT);
    let calls = fake.wait_method("set_group_add_request", 2).await;
    let by_flag = |f: &str| calls.iter().find(|c| c.body["flag"] == f).unwrap().body.clone();
    assert_eq!(by_flag("flag-ok")["approve"], true);
    assert_eq!(by_flag("flag-no")["approve"], false);
    assert_eq!(by_flag("flag-no")["reason"], "请回答问题");
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, status FROM join_requests ORDER BY user_id").fetch_all(&app.db).await.unwrap();
    assert_eq!(statuses, vec![("501".into(), "approved".into()), ("502".into(), "declined".into())]);
    assert_eq!(activity_kinds(&app, g).await, vec!["join_approved", "join_declined"]);
}

#[tokio::test]
async fn held_telegram_requests_wait_in_the_queue_and_are_answered_in_bulk() {
    let app = TestApp::spawn_with(fast).await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let b = bridge(&app, "telegram", &fake).await;
    let g = linked(&app, b, "Club", "-100700", &[]).await;
    let token = app.token("admin", true, &[]).await;
    let rs = rule_set(&app, &token, "Manual", json!({"to": "group", "group_id": g})).await;
    api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/rule-sets/{rs}/entry-policy"),
        Some(json!({"mode": "manual"})),
    )
    .await;
    for (i, user) in [31, 32, 33].iter().enumerate() {
        let update = json!({"update_id": 500 + i, "chat_join_request": {"chat": {"id": -100700, "type": "supergroup"},
            "from": {"id": user, "is_bot": false, "first_name": format!("U{user}")}, "user_chat_id": user, "date": now(), "bio": "hi"}});
        assert_eq!(telegram_post(&app, b, update).await.0, StatusCode::NO_CONTENT);
    }
    let (s, q) = api(&app, &token, reqwest::Method::GET, "/api/v1/join-requests?status=pending", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<i64> = q["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    // The page shows the same queue.
    let admin = app.admin().await;
    let html = admin.get(app.url("/join-requests")).send().await.unwrap().text().await.unwrap();
    for id in &ids {
        assert!(html.contains(&format!("id=\"request-{id}\"")), "{html}");
    }
    // Approve two through the API, decline one through the page.
    let (s, done) = api(
        &app,
        &token,
        reqwest::Method::POST,
        "/api/v1/join-requests/approve",
        Some(json!({"ids": [ids[0], ids[1]]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert_eq!(done.as_array().unwrap().len(), 2);
    let id = ids[2].to_string();
    let r = app
        .post_form(
            &admin,
            "/join-requests",
            "/join-requests/decide",
            &[("ids", id.as_str()), ("decision", "decline"), ("reason", "满员")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let approved = fake.wait_method("approveChatJoinRequest", 2).await;
    let declined = fake.wait_method("declineChatJoinRequest", 1).await;
    let mut users: Vec<i64> = approved.iter().map(|c| c.body["user_id"].as_i64().unwrap()).collect();
    users.sort();
    assert_eq!(users, vec![32, 33]);
    assert_eq!(declined[0].body["user_id"], 31);
    let kinds = activity_kinds(&app, g).await;
    assert_eq!(kinds.iter().filter(|k| *k == "join_held").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "join_approved").count(), 2);
    assert_eq!(kinds.iter().filter(|k| *k == "join_declined").count(), 1);
    // Answered already: approving again changes nothing.
    let (_, again) =
        api(&app, &token, reqwest::Method::POST, "/api/v1/join-requests/approve", Some(json!({"ids": ids}))).await;
    assert_eq!(again.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_page_shows_what_the_api_holds_for_a_rule_set() {
    let app = TestApp::spawn_with(fast).await;
    let token = app.token("admin", true, &[]).await;
    let g = app.group("Parity group").await;
    let rs = rule_set(&app, &token, "Parity", json!({"to": "group", "group_id": g})).await;
    api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/rule-sets/{rs}/welcome"),
        Some(json!({"template": "Welcome {name} <b>", "window_secs": 30, "delete_previous": true})),
    )
    .await;
    api(
        &app,
        &token,
        reqwest::Method::POST,
        &format!("/api/v1/rule-sets/{rs}/keyword-replies"),
        Some(json!({"pattern": "价格", "reply_text": "见公告", "hours_from": 9, "hours_to": 22})),
    )
    .await;
    api(
        &app,
        &token,
        reqwest::Method::POST,
        &format!("/api/v1/rule-sets/{rs}/attachments"),
        Some(json!({"to": "tag", "tag": "vip", "priority": 3})),
    )
    .await;
    let (s, d) = api(&app, &token, reqwest::Method::GET, &format!("/api/v1/rule-sets/{rs}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["welcome"]["window_secs"], 30);
    assert_eq!(d["keyword_replies"][0]["hours_from"], 9);
    assert_eq!(d["groups"][0]["group_id"], g);
    assert_eq!(d["tags"][0]["tag"], "vip");
    let admin = app.admin().await;
    let html = admin.get(app.url(&format!("/rule-sets/{rs}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Welcome {name} &") && !html.contains("{name} <b>"), "the template, escaped");
    assert!(html.contains("value=\"30\""));
    assert!(html.contains("<code>价格</code>") && html.contains("9:00–22:00"));
    assert!(html.contains("Parity group") && html.contains(">vip<"));
    // A change through the page is what the API reads next.
    let r = app
        .post_form(
            &admin,
            &format!("/rule-sets/{rs}"),
            &format!("/rule-sets/{rs}/entry"),
            &[
                ("mode", "keyword"),
                ("keywords", "朋友\n小红书"),
                ("otherwise", "hold"),
                ("expire_hours", "24"),
                ("on_expiry", "decline"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, d) = api(&app, &token, reqwest::Method::GET, &format!("/api/v1/rule-sets/{rs}"), None).await;
    assert_eq!(d["entry_policy"]["keywords"], json!(["朋友", "小红书"]));
    assert_eq!(d["entry_policy"]["otherwise"], "hold");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'rule_set.%'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(audit >= 5, "every change is audited ({audit})");
}
