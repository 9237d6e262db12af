//! What bridges must get right, found by trying real deliveries (issue 11 §4): a check-in
//! keyword followed by a note, a keyword inside a sentence, anonymous QQ messages, Telegram
//! forum topics, edits, channel posts and linked-channel forwards, and late joins and leaves.
//! The bodies are the shared fixtures where they have the case, else `tests/fixtures/bridge_cases/`.

use std::path::PathBuf;

use hmac::Mac;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{bridge_fixture, post_hook, TestApp};

/// The fixtures carry 2025 times: replayed with no event-time tolerance.
fn replay(c: &mut shoal::Config) {
    c.bridges.event_time_tolerance_secs = 0;
}

fn case(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bridge_cases").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// The body with its OneBot `time` moved to now, so that the check-in is today's.
fn sent_now(body: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    v["time"] = chrono::Utc::now().timestamp().into();
    serde_json::to_vec(&v).unwrap()
}

async fn bridge(app: &TestApp, kind: &str, platform: &str, secret: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO bridges (kind, platform, name, secret) VALUES ($1, $2, 'bot', $3) RETURNING id")
        .bind(kind)
        .bind(platform)
        .bind(secret)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn linked_group(app: &TestApp, platform: &str, chat: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, member_count, external_chat_id) VALUES ('Yoga', $1, 500, 10, $2) RETURNING id",
    )
    .bind(platform)
    .bind(chat)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Posts a OneBot body signed with `some-secret`, as a bridge does.
async fn onebot(app: &TestApp, id: i64, body: &[u8]) -> (StatusCode, Value) {
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(b"some-secret").unwrap();
    mac.update(body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    post_hook(app, &format!("/hooks/onebot11/{id}"), body, &[("x-signature", sig), ("x-self-id", "10001000".into())])
        .await
}

async fn telegram(app: &TestApp, id: i64, body: &[u8]) -> (StatusCode, Value) {
    post_hook(
        app,
        &format!("/hooks/telegram/{id}"),
        body,
        &[("x-telegram-bot-api-secret-token", "some-secret-token_1".into())],
    )
    .await
}

/// (member's platform id, note, quantity, unit) of every check-in, by member.
async fn notes(app: &TestApp) -> Vec<(String, Option<String>, Option<f64>, Option<String>)> {
    sqlx::query_as(
        "SELECT m.external_user_id, c.note, c.quantity::float8, c.unit FROM checkins c JOIN members m ON m.id = c.member_id
         ORDER BY m.external_user_id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_keyword_then_a_space_or_punctuation_then_text_is_a_checkin_that_keeps_its_note() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    let g = linked_group(&app, "qq", "123456789").await;
    for file in [
        "onebot11/group_message_string_checkin_with_note.json",
        "onebot11/group_message_array_checkin_with_note.json",
        "onebot11/group_message_string_checkin_escaped_note.json",
    ] {
        let (s, r) = onebot(&app, id, &sent_now(&case(file))).await;
        assert_eq!(s, StatusCode::OK, "{file}: {r}");
        assert!(r["reply"].as_str().unwrap().contains("签到成功"), "{file}: {r}");
    }
    assert_eq!(
        notes(&app).await,
        vec![
            ("12345678".into(), Some("第3天".into()), None, None),
            ("23456789".into(), Some("今天跑了5公里 加油".into()), Some(5.0), Some("km".into())),
            // CQ-escaped brackets are read as brackets; the ordinal 第3 is no amount, 20页 is.
            ("34567890".into(), Some("[第3天] 读了20页".into()), Some(20.0), Some("page".into())),
        ]
    );
    // A note counts like any check-in: one point each.
    assert_eq!(app.count("points_ledger").await, 3);
    // The group's check-ins page (today's list), the member page and the API show the note.
    let admin = app.admin().await;
    let page = admin.get(app.url(&format!("/groups/{g}/checkins"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("今天跑了5公里 加油") && page.contains("[第3天] 读了20页"), "{page}");
    assert!(page.contains("5 公里") || page.contains("5 km"), "the amount in words");
    let member: i64 = sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = '12345678'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let page = admin.get(app.url(&format!("/members/{member}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("第3天"), "{page}");
    let token = app.token("admin", true, &[]).await;
    let list: Value = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/checkins?group_id={g}&limit=2")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let with_amount = items.iter().find(|c| c["unit"] == "km").unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        (with_amount["note"].as_str(), with_amount["quantity"].as_f64()),
        (Some("今天跑了5公里 加油"), Some(5.0))
    );
    // The next page continues after the last id.
    let cursor = list["next_cursor"].as_str().unwrap();
    let rest: Value = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/checkins?group_id={g}&cursor={cursor}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null());
    // A scoped token sees no check-ins of groups outside its scope.
    let other = app.group("Other").await;
    let scoped = app.token("operator", false, &[other]).await;
    let none: Value = reqwest::Client::new()
        .get(app.url("/api/v1/checkins"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], serde_json::json!([]));
}

#[tokio::test]
async fn a_keyword_inside_or_glued_to_a_sentence_is_not_a_checkin() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let (s, _) = {
        let qq = bridge(&app, "onebot11", "qq", "some-secret").await;
        linked_group(&app, "qq", "123456789").await;
        onebot(&app, qq, &case("onebot11/group_message_keyword_inside_sentence.json")).await
    };
    assert_eq!(s, StatusCode::NO_CONTENT);
    for (n, text) in ["签到了吗", "签到了", "打卡第3天", "今天签到"].iter().enumerate() {
        let ev = serde_json::json!({"event_id": format!("s{n}"), "kind": "message", "group_id": "room", "member_id": "ann", "text": text});
        let (s, r) = crate::harness::post_generic(&app, id, "g", ev).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{text}: {r}");
    }
    assert_eq!(app.count("checkins").await, 0);
    assert_eq!(app.count("points_ledger").await, 0);
    // They are still messages: counted as activity (written behind the answers).
    app.chatter_written().await;
    let messages: i64 = sqlx::query_scalar("SELECT COALESCE(sum(messages), 0)::bigint FROM member_daily_activity")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(messages, 5);
}

#[tokio::test]
async fn an_anonymous_qq_message_credits_nobody_and_gets_no_answer() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    linked_group(&app, "qq", "123456789").await;
    let (s, r) = onebot(&app, id, &case("onebot11/group_message_anonymous_checkin.json")).await;
    assert_eq!((s, r), (StatusCode::NO_CONTENT, Value::Null));
    for table in ["members", "memberships", "checkins", "points_ledger", "member_daily_activity"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
    let placeholder: i64 = sqlx::query_scalar("SELECT count(*) FROM members WHERE external_user_id = '80000000'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(placeholder, 0);
    // The same group's ordinary check-in still counts.
    let (s, _) = onebot(&app, id, &bridge_fixture("onebot11/group_message_array_checkin.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.count("checkins").await, 1);
}

#[tokio::test]
async fn a_telegram_checkin_in_a_forum_topic_is_answered_in_that_topic() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "telegram", "telegram", "some-secret-token_1").await;
    linked_group(&app, "telegram", "-1001293750001").await;
    let (s, r) = telegram(&app, id, &case("telegram/message_topic_checkin.json")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["method"], "sendMessage");
    assert_eq!(r["chat_id"], -1001293750001i64);
    assert_eq!(r["message_thread_id"], 134500, "{r}");
    assert_eq!(r["reply_parameters"]["message_id"], 134560);
    assert!(r["text"].as_str().unwrap().starts_with("Mei Lin 签到成功"), "{r}");
    assert_eq!(notes(&app).await, vec![("5964230001".into(), Some("3.5 km".into()), Some(3.5), Some("km".into()))]);
    // A retry gets the same answer, still in the topic.
    assert_eq!(telegram(&app, id, &case("telegram/message_topic_checkin.json")).await, (s, r));
    // Outside a topic there is no thread.
    let (_, plain) = telegram(&app, id, &bridge_fixture("telegram/message_command_checkin.json")).await;
    assert!(plain.get("message_thread_id").is_none(), "{plain}");
}

#[tokio::test]
async fn telegram_edits_channel_posts_and_linked_channel_forwards_are_never_checkins_or_members() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "telegram", "telegram", "some-secret-token_1").await;
    linked_group(&app, "telegram", "-1001293750001").await;
    linked_group(&app, "telegram", "-1001293759999").await;
    for file in [
        "telegram/edited_message_checkin.json",
        "telegram/channel_post_checkin.json",
        "telegram/edited_channel_post_checkin.json",
        "telegram/message_automatic_forward.json",
        "telegram/message_automatic_forward_without_sender_chat.json",
    ] {
        let (s, r) = telegram(&app, id, &case(file)).await;
        assert_eq!((s, &r), (StatusCode::NO_CONTENT, &Value::Null), "{file}");
    }
    for table in ["members", "memberships", "checkins", "points_ledger", "bridge_events", "unlinked_chats"] {
        assert_eq!(app.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn a_late_join_or_leave_is_recorded_at_its_arrival_but_a_late_message_counts_for_nothing() {
    // The default tolerance (10 minutes): the fixtures' 2025 times are long past.
    let app = TestApp::spawn().await;
    let qq = bridge(&app, "onebot11", "qq", "some-secret").await;
    let g = linked_group(&app, "qq", "123456789").await;
    let before = chrono::Utc::now();
    let (s, _) = onebot(&app, qq, &bridge_fixture("onebot11/notice_group_increase_invite.json")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let joined: (chrono::DateTime<chrono::Utc>, Option<String>) = sqlx::query_as(
        "SELECT s.joined_at, i.external_user_id FROM memberships s JOIN members m ON m.id = s.member_id
         LEFT JOIN members i ON i.id = s.inviter_member_id WHERE m.external_user_id = '34567890'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(joined.0 >= before - chrono::Duration::seconds(1), "joined at its arrival, not in 2025: {}", joined.0);
    assert_eq!(joined.1.as_deref(), Some("12345678"), "with its inviter");
    let (s, _) = onebot(&app, qq, &bridge_fixture("onebot11/notice_group_decrease_leave.json")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let left: (Option<chrono::DateTime<chrono::Utc>>, Option<String>) = sqlx::query_as(
        "SELECT s.left_at, s.left_reason FROM memberships s JOIN members m ON m.id = s.member_id WHERE m.external_user_id = '34567890'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(left.0.is_some_and(|t| t >= joined.0), "{left:?}");
    assert_eq!(left.1.as_deref(), Some("leave"));
    let count: Option<i32> =
        sqlx::query_scalar("SELECT member_count FROM groups WHERE id = $1").bind(g).fetch_one(&app.db).await.unwrap();
    assert_eq!(count, Some(10), "one join, one leave");
    // A Telegram join through a named link, late too.
    let tg = bridge(&app, "telegram", "telegram", "some-secret-token_1").await;
    linked_group(&app, "telegram", "-1001293750001").await;
    let (s, _) = telegram(&app, tg, &bridge_fixture("telegram/chat_member_join_via_named_link.json")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let link: Option<String> = sqlx::query_scalar(
        "SELECT s.invite_link_name FROM memberships s JOIN members m ON m.id = s.member_id WHERE m.external_user_id = '7012340002'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(link.as_deref(), Some("ref_M7K2Q9"));
    // A late check-in is recorded as seen and counts for nothing.
    let (s, r) = onebot(&app, qq, &bridge_fixture("onebot11/group_message_array_checkin.json")).await;
    assert_eq!((s, r), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(app.count("checkins").await, 0);
    assert_eq!(app.count("member_daily_activity").await, 0);
    assert_eq!(app.count("bridge_events").await, 4, "every delivery logged once");
}
