//! One write, two entrances: each change made through the admin pages and through the JSON API
//! leaves the same rows and the same audit entry, because both call the same use case
//! (`app::*`). Each test runs the same steps on two fresh installations, one through the pages
//! and one through the API, so that even the ids agree; only who acted differs (an operator's
//! session or an API token) and what depends on it (a ledger entry's operator, a live code's
//! owner, an idempotency key).

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{location, TestApp};

/// The two installations: `ui` driven through the admin pages by `c`, `api` through the API with
/// `token`. Both hold the same admin operator and admin token, created in the same order.
struct Pair {
    ui: TestApp,
    c: Client,
    api: TestApp,
    token: String,
}

async fn pair() -> Pair {
    pair_with(|_| {}).await
}

async fn pair_with(tweak: fn(&mut shoal::Config)) -> Pair {
    let ui = TestApp::spawn_with(tweak).await;
    let api = TestApp::spawn_with(tweak).await;
    let c = ui.admin().await;
    let _ = api.admin().await;
    let _ = ui.token("admin", true, &[]).await;
    let token = api.token("admin", true, &[]).await;
    Pair { ui, c, api, token }
}

impl Pair {
    /// The same rows on both sides: `sql` (a SELECT of the columns that must agree) as JSON.
    async fn same_rows(&self, sql: &str) -> Value {
        let (a, b) = (rows(&self.ui, sql).await, rows(&self.api, sql).await);
        assert_eq!(a, b, "{sql}");
        a
    }

    /// The same audit entries on both sides (who acted aside), as (action, object kind, object
    /// id, details).
    async fn same_audit(&self) -> Value {
        self.same_rows("SELECT action, target_kind, target_id, details FROM audit_log ORDER BY id").await
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Client::new().request(method, self.api.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn form(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> StatusCode {
        self.ui.post_form(&self.c, page, action, fields).await.status()
    }

    async fn multipart(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.ui.post_multipart(&self.c, page, action, fields, vec![]).await
    }

    /// The same statement on both databases (a fixture).
    async fn both(&self, sql: &str) {
        for app in [&self.ui, &self.api] {
            sqlx::query(sql).execute(&app.db).await.unwrap();
        }
    }
}

async fn rows(app: &TestApp, sql: &str) -> Value {
    sqlx::query_scalar(&format!("SELECT COALESCE(jsonb_agg(to_jsonb(x)), '[]') FROM ({sql}) x"))
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_group_created_and_changed_through_either_entrance_is_the_same_group() {
    let p = pair().await;
    let r = p
        .multipart(
            "/groups/new",
            "/groups/new",
            &[
                ("name", "Runners"),
                ("platform", "qq"),
                ("join_url", "https://qm.qq.com/q/run"),
                ("capacity", "300"),
                ("member_count", "12"),
                ("timezone", "Asia/Tokyo"),
                ("external_chat_id", "10086"),
                ("status", "active"),
                ("tags", "run, 北京"),
                ("notes", "weekly"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, g) = p
        .api(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"name": "Runners", "platform": "qq", "join_url": "https://qm.qq.com/q/run", "capacity": 300,
                "member_count": 12, "timezone": "Asia/Tokyo", "external_chat_id": "10086", "status": "active",
                "tags": ["run", "北京"], "notes": "weekly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let id = g["id"].as_i64().unwrap();
    assert_eq!(location(&r), format!("/groups/{id}"));
    const GROUPS: &str = "SELECT id, name, platform, join_url, capacity, member_count, timezone, external_chat_id,
        status, tags, notes FROM groups ORDER BY id";
    let groups = p.same_rows(GROUPS).await;
    assert_eq!(groups[0]["tags"], json!(["run", "北京"]));

    // A change: the form sends every field, the API only what changes.
    let page = format!("/groups/{id}/edit");
    let r = p
        .multipart(
            &page,
            &page,
            &[
                ("name", "Runners II"),
                ("platform", "qq"),
                ("join_url", "https://qm.qq.com/q/run"),
                ("capacity", "400"),
                ("member_count", "12"),
                ("timezone", "Asia/Tokyo"),
                ("external_chat_id", "10086"),
                ("status", "paused"),
                ("tags", "run, 北京"),
                ("notes", "weekly"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let path = format!("/api/v1/groups/{id}");
    let (s, _) =
        p.api(Method::PATCH, &path, Some(json!({"name": "Runners II", "capacity": 400, "status": "paused"}))).await;
    assert_eq!(s, StatusCode::OK);
    p.same_rows(GROUPS).await;

    // Bad input: the same field, nothing written.
    let r = p.multipart(&page, &page, &[("name", ""), ("platform", "qq")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (s, problem) = p.api(Method::PATCH, &path, Some(json!({"name": ""}))).await;
    assert_eq!((s, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")));

    // Archive.
    assert_eq!(p.form(&format!("/groups/{id}"), &format!("/groups/{id}/archive"), &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::DELETE, &path, None).await.0, StatusCode::OK);
    p.same_rows(GROUPS).await;
    let audit = p.same_audit().await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["group.create", "group.update", "group.archive"]);
    assert_eq!(audit[1]["details"]["name"], "Runners II");
}

#[tokio::test]
async fn a_live_code_and_its_targets_change_alike_and_a_new_slug_is_seen_by_the_next_scan() {
    // Snapshots cached for a minute: only the change itself can make a scan see it.
    let p = pair_with(|c| c.scan.cache_ttl_ms = 60_000).await;
    p.both("INSERT INTO groups (name, platform, capacity, member_count, join_url) VALUES ('G', 'qq', 500, 100, 'https://qm.qq.com/q/g')")
        .await;
    let r = p
        .multipart(
            "/live-codes/new",
            "/live-codes/new",
            &[("name", "Spring"), ("slug", "spring"), ("status", "active"), ("mode", "balance"), ("sticky_days", "3")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, c) = p
        .api(
            Method::POST,
            "/api/v1/live-codes",
            Some(json!({"name": "Spring", "slug": "spring", "status": "active", "mode": "balance", "sticky_days": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let code = c["id"].as_i64().unwrap();
    const CODES: &str = "SELECT id, slug, name, status, mode, sticky_days, starts_at, ends_at, fallback_kind,
        fallback_url, fallback_message FROM live_codes ORDER BY id";
    p.same_rows(CODES).await;

    // Targets: a limit above 10 000 000 is refused by both, then added at the cap.
    let page = format!("/live-codes/{code}");
    let add = format!("{page}/targets");
    assert_eq!(
        p.form(&page, &add, &[("group_id", "1"), ("scan_limit", "10000001")]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let targets = "/api/v1/live-codes/spring/targets";
    let (s, problem) = p.api(Method::POST, targets, Some(json!({"group_id": 1, "scan_limit": 10_000_001}))).await;
    assert_eq!((s, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("scan_limit")));
    assert_eq!(p.form(&page, &add, &[("group_id", "1"), ("scan_limit", "10000000")]).await, StatusCode::SEE_OTHER);
    let (s, t) = p.api(Method::POST, targets, Some(json!({"group_id": 1, "scan_limit": 10_000_000}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let tid = t["id"].as_i64().unwrap();
    const TARGETS: &str =
        "SELECT id, live_code_id, group_id, position, scan_limit, used, enabled FROM live_code_targets ORDER BY id";
    let rows = p.same_rows(TARGETS).await;
    assert_eq!(rows[0]["scan_limit"], 10_000_000);
    // A new limit and a pause; the PATCH's limit is capped alike.
    let target = format!("/api/v1/live-codes/spring/targets/{tid}");
    let (s, _) = p.api(Method::PATCH, &target, Some(json!({"scan_limit": 20_000_000}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let limit = format!("{page}/targets/{tid}/limit");
    assert_eq!(p.form(&page, &limit, &[("scan_limit", "20000000")]).await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p.form(&page, &limit, &[("scan_limit", "250")]).await, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::PATCH, &target, Some(json!({"scan_limit": 250}))).await.0, StatusCode::OK);
    assert_eq!(p.form(&page, &format!("{page}/targets/{tid}/disable"), &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::PATCH, &target, Some(json!({"enabled": false}))).await.0, StatusCode::OK);
    assert_eq!(p.form(&page, &format!("{page}/targets/{tid}/enable"), &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::PATCH, &target, Some(json!({"enabled": true}))).await.0, StatusCode::OK);
    p.same_rows(TARGETS).await;

    // Scans fill the cache: the code under its slug, and "no such code" for the new slug.
    let scan = |app: &TestApp, slug: &str| {
        let url = app.url(&format!("/l/{slug}"));
        async move {
            let c = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            c.get(url).header("user-agent", "Mozilla/5.0 (iPhone) Mobile").send().await.unwrap().status()
        }
    };
    for app in [&p.ui, &p.api] {
        assert_eq!(scan(app, "spring").await, StatusCode::FOUND, "to the group's invite link");
        assert_eq!(scan(app, "summer").await, StatusCode::NOT_FOUND);
    }
    // The slug changes; the very next scan of either slug sees it, through either entrance.
    let edit = format!("{page}/edit");
    let r = p
        .multipart(
            &edit,
            &edit,
            &[("name", "Spring"), ("slug", "summer"), ("status", "active"), ("mode", "balance"), ("sticky_days", "3")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, _) = p.api(Method::PATCH, "/api/v1/live-codes/spring", Some(json!({"slug": "summer"}))).await;
    assert_eq!(s, StatusCode::OK);
    for app in [&p.ui, &p.api] {
        assert_eq!(scan(app, "spring").await, StatusCode::NOT_FOUND, "the old slug is gone at once");
        assert_eq!(scan(app, "summer").await, StatusCode::FOUND, "the new slug works at once");
    }
    p.same_rows(CODES).await;
    let audit = p.same_audit().await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "live_code.create",
            "live_code.target_add",
            "live_code.target_limit",
            "live_code.target_disable",
            "live_code.target_enable",
            "live_code.update"
        ]
    );
    assert_eq!(audit[1]["details"]["scan_limit"], 10_000_000);
    assert_eq!(audit[2]["details"]["old_limit"], 10_000_000);
    assert_eq!(audit[5]["details"]["slug"], "summer");
}

#[tokio::test]
async fn a_member_created_changed_and_deleted_through_either_entrance_is_the_same_member() {
    let p = pair().await;
    p.both("INSERT INTO groups (name, platform, capacity, member_count) VALUES ('G', 'qq', 500, 10)").await;
    let fields = [
        ("platform", "qq"),
        ("external_user_id", "10001"),
        ("display_name", "小明"),
        ("tags", "vip, new"),
        ("notes", "met at the fair"),
        ("group_id", "1"),
        ("role", "admin"),
    ];
    assert_eq!(p.form("/members/new", "/members/new", &fields).await, StatusCode::SEE_OTHER);
    let (s, m) = p
        .api(
            Method::POST,
            "/api/v1/members",
            Some(json!({"platform": "qq", "external_user_id": "10001", "display_name": "小明", "tags": ["vip", "new"],
                "notes": "met at the fair", "group_id": 1, "role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_i64().unwrap();
    const MEMBERS: &str = "SELECT id, platform, external_user_id, display_name, tags, notes, deleted_at IS NOT NULL
        AS deleted FROM members ORDER BY id";
    const MEMBERSHIPS: &str =
        "SELECT member_id, group_id, role, left_at IS NOT NULL AS left, left_reason FROM memberships ORDER BY id";
    const COUNT: &str = "SELECT id, member_count FROM groups ORDER BY id";
    p.same_rows(MEMBERS).await;
    p.same_rows(MEMBERSHIPS).await;
    assert_eq!(p.same_rows(COUNT).await[0]["member_count"], 11, "one writer of memberships and counts");

    // A duplicate: the same field error on both.
    assert_eq!(p.form("/members/new", "/members/new", &fields).await, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, problem) = p
        .api(
            Method::POST,
            "/api/v1/members",
            Some(json!({"platform": "qq", "external_user_id": "10001", "display_name": "Other"})),
        )
        .await;
    assert_eq!(
        (s, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("external_user_id"))
    );

    // A change.
    let edit = format!("/members/{id}/edit");
    let changed = [
        ("platform", "qq"),
        ("external_user_id", "10001"),
        ("display_name", "大明"),
        ("tags", "vip"),
        ("notes", "met at the fair"),
    ];
    assert_eq!(p.form(&edit, &edit, &changed).await, StatusCode::SEE_OTHER);
    let path = format!("/api/v1/members/{id}");
    let (s, _) = p.api(Method::PATCH, &path, Some(json!({"display_name": "大明", "tags": ["vip"]}))).await;
    assert_eq!(s, StatusCode::OK);
    p.same_rows(MEMBERS).await;

    // Deletion anonymises: the same scrubbed row, memberships ended, the count one smaller.
    let r = p.form(&format!("/members/{id}"), &format!("/members/{id}/delete"), &[("confirm", "1")]).await;
    assert_eq!(r, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    let members = p.same_rows(MEMBERS).await;
    assert_eq!(members[0]["display_name"], "");
    assert_eq!(members[0]["external_user_id"], format!("deleted:{id}"));
    assert_eq!(members[0]["deleted"], true);
    let memberships = p.same_rows(MEMBERSHIPS).await;
    assert_eq!(memberships[0]["left_reason"], "manual");
    assert_eq!(p.same_rows(COUNT).await[0]["member_count"], 10);
    let audit = p.same_audit().await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["member.create", "member.update", "member.delete"]);
    assert_eq!(audit[0]["details"]["display_name"], "小明", "create names the member");
    assert!(!audit[2]["details"].to_string().contains("明"), "the deletion names no one");
}

#[tokio::test]
async fn memberships_opened_and_ended_through_either_entrance_keep_the_same_count() {
    let p = pair().await;
    p.both("INSERT INTO groups (name, platform, capacity, member_count) VALUES ('G', 'qq', 500, 3)").await;
    p.both("INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'A')").await;
    let page = "/members/1";
    assert_eq!(
        p.form(page, "/members/1/memberships", &[("group_id", "1"), ("role", "owner")]).await,
        StatusCode::SEE_OTHER
    );
    let (s, m) =
        p.api(Method::POST, "/api/v1/members/1/memberships", Some(json!({"group_id": 1, "role": "owner"}))).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    const COUNT: &str = "SELECT member_count FROM groups";
    assert_eq!(p.same_rows(COUNT).await[0]["member_count"], 4);
    assert_eq!(p.form(page, "/members/1/memberships/1/leave", &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::DELETE, "/api/v1/members/1/memberships/1", None).await.0, StatusCode::OK);
    assert_eq!(p.same_rows(COUNT).await[0]["member_count"], 3);
    p.same_rows("SELECT member_id, group_id, role, left_at IS NOT NULL AS left, left_reason FROM memberships").await;
    let audit = p.same_audit().await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["membership.join", "membership.leave"]);
}

#[tokio::test]
async fn a_points_adjustment_has_the_same_cap_rows_and_audit_through_either_entrance() {
    let p = pair().await;
    p.both("INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'A')").await;
    let page = "/members/1";
    let adjust = "/members/1/points";
    let key = uuid::Uuid::new_v4().to_string();
    let points = "/api/v1/members/1/points";
    // Over the cap: refused by both, nothing written.
    let r = p.form(page, adjust, &[("key", &key), ("delta", "10000001"), ("reason", "gift")]).await;
    assert_eq!(r, StatusCode::UNPROCESSABLE_ENTITY);
    let body = json!({"delta": 10_000_001, "kind": "adjustment", "note": "gift", "idempotency_key": "k1"});
    let (s, problem) = p.api(Method::POST, points, Some(body)).await;
    assert_eq!((s, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("delta")));
    // More than the balance: refused by both, and nothing written, not even an account.
    let r = p.form(page, adjust, &[("key", &key), ("delta", "-5"), ("reason", "oops")]).await;
    assert_eq!(r, StatusCode::UNPROCESSABLE_ENTITY);
    let body = json!({"delta": -5, "kind": "adjustment", "note": "oops", "idempotency_key": "k0"});
    let (s, problem) = p.api(Method::POST, points, Some(body)).await;
    assert_eq!((s, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("delta")));
    assert_eq!(p.ui.count("points_ledger").await + p.api.count("points_ledger").await, 0);
    assert_eq!(p.ui.count("points_accounts").await + p.api.count("points_accounts").await, 0);
    assert_eq!(p.ui.count("audit_log").await + p.api.count("audit_log").await, 0);
    // At the cap, and a deduction.
    let r = p.form(page, adjust, &[("key", &key), ("delta", "10000000"), ("reason", "gift")]).await;
    assert_eq!(r, StatusCode::SEE_OTHER);
    let body = json!({"delta": 10_000_000, "kind": "adjustment", "note": "gift", "idempotency_key": "k1"});
    assert_eq!(p.api(Method::POST, points, Some(body.clone())).await.0, StatusCode::CREATED);
    // The same request again applies nothing, on both.
    let r = p.form(page, adjust, &[("key", &key), ("delta", "10000000"), ("reason", "gift")]).await;
    assert_eq!(r, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::POST, points, Some(body)).await.0, StatusCode::OK);
    let key2 = uuid::Uuid::new_v4().to_string();
    let r = p.form(page, adjust, &[("key", &key2), ("delta", "-5"), ("reason", "typo")]).await;
    assert_eq!(r, StatusCode::SEE_OTHER);
    let body = json!({"delta": -5, "kind": "adjustment", "note": "typo", "idempotency_key": "k2"});
    assert_eq!(p.api(Method::POST, points, Some(body)).await.0, StatusCode::CREATED);
    p.same_rows("SELECT id, member_id, delta, kind, reference, note, request_hash FROM points_ledger ORDER BY id")
        .await;
    p.same_rows("SELECT member_id, balance FROM points_accounts").await;
    let audit = p.same_audit().await;
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert_eq!(audit[0]["action"], "member.points_adjust");
    assert_eq!(audit[0]["details"]["delta"], 10_000_000);
    assert_eq!(audit[1]["details"]["note"], "typo");
}

#[tokio::test]
async fn a_token_created_and_revoked_through_either_entrance_is_the_same_token() {
    let p = pair().await;
    p.both("INSERT INTO groups (name, platform, capacity) VALUES ('G', 'qq', 500)").await;
    let r =
        p.ui.post_form(
            &p.c,
            "/settings/tokens",
            "/settings/tokens",
            &[("username", "crm"), ("role", "operator"), ("groups", "1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let page = r.text().await.unwrap();
    let (s, t) =
        p.api(Method::POST, "/api/v1/tokens", Some(json!({"name": "crm", "role": "operator", "group_ids": [1]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let secret = t["secret"].as_str().unwrap();
    assert!(secret.starts_with("shoal_") && !page.contains(secret));
    // The new token works, in its scope.
    let r = Client::new().get(p.api.url("/api/v1/groups")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id = t["token"]["id"].as_i64().unwrap();
    const TOKENS: &str = "SELECT t.id, t.name, t.role, t.all_groups, t.revoked_at IS NOT NULL AS revoked,
        ARRAY(SELECT group_id FROM api_token_groups g WHERE g.token_id = t.id) AS groups FROM api_tokens t ORDER BY t.id";
    p.same_rows(TOKENS).await;
    let r = p.form("/settings/tokens", &format!("/settings/tokens/{id}/revoke"), &[("confirm", "1")]).await;
    assert_eq!(r, StatusCode::SEE_OTHER);
    assert_eq!(p.api(Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await.0, StatusCode::NO_CONTENT);
    let tokens = p.same_rows(TOKENS).await;
    assert_eq!(tokens[1]["revoked"], true);
    let r = Client::new().get(p.api.url("/api/v1/groups")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let audit = p.same_audit().await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["token.create", "token.revoke"]);
}
