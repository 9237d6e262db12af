//! Durable jobs: enqueued with the change that causes them, run once across processes, retried
//! with backoff, re-run after a crashed claim, dead after their last attempt, and visible and
//! actionable for admins (Settings → Jobs and `/api/v1/jobs`). Also the outbound rule every
//! job's HTTP call obeys: no internal addresses and no redirects unless configured.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode as S;
use serde_json::json;
use shoal::store::jobs::{self as store, JobKind, JobState};

use crate::alerts::{local_webhooks, receiver, wait_for};
use crate::harness::TestApp;

/// Raises `n` alerts (distinct subjects) with their delivery jobs, as the alert check does.
async fn raise_alerts(app: &TestApp, config: &shoal::Config, n: i64) -> Vec<i64> {
    let conditions: Vec<shoal::alerts::Condition> = (1..=n)
        .map(|i| shoal::alerts::Condition {
            condition: shoal::alerts::Kind::Exhausted,
            subject_kind: shoal::alerts::AlertSubject::LiveCode,
            subject_id: 1000 + i,
            payload: json!({"live_code": {"id": 1000 + i, "slug": format!("c{i}"), "name": format!("code {i}")}}),
        })
        .collect();
    shoal::alerts::sync(&app.db, config, &conditions).await.expect("sync")
}

/// A process that only enqueues (it runs no jobs), with the alert webhook at `url`.
async fn enqueuing_app(url: &str) -> TestApp {
    let app = TestApp::spawn_with(|c| {
        c.jobs.workers = 0;
        local_webhooks(c);
    })
    .await;
    set_webhook(&app, url).await;
    app
}

async fn set_webhook(app: &TestApp, url: &str) {
    sqlx::query("UPDATE alert_settings SET webhook_url = $1").bind(url).execute(&app.db).await.unwrap();
}

async fn job_states(app: &TestApp) -> Vec<(JobState, i32, Option<String>)> {
    sqlx::query_as("SELECT state, attempts, last_error FROM jobs ORDER BY id").fetch_all(&app.db).await.unwrap()
}

async fn wait_state(app: &TestApp, want: JobState, n: i64) {
    for _ in 0..200 {
        let got: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = $1")
            .bind(want)
            .fetch_one(&app.db)
            .await
            .unwrap();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} jobs {want:?}: {:?}", job_states(app).await);
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let job = shoal::jobs::new_job(&shoal::Config::defaults(), JobKind::AlertDelivery, json!({"alert_id": 1}), None);
    let mut tx = app.db.begin().await.unwrap();
    assert!(store::enqueue(&mut tx, &job).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    assert_eq!(app.count("jobs").await, 0);
    // A dedupe key enqueues once.
    let keyed = shoal::store::jobs::NewJob { dedupe_key: Some("alert:1".into()), ..job };
    let mut conn = app.db.acquire().await.unwrap();
    assert!(store::enqueue(&mut conn, &keyed).await.unwrap().is_some());
    assert!(store::enqueue(&mut conn, &keyed).await.unwrap().is_none());
    assert_eq!(app.count("jobs").await, 1);
}

#[tokio::test]
async fn an_alert_raised_by_a_process_that_stops_is_delivered_by_the_next_one() {
    let (url, got) = receiver(vec![]).await;
    // The first process only enqueues (it runs no jobs), then stops.
    let first = enqueuing_app(&url).await;
    let config = shoal::Config::defaults();
    let raised = raise_alerts(&first, &config, 1).await;
    assert_eq!(raised.len(), 1);
    assert_eq!(job_states(&first).await, vec![(JobState::Queued, 0, None)]);
    first.stop_keep().await;
    assert!(got.lock().unwrap().is_empty());

    let second = TestApp::start_on(first.db_opts.clone(), local_webhooks).await;
    wait_for(&got, 1).await;
    wait_state(&second, JobState::Done, 1).await;
    assert_eq!(got.lock().unwrap()[0]["alert_id"], raised[0]);
    assert_eq!(job_states(&second).await, vec![(JobState::Done, 1, None)]);
}

#[tokio::test]
async fn a_job_held_by_a_process_that_died_runs_again_when_its_lease_ends() {
    let (url, got) = receiver(vec![]).await;
    let app = enqueuing_app(&url).await;
    raise_alerts(&app, &shoal::Config::defaults(), 1).await;
    // A process claims it for a short lease and dies without settling it.
    let mut conn = app.db.acquire().await.unwrap();
    let claimed = store::claim(&mut conn, "dead-process", Duration::from_millis(300), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(!claimed[0].reclaimed);
    // Nobody else may take it while the lease holds.
    assert!(store::claim(&mut conn, "other", Duration::from_secs(60), 10).await.unwrap().is_empty());
    drop(conn);
    app.stop_keep().await;

    let next = TestApp::start_on(app.db_opts.clone(), local_webhooks).await;
    wait_state(&next, JobState::Done, 1).await;
    assert_eq!(got.lock().unwrap().len(), 1);
    let (state, attempts, _) = job_states(&next).await.remove(0);
    assert_eq!((state, attempts), (JobState::Done, 2), "the dead claim counted as an attempt");
    // The dead process can no longer settle what it lost.
    let mut conn = next.db.acquire().await.unwrap();
    let id = claimed[0].job.id;
    assert_eq!(store::settle(&mut conn, id, "dead-process", &store::Settle::Done).await.unwrap(), None);
}

#[tokio::test]
async fn three_processes_run_each_of_300_jobs_exactly_once() {
    let (url, got) = receiver(vec![]).await;
    let first = enqueuing_app(&url).await;
    let raised = raise_alerts(&first, &shoal::Config::defaults(), 300).await;
    assert_eq!(raised.len(), 300);
    let apps = [
        TestApp::start_on(first.db_opts.clone(), local_webhooks).await,
        TestApp::start_on(first.db_opts.clone(), local_webhooks).await,
        TestApp::start_on(first.db_opts.clone(), local_webhooks).await,
    ];
    wait_state(&apps[0], JobState::Done, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = got.lock().unwrap().clone();
    let mut per_alert: HashMap<i64, usize> = HashMap::new();
    for c in &calls {
        *per_alert.entry(c["alert_id"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(per_alert.len(), 300, "every alert delivered");
    assert!(per_alert.values().all(|n| *n == 1), "no alert delivered twice");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM alert_deliveries").fetch_one(&first.db).await.unwrap();
    assert_eq!(logged, 300);
    for a in apps {
        a.stop().await;
    }
}

/// Idle runners hear of a job from the process that enqueued it, long before they would poll
/// again (60 s here): the NOTIFY is sent after the enqueuing transaction, by the process's
/// nudger, not by a trigger inside the transaction (whose commit would wait on it).
#[tokio::test]
async fn a_job_enqueued_by_another_process_runs_without_waiting_for_a_poll() {
    let (url, got) = receiver(vec![]).await;
    let first = enqueuing_app(&url).await;
    let runner = TestApp::start_on(first.db_opts.clone(), |c| {
        local_webhooks(c);
        c.jobs.poll_ms = 60_000;
    })
    .await;
    let triggers: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'jobs'::regclass")
        .fetch_one(&first.db)
        .await
        .unwrap();
    assert_eq!(triggers, 0, "no trigger notifies inside the enqueuing transaction");
    // The runner's first look at the queue, at its start, found nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raised = raise_alerts(&first, &shoal::Config::defaults(), 1).await;
    wait_for(&got, 1).await;
    assert_eq!(got.lock().unwrap()[0]["alert_id"], raised[0]);
    wait_state(&runner, JobState::Done, 1).await;
    runner.stop().await;
}

#[tokio::test]
async fn a_failing_delivery_backs_off_dies_after_its_attempts_and_an_admin_can_retry_it() {
    let (url, got) = receiver(vec![500, 503, 500]).await;
    let app = TestApp::spawn_with(|c| {
        c.alerts.retry_delays_ms = vec![50, 50];
        local_webhooks(c);
    })
    .await;
    set_webhook(&app, &url).await;
    let config = {
        let mut c = shoal::Config::defaults();
        c.alerts.retry_delays_ms = vec![50, 50];
        c
    };
    raise_alerts(&app, &config, 1).await;
    wait_state(&app, JobState::Dead, 1).await;
    assert_eq!(got.lock().unwrap().len(), 3, "one attempt and two retries");
    assert_eq!(job_states(&app).await, vec![(JobState::Dead, 3, Some("HTTP 500".into()))]);
    let log: Vec<(i32, Option<i32>)> = sqlx::query_as("SELECT attempt, status_code FROM alert_deliveries ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(log, vec![(1, Some(500)), (2, Some(503)), (3, Some(500))]);

    // The admin sees it under Settings → Jobs, in Chinese, and sends it round again.
    let c = app.admin().await;
    let page = c.get(app.url("/settings/jobs?state=dead")).header("accept-language", "zh-CN").send().await.unwrap();
    assert_eq!(page.status(), S::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("已放弃") && html.contains("推送告警到网址") && html.contains("HTTP 500"), "{html}");
    let id: i64 = sqlx::query_scalar("SELECT id FROM jobs").fetch_one(&app.db).await.unwrap();
    let r = app.post_form(&c, "/settings/jobs", &format!("/settings/jobs/{id}/retry"), &[]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    wait_state(&app, JobState::Done, 1).await;
    assert_eq!(got.lock().unwrap().len(), 4);
    let audit: (String, String, String) =
        sqlx::query_as("SELECT action, target_kind, target_id FROM audit_log WHERE action LIKE 'job.%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, ("job.retry".into(), "job".into(), id.to_string()));
    // Retrying a finished job is refused and changes nothing.
    let r = app.post_form(&c, "/settings/jobs", &format!("/settings/jobs/{id}/retry"), &[]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    assert_eq!(job_states(&app).await[0].0, JobState::Done);
    // A refreshed action URL shows the list instead of an error.
    let r = c.get(app.url(&format!("/settings/jobs/{id}/retry"))).send().await.unwrap();
    assert_eq!(r.status(), S::SEE_OTHER);
}

#[tokio::test]
async fn the_api_lists_retries_and_cancels_jobs_with_the_same_audit_as_the_page() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let mut conn = app.db.acquire().await.unwrap();
    let config = shoal::Config::defaults();
    let mut ids = Vec::new();
    for i in 0..3 {
        let job = shoal::jobs::new_job(&config, JobKind::AlertDelivery, json!({"alert_id": i}), None);
        ids.push(store::enqueue(&mut conn, &job).await.unwrap().unwrap());
    }
    sqlx::query("UPDATE jobs SET state = 'dead', attempts = 4, last_error = 'HTTP 500' WHERE id = ANY($1)")
        .bind(&ids[..2])
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let admin = app.token("admin", true, &[]).await;
    let viewer = app.token("viewer", true, &[]).await;
    let http = reqwest::Client::new();

    let r = http.get(app.url("/api/v1/jobs?state=dead")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let listed: Vec<i64> = body["items"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, vec![ids[1], ids[0]], "dead jobs, newest first");
    assert_eq!(body["items"][0]["state"], "dead");
    assert_eq!(body["items"][0]["kind"], "alert_delivery");

    let r = http.get(app.url("/api/v1/jobs")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(r.status(), S::FORBIDDEN);
    let r = http.post(app.url(&format!("/api/v1/jobs/{}/retry", ids[0]))).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(r.status(), S::FORBIDDEN);
    let r = http.get(app.url("/api/v1/jobs?state=bogus")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::BAD_REQUEST);

    // Retry one dead job through the API and the other through the page: same rows, same audit.
    let r = http.post(app.url(&format!("/api/v1/jobs/{}/retry", ids[0]))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::OK);
    let c = app.admin().await;
    let r = app.post_form(&c, "/settings/jobs", &format!("/settings/jobs/{}/retry", ids[1]), &[]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let rows: Vec<(JobState, i32)> = sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = ANY($1) ORDER BY id")
        .bind(&ids[..2])
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, vec![(JobState::Queued, 0), (JobState::Queued, 0)]);
    let audit: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT action, target_kind, details FROM audit_log WHERE action LIKE 'job.%' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0], audit[1], "API and page write the same audit entry");

    // Cancel the queued one; a second cancel is a conflict; an unknown job is a 404.
    let r = http.post(app.url(&format!("/api/v1/jobs/{}/cancel", ids[2]))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::OK);
    let r = http.post(app.url(&format!("/api/v1/jobs/{}/cancel", ids[2]))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::CONFLICT);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http.post(app.url("/api/v1/jobs/999999/cancel")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), S::NOT_FOUND);
    let spec: serde_json::Value = http.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/api/v1/jobs/{id}/retry"]["post"].is_object());
}

#[tokio::test]
async fn only_admins_see_the_jobs_page() {
    let app = TestApp::spawn_with(|c| c.jobs.workers = 0).await;
    let c = app.login_as("olga", "operator", true, &[]).await;
    let r = c.get(app.url("/settings/jobs")).send().await.unwrap();
    assert_eq!(r.status(), S::FORBIDDEN);
}

#[tokio::test]
async fn a_webhook_inside_the_network_is_refused_on_save_and_never_called() {
    let (url, got) = receiver(vec![]).await;
    let app = TestApp::spawn_with(|c| c.jobs.poll_ms = 50).await;
    let c = app.admin().await;
    let r = app.post_form(&c, "/settings/alerts", "/settings/alerts", &[("webhook_url", &url)]).await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("private network"));
    for inside in ["http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/", "http://localhost/"] {
        let r = app.post_form(&c, "/settings/alerts", "/settings/alerts", &[("webhook_url", inside)]).await;
        assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY, "{inside}");
    }
    let stored: Option<String> =
        sqlx::query_scalar("SELECT webhook_url FROM alert_settings").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, None);

    // Stored anyway (an older install, or by hand): the delivery refuses it and gives up at once.
    set_webhook(&app, &url).await;
    raise_alerts(&app, &shoal::Config::defaults(), 1).await;
    wait_state(&app, JobState::Dead, 1).await;
    assert!(got.lock().unwrap().is_empty(), "the internal address was never called");
    let (_, attempts, error) = job_states(&app).await.remove(0);
    assert_eq!(attempts, 1);
    assert!(error.unwrap().contains("private"));
}

#[tokio::test]
async fn a_webhook_that_redirects_is_not_followed() {
    let (target, got) = receiver(vec![]).await;
    let redirector = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let target = target.clone();
            async move { (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });
    let app = TestApp::spawn_with(|c| {
        c.alerts.retry_delays_ms = vec![];
        local_webhooks(c);
    })
    .await;
    set_webhook(&app, &format!("http://{addr}/hook")).await;
    let mut config = shoal::Config::defaults();
    config.alerts.retry_delays_ms = vec![];
    raise_alerts(&app, &config, 1).await;
    wait_state(&app, JobState::Dead, 1).await;
    assert!(got.lock().unwrap().is_empty(), "the redirect target was never called");
    let log: Vec<(Option<i32>, bool)> =
        sqlx::query_as("SELECT status_code, succeeded FROM alert_deliveries").fetch_all(&app.db).await.unwrap();
    assert_eq!(log, vec![(Some(307), false)]);
}
