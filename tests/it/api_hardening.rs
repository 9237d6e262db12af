//! Bridge and API hardening: CQ codes in a member's name, event times far from now, NUL
//! characters in every kind of input, and the OpenAPI document telling the truth.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{post_generic, post_hook, TestApp};

const SECRET: &str = "some-secret";
const CHAT: i64 = 123456789;

async fn bridge(app: &TestApp, kind: &str, platform: &str, secret: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO bridges (kind, platform, name, secret) VALUES ($1, $2, 'b', $3) RETURNING id")
        .bind(kind)
        .bind(platform)
        .bind(secret)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn linked_group(app: &TestApp, platform: &str, chat: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('G', $1, 500, $2) RETURNING id",
    )
    .bind(platform)
    .bind(chat)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// A OneBot v11 group message as NapCat posts it, sent now unless `time` says otherwise.
fn onebot_message(message_id: i64, user: i64, card: &str, text: &str, time: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"time": time, "self_id": 10001000, "post_type": "message", "message_type": "group",
        "sub_type": "normal", "message_id": message_id, "group_id": CHAT, "user_id": user,
        "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 0,
        "sender": {"user_id": user, "nickname": "nick", "card": card, "role": "member"}}))
    .unwrap()
}

async fn post_onebot(app: &TestApp, id: i64, body: &[u8]) -> (StatusCode, Value) {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    post_hook(app, &format!("/hooks/onebot11/{id}"), body, &[("x-signature", sig)]).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Row counts of every table a delivery or an API call may write to.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut v = Vec::new();
    for t in
        ["bridge_events", "members", "memberships", "checkins", "points_ledger", "groups", "live_codes", "audit_log"]
    {
        v.push(app.count(t).await);
    }
    v
}

// ---- 5. CQ codes ----

const EVIL_CARD: &str = "[CQ:at,qq=all][CQ:image,file=http://evil.test/x.png]";
const EVIL_ESCAPED: &str = "&#91;CQ:at&#44;qq=all&#93;&#91;CQ:image&#44;file=http://evil.test/x.png&#93;";

#[tokio::test]
async fn a_qq_card_made_of_cq_codes_is_escaped_in_every_checkin_reply() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "onebot11", "qq", SECRET).await;
    linked_group(&app, "qq", &CHAT.to_string()).await;
    let (s, first) = post_onebot(&app, id, &onebot_message(1, 555, EVIL_CARD, "签到", now())).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let reply = first["reply"].as_str().unwrap();
    assert!(reply.starts_with(&format!("{EVIL_ESCAPED} 签到成功")), "{reply}");
    assert!(!reply.contains('[') && !reply.contains("CQ:at,"), "no live CQ code: {reply}");
    // A retry gets the stored (escaped) reply; the second check-in of the day is escaped too.
    assert_eq!(post_onebot(&app, id, &onebot_message(1, 555, EVIL_CARD, "签到", now())).await.1, first);
    let (_, again) = post_onebot(&app, id, &onebot_message(2, 555, EVIL_CARD, "打卡", now())).await;
    let again = again["reply"].as_str().unwrap();
    assert!(again.starts_with(EVIL_ESCAPED) && again.contains("已经签到"), "{again}");
    // The make-up reply (a different code path) too.
    let (_, makeup) = post_onebot(&app, id, &onebot_message(3, 555, EVIL_CARD, "补签", now())).await;
    let makeup = makeup["reply"].as_str().unwrap();
    assert!(makeup.starts_with(EVIL_ESCAPED) && !makeup.contains('['), "{makeup}");
    // The member's name is stored as it is; only what goes out is escaped.
    let name: String = sqlx::query_scalar("SELECT display_name FROM members").fetch_one(&app.db).await.unwrap();
    assert_eq!(name, EVIL_CARD);
}

#[tokio::test]
async fn a_generic_bridge_reply_keeps_the_name_as_plain_text() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let ev =
        json!({"event_id": "e1", "kind": "checkin", "group_id": "room", "member_id": "m1", "display_name": EVIL_CARD});
    let (s, r) = post_generic(&app, id, "g", ev).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["reply"].as_str().unwrap().starts_with(&format!("{EVIL_CARD} 签到成功")), "{r}");
}

// ---- 14. event time ----

#[tokio::test]
async fn a_checkin_far_from_now_is_recorded_but_earns_nothing_and_gets_no_reply() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let ev = |n: &str, at: i64| json!({"event_id": n, "kind": "checkin", "group_id": "room", "member_id": "m1", "timestamp": at});
    for (n, at) in
        [("year-ago", now() - 365 * 86_400), ("1970", 1), ("tomorrow", now() + 86_400), ("11-min", now() - 660)]
    {
        let (s, r) = post_generic(&app, id, "g", ev(n, at)).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{n}: {r}");
        // A retry is recognised and answered the same.
        assert_eq!(post_generic(&app, id, "g", ev(n, at)).await.0, StatusCode::NO_CONTENT, "{n}");
    }
    assert_eq!(footprint(&app).await[..5], [4, 0, 0, 0, 0], "four deliveries recorded; no member, check-in or points");
    // Within the tolerance an event keeps its own time and counts.
    let at = now() - 300;
    let (s, r) = post_generic(&app, id, "g", ev("5-min", at)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (stored, entries): (chrono::DateTime<chrono::Utc>, i64) =
        sqlx::query_as("SELECT c.at, (SELECT count(*) FROM points_ledger) FROM checkins c")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((stored.timestamp(), entries), (at, 1));
}

#[tokio::test]
async fn a_year_old_onebot_delivery_is_not_a_checkin_under_the_default_tolerance() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "onebot11", "qq", SECRET).await;
    linked_group(&app, "qq", &CHAT.to_string()).await;
    let (s, r) = post_onebot(&app, id, &onebot_message(9, 555, "", "签到", now() - 365 * 86_400)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(footprint(&app).await[..5], [1, 0, 0, 0, 0]);
    // A time that is not unix seconds is a malformed delivery, refused and not written.
    let mut v: Value = serde_json::from_slice(&onebot_message(10, 555, "", "签到", 0)).unwrap();
    v["time"] = json!("yesterday");
    let (s, _) = post_onebot(&app, id, &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("bridge_events").await, 1);
    // The bridge's page tells the late delivery (recorded, not counted) from a refused one.
    let c = app.admin().await;
    let page = c.get(app.url(&format!("/bridges/{id}"))).send().await.unwrap().text().await.unwrap();
    let table = &page[page.find("id=\"rejection-table\"").expect("the refusals' table")..];
    let log = &table[table.find("data-status=\"204\"").expect("the late delivery is listed")..];
    let row = &log[..log.find("</tr>").unwrap()];
    assert!(row.contains("Recorded, not counted") && !row.contains("Refused."), "{row}");
}

#[tokio::test]
async fn absurd_event_times_never_reach_the_database_even_without_a_tolerance() {
    for tolerance in [600, 0] {
        let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = tolerance).await;
        let id = bridge(&app, "generic", "wechat", "g").await;
        linked_group(&app, "wechat", "room").await;
        for (n, at) in [("neg", -300_000_000_000i64), ("far", 8_000_000_000_000), ("min", i64::MIN), ("max", i64::MAX)]
        {
            let ev = json!({"event_id": n, "kind": "checkin", "group_id": "room", "member_id": "m1", "timestamp": at});
            let (s, r) = post_generic(&app, id, "g", ev).await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{tolerance}/{n}: {r}");
            let ev = json!({"event_id": format!("{n}-join"), "kind": "join", "group_id": "room", "member_id": "m2", "timestamp": at});
            assert_eq!(post_generic(&app, id, "g", ev).await.0, StatusCode::NO_CONTENT, "{tolerance}/{n} join");
        }
        assert_eq!(app.count("members").await, 0, "tolerance {tolerance}");
        assert_eq!(app.count("memberships").await, 0);
        // The member API keeps working: a check-in now stores a sane last_active_at.
        let ev = json!({"event_id": "ok", "kind": "checkin", "group_id": "room", "member_id": "m1"});
        assert_eq!(post_generic(&app, id, "g", ev).await.0, StatusCode::OK);
        let token = app.token("admin", true, &[]).await;
        let r = reqwest::Client::new().get(app.url("/api/v1/members")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        let last = body["items"][0]["last_active_at"].as_str().unwrap().to_string();
        let last: chrono::DateTime<chrono::Utc> = last.parse().unwrap();
        assert!((last.timestamp() - now()).abs() < 60, "{last}");
    }
}

#[tokio::test]
async fn history_counts_when_the_tolerance_is_turned_off() {
    let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = 0).await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let at = now() - 30 * 86_400;
    let ev = json!({"event_id": "old", "kind": "checkin", "group_id": "room", "member_id": "m1", "timestamp": at});
    assert_eq!(post_generic(&app, id, "g", ev).await.0, StatusCode::OK);
    let stored: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT at FROM checkins").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored.timestamp(), at);
}

// ---- 19. NUL characters ----

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut req = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = r.text().await.unwrap();
    (status, ct, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|x| x["field"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn nul_characters_in_api_bodies_queries_and_paths_are_field_errors_not_500s() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let before = footprint(&app).await;
    use reqwest::Method;
    let (s, ct, p) = api(&app, Method::POST, "/api/v1/groups", &token, Some(r#"{"name":"a\u0000b"}"#)).await;
    assert_eq!((s, ct.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json"), "{p}");
    assert_eq!(fields(&p), ["name"]);
    let (s, _, p) =
        api(&app, Method::POST, "/api/v1/groups", &token, Some(r#"{"name":"ok","tags":["x\u0000"]}"#)).await;
    assert_eq!((s, fields(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["tags".to_string()]), "{p}");
    let (s, ct, p) = api(&app, Method::GET, "/api/v1/members?platform=%00", &token, None).await;
    assert_eq!((s, ct.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json"), "{p}");
    assert_eq!(fields(&p), ["platform"]);
    let (s, _, p) = api(&app, Method::GET, "/api/v1/groups?q=a%00b", &token, None).await;
    assert_eq!((s, fields(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["q".to_string()]), "{p}");
    for path in ["/api/v1/live-codes/a%00b", "/api/v1/live-codes/a%00b/resolve"] {
        let (s, ct, p) = api(&app, Method::GET, path, &token, None).await;
        assert_eq!((s, ct.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{path}: {p}");
    }
    let (s, _, p) =
        api(&app, Method::POST, "/api/v1/live-codes", &token, Some(r#"{"name":"x","fallback_message":"\u0000"}"#))
            .await;
    assert_eq!((s, fields(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["fallback_message".to_string()]), "{p}");
    assert_eq!(footprint(&app).await, before, "nothing written");
}

#[tokio::test]
async fn a_nul_in_a_group_form_re_renders_the_form_with_a_message() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app.post_multipart(&c, "/groups/new", "/groups/new", &[("name", "a\0b"), ("platform", "qq")], vec![]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("NUL character") || body.contains("空字符"), "the message is shown");
    assert_eq!(app.count("groups").await, 0);
}

#[tokio::test]
async fn a_nul_in_a_checkin_keyword_re_renders_the_rules_form() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let g = app.group("G").await;
    let page = format!("/groups/{g}/checkin-rules");
    let mut fields = vec![
        ("enabled", "on"),
        ("keywords", "打卡\0"),
        ("points", "3"),
        ("streak_bonuses", "7=5"),
        ("day_start_hour", "0"),
        ("makeup_enabled", "on"),
        ("makeup_keyword", "补\0签"),
        ("makeup_cost", "5"),
        ("makeup_days_back", "3"),
        ("makeup_per_month", "2"),
        ("reply_lang", "en"),
        ("reply_zh", "{name} 签到成功"),
        ("reply_en", "{name} is in"),
    ];
    let r = app.post_form(&c, &page, &page, &fields).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for f in ["keywords", "makeup_keyword"] {
        assert!(body.contains(&format!("id=\"err-{f}\"")), "{f} has a message");
    }
    assert_eq!(app.count("checkin_rules").await, 0);
    fields.retain(|(k, _)| *k != "keywords" && *k != "makeup_keyword");
    fields.extend([("keywords", "打卡"), ("makeup_keyword", "补签")]);
    assert_eq!(app.post_form(&c, &page, &page, &fields).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_nul_in_a_chat_name_is_dropped_and_a_nul_in_an_id_is_refused() {
    let app = TestApp::spawn().await;
    let id = bridge(&app, "generic", "wechat", "g").await;
    linked_group(&app, "wechat", "room").await;
    let ev =
        json!({"event_id": "e1", "kind": "checkin", "group_id": "room", "member_id": "m1", "display_name": "An\u{0}n"});
    let (s, r) = post_generic(&app, id, "g", ev).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let name: String = sqlx::query_scalar("SELECT display_name FROM members").fetch_one(&app.db).await.unwrap();
    assert_eq!(name, "Ann");
    let before = footprint(&app).await;
    let ev = json!({"event_id": "e2", "kind": "checkin", "group_id": "room", "member_id": "m\u{0}2"});
    let (s, r) = post_generic(&app, id, "g", ev).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r["detail"].as_str().unwrap_or("").contains("member_id"), "{r}");
    // OneBot: a card with a NUL checks in under the card without it.
    let qq = bridge(&app, "onebot11", "qq", SECRET).await;
    linked_group(&app, "qq", &CHAT.to_string()).await;
    let (s, r) = post_onebot(&app, qq, &onebot_message(1, 777, "Bo\u{0}b", "签到", now())).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["reply"].as_str().unwrap().starts_with("Bob "), "{r}");
    assert_eq!(footprint(&app).await[1], before[1] + 1, "one more member: Bob");
}

// ---- 20. the OpenAPI document and the behaviour it describes ----

#[tokio::test]
async fn the_openapi_document_declares_problem_json_every_common_error_and_create_schemas() {
    let app = TestApp::spawn().await;
    let doc: Value = reqwest::get(app.url("/api/openapi.json")).await.unwrap().json().await.unwrap();
    let text = doc.to_string();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut need = vec!["400"];
            if path.starts_with("/api/") {
                need.extend(["401", "422"]);
            }
            if op.get("requestBody").is_some() {
                need.push("413");
            }
            if path.contains('{') {
                need.push("404");
            }
            for status in need {
                let r = responses.get(status).unwrap_or_else(|| panic!("{method} {path}: no {status}"));
                assert!(r["content"]["application/problem+json"].is_object(), "{method} {path} {status}: {r}");
            }
            for (status, r) in responses {
                if status.starts_with('4') {
                    assert!(r["content"]["application/json"].is_null(), "{method} {path} {status} is problem+json");
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["GroupCreate"]["required"], json!(["name"]));
    assert!(schemas["GroupPatch"]["required"].is_null());
    assert_eq!(schemas["GroupCreate"]["properties"]["platform"]["enum"], json!(shoal::domain::Platform::NAMES));
    assert_eq!(schemas["MemberCreate"]["required"], json!(["platform", "external_user_id", "display_name"]));
    assert_eq!(schemas["LiveCodeCreate"]["properties"]["sticky_days"]["maximum"], 365);
    assert!(schemas["FieldProblem"]["properties"]["allowed"].is_object());
    let create =
        &doc["paths"]["/api/v1/groups"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(create, "#/components/schemas/GroupCreate");
    let patch =
        &doc["paths"]["/api/v1/groups/{id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(patch, "#/components/schemas/GroupPatch");
    let params = doc["paths"]["/api/v1/members/{id}/points"]["post"]["parameters"].to_string();
    assert!(params.contains("Idempotency-Key"), "{params}");
    let hook = doc["paths"]["/hooks/generic/{bridge_id}"]["post"]["parameters"].to_string();
    for p in ["bridge_id", "X-Shoal-Timestamp", "X-Shoal-Signature"] {
        assert!(hook.contains(p), "{p} in {hook}");
    }
    assert_eq!(doc["paths"]["/api/v1/live-codes/{slug}/scans"]["post"]["requestBody"]["required"], false);
    assert!(!text.contains("GroupBody") && !text.contains("MemberBody"), "no one-size schema is left");
}

#[tokio::test]
async fn an_empty_cursor_is_the_first_page() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    app.group("A").await;
    let (s, _, p) = api(&app, reqwest::Method::GET, "/api/v1/groups?cursor=", &token, None).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_group_in_a_target_body_is_a_422_on_group_id() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    sqlx::query("INSERT INTO live_codes (slug, name) VALUES ('code', 'C')").execute(&app.db).await.unwrap();
    let (s, ct, p) =
        api(&app, reqwest::Method::POST, "/api/v1/live-codes/code/targets", &token, Some(r#"{"group_id": 424242}"#))
            .await;
    assert_eq!((s, ct.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json"), "{p}");
    assert_eq!(fields(&p), ["group_id"]);
    // The live code itself missing is still a 404.
    let (s, _, _) =
        api(&app, reqwest::Method::POST, "/api/v1/live-codes/nope/targets", &token, Some(r#"{"group_id": 1}"#)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_enum_value_lists_the_allowed_values() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let (s, _, p) = api(
        &app,
        reqwest::Method::POST,
        "/api/v1/groups",
        &token,
        Some(r#"{"name":"x","platform":"myspace","status":"gone"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = p["errors"].as_array().unwrap();
    let allowed = |f: &str| errors.iter().find(|e| e["field"] == f).map(|e| e["allowed"].clone()).unwrap_or_default();
    assert_eq!(allowed("platform"), json!(["wechat", "qq", "telegram", "discord", "whatsapp", "other"]), "{p}");
    assert_eq!(allowed("status"), json!(["active", "paused", "archived"]), "{p}");
}

#[tokio::test]
async fn an_extreme_points_delta_is_a_422_not_a_500() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let m: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '1', 'M') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let body = format!(r#"{{"delta": {}, "idempotency_key": "k"}}"#, i64::MIN);
    let (s, _, p) =
        api(&app, reqwest::Method::POST, &format!("/api/v1/members/{m}/points"), &token, Some(body.as_str())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(fields(&p), ["delta"]);
}
