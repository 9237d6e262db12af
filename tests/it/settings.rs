//! Settings: operators and their scopes, API tokens, the audit log, one's password and language.

use reqwest::StatusCode;

use crate::harness::{client, TestApp, PASSWORD};

#[tokio::test]
async fn an_admin_creates_a_scoped_operator_who_sees_only_those_groups() {
    let app = TestApp::spawn().await;
    let g1 = app.group("Alpha-one").await;
    let g2 = app.group("Bravo-two").await;
    let c = app.admin().await;
    let page = "/settings/operators/new";
    let g1s = g1.to_string();
    let r = app
        .post_form(
            &c,
            page,
            page,
            &[("username", "olga"), ("password", "olga-secret-pw"), ("role", "operator"), ("groups", &g1s)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let scoped: Vec<i64> = sqlx::query_scalar(
        "SELECT group_id FROM operator_groups og JOIN operators o ON o.id = og.operator_id WHERE o.username = 'olga'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(scoped, vec![g1]);
    let olga = client();
    assert_eq!(app.login(&olga, "olga", "olga-secret-pw").await.status(), StatusCode::SEE_OTHER);
    let list = olga.get(app.url("/groups")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("Alpha-one") && !list.contains("Bravo-two"));
    assert_eq!(olga.get(app.url(&format!("/groups/{g2}"))).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_operator_input_is_shown_again_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let page = "/settings/operators/new";
    let r =
        app.post_form(&c, page, page, &[("username", "-bad name"), ("password", "short"), ("role", "wizard")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for f in ["username", "password", "role"] {
        assert!(body.contains(&format!("id=\"err-{f}\"")), "{f}");
    }
    assert!(body.contains("value=\"-bad name\""));
    let r = app
        .post_form(&c, page, page, &[("username", "admin"), ("password", "long enough pw"), ("role", "viewer")])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "duplicate username");
    assert!(r.text().await.unwrap().contains("This username is taken."));
    assert_eq!(app.count("operators").await, 1);
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_disabled() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let id: i64 =
        sqlx::query_scalar("SELECT id FROM operators WHERE username = 'admin'").fetch_one(&app.db).await.unwrap();
    let page = format!("/settings/operators/{id}");
    let r = app.post_form(&c, &page, &page, &[("role", "viewer")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.post_form(&c, &page, &page, &[("role", "admin"), ("disabled", "on")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (role, disabled): (String, bool) =
        sqlx::query_as("SELECT role, disabled_at IS NOT NULL FROM operators WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((role.as_str(), disabled), ("admin", false));
}

#[tokio::test]
async fn an_api_token_is_shown_once_stored_hashed_works_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_form(
            &c,
            "/settings/tokens",
            "/settings/tokens",
            &[("username", "crm sync"), ("role", "viewer"), ("all_groups", "on")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = r.text().await.unwrap();
    let start = body.find("id=\"new-token\">").expect("token shown") + "id=\"new-token\">".len();
    let secret = body[start..start + body[start..].find('<').unwrap()].to_string();
    assert!(secret.starts_with("shoal_") && secret.len() > 40);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_tokens WHERE position($1 IN encode(token_hash, 'escape')) > 0 OR prefix = $1",
    )
    .bind(&secret)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 0, "the secret itself is not stored");
    // Not shown again.
    assert!(!c.get(app.url("/settings/tokens")).send().await.unwrap().text().await.unwrap().contains(&secret));
    let api = |s: &str| client().get(app.url("/api/v1/groups")).bearer_auth(s.to_string()).send();
    assert_eq!(api(&secret).await.unwrap().status(), StatusCode::OK);
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens").fetch_one(&app.db).await.unwrap();
    let r = app.post_form(&c, "/settings/tokens", &format!("/settings/tokens/{id}/revoke"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(api(&secret).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_audit_log_page_shows_who_changed_what() {
    let app = TestApp::spawn().await;
    // Someone other than the reader makes the change: the page header always shows the reader's
    // own name, so only the audit row can show this one.
    let olga = app.login_as("olga", "operator", true, &[]).await;
    let r = app
        .post_multipart(&olga, "/groups/new", "/groups/new", &[("name", "Audited"), ("platform", "qq")], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let c = app.admin().await;
    let body = c.get(app.url("/settings/audit")).send().await.unwrap().text().await.unwrap();
    let rows: Vec<&str> = body.split("<tr>").filter(|row| row.contains("Audited")).collect();
    assert_eq!(rows.len(), 1, "one audit row names the group");
    assert!(rows[0].contains("olga") && rows[0].contains("group.create"), "who did what: {}", rows[0]);
}

#[tokio::test]
async fn changing_ones_password_needs_the_current_one() {
    let app = TestApp::spawn().await;
    let c = app.login_as("alice", "operator", true, &[]).await;
    let r = app
        .post_form(
            &c,
            "/settings",
            "/settings/password",
            &[("current", "not it at all"), ("password", "new password 1"), ("password_confirm", "new password 1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-current\""));
    let r = app
        .post_form(
            &c,
            "/settings",
            "/settings/password",
            &[("current", PASSWORD), ("password", "new password 1"), ("password_confirm", "new password 1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.login(&client(), "alice", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&client(), "alice", "new password 1").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_language_follows_the_operator_setting_then_accept_language() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let en = c.get(app.url("/groups")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("<html lang=\"en\"") && en.contains(">Groups<"));
    let zh = c.get(app.url("/groups")).header("accept-language", "zh-CN").send().await.unwrap().text().await.unwrap();
    assert!(zh.contains("<html lang=\"zh-CN\"") && zh.contains(">群组<"));
    let r = app.post_form(&c, "/settings", "/language", &[("lang", "zh-CN"), ("next", "/groups")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let lang: Option<String> =
        sqlx::query_scalar("SELECT language FROM operators WHERE username = 'admin'").fetch_one(&app.db).await.unwrap();
    assert_eq!(lang.as_deref(), Some("zh-CN"));
    // The operator's setting wins over the browser's header.
    let body = c.get(app.url("/groups")).header("accept-language", "en").send().await.unwrap().text().await.unwrap();
    assert!(body.contains(">群组<"));
}
