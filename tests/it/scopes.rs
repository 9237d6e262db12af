//! Findings of the security review: scope escapes (member import, live codes without targets,
//! group chat ids), the `?next=` redirect, security headers, sessions and login throttling,
//! `X-Forwarded-For` and page numbers.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::{client, location, post_generic, TestApp, PASSWORD};

const HEADER: &str = "platform,external_user_id,display_name,group_id,role,tags,notes";

/// A member in `group`, straight into the database.
async fn member_in(app: &TestApp, ext: &str, name: &str, group: i64) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name, tags, notes)
         VALUES ('qq', $1, $2, '{vip}', 'private note') RETURNING id",
    )
    .bind(ext)
    .bind(name)
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
        .bind(id)
        .bind(group)
        .execute(&app.db)
        .await
        .unwrap();
    id
}

async fn member_row(app: &TestApp, id: i64) -> (String, Vec<String>, String) {
    sqlx::query_as("SELECT display_name, tags, notes FROM members WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn groups_of(app: &TestApp, member: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT group_id FROM memberships WHERE member_id = $1 ORDER BY group_id")
        .bind(member)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// A JSON API call: status and body.
async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

// ---------------------------------------------------------------- 1. members

#[tokio::test]
async fn a_scoped_import_updates_only_members_it_sees_and_never_adopts_others() {
    let app = TestApp::spawn().await;
    let mine = app.group("Mine").await;
    let theirs = app.group("Theirs").await;
    let victim = member_in(&app, "victim", "Victim Name", theirs).await;
    let known = member_in(&app, "known", "Known", mine).await;
    let c = app.login_as("scoped", "operator", false, &[mine]).await;

    let csv = format!(
        "{HEADER}\n\
         qq,victim,Renamed,{mine},member,stolen,pwned\n\
         qq,known,Known Renamed,{mine},member,,\n\
         qq,fresh,Fresh,{mine},member,,\n"
    );
    let r = app
        .post_multipart(&c, "/members/import", "/members/import", &[], vec![("file", "m.csv", csv.into_bytes())])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("cannot be added from your groups"), "the row is reported as a conflict");
    assert!(!body.contains("Victim Name") && !body.contains("Theirs"), "nothing about the member is shown");

    // The member outside the scope is untouched and not adopted into the importer's group.
    assert_eq!(member_row(&app, victim).await, ("Victim Name".into(), vec!["vip".into()], "private note".into()));
    assert_eq!(groups_of(&app, victim).await, vec![theirs]);
    // The member the operator already sees is updated; a new one is created in their group.
    assert_eq!(member_row(&app, known).await.0, "Known Renamed");
    let fresh: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = 'fresh'").fetch_one(&app.db).await.unwrap();
    assert_eq!(groups_of(&app, fresh).await, vec![mine]);
    // And the victim's points stay out of reach.
    assert_eq!(c.get(app.url(&format!("/members/{victim}"))).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn adding_an_existing_member_from_another_scope_reveals_nothing_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let mine = app.group("Mine").await;
    let theirs = app.group("Theirs").await;
    let victim = member_in(&app, "victim", "Victim Name", theirs).await;
    let c = app.login_as("scoped", "operator", false, &[mine]).await;
    let before = app.count("memberships").await;

    let gs = mine.to_string();
    let r = app
        .post_form(
            &c,
            "/members/new",
            "/members/new",
            &[("platform", "qq"), ("external_user_id", "victim"), ("display_name", "Me"), ("group_id", &gs)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("cannot be added from your groups"), "a neutral conflict message");
    assert!(!body.contains("exists already") && !body.contains("Victim Name"));

    let token = app.token("operator", false, &[mine]).await;
    let (status, problem) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/members",
        &token,
        Some(json!({"platform": "qq", "external_user_id": "victim", "display_name": "Me", "group_id": mine})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let text = problem.to_string();
    assert!(text.contains("external_user_id") && !text.contains("exists already"), "{text}");

    assert_eq!(app.count("memberships").await, before);
    assert_eq!(member_row(&app, victim).await.0, "Victim Name");
}

// ---------------------------------------------------------------- 2. live codes

async fn create_code_ui(app: &TestApp, c: &Client, slug: &str) -> i64 {
    let r = app
        .post_multipart(
            c,
            "/live-codes/new",
            "/live-codes/new",
            &[
                ("name", slug),
                ("slug", slug),
                ("status", "active"),
                ("mode", "fill"),
                ("sticky_days", "7"),
                ("fallback_kind", "none"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "create {slug}");
    location(&r).trim_start_matches("/live-codes/").parse().unwrap()
}

#[tokio::test]
async fn a_live_code_without_targets_stays_its_owners() {
    let app = TestApp::spawn().await;
    let a = app.group("A").await;
    let b = app.group("B").await;
    let alice = app.login_as("alice", "operator", false, &[a]).await;
    let bob = app.login_as("bob", "operator", false, &[b]).await;
    let code = create_code_ui(&app, &alice, "alices").await;
    let page = format!("/live-codes/{code}");

    // Bob can neither see, take over nor repoint Alice's empty code.
    assert!(!bob.get(app.url("/live-codes")).send().await.unwrap().text().await.unwrap().contains("alices"));
    for path in [page.clone(), format!("{page}/edit"), format!("{page}/qr.png")] {
        assert_eq!(bob.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = app
        .post_form(
            &bob,
            "/live-codes",
            &format!("{page}/targets"),
            &[("group_id", &b.to_string()), ("scan_limit", "5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.post_form(&bob, "/live-codes", &format!("{page}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let bob_token = app.token("operator", false, &[b]).await;
    let (status, _) = api(
        &app,
        reqwest::Method::PATCH,
        "/api/v1/live-codes/alices",
        &bob_token,
        Some(json!({"fallback_kind": "url", "fallback_url": "https://evil.example/"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        api(&app, reqwest::Method::POST, "/api/v1/live-codes/alices/targets", &bob_token, Some(json!({"group_id": b})))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (kind, targets): (String, i64) = sqlx::query_as(
        "SELECT fallback_kind, (SELECT count(*) FROM live_code_targets WHERE live_code_id = c.id) FROM live_codes c WHERE id = $1",
    )
    .bind(code)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), targets), ("none", 0));

    // Alice still has it, adds her group, and keeps it.
    let r = app
        .post_form(&alice, &page, &format!("{page}/targets"), &[("group_id", &a.to_string()), ("scan_limit", "5")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(alice.get(app.url(&page)).send().await.unwrap().status(), StatusCode::OK);
    // An admin sees every code.
    let admin = app.admin().await;
    assert_eq!(admin.get(app.url(&page)).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn an_api_token_owns_the_codes_it_creates_and_changes_only_targets_in_its_groups() {
    let app = TestApp::spawn().await;
    let a = app.group("A").await;
    let b = app.group("B").await;
    let mine = app.token("operator", false, &[a]).await;
    let other = app.token("operator", false, &[b]).await;
    let (status, body) =
        api(&app, reqwest::Method::POST, "/api/v1/live-codes", &mine, Some(json!({"name": "Tok", "slug": "tok-code"})))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(api(&app, reqwest::Method::GET, "/api/v1/live-codes/tok-code", &mine, None).await.0, StatusCode::OK);
    assert_eq!(
        api(&app, reqwest::Method::GET, "/api/v1/live-codes/tok-code", &other, None).await.0,
        StatusCode::NOT_FOUND
    );
    let list = api(&app, reqwest::Method::GET, "/api/v1/live-codes", &other, None).await.1;
    assert_eq!(list["items"], json!([]));

    // An admin adds a target in B to the token's code: the owner sees it but cannot change it.
    let code: i64 =
        sqlx::query_scalar("SELECT id FROM live_codes WHERE slug = 'tok-code'").fetch_one(&app.db).await.unwrap();
    let foreign: i64 = sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 10) RETURNING id",
    )
    .bind(code)
    .bind(b)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let path = format!("/api/v1/live-codes/tok-code/targets/{foreign}");
    let (status, _) =
        api(&app, reqwest::Method::PATCH, &path, &mine, Some(json!({"scan_limit": 1000, "reset": true}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api(&app, reqwest::Method::DELETE, &path, &mine, None).await.0, StatusCode::NOT_FOUND);
    let limit: i32 = sqlx::query_scalar("SELECT scan_limit FROM live_code_targets WHERE id = $1")
        .bind(foreign)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(limit, 10);
}

// ---------------------------------------------------------------- 3. chat ids

fn group_fields<'a>(name: &'a str, chat: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("platform", "qq"),
        ("capacity", "500"),
        ("timezone", "Asia/Shanghai"),
        ("status", "active"),
        ("external_chat_id", chat),
    ]
}

#[tokio::test]
async fn only_operators_with_every_group_set_a_groups_chat_id() {
    let app = TestApp::spawn().await;
    let mine = app.group("Mine").await;
    sqlx::query(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('Other community', 'qq', 500, '555')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let c = app.login_as("scoped", "operator", false, &[mine]).await;
    let edit = format!("/groups/{mine}/edit");
    for chat in ["555", "999"] {
        let r = app.post_multipart(&c, &edit, &edit, &group_fields("Mine", chat), vec![]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{chat}");
        let body = r.text().await.unwrap();
        assert!(body.contains("Only an administrator can set or change the chat id"), "{chat}");
        assert!(!body.contains("already has this chat id"), "the taken message would reveal the chat");
    }
    let r = app.post_multipart(&c, "/groups/new", "/groups/new", &group_fields("New", "777"), vec![]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let token = app.token("operator", false, &[mine]).await;
    let (status, problem) = api(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/v1/groups/{mine}"),
        &token,
        Some(json!({"external_chat_id": "555"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({"name": "N", "platform": "qq", "external_chat_id": "888"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let chats: Vec<Option<String>> =
        sqlx::query_scalar("SELECT external_chat_id FROM groups ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(chats, vec![None, Some("555".into())]);

    // Other edits of their group still work, and an admin may set the chat id.
    let r = app.post_multipart(&c, &edit, &edit, &group_fields("Mine renamed", ""), vec![]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let admin = app.admin().await;
    let r = app.post_multipart(&admin, &edit, &edit, &group_fields("Mine renamed", "999"), vec![]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

async fn generic_bridge(app: &TestApp, secret: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'qq', 'bot', $1) RETURNING id",
    )
    .bind(secret)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

fn checkin(event: &str, chat: &str, user: &str) -> Value {
    json!({"event_id": event, "kind": "checkin", "group_id": chat, "member_id": user})
}

#[tokio::test]
async fn a_chat_linked_through_one_bridge_is_an_unlinked_chat_for_another() {
    let app = TestApp::spawn().await;
    let group = app.group("Linked").await;
    let first = generic_bridge(&app, "first-secret").await;
    let second = generic_bridge(&app, "second-secret").await;
    // The first bridge reports the chat; an admin links it to the group.
    let (s, _) = post_generic(&app, first, "first-secret", checkin("e1", "room-1", "ann")).await;
    assert!(s.is_success(), "{s}");
    let admin = app.admin().await;
    let page = format!("/bridges/{first}");
    let r = app
        .post_form(
            &admin,
            &page,
            &format!("{page}/chats/link"),
            &[("chat_id", "room-1"), ("group_id", &group.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The same chat id from the second bridge reaches nothing.
    let (s, _) = post_generic(&app, second, "second-secret", checkin("e2", "room-1", "mallory")).await;
    assert!(s.is_success(), "{s}");
    let in_group: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE group_id = $1")
        .bind(group)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(in_group, 0);
    assert_eq!(app.count("checkins").await, 0);
    let unlinked: Vec<i64> = sqlx::query_scalar("SELECT bridge_id FROM unlinked_chats WHERE chat_id = 'room-1'")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(unlinked, vec![second]);

    // The linking bridge's deliveries count.
    let (s, _) = post_generic(&app, first, "first-secret", checkin("e3", "room-1", "ann")).await;
    assert!(s.is_success(), "{s}");
    assert_eq!(app.count("checkins").await, 1);
}

// ---------------------------------------------------------------- 4. ?next=

#[tokio::test]
async fn next_with_a_tab_or_encoded_tab_never_leaves_the_site() {
    let app = TestApp::spawn().await;
    app.operator("alice", "operator", true, &[]).await;
    let c = client();
    let csrf = app.csrf(&c, "/login").await;
    let r = c
        .post(app.url("/login"))
        .form(&[("_csrf", csrf.as_str()), ("username", "alice"), ("password", PASSWORD), ("next", "/\t/evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    // Logged in: the login page sends a visitor on to `next` at once.
    for next in ["/%09/evil.example/", "/%5C/evil.example", "/%0d%0a/evil.example"] {
        let r = c.get(app.url(&format!("/login?next={next}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/", "{next}");
    }
    let r = c.get(app.url("/login?next=/groups%3Fpage%3D2")).send().await.unwrap();
    assert_eq!(location(&r), "/groups?page=2");
}

// ---------------------------------------------------------------- 11. headers

fn assert_security_headers(r: &reqwest::Response, what: &str, https: bool) {
    let h = r.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let csp = get("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{what}: {csp:?}");
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    assert_eq!(h.contains_key("strict-transport-security"), https, "{what}");
}

#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    sqlx::query("UPDATE groups SET join_url = 'https://qm.qq.com/q/x' WHERE id = $1")
        .bind(g)
        .execute(&app.db)
        .await
        .unwrap();
    let code: i64 = sqlx::query_scalar("INSERT INTO live_codes (slug, name) VALUES ('hdr', 'H') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 10)")
        .bind(code)
        .bind(g)
        .execute(&app.db)
        .await
        .unwrap();
    let admin = app.admin().await;
    let anon = client();
    let token = app.token("viewer", true, &[]).await;
    let checks = [
        ("admin page", admin.get(app.url("/groups")).send().await.unwrap()),
        ("login page", anon.get(app.url("/login")).send().await.unwrap()),
        ("redirect to login", anon.get(app.url("/members")).send().await.unwrap()),
        ("admin 404", admin.get(app.url("/no-such-page")).send().await.unwrap()),
        ("scan (fast path)", anon.get(app.url("/l/hdr")).send().await.unwrap()),
        ("scan (router)", anon.get(app.url("/l/hd%72")).send().await.unwrap()),
        ("unknown scan", anon.get(app.url("/l/nothing")).send().await.unwrap()),
        ("api", anon.get(app.url("/api/v1/groups")).bearer_auth(&token).send().await.unwrap()),
        ("api 401", anon.get(app.url("/api/v1/groups")).send().await.unwrap()),
        ("static", anon.get(app.url("/static/app.css")).send().await.unwrap()),
        ("health", anon.get(app.url("/healthz")).send().await.unwrap()),
        ("webhook (fast path)", anon.post(app.url("/hooks/onebot11/1")).body("{}").send().await.unwrap()),
        ("webhook (router)", anon.post(app.url("/hooks/onebot1%31/1")).body("{}").send().await.unwrap()),
    ];
    for (what, r) in &checks {
        assert_security_headers(r, what, false);
    }
    assert_eq!(checks[4].1.status(), StatusCode::FOUND, "the scan was a real scan");

    let https = TestApp::spawn_with(|c| c.session.secure = true).await;
    assert_security_headers(&client().get(https.url("/login")).send().await.unwrap(), "https login", true);
    assert_security_headers(&client().get(https.url("/l/none")).send().await.unwrap(), "https scan", true);
}

/// The CSP allows no inline script: no template may carry one (or an inline event handler).
#[test]
fn no_template_has_inline_script() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = Vec::new();
    walk(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates"), &mut files);
    assert!(files.len() > 10);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap().to_ascii_lowercase();
        for (i, _) in text.match_indices("<script") {
            let tag = &text[i..i + text[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{}: inline <script>", f.display());
        }
        for attr in [" onclick=", " onload=", " onerror=", " onsubmit=", " onchange=", " hx-on", "javascript:"] {
            assert!(!text.contains(attr), "{}: {attr}", f.display());
        }
    }
}

// ---------------------------------------------------------------- 12. sessions and throttling

async fn change_password(app: &TestApp, c: &Client) -> reqwest::Response {
    let new = "a brand new password";
    app.post_form(
        c,
        "/settings",
        "/settings/password",
        &[("current", PASSWORD), ("password", new), ("password_confirm", new)],
    )
    .await
}

#[tokio::test]
async fn a_password_change_ends_the_operators_other_sessions() {
    let app = TestApp::spawn().await;
    let here = app.login_as("alice", "operator", true, &[]).await;
    let elsewhere = client();
    assert_eq!(app.login(&elsewhere, "alice", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(elsewhere.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::OK);

    assert_eq!(change_password(&app, &here).await.status(), StatusCode::SEE_OTHER);
    let r = elsewhere.get(app.url("/groups")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the other session has ended");
    assert!(location(&r).starts_with("/login"));
    assert_eq!(here.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::OK, "this one goes on");
}

#[tokio::test]
async fn an_admin_password_reset_ends_the_operators_sessions() {
    let app = TestApp::spawn().await;
    let bob = app.login_as("bob", "operator", true, &[]).await;
    let bob_id: i64 =
        sqlx::query_scalar("SELECT id FROM operators WHERE username = 'bob'").fetch_one(&app.db).await.unwrap();
    let admin = app.admin().await;
    let page = format!("/settings/operators/{bob_id}");
    let r = app
        .post_form(
            &admin,
            &page,
            &page,
            &[("role", "operator"), ("all_groups", "on"), ("password", "reset by the admin")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(bob.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::OK);
    // Bob logs in again with the new password.
    assert_eq!(app.login(&client(), "bob", "reset by the admin").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn anonymous_login_pages_write_no_session_rows() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        let r = client().get(app.url("/login")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A failed login neither.
    app.operator("alice", "operator", true, &[]).await;
    assert_eq!(app.login(&client(), "alice", "wrong password!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("sessions").await, 0);
    // Logging in still works, and then there is a session.
    assert_eq!(app.login(&client(), "alice", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("sessions").await, 1);
}

#[tokio::test]
async fn parallel_wrong_passwords_get_no_more_checks_than_the_throttle_allows() {
    let app = TestApp::spawn().await;
    app.operator("alice", "operator", true, &[]).await;
    let mut prepared = Vec::new();
    for _ in 0..40 {
        let c = client();
        let csrf = app.csrf(&c, "/login").await;
        prepared.push((c, csrf));
    }
    let url = app.url("/login");
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(c, csrf)| {
            let url = url.clone();
            tokio::spawn(async move {
                let form = [("_csrf", csrf.as_str()), ("username", "alice"), ("password", "wrong password!")];
                c.post(url).form(&form).send().await.unwrap().status()
            })
        })
        .collect();
    let mut checked = 0;
    let mut throttled = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            s => panic!("unexpected {s}"),
        }
    }
    let max = shoal::Config::defaults().auth.throttle_max_failures;
    assert!(checked <= max, "{checked} password checks for a limit of {max}");
    assert_eq!(checked + throttled, 40);
}

// ---------------------------------------------------------------- 15. client address, page numbers

#[tokio::test]
async fn the_client_address_is_the_one_our_proxy_appended() {
    let app = TestApp::spawn_with(|c| c.auth.trust_forwarded_for = true).await;
    let c = client();
    let csrf = app.csrf(&c, "/login").await;
    // The client claims 6.6.6.6; the proxy in front of Shoal appended the address it saw.
    let r = c
        .post(app.url("/login"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
        .form(&[("_csrf", csrf.as_str()), ("username", "nobody"), ("password", "wrong password!")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ips: Vec<String> = sqlx::query_scalar("SELECT ip FROM login_failures").fetch_all(&app.db).await.unwrap();
    assert_eq!(ips, vec!["203.0.113.9".to_string()]);
}

#[tokio::test]
async fn huge_page_numbers_answer_a_page() {
    let app = TestApp::spawn().await;
    app.group("G").await;
    let c = app.admin().await;
    for path in ["/groups", "/members", "/settings/audit"] {
        for page in ["9223372036854775807", "99999999999999999999", "-5", "abc"] {
            let r = c.get(app.url(&format!("{path}?page={page}"))).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}?page={page}");
        }
    }
}
