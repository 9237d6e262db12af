//! Bridge, check-in and points pages: a bridge made in the UI whose secret is shown once and
//! verifies real fixtures (and stops doing so once rotated), the status page with unlinked chats
//! linked or turned into groups, the check-in rules form driving the next check-in, a group's
//! check-in page, and the member page's points with manual adjustments applied once.

use std::path::PathBuf;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::{bridge_fixture, location, post_generic, post_hook, TestApp};

/// The text of the element with `id`, up to the next tag.
fn text_of(body: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let i = body.find(&marker).unwrap_or_else(|| panic!("no #{id} in the page")) + marker.len();
    let start = i + body[i..].find('>').unwrap() + 1;
    let end = start + body[start..].find('<').unwrap();
    body[start..end].trim().to_string()
}

/// The value of the hidden field `name`.
fn field_value(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let i = body.find(&marker).unwrap_or_else(|| panic!("no field {name}")) + marker.len();
    body[i..i + body[i..].find('"').unwrap()].to_string()
}

async fn get(c: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).send().await.unwrap();
    let s = r.status();
    (s, r.text().await.unwrap())
}

fn sha1_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn onebot(app: &TestApp, id: i64, secret: &str, file: &str) -> (StatusCode, Value) {
    let body = bridge_fixture(&format!("onebot11/{file}"));
    let sig = sha1_signature(secret, &body);
    post_hook(app, &format!("/hooks/onebot11/{id}"), &body, &[("x-signature", sig), ("x-self-id", "10001000".into())])
        .await
}

async fn telegram(app: &TestApp, id: i64, secret: &str, body: &[u8]) -> (StatusCode, Value) {
    post_hook(app, &format!("/hooks/telegram/{id}"), body, &[("x-telegram-bot-api-secret-token", secret.into())]).await
}

/// Creates a bridge through the form; returns its id, its secret and the answer page.
async fn create_bridge(app: &TestApp, c: &Client, fields: &[(&str, &str)]) -> (i64, String, String) {
    let r = app.post_form(c, "/bridges/new", "/bridges/new", fields).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = r.text().await.unwrap();
    let secret = text_of(&body, "bridge-secret");
    let webhook = text_of(&body, "webhook-url");
    let id: i64 = webhook.rsplit('/').next().unwrap().parse().unwrap();
    (id, secret, body)
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn group_with_chat(app: &TestApp, name: &str, platform: &str, chat: Option<&str>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ($1, $2, 500, $3) RETURNING id",
    )
    .bind(name)
    .bind(platform)
    .bind(chat)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_bridge_made_in_the_ui_shows_its_secret_once_and_rotation_retires_the_old_one() {
    let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = 0).await;
    let c = app.admin().await;
    let (s, form) = get(&c, &app, "/bridges/new").await;
    assert_eq!(s, StatusCode::OK);
    assert!(form.contains("name=\"kind\""));

    // Bad input writes nothing.
    let r = app.post_form(&c, "/bridges/new", "/bridges/new", &[("kind", "generic"), ("name", " ")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-name\"") && body.contains("id=\"err-platform\""), "{body}");
    let r = app
        .post_form(
            &c,
            "/bridges/new",
            "/bridges/new",
            &[("kind", "onebot11"), ("name", "x"), ("api_base_url", "ftp://x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-api_base_url\""));
    assert_eq!(app.count("bridges").await, 0);

    let (id, secret, answer) = create_bridge(
        &app,
        &c,
        &[("kind", "onebot11"), ("name", "QQ bot"), ("platform", ""), ("access_token", "napcat-token-123")],
    )
    .await;
    assert!(secret.len() >= 32, "{secret}");
    assert_eq!(text_of(&answer, "webhook-url"), app.url(&format!("/hooks/onebot11/{id}")));
    assert!(answer.contains("X-Signature") || answer.contains("secret:"), "OneBot setup steps are shown");
    let (stored, platform, token): (String, String, Option<String>) =
        sqlx::query_as("SELECT secret, platform, access_token FROM bridges WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        (stored.as_str(), platform.as_str(), token.as_deref()),
        (secret.as_str(), "qq", Some("napcat-token-123"))
    );
    assert_eq!(audit_count(&app, "bridge.create").await, 1);
    let details: String = sqlx::query_scalar("SELECT details::text FROM audit_log WHERE action = 'bridge.create'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!details.contains(&secret) && !details.contains("napcat-token-123"), "{details}");

    // Shown once: neither the status page nor the list shows it (or the access token) again.
    let (s, status_page) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(status_page.contains(&format!("/hooks/onebot11/{id}")));
    assert!(!status_page.contains(&secret) && !status_page.contains("napcat-token-123"));
    let (_, list) = get(&c, &app, "/bridges").await;
    assert!(list.contains("QQ bot") && !list.contains(&secret));

    // The fixture signed with the new secret is accepted; with another one it is not.
    let (s, _) = onebot(&app, id, &secret, "group_message_plain_chat.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = onebot(&app, id, "some-secret", "group_message_array_checkin.json").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let r = app.post_form(&c, &format!("/bridges/{id}"), &format!("/bridges/{id}/rotate"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = r.text().await.unwrap();
    let new_secret = text_of(&rotated, "bridge-secret");
    assert_ne!(new_secret, secret);
    assert_eq!(audit_count(&app, "bridge.rotate_secret").await, 1);
    let (s, _) = onebot(&app, id, &secret, "group_message_array_checkin.json").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old secret is retired");
    let (s, _) = onebot(&app, id, &new_secret, "group_message_array_checkin.json").await;
    assert!(s == StatusCode::OK || s == StatusCode::NO_CONTENT, "{s}");
    let (_, status_page) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(!status_page.contains(&secret) && !status_page.contains(&new_secret));
    // The rejections of this process are listed.
    assert!(status_page.contains("missing or wrong signature"), "rejections listed");
}

#[tokio::test]
async fn an_unlinked_chat_shows_on_the_status_page_and_once_linked_its_members_check_in() {
    let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = 0).await;
    let c = app.admin().await;
    let (id, secret, _) = create_bridge(&app, &c, &[("kind", "onebot11"), ("name", "QQ bot")]).await;
    let yoga = app.group("Yoga").await;
    let tg = group_with_chat(&app, "Telegram group", "telegram", None).await;
    let taken = group_with_chat(&app, "Linked already", "qq", Some("999")).await;

    let (s, _) = onebot(&app, id, &secret, "group_message_plain_chat.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, page) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(page.contains("data-chat=\"123456789\""), "the unlinked chat is listed");
    assert!(page
        .contains("<tr data-kind=\"message\"><td>Message</td><td class=\"num\">1</td><td class=\"num\">1</td></tr>"));
    assert_eq!(text_of(&page, "total-24h"), "1");
    assert!(page.contains("<td data-status=\"204\">Accepted, no reply</td>"), "the delivery is listed");
    assert!(page.contains(&format!("<option value=\"{yoga}\">Yoga</option>")));
    assert!(!page.contains(&format!("<option value=\"{tg}\">")), "another platform's group is not offered");
    assert!(!page.contains(&format!("<option value=\"{taken}\">")), "a group with a chat id is not offered");
    let (_, list) = get(&c, &app, "/bridges").await;
    assert!(list.contains("<span class=\"badge badge-warn\">1</span>"), "one unlinked chat in the list");

    let r = app
        .post_form(
            &c,
            &format!("/bridges/{id}"),
            &format!("/bridges/{id}/chats/link"),
            &[("chat_id", "123456789"), ("group_id", &yoga.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/bridges/{id}#chats"));
    let chat: Option<String> = sqlx::query_scalar("SELECT external_chat_id FROM groups WHERE id = $1")
        .bind(yoga)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(chat.as_deref(), Some("123456789"));
    assert_eq!(app.count("unlinked_chats").await, 0);
    assert_eq!(audit_count(&app, "bridge.link_chat").await, 1);
    let (_, page) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(page.contains("Chat linked") && page.contains("id=\"no-chats\""));

    // Linking a chat that is no longer waiting changes nothing.
    let r = app
        .post_form(
            &c,
            &format!("/bridges/{id}"),
            &format!("/bridges/{id}/chats/link"),
            &[("chat_id", "123456789"), ("group_id", &yoga.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(audit_count(&app, "bridge.link_chat").await, 1);

    let (s, reply) = onebot(&app, id, &secret, "group_message_array_checkin.json").await;
    assert_eq!(s, StatusCode::OK, "{reply}");
    assert!(reply["reply"].as_str().unwrap().contains("签到成功"), "{reply}");
    let checkins: i64 = sqlx::query_scalar("SELECT count(*) FROM checkins WHERE group_id = $1")
        .bind(yoga)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(checkins, 1);
}

#[tokio::test]
async fn a_group_can_be_created_from_an_unlinked_chat_unless_its_chat_id_is_taken() {
    let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = 0).await;
    let c = app.admin().await;
    let (id, secret, answer) = create_bridge(&app, &c, &[("kind", "telegram"), ("name", "TG bot")]).await;
    assert!(answer.contains("setWebhook") && answer.contains("secret_token"));
    let (s, _) = telegram(&app, id, &secret, &bridge_fixture("telegram/message_text_checkin.json")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = app
        .post_form(
            &c,
            &format!("/bridges/{id}"),
            &format!("/bridges/{id}/chats/create-group"),
            &[("chat_id", "-1001293750001")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    let gid: i64 = to.strip_prefix("/groups/").unwrap().parse().unwrap();
    let g: (String, String, i32, Option<String>) =
        sqlx::query_as("SELECT name, platform, capacity, external_chat_id FROM groups WHERE id = $1")
            .bind(gid)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(g, ("Morning Yoga 晨练群".into(), "telegram".into(), 200_000, Some("-1001293750001".into())));
    assert_eq!(app.count("unlinked_chats").await, 0);
    assert_eq!(audit_count(&app, "group.create").await, 1);
    let (s, group_page) = get(&c, &app, &to).await;
    assert_eq!(s, StatusCode::OK);
    assert!(group_page.contains(&format!("/groups/{gid}/checkin-rules")));
    let (s, reply) = telegram(&app, id, &secret, &bridge_fixture("telegram/message_command_checkin.json")).await;
    assert_eq!(s, StatusCode::OK, "the new group takes check-ins: {reply}");

    // A chat whose id an archived group holds cannot become a second group.
    let other = json!({"update_id": 7, "message": {"message_id": 1, "date": chrono::Utc::now().timestamp(),
        "chat": {"id": -100777, "title": "Old group", "type": "supergroup"},
        "from": {"id": 42, "is_bot": false, "first_name": "Zoe"}, "text": "hello"}});
    let (s, _) = telegram(&app, id, &secret, other.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    sqlx::query("INSERT INTO groups (name, platform, capacity, external_chat_id, status) VALUES ('Old', 'telegram', 10, '-100777', 'archived')")
        .execute(&app.db)
        .await
        .unwrap();
    let groups = app.count("groups").await;
    let r = app
        .post_form(
            &c,
            &format!("/bridges/{id}"),
            &format!("/bridges/{id}/chats/create-group"),
            &[("chat_id", "-100777")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/bridges/{id}#chats"));
    assert_eq!(app.count("groups").await, groups);
    assert_eq!(app.count("unlinked_chats").await, 1, "the chat still waits");
    let (_, page) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(page.contains("already has this chat id"), "the conflict is explained");
}

/// Every field of the rules form, with `over` replacing some.
fn rules_fields<'a>(over: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = vec![
        ("enabled", "on"),
        ("keywords", "打卡\n/checkin, hi"),
        ("points", "3"),
        ("streak_bonuses", "7=5\n30=20"),
        ("day_start_hour", "0"),
        ("makeup_enabled", "on"),
        ("makeup_keyword", "补签"),
        ("makeup_cost", "5"),
        ("makeup_days_back", "3"),
        ("makeup_per_month", "2"),
        ("reply_lang", "en"),
        ("reply_zh", "{name} 签到成功"),
        ("reply_en", "{name} is in: +{points}, balance {balance}, #{rank_today}"),
    ];
    for (k, val) in over {
        v.retain(|(f, _)| f != k);
        v.push((k, val));
    }
    v
}

/// Message `n` of `who` in the chat `room-1`, as the generic bridge sends it, sent now.
fn room_message(n: u32, who: &str, text: &str) -> Value {
    json!({"event_id": format!("e{n}"), "kind": "message", "group_id": "room-1", "member_id": who,
           "display_name": who.to_uppercase(), "text": text, "timestamp": chrono::Utc::now().timestamp()})
}

#[tokio::test]
async fn bad_rules_are_refused_and_good_rules_drive_the_next_checkin() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let (id, secret, _) =
        create_bridge(&app, &c, &[("kind", "generic"), ("name", "Hub"), ("platform", "wechat")]).await;
    let g = group_with_chat(&app, "Room", "wechat", Some("room-1")).await;
    let page = format!("/groups/{g}/checkin-rules");
    let (s, body) = get(&c, &app, &page).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("id=\"defaults-note\"") && body.contains("签到") && body.contains("{rank_today}"));

    let bad = rules_fields(&[("day_start_hour", "24"), ("streak_bonuses", "x"), ("keywords", " ")]);
    let r = app.post_form(&c, &page, &page, &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for f in ["day_start_hour", "streak_bonuses", "keywords"] {
        assert!(body.contains(&format!("id=\"err-{f}\"")), "{f} has a message");
    }
    assert!(body.contains(">x</textarea>"), "what was typed is shown again");
    assert_eq!(app.count("checkin_rules").await, 0);
    assert_eq!(audit_count(&app, "group.checkin_rules").await, 0);

    let r = app.post_form(&c, &page, &page, &rules_fields(&[])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(audit_count(&app, "group.checkin_rules").await, 1);
    let (keywords, bonuses): (Vec<String>, Value) =
        sqlx::query_as("SELECT keywords, streak_bonuses FROM checkin_rules WHERE group_id = $1")
            .bind(g)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(keywords, vec!["打卡", "/checkin", "hi"]);
    assert_eq!(bonuses, json!([{"day": 7, "points": 5}, {"day": 30, "points": 20}]));
    let (_, body) = get(&c, &app, &page).await;
    assert!(
        body.contains("Check-in rules saved")
            && body.contains("name=\"points\" type=\"number\" min=\"0\" max=\"100000\" value=\"3\"")
            && !body.contains("defaults-note")
    );

    // 签到 is no longer a check-in word here; "hi" is, worth 3 points, answered in English.
    let (s, _) = post_generic(&app, id, &secret, room_message(1, "bob", "签到")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, r) = post_generic(&app, id, &secret, room_message(2, "ann", "hi")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["reply"], "ANN is in: +3, balance 3, #1");
    let ledger: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, delta FROM points_ledger").fetch_all(&app.db).await.unwrap();
    assert_eq!(ledger, vec![("checkin".to_string(), 3)]);
}

/// A chat's group and rules are kept per process between messages (`bridges::GroupCache`); a
/// change saved in this process must drive the very next message all the same.
#[tokio::test]
async fn rules_saved_and_a_group_archived_apply_to_the_very_next_message() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let (id, secret, _) =
        create_bridge(&app, &c, &[("kind", "generic"), ("name", "Hub"), ("platform", "wechat")]).await;
    let g = group_with_chat(&app, "Room", "wechat", Some("room-1")).await;
    // The defaults: 签到 is a check-in worth one point; "hi" is plain chat.
    let (s, r) = post_generic(&app, id, &secret, room_message(1, "ann", "签到")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _) = post_generic(&app, id, &secret, room_message(2, "bob", "hi")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let page = format!("/groups/{g}/checkin-rules");
    let r = app.post_form(&c, &page, &page, &rules_fields(&[])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, r) = post_generic(&app, id, &secret, room_message(3, "cat", "hi")).await;
    assert_eq!((s, r["reply"].as_str()), (StatusCode::OK, Some("CAT is in: +3, balance 3, #2")));
    let (s, _) = post_generic(&app, id, &secret, room_message(4, "dan", "签到")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "签到 is no longer a check-in word");

    let r = app.post_form(&c, &format!("/groups/{g}"), &format!("/groups/{g}/archive"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, _) = post_generic(&app, id, &secret, room_message(5, "eve", "hi")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "an archived group's chat checks no one in");
    let checkins: Vec<String> = sqlx::query_scalar(
        "SELECT m.external_user_id FROM checkins c JOIN members m ON m.id = c.member_id ORDER BY c.id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(checkins, vec!["ann", "cat"]);
}

/// A message that reads its chat's group while a change to the group is written but not yet
/// committed caches the group as it was; the commit must still reach the very next message.
#[tokio::test]
async fn a_group_read_before_its_archiving_committed_is_read_again_after_the_commit() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let (id, secret, _) =
        create_bridge(&app, &c, &[("kind", "generic"), ("name", "Hub"), ("platform", "wechat")]).await;
    let g = group_with_chat(&app, "Room", "wechat", Some("room-1")).await;
    let mut tx = app.db.begin().await.unwrap();
    assert!(shoal::store::groups::set_status(&mut tx, g, shoal::domain::group::GroupStatus::Archived).await.unwrap());
    let (s, r) = post_generic(&app, id, &secret, room_message(1, "ann", "签到")).await;
    assert_eq!(s, StatusCode::OK, "not committed yet: the group is open ({r})");
    // The use cases' commit (`app::Done::commit`), in another state of the same process.
    let state = shoal::AppState::new(app.db.clone(), shoal::Config::defaults());
    shoal::app::Done::plain(()).commit(tx, &state).await.unwrap();
    let (s, _) = post_generic(&app, id, &secret, room_message(2, "bob", "签到")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "archived: the next message checks no one in");
}

#[tokio::test]
async fn the_group_checkin_page_lists_today_in_order_with_streaks_and_a_calendar() {
    let app = TestApp::spawn_with(|c| c.bridges.event_time_tolerance_secs = 0).await;
    let c = app.admin().await;
    let (id, secret, _) =
        create_bridge(&app, &c, &[("kind", "generic"), ("name", "Hub"), ("platform", "wechat")]).await;
    let g = group_with_chat(&app, "Room", "wechat", Some("room-1")).await;
    let now = chrono::Utc::now().timestamp();
    let ev = |n: u32, who: &str, at: i64| {
        json!({"event_id": format!("e{n}"), "kind": "checkin", "group_id": "room-1", "member_id": who,
               "display_name": who.to_uppercase(), "timestamp": at})
    };
    for (n, who, at) in
        [(1, "ann", now - 86_400), (2, "ann", now - 2), (3, "bob", now - 1), (4, "cat", now - 3 * 86_400)]
    {
        let (s, r) = post_generic(&app, id, &secret, ev(n, who, at)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let (s, page) = get(&c, &app, &format!("/groups/{g}/checkins")).await;
    assert_eq!(s, StatusCode::OK);
    let today = &page[page.find("id=\"today-table\"").unwrap()..page.find("id=\"streaks\"").unwrap()];
    let (ann, bob) = (today.find(">ANN<").expect("ann today"), today.find(">BOB<").expect("bob today"));
    assert!(ann < bob, "in the order they checked in");
    assert!(!today.contains(">CAT<"), "cat checked in three days ago");
    let ann_id: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = 'ann'").fetch_one(&app.db).await.unwrap();
    assert!(today.contains(&format!("data-member=\"{ann_id}\" data-streak=\"2\"")), "ann's streak is 2");
    let streaks = &page[page.find("id=\"streak-table\"").unwrap()..page.find("id=\"calendar\"").unwrap()];
    let (ann, bob) = (streaks.find(">ANN<").unwrap(), streaks.find(">BOB<").unwrap());
    assert!(ann < bob, "the longest streak first");
    assert!(!streaks.contains(">CAT<"), "cat's streak has ended");
    assert!(page.contains("id=\"calendar-table\"") && page.contains("✓"));
    let (_, old) = get(&c, &app, &format!("/groups/{g}/checkins?month=2020-01")).await;
    assert!(old.contains("id=\"empty-month\"") && old.contains("2020-01"));

    // Scoped operators see their groups only; viewers read the rules but cannot change them.
    let other = app.group("Other").await;
    let o = app.login_as("olga", "operator", false, &[other]).await;
    assert_eq!(get(&o, &app, &format!("/groups/{g}/checkins")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&o, &app, &format!("/groups/{g}/checkin-rules")).await.0, StatusCode::NOT_FOUND);
    let r = app.post_form(&o, "/groups", &format!("/groups/{g}/checkin-rules"), &rules_fields(&[])).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v = app.login_as("vera", "viewer", true, &[]).await;
    let (s, body) = get(&v, &app, &format!("/groups/{g}/checkin-rules")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<fieldset disabled>"));
    let r = app.post_form(&v, "/groups", &format!("/groups/{g}/checkin-rules"), &rules_fields(&[])).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("checkin_rules").await, 0);
}

async fn member_in(app: &TestApp, name: &str, group: i64) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', $1, $1) RETURNING id",
    )
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

async fn ledger_rows(app: &TestApp, member: i64) -> Vec<(String, i64, String, Option<i64>)> {
    sqlx::query_as("SELECT kind, delta, note, operator_id FROM points_ledger WHERE member_id = $1 ORDER BY id")
        .bind(member)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn manual_adjustments_apply_once_never_overdraw_and_show_on_the_member_page() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let g = app.group("Yoga").await;
    let m = member_in(&app, "ann", g).await;
    let page = format!("/members/{m}");
    let action = format!("/members/{m}/points");
    let (s, body) = get(&c, &app, &page).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text_of(&body, "points-balance"), "0");
    let key = field_value(&body, "key");
    assert!(uuid::Uuid::parse_str(&key).is_ok(), "{key}");

    let form = [("key", key.as_str()), ("delta", "10"), ("reason", "welcome gift")];
    let r = app.post_form(&c, &page, &action, &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/members/{m}#points"));
    let admin_id: i64 =
        sqlx::query_scalar("SELECT id FROM operators WHERE username = 'admin'").fetch_one(&app.db).await.unwrap();
    assert_eq!(ledger_rows(&app, m).await, vec![("adjustment".into(), 10, "welcome gift".into(), Some(admin_id))]);
    assert_eq!(audit_count(&app, "member.points_adjust").await, 1);
    // The same form again (a double submit) applies nothing more.
    let r = app.post_form(&c, &page, &action, &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(ledger_rows(&app, m).await.len(), 1);
    assert_eq!(audit_count(&app, "member.points_adjust").await, 1);

    let (_, body) = get(&c, &app, &page).await;
    assert_eq!(text_of(&body, "points-balance"), "10");
    assert!(body.contains("welcome gift") && body.contains("Adjustment") && body.contains("<td>admin</td>"));
    let fresh = field_value(&body, "key");
    assert_ne!(fresh, key, "every rendering of the form has its own key");

    // Refused: a spend beyond the balance, an empty reason, zero.
    let r = app.post_form(&c, &page, &action, &[("key", &fresh), ("delta", "-11"), ("reason", "too much")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Not enough points (balance 10)."), "{body}");
    assert_eq!(field_value(&body, "key"), fresh, "the refused form keeps its key");
    let r = app.post_form(&c, &page, &action, &[("key", &fresh), ("delta", "5"), ("reason", "  ")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-reason\""));
    let r = app.post_form(&c, &page, &action, &[("key", &fresh), ("delta", "0"), ("reason", "nothing")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-delta\""));
    let r = app.post_form(&c, &page, &action, &[("delta", "1"), ("reason", "no key")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(ledger_rows(&app, m).await.len(), 1);
    assert_eq!(audit_count(&app, "member.points_adjust").await, 1);
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM points_accounts WHERE member_id = $1")
        .bind(m)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(balance, 10);

    // A spend within the balance works with a fresh key.
    let r = app.post_form(&c, &page, &action, &[("key", &fresh), ("delta", "-4"), ("reason", "=sticker()")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let r = c.get(app.url(&format!("/members/{m}/points.csv"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let csv = csv.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,at,kind,delta,reference,note,operator,idempotency_key");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].ends_with(&format!(",adjustment,10,,welcome gift,admin,adjustment:{m}:{key}")), "{}", lines[1]);
    // A reason a spreadsheet would run as a formula leaves as text; numbers stay numbers.
    assert!(lines[2].contains(",adjustment,-4,,'=sticker(),admin,"), "{}", lines[2]);

    let (s, overview) = get(&c, &app, "/points").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text_of(&overview, "points-outstanding"), "6");
    assert!(
        overview.contains(&format!("<tr data-member=\"{m}\">")) && overview.contains("<tr data-kind=\"adjustment\">")
    );
}

#[tokio::test]
async fn the_member_page_shows_activity_checkins_and_points_from_a_bridge() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let (id, secret, _) =
        create_bridge(&app, &c, &[("kind", "generic"), ("name", "Hub"), ("platform", "wechat")]).await;
    group_with_chat(&app, "Room", "wechat", Some("room-1")).await;
    let now = chrono::Utc::now().timestamp();
    for (n, kind, text) in [(1, "message", "hello"), (2, "message", "签到"), (3, "message", "again")] {
        let ev = json!({"event_id": format!("e{n}"), "kind": kind, "group_id": "room-1", "member_id": "ann",
                        "display_name": "Ann", "text": text, "timestamp": now});
        post_generic(&app, id, &secret, ev).await;
    }
    app.chatter_written().await;
    let m: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = 'ann'").fetch_one(&app.db).await.unwrap();
    let (s, body) = get(&c, &app, &format!("/members/{m}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text_of(&body, "activity-total"), "3");
    assert!(body.contains("<rect "), "the activity chart has a bar");
    assert!(body.contains("id=\"checkin-table\"") && body.contains("/checkins\">Room</a>"));
    assert_eq!(text_of(&body, "points-balance"), "1");
    assert!(body.contains("<tr class=\"ledger-row\" data-kind=\"checkin\">"));
}

#[tokio::test]
async fn viewers_scoped_operators_and_non_admins_are_kept_out() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (a, b) = (app.group("A").await, app.group("B").await);
    let (in_a, in_b) = (member_in(&app, "ann", a).await, member_in(&app, "bob", b).await);
    let r = app
        .post_form(
            &admin,
            &format!("/members/{in_b}"),
            &format!("/members/{in_b}/points"),
            &[("key", &uuid::Uuid::new_v4().to_string()), ("delta", "7"), ("reason", "seed")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let viewer = app.login_as("vera", "viewer", true, &[]).await;
    let (s, body) = get(&viewer, &app, &format!("/members/{in_a}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!body.contains("id=\"adjust-form\""), "no form for a viewer");
    let key = uuid::Uuid::new_v4().to_string();
    let r = app
        .post_form(
            &viewer,
            &format!("/members/{in_a}"),
            &format!("/members/{in_a}/points"),
            &[("key", &key), ("delta", "5"), ("reason", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let olga = app.login_as("olga", "operator", false, &[a]).await;
    assert_eq!(get(&olga, &app, &format!("/members/{in_b}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&olga, &app, &format!("/members/{in_b}/points.csv")).await.0, StatusCode::NOT_FOUND);
    let r = app
        .post_form(
            &olga,
            "/members",
            &format!("/members/{in_b}/points"),
            &[("key", &key), ("delta", "5"), ("reason", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .post_form(
            &olga,
            &format!("/members/{in_a}"),
            &format!("/members/{in_a}/points"),
            &[("key", &key), ("delta", "5"), ("reason", "in scope")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a member in scope can be adjusted");
    assert_eq!(app.count("points_ledger").await, 2);
    let (s, overview) = get(&olga, &app, "/points").await;
    assert_eq!(s, StatusCode::OK);
    assert!(overview.contains(&format!("data-member=\"{in_a}\"")));
    assert!(!overview.contains(&format!("data-member=\"{in_b}\"")) && !overview.contains(">bob<"));

    // Bridges are for admins only.
    let (id, _, _) = create_bridge(&app, &admin, &[("kind", "onebot11"), ("name", "QQ bot")]).await;
    for path in
        ["/bridges".to_string(), "/bridges/new".to_string(), format!("/bridges/{id}"), format!("/bridges/{id}/edit")]
    {
        assert_eq!(get(&olga, &app, &path).await.0, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(get(&viewer, &app, &path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let secret: String =
        sqlx::query_scalar("SELECT secret FROM bridges WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    let r = app.post_form(&olga, "/members", &format!("/bridges/{id}/rotate"), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.post_form(&olga, "/members", "/bridges/new", &[("kind", "onebot11"), ("name", "Mine")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r =
        app.post_form(&olga, "/members", &format!("/bridges/{id}/edit"), &[("name", "Mine"), ("platform", "qq")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&app, "bridge.update").await, 0);
    let after: String =
        sqlx::query_scalar("SELECT secret FROM bridges WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(after, secret);
    assert_eq!(app.count("bridges").await, 1);
}

#[tokio::test]
async fn an_admin_edits_a_bridge_and_a_blank_token_keeps_the_stored_one() {
    // The bots' addresses are private: allowed for outbound calls, as an operator would.
    let app = TestApp::spawn_with(|c| c.outbound.allowed_hosts = vec!["127.0.0.1".into(), "10.0.0.0/8".into()]).await;
    let c = app.admin().await;
    let (id, secret, _) = create_bridge(
        &app,
        &c,
        &[
            ("kind", "onebot11"),
            ("name", "QQ bot"),
            ("api_base_url", "http://127.0.0.1:3000"),
            ("access_token", "tok-1"),
        ],
    )
    .await;
    let stored = |db: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, String, String, Option<String>, Option<String>)>(
            "SELECT kind, name, platform, api_base_url, access_token FROM bridges",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let page = format!("/bridges/{id}/edit");
    let (s, detail) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(s == StatusCode::OK && detail.contains(&format!("href=\"{page}\"")), "the status page links the form");
    let (s, form) = get(&c, &app, &page).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(field_value(&form, "name"), "QQ bot");
    assert!(form.contains("value=\"http://127.0.0.1:3000\""));
    assert!(!form.contains("tok-1"), "the token is never shown");
    assert!(form.contains("Leave this blank to keep it") && form.contains("name=\"clear_access_token\""));

    // Refused: nothing written, the form again with the message.
    let before = stored(app.db.clone()).await;
    let r = app.post_form(&c, &page, &page, &[("name", "  "), ("platform", "qq"), ("api_base_url", "ftp://x")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-name\"") && body.contains("id=\"err-api_base_url\""), "{body}");
    assert_eq!(stored(app.db.clone()).await, before);

    // A blank token keeps the stored one; the kind cannot be changed through the form.
    let fields =
        [("name", "NapCat main"), ("platform", "qq"), ("api_base_url", "http://10.0.0.2:3000"), ("kind", "telegram")];
    let r = app.post_form(&c, &page, &page, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], format!("/bridges/{id}").as_str());
    assert_eq!(
        stored(app.db.clone()).await,
        (
            "onebot11".into(),
            "NapCat main".into(),
            "qq".into(),
            Some("http://10.0.0.2:3000".into()),
            Some("tok-1".into())
        )
    );
    let (_, detail) = get(&c, &app, &format!("/bridges/{id}")).await;
    assert!(detail.contains("Bridge saved.") && detail.contains("NapCat main"));
    // A new token replaces it; the checkbox removes it.
    let r = app
        .post_form(&c, &page, &page, &[("name", "NapCat main"), ("platform", "qq"), ("access_token", "tok-2")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored(app.db.clone()).await.4.as_deref(), Some("tok-2"));
    assert_eq!(stored(app.db.clone()).await.3, None, "a blank URL clears it");
    let r = app
        .post_form(&c, &page, &page, &[("name", "NapCat main"), ("platform", "qq"), ("clear_access_token", "1")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored(app.db.clone()).await.4, None);

    let details: Vec<String> =
        sqlx::query_scalar("SELECT details->>'access_token' FROM audit_log WHERE action = 'bridge.update' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(details, ["kept", "changed", "removed"]);
    let all: String =
        sqlx::query_scalar("SELECT string_agg(details::text, ' ') FROM audit_log").fetch_one(&app.db).await.unwrap();
    assert!(!all.contains("tok-2") && !all.contains(&secret), "no secret in the audit log");
    // The webhook secret is untouched.
    let (s, _) = onebot(&app, id, &secret, "group_message_plain_chat.json").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// Keys of these pages are not covered by the catalog-wide test's prefixes: check them here.
#[test]
fn every_key_these_pages_use_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> =
        ["src/web/bridges.rs", "src/web/checkins.rs", "src/web/points.rs", "src/web/members.rs"]
            .iter()
            .map(|f| root.join(f))
            .collect();
    for dir in ["templates/bridges", "templates/checkins", "templates/points", "templates/members", "templates/groups"]
    {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            files.push(e.path());
        }
    }
    let en = shoal::i18n::load(shoal::i18n::Lang::En);
    let heads = ["bridges.", "checkin_rules.", "checkins.", "points.", "activity."];
    let mut missing = Vec::new();
    let mut seen = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for piece in text.split('"').skip(1).step_by(2) {
            let key_like = heads.iter().any(|h| piece.starts_with(h))
                && !piece.ends_with(".html")
                && piece.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if key_like {
                seen += 1;
                let prefix = format!("{piece}.");
                if !en.contains_key(piece) && !en.keys().any(|k| k.starts_with(&prefix)) {
                    missing.push(format!("{}: {piece}", f.display()));
                }
            }
        }
    }
    assert!(seen > 100, "keys found ({seen})");
    assert!(missing.is_empty(), "keys used but not defined: {missing:?}");
    // Keys built from data.
    for k in shoal::web::bridges::KINDS {
        assert!(en.contains_key(&format!("bridges.kinds.{}", k.as_str())));
    }
    for k in ["message", "join", "leave"] {
        assert!(en.contains_key(&format!("bridges.event_kinds.{k}")));
    }
    for k in shoal::web::points::KINDS {
        assert!(en.contains_key(&format!("points.kinds.{k}")), "points.kinds.{k}");
    }
}
