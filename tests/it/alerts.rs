//! Alerts: each condition fires once to the webhook, retries until delivered, and is logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use reqwest::StatusCode as S;

use crate::harness::TestApp;
use crate::live_codes::live_code;

pub type Calls = Arc<Mutex<Vec<serde_json::Value>>>;

/// Lets Shoal call the test's own servers on 127.0.0.1 (refused by default), and look for due
/// jobs often.
pub fn local_webhooks(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.jobs.poll_ms = 50;
}

/// A webhook receiver on 127.0.0.1:0 that answers the given statuses in turn (then 200).
pub async fn receiver(statuses: Vec<u16>) -> (String, Calls) {
    let got: Calls = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(statuses));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let (g, answers) = (g.clone(), answers.clone());
            async move {
                g.lock().unwrap().push(body.0);
                let mut a = answers.lock().unwrap();
                if a.is_empty() {
                    StatusCode::OK
                } else {
                    StatusCode::from_u16(a.remove(0)).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

pub async fn wait_for(got: &Calls, n: usize) {
    for _ in 0..100 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} webhook calls, got {}", got.lock().unwrap().len());
}

#[tokio::test]
async fn a_nearly_full_target_alerts_once_with_retries_and_a_delivery_log() {
    let (url, got) = receiver(vec![500]).await;
    let app = TestApp::spawn_with(|c| {
        c.alerts.check_interval_ms = 100;
        c.alerts.retry_delays_ms = vec![100, 100];
        local_webhooks(c);
    })
    .await;
    let c = app.admin().await;
    let r = app.post_form(&c, "/settings/alerts", "/settings/alerts", &[("webhook_url", &url)]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (_, targets) = live_code(&app, "alerting", "fill", &[("busy", 10), ("calm", 10)]).await;
    sqlx::query("UPDATE live_code_targets SET used = 9 WHERE id = $1").bind(targets[0]).execute(&app.db).await.unwrap();

    wait_for(&got, 2).await; // the first attempt answered 500, the retry 200
    tokio::time::sleep(Duration::from_millis(600)).await; // several more checks
    let calls = got.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one alert, one retry: {calls:?}");
    assert_eq!(calls[0]["condition"], "nearly_full");
    assert_eq!(calls[0]["details"]["target"]["group_name"], "busy");
    assert_eq!(calls[0], calls[1], "the retry sends the same alert");
    let log: Vec<(i32, Option<i32>, bool)> =
        sqlx::query_as("SELECT attempt, status_code, succeeded FROM alert_deliveries ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(log, vec![(1, Some(500), false), (2, Some(200), true)]);
    let page = c.get(app.url("/settings/alerts")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Nearly full") && page.contains("HTTP 500") && page.contains("Delivered"));
}

#[tokio::test]
async fn a_live_code_that_runs_dry_alerts_on_the_falling_back_scan_and_clears_when_refilled() {
    let (url, got) = receiver(vec![]).await;
    let app = TestApp::spawn_with(|c| {
        c.alerts.check_interval_ms = 60_000;
        local_webhooks(c);
    })
    .await;
    sqlx::query("UPDATE alert_settings SET webhook_url = $1").bind(&url).execute(&app.db).await.unwrap();
    let (code, targets) = live_code(&app, "dry", "fill", &[("only", 1)]).await;
    let phone = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone) Mobile")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    phone.get(app.url("/l/dry")).send().await.unwrap();
    phone.get(app.url("/l/dry")).send().await.unwrap();
    // The first scan may also raise "nearly full", whose alert can arrive first: wait for the
    // one this test is about.
    let conditions = || -> Vec<String> {
        got.lock().unwrap().iter().map(|c| c["condition"].as_str().unwrap().to_string()).collect()
    };
    for _ in 0..100 {
        if conditions().iter().any(|c| c == "exhausted") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(conditions().contains(&"exhausted".to_string()), "{:?}", conditions());
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM alerts WHERE condition = 'exhausted' AND subject_id = $1 AND cleared_at IS NULL",
    )
    .bind(code)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(open, 1);
    // Raise the limit: the next check clears the condition.
    sqlx::query("UPDATE live_code_targets SET scan_limit = 100 WHERE id = $1")
        .bind(targets[0])
        .execute(&app.db)
        .await
        .unwrap();
    // A check the scan poked may hold the open alert (checks skip locked alerts): check again
    // until one check has seen the refill.
    let cfg = shoal::Config::defaults().alerts;
    let mut cleared: i64 = 0;
    for _ in 0..50 {
        let now = shoal::alerts::current(&app.db, &cfg).await.unwrap();
        shoal::alerts::sync(&app.db, &shoal::Config::defaults(), &now).await.unwrap();
        cleared =
            sqlx::query_scalar("SELECT count(*) FROM alerts WHERE condition = 'exhausted' AND cleared_at IS NOT NULL")
                .fetch_one(&app.db)
                .await
                .unwrap();
        if cleared > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cleared, 1);
}

#[tokio::test]
async fn concurrent_checks_raise_a_condition_only_once() {
    let app = TestApp::spawn_with(|c| c.alerts.check_interval_ms = 600_000).await;
    let (_, targets) = live_code(&app, "race", "fill", &[("x", 10)]).await;
    sqlx::query("UPDATE live_code_targets SET used = 10 WHERE id = $1")
        .bind(targets[0])
        .execute(&app.db)
        .await
        .unwrap();
    let cfg = shoal::Config::defaults().alerts;
    let conditions = shoal::alerts::current(&app.db, &cfg).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (db, c) = (app.db.clone(), conditions.clone());
        let config = shoal::Config::defaults();
        tasks.push(tokio::spawn(async move { shoal::alerts::sync(&db, &config, &c).await.unwrap().len() }));
    }
    let mut raised = 0;
    for t in tasks {
        raised += t.await.unwrap();
    }
    let distinct: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts").fetch_one(&app.db).await.unwrap();
    assert_eq!(raised as i64, distinct, "each open alert raised by exactly one check");
    assert_eq!(distinct, 2, "nearly_full and exhausted");
}

#[tokio::test]
async fn a_bad_webhook_url_is_refused() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app.post_form(&c, "/settings/alerts", "/settings/alerts", &[("webhook_url", "ftp://x")]).await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-webhook_url\""));
    let url: Option<String> =
        sqlx::query_scalar("SELECT webhook_url FROM alert_settings").fetch_one(&app.db).await.unwrap();
    assert_eq!(url, None);
}
