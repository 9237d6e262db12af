//! Bridges: real fixtures with their real signatures, tampering, retries, check-ins over days
//! with a make-up, and the points ledger staying equal to the balance.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{bridge_fixture, bridge_fixtures, post_generic, post_hook, TestApp};

/// The fixtures were recorded in 2025 and the day-by-day tests send their own past times: they
/// are replayed with no event-time tolerance (`api_hardening` tests the default).
fn replay(c: &mut shoal::Config) {
    c.bridges.event_time_tolerance_secs = 0;
}

fn onebot_signature(file: &str) -> String {
    let tsv = std::fs::read_to_string(bridge_fixtures().join("onebot11/SIGNATURES.tsv")).unwrap();
    tsv.lines()
        .find_map(|l| l.strip_prefix(&format!("{file}\t")))
        .unwrap_or_else(|| panic!("no signature for {file}"))
        .to_string()
}

async fn bridge(app: &TestApp, kind: &str, platform: &str, secret: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ($1, $2, 'test bridge', $3) RETURNING id",
    )
    .bind(kind)
    .bind(platform)
    .bind(secret)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn linked_group(app: &TestApp, platform: &str, chat: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO groups (name, platform, capacity, member_count, external_chat_id) VALUES ('Yoga', $1, 500, 10, $2) RETURNING id")
        .bind(platform)
        .bind(chat)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn onebot(app: &TestApp, id: i64, file: &str) -> (StatusCode, Value) {
    let body = bridge_fixture(&format!("onebot11/{file}"));
    post_hook(
        app,
        &format!("/hooks/onebot11/{id}"),
        &body,
        &[("x-signature", onebot_signature(file)), ("x-self-id", "10001000".into())],
    )
    .await
}

/// Counts of every table a delivery may write to.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "bridge_events",
        "members",
        "memberships",
        "checkins",
        "points_ledger",
        "member_daily_activity",
        "unlinked_chats",
    ] {
        v.push(app.count(t).await);
    }
    v
}

async fn assert_ledger_consistent(app: &TestApp) {
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM members m
         WHERE COALESCE((SELECT balance FROM points_accounts a WHERE a.member_id = m.id), 0)
            <> COALESCE((SELECT sum(delta) FROM points_ledger l WHERE l.member_id = m.id), 0)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(bad, 0, "balance == sum(ledger) for every member");
}

#[tokio::test]
async fn every_onebot_fixture_gets_the_right_answer_with_its_real_signature() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    let g = linked_group(&app, "qq", "123456789").await;
    let expect = [
        ("group_message_array_checkin.json", StatusCode::OK),
        ("group_message_string_at_checkin.json", StatusCode::OK),
        ("group_message_plain_chat.json", StatusCode::NO_CONTENT),
        ("message_sent_by_bot.json", StatusCode::NO_CONTENT),
        ("meta_heartbeat.json", StatusCode::NO_CONTENT),
        ("request_group_add.json", StatusCode::NO_CONTENT),
        ("notice_group_increase_invite.json", StatusCode::NO_CONTENT),
        ("notice_group_increase_approve_no_operator.json", StatusCode::NO_CONTENT),
        ("notice_group_decrease_leave.json", StatusCode::NO_CONTENT),
        ("notice_group_decrease_kick.json", StatusCode::NO_CONTENT),
    ];
    let mut replies = Vec::new();
    for (file, status) in expect {
        let (s, body) = onebot(&app, id, file).await;
        assert_eq!(s, status, "{file}: {body}");
        if s == StatusCode::OK {
            assert_eq!(body["at_sender"], false, "{file}: the reply names the member; no @ as well");
            replies.push(body["reply"].as_str().unwrap().to_string());
        }
    }
    assert!(replies[0].contains("小不点") && replies[0].contains("签到成功"), "{}", replies[0]);
    assert!(replies[1].contains("瑜伽-阿强"), "the group card is the display name: {}", replies[1]);
    let checkins: i64 = sqlx::query_scalar("SELECT count(*) FROM checkins WHERE group_id = $1")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(checkins, 2);
    // The invite names its inviter; the approval without operator names none.
    let invited: Option<String> = sqlx::query_scalar(
        "SELECT i.external_user_id FROM memberships s JOIN members m ON m.id = s.member_id LEFT JOIN members i ON i.id = s.inviter_member_id
         WHERE m.external_user_id = '34567890'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(invited.as_deref(), Some("12345678"));
    let kicked: (Option<String>, bool) = sqlx::query_as(
        "SELECT s.left_reason, s.left_at IS NOT NULL FROM memberships s JOIN members m ON m.id = s.member_id WHERE m.external_user_id = '45678901' ORDER BY s.id DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(kicked, (Some("kick".into()), true));
    let count: Option<i32> =
        sqlx::query_scalar("SELECT member_count FROM groups WHERE id = $1").bind(g).fetch_one(&app.db).await.unwrap();
    assert_eq!(count, Some(10 + 2 - 2), "two joins, two leaves");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_retried_onebot_event_changes_nothing_and_gets_the_same_reply() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    linked_group(&app, "qq", "123456789").await;
    let first = onebot(&app, id, "group_message_array_checkin.json").await;
    let after_first = footprint(&app).await;
    for _ in 0..5 {
        let again = onebot(&app, id, "group_message_array_checkin.json").await;
        assert_eq!(again, first);
    }
    assert_eq!(footprint(&app).await, after_first);
    let entries: i64 = app.count("points_ledger").await;
    assert_eq!(entries, 1);
}

#[tokio::test]
async fn tampered_unsigned_truncated_and_mistyped_deliveries_are_refused_and_write_nothing() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    linked_group(&app, "qq", "123456789").await;
    let before = footprint(&app).await;
    let file = "group_message_array_checkin.json";
    let body = bridge_fixture(&format!("onebot11/{file}"));
    let sig = onebot_signature(file);
    // A plain path takes the connection's fast path (`web::fast`); the same path with a
    // percent-encoded character goes through the router. Both must refuse alike.
    let paths = [format!("/hooks/onebot11/{id}"), format!("/hooks/onebot1%31/{id}")];
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    type Case<'a> = (Vec<u8>, Vec<(&'a str, String)>, StatusCode);
    let cases: Vec<Case> = vec![
        (tampered, vec![("x-signature", sig.clone())], StatusCode::UNAUTHORIZED),
        (body.clone(), vec![], StatusCode::UNAUTHORIZED),
        (body.clone(), vec![("x-signature", "sha1=".to_string() + &"0".repeat(40))], StatusCode::UNAUTHORIZED),
        (body.clone(), vec![("x-signature", sig.replace("sha1=", "md5="))], StatusCode::UNAUTHORIZED),
        (body[..body.len() / 2].to_vec(), vec![("x-signature", sig.clone())], StatusCode::UNAUTHORIZED),
    ];
    for (b, h, status) in cases {
        for path in &paths {
            let (s, problem) = post_hook(&app, path, &b, &h).await;
            assert_eq!(s, status, "{path}");
            assert_eq!(problem["status"], status.as_u16(), "{path}");
        }
    }
    // Correctly signed, but truncated or of the wrong types.
    let sign = |b: &[u8]| {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::Mac>::new_from_slice(b"some-secret").unwrap();
        mac.update(b);
        format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
    };
    let truncated = body[..body.len() - 10].to_vec();
    let wrong = br#"{"time":1,"self_id":10001000,"post_type":"message","message_type":"group","message_id":5,"group_id":123456789,"user_id":{"id":1},"message":"x"}"#;
    let wrong_msg = br#"{"time":1,"self_id":10001000,"post_type":"message","message_type":"group","message_id":5,"group_id":123456789,"user_id":1,"message":42}"#;
    let huge = vec![b' '; 1024 * 1024 + 1];
    for path in &paths {
        let (s, _) = post_hook(&app, path, &truncated, &[("x-signature", sign(&truncated))]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        let (s, _) = post_hook(&app, path, wrong, &[("x-signature", sign(wrong))]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let (s, _) = post_hook(&app, path, wrong_msg, &[("x-signature", sign(wrong_msg))]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let (s, _) = post_hook(&app, path, &huge, &[("x-signature", sign(&huge))]).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    // The wrong kind or an unknown bridge is a 404.
    assert_eq!(post_hook(&app, &format!("/hooks/telegram/{id}"), &body, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        post_hook(&app, "/hooks/onebot11/999999", &body, &[("x-signature", sig)]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(footprint(&app).await, before, "nothing written");
    let last: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_event_at FROM bridges").fetch_one(&app.db).await.unwrap();
    assert!(last.is_none());
}

#[tokio::test]
async fn chats_no_group_claims_are_listed_as_unlinked() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    let (s, _) = onebot(&app, id, "group_message_plain_chat.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    onebot(&app, id, "group_message_array_checkin.json").await;
    let (chat, events): (String, i64) =
        sqlx::query_as("SELECT chat_id, events FROM unlinked_chats WHERE bridge_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((chat.as_str(), events), ("123456789", 2));
    assert_eq!(app.count("checkins").await, 0);
}

async fn telegram(app: &TestApp, id: i64, file: &str) -> (StatusCode, Value) {
    let body = bridge_fixture(&format!("telegram/{file}"));
    post_hook(
        app,
        &format!("/hooks/telegram/{id}"),
        &body,
        &[("x-telegram-bot-api-secret-token", "some-secret-token_1".into())],
    )
    .await
}

#[tokio::test]
async fn telegram_updates_check_in_join_with_named_links_and_ignore_anonymous_admins() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "telegram", "telegram", "some-secret-token_1").await;
    linked_group(&app, "telegram", "-1001293750001").await;
    sqlx::query("INSERT INTO checkin_rules (group_id, reply_lang) SELECT id, 'en' FROM groups")
        .execute(&app.db)
        .await
        .unwrap();
    let (s, r) = telegram(&app, id, "chat_member_join_via_named_link.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (link, inviter): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT s.invite_link_name, i.external_user_id FROM memberships s LEFT JOIN members i ON i.id = s.inviter_member_id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((link.as_deref(), inviter.as_deref()), (Some("ref_M7K2Q9"), Some("6000000001")), "{r}");
    let (s, r) = telegram(&app, id, "message_command_checkin.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["method"], "sendMessage");
    assert_eq!(r["chat_id"], -1001293750001i64);
    assert_eq!(r["reply_parameters"]["message_id"], 134547);
    assert!(r["text"].as_str().unwrap().starts_with("Tom checked in!"), "{r}");
    let (s, r) = telegram(&app, id, "message_text_checkin.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(r["text"].as_str().unwrap().starts_with("Mei Lin checked in!"), "{r}");
    let (s, _) = telegram(&app, id, "message_anonymous_admin.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.count("checkins").await, 2, "Tom and Mei; not the anonymous admin");
    let (s, _) = telegram(&app, id, "message_new_chat_members.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = telegram(&app, id, "message_left_chat_member.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM memberships WHERE left_at IS NULL").fetch_one(&app.db).await.unwrap();
    assert_eq!(open, 1, "Mei is in; Tom left; the inviting bot never joined");
    let body = bridge_fixture("telegram/message_command_checkin.json");
    let (s, _) = post_hook(
        &app,
        &format!("/hooks/telegram/{id}"),
        &body,
        &[("x-telegram-bot-api-secret-token", "wrong".into())],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

fn day(d: u32, hour: u32) -> i64 {
    // Local days in Asia/Shanghai (UTC+8): hour 10 local = 02:00 UTC.
    chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc().timestamp()
        - 8 * 3600
}

#[tokio::test]
async fn three_members_over_three_days_build_streaks_and_a_makeup_joins_them() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "generic", "wechat", "g-secret").await;
    let g = linked_group(&app, "wechat", "wx-room-1").await;
    sqlx::query("INSERT INTO checkin_rules (group_id, points, makeup_cost, streak_bonuses) VALUES ($1, 10, 5, '[{\"day\": 3, \"points\": 7}]')")
        .bind(g)
        .execute(&app.db)
        .await
        .unwrap();
    let mut n = 0;
    let mut send = |member: &str, kind: &str, text: &str, at: i64| {
        n += 1;
        json!({"event_id": format!("e{n}"), "kind": kind, "group_id": "wx-room-1", "member_id": member, "display_name": member.to_uppercase(), "text": text, "timestamp": at})
    };
    let mut replies = Vec::new();
    let plan = [("ann", 1), ("bob", 1), ("cat", 1), ("ann", 2), ("cat", 2), ("ann", 3), ("bob", 3), ("cat", 3)];
    for (m, d) in plan {
        let ev = send(m, "message", "签到", day(d, 10));
        let (s, r) = post_generic(&app, id, "g-secret", ev).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        replies.push(r["reply"].as_str().unwrap().to_string());
    }
    // Bob missed day 2 and makes it up on day 3.
    let ev = send("bob", "message", "补签", day(3, 12));
    let (_, r) = post_generic(&app, id, "g-secret", ev).await;
    assert!(r["reply"].as_str().unwrap().contains("2026-11-02"), "{r}");
    let ev = send("ann", "checkin", "", day(3, 20));
    let (_, again) = post_generic(&app, id, "g-secret", ev).await;
    assert!(again["reply"].as_str().unwrap().contains("已经签到"), "{again}");
    let streaks: Vec<(String, i32)> = sqlx::query_as(
        "SELECT m.external_user_id, c.streak FROM checkins c JOIN members m ON m.id = c.member_id WHERE c.day = '2026-11-03' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(streaks, vec![("ann".into(), 3), ("bob".into(), 3), ("cat".into(), 3)]);
    let balances: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.external_user_id, a.balance FROM points_accounts a JOIN members m ON m.id = a.member_id ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    // ann/cat: 3×10 + 7 bonus; bob: 2×10 − 5 make-up (no retroactive bonus).
    assert_eq!(balances, vec![("ann".into(), 37), ("bob".into(), 15), ("cat".into(), 37)]);
    // Every placeholder of the default template, filled from the database.
    assert_eq!(replies[5], "ANN 签到成功！连续 3 天，累计 3 天，+17 积分，余额 37。今日第 1 名。");
    assert_eq!(replies[4], "CAT 签到成功！连续 2 天，累计 2 天，+10 积分，余额 20。今日第 2 名。");
    assert_eq!(replies[6], "BOB 签到成功！连续 1 天，累计 2 天，+10 积分，余额 20。今日第 2 名。");
    // Each check-in has its one ledger entry pointing at it; the day-3 streak bonus went to ann and cat.
    let unmatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkins c WHERE NOT makeup AND (SELECT count(*) FROM points_ledger l
           WHERE l.kind = 'checkin' AND l.reference = 'checkin:' || c.id AND l.delta = 10 AND l.member_id = c.member_id) <> 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unmatched, 0);
    let bonuses: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT m.external_user_id, l.delta, l.idempotency_key FROM points_ledger l JOIN members m ON m.id = l.member_id
         WHERE l.kind = 'streak_bonus' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(bonuses.len(), 2, "{bonuses:?}");
    assert!(
        bonuses[0].0 == "ann" && bonuses[0].1 == 7 && bonuses[0].2.ends_with(&format!(":{g}:2026-11-03")),
        "{bonuses:?}"
    );
    assert_eq!(bonuses[1].0, "cat");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn concurrent_checkins_of_one_member_count_once() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let ev = json!({"event_id": format!("c{i}"), "kind": "checkin", "group_id": "room", "member_id": "zoe"});
        let url = app.url(&format!("/hooks/generic/{id}"));
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&ev).unwrap();
            let ts = chrono::Utc::now().timestamp();
            let sig = shoal::domain::bridge::sign_generic("g", ts, &body);
            reqwest::Client::new()
                .post(url)
                .header("x-shoal-timestamp", ts.to_string())
                .header("x-shoal-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(app.count("checkins").await, 1);
    assert_eq!(app.count("points_ledger").await, 1);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn generic_signatures_outside_the_window_are_refused() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    let body = br#"{"event_id":"x","kind":"checkin","group_id":"r","member_id":"m"}"#;
    let old = chrono::Utc::now().timestamp() - 301;
    let sig = shoal::domain::bridge::sign_generic("g", old, body);
    let (s, _) = post_hook(
        &app,
        &format!("/hooks/generic/{id}"),
        body,
        &[("x-shoal-timestamp", old.to_string()), ("x-shoal-signature", sig)],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("bridge_events").await, 0);
}

#[tokio::test]
async fn a_deleted_bridge_takes_its_delivery_log_and_only_its_own() {
    let app = TestApp::spawn_with(replay).await;
    let gone = bridge(&app, "generic", "wechat", "a").await;
    let kept = bridge(&app, "generic", "wechat", "b").await;
    linked_group(&app, "wechat", "room").await;
    for (id, secret) in [(gone, "a"), (kept, "b")] {
        let ev =
            json!({"event_id": "same-id", "kind": "message", "group_id": "room", "member_id": "zoe", "text": "hi"});
        let (s, _) = post_generic(&app, id, secret, ev).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    app.chatter_written().await;
    assert_eq!(app.count("bridge_events").await, 2);
    sqlx::query("DELETE FROM bridges WHERE id = $1").bind(gone).execute(&app.db).await.unwrap();
    let left: Vec<i64> = sqlx::query_scalar("SELECT bridge_id FROM bridge_events").fetch_all(&app.db).await.unwrap();
    assert_eq!(left, vec![kept]);
}

#[tokio::test]
async fn concurrent_copies_of_one_delivery_write_once_and_all_get_its_reply() {
    let app = TestApp::spawn_with(replay).await;
    let id = bridge(&app, "onebot11", "qq", "some-secret").await;
    linked_group(&app, "qq", "123456789").await;
    let body = bridge_fixture("onebot11/group_message_array_checkin.json");
    let sig = onebot_signature("group_message_array_checkin.json");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (url, body, sig) = (app.url(&format!("/hooks/onebot11/{id}")), body.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("x-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::OK);
    assert!(answers[0].1["reply"].as_str().unwrap().contains("签到成功"), "{:?}", answers[0]);
    assert_eq!(footprint(&app).await[..5], [1, 1, 1, 1, 1], "one event, member, membership, check-in, entry");
    let messages: i32 =
        sqlx::query_scalar("SELECT messages FROM member_daily_activity").fetch_one(&app.db).await.unwrap();
    assert_eq!(messages, 1, "the copies counted no extra messages");
    assert_ledger_consistent(&app).await;
}

#[test]
fn the_vendored_fixtures_are_the_shared_ones() {
    fn files(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, base, out);
            } else {
                out.push((p.strip_prefix(base).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let ours = bridge_fixtures();
    let mut vendored = Vec::new();
    files(&ours, &ours, &mut vendored);
    vendored.sort();
    assert!(vendored.iter().filter(|(p, _)| p.extension().is_some_and(|x| x == "json")).count() >= 15, "{vendored:?}");
    // Where the shared material sits beside the repository (a developer's checkout), the copy
    // must be byte for byte the same.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/bridges");
    if shared.is_dir() {
        let mut theirs = Vec::new();
        files(&shared, &shared, &mut theirs);
        theirs.sort();
        assert!(vendored == theirs, "tests/fixtures/bridges differs from ../shared/fixtures/bridges: copy it again");
    }
}

/// The tables every message writes check their values through domains rather than table
/// constraints, and `checkins` and `member_daily_activity` have no foreign keys any more (see
/// their migrations): each rule must still refuse what it refused, and a parent deleted by hand
/// must still take its activity along.
#[tokio::test]
async fn the_message_tables_still_refuse_bad_values_and_a_deleted_parent_takes_its_activity_along() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "generic", "wechat", "g-secret").await;
    let g = linked_group(&app, "wechat", "wx-room-1").await;
    let other = linked_group(&app, "wechat", "wx-room-2").await;
    let now = chrono::Utc::now().timestamp();
    let ev = |n: u32, room: &str, who: &str, text: &str| {
        json!({"event_id": format!("e{n}"), "kind": "message", "group_id": room, "member_id": who,
               "display_name": who.to_uppercase(), "text": text, "timestamp": now})
    };
    for (n, room, who, text) in
        [(1, "wx-room-1", "ann", "签到"), (2, "wx-room-2", "ann", "签到"), (3, "wx-room-1", "bob", "hello")]
    {
        let (s, r) = post_generic(&app, id, "g-secret", ev(n, room, who, text)).await;
        assert!(s.is_success(), "{r}");
    }
    app.chatter_written().await;

    for bad in [
        "UPDATE points_accounts SET balance = -1",
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('icq', 'x', 'y')",
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '', 'y')",
        "UPDATE members SET display_name = repeat('x', 121)",
        "UPDATE members SET invite_code = 'NOT-A-CODE'",
        "UPDATE members SET page_epoch = -1",
        "UPDATE memberships SET role = 'king'",
        "UPDATE memberships SET left_at = now(), left_reason = 'vanished'",
        "UPDATE checkins SET streak = 0",
        "UPDATE checkins SET note = ''",
        "UPDATE checkins SET quantity = -1, unit = 'km'",
        "UPDATE checkins SET quantity = 5, unit = 'parsec'",
        "UPDATE checkins SET quantity = 5",
        "UPDATE checkin_days SET checkins = -1",
        "INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, note)
         SELECT id, 0, 'checkin', 'x', 'zero', '' FROM members LIMIT 1",
        "INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, note)
         SELECT id, 5, 'gift', 'x', 'gift', '' FROM members LIMIT 1",
    ] {
        let err = sqlx::query(bad).execute(&app.db).await.expect_err(bad);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("23514"), "{bad}: {err}");
    }

    // Deleting (by hand) the group deletes its check-ins and activity, and only its own.
    let rows = |sql: &'static str, id: i64| {
        let db = app.db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(&db).await.unwrap() }
    };
    assert_eq!(rows("SELECT count(*) FROM checkins WHERE group_id = $1", g).await, 1);
    assert_eq!(rows("SELECT count(*) FROM member_daily_activity WHERE group_id = $1", g).await, 2);
    sqlx::query("DELETE FROM groups WHERE id = $1").bind(g).execute(&app.db).await.unwrap();
    assert_eq!(rows("SELECT count(*) FROM checkins WHERE group_id = $1", g).await, 0);
    assert_eq!(rows("SELECT count(*) FROM member_daily_activity WHERE group_id = $1", g).await, 0);
    assert_eq!(rows("SELECT count(*) FROM checkins WHERE group_id = $1", other).await, 1);
    // Bob only chatted (no ledger history), so he can be deleted; his activity goes with him.
    let bob: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = 'bob'").fetch_one(&app.db).await.unwrap();
    sqlx::query(
        "INSERT INTO member_daily_activity (member_id, group_id, day, messages) VALUES ($1, $2, current_date, 1)",
    )
    .bind(bob)
    .bind(other)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("DELETE FROM members WHERE id = $1").bind(bob).execute(&app.db).await.unwrap();
    assert_eq!(rows("SELECT count(*) FROM member_daily_activity WHERE member_id = $1", bob).await, 0);
    assert_eq!(rows("SELECT count(*) FROM member_daily_activity WHERE group_id = $1", other).await, 1, "ann's stays");
}
