//! Per-member platform invite links and join-request attribution, against the fake bots: a
//! member's Telegram link is made once (`createChatInviteLink` named with their code), through
//! a job, and used from then on — the live-code link until then; concurrent asks make one link;
//! public groups get links that ask to join, and the join request's link credits the member when
//! the join follows without a link; go-cqhttp's `invitor_id` on `request/group/add` credits the
//! inviter of the later `group_increase` within the window.

use std::time::Duration;

use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakebots::{FakeBot, Flavor, Inject, TELEGRAM_TOKEN};
use crate::harness::{post_hook, TestApp};

const SECRET: &str = "invlinks-secret_1";
const CHAT: &str = "-100500";

fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 2000;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Telegram bridge whose bot is the fake (no rate limits), a group linked to `CHAT`, and a
/// campaign over it whose live code is `spring`: (bridge, group).
async fn telegram_setup(app: &TestApp, fake: &FakeBot) -> (i64, i64) {
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
         VALUES ('telegram', 'telegram', 'bot', $1, $2, $3, 0, 0) RETURNING id",
    )
    .bind(SECRET)
    .bind(fake.base())
    .bind(TELEGRAM_TOKEN)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group = group(app, bridge, "TG", CHAT).await;
    campaign(app, group).await;
    (bridge, group)
}

async fn group(app: &TestApp, bridge: i64, name: &str, chat: &str) -> i64 {
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

async fn campaign(app: &TestApp, group: i64) {
    sqlx::query("INSERT INTO live_codes (slug, name) VALUES ('spring', 'Spring') ON CONFLICT DO NOTHING")
        .execute(&app.db)
        .await
        .unwrap();
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(&token)
        .json(&json!({"name": "Spring", "group_ids": [group], "live_code_slug": "spring", "hold_days": 3,
            "stages": [{"invites": 1, "points": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
}

async fn telegram_post(app: &TestApp, bridge: i64, body: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    post_hook(app, &format!("/hooks/telegram/{bridge}"), &body, &[("x-telegram-bot-api-secret-token", SECRET.into())])
        .await
}

fn user(id: i64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name})
}

/// `text` from Telegram user `id` in `CHAT`; the webhook's answer (a `sendMessage`).
async fn say(app: &TestApp, bridge: i64, update: i64, id: i64, text: &str) -> Value {
    let u = json!({"update_id": update, "message": {"message_id": update, "from": user(id, "Tom"),
        "chat": {"id": CHAT.parse::<i64>().unwrap(), "type": "supergroup", "title": "TG"}, "date": now(), "text": text}});
    let (s, answer) = telegram_post(app, bridge, u).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    answer
}

/// A `chat_member` join of `id` into `CHAT`, with the invite link named `link_name` if any.
fn tg_join(update: i64, id: i64, name: &str, link_name: Option<&str>) -> Value {
    let mut cm = json!({"chat": {"id": CHAT.parse::<i64>().unwrap(), "type": "supergroup", "title": "TG"},
        "from": user(id, name), "date": now(),
        "old_chat_member": {"status": "left", "user": user(id, name)},
        "new_chat_member": {"status": "member", "user": user(id, name)}});
    if let Some(n) = link_name {
        cm["invite_link"] = json!({"invite_link": "https://t.me/+x", "creator": {"id": 1, "is_bot": true, "first_name": "Bot"},
            "creates_join_request": true, "is_primary": false, "is_revoked": false, "name": n});
    }
    json!({"update_id": update, "chat_member": cm})
}

async fn member(app: &TestApp, ext: &str) -> i64 {
    // A member first seen in plain chat is written behind the answer.
    app.chatter_written().await;
    sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = $1").bind(ext).fetch_one(&app.db).await.unwrap()
}

async fn code(app: &TestApp, ext: &str) -> String {
    sqlx::query_scalar("SELECT invite_code FROM members WHERE external_user_id = $1")
        .bind(ext)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Waits until the member's link row for the group leaves `pending`: (status, link, error).
async fn settled_link(app: &TestApp, member: i64, group: i64) -> (String, Option<String>, String) {
    for _ in 0..400 {
        let row: Option<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT status, invite_link, error FROM member_invite_links WHERE member_id = $1 AND group_id = $2",
        )
        .bind(member)
        .bind(group)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if let Some(r) = row.filter(|r| r.0 != "pending") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the link was not made");
}

/// (inviter's platform id, source, invite_link_name, state) of every record of the invitee.
async fn records_of(app: &TestApp, invitee: &str) -> Vec<(String, String, Option<String>, String)> {
    sqlx::query_as(
        "SELECT a.external_user_id, r.source, r.invite_link_name, r.state FROM invite_records r
         JOIN members b ON b.id = r.invitee_member_id JOIN members a ON a.id = r.inviter_member_id
         WHERE b.external_user_id = $1 ORDER BY r.id",
    )
    .bind(invitee)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_invite_command_gives_the_live_code_link_until_the_members_own_link_is_made_then_that_one() {
    let fake = FakeBot::start(Flavor::Telegram).await;
    let app = TestApp::spawn_with(fast).await;
    let (bridge, group) = telegram_setup(&app, &fake).await;

    let first = say(&app, bridge, 1, 70, "/invite").await;
    let tom = member(&app, "70").await;
    let code = code(&app, "70").await;
    let text = first["text"].as_str().unwrap();
    assert!(text.contains(&format!("/l/spring?r={code}")), "the live-code link while none is made: {text}");

    let (status, link, _) = settled_link(&app, tom, group).await;
    assert_eq!(status, "created");
    let link = link.unwrap();
    let calls = fake.calls_of("createChatInviteLink");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["name"], json!(code), "the link is named with the member's code");
    assert_eq!(calls[0].body["chat_id"], json!(-100500));
    assert_eq!(calls[0].body["creates_join_request"], json!(false));
    assert!(calls[0].body.get("member_limit").is_none());

    // From now on the reply carries the member's own link, and no second link is made.
    let second = say(&app, bridge, 2, 70, "/invite").await;
    assert!(second["text"].as_str().unwrap().contains(&link), "{second}");
    let third = say(&app, bridge, 3, 70, "邀请").await;
    assert!(third["text"].as_str().unwrap().contains(&link), "{third}");
    // The member's page shows it too.
    let me = say(&app, bridge, 4, 70, "/me").await;
    let text = me["text"].as_str().unwrap();
    let path = &text[text.find("/m/").unwrap()..];
    let path = path.split_whitespace().next().unwrap();
    let page = reqwest::get(app.url(path)).await.unwrap().text().await.unwrap();
    assert!(page.contains(&link), "the page shows the member's own link: {page}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.calls_of("createChatInviteLink").len(), 1, "reused, never made twice");
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'invite_link'").fetch_one(&app.db).await.unwrap();
    assert_eq!(jobs, 1);

    // A join through the link credits Tom.
    let (s, _) = telegram_post(&app, bridge, tg_join(10, 80, "Ann", Some(&code))).await;
    assert!(s.is_success());
    assert_eq!(records_of(&app, "80").await, vec![("70".into(), "platform_link".into(), Some(code), "pending".into())]);
}

#[tokio::test]
async fn concurrent_asks_make_one_link() {
    let fake = FakeBot::start(Flavor::Telegram).await;
    fake.inject("createChatInviteLink", Inject::Stall(Duration::from_millis(300)));
    let app = TestApp::spawn_with(fast).await;
    let (bridge, group) = telegram_setup(&app, &fake).await;
    // Tom exists and is in the group (his first message).
    let hello = json!({"update_id": 1, "message": {"message_id": 1, "from": user(70, "Tom"),
        "chat": {"id": -100500, "type": "supergroup", "title": "TG"}, "date": now(), "text": "hello"}});
    assert!(telegram_post(&app, bridge, hello).await.0.is_success());
    let tom = member(&app, "70").await;
    let url = app.url(&format!("/hooks/telegram/{bridge}"));
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let url = url.clone();
        let u = json!({"update_id": 100 + i, "message": {"message_id": 100 + i, "from": user(70, "Tom"),
            "chat": {"id": -100500, "type": "supergroup", "title": "TG"}, "date": now(), "text": "/invite"}});
        asks.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("x-telegram-bot-api-secret-token", SECRET)
                .json(&u)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = asks.join_all().await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let (status, link, _) = settled_link(&app, tom, group).await;
    assert_eq!((status.as_str(), link.is_some()), ("created", true));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.calls_of("createChatInviteLink").len(), 1, "one call for sixteen asks");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM member_invite_links").fetch_one(&app.db).await.unwrap();
    let jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'invite_link'").fetch_one(&app.db).await.unwrap();
    assert_eq!((rows, jobs), (1, 1));
}

#[tokio::test]
async fn a_public_groups_links_ask_to_join_and_the_requests_link_credits_the_join_that_follows() {
    let fake = FakeBot::start(Flavor::Telegram).await;
    let app = TestApp::spawn_with(fast).await;
    let (bridge, group) = telegram_setup(&app, &fake).await;
    let token = app.token("admin", true, &[]).await;
    let api = reqwest::Client::new();
    let r = api
        .put(app.url(&format!("/api/v1/groups/{group}/invite-links")))
        .bearer_auth(&token)
        .json(&json!({"join_request": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["join_request"], json!(true));
    let r = api
        .put(app.url(&format!("/api/v1/groups/{group}/invite-links")))
        .bearer_auth(&token)
        .json(&json!({"join_request": "yes"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "a bad body changes nothing");
    // An operator scoped to other groups neither reads nor changes it.
    let other = sqlx::query_scalar::<_, i64>(
        "INSERT INTO groups (name, platform, capacity) VALUES ('Other', 'telegram', 500) RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let scoped = app.token("operator", false, &[other]).await;
    let path = format!("/api/v1/groups/{group}/invite-links");
    let r = api.get(app.url(&path)).bearer_auth(&scoped).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = api.put(app.url(&path)).bearer_auth(&scoped).json(&json!({"join_request": false})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = api.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["join_request"], json!(true), "unchanged");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'group.invite_links'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audit, 1);

    say(&app, bridge, 1, 70, "/invite").await;
    let tom = member(&app, "70").await;
    let code = code(&app, "70").await;
    let (status, _, _) = settled_link(&app, tom, group).await;
    assert_eq!(status, "created");
    let call = &fake.calls_of("createChatInviteLink")[0];
    assert_eq!(call.body["creates_join_request"], json!(true));
    assert!(call.body.get("member_limit").is_none(), "Telegram refuses a limit with a join request");

    // Ann asks to join through Tom's link (no entry policy: nobody in Shoal answers it), an
    // admin approves her in Telegram, and her join arrives without the link.
    let request = json!({"update_id": 20, "chat_join_request": {
        "chat": {"id": -100500, "type": "supergroup", "title": "TG"}, "from": user(80, "Ann"), "user_chat_id": 80,
        "date": now(), "bio": "", "invite_link": {"invite_link": "https://t.me/+fAkE", "creator": {"id": 1, "is_bot": true, "first_name": "Bot"},
            "creates_join_request": true, "is_primary": false, "is_revoked": false, "name": code}}});
    let (s, _) = telegram_post(&app, bridge, request).await;
    assert!(s.is_success());
    assert!(records_of(&app, "80").await.is_empty(), "a request is no join yet");
    let (s, _) = telegram_post(&app, bridge, tg_join(21, 80, "Ann", None)).await;
    assert!(s.is_success());
    assert_eq!(
        records_of(&app, "80").await,
        vec![("70".into(), "platform_link".into(), Some(code.clone()), "pending".into())]
    );
    // The hint is used once: Ann leaving and coming back is no second credit from it.
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT used_at FROM invite_hints").fetch_one(&app.db).await.unwrap();
    assert!(used.is_some());

    // The admin page shows the setting and turns it off.
    let admin = app.admin().await;
    let page = admin.get(app.url(&format!("/groups/{group}/invite-links"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("checked"), "{page}");
    let r = app
        .post_form(&admin, &format!("/groups/{group}/invite-links"), &format!("/groups/{group}/invite-links"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let on: bool = sqlx::query_scalar("SELECT invite_links_join_request FROM groups WHERE id = $1")
        .bind(group)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!on);
    let detail = admin.get(app.url(&format!("/groups/{group}"))).send().await.unwrap().text().await.unwrap();
    assert!(detail.contains(&format!("/groups/{group}/invite-links")), "linked from the group's page");
}

#[tokio::test]
async fn a_rate_limited_call_is_tried_again_and_a_refusal_keeps_the_live_code_link() {
    let fake = FakeBot::start(Flavor::Telegram).await;
    let app = TestApp::spawn_with(fast).await;
    let (bridge, group) = telegram_setup(&app, &fake).await;
    fake.inject(
        "createChatInviteLink",
        Inject::Answer(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1}}),
        ),
    );
    say(&app, bridge, 1, 70, "/invite").await;
    let tom = member(&app, "70").await;
    let (status, link, _) = settled_link(&app, tom, group).await;
    assert_eq!((status.as_str(), link.is_some()), ("created", true));
    assert_eq!(fake.calls_of("createChatInviteLink").len(), 2, "the 429 and the call after it");

    fake.inject(
        "createChatInviteLink",
        Inject::Answer(
            400,
            json!({"ok": false, "error_code": 400, "description": "Bad Request: not enough rights to manage chat invite links"}),
        ),
    );
    say(&app, bridge, 2, 71, "/invite").await;
    let ann = member(&app, "71").await;
    let (status, link, error) = settled_link(&app, ann, group).await;
    assert_eq!((status.as_str(), link), ("failed", None));
    assert!(error.contains("not enough rights"), "{error}");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'invite_link' AND state = 'dead'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(dead, 1, "a refusal is not tried again by itself");
    let code = code(&app, "71").await;
    let again = say(&app, bridge, 3, 71, "/invite").await;
    assert!(again["text"].as_str().unwrap().contains(&format!("/l/spring?r={code}")), "{again}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.calls_of("createChatInviteLink").len(), 3);
}

// ---------------------------------------------------------------- go-cqhttp invitor_id

async fn onebot_post(app: &TestApp, bridge: i64, body: Value) -> StatusCode {
    let body = serde_json::to_vec(&body).unwrap();
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    let (s, _) = post_hook(
        app,
        &format!("/hooks/onebot11/{bridge}"),
        &body,
        &[("x-signature", sig), ("x-self-id", "10001000".into())],
    )
    .await;
    s
}

fn request_add(user: i64, invitor: Option<i64>, flag: &str) -> Value {
    let mut v = json!({"time": now(), "self_id": 10001000, "post_type": "request", "request_type": "group",
        "sub_type": "add", "group_id": 123456789, "user_id": user, "comment": "想加入", "flag": flag});
    if let Some(i) = invitor {
        v["invitor_id"] = json!(i);
    }
    v
}

fn increase(user: i64) -> Value {
    json!({"time": now(), "self_id": 10001000, "post_type": "notice", "notice_type": "group_increase",
        "sub_type": "approve", "group_id": 123456789, "operator_id": 0, "user_id": user})
}

#[tokio::test]
async fn go_cqhttp_invitor_id_credits_the_inviter_of_the_join_that_follows_within_a_day() {
    let app = TestApp::spawn_with(fast).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'qq', $1) RETURNING id",
    )
    .bind(SECRET)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let g = group(&app, bridge, "QQ", "123456789").await;
    campaign(&app, g).await;

    // 111 invited 222: the request names him, the join (go-cqhttp: approve, operator 0) does not.
    assert_eq!(onebot_post(&app, bridge, request_add(222, Some(111), "f-1")).await, StatusCode::NO_CONTENT);
    assert!(records_of(&app, "222").await.is_empty());
    assert!(onebot_post(&app, bridge, increase(222)).await.is_success());
    assert_eq!(records_of(&app, "222").await, vec![("111".into(), "platform_inviter".into(), None, "pending".into())]);

    // A request without invitor_id (the fixture's shape) names nobody.
    assert_eq!(onebot_post(&app, bridge, request_add(333, None, "f-2")).await, StatusCode::NO_CONTENT);
    assert!(onebot_post(&app, bridge, increase(333)).await.is_success());
    assert!(records_of(&app, "333").await.is_empty());

    // A request more than a day before the join is not matched to it.
    assert_eq!(onebot_post(&app, bridge, request_add(444, Some(111), "f-3")).await, StatusCode::NO_CONTENT);
    sqlx::query("UPDATE invite_hints SET seen_at = seen_at - interval '25 hours'").execute(&app.db).await.unwrap();
    assert!(onebot_post(&app, bridge, increase(444)).await.is_success());
    assert!(records_of(&app, "444").await.is_empty());
    let hints: i64 = sqlx::query_scalar("SELECT count(*) FROM invite_hints").fetch_one(&app.db).await.unwrap();
    assert_eq!(hints, 2, "only requests that name an inviter are kept");
}
