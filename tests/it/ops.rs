//! Health, readiness, metrics, static assets, limits and error pages.

use reqwest::StatusCode;

use crate::harness::{client, TestApp};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let r = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap().trim(), "ok");
    let r = client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db.close().await;
    let r = client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_the_pool() {
    let app = TestApp::spawn().await;
    let c = client();
    for _ in 0..3 {
        c.get(app.url("/login")).send().await.unwrap();
    }
    let body = c.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total") && l.contains("route=\"/login\"") && l.contains("status=\"200\"")
        })
        .expect("a counter for /login");
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{line}");
    assert!(body.contains("http_request_duration_seconds_bucket"));
    assert!(body.contains("db_pool_connections"));
    assert!(!body.contains("/groups/1"), "routes, not raw paths");

    // Webhooks are counted under their route whether the connection's fast path answered them
    // (a plain path) or the router (a percent-encoded one).
    let hooks_404 = |body: &str| -> f64 {
        body.lines()
            .filter(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains("route=\"/hooks/{kind}/{bridge_id}\"")
                    && l.contains("status=\"404\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let before = hooks_404(&body);
    for path in ["/hooks/onebot11/987654321", "/hooks/onebot1%31/987654321"] {
        let r = c.post(app.url(path)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let body = c.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(hooks_404(&body) >= before + 2.0, "both webhooks counted");
}

#[tokio::test]
async fn unknown_pages_get_a_localised_404_that_reveals_nothing() {
    let app = TestApp::spawn().await;
    let r = client().get(app.url("/no/such/page")).header("accept-language", "zh-CN,zh;q=0.9").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains("页面不存在"));
    assert!(!body.to_lowercase().contains("sqlx") && !body.contains("panicked"));
    let r = client().get(app.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_form_over_one_mebibyte_is_refused_with_413() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let csrf = app.csrf(&c, "/members/new").await;
    let big = "x".repeat(1024 * 1024 + 1);
    let r = c
        .post(app.url("/members/new"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("platform", "qq"),
            ("external_user_id", "1"),
            ("display_name", "A"),
            ("notes", &big),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("members").await, 0);
}

#[tokio::test]
async fn static_assets_are_vendored_and_cacheable() {
    let app = TestApp::spawn().await;
    let c = client();
    for (path, ty) in [("/static/app.css", "text/css"), ("/static/htmx.min.js", "text/javascript")] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ty));
        let etag = r.headers()["etag"].clone();
        assert!(!r.bytes().await.unwrap().is_empty());
        let r = c.get(app.url(path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    // Pages link only local assets: the UI works offline.
    let body = c.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(!body.contains("https://") && !body.contains("http://cdn"), "no CDN links");
}

#[tokio::test]
async fn a_graceful_stop_returns_and_frees_the_port() {
    let app = TestApp::spawn().await;
    let addr = app.addr;
    app.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}

#[tokio::test]
async fn a_server_error_shows_a_page_that_reveals_nothing_internal() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    app.db.close().await;
    let r = c.get(app.url("/groups")).send().await.unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains("Something went wrong"));
    for leak in ["pool", "sqlx", "closed", "postgres", "panicked"] {
        assert!(!body.to_lowercase().contains(leak), "leaks {leak}");
    }
}
