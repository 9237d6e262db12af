//! Broadcasts (定时群发) against the fake OneBot and Telegram bots: a broadcast to groups on two
//! platforms arrives once in each with the platform's message id stored; one at a time is not
//! sent early (the test moves its job's `run_at` instead of waiting: the job runner is the clock);
//! a recurring one schedules its next occurrence exactly once; cancel stops what has not gone
//! out; a timeout leaves the delivery unknown and never re-sent; a process killed mid-broadcast
//! loses and repeats nothing beyond the send in flight; a reminder names only the members who
//! have not checked in; the page and the API write the same.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode as S;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fakebots::{FakeBot, Flavor, Inject, TELEGRAM_TOKEN};
use crate::harness::{url_of, TestApp};

fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 500;
    c.outbound.limit_margin_ms = 50;
    c.outbound.member_count_interval_secs = 0;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

async fn bridge(app: &TestApp, kind: &str, base: &str, token: &str) -> i64 {
    let platform = if kind == "telegram" { "telegram" } else { "qq" };
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

async fn api(app: &TestApp, token: &str, method: &str, path: &str, body: Option<Value>) -> (S, Value) {
    let c = reqwest::Client::new();
    let req = match method {
        "POST" => c.post(app.url(path)),
        "PUT" => c.put(app.url(path)),
        _ => c.get(app.url(path)),
    };
    let req = req.bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// (group id, state, message id, error) of a broadcast's deliveries, by group.
async fn deliveries(app: &TestApp, broadcast: i64) -> Vec<(i64, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT group_id, state, message_id, error FROM broadcast_deliveries WHERE broadcast_id = $1
         ORDER BY group_id, occurrence_at",
    )
    .bind(broadcast)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Waits until no delivery of the broadcast is queued (up to 30 s).
async fn settled(app: &TestApp, broadcast: i64) -> Vec<(i64, String, Option<String>, Option<String>)> {
    for _ in 0..600 {
        let d = deliveries(app, broadcast).await;
        if !d.is_empty() && d.iter().all(|(_, s, _, _)| s != "queued") {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries never settled: {:?}", deliveries(app, broadcast).await);
}

#[tokio::test]
async fn a_broadcast_to_three_groups_on_two_platforms_arrives_once_each_with_message_ids() {
    let app = TestApp::spawn_with(fast).await;
    let qq = FakeBot::start(Flavor::NapCat).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let qb = bridge(&app, "onebot11", &qq.base(), &qq.token).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    let g1 = linked(&app, qb, "QQ one", "1001").await;
    let g2 = linked(&app, qb, "QQ two", "1002").await;
    let g3 = linked(&app, tb, "TG", "-100300").await;
    let token = app.token("operator", true, &[]).await;
    let text = "今晚 8 点 [CQ:at,qq=all] & <b>live</b>";
    // The preview shows each platform's text as it will be sent, and writes nothing.
    let body = json!({"text": text, "group_ids": [g1, g2, g3], "send_at": null});
    let (s, p) = api(&app, &token, "POST", "/api/v1/broadcasts/preview", Some(body.clone())).await;
    assert_eq!(s, S::OK, "{p}");
    assert_eq!(p["targets"].as_array().unwrap().len(), 3);
    let qq_text = p["texts"].as_array().unwrap().iter().find(|t| t["kind"] == "onebot11").unwrap();
    assert_eq!(qq_text["text"], "今晚 8 点 &#91;CQ:at&#44;qq=all&#93; &amp; <b>live</b>");
    assert_eq!(qq_text["groups"], 2);
    assert_eq!(app.count("broadcasts").await, 0);
    let (s, b) = api(&app, &token, "POST", "/api/v1/broadcasts", Some(body)).await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    assert_eq!(b["deliveries"].as_array().unwrap().len(), 3, "sending now writes the deliveries at once");
    let d = settled(&app, id).await;
    assert!(d.iter().all(|(_, s, m, _)| s == "sent" && m.is_some()), "{d:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let qq_calls = qq.calls_of("send_group_msg");
    let tg_calls = tg.calls_of("sendMessage");
    assert_eq!(qq_calls.len(), 2);
    assert_eq!(tg_calls.len(), 1);
    let mut chats: Vec<String> = qq_calls.iter().map(|c| c.chat()).collect();
    chats.sort();
    assert_eq!(chats, ["1001", "1002"]);
    assert_eq!(qq_calls[0].body["message"], "今晚 8 点 &#91;CQ:at&#44;qq=all&#93; &amp; <b>live</b>");
    assert_eq!(tg_calls[0].body["text"], text);
    assert!(tg_calls[0].body.get("parse_mode").is_none());
    // The message ids are the platforms' (the fakes count from 1001 each).
    let tg_id = d.iter().find(|(g, ..)| *g == g3).unwrap().2.clone().unwrap();
    assert_eq!(tg_id, "1001");
    let mut qq_ids: Vec<String> = d.iter().filter(|(g, ..)| *g != g3).map(|(_, _, m, _)| m.clone().unwrap()).collect();
    qq_ids.sort();
    assert_eq!(qq_ids, ["1001", "1002"]);
    // The API shows them per group, and the list counts them.
    let (_, one) = api(&app, &token, "GET", &format!("/api/v1/broadcasts/{id}"), None).await;
    assert_eq!(one["deliveries"].as_array().unwrap().iter().filter(|d| d["state"] == "sent").count(), 3);
    assert_eq!(one["state"], "done");
    let (_, list) = api(&app, &token, "GET", "/api/v1/broadcasts", None).await;
    assert_eq!(list["items"][0]["counts"]["sent"], 3);
}

#[tokio::test]
async fn a_broadcast_at_a_time_is_not_sent_early() {
    let app = TestApp::spawn_with(fast).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    let g = linked(&app, tb, "TG", "-1007").await;
    let token = app.token("admin", true, &[]).await;
    let at = chrono::Utc::now() + chrono::Duration::hours(1);
    let (s, b) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "later", "group_ids": [g], "send_at": at.to_rfc3339()})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(deliveries(&app, id).await.is_empty());
    assert!(tg.calls().is_empty(), "nothing before its time");
    let run_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT run_at FROM jobs WHERE kind = 'broadcast_occurrence'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(run_at.timestamp_millis() / 1000, at.timestamp_millis() / 1000);
    // Its time comes: the job's run_at is moved to now (the job runner is the clock).
    sqlx::query("UPDATE jobs SET run_at = now() WHERE kind = 'broadcast_occurrence'").execute(&app.db).await.unwrap();
    let d = settled(&app, id).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1, "sent");
    assert_eq!(tg.calls_of("sendMessage").len(), 1);
}

#[tokio::test]
async fn a_weekly_broadcast_schedules_its_next_occurrence_exactly_once() {
    let app = TestApp::spawn_with(fast).await;
    let qq = FakeBot::start(Flavor::GoCqhttp).await;
    let qb = bridge(&app, "onebot11", &qq.base(), &qq.token).await;
    let g = linked(&app, qb, "QQ", "2001").await;
    sqlx::query("UPDATE groups SET timezone = 'America/New_York' WHERE id = $1")
        .bind(g)
        .execute(&app.db)
        .await
        .unwrap();
    let token = app.token("admin", true, &[]).await;
    let (s, b) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "weekly", "group_ids": [g], "recurrence": {"every": "weekly", "at": "09:30", "weekdays": [1, 4]}})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    let next: chrono::DateTime<chrono::Utc> = serde_json::from_value(b["next_at"].clone()).unwrap();
    let local = next.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "09:30");
    assert!(matches!(local.format("%u").to_string().as_str(), "1" | "4"));
    // The occurrence runs (moved to now), twice as if a process died after its commit: one
    // delivery, one send, one next occurrence.
    let first: i64 =
        sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'broadcast_occurrence'").fetch_one(&app.db).await.unwrap();
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1").bind(first).execute(&app.db).await.unwrap();
    settled(&app, id).await;
    for _ in 0..100 {
        let st: String = sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1")
            .bind(first)
            .fetch_one(&app.db)
            .await
            .unwrap();
        if st == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query("UPDATE jobs SET state = 'queued', run_at = now() WHERE id = $1")
        .bind(first)
        .execute(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let d = deliveries(&app, id).await;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(qq.calls_of("send_group_msg").len(), 1);
    let pending: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, run_at FROM jobs WHERE kind = 'broadcast_occurrence' AND state = 'queued' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(pending.len(), 1, "one next occurrence: {pending:?}");
    assert!(pending[0].1 > next);
    let local = pending[0].1.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M").to_string(), "09:30");
    let b_next: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT next_at FROM broadcasts WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(b_next, Some(pending[0].1));
    // Cancelling stops the next occurrence too.
    let (s, c) = api(&app, &token, "POST", &format!("/api/v1/broadcasts/{id}/cancel"), None).await;
    assert_eq!(s, S::OK, "{c}");
    let st: String = sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1")
        .bind(pending[0].0)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(st, "cancelled");
    let (s, _) = api(&app, &token, "POST", &format!("/api/v1/broadcasts/{id}/cancel"), None).await;
    assert_eq!(s, S::CONFLICT);
}

#[tokio::test]
async fn cancel_stops_the_deliveries_that_have_not_gone_out() {
    let app = TestApp::spawn_with(fast).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    // One call per minute for the whole bot: the first goes, the others wait their turn.
    sqlx::query("UPDATE bridges SET bot_rate_limit = 1, bot_rate_window_ms = 60000 WHERE id = $1")
        .bind(tb)
        .execute(&app.db)
        .await
        .unwrap();
    let mut groups = Vec::new();
    for i in 0..3 {
        groups.push(linked(&app, tb, &format!("TG {i}"), &format!("-100{i}")).await);
    }
    let token = app.token("admin", true, &[]).await;
    let (s, b) =
        api(&app, &token, "POST", "/api/v1/broadcasts", Some(json!({"text": "hello", "group_ids": groups}))).await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    for _ in 0..200 {
        if deliveries(&app, id).await.iter().any(|(_, s, _, _)| s == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, c) = api(&app, &token, "POST", &format!("/api/v1/broadcasts/{id}/cancel"), None).await;
    assert_eq!(s, S::OK, "{c}");
    assert_eq!(c["stopped"], 2);
    assert_eq!(c["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = deliveries(&app, id).await;
    let states: Vec<&str> = d.iter().map(|(_, s, _, _)| s.as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "sent").count(), 1, "{d:?}");
    assert_eq!(states.iter().filter(|s| **s == "cancelled").count(), 2, "{d:?}");
    assert_eq!(tg.calls_of("sendMessage").len(), 1);
}

#[tokio::test]
async fn a_send_that_times_out_is_unknown_and_never_sent_again() {
    let app = TestApp::spawn_with(fast).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    let g1 = linked(&app, tb, "slow", "-1001").await;
    let g2 = linked(&app, tb, "fine", "-1002").await;
    // The first send gets no answer within the bot timeout (500 ms).
    tg.inject("sendMessage", Inject::Stall(Duration::from_secs(2)));
    let token = app.token("admin", true, &[]).await;
    let (s, b) = api(&app, &token, "POST", "/api/v1/broadcasts", Some(json!({"text": "x", "group_ids": [g1]}))).await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    let d = settled(&app, id).await;
    assert_eq!(d[0].1, "unknown", "{d:?}");
    assert!(d[0].3.is_some());
    let (_, b2) = api(&app, &token, "POST", "/api/v1/broadcasts", Some(json!({"text": "y", "group_ids": [g2]}))).await;
    let d2 = settled(&app, b2["id"].as_i64().unwrap()).await;
    assert_eq!(d2[0].1, "sent");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let to_slow = tg.calls_of("sendMessage").into_iter().filter(|c| c.chat() == "-1001").count();
    assert_eq!(to_slow, 1, "the unknown send went out once and never again");
    assert_eq!(deliveries(&app, id).await[0].1, "unknown");
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_broadcast_loses_and_repeats_nothing_beyond_the_send_in_flight() {
    // This process only enqueues; real Shoal processes send, one job at a time.
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.jobs.workers = 0;
    })
    .await;
    let qq = FakeBot::start(Flavor::NapCat).await;
    let qb = bridge(&app, "onebot11", &qq.base(), &qq.token).await;
    let mut groups = Vec::new();
    for i in 0..6 {
        groups.push(linked(&app, qb, &format!("QQ {i}"), &format!("30{i}")).await);
    }
    let token = app.token("admin", true, &[]).await;
    let (s, b) =
        api(&app, &token, "POST", "/api/v1/broadcasts", Some(json!({"text": "hi", "group_ids": groups}))).await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    // The third send hangs at the bot: the process is killed while it waits for the answer.
    qq.inject("send_group_msg", Inject::Answer(200, json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}})));
    qq.inject("send_group_msg", Inject::Answer(200, json!({"status": "ok", "retcode": 0, "data": {"message_id": 2}})));
    qq.inject("send_group_msg", Inject::Stall(Duration::from_secs(30)));
    let url = url_of(&app.db_opts);
    let env = [
        ("SHOAL_OUTBOUND__ALLOWED_HOSTS", "[\"127.0.0.1\"]"),
        ("SHOAL_OUTBOUND__MEMBER_COUNT_INTERVAL_SECS", "0"),
        ("SHOAL_OUTBOUND__BOT_TIMEOUT_MS", "1500"),
        ("SHOAL_JOBS__POLL_MS", "20"),
        ("SHOAL_JOBS__WORKERS", "1"),
        // Long enough that a job of a process slowed by a busy machine is not cut short (a bot
        // action cut short is unknown, sent or not), short enough for the second process to
        // take the killed one's job back soon.
        ("SHOAL_JOBS__LEASE_SECS", "5"),
    ];
    let (mut first, _) = shoal_process(&url, &env).await;
    let stalled = qq.wait_calls(3).await[2].chat();
    first.kill().await.unwrap();
    let _ = first.wait().await;
    let second = shoal_process(&url, &env).await;
    let d = settled(&app, id).await;
    drop(second);
    let calls = qq.calls_of("send_group_msg");
    let mut chats: Vec<String> = calls.iter().map(|c| c.chat()).collect();
    chats.sort();
    let mut want: Vec<String> = (0..6).map(|i| format!("30{i}")).collect();
    want.sort();
    assert_eq!(chats, want, "every group got the message once: nothing lost, nothing repeated");
    let chat_of: std::collections::HashMap<i64, String> =
        groups.iter().copied().zip((0..6).map(|i| format!("30{i}"))).collect();
    for (group, state, message_id, _) in &d {
        match state.as_str() {
            "sent" => assert!(message_id.is_some(), "{d:?}"),
            "unknown" => {}
            other => panic!("a delivery ended {other}: {d:?}"),
        }
        if chat_of[group] == stalled {
            assert_eq!(state, "unknown", "the send in flight when the process died is unknown: {d:?}");
        }
    }
    let unknown = d.iter().filter(|(_, s, _, _)| s == "unknown").count();
    assert!((1..=2).contains(&unknown), "only the send(s) in flight are unknown: {d:?}");
}

#[tokio::test]
async fn a_reminder_mentions_only_the_members_who_have_not_checked_in() {
    let app = TestApp::spawn_with(fast).await;
    let qq = FakeBot::start(Flavor::GoCqhttp).await;
    let qb = bridge(&app, "onebot11", &qq.base(), &qq.token).await;
    let g = linked(&app, qb, "Reading club", "4001").await;
    let done = linked(&app, qb, "All done", "4002").await;
    let off = linked(&app, qb, "Reminder off", "4003").await;
    let mut members = Vec::new();
    for (qqid, name) in [("111", "早起"), ("222", "小明"), ("333", "[CQ:at,qq=all]")] {
        let m: i64 = sqlx::query_scalar(
            "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', $1, $2) RETURNING id",
        )
        .bind(qqid)
        .bind(name)
        .fetch_one(&app.db)
        .await
        .unwrap();
        for group in [g, done, off] {
            sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
                .bind(m)
                .bind(group)
                .execute(&app.db)
                .await
                .unwrap();
        }
        members.push(m);
    }
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let checkin = |m: i64, group: i64| {
        sqlx::query("INSERT INTO checkins (member_id, group_id, day, streak) VALUES ($1, $2, $3, 1)")
            .bind(m)
            .bind(group)
            .bind(today)
    };
    checkin(members[0], g).execute(&app.db).await.unwrap();
    for m in &members {
        checkin(*m, done).execute(&app.db).await.unwrap();
    }
    let token = app.token("admin", true, &[]).await;
    for group in [g, done] {
        let (s, r) =
            api(&app, &token, "PUT", &format!("/api/v1/reminder-groups/{group}"), Some(json!({"enabled": true}))).await;
        assert_eq!(s, S::OK, "{r}");
    }
    let (s, b) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "22:00 前记得签到", "reminders": true, "mention_unchecked": true})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    let id = b["id"].as_i64().unwrap();
    let d = settled(&app, id).await;
    assert_eq!(d.len(), 2, "only the groups with the reminder on: {d:?}");
    let in_g = d.iter().find(|(x, ..)| *x == g).unwrap();
    assert_eq!(in_g.1, "sent");
    let in_done = d.iter().find(|(x, ..)| *x == done).unwrap();
    assert_eq!((in_done.1.as_str(), in_done.3.as_deref()), ("cancelled", Some("all_checked_in")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = qq.calls_of("send_group_msg");
    assert_eq!(calls.len(), 1);
    let msg = calls[0].body["message"].as_str().unwrap();
    assert_eq!(msg, "22:00 前记得签到\n[CQ:at,qq=222] [CQ:at,qq=333]");
    assert!(!msg.contains("qq=111") && !msg.contains("qq=all"));
    let mentioned: i32 = sqlx::query_scalar("SELECT mentioned FROM broadcast_deliveries WHERE group_id = $1")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(mentioned, 2);
}

/// The broadcast rows and audit rows the two entrances wrote, comparable.
async fn written(app: &TestApp) -> (Vec<(String, String, Vec<i64>, Option<String>, Vec<i16>)>, Vec<(String, Value)>) {
    let b = sqlx::query_as("SELECT text, audience, group_ids, every, weekdays FROM broadcasts ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let a: Vec<(String, Value)> =
        sqlx::query_as("SELECT action, details - 'next_at' FROM audit_log WHERE action LIKE 'broadcast.%' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    (b, a)
}

#[tokio::test]
async fn the_page_and_the_api_schedule_check_and_cancel_alike() {
    let (page_app, api_app) = (TestApp::spawn_with(fast).await, TestApp::spawn_with(fast).await);
    for app in [&page_app, &api_app] {
        app.group("Alpha").await;
        app.group("Beta").await;
    }
    let admin = page_app.admin().await;
    let token = api_app.token("admin", true, &[]).await;
    // Bad input: the same field errors, nothing written.
    let r = page_app
        .post_multipart(
            &admin,
            "/broadcasts/new",
            "/broadcasts/new",
            &[("text", ""), ("audience", "groups"), ("every", "weekly"), ("at", "9")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    for field in ["err-text", "err-group_ids", "err-weekdays", "err-at"] {
        assert!(html.contains(field), "{field}");
    }
    let (s, p) = api(
        &api_app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "", "group_ids": [], "recurrence": {"every": "weekly", "at": "9"}})),
    )
    .await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().filter_map(|e| e["field"].as_str()).collect();
    for field in ["text", "group_ids", "weekdays", "at"] {
        assert!(fields.contains(&field), "{field}: {p}");
    }
    assert_eq!(page_app.count("broadcasts").await + api_app.count("broadcasts").await, 0);
    // A preview on the page shows the QQ text escaped, and writes nothing.
    let r = page_app
        .post_multipart(
            &admin,
            "/broadcasts/new",
            "/broadcasts/new",
            &[("text", "a & b"), ("audience", "groups"), ("group_ids", "1"), ("step", "preview")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), S::OK);
    assert!(r.text().await.unwrap().contains("id=\"preview\""));
    assert_eq!(page_app.count("broadcasts").await, 0);
    // The same weekly broadcast through both.
    let r = page_app
        .post_multipart(
            &admin,
            "/broadcasts/new",
            "/broadcasts/new",
            &[
                ("text", "周会提醒"),
                ("audience", "groups"),
                ("group_ids", "1"),
                ("group_ids", "2"),
                ("every", "weekly"),
                ("weekdays", "1"),
                ("weekdays", "5"),
                ("at", "20:00"),
                ("step", "schedule"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (s, b) = api(
        &api_app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "周会提醒", "group_ids": [1, 2], "recurrence": {"every": "weekly", "at": "20:00", "weekdays": [5, 1]}})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    // Both cancelled.
    let r = page_app.post_form(&admin, "/broadcasts/1", "/broadcasts/1/cancel", &[("confirm", "1")]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (s, _) = api(&api_app, &token, "POST", "/api/v1/broadcasts/1/cancel", None).await;
    assert_eq!(s, S::OK);
    let (pb, pa) = written(&page_app).await;
    let (ab, aa) = written(&api_app).await;
    assert_eq!(pb, ab);
    assert_eq!(pa, aa);
    assert_eq!(pa.len(), 2);
    // The pages show it in both languages.
    let page = admin.get(page_app.url("/broadcasts/1")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("周会提醒") && page.contains("id=\"broadcast-state\""));
    let list = admin.get(page_app.url("/broadcasts")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("id=\"broadcast-1\""));
    let zh = admin
        .get(page_app.url("/broadcasts/reminders"))
        .header("Accept-Language", "zh-CN")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("签到提醒") || zh.contains("Check-in reminders"));
}

#[tokio::test]
async fn a_picture_goes_as_a_photo_with_its_caption_from_an_unguessable_address() {
    use base64::Engine;
    let app = TestApp::spawn_with(fast).await;
    let qq = FakeBot::start(Flavor::NapCat).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let qb = bridge(&app, "onebot11", &qq.base(), &qq.token).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    let g1 = linked(&app, qb, "QQ", "5001").await;
    let g2 = linked(&app, tb, "TG", "-5002").await;
    let token = app.token("admin", true, &[]).await;
    let png = base64::engine::general_purpose::STANDARD.encode(crate::harness::plain_png());
    // Not an image, and a caption too long: both refused, nothing written.
    let (s, p) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "x".repeat(1100), "group_ids": [g1], "image_base64": "bm90IGFuIGltYWdl"})),
    )
    .await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{p}");
    let (s, p) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "x".repeat(1100), "group_ids": [g1], "image_base64": png})),
    )
    .await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(app.count("broadcasts").await, 0);
    let (s, b) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "新品 & 活动", "group_ids": [g1, g2], "image_base64": png})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    assert_eq!(b["has_image"], true);
    let d = settled(&app, b["id"].as_i64().unwrap()).await;
    assert!(d.iter().all(|(_, s, m, _)| s == "sent" && m.is_some()), "{d:?}");
    let photo = &tg.calls_of("sendPhoto")[0];
    assert_eq!(photo.body["caption"], "新品 & 活动");
    let url = photo.body["photo"].as_str().unwrap().to_string();
    let qq_msg = qq.calls_of("send_group_msg")[0].body["message"].as_str().unwrap().to_string();
    assert_eq!(qq_msg, format!("[CQ:image,file={url}]新品 &amp; 活动"));
    // The bots fetch the picture without a login; a wrong token is a 404.
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), S::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("image/"));
    let wrong = format!("{}{}", &url[..url.len() - 1], if url.ends_with('A') { "B" } else { "A" });
    assert_eq!(reqwest::get(&wrong).await.unwrap().status(), S::NOT_FOUND);
    assert_eq!(reqwest::get(app.url("/b/1/short")).await.unwrap().status(), S::NOT_FOUND);
}

#[tokio::test]
async fn scoped_principals_reach_and_see_only_their_groups() {
    let app = TestApp::spawn_with(fast).await;
    let mine = app.group("Mine").await;
    let theirs = app.group("Theirs").await;
    let admin = app.token("admin", true, &[]).await;
    let scoped = app.token("operator", false, &[mine]).await;
    let viewer = app.token("viewer", true, &[]).await;
    let (s, p) =
        api(&app, &scoped, "POST", "/api/v1/broadcasts", Some(json!({"text": "x", "group_ids": [mine, theirs]}))).await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "group_ids");
    let (s, _) =
        api(&app, &viewer, "POST", "/api/v1/broadcasts", Some(json!({"text": "x", "group_ids": [mine]}))).await;
    assert_eq!(s, S::FORBIDDEN);
    assert_eq!(app.count("broadcasts").await, 0);
    let (s, own) =
        api(&app, &scoped, "POST", "/api/v1/broadcasts", Some(json!({"text": "x", "group_ids": [mine]}))).await;
    assert_eq!(s, S::CREATED, "{own}");
    // A group without a bot: its delivery fails at once, saying why.
    assert_eq!(own["deliveries"][0]["state"], "failed");
    assert_eq!(own["deliveries"][0]["error"], "no_bot");
    let (_, other) =
        api(&app, &admin, "POST", "/api/v1/broadcasts", Some(json!({"text": "y", "group_ids": [mine, theirs]}))).await;
    let (_, by_tag) = api(&app, &scoped, "POST", "/api/v1/broadcasts", Some(json!({"text": "z", "tag": "vip"}))).await;
    let (_, list) = api(&app, &scoped, "GET", "/api/v1/broadcasts", None).await;
    let ids: Vec<i64> = list["items"].as_array().unwrap().iter().map(|b| b["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [by_tag["id"].as_i64().unwrap(), own["id"].as_i64().unwrap()]);
    let (s, _) = api(&app, &scoped, "GET", &format!("/api/v1/broadcasts/{}", other["id"]), None).await;
    assert_eq!(s, S::NOT_FOUND);
    let (s, _) = api(&app, &scoped, "POST", &format!("/api/v1/broadcasts/{}/cancel", other["id"]), None).await;
    assert_eq!(s, S::NOT_FOUND);
    let (s, _) =
        api(&app, &scoped, "PUT", &format!("/api/v1/reminder-groups/{theirs}"), Some(json!({"enabled": true}))).await;
    assert_eq!(s, S::NOT_FOUND);
    let (_, admin_list) = api(&app, &admin, "GET", "/api/v1/broadcasts", None).await;
    assert_eq!(admin_list["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_telegram_reminder_mentions_the_unchecked_with_text_mention_entities() {
    let app = TestApp::spawn_with(fast).await;
    let tg = FakeBot::start(Flavor::Telegram).await;
    let tb = bridge(&app, "telegram", &tg.base(), TELEGRAM_TOKEN).await;
    let g = linked(&app, tb, "Runners", "-100900").await;
    let mut members = Vec::new();
    // A name with markup and an emoji (two UTF-16 units), one already checked in, one without a
    // numeric id (it cannot be mentioned on Telegram).
    for (id, name) in [("5001", "<b>Mei</b> 🐟"), ("5002", "Li & Co"), ("5003", "Done"), ("someone", "Nope")] {
        let m: i64 = sqlx::query_scalar(
            "INSERT INTO members (platform, external_user_id, display_name) VALUES ('telegram', $1, $2) RETURNING id",
        )
        .bind(id)
        .bind(name)
        .fetch_one(&app.db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
            .bind(m)
            .bind(g)
            .execute(&app.db)
            .await
            .unwrap();
        members.push(m);
    }
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    sqlx::query("INSERT INTO checkins (member_id, group_id, day, streak) VALUES ($1, $2, $3, 1)")
        .bind(members[2])
        .bind(g)
        .bind(today)
        .execute(&app.db)
        .await
        .unwrap();
    let token = app.token("admin", true, &[]).await;
    let (s, r) =
        api(&app, &token, "PUT", &format!("/api/v1/reminder-groups/{g}"), Some(json!({"enabled": true}))).await;
    assert_eq!(s, S::OK, "{r}");
    let (s, b) = api(
        &app,
        &token,
        "POST",
        "/api/v1/broadcasts",
        Some(json!({"text": "Check in before 22:00", "reminders": true, "mention_unchecked": true})),
    )
    .await;
    assert_eq!(s, S::CREATED, "{b}");
    let d = settled(&app, b["id"].as_i64().unwrap()).await;
    assert_eq!(d[0].1, "sent", "{d:?}");
    let calls = tg.calls_of("sendMessage");
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_eq!(body["text"], "Check in before 22:00\n<b>Mei</b> 🐟 Li & Co");
    assert!(body.get("parse_mode").is_none(), "plain text: a name cannot inject markup");
    let entities = body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 2, "{body}");
    assert_eq!(entities[0]["type"], "text_mention");
    assert_eq!(entities[0]["user"]["id"], 5001);
    // "Check in before 22:00\n" is 22 UTF-16 units; "<b>Mei</b> 🐟" is 13 (the fish is two).
    assert_eq!((entities[0]["offset"].as_i64(), entities[0]["length"].as_i64()), (Some(22), Some(13)));
    assert_eq!(entities[1]["user"]["id"], 5002);
    assert_eq!((entities[1]["offset"].as_i64(), entities[1]["length"].as_i64()), (Some(36), Some(7)));
    let mentioned: i32 = sqlx::query_scalar("SELECT mentioned FROM broadcast_deliveries WHERE group_id = $1")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(mentioned, 2);
}
