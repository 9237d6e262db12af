//! Setup, login/logout, sessions, throttling, CSRF, and who may see what.

use reqwest::StatusCode;

use crate::harness::{client, location, TestApp, PASSWORD};

async fn setup_token(app: &TestApp) -> String {
    let token = shoal::auth::random_token(24);
    let mut conn = app.db.acquire().await.unwrap();
    shoal::store::operators::replace_setup_token(&mut conn, &shoal::auth::token_hash(&token)).await.unwrap();
    token
}

#[tokio::test]
async fn setup_page_creates_the_first_admin_once() {
    let app = TestApp::spawn().await;
    let token = setup_token(&app).await;
    let c = client();
    assert_eq!(c.get(app.url("/setup?token=wrong")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let page = format!("/setup?token={token}");
    let r = c.get(app.url(&page)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Bad input: the form comes back with messages and the typed username; nothing is written.
    let r = app
        .post_form(
            &c,
            &page,
            "/setup",
            &[("token", &token), ("username", "Boss"), ("password", "short"), ("password_confirm", "other")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("value=\"Boss\""), "typed username kept");
    assert!(body.contains("id=\"err-password\"") && body.contains("id=\"err-password_confirm\""));
    assert_eq!(app.count("operators").await, 0);

    let r = app
        .post_form(
            &c,
            &page,
            "/setup",
            &[
                ("token", &token),
                ("username", "boss"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
                ("language", "zh-CN"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    // Logged in, in the chosen language.
    let body = c.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("概览"), "dashboard in zh-CN");
    let role: String =
        sqlx::query_scalar("SELECT role FROM operators WHERE username = 'boss'").fetch_one(&app.db).await.unwrap();
    assert_eq!(role, "admin");
    // The token is spent.
    assert_eq!(client().get(app.url(&page)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("setup_tokens").await, 0);
}

#[tokio::test]
async fn login_rotates_the_session_and_logout_is_post_only() {
    let app = TestApp::spawn().await;
    app.operator("alice", "operator", true, &[]).await;
    let c = client();
    let session_cookie = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with("shoal_session="))
    };
    let before = c.get(app.url("/login")).send().await.unwrap();
    assert_eq!(session_cookie(&before), None, "an anonymous visitor gets no session");
    let r = app.login(&c, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie_before = session_cookie(&r).expect("session cookie");
    // Logging in over an existing session rotates its id.
    let r = app.post_form(&c, "/", "/login", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie_after = session_cookie(&r).expect("new session cookie");
    let id = |c: &str| c.split(';').next().unwrap().to_string();
    assert_ne!(id(&cookie_before), id(&cookie_after), "session id rotated at login");
    assert!(cookie_after.contains("HttpOnly") && cookie_after.contains("SameSite=Lax"));
    assert!(!cookie_after.contains("Secure"), "Secure only when configured");
    assert_eq!(c.get(app.url("/")).send().await.unwrap().status(), StatusCode::OK);

    // A GET of the logout URL logs nobody out: it leads back to the page with the button.
    let r = c.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/");
    assert_eq!(c.get(app.url("/")).send().await.unwrap().status(), StatusCode::OK);
    let r = app.post_form(&c, "/", "/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(app.url("/groups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=%2Fgroups");
}

#[tokio::test]
async fn secure_cookie_flag_follows_config() {
    let app = TestApp::spawn_with(|c| c.session.secure = true).await;
    app.operator("alice", "operator", true, &[]).await;
    let c = client();
    let r = c.get(app.url("/login")).send().await.unwrap();
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    // reqwest's cookie store keeps Secure cookies away from http://, so the form goes by hand.
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let r = client()
        .post(app.url("/login"))
        .header("cookie", format!("shoal_csrf={token}"))
        .form(&[("_csrf", token.as_str()), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(session.starts_with("shoal_session=") && session.contains("Secure"), "{session}");
}

#[tokio::test]
async fn sessions_live_in_postgres_and_survive_a_restart() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    assert!(app.count("sessions").await >= 1);
    let (db, opts) = (app.db.clone(), app.db_opts.clone());
    app.stop().await;
    let again = TestApp::spawn_on(db, opts).await;
    // Same cookie jar, new server process state: still logged in.
    let r = c.get(again.url("/groups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let app = TestApp::spawn().await;
    app.operator("alice", "operator", true, &[]).await;
    let a = app.login(&client(), "alice", "wrong password!").await;
    let b = app.login(&client(), "nobody", "wrong password!").await;
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.status(), StatusCode::UNAUTHORIZED);
    let strip = |s: String| s.replace(&crate::harness::csrf_in(&s).unwrap_or_default(), "");
    let (ta, tb) = (strip(a.text().await.unwrap()), strip(b.text().await.unwrap()));
    assert_eq!(ta.replace("alice", "X"), tb.replace("nobody", "X"), "same page for both failures");
}

#[tokio::test]
async fn five_failures_in_a_minute_lock_the_username_and_the_ip() {
    let app = TestApp::spawn().await;
    app.operator("alice", "operator", true, &[]).await;
    let c = client();
    for _ in 0..5 {
        assert_eq!(app.login(&c, "alice", "nope nope nope").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while locked.
    let r = app.login(&c, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // The same IP trying another username is locked too.
    app.operator("bob", "operator", true, &[]).await;
    assert_eq!(app.login(&client(), "bob", PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let before = app.count("audit_log").await;
    let r = c
        .post(app.url("/groups/new"))
        .multipart(reqwest::multipart::Form::new().text("name", "G").text("platform", "qq"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(app.url("/members/new"))
        .form(&[("_csrf", "forged"), ("platform", "qq"), ("external_user_id", "1"), ("display_name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("<html"), "an HTML error page");
    let r =
        client().post(app.url("/login")).form(&[("username", "admin"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("members").await, 0);
    assert_eq!(app.count("audit_log").await, before);
}

#[tokio::test]
async fn every_admin_page_needs_a_login() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let c = client();
    for path in [
        "/".to_string(),
        "/groups".into(),
        "/groups/new".into(),
        format!("/groups/{g}"),
        format!("/groups/{g}/edit"),
        format!("/groups/{g}/qr"),
        "/members".into(),
        "/members/new".into(),
        "/members/import".into(),
        "/members/export.csv".into(),
        "/live-codes".into(),
        "/bridges".into(),
        "/points".into(),
        "/settings".into(),
        "/settings/operators".into(),
        "/settings/tokens".into(),
        "/settings/audit".into(),
    ] {
        let r = c.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&r).starts_with("/login?next="), "{path}");
    }
}

#[tokio::test]
async fn next_only_redirects_to_local_paths() {
    let app = TestApp::spawn().await;
    app.operator("alice", "admin", true, &[]).await;
    for (next, expect) in
        [("/groups?page=2", "/groups?page=2"), ("//evil.example/x", "/"), ("https://evil.example/", "/")]
    {
        let c = client();
        let csrf = app.csrf(&c, "/login").await;
        let r = c
            .post(app.url("/login"))
            .form(&[("_csrf", csrf.as_str()), ("username", "alice"), ("password", PASSWORD), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), expect, "next={next}");
    }
}

#[tokio::test]
async fn a_scoped_operator_sees_only_their_groups() {
    let app = TestApp::spawn().await;
    let mine = app.group("Alpha-mine").await;
    let other = app.group("Bravo-theirs").await;
    let c = app.login_as("olga", "operator", false, &[mine]).await;
    let list = c.get(app.url("/groups")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("Alpha-mine") && !list.contains("Bravo-theirs"));
    for path in [format!("/groups/{other}"), format!("/groups/{other}/edit"), format!("/groups/{other}/qr")] {
        assert_eq!(c.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = app.post_form(&c, "/groups", &format!("/groups/{other}/archive"), &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let status: String =
        sqlx::query_scalar("SELECT status FROM groups WHERE id = $1").bind(other).fetch_one(&app.db).await.unwrap();
    assert_eq!(status, "active");
    assert_eq!(c.get(app.url(&format!("/groups/{mine}"))).send().await.unwrap().status(), StatusCode::OK);
    // Admin pages are for admins.
    assert_eq!(c.get(app.url("/settings/operators")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(app.url("/settings/tokens")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(app.url("/settings/audit")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_viewer_reads_but_cannot_change() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let c = app.login_as("vera", "viewer", true, &[]).await;
    assert_eq!(c.get(app.url(&format!("/groups/{g}"))).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(c.get(app.url("/groups/new")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = app.post_multipart(&c, "/groups", "/groups/new", &[("name", "X"), ("platform", "qq")], vec![]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.post_form(&c, "/groups", &format!("/groups/{g}/archive"), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("groups").await, 1);
}

#[tokio::test]
async fn a_disabled_operator_is_logged_out_at_once() {
    let app = TestApp::spawn().await;
    let c = app.login_as("dan", "operator", true, &[]).await;
    assert_eq!(c.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::OK);
    sqlx::query("UPDATE operators SET disabled_at = now() WHERE username = 'dan'").execute(&app.db).await.unwrap();
    let r = c.get(app.url("/groups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.login(&client(), "dan", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
}
