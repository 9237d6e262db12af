//! Plain group messages are answered at once and written behind the answer in batches: each
//! delivery counted exactly once (retries, concurrent copies), and nothing queued is lost on a
//! graceful shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{post_generic, TestApp};

async fn setup(app: &TestApp) -> (i64, i64) {
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'wechat', 'chat', 'c-secret') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('Chat', 'wechat', 500, 'room') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    (bridge, group)
}

fn message(id: &str, member: &str, text: &str) -> serde_json::Value {
    json!({"event_id": id, "kind": "message", "group_id": "room", "member_id": member,
           "display_name": format!("Name {member}"), "text": text})
}

/// The day's message counts per member id, as written.
async fn counts(app: &TestApp) -> Vec<(String, i32)> {
    sqlx::query_as(
        "SELECT m.external_user_id, sum(a.messages)::int FROM member_daily_activity a JOIN members m ON m.id = a.member_id
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn until_events(app: &TestApp, n: i64) {
    for _ in 0..200 {
        if app.count("bridge_events").await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} delivery rows, got {}", app.count("bridge_events").await);
}

#[tokio::test]
async fn plain_messages_are_answered_at_once_and_each_delivery_counts_once_however_often_it_comes() {
    let app = TestApp::spawn().await;
    let (bridge, group) = setup(&app).await;
    // 30 deliveries from 3 members, each sent twice at the same time (a bridge retrying while the
    // first copy is still queued), then once more after the batch was written.
    for i in 0..30 {
        let ev = message(&format!("e{i}"), &format!("u{}", i % 3), "hello there");
        let (a, b) = tokio::join!(
            post_generic(&app, bridge, "c-secret", ev.clone()),
            post_generic(&app, bridge, "c-secret", ev)
        );
        assert_eq!((a.0, b.0), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT), "{} {}", a.1, b.1);
    }
    until_events(&app, 30).await;
    let (s, _) = post_generic(&app, bridge, "c-secret", message("e7", "u1", "hello there")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.chatter_written().await;
    assert_eq!(app.count("bridge_events").await, 30);
    assert_eq!(counts(&app).await, vec![("u0".into(), 10), ("u1".into(), 10), ("u2".into(), 10)]);
    let members: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT m.display_name, s.role, m.last_active_at IS NOT NULL FROM members m
         JOIN memberships s ON s.member_id = m.id AND s.group_id = $1 AND s.left_at IS NULL ORDER BY 1",
    )
    .bind(group)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        members,
        vec![
            ("Name u0".into(), "member".into(), true),
            ("Name u1".into(), "member".into(), true),
            ("Name u2".into(), "member".into(), true)
        ]
    );
}

#[tokio::test]
async fn a_check_in_among_plain_messages_is_answered_and_counted_with_them() {
    let app = TestApp::spawn().await;
    let (bridge, _) = setup(&app).await;
    for i in 0..3 {
        let (s, _) = post_generic(&app, bridge, "c-secret", message(&format!("p{i}"), "ann", "morning")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, body) = post_generic(&app, bridge, "c-secret", message("c1", "ann", "签到")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["reply"].as_str().unwrap().contains("签到"), "{body}");
    app.chatter_written().await;
    assert_eq!(counts(&app).await, vec![("ann".into(), 4)], "three plain messages and the check-in");
    assert_eq!(app.count("members").await, 1, "the queued messages and the check-in are one member");
    assert_eq!(app.count("checkins").await, 1);
}

#[tokio::test]
async fn queued_plain_messages_are_written_on_a_graceful_shutdown() {
    // A long interval: only the shutdown writes them.
    let app = TestApp::spawn_with(|c| c.bridges.chatter_flush_ms = 600_000).await;
    let (bridge, _) = setup(&app).await;
    for i in 0..5 {
        let (s, _) = post_generic(&app, bridge, "c-secret", message(&format!("q{i}"), "bob", "hi")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("bridge_events").await, 0, "still queued");
    app.stop_keep().await;
    assert_eq!(app.count("bridge_events").await, 5);
    assert_eq!(counts(&app).await, vec![("bob".into(), 5)]);
}

#[tokio::test]
async fn with_batching_off_a_plain_message_is_written_before_the_answer() {
    let app = TestApp::spawn_with(|c| c.bridges.chatter_flush_ms = 0).await;
    let (bridge, _) = setup(&app).await;
    let (s, _) = post_generic(&app, bridge, "c-secret", message("d1", "cat", "hi")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.count("bridge_events").await, 1);
    assert_eq!(counts(&app).await, vec![("cat".into(), 1)]);
}

#[tokio::test]
async fn messages_of_a_bridge_or_group_deleted_while_queued_are_dropped_and_the_rest_written() {
    let app = TestApp::spawn_with(|c| c.bridges.chatter_flush_ms = 600_000).await;
    let (bridge, group) = setup(&app).await;
    let other: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'wechat', 'other', 'o-secret') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('Other', 'wechat', 500, 'room2')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let mut gone_group = message("g1", "dan", "hi");
    gone_group["group_id"] = json!("room2");
    for (b, secret, ev) in [
        (bridge, "c-secret", message("k1", "eve", "hi")),
        (other, "o-secret", message("k2", "fay", "hi")),
        (bridge, "c-secret", gone_group),
    ] {
        let (s, _) = post_generic(&app, b, secret, ev).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    sqlx::query("DELETE FROM bridges WHERE id = $1").bind(other).execute(&app.db).await.unwrap();
    sqlx::query("DELETE FROM groups WHERE external_chat_id = 'room2'").execute(&app.db).await.unwrap();
    app.chatter_written().await;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT bridge_id, dedupe_key FROM bridge_events").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, bridge);
    assert_eq!(counts(&app).await, vec![("eve".into(), 1)]);
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE group_id = $1")
        .bind(group)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(open, 1);
}
