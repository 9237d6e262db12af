//! The JSON API: bearer tokens, problem+json errors, groups and members, cursor pagination,
//! scoping, and the OpenAPI document.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::TestApp;

const PROBLEM: &str = "application/problem+json";

/// What a test looks at in an API answer.
struct Reply {
    status: StatusCode,
    content_type: String,
    location: String,
    json: Value,
}

async fn reply(r: reqwest::Response) -> Reply {
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, content_type, location) = (r.status(), header("content-type"), header("location"));
    let text = r.text().await.expect("body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
    };
    Reply { status, content_type, location, json }
}

/// Sends `body` (if any) as JSON with `Authorization: Bearer <token>`.
async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut req = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    reply(req.send().await.expect("send")).await
}

async fn get(app: &TestApp, path: &str, token: &str) -> Reply {
    call(app, Method::GET, path, token, None).await
}

/// The `field`s named in a validation problem's `errors`.
fn error_fields(problem: &Value) -> BTreeSet<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_string())
        .collect()
}

fn assert_problem(r: &Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.json);
    assert!(r.content_type.starts_with(PROBLEM), "content type {:?} for {status}", r.content_type);
    assert_eq!(r.json["status"], json!(status.as_u16()), "{}", r.json);
    assert!(r.json["type"].as_str().is_some_and(|t| !t.is_empty()), "type in {}", r.json);
    assert!(r.json["title"].as_str().is_some_and(|t| !t.is_empty()), "title in {}", r.json);
}

async fn audit_actions(app: &TestApp, target_id: i64) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, actor_kind FROM audit_log WHERE target_id = $1 ORDER BY id")
        .bind(target_id.to_string())
        .fetch_all(&app.db)
        .await
        .expect("audit")
}

// ---- authentication ----

#[tokio::test]
async fn a_request_without_a_token_gets_a_401_problem_document() {
    let app = TestApp::spawn().await;
    let r = reply(reqwest::Client::new().get(app.url("/api/v1/groups")).send().await.unwrap()).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    // Other schemes are not bearer tokens either.
    let r = reply(
        reqwest::Client::new()
            .get(app.url("/api/v1/groups"))
            .header("authorization", "Basic YWRtaW46cGFzc3dvcmQ=")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_401_names_the_bearer_scheme() {
    let app = TestApp::spawn().await;
    let r = reqwest::Client::new().get(app.url("/api/v1/members")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let app = TestApp::spawn().await;
    let good = app.token("admin", true, &[]).await;
    assert_eq!(get(&app, "/api/v1/groups", &good).await.status, StatusCode::OK);
    let wrong = format!("{good}x");
    assert_problem(&get(&app, "/api/v1/groups", &wrong).await, StatusCode::UNAUTHORIZED);
    assert_problem(&get(&app, "/api/v1/groups", "shoal_not_a_token").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    assert_eq!(get(&app, "/api/v1/groups", &token).await.status, StatusCode::OK);
    sqlx::query("UPDATE api_tokens SET revoked_at = now()").execute(&app.db).await.unwrap();
    assert_problem(&get(&app, "/api/v1/groups", &token).await, StatusCode::UNAUTHORIZED);
    // Nor may it write.
    let r = call(&app, Method::POST, "/api/v1/groups", &token, Some(json!({"name": "X", "platform": "qq"}))).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("groups").await, 0);
}

#[tokio::test]
async fn using_a_token_records_when_it_was_last_used() {
    let app = TestApp::spawn().await;
    let token = app.token("viewer", true, &[]).await;
    let before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_tokens").fetch_one(&app.db).await.unwrap();
    assert!(before.is_none());
    assert_eq!(get(&app, "/api/v1/groups", &token).await.status, StatusCode::OK);
    let after: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_tokens").fetch_one(&app.db).await.unwrap();
    assert!(after.is_some());
}

// ---- groups ----

#[tokio::test]
async fn groups_can_be_created_read_patched_and_archived_with_audit_rows() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;

    let r = call(
        &app,
        Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({
            "name": "Alpha",
            "platform": "telegram",
            "join_url": "https://t.me/+abc",
            "capacity": 300,
            "tags": ["vip", "beijing"],
            "notes": "first group",
            "external_chat_id": "-100123",
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    let id = r.json["id"].as_i64().expect("id");
    assert_eq!(r.location, format!("/api/v1/groups/{id}"));
    assert_eq!(r.json["name"], "Alpha");
    assert_eq!(r.json["platform"], "telegram");
    assert_eq!(r.json["join_url"], "https://t.me/+abc");
    assert_eq!(r.json["capacity"], 300);
    assert_eq!(r.json["tags"], json!(["vip", "beijing"]));
    assert_eq!(r.json["notes"], "first group");
    assert_eq!(r.json["external_chat_id"], "-100123");
    assert_eq!(r.json["status"], "active");
    assert_eq!(r.json["timezone"], "Asia/Shanghai");
    assert_eq!(r.json["has_qr_image"], false);
    let (name, capacity): (String, i32) =
        sqlx::query_as("SELECT name, capacity FROM groups WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!((name.as_str(), capacity), ("Alpha", 300));

    // The Location answers with the same group.
    let r = get(&app, &format!("/api/v1/groups/{id}"), &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["id"], id);
    assert_eq!(r.json["name"], "Alpha");
    assert_eq!(r.json["join_url"], "https://t.me/+abc");

    // PATCH changes what it names and keeps the rest.
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/groups/{id}"),
        &token,
        Some(json!({"name": "Alpha renamed", "capacity": 450, "status": "paused"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["name"], "Alpha renamed");
    assert_eq!(r.json["capacity"], 450);
    assert_eq!(r.json["status"], "paused");
    assert_eq!(r.json["platform"], "telegram");
    assert_eq!(r.json["join_url"], "https://t.me/+abc");
    assert_eq!(r.json["tags"], json!(["vip", "beijing"]));
    assert_eq!(r.json["notes"], "first group");
    assert_eq!(r.json["external_chat_id"], "-100123");
    let r = get(&app, &format!("/api/v1/groups/{id}"), &token).await;
    assert_eq!(r.json["name"], "Alpha renamed");
    assert_eq!(r.json["join_url"], "https://t.me/+abc");

    // DELETE archives; the row stays.
    let r = call(&app, Method::DELETE, &format!("/api/v1/groups/{id}"), &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "archived");
    let status: String =
        sqlx::query_scalar("SELECT status FROM groups WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(status, "archived");
    assert_eq!(app.count("groups").await, 1);
    // Archived groups leave the default list but are still readable.
    let list = get(&app, "/api/v1/groups", &token).await;
    assert_eq!(list.json["items"], json!([]));
    let list = get(&app, "/api/v1/groups?status=all", &token).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);

    let actions = audit_actions(&app, id).await;
    let expected: Vec<(String, String)> = ["group.create", "group.update", "group.archive"]
        .into_iter()
        .map(|a| (a.to_string(), "token".to_string()))
        .collect();
    assert_eq!(actions, expected);
}

#[tokio::test]
async fn patch_with_a_bad_field_changes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    let g = app.group("Keep me").await;
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/groups/{g}"),
        &token,
        Some(json!({"name": "New name", "join_url": "ftp://nope"})),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["join_url".to_string()]));
    let name: String =
        sqlx::query_scalar("SELECT name FROM groups WHERE id = $1").bind(g).fetch_one(&app.db).await.unwrap();
    assert_eq!(name, "Keep me");
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_missing_group_is_a_404_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    assert_problem(&get(&app, "/api/v1/groups/999999", &token).await, StatusCode::NOT_FOUND);
    let r = call(&app, Method::PATCH, "/api/v1/groups/999999", &token, Some(json!({"name": "x"}))).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    assert_problem(&call(&app, Method::DELETE, "/api/v1/groups/999999", &token, None).await, StatusCode::NOT_FOUND);
}

// ---- request validation ----

#[tokio::test]
async fn invalid_group_fields_are_all_listed_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = call(
        &app,
        Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({"name": "  ", "platform": "myspace", "capacity": 0, "join_url": "javascript:alert(1)"})),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error_fields(&r.json);
    for f in ["name", "platform", "capacity", "join_url"] {
        assert!(fields.contains(f), "{f} missing from {}", r.json);
    }
    assert_eq!(fields.len(), 4, "only the bad fields: {}", r.json);
    // Every listed field carries a readable message.
    for e in r.json["errors"].as_array().unwrap() {
        let msgs = e["messages"].as_array().expect("messages");
        assert!(!msgs.is_empty(), "{e}");
        assert!(msgs.iter().all(|m| m.as_str().is_some_and(|s| !s.is_empty() && !s.starts_with("error."))), "{e}");
    }
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/groups"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"name": "A", "platform": "#)
        .send()
        .await
        .unwrap();
    assert_problem(&reply(r).await, StatusCode::BAD_REQUEST);
    assert_eq!(app.count("groups").await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let g = app.group("G").await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/groups"))
        .bearer_auth(&token)
        .form(&[("name", "A"), ("platform", "qq")])
        .send()
        .await
        .unwrap();
    assert_problem(&reply(r).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = reqwest::Client::new()
        .patch(app.url(&format!("/api/v1/groups/{g}")))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(r#"{"name": "B"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(&reply(r).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.count("groups").await, 1);
    let name: String =
        sqlx::query_scalar("SELECT name FROM groups WHERE id = $1").bind(g).fetch_one(&app.db).await.unwrap();
    assert_eq!(name, "G");
}

#[tokio::test]
async fn an_unknown_field_is_a_422_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = call(
        &app,
        Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({"name": "A", "platform": "qq", "colour": "blue"})),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.json["detail"].as_str().is_some_and(|d| d.contains("colour")), "detail names the field: {}", r.json);
    // A field of the wrong type too.
    let r = call(&app, Method::POST, "/api/v1/groups", &token, Some(json!({"name": "A", "capacity": "lots"}))).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let r = call(&app, Method::POST, "/api/v1/members", &token, Some(json!({"platform": "qq", "nickname": "x"}))).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("members").await, 0);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let notes = "x".repeat(1024 * 1024 + 1);
    let r = call(
        &app,
        Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({"name": "Big", "platform": "qq", "notes": notes})),
    )
    .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("groups").await, 0);
    // Just under the limit is read (and then refused for its content, not its size).
    let notes = "x".repeat(1024 * 1000);
    let r = call(
        &app,
        Method::POST,
        "/api/v1/groups",
        &token,
        Some(json!({"name": "Big", "platform": "qq", "notes": notes})),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["notes".to_string()]));
}

#[tokio::test]
async fn a_bad_cursor_or_limit_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    for path in [
        "/api/v1/groups?cursor=garbage!",
        "/api/v1/groups?cursor=aWQ6eHl6", // base64 of "id:xyz"
        "/api/v1/groups?limit=0",
        "/api/v1/groups?limit=201",
        "/api/v1/groups?limit=-5",
        "/api/v1/members?cursor=%%%",
        "/api/v1/members?limit=0",
    ] {
        let r = get(&app, path, &token).await;
        assert_problem(&r, StatusCode::BAD_REQUEST);
        assert!(r.json["detail"].as_str().is_some(), "{path}: {}", r.json);
    }
    assert_eq!(get(&app, "/api/v1/groups?limit=200", &token).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/api/v1/groups?limit=1", &token).await.status, StatusCode::OK);
}

// ---- pagination ----

#[tokio::test]
async fn cursor_pagination_visits_every_group_exactly_once() {
    let app = TestApp::spawn().await;
    let token = app.token("viewer", true, &[]).await;
    sqlx::query(
        "INSERT INTO groups (name, platform, capacity) SELECT 'Group ' || i, 'qq', 500 FROM generate_series(1, 120) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM groups ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(all.len(), 120);

    let mut seen: Vec<i64> = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/api/v1/groups?limit=50".to_string();
    loop {
        let r = get(&app, &path, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        let items = r.json["items"].as_array().expect("items");
        sizes.push(items.len());
        seen.extend(items.iter().map(|g| g["id"].as_i64().unwrap()));
        match r.json["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/groups?limit=50&cursor={c}"),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(seen, all, "every id exactly once, in id order");

    // The default page size is 50 too.
    let r = get(&app, "/api/v1/groups", &token).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 50);
    assert!(r.json["next_cursor"].is_string());
}

#[tokio::test]
async fn member_pagination_visits_every_member_exactly_once() {
    let app = TestApp::spawn().await;
    let token = app.token("viewer", true, &[]).await;
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name)
         SELECT 'qq', (10000 + i)::text, 'M ' || i FROM generate_series(1, 75) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM members ORDER BY id").fetch_all(&app.db).await.unwrap();
    let first = get(&app, "/api/v1/members?limit=40", &token).await;
    let cursor = first.json["next_cursor"].as_str().expect("a next page").to_string();
    let second = get(&app, &format!("/api/v1/members?limit=40&cursor={cursor}"), &token).await;
    assert!(second.json["next_cursor"].is_null(), "{}", second.json);
    let seen: Vec<i64> = [&first.json, &second.json]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, all);
    // Lists carry no memberships; single reads do.
    assert!(first.json["items"][0].get("memberships").is_none());
}

// ---- scoping and roles ----

#[tokio::test]
async fn a_token_scoped_to_one_group_cannot_reach_another() {
    let app = TestApp::spawn().await;
    let g1 = app.group("Mine").await;
    let g2 = app.group("Theirs").await;
    let token = app.token("operator", false, &[g1]).await;

    assert_problem(&get(&app, &format!("/api/v1/groups/{g2}"), &token).await, StatusCode::NOT_FOUND);
    let r = call(&app, Method::PATCH, &format!("/api/v1/groups/{g2}"), &token, Some(json!({"name": "Hijacked"}))).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = call(&app, Method::DELETE, &format!("/api/v1/groups/{g2}"), &token, None).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let (name, status): (String, String) =
        sqlx::query_as("SELECT name, status FROM groups WHERE id = $1").bind(g2).fetch_one(&app.db).await.unwrap();
    assert_eq!((name.as_str(), status.as_str()), ("Theirs", "active"));

    let list = get(&app, "/api/v1/groups", &token).await;
    let ids: Vec<i64> = list.json["items"].as_array().unwrap().iter().map(|g| g["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![g1]);
    let list = get(&app, "/api/v1/groups?status=all&q=Theirs", &token).await;
    assert_eq!(list.json["items"], json!([]));

    // Its own group is fully usable.
    assert_eq!(get(&app, &format!("/api/v1/groups/{g1}"), &token).await.status, StatusCode::OK);
    let r = call(&app, Method::PATCH, &format!("/api/v1/groups/{g1}"), &token, Some(json!({"notes": "ok"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["notes"], "ok");
}

#[tokio::test]
async fn a_scoped_token_can_use_a_group_it_creates() {
    let app = TestApp::spawn().await;
    let g1 = app.group("Mine").await;
    let token = app.token("operator", false, &[g1]).await;
    let r = call(&app, Method::POST, "/api/v1/groups", &token, Some(json!({"name": "New", "platform": "qq"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["id"].as_i64().unwrap();
    assert_eq!(get(&app, &format!("/api/v1/groups/{id}"), &token).await.status, StatusCode::OK);
    let list = get(&app, "/api/v1/groups", &token).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_viewer_token_reads_but_cannot_write() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let m: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'Vic') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let token = app.token("viewer", true, &[]).await;

    assert_eq!(get(&app, &format!("/api/v1/groups/{g}"), &token).await.status, StatusCode::OK);
    assert_eq!(get(&app, &format!("/api/v1/members/{m}"), &token).await.status, StatusCode::OK);
    let writes = [
        (Method::POST, "/api/v1/groups".to_string(), Some(json!({"name": "X", "platform": "qq"}))),
        (Method::PATCH, format!("/api/v1/groups/{g}"), Some(json!({"name": "Changed"}))),
        (Method::DELETE, format!("/api/v1/groups/{g}"), None),
        (
            Method::POST,
            "/api/v1/members".to_string(),
            Some(json!({"platform": "qq", "external_user_id": "2", "display_name": "N"})),
        ),
        (Method::PATCH, format!("/api/v1/members/{m}"), Some(json!({"display_name": "Changed"}))),
        (Method::DELETE, format!("/api/v1/members/{m}"), None),
    ];
    for (method, path, body) in writes {
        let r = call(&app, method.clone(), &path, &token, body).await;
        assert_problem(&r, StatusCode::FORBIDDEN);
    }
    let (name, status): (String, String) =
        sqlx::query_as("SELECT name, status FROM groups WHERE id = $1").bind(g).fetch_one(&app.db).await.unwrap();
    assert_eq!((name.as_str(), status.as_str()), ("G", "active"));
    let display: String =
        sqlx::query_scalar("SELECT display_name FROM members WHERE id = $1").bind(m).fetch_one(&app.db).await.unwrap();
    assert_eq!(display, "Vic");
    assert_eq!(app.count("groups").await, 1);
    assert_eq!(app.count("members").await, 1);
    assert_eq!(app.count("audit_log").await, 0);
}

// ---- members ----

async fn create_member(app: &TestApp, token: &str, body: Value) -> Reply {
    call(app, Method::POST, "/api/v1/members", token, Some(body)).await
}

#[tokio::test]
async fn a_member_created_with_a_group_shows_the_membership() {
    let app = TestApp::spawn().await;
    let g = app.group("Readers").await;
    let token = app.token("operator", true, &[]).await;
    let r = create_member(
        &app,
        &token,
        json!({"platform": "qq", "external_user_id": " 10001 ", "display_name": "Alice", "tags": ["vip"],
               "group_id": g, "role": "admin"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["id"].as_i64().expect("id");
    assert_eq!(r.location, format!("/api/v1/members/{id}"));
    assert_eq!(r.json["external_user_id"], "10001", "trimmed");
    assert_eq!(r.json["display_name"], "Alice");
    assert_eq!(r.json["platform"], "qq");
    assert_eq!(r.json["tags"], json!(["vip"]));

    let r = get(&app, &format!("/api/v1/members/{id}"), &token).await;
    assert_eq!(r.status, StatusCode::OK);
    let ms = r.json["memberships"].as_array().expect("memberships");
    assert_eq!(ms.len(), 1, "{}", r.json);
    assert_eq!(ms[0]["group_id"], g);
    assert_eq!(ms[0]["group_name"], "Readers");
    assert_eq!(ms[0]["role"], "admin");
    assert!(ms[0]["left_at"].is_null());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE member_id = $1 AND group_id = $2")
        .bind(id)
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(audit_actions(&app, id).await, vec![("member.create".to_string(), "token".to_string())]);

    // The group filter of the list finds them.
    let list = get(&app, &format!("/api/v1/members?group_id={g}"), &token).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_member_in_an_unknown_group_is_refused_and_not_written() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = create_member(
        &app,
        &token,
        json!({"platform": "qq", "external_user_id": "1", "display_name": "A", "group_id": 424242}),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["group_id".to_string()]));
    assert_eq!(app.count("members").await, 0);
    assert_eq!(app.count("memberships").await, 0);
}

#[tokio::test]
async fn a_duplicate_member_is_a_422_on_external_user_id() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let body = json!({"platform": "telegram", "external_user_id": "777", "display_name": "Dan"});
    assert_eq!(create_member(&app, &token, body.clone()).await.status, StatusCode::CREATED);
    let r = create_member(
        &app,
        &token,
        json!({"platform": "telegram", "external_user_id": "777", "display_name": "Other"}),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["external_user_id".to_string()]));
    assert_eq!(app.count("members").await, 1);
    // The same id on another platform is another person.
    let r =
        create_member(&app, &token, json!({"platform": "qq", "external_user_id": "777", "display_name": "Q"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(app.count("members").await, 2);
}

#[tokio::test]
async fn invalid_member_fields_are_listed() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = create_member(&app, &token, json!({"platform": "icq", "external_user_id": "", "role": "boss"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error_fields(&r.json);
    for f in ["platform", "external_user_id", "display_name", "role"] {
        assert!(fields.contains(f), "{f} missing from {}", r.json);
    }
    assert_eq!(app.count("members").await, 0);
}

#[tokio::test]
async fn the_member_list_filters_by_q() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    for (uid, name) in [("1001", "Alice Wong"), ("1002", "Bob"), ("5550", "Malice"), ("2001", "Carol")] {
        let r =
            create_member(&app, &token, json!({"platform": "qq", "external_user_id": uid, "display_name": name})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|m| m["display_name"].as_str().unwrap().to_string()).collect()
    };
    let r = get(&app, "/api/v1/members?q=alice", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(names(&r.json), vec!["Alice Wong", "Malice"], "case-insensitive, anywhere in the name");
    // By external id too.
    let r = get(&app, "/api/v1/members?q=100", &token).await;
    assert_eq!(names(&r.json), vec!["Alice Wong", "Bob"]);
    // LIKE wildcards are literal.
    let r = get(&app, "/api/v1/members?q=%25", &token).await;
    assert_eq!(names(&r.json), Vec::<String>::new());
    let r = get(&app, "/api/v1/members?q=", &token).await;
    assert_eq!(names(&r.json).len(), 4);
}

#[tokio::test]
async fn patching_a_member_changes_only_the_named_fields() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let token = app.token("operator", true, &[]).await;
    let r = create_member(
        &app,
        &token,
        json!({"platform": "wechat", "external_user_id": "wx_1", "display_name": "Old", "tags": ["a"],
               "notes": "keep", "group_id": g}),
    )
    .await;
    let id = r.json["id"].as_i64().unwrap();
    let r =
        call(&app, Method::PATCH, &format!("/api/v1/members/{id}"), &token, Some(json!({"display_name": "New"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["display_name"], "New");
    assert_eq!(r.json["platform"], "wechat");
    assert_eq!(r.json["external_user_id"], "wx_1");
    assert_eq!(r.json["tags"], json!(["a"]));
    assert_eq!(r.json["notes"], "keep");
    assert_eq!(r.json["memberships"].as_array().unwrap().len(), 1, "memberships untouched");
    let (name, notes): (String, String) = sqlx::query_as("SELECT display_name, notes FROM members WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((name.as_str(), notes.as_str()), ("New", "keep"));

    // Renaming onto another member's id is a duplicate.
    create_member(&app, &token, json!({"platform": "wechat", "external_user_id": "wx_2", "display_name": "Two"})).await;
    let r =
        call(&app, Method::PATCH, &format!("/api/v1/members/{id}"), &token, Some(json!({"external_user_id": "wx_2"})))
            .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["external_user_id".to_string()]));
    let ext: String = sqlx::query_scalar("SELECT external_user_id FROM members WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(ext, "wx_1");
}

#[tokio::test]
async fn deleting_a_member_anonymises_them_and_ends_their_memberships() {
    let app = TestApp::spawn().await;
    let g = app.group("G").await;
    let token = app.token("operator", true, &[]).await;
    let r = create_member(
        &app,
        &token,
        json!({"platform": "qq", "external_user_id": "9", "display_name": "Gone", "group_id": g}),
    )
    .await;
    let id = r.json["id"].as_i64().unwrap();
    let r = reqwest::Client::new().delete(app.url(&format!("/api/v1/members/{id}"))).bearer_auth(&token).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.text().await.unwrap().is_empty());
    // The row stays for its history, with nothing that names the person; no membership is open.
    let (name, ext, deleted): (String, String, bool) =
        sqlx::query_as("SELECT display_name, external_user_id, deleted_at IS NOT NULL FROM members WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((name.as_str(), deleted), ("", true));
    assert_eq!(ext, format!("deleted:{id}"), "the platform id is scrubbed");
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE member_id = $1 AND left_at IS NULL")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(open, 0);
    assert_problem(&get(&app, &format!("/api/v1/members/{id}"), &token).await, StatusCode::NOT_FOUND);
    let list = get(&app, "/api/v1/members", &token).await;
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(0), "deleted members are not listed");
    // The same person coming back is a new member.
    let again =
        create_member(&app, &token, json!({"platform": "qq", "external_user_id": "9", "display_name": "Back"})).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.json);
    assert_ne!(again.json["id"].as_i64(), Some(id));
    assert_eq!(
        audit_actions(&app, id).await.into_iter().map(|(a, _)| a).collect::<Vec<_>>(),
        vec!["member.create", "member.delete"]
    );
    // Deleting again finds nothing.
    let r = call(&app, Method::DELETE, &format!("/api/v1/members/{id}"), &token, None).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_scoped_token_sees_only_members_of_its_groups_and_cannot_delete() {
    let app = TestApp::spawn().await;
    let g1 = app.group("Mine").await;
    let g2 = app.group("Theirs").await;
    let admin = app.token("admin", true, &[]).await;
    let scoped = app.token("operator", false, &[g1]).await;
    let mine = create_member(
        &app,
        &admin,
        json!({"platform": "qq", "external_user_id": "1", "display_name": "Mine", "group_id": g1}),
    )
    .await
    .json["id"]
        .as_i64()
        .unwrap();
    let theirs = create_member(
        &app,
        &admin,
        json!({"platform": "qq", "external_user_id": "2", "display_name": "Theirs", "group_id": g2}),
    )
    .await
    .json["id"]
        .as_i64()
        .unwrap();

    let list = get(&app, "/api/v1/members", &scoped).await;
    let ids: Vec<i64> = list.json["items"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![mine]);
    assert_problem(&get(&app, &format!("/api/v1/members/{theirs}"), &scoped).await, StatusCode::NOT_FOUND);
    let r =
        call(&app, Method::PATCH, &format!("/api/v1/members/{theirs}"), &scoped, Some(json!({"display_name": "X"})))
            .await;
    assert_problem(&r, StatusCode::NOT_FOUND);

    // A member in its own group: readable, but deleting needs every group.
    assert_eq!(get(&app, &format!("/api/v1/members/{mine}"), &scoped).await.status, StatusCode::OK);
    let r = call(&app, Method::DELETE, &format!("/api/v1/members/{mine}"), &scoped, None).await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = call(&app, Method::DELETE, &format!("/api/v1/members/{theirs}"), &scoped, None).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    assert_eq!(app.count("members").await, 2);

    // Creating: a group is required, and it must be one of its own.
    let r = create_member(&app, &scoped, json!({"platform": "qq", "external_user_id": "3", "display_name": "N"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r.json), BTreeSet::from(["group_id".to_string()]));
    let r = create_member(
        &app,
        &scoped,
        json!({"platform": "qq", "external_user_id": "3", "display_name": "N", "group_id": g2}),
    )
    .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("members").await, 2);
    let r = create_member(
        &app,
        &scoped,
        json!({"platform": "qq", "external_user_id": "3", "display_name": "N", "group_id": g1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(app.count("members").await, 3);
}

#[tokio::test]
async fn memberships_outside_the_scope_are_hidden_from_a_scoped_token() {
    let app = TestApp::spawn().await;
    let g1 = app.group("Mine").await;
    let g2 = app.group("Theirs").await;
    let admin = app.token("admin", true, &[]).await;
    let scoped = app.token("operator", false, &[g1]).await;
    let id = create_member(
        &app,
        &admin,
        json!({"platform": "qq", "external_user_id": "1", "display_name": "Both", "group_id": g1}),
    )
    .await
    .json["id"]
        .as_i64()
        .unwrap();
    sqlx::query("INSERT INTO memberships (member_id, group_id) VALUES ($1, $2)")
        .bind(id)
        .bind(g2)
        .execute(&app.db)
        .await
        .unwrap();
    let all = get(&app, &format!("/api/v1/members/{id}"), &admin).await;
    assert_eq!(all.json["memberships"].as_array().unwrap().len(), 2);
    let some = get(&app, &format!("/api/v1/members/{id}"), &scoped).await;
    let groups: Vec<i64> =
        some.json["memberships"].as_array().unwrap().iter().map(|s| s["group_id"].as_i64().unwrap()).collect();
    assert_eq!(groups, vec![g1]);
}

// ---- OpenAPI and unknown routes ----

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_api_routes() {
    let app = TestApp::spawn().await;
    let r = reqwest::Client::new().get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let doc: Value = r.json().await.expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);

    let paths: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(p, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&k.as_str()))
                .cloned()
                .collect();
            (p.clone(), methods)
        })
        .collect();
    let set = |ms: &[&str]| ms.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    let expected = BTreeMap::from([
        ("/api/v1/groups".to_string(), set(&["get", "post"])),
        ("/api/v1/groups/{id}".to_string(), set(&["get", "patch", "delete"])),
        ("/api/v1/jobs".to_string(), set(&["get"])),
        ("/api/v1/jobs/{id}".to_string(), set(&["get"])),
        ("/api/v1/jobs/{id}/retry".to_string(), set(&["post"])),
        ("/api/v1/jobs/{id}/cancel".to_string(), set(&["post"])),
        ("/api/v1/members".to_string(), set(&["get", "post"])),
        ("/api/v1/members/{id}".to_string(), set(&["get", "patch", "delete"])),
        ("/api/v1/members/{id}/memberships".to_string(), set(&["post"])),
        ("/api/v1/members/{id}/memberships/{group_id}".to_string(), set(&["delete"])),
        ("/api/v1/tokens".to_string(), set(&["get", "post"])),
        ("/api/v1/tokens/{id}".to_string(), set(&["delete"])),
        ("/api/v1/live-codes".to_string(), set(&["get", "post"])),
        ("/api/v1/live-codes/{slug}".to_string(), set(&["get", "patch", "delete"])),
        ("/api/v1/live-codes/{slug}/targets".to_string(), set(&["post"])),
        ("/api/v1/live-codes/{slug}/targets/{id}".to_string(), set(&["patch", "delete"])),
        ("/api/v1/live-codes/{slug}/channels".to_string(), set(&["post"])),
        ("/api/v1/live-codes/{slug}/channels/{key}".to_string(), set(&["delete"])),
        ("/api/v1/live-codes/{slug}/resolve".to_string(), set(&["get"])),
        ("/api/v1/live-codes/{slug}/scans".to_string(), set(&["post"])),
        ("/api/v1/members/{id}/points".to_string(), set(&["get", "post"])),
        ("/api/v1/checkins".to_string(), set(&["get"])),
        ("/api/v1/groups/{id}/checkin-poster".to_string(), set(&["get", "put"])),
        ("/api/v1/groups/{id}/invite-links".to_string(), set(&["get", "put"])),
        ("/api/v1/poster-templates".to_string(), set(&["get", "post"])),
        ("/api/v1/poster-templates/{id}".to_string(), set(&["get", "patch", "delete"])),
        ("/api/v1/poster-templates/{id}/background".to_string(), set(&["put", "delete"])),
        ("/api/v1/poster-templates/{id}/preview".to_string(), set(&["get"])),
        ("/api/v1/poster-templates/{id}/links".to_string(), set(&["get", "post"])),
        ("/api/v1/poster-links/{id}".to_string(), set(&["delete"])),
        ("/api/v1/campaigns".to_string(), set(&["get", "post"])),
        ("/api/v1/campaigns/{id}".to_string(), set(&["get", "patch"])),
        ("/api/v1/campaigns/{id}/members/{member}/poster".to_string(), set(&["get"])),
        ("/api/v1/invites".to_string(), set(&["get"])),
        ("/api/v1/invites/{id}/decision".to_string(), set(&["post"])),
        ("/hooks/generic/{bridge_id}".to_string(), set(&["post"])),
        ("/api/v1/bridges/{bridge_id}/outbound".to_string(), set(&["get", "patch"])),
        ("/api/v1/bridges/{bridge_id}/calls".to_string(), set(&["get"])),
        ("/api/v1/bridges/{bridge_id}/actions".to_string(), set(&["post"])),
        ("/api/v1/bridges/{bridge_id}/test-message".to_string(), set(&["post"])),
        ("/api/v1/bridges/{bridge_id}/member-counts".to_string(), set(&["post"])),
        ("/api/v1/bridges/{bridge_id}/telegram-webhook".to_string(), set(&["get", "post"])),
        ("/api/v1/broadcasts".to_string(), set(&["get", "post"])),
        ("/api/v1/broadcasts/preview".to_string(), set(&["post"])),
        ("/api/v1/broadcasts/{id}".to_string(), set(&["get"])),
        ("/api/v1/broadcasts/{id}/cancel".to_string(), set(&["post"])),
        ("/api/v1/reminder-groups".to_string(), set(&["get"])),
        ("/api/v1/reminder-groups/{group_id}".to_string(), set(&["put"])),
        ("/api/v1/moderation/actions".to_string(), set(&["get"])),
        ("/api/v1/moderation/actions/{id}".to_string(), set(&["get"])),
        ("/api/v1/moderation/actions/{id}/pardon".to_string(), set(&["post"])),
        ("/api/v1/moderation/actions/{id}/undo".to_string(), set(&["post"])),
        ("/api/v1/rule-sets/{id}/moderation".to_string(), set(&["get", "put"])),
        // Automation (branch `automation`).
        ("/api/v1/rule-sets".to_string(), set(&["get", "post"])),
        ("/api/v1/rule-sets/{id}".to_string(), set(&["get", "patch", "delete"])),
        ("/api/v1/rule-sets/{id}/attachments".to_string(), set(&["post"])),
        ("/api/v1/rule-sets/{id}/attachments/remove".to_string(), set(&["post"])),
        ("/api/v1/rule-sets/{id}/welcome".to_string(), set(&["put", "delete"])),
        ("/api/v1/rule-sets/{id}/keyword-replies".to_string(), set(&["post"])),
        ("/api/v1/rule-sets/{id}/keyword-replies/{keyword_id}".to_string(), set(&["delete"])),
        ("/api/v1/rule-sets/{id}/entry-policy".to_string(), set(&["put", "delete"])),
        ("/api/v1/join-requests".to_string(), set(&["get"])),
        ("/api/v1/join-requests/approve".to_string(), set(&["post"])),
        ("/api/v1/join-requests/decline".to_string(), set(&["post"])),
        ("/api/v1/groups/{id}/activity".to_string(), set(&["get"])),
    ]);
    assert_eq!(paths, expected);

    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"), "{scheme}");
    assert!(
        doc["security"].as_array().is_some_and(|s| s.iter().any(|req| req.get("bearer").is_some())),
        "bearer is required globally: {}",
        doc["security"]
    );
}

#[tokio::test]
async fn every_documented_route_answers_at_its_documented_path() {
    // A Telegram bridge whose Bot API is a fake on 127.0.0.1 (its webhook status is a GET).
    let app = TestApp::spawn_with(|c| c.outbound.allowed_hosts = vec!["127.0.0.1".into()]).await;
    let fake = crate::fakebots::FakeBot::start(crate::fakebots::Flavor::Telegram).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token)
         VALUES ('telegram', 'telegram', 'Docs', 's', $1, $2) RETURNING id",
    )
    .bind(fake.base())
    .bind(crate::fakebots::TELEGRAM_TOKEN)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let token = app.token("admin", true, &[]).await;
    let g = app.group("G").await;
    let m: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'M') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO live_codes (slug, name) VALUES ('docs-code', 'Docs')").execute(&app.db).await.unwrap();
    let job: i64 =
        sqlx::query_scalar("INSERT INTO jobs (kind, state) VALUES ('alert_delivery', 'cancelled') RETURNING id")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let poster: i64 = sqlx::query_scalar(
        "INSERT INTO poster_templates (name, layout) VALUES ('Docs', '{\"width\": 300, \"height\": 300, \"background_color\": \"#ffffff\", \"elements\": []}') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let broadcast: i64 = sqlx::query_scalar(
        "INSERT INTO broadcasts (text, audience, created_by) VALUES ('Docs', 'reminders', 'docs') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let campaign: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (name, group_ids, stages, poster_template_id) VALUES ('Docs', ARRAY[$1::bigint], '[{\"invites\": 1, \"points\": 1}]', $2) RETURNING id",
    )
    .bind(g)
    .bind(poster)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let rule_set: i64 = sqlx::query_scalar("INSERT INTO rule_sets (name) VALUES ('Docs') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let action: i64 = sqlx::query_scalar(
        "INSERT INTO moderation_actions (group_id, bridge_id, chat_id, user_id, rule_kind, deleted, step)
         VALUES ($1, $2, 'c', 'u', 'links', true, 'none') RETURNING id",
    )
    .bind(g)
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let doc: Value =
        reqwest::Client::new().get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_none() {
            continue;
        }
        let concrete = path
            .replace(
                "{id}",
                &if path.contains("rule-sets") {
                    rule_set
                } else if path.contains("groups") {
                    g
                } else if path.contains("jobs") {
                    job
                } else if path.contains("poster-templates") {
                    poster
                } else if path.contains("broadcasts") {
                    broadcast
                } else if path.contains("campaigns") {
                    campaign
                } else if path.contains("moderation/actions") {
                    action
                } else {
                    m
                }
                .to_string(),
            )
            .replace("{slug}", "docs-code")
            .replace("{bridge_id}", &bridge.to_string())
            .replace("{member}", &m.to_string());
        if path.ends_with("/preview") || path.ends_with("/poster") {
            // An image, not JSON.
            let r = reqwest::Client::new().get(app.url(&concrete)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "GET {concrete}");
            continue;
        }
        let r = get(&app, &concrete, &token).await;
        assert_eq!(r.status, StatusCode::OK, "GET {concrete}: {}", r.json);
    }
}

#[tokio::test]
async fn an_unknown_api_path_is_a_404_problem_not_html() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let r = get(&app, "/api/v1/nope", &token).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    // Without a token, too: never the admin UI's HTML page or login redirect.
    let r = reply(reqwest::Client::new().get(app.url("/api/v1/nope")).send().await.unwrap()).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = reply(reqwest::Client::new().post(app.url("/api/v2/groups")).send().await.unwrap()).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unparsable_query_and_path_values_and_wrong_methods_are_problems_too() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    for path in ["/api/v1/groups?limit=abc", "/api/v1/groups/abc", "/api/v1/members?group_id=x", "/api/v1/members/1.5"]
    {
        let r = get(&app, path, &token).await;
        assert_problem(&r, StatusCode::BAD_REQUEST);
        assert!(r.json["detail"].is_string(), "{path}: the reason is kept: {}", r.json);
    }
    let r = reqwest::Client::new().put(app.url("/api/v1/groups")).bearer_auth(&token).send().await.unwrap();
    let allow = r.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_uppercase();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow}");
    assert_problem(&reply(r).await, StatusCode::METHOD_NOT_ALLOWED);
    // Successful answers are untouched.
    let r = get(&app, "/api/v1/groups", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
}
