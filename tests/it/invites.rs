//! Invites and campaigns (invariant 4): no self-invites, one credited inviter per invitee and
//! campaign under concurrency, two levels of reward and never a third, reversal inside the hold
//! period with a compensating entry (balance == sum(ledger), floored at zero), confirmation
//! after the hold exactly once (also with a second process), no credit for a re-join, and the
//! page and the API creating the same campaign.
//!
//! The test clock: the hold is measured only by the database's clock against stored instants
//! (`invite_records.joined_at` / `hold_until` and the confirmation job's `jobs.run_at`), so a
//! test "lets days pass" by moving those instants back ([`let_days_pass`]); the runner then
//! finds the job due, as it would after a real wait or a restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{post_generic, post_hook, TestApp};

const SECRET: &str = "invite-secret";

/// Fast job polling, and event times trusted as given (the reversal test sends past times).
fn config(c: &mut shoal::Config) {
    c.jobs.poll_ms = 50;
    c.bridges.event_time_tolerance_secs = 0;
}

/// A generic bridge, a linked group and a campaign over it: one confirmed invite → 10 points,
/// three → 30 more; 5 points to the inviter's inviter; hold 3 days.
async fn setup(app: &TestApp) -> (i64, i64, i64) {
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'other', 'b', $1) RETURNING id",
    )
    .bind(SECRET)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ('Yoga', 'other', 500, 'chat-1', $1) RETURNING id",
    )
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "Spring", "group_ids": [group], "hold_days": 3, "level2_points": 5,
            "stages": [{"invites": 1, "points": 10}, {"invites": 3, "points": 30, "tag": "ambassador"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let c: Value = r.json().await.unwrap();
    (bridge, group, c["id"].as_i64().unwrap())
}

async fn join(app: &TestApp, bridge: i64, event: &str, member: &str, inviter: Option<&str>, at: Option<i64>) {
    let mut ev = json!({"event_id": event, "kind": "join", "group_id": "chat-1", "member_id": member});
    if let Some(i) = inviter {
        ev["inviter"] = json!(i);
    }
    if let Some(t) = at {
        ev["timestamp"] = json!(t);
    }
    let (s, r) = post_generic(app, bridge, SECRET, ev).await;
    assert!(s.is_success(), "{s} {r}");
}

async fn leave(app: &TestApp, bridge: i64, event: &str, member: &str, at: Option<i64>) {
    let mut ev = json!({"event_id": event, "kind": "leave", "group_id": "chat-1", "member_id": member});
    if let Some(t) = at {
        ev["timestamp"] = json!(t);
    }
    let (s, r) = post_generic(app, bridge, SECRET, ev).await;
    assert!(s.is_success(), "{s} {r}");
}

async fn member(app: &TestApp, ext: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = $1").bind(ext).fetch_one(&app.db).await.unwrap()
}

/// (state, reason) of every record of the invitee, oldest first.
async fn records_of(app: &TestApp, invitee: &str) -> Vec<(String, Option<String>, String)> {
    sqlx::query_as(
        "SELECT r.state, r.reason, a.external_user_id FROM invite_records r
         JOIN members b ON b.id = r.invitee_member_id JOIN members a ON a.id = r.inviter_member_id
         WHERE b.external_user_id = $1 ORDER BY r.id",
    )
    .bind(invitee)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Lets `days` pass for the hold period: every stored instant of the invites and their
/// confirmation jobs moves back.
async fn let_days_pass(app: &TestApp, days: i64) {
    sqlx::query(
        "UPDATE invite_records SET joined_at = joined_at - $1 * interval '1 day', hold_until = hold_until - $1 * interval '1 day'",
    )
    .bind(days)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE jobs SET run_at = run_at - $1 * interval '1 day' WHERE kind = 'invite_confirm' AND state = 'queued'",
    )
    .bind(days)
    .execute(&app.db)
    .await
    .unwrap();
}

/// Waits until no confirmation job is due and unfinished.
async fn settle_jobs(app: &TestApp) {
    for _ in 0..200 {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'invite_confirm' AND state IN ('queued', 'running', 'failed') AND run_at <= now()",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("confirmation jobs did not finish");
}

async fn ledger(app: &TestApp, ext: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT l.delta FROM points_ledger l JOIN members m ON m.id = l.member_id WHERE m.external_user_id = $1 ORDER BY l.id",
    )
    .bind(ext)
    .fetch_all(&app.db)
    .await
    .unwrap()
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
async fn a_member_joining_through_their_own_link_is_no_invite() {
    let app = TestApp::spawn_with(config).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('telegram', 'telegram', 'tg', 'tg-secret_1') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('TG', 'telegram', 500, '-1001') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(&token)
        .json(&json!({"name": "TG", "group_ids": [group], "stages": [{"invites": 1, "points": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Tom exists (he spoke elsewhere once) and joins through a link named with his own code.
    let (tom, code): (i64, String) = sqlx::query_as(
        "INSERT INTO members (platform, external_user_id, display_name, invite_code) VALUES ('telegram', '70', 'Tom', shoal_invite_code()) RETURNING id, invite_code",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let update = json!({"update_id": 1, "chat_member": {
        "chat": {"id": -1001, "title": "TG", "type": "supergroup"},
        "from": {"id": 70, "is_bot": false, "first_name": "Tom"}, "date": chrono::Utc::now().timestamp(),
        "old_chat_member": {"status": "left", "user": {"id": 70, "is_bot": false, "first_name": "Tom"}},
        "new_chat_member": {"status": "member", "user": {"id": 70, "is_bot": false, "first_name": "Tom"}},
        "invite_link": {"invite_link": "https://t.me/+x", "creator": {"id": 1, "is_bot": true, "first_name": "Bot"},
            "creates_join_request": false, "is_primary": false, "is_revoked": false, "name": code}}});
    let (s, _) = post_hook(
        &app,
        &format!("/hooks/telegram/{bridge}"),
        &serde_json::to_vec(&update).unwrap(),
        &[("x-telegram-bot-api-secret-token", "tg-secret_1".into())],
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let rows: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT state, reason, inviter_member_id FROM invite_records").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows, vec![("not_credited".into(), Some("self_invite".into()), tom)], "kept, never credited");
    // The generic webhook's inviter naming the member themself writes no record at all.
    let (bridge2, _, _) = setup(&app).await;
    join(&app, bridge2, "self", "sam", Some("sam"), None).await;
    assert!(records_of(&app, "sam").await.is_empty());
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    assert_eq!(app.count("points_ledger").await, 0, "no reward for a self-invite");
}

#[tokio::test]
async fn two_concurrent_joins_of_one_invitee_credit_one_inviter_once() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, _) = setup(&app).await;
    for round in 0..5 {
        let invitee = format!("newbie-{round}");
        let (ea, eb) = (format!("j-a-{round}"), format!("j-b-{round}"));
        tokio::join!(
            join(&app, bridge, &ea, &invitee, Some("alice"), None),
            join(&app, bridge, &eb, &invitee, Some("bob"), None),
        );
        let rows = records_of(&app, &invitee).await;
        let credited: Vec<_> = rows.iter().filter(|r| r.0 == "pending").collect();
        assert_eq!(credited.len(), 1, "one credited inviter: {rows:?}");
        assert_eq!(rows.len(), 2, "the other kept: {rows:?}");
        assert!(rows.iter().any(|r| r.0 == "not_credited" && r.1.as_deref() == Some("already_credited")), "{rows:?}");
    }
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    let confirmed: i64 = sqlx::query_scalar("SELECT count(*) FROM invite_records WHERE state = 'confirmed'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(confirmed, 5);
    let paid: i64 = sqlx::query_scalar("SELECT COALESCE(sum(delta), 0)::bigint FROM points_ledger")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let alice = ledger(&app, "alice").await.iter().sum::<i64>();
    let bob = ledger(&app, "bob").await.iter().sum::<i64>();
    assert_eq!(alice + bob, paid);
    assert!(paid <= 2 * 40, "each inviter paid each stage at most once: {paid}");
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn rewards_reach_two_levels_and_never_a_third() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, _) = setup(&app).await;
    // ann → ben → cat → dan
    join(&app, bridge, "1", "ben", Some("ann"), None).await;
    join(&app, bridge, "2", "cat", Some("ben"), None).await;
    join(&app, bridge, "3", "dan", Some("cat"), None).await;
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    assert_eq!(ledger(&app, "cat").await, vec![10], "cat invited dan: stage 1");
    assert_eq!(ledger(&app, "ben").await.iter().sum::<i64>(), 15, "ben: stage 1 + level 2 for dan");
    let ann = ledger(&app, "ann").await;
    assert_eq!(ann.iter().sum::<i64>(), 15, "ann: stage 1 + level 2 for cat, nothing for dan: {ann:?}");
    assert_eq!(ann.len(), 2);
    assert_eq!(ledger(&app, "dan").await, Vec::<i64>::new());
    let level2: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.external_user_id, b.external_user_id FROM invite_rewards w JOIN members a ON a.id = w.member_id
         JOIN members b ON b.id = w.stage WHERE w.level = 2 ORDER BY a.external_user_id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(level2, vec![("ann".into(), "cat".into()), ("ben".into(), "dan".into())]);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn leaving_inside_the_hold_reverses_and_takes_back_a_paid_reward_down_to_zero() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, campaign) = setup(&app).await;
    // A friend who leaves at once: reversed, never paid.
    join(&app, bridge, "j1", "quick", Some("amy"), None).await;
    leave(&app, bridge, "l1", "quick", None).await;
    assert_eq!(records_of(&app, "quick").await[0].0, "reversed");
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    assert_eq!(ledger(&app, "amy").await, Vec::<i64>::new(), "nothing paid for a reversed invite");

    // A friend whose join is reported four days late: the hold is over, the job pays amy…
    let now = chrono::Utc::now().timestamp();
    join(&app, bridge, "j2", "slow", Some("amy"), Some(now - 4 * 86_400)).await;
    settle_jobs(&app).await;
    assert_eq!(records_of(&app, "slow").await[0].0, "confirmed");
    assert_eq!(ledger(&app, "amy").await, vec![10]);
    // …amy spends 8 of them…
    let amy = member(&app, "amy").await;
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/members/{amy}/points")))
        .bearer_auth(&token)
        .header("idempotency-key", "spend-1")
        .json(&json!({"delta": -8, "kind": "adjustment", "note": "mug"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // …then the leave arrives: it happened two days ago, inside the hold.
    leave(&app, bridge, "l2", "slow", Some(now - 2 * 86_400)).await;
    assert_eq!(records_of(&app, "slow").await[0].0, "reversed");
    assert_eq!(ledger(&app, "amy").await, vec![10, -8, -2], "a compensating entry, floored at a zero balance");
    let (shortfall, reversal): (i64, Option<i64>) = sqlx::query_as(
        "SELECT shortfall, reversal_entry_id FROM invite_rewards WHERE campaign_id = $1 AND member_id = $2",
    )
    .bind(campaign)
    .bind(amy)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(shortfall, 8, "what could not be taken back is recorded");
    assert!(reversal.is_some());
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM points_accounts WHERE member_id = $1")
        .bind(amy)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(balance, 0);
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn confirmation_after_the_hold_happens_exactly_once_also_across_processes() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, _) = setup(&app).await;
    join(&app, bridge, "j1", "fay", Some("gus"), None).await;
    let (state, hold): (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT state, hold_until FROM invite_records").fetch_one(&app.db).await.unwrap();
    assert_eq!(state, "pending");
    let run_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT run_at FROM jobs WHERE kind = 'invite_confirm'").fetch_one(&app.db).await.unwrap();
    assert_eq!(run_at, hold, "the job is due when the hold ends");
    // Before the hold ends nothing happens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ledger(&app, "gus").await.is_empty());
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    assert_eq!(ledger(&app, "gus").await, vec![10]);
    // The job runs again (a crash after the commit, an admin's retry) on a second process too.
    let other = TestApp::start_on(app.db_opts.clone(), config).await;
    sqlx::query("UPDATE jobs SET state = 'queued', run_at = now(), finished_at = NULL WHERE kind = 'invite_confirm'")
        .execute(&app.db)
        .await
        .unwrap();
    settle_jobs(&app).await;
    assert_eq!(ledger(&app, "gus").await, vec![10], "confirmed and paid once");
    let confirmed: i64 = sqlx::query_scalar("SELECT count(*) FROM invite_records WHERE state = 'confirmed'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(confirmed, 1);
    other.stop().await;
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_rejoin_within_thirty_days_is_no_new_invite() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, _) = setup(&app).await;
    join(&app, bridge, "j1", "hal", Some("ivy"), None).await;
    leave(&app, bridge, "l1", "hal", None).await;
    join(&app, bridge, "j2", "hal", Some("jon"), None).await;
    let rows = records_of(&app, "hal").await;
    assert_eq!(
        rows,
        vec![
            ("reversed".into(), Some("left".into()), "ivy".into()),
            ("not_credited".into(), Some("rejoin".into()), "jon".into())
        ]
    );
    let_days_pass(&app, 4).await;
    settle_jobs(&app).await;
    assert_eq!(app.count("points_ledger").await, 0);
}

#[tokio::test]
async fn the_page_and_the_api_create_the_same_campaign_and_refuse_the_same_input() {
    let app = TestApp::spawn_with(config).await;
    let group = app.group("Yoga").await;
    let token = app.token("admin", true, &[]).await;
    let http = reqwest::Client::new();
    let api = |body: Value| http.post(app.url("/api/v1/campaigns")).bearer_auth(&token).json(&body).send();
    let r = api(json!({"name": "Spring", "group_ids": [group], "hold_days": 5, "level2_points": 2,
        "stages": [{"invites": 3, "points": 10}, {"invites": 10, "points": 50, "tag": "ambassador"}]}))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let admin = app.admin().await;
    let g = group.to_string();
    let r = app
        .post_form(
            &admin,
            "/campaigns/new",
            "/campaigns",
            &[
                ("name", "Spring"),
                ("group_ids", &g),
                ("status", "active"),
                ("hold_days", "5"),
                ("rejoin_days", "30"),
                ("level2_points", "2"),
                ("stages", "3,10\n10,50,ambassador"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    type Row = (String, Vec<i64>, i32, i32, i64, Value, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, group_ids, hold_days, rejoin_days, level2_points, stages::jsonb, status FROM campaigns ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], rows[1], "page and API wrote the same campaign");
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'campaign.create'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audits, 2);
    // The same bad input: the same fields refused, nothing written.
    let r = api(json!({"name": "", "group_ids": [group], "hold_days": 99, "stages": []})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = r.json().await.unwrap();
    let r = app
        .post_form(
            &admin,
            "/campaigns/new",
            "/campaigns",
            &[("name", ""), ("group_ids", &g), ("hold_days", "99"), ("stages", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    for field in ["name", "hold_days", "stages"] {
        assert!(problem.to_string().contains(field), "API names {field}: {problem}");
        assert!(page.contains(&format!("id=\"err-{field}\"")), "page marks {field}");
    }
    assert_eq!(app.count("campaigns").await, 2);
    // The list, the campaign page and the records page render in both languages.
    for path in ["/campaigns", "/invites", "/invites.csv"] {
        let r = admin.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_invite_command_answers_with_the_members_progress() {
    let app = TestApp::spawn_with(config).await;
    let (bridge, _, _) = setup(&app).await;
    join(&app, bridge, "j0", "kim", None, None).await;
    join(&app, bridge, "j1", "lou", Some("kim"), None).await;
    let ev = json!({"event_id": "m1", "kind": "message", "group_id": "chat-1", "member_id": "kim", "text": "/invite"});
    let (s, r) = post_generic(&app, bridge, SECRET, ev).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let text = r.to_string();
    assert!(text.contains("Spring") && text.contains("1"), "{text}");
    let checkins: i64 = sqlx::query_scalar("SELECT count(*) FROM checkins").fetch_one(&app.db).await.unwrap();
    assert_eq!(checkins, 0, "the command is no check-in");
}
