//! The growth loop's pieces between the bot and the campaign: `邀请` / `/invite` answers with the
//! member's poster (OneBot: an image segment in the answer; Telegram: `sendPhoto` to the fake
//! bot) whose QR decodes to the member's personal link; the campaign's time window (the form in
//! the display time zone, an end before the start refused in both languages, joins outside the
//! window not credited). The whole loop through the pages is `browser::browser_the_invite_loop_*`.

use std::time::Duration;

use hmac::Mac;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakebots::{FakeBot, Flavor, TELEGRAM_TOKEN};
use crate::harness::{post_generic, post_hook, TestApp};

pub const SECRET: &str = "invite-loop-secret";
pub const QQ_GROUP: &str = "700800";
pub const JOIN_URL: &str = "https://qm.qq.com/q/harbour-runners";

/// Fast jobs, the fake bots reachable, event times trusted as given, and a font for posters.
pub fn config(c: &mut shoal::Config) {
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 2000;
    c.bridges.event_time_tolerance_secs = 0;
    let noto = std::path::Path::new("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc");
    if !noto.exists() {
        c.posters.font_paths = vec!["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into()];
        c.posters.font_family = "DejaVu Sans".into();
    }
}

/// A OneBot (QQ) bridge and a group linked to it whose join link is [`JOIN_URL`]: (bridge, group).
pub async fn qq_group(app: &TestApp) -> (i64, i64) {
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'QQ bot', $1) RETURNING id",
    )
    .bind(SECRET)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id, join_url)
         VALUES ('海港跑团', 'qq', 500, $1, $2, $3) RETURNING id",
    )
    .bind(QQ_GROUP)
    .bind(bridge)
    .bind(JOIN_URL)
    .fetch_one(&app.db)
    .await
    .unwrap();
    (bridge, group)
}

/// A live code `slug` that sends every scan to `group`.
pub async fn live_code(app: &TestApp, slug: &str, group: i64) {
    let code: i64 = sqlx::query_scalar("INSERT INTO live_codes (slug, name) VALUES ($1, '邀请活码') RETURNING id")
        .bind(slug)
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 200)")
        .bind(code)
        .bind(group)
        .execute(&app.db)
        .await
        .unwrap();
}

/// A poster template with the member's name, a line with `{campaign}` and `{invites}`, and the
/// QR of their personal link; its id.
pub async fn poster_template(app: &TestApp, token: &str) -> i64 {
    let body = json!({
        "name": "邀请海报",
        "background_color": "#fbf7ef",
        "elements": [
            {"type": "nickname", "x": 80, "y": 140, "width": 720, "font_size": 56},
            {"type": "text", "x": 80, "y": 330, "width": 920, "font_size": 48, "max_lines": 2,
             "text": "{campaign}: {invites}"},
            {"type": "qr", "x": 340, "y": 1300, "size": 400},
        ]
    });
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/poster-templates"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

pub async fn api(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A OneBot delivery signed with the bridge's secret, as NapCat posts it.
pub async fn onebot_post(app: &TestApp, bridge: i64, body: Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    post_hook(
        app,
        &format!("/hooks/onebot11/{bridge}"),
        &body,
        &[("x-signature", sig), ("x-self-id", "10001000".into())],
    )
    .await
}

pub fn qq_message(user: i64, id: i64, text: &str) -> Value {
    json!({"time": now(), "self_id": 10001000, "post_type": "message", "message_type": "group", "sub_type": "normal",
           "message_id": id, "group_id": QQ_GROUP.parse::<i64>().unwrap(), "user_id": user, "message": text,
           "sender": {"user_id": user, "nickname": format!("user{user}"), "card": ""}})
}

/// `group_increase` (a join approved by nobody in particular: no inviter) or `group_decrease`.
pub fn qq_notice(notice: &str, sub: &str, user: i64, at: i64) -> Value {
    json!({"time": at, "self_id": 10001000, "post_type": "notice", "notice_type": notice, "sub_type": sub,
           "group_id": QQ_GROUP.parse::<i64>().unwrap(), "user_id": user, "operator_id": 0})
}

/// The image addresses of CQ image segments in a OneBot reply.
pub fn images_in(reply: &str) -> Vec<String> {
    reply
        .split("[CQ:image,file=")
        .skip(1)
        .map(|s| s.split(']').next().unwrap().replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]"))
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

/// Fetches a poster and reads its one QR code back.
pub async fn poster_qr(url: &str) -> String {
    let img = reqwest::get(url).await.unwrap();
    assert_eq!(img.status(), StatusCode::OK, "{url}");
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&img.bytes().await.unwrap()).unwrap();
    let mut prepared = rqrr::PreparedImage::prepare(decoded.to_luma8());
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the poster");
    grids[0].decode().unwrap().1
}

pub async fn invite_code(app: &TestApp, ext: &str) -> String {
    sqlx::query_scalar("SELECT invite_code FROM members WHERE external_user_id = $1")
        .bind(ext)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A campaign over `group` through the API, with the live code and poster template; its id.
async fn campaign(app: &TestApp, token: &str, group: i64, template: Option<i64>, extra: Value) -> i64 {
    let mut body = json!({"name": "春季邀请赛", "group_ids": [group], "live_code_slug": "run", "hold_days": 3,
        "stages": [{"invites": 1, "points": 10}], "poster_template_id": template});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, c) = api(app, token, reqwest::Method::POST, "/api/v1/campaigns", body).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c["id"].as_i64().unwrap()
}

#[tokio::test]
async fn the_invite_command_over_onebot_answers_with_a_poster_whose_qr_is_the_personal_link() {
    let app = TestApp::spawn_with(config).await;
    let token = app.token("admin", true, &[]).await;
    let (bridge, group) = qq_group(&app).await;
    live_code(&app, "run", group).await;
    let template = poster_template(&app, &token).await;
    campaign(&app, &token, group, Some(template), json!({})).await;
    // The member is in the group (a join nobody is credited with).
    let (s, _) = onebot_post(&app, bridge, qq_notice("group_increase", "approve", 4242, now())).await;
    assert!(s.is_success());

    let (s, a) = onebot_post(&app, bridge, qq_message(4242, 1, "邀请")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let reply = a["reply"].as_str().unwrap();
    assert!(reply.contains("春季邀请赛"), "the progress text: {reply}");
    let code = invite_code(&app, "4242").await;
    let link = app.url(&format!("/l/run?r={code}"));
    assert!(reply.contains(&link), "the personal link in the text: {reply}");
    let images = images_in(reply);
    assert_eq!(images.len(), 1, "one poster: {reply}");
    assert!(images[0].starts_with(&app.url("/p/")), "{}", images[0]);
    assert_eq!(poster_qr(&images[0]).await, link, "the poster's QR is the member's personal link");

    // Asking again: the same poster address, one link row.
    let (_, again) = onebot_post(&app, bridge, qq_message(4242, 2, "/invite")).await;
    assert_eq!(images_in(again["reply"].as_str().unwrap()), images);
    let links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM poster_links WHERE member_id = (SELECT id FROM members WHERE external_user_id = '4242')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(links, 1);
    // An operator revokes it: the address answers 404 and the bot sends the text alone.
    sqlx::query("UPDATE poster_links SET revoked_at = now()").execute(&app.db).await.unwrap();
    let (_, after) = onebot_post(&app, bridge, qq_message(4242, 3, "邀请")).await;
    let reply = after["reply"].as_str().unwrap();
    assert!(reply.contains(&link) && images_in(reply).is_empty(), "{reply}");
    // Revoked behind the app's back: the process's link cache (`posters.link_cache_ms`, 1 s)
    // forgets it within its time to live.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = format!("{}?format=png", images[0]);
    assert_eq!(reqwest::get(&fresh).await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_invite_command_over_telegram_sends_the_poster_with_send_photo() {
    let app = TestApp::spawn_with(config).await;
    let token = app.token("admin", true, &[]).await;
    let fake = FakeBot::start(Flavor::Telegram).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
         VALUES ('telegram', 'telegram', 'tg', $1, $2, $3, 0, 0) RETURNING id",
    )
    .bind(SECRET)
    .bind(fake.base())
    .bind(TELEGRAM_TOKEN)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ('Runners', 'telegram', 500, '-100700', $1) RETURNING id",
    )
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();
    live_code(&app, "run", group).await;
    let template = poster_template(&app, &token).await;
    campaign(&app, &token, group, Some(template), json!({})).await;
    let tg = |update: Value| {
        let body = serde_json::to_vec(&update).unwrap();
        let app = &app;
        async move {
            post_hook(
                app,
                &format!("/hooks/telegram/{bridge}"),
                &body,
                &[("x-telegram-bot-api-secret-token", SECRET.into())],
            )
            .await
        }
    };
    let chat = json!({"id": -100700, "type": "supergroup", "title": "Runners"});
    let ann = json!({"id": 11, "is_bot": false, "first_name": "Ann"});
    let (s, _) = tg(json!({"update_id": 1, "message": {"message_id": 4, "date": now(), "chat": chat, "from": ann,
        "new_chat_members": [ann]}}))
    .await;
    assert!(s.is_success());
    let (s, a) =
        tg(json!({"update_id": 2, "message": {"message_id": 5, "date": now(), "chat": chat, "from": ann, "text": "/invite"}}))
            .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["method"], "sendMessage", "the text in the webhook's answer: {a}");
    let code = invite_code(&app, "11").await;
    let link = app.url(&format!("/l/run?r={code}"));
    assert!(a["text"].as_str().unwrap().contains(&link), "{a}");
    // The picture cannot ride on the answer: it goes out as sendPhoto, answering the same message.
    // (The join also has the bot count the chat's members: getChatMemberCount, in any order.)
    let photo = fake.wait_method("sendPhoto", 1).await;
    assert_eq!(photo.len(), 1, "{:?}", fake.calls());
    assert_eq!(photo[0].body["chat_id"], -100700);
    assert_eq!(photo[0].body["reply_parameters"]["message_id"], 5);
    let url = photo[0].body["photo"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/p/")), "{url}");
    assert_eq!(poster_qr(url).await, link);
}

// ---------------------------------------------------------------- the time window

const GENERIC: &str = "generic-window-secret";

async fn join(app: &TestApp, bridge: i64, event: &str, member: &str, inviter: &str) {
    let ev = json!({"event_id": event, "kind": "join", "group_id": "chat-w", "member_id": member, "inviter": inviter});
    let (s, r) = post_generic(app, bridge, GENERIC, ev).await;
    assert!(s.is_success(), "{s} {r}");
}

async fn credited(app: &TestApp, invitee: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM invite_records r JOIN members m ON m.id = r.invitee_member_id WHERE m.external_user_id = $1",
    )
    .bind(invitee)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn joins_outside_the_campaign_window_are_not_credited_for_it() {
    let app = TestApp::spawn_with(config).await;
    let token = app.token("admin", true, &[]).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'other', 'b', $1) RETURNING id",
    )
    .bind(GENERIC)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ('W', 'other', 500, 'chat-w', $1) RETURNING id",
    )
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let day = chrono::Duration::days(1);
    let at = |d: chrono::Duration| (chrono::Utc::now() + d).to_rfc3339();
    let id = campaign(&app, &token, group, None, json!({"live_code_slug": null, "starts_at": at(day)})).await;
    join(&app, bridge, "e1", "early", "kim").await;
    assert_eq!(credited(&app, "early").await, 0, "before the start: no invite of the campaign");

    let path = format!("/api/v1/campaigns/{id}");
    let (s, c) =
        api(&app, &token, reqwest::Method::PATCH, &path, json!({"starts_at": at(-day * 3), "ends_at": at(-day)})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    join(&app, bridge, "e2", "late", "kim").await;
    assert_eq!(credited(&app, "late").await, 0, "after the end: no invite of the campaign");

    let (s, c) = api(&app, &token, reqwest::Method::PATCH, &path, json!({"ends_at": at(day)})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    join(&app, bridge, "e3", "inside", "kim").await;
    assert_eq!(credited(&app, "inside").await, 1, "inside the window: credited");

    // The API refuses an end before the start, and writes nothing.
    let (s, p) = api(&app, &token, reqwest::Method::PATCH, &path, json!({"ends_at": at(-day * 5)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p.to_string().contains("ends_at"), "{p}");
    let ends: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT ends_at FROM campaigns").fetch_one(&app.db).await.unwrap();
    assert!(ends > chrono::Utc::now());
}

#[tokio::test]
async fn the_campaign_form_keeps_its_window_in_the_display_zone_and_refuses_an_end_before_the_start() {
    let app = TestApp::spawn_with(config).await;
    let group = app.group("Yoga").await;
    let admin = app.admin().await;
    let g = group.to_string();
    let form = |starts: &'static str, ends: &'static str| {
        vec![
            ("name", "Spring"),
            ("group_ids", g.as_str()),
            ("status", "active"),
            ("hold_days", "3"),
            ("stages", "1,10"),
            ("starts_at", starts),
            ("ends_at", ends),
        ]
    };
    // Beijing time (the instance's display zone): 09:00 there is 01:00 UTC.
    let r = app.post_form(&admin, "/campaigns/new", "/campaigns", &form("2026-12-10T09:00", "2026-12-20T21:30")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (starts, ends): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT starts_at, ends_at FROM campaigns").fetch_one(&app.db).await.unwrap();
    assert_eq!(starts.to_rfc3339(), "2026-12-10T01:00:00+00:00");
    assert_eq!(ends.to_rfc3339(), "2026-12-20T13:30:00+00:00");
    let id: i64 = sqlx::query_scalar("SELECT id FROM campaigns").fetch_one(&app.db).await.unwrap();
    // The edit form shows them as typed; the campaign's page with the zone's name.
    let edit = admin.get(app.url(&format!("/campaigns/{id}/edit"))).send().await.unwrap().text().await.unwrap();
    assert!(edit.contains(r#"value="2026-12-10T09:00""#) && edit.contains(r#"value="2026-12-20T21:30""#), "{edit}");
    assert!(
        edit.contains("Only joins between the start and the end count") || edit.contains("只有在开始和结束之间入群"),
        "the window's hint names its meaning: {edit}"
    );
    assert!(edit.contains("Beijing time") || edit.contains("北京时间"), "and the zone: {edit}");
    assert!(!edit.contains("??"), "every label has its words: {edit}");
    let page = admin.get(app.url(&format!("/campaigns/{id}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("2026-12-10 09:00"), "{page}");

    // An end before the start, and a time that is none: the form again, nothing written.
    let r = app.post_form(&admin, "/campaigns/new", "/campaigns", &form("2026-12-10T09:00", "2026-12-09T09:00")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"id="err-ends_at""#), "{body}");
    let english = body.contains("The end must be after the start.");
    let chinese = body.contains("结束时间要晚于开始时间。");
    assert!(english || chinese, "{body}");
    let r = app.post_form(&admin, "/campaigns/new", "/campaigns", &form("tomorrow", "")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains(r#"id="err-starts_at""#));
    assert_eq!(app.count("campaigns").await, 1);

    // The same refusal in the other language.
    let other = if english { "zh-CN" } else { "en" };
    sqlx::query("UPDATE operators SET language = $1").bind(other).execute(&app.db).await.unwrap();
    let admin = crate::harness::client();
    assert_eq!(app.login(&admin, "admin", crate::harness::PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let r = app.post_form(&admin, "/campaigns/new", "/campaigns", &form("2026-12-10T09:00", "2026-12-09T09:00")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    let want = if english { "结束时间要晚于开始时间。" } else { "The end must be after the start." };
    assert!(body.contains(want), "{body}");
    let label = if english { "活动时间" } else { "Time window" };
    assert!(body.contains(label) && !body.contains("??"), "{body}");
}
