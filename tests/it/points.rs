//! The points API with idempotency keys, and the ledger surviving a killed process.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{url_of, TestApp};

async fn member(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', $1, $1) RETURNING id",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn award(app: &TestApp, token: &str, member: i64, key: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/members/{member}/points")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_award_with_a_key_applies_once_and_a_different_body_with_that_key_is_a_conflict() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    let m = member(&app, "100").await;
    let (s, first) = award(&app, &token, m, "order-1", json!({"delta": 50, "note": "welcome"})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["balance"], 50);
    let (s, again) = award(&app, &token, m, "order-1", json!({"delta": 50, "note": "welcome"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["entry"], first["entry"], "the original entry");
    assert_eq!(again["created"], false);
    let (s, conflict) = award(&app, &token, m, "order-1", json!({"delta": 60, "note": "welcome"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(conflict["status"], 409);
    assert_eq!(app.count("points_ledger").await, 1);

    // A spend below zero fails cleanly.
    let (s, refused) = award(&app, &token, m, "spend-1", json!({"delta": -51})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused["errors"][0]["field"], "delta");
    let (s, spent) = award(&app, &token, m, "spend-2", json!({"delta": -50})).await;
    assert_eq!((s, spent["balance"].as_i64()), (StatusCode::CREATED, Some(0)));
    let (s, _) = award(&app, &token, m, "", json!({"delta": 5})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a key is required");
    let r = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/members/{m}/points")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["balance"], 0);
    assert_eq!(view["entries"].as_array().unwrap().len(), 2);
    // The ledger is append-only, even to a direct UPDATE.
    assert!(sqlx::query("UPDATE points_ledger SET delta = 1000").execute(&app.db).await.is_err());
    assert!(sqlx::query("DELETE FROM points_ledger").execute(&app.db).await.is_err());
    // Deleting the member keeps their ledger: the member is anonymised, not erased.
    let admin = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/members/{m}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count("points_ledger").await, 2);
    assert!(sqlx::query("DELETE FROM members WHERE id = $1").bind(m).execute(&app.db).await.is_err(), "history stays");
}

#[tokio::test]
async fn deleting_a_member_forfeits_the_balance_by_an_entry_and_keeps_the_history() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    let m = member(&app, "300").await;
    award(&app, &token, m, "a", json!({"delta": 40})).await;
    award(&app, &token, m, "b", json!({"delta": -15})).await;
    let admin = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/members/{m}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, delta FROM points_ledger WHERE member_id = $1 ORDER BY id")
            .bind(m)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows, vec![("api".into(), 40), ("api".into(), -15), ("forfeit".into(), -25)]);
    let (balance, sum): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT balance FROM points_accounts WHERE member_id = $1), (SELECT sum(delta)::bigint FROM points_ledger WHERE member_id = $1)",
    )
    .bind(m)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((balance, sum), (0, 0), "balance == sum of the ledger");
    let audit: serde_json::Value =
        sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'member.delete' AND target_id = $1")
            .bind(m.to_string())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit["forfeited"], 25);
    // Deleting again finds nobody.
    let r = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/members/{m}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_spends_never_take_the_balance_below_zero() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    let m = member(&app, "200").await;
    award(&app, &token, m, "seed", json!({"delta": 100})).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (url, token) = (app.url(&format!("/api/v1/members/{m}/points")), token.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", format!("s{i}"))
                .json(&json!({"delta": -7}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::CREATED {
            ok += 1;
        }
    }
    assert_eq!(ok, 14, "100 / 7 = 14 spends fit");
    let (balance, sum): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT balance FROM points_accounts WHERE member_id = $1), (SELECT sum(delta)::bigint FROM points_ledger WHERE member_id = $1)",
    )
    .bind(m)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((balance, sum), (2, 2));
}

#[tokio::test]
async fn a_viewer_token_cannot_award_and_a_scoped_token_cannot_reach_other_members() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let m = member(&app, "300").await;
    let viewer = app.token("viewer", true, &[]).await;
    assert_eq!(award(&app, &viewer, m, "k", json!({"delta": 5})).await.0, StatusCode::FORBIDDEN);
    let scoped = app.token("operator", false, &[g]).await;
    assert_eq!(award(&app, &scoped, m, "k", json!({"delta": 5})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.count("points_ledger").await, 0);
}

/// Kills Shoal (SIGKILL) in the middle of a burst of check-ins, restarts it, lets the bridge
/// retry everything, and checks that nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_nothing_when_the_bridge_retries() {
    let app = TestApp::spawn().await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'wechat', 'b', 'k') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('G', 'wechat', 500, 'room')")
        .execute(&app.db)
        .await
        .unwrap();
    let url = url_of(&app.db_opts);
    let start = || {
        let url = url.clone();
        async move {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
                .arg("serve")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("DATABASE_URL", url)
                .env("SHOAL_LISTEN", "127.0.0.1:0")
                .env("SHOAL_LOG_FORMAT", "json")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let addr = loop {
                let line = lines.next_line().await.unwrap().expect("shoal exited");
                if let Some(a) = line.strip_prefix("Shoal is listening on http://") {
                    break a.trim().to_string();
                }
            };
            (child, addr)
        }
    };
    const N: usize = 400;
    let deliveries: Vec<Vec<u8>> = (0..N)
        .map(|i| serde_json::to_vec(&json!({"event_id": format!("evt-{i}"), "kind": "checkin", "group_id": "room", "member_id": format!("m{i}")})).unwrap())
        .collect();
    let send = |addr: String, body: Vec<u8>| async move {
        let ts = chrono::Utc::now().timestamp();
        let sig = shoal::domain::bridge::sign_generic("k", ts, &body);
        reqwest::Client::new()
            .post(format!("http://{addr}/hooks/generic/{bridge}"))
            .header("x-shoal-timestamp", ts.to_string())
            .header("x-shoal-signature", sig)
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .map(|r| r.status())
    };

    let (mut child, addr) = start().await;
    let mut tasks = Vec::new();
    for body in deliveries.clone() {
        tasks.push(tokio::spawn(send(addr.clone(), body)));
    }
    // Kill it while the burst is being processed.
    loop {
        let done = app.count("checkins").await;
        if done >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await.unwrap(), Ok(StatusCode::OK)) {
            failed += 1;
        }
    }
    let before = app.count("checkins").await;
    assert!(
        before < N as i64 && failed > 0,
        "the kill landed mid-burst ({before} check-ins, {failed} failed deliveries)"
    );

    // Restart and retry everything, as a bridge does.
    let (_child, addr) = start().await;
    for body in &deliveries {
        assert_eq!(send(addr.clone(), body.clone()).await.unwrap(), StatusCode::OK);
    }
    let (checkins, members, entries, orphans): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM checkins), (SELECT count(DISTINCT member_id) FROM checkins), (SELECT count(*) FROM points_ledger),
                (SELECT count(*) FROM checkins c WHERE NOT EXISTS (SELECT 1 FROM points_ledger l WHERE l.reference = 'checkin:' || c.id))",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        (checkins, members, entries, orphans),
        (N as i64, N as i64, N as i64, 0),
        "one check-in and one entry each"
    );
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM points_accounts a WHERE a.balance <> (SELECT COALESCE(sum(delta), 0) FROM points_ledger l WHERE l.member_id = a.member_id)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(bad, 0, "balance == sum(ledger)");
}

#[tokio::test]
async fn a_checkins_ledger_key_is_the_key_the_typed_constructor_builds() {
    let app = TestApp::spawn().await;
    sqlx::query("INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('Room', 'qq', 500, 'room-1')")
        .execute(&app.db)
        .await
        .unwrap();
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'qq', 'Hub', 'hub-secret') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let ev = json!({"event_id": "e1", "kind": "checkin", "group_id": "room-1", "member_id": "ann",
                    "display_name": "Ann", "timestamp": chrono::Utc::now().timestamp()});
    let (s, r) = crate::harness::post_generic(&app, bridge, "hub-secret", ev).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (member, group, day, key, kind): (i64, i64, chrono::NaiveDate, String, String) = sqlx::query_as(
        "SELECT l.member_id, c.group_id, c.day, l.idempotency_key, l.kind FROM points_ledger l
         JOIN checkins c ON l.reference = 'checkin:' || c.id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(kind, shoal::domain::points::LedgerKind::Checkin.as_str());
    assert_eq!(key, shoal::domain::points::IdempotencyKey::checkin(member, group, day).as_str());
}
