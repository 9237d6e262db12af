//! The member's own page: the bot's `我的` / `/me` answer, the signed `/m/{token}` page (balance,
//! ledger in words, streak and calendar, in the link's language), and links that are altered,
//! expired or revoked.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{post_generic, TestApp};

async fn bridge(app: &TestApp, secret: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'wechat', 'wx', $1) RETURNING id",
    )
    .bind(secret)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn linked_group(app: &TestApp, chat: &str, lang: &str) -> i64 {
    let g: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, member_count, external_chat_id) VALUES ('跑步群', 'wechat', 500, 10, $1) RETURNING id",
    )
    .bind(chat)
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO checkin_rules (group_id, points, reply_lang) VALUES ($1, 10, $2)")
        .bind(g)
        .bind(lang)
        .execute(&app.db)
        .await
        .unwrap();
    g
}

struct Chat<'a> {
    app: &'a TestApp,
    bridge: i64,
    chat: &'a str,
    n: std::cell::Cell<u32>,
}

impl Chat<'_> {
    async fn say(&self, member: &str, text: &str) -> (StatusCode, Value) {
        self.n.set(self.n.get() + 1);
        let ev = json!({"event_id": format!("{}-{}", self.chat, self.n.get()), "kind": "message", "group_id": self.chat,
            "member_id": member, "display_name": member.to_uppercase(), "text": text,
            "timestamp": chrono::Utc::now().timestamp()});
        post_generic(self.app, self.bridge, "s3cret", ev).await
    }
}

/// The token of the link in a bot reply.
fn token_in(reply: &str) -> String {
    let at = reply.find("/m/").unwrap_or_else(|| panic!("no link in {reply}"));
    reply[at + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect()
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = reqwest::Client::new().get(app.url(path)).send().await.unwrap();
    let s = r.status();
    (s, r.text().await.unwrap())
}

async fn member_id(app: &TestApp, ext: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = $1").bind(ext).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn the_me_command_answers_a_link_whose_page_shows_balance_ledger_and_calendar() {
    let app = TestApp::spawn().await;
    let b = bridge(&app, "s3cret").await;
    linked_group(&app, "room-1", "zh-CN").await;
    let chat = Chat { app: &app, bridge: b, chat: "room-1", n: 0.into() };
    let (s, r) = chat.say("ann", "签到").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = chat.say("ann", "我的").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let reply = r["reply"].as_str().unwrap().to_string();
    assert!(reply.starts_with("ANN，这是你的个人主页"), "{reply}");
    assert!(reply.contains(&app.url("/m/")), "an absolute link: {reply}");
    // Nothing else answered: not a check-in, no ledger entry.
    assert_eq!(app.count("points_ledger").await, 1);

    let token = token_in(&reply);
    let r = reqwest::Client::new().get(app.url(&format!("/m/{token}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<html lang="zh-CN">"#));
    assert!(page.contains("我的积分") && page.contains(r#"<div class="balance">10</div>"#), "{page}");
    assert!(page.contains(r#"<span class="kind">签到</span>"#), "the ledger in words: {page}");
    assert!(!page.contains("checkin<"), "no raw kinds");
    assert!(page.contains("跑步群"));
    assert!(page.contains(r#"<b class="streak">1</b>"#) && page.contains(r#"<b class="total">1</b>"#), "{page}");
    assert!(page.contains(r#"<td class="hit today">"#), "today is marked in the calendar: {page}");
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"), "nothing loaded");
    assert!(!page.contains("我的邀请"), "no invite section where no campaign covers the group");
    assert!(!page.contains(r#"class="poster""#), "no poster where the group has none");

    // The /me command in English in a group that replies in English; the page follows the link.
    linked_group(&app, "room-2", "en").await;
    let chat2 = Chat { app: &app, bridge: b, chat: "room-2", n: 0.into() };
    let (_, r) = chat2.say("bob", "/me").await;
    let reply = r["reply"].as_str().unwrap().to_string();
    assert!(reply.starts_with("BOB, here is your page"), "{reply}");
    let (s, page) = get(&app, &format!("/m/{}", token_in(&reply))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains(r#"<html lang="en">"#) && page.contains("My points") && page.contains("No points yet."));

    // A retried delivery gets the same link.
    let ev = json!({"event_id": "room-1-2", "kind": "message", "group_id": "room-1", "member_id": "ann",
        "display_name": "ANN", "text": "我的", "timestamp": chrono::Utc::now().timestamp()});
    let (_, again) = post_generic(&app, b, "s3cret", ev).await;
    assert_eq!(token_in(again["reply"].as_str().unwrap()), token);
}

#[tokio::test]
async fn the_ledger_is_shown_twenty_entries_a_page() {
    let app = TestApp::spawn().await;
    let b = bridge(&app, "s3cret").await;
    linked_group(&app, "room-1", "zh-CN").await;
    let chat = Chat { app: &app, bridge: b, chat: "room-1", n: 0.into() };
    let (_, r) = chat.say("ann", "我的").await;
    let token = token_in(r["reply"].as_str().unwrap());
    let m = member_id(&app, "ann").await;
    let api = app.token("operator", true, &[]).await;
    for i in 1..=25 {
        let r = reqwest::Client::new()
            .post(app.url(&format!("/api/v1/members/{m}/points")))
            .bearer_auth(&api)
            .header("idempotency-key", format!("k{i}"))
            .json(&json!({"delta": i, "note": "x"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let (_, first) = get(&app, &format!("/m/{token}")).await;
    assert_eq!(first.matches("<li>").count(), 20);
    assert!(first.contains(">+25<") && !first.contains(">+5<"), "newest first");
    assert!(first.contains(&format!("/m/{token}?page=2")));
    assert!(first.contains(&format!("<div class=\"balance\">{}</div>", 25 * 26 / 2)));
    let (_, second) = get(&app, &format!("/m/{token}?page=2")).await;
    assert_eq!(second.matches("<li>").count(), 5);
    assert!(second.contains(">+5<") && second.contains(">+1<"));
    assert!(!second.contains("?page=3"));
}

#[tokio::test]
async fn altered_expired_revoked_and_overlong_links_are_refused() {
    let app = TestApp::spawn().await;
    let b = bridge(&app, "s3cret").await;
    linked_group(&app, "room-1", "zh-CN").await;
    let chat = Chat { app: &app, bridge: b, chat: "room-1", n: 0.into() };
    let (_, r) = chat.say("ann", "我的").await;
    let token = token_in(r["reply"].as_str().unwrap());
    let m = member_id(&app, "ann").await;
    assert_eq!(get(&app, &format!("/m/{token}")).await.0, StatusCode::OK);

    // Another member's id under the same signature.
    let other = token.replacen(&format!("{m}."), &format!("{}.", m + 1), 1);
    let (s, body) = get(&app, &format!("/m/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("链接无效"), "{body}");
    // Overlong or odd tokens are refused before any lookup.
    assert_eq!(get(&app, &format!("/m/{}", "1".repeat(200))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/m/1.0.9999999999.z.%3Cscript%3E").await.0, StatusCode::NOT_FOUND);

    // Signed with the installation's key but ended yesterday.
    let key: Vec<u8> = sqlx::query_scalar("SELECT value FROM app_secrets WHERE name = 'member_page_key'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut ended = shoal::domain::member_page::Claims::new(m, 0, shoal::i18n::Lang::ZhCn, now);
    ended.expires = now - 86_400;
    let (s, body) = get(&app, &format!("/m/{}", ended.sign(&key))).await;
    assert_eq!(s, StatusCode::GONE);
    assert!(body.contains("链接已过期"), "{body}");

    // An operator ends the member's links: the old one is refused, a new one works.
    let admin = app.admin().await;
    let page = format!("/members/{m}");
    let r = app.post_form(&admin, &page, &format!("/members/{m}/page-links/revoke"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "asks first");
    assert_eq!(get(&app, &format!("/m/{token}")).await.0, StatusCode::OK, "nothing ended before the answer");
    let r = app.post_form(&admin, &page, &format!("/members/{m}/page-links/revoke"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&app, &format!("/m/{token}")).await.0, StatusCode::NOT_FOUND);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'member.page_links_revoke'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audit, 1);
    let (_, r) = chat.say("ann", "/me").await;
    let fresh = token_in(r["reply"].as_str().unwrap());
    assert_ne!(fresh, token);
    assert_eq!(get(&app, &format!("/m/{fresh}")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn one_address_cannot_walk_member_links_without_limit() {
    let app = TestApp::spawn().await;
    let mut last = StatusCode::OK;
    for i in 0..(shoal::app::member_page::VIEWS_PER_MINUTE + 1) {
        last = get(&app, &format!("/m/{i}.0.9999999999.z.AAAAAAAAAAAAAAAAAAAAAA")).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------- live-code landing pages

const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36";

/// A phone whose browser asks for Chinese: the code's own language must win.
async fn scan_page(app: &TestApp, slug: &str, ua: &str) -> (StatusCode, String) {
    let c = reqwest::Client::builder().user_agent(ua).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(app.url(&format!("/l/{slug}"))).header("accept-language", "zh-CN,zh;q=0.9").send().await.unwrap();
    let s = r.status();
    (s, r.text().await.unwrap())
}

async fn api(app: &TestApp, token: &str, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn landing_texts_and_language_are_the_codes_when_paused_ended_or_full() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    // No groups: every scan gets the "full" page.
    let (s, c) = api(
        &app,
        &token,
        reqwest::Method::POST,
        "/api/v1/live-codes",
        json!({"name": "internal name", "slug": "yoga-club", "page_lang": "en", "page_title": "Yoga Club",
            "page_text": "Morning yoga, every day.", "paused_text": "Back on Monday.", "ended_text": "Season over, see you in spring.",
            "fallback_message": "All classes are full, sorry."}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!((c["page_lang"].as_str(), c["page_title"].as_str()), (Some("en"), Some("Yoga Club")));
    assert!(c["logo_url"].is_null());

    let (s, page) = scan_page(&app, "yoga-club", PHONE).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains(r#"<html lang="en">"#), "the code's language, not the browser's: {page}");
    assert!(page.contains(r#"id="landing-title">Yoga Club<"#) && page.contains("Morning yoga, every day."), "{page}");
    assert!(page.contains("All classes are full, sorry.") && !page.contains("internal name"), "{page}");

    let (s, c) =
        api(&app, &token, reqwest::Method::PATCH, "/api/v1/live-codes/yoga-club", json!({"status": "paused"})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, page) = scan_page(&app, "yoga-club", PHONE).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(page.contains(r#"<html lang="en">"#) && page.contains(r#"id="state-message">Back on Monday.<"#), "{page}");
    assert!(page.contains("Yoga Club"));

    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (s, c) = api(
        &app,
        &token,
        reqwest::Method::PATCH,
        "/api/v1/live-codes/yoga-club",
        json!({"status": "active", "ends_at": past}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (_, page) = scan_page(&app, "yoga-club", PHONE).await;
    assert!(page.contains(r#"id="state-message">Season over, see you in spring.<"#), "{page}");

    // Without texts of its own, a Chinese code shows the standard words in Chinese to an
    // English browser.
    let (s, _) = api(
        &app,
        &token,
        reqwest::Method::PATCH,
        "/api/v1/live-codes/yoga-club",
        json!({"page_lang": "zh-CN", "ended_text": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = reqwest::Client::new()
        .get(app.url("/l/yoga-club"))
        .header("user-agent", PHONE)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<html lang="zh-CN">"#), "{page}");
    // Bad values are refused with the field named, and change nothing.
    let (s, p) = api(
        &app,
        &token,
        reqwest::Method::PATCH,
        "/api/v1/live-codes/yoga-club",
        json!({"page_lang": "fr", "page_title": "x".repeat(61)}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let text = p.to_string();
    assert!(text.contains("page_lang") && text.contains("page_title"), "{p}");
}

#[tokio::test]
async fn link_previews_use_the_codes_title_in_its_language() {
    let app = TestApp::spawn().await;
    let token = app.token("operator", true, &[]).await;
    let (s, _) = api(
        &app,
        &token,
        reqwest::Method::POST,
        "/api/v1/live-codes",
        json!({"name": "内部名称", "slug": "run-club", "page_lang": "zh-CN", "page_title": "晨跑俱乐部", "page_text": "每天早上六点，一起跑步。"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let c = reqwest::Client::builder().user_agent("facebookexternalhit/1.1").build().unwrap();
    let r = c.get(app.url("/l/run-club")).header("accept-language", "en").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<meta property="og:title" content="晨跑俱乐部">"#), "{page}");
    assert!(page.contains(r#"<meta property="og:description" content="每天早上六点，一起跑步。">"#), "{page}");
    assert!(page.contains(r#"<meta property="og:locale" content="zh_CN">"#) && page.contains(r#"<html lang="zh-CN">"#));
    assert!(!page.contains("内部名称"));
}

#[tokio::test]
async fn a_logo_is_checked_like_every_public_image_and_shown_on_the_landing_page() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let fields = [
        ("name", "Logo code"),
        ("slug", "logo-code"),
        ("status", "active"),
        ("mode", "fill"),
        ("page_lang", "zh-CN"),
        ("page_title", "有标志"),
    ];
    // Not an image: the form comes back with the message, nothing is written.
    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &fields,
            vec![("logo", "logo.png", b"not a png".to_vec())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("live_codes").await, 0);
    assert_eq!(app.count("live_code_logos").await, 0);

    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &fields,
            vec![("logo", "logo.png", crate::harness::plain_png())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let sha: String = sqlx::query_scalar("SELECT sha256 FROM live_code_logos").fetch_one(&app.db).await.unwrap();
    let (_, page) = scan_page(&app, "logo-code", PHONE).await;
    assert!(page.contains(&format!(r#"<img class="logo" src="/l/logo-code/logo?v={sha}""#)), "{page}");
    let r = reqwest::get(app.url("/l/logo-code/logo")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(image::load_from_memory(&r.bytes().await.unwrap()).is_ok());
    assert_eq!(reqwest::get(app.url("/l/nope/logo")).await.unwrap().status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- check-in posters

/// Posters need a font: the machine's DejaVu when Noto CJK is not installed.
fn with_fonts(c: &mut shoal::Config) {
    let noto = std::path::Path::new("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc");
    if !noto.exists() {
        c.posters.font_paths = vec!["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into()];
        c.posters.font_family = "DejaVu Sans".into();
    }
}

async fn poster_template(app: &TestApp, token: &str) -> i64 {
    let body = json!({
        "name": "Day N",
        "background_color": "#fbf7ef",
        "elements": [
            {"type": "nickname", "x": 80, "y": 140, "width": 720, "font_size": 56},
            {"type": "text", "x": 80, "y": 330, "width": 920, "font_size": 48, "max_lines": 2, "text": "Day {streak} of {days}: {campaign}"},
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

#[tokio::test]
async fn a_group_with_a_checkin_poster_answers_a_new_checkin_with_a_photo_that_decodes() {
    let app = TestApp::spawn_with(with_fonts).await;
    let token = app.token("admin", true, &[]).await;
    let b = bridge(&app, "s3cret").await;
    let g = linked_group(&app, "room-1", "en").await;
    let chat = Chat { app: &app, bridge: b, chat: "room-1", n: 0.into() };

    // Off: the reply only.
    let (_, r) = chat.say("ann", "签到").await;
    assert_eq!(r["actions"].as_array().unwrap().len(), 1, "{r}");

    let t = poster_template(&app, &token).await;
    let (s, p) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/groups/{g}/checkin-poster"),
        json!({"template_id": t, "text": "keep going"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p, json!({"template_id": t, "text": "keep going"}));

    let (s, r) = chat.say("bob", "签到").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let actions = r["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{r}");
    assert_eq!(actions[1]["action"], "send_photo");
    let url = actions[1]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&app.url("/c/")), "{url}");
    let img = reqwest::get(&url).await.unwrap();
    assert_eq!(img.status(), StatusCode::OK);
    assert_eq!(img.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&img.bytes().await.unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1080, 1920));
    // The QR code on it reads back.
    let mut prepared = rqrr::PreparedImage::prepare(decoded.to_luma8());
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    assert_eq!(grids[0].decode().unwrap().1, app.url("/"));
    // Bob's own page offers the poster of his latest check-in to save.
    let (_, me) = chat.say("bob", "/me").await;
    let (_, page) = get(&app, &format!("/m/{}", token_in(me["reply"].as_str().unwrap()))).await;
    let path = url.trim_start_matches(&app.url(""));
    assert!(page.contains(&format!(r#"<img class="poster" src="{path}""#)), "{page}");
    // A second check-in the same day: no second poster; an altered address: nothing.
    let (_, again) = chat.say("bob", "签到").await;
    assert_eq!(again["actions"].as_array().unwrap().len(), 1, "{again}");
    let altered = url.replacen(".1.1.", ".9.9.", 1);
    assert_ne!(altered, url);
    assert_eq!(reqwest::get(&altered).await.unwrap().status(), StatusCode::NOT_FOUND);

    // Turned off again: no photo for the next member.
    let (s, _) = api(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/groups/{g}/checkin-poster"),
        json!({"template_id": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, r) = chat.say("cat", "签到").await;
    assert_eq!(r["actions"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND, "the poster ends with the setting");
}

#[tokio::test]
async fn the_checkin_poster_is_set_on_the_rules_page_and_refuses_unknown_templates() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let g = linked_group(&app, "room-1", "zh-CN").await;
    let admin = app.admin().await;
    let rules = admin.get(app.url(&format!("/groups/{g}/checkin-rules"))).send().await.unwrap().text().await.unwrap();
    assert!(rules.contains(&format!("href=\"/groups/{g}/checkin-poster\"")));
    let page = format!("/groups/{g}/checkin-poster");
    let r = app.post_form(&admin, &page, &page, &[("template_id", "999"), ("text", "加油")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let none: Option<i64> = sqlx::query_scalar("SELECT poster_template_id FROM checkin_rules WHERE group_id = $1")
        .bind(g)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(none, None);
    let t = poster_template(&app, &token).await;
    let r = app.post_form(&admin, &page, &page, &[("template_id", &t.to_string()), ("text", "加油")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let saved: (Option<i64>, String) =
        sqlx::query_as("SELECT poster_template_id, poster_text FROM checkin_rules WHERE group_id = $1")
            .bind(g)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(saved, (Some(t), "加油".to_string()));
    // Saving the rules keeps it.
    let form = admin.get(app.url(&format!("/groups/{g}/checkin-rules"))).send().await.unwrap().text().await.unwrap();
    assert!(form.contains("name=\"points\""));
}

// ---------------------------------------------------------------- avatars on posters

/// A fake avatar server: every request gets a red PNG after `delay`.
async fn avatar_server(delay: std::time::Duration) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb([255, 0, 0]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let png = png.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    png.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&png).await;
            });
        }
    });
    (port, hits)
}

/// A QQ group with a check-in poster whose template has an avatar at (80, 100), 160 px.
async fn qq_poster_group(app: &TestApp) -> i64 {
    let token = app.token("admin", true, &[]).await;
    let b: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('generic', 'qq', 'qq', 's3cret') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let g: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, member_count, external_chat_id) VALUES ('QQ', 'qq', 500, 10, '777') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let body = json!({"name": "with avatar", "background_color": "#ffffff", "elements": [
        {"type": "avatar", "x": 80, "y": 100, "size": 160, "shape": "square"},
        {"type": "text", "x": 80, "y": 330, "width": 920, "font_size": 48, "text": "Day {streak}"}]});
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/poster-templates"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let t = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let (s, _) = api(
        app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/groups/{g}/checkin-poster"),
        json!({"template_id": t, "text": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    b
}

fn is_red(c: [u8; 3]) -> bool {
    c[0] > 200 && c[1] < 60 && c[2] < 60
}

/// The colour near a corner of the avatar's square on the poster a QQ member's check-in gets:
/// the picture's, or the generated initial's background.
async fn avatar_colour(app: &TestApp, bridge: i64, qq: &str) -> [u8; 3] {
    let chat = Chat { app, bridge, chat: "777", n: 0.into() };
    let (_, r) = chat.say(qq, "签到").await;
    let url = r["actions"][1]["url"].as_str().unwrap_or_else(|| panic!("no poster in {r}")).to_string();
    let img = reqwest::get(&url).await.unwrap();
    assert_eq!(img.status(), StatusCode::OK);
    let decoded = image::load_from_memory(&img.bytes().await.unwrap()).unwrap().to_rgb8();
    decoded.get_pixel(90, 110).0
}

#[tokio::test]
async fn a_members_qq_avatar_is_drawn_on_the_poster() {
    let (port, hits) = avatar_server(std::time::Duration::ZERO).await;
    let app = TestApp::spawn_with(|c| {
        with_fonts(c);
        c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
        c.posters.qq_avatar_url = format!("http://127.0.0.1:{port}/avatar/{{id}}");
    })
    .await;
    let b = qq_poster_group(&app).await;
    let colour = avatar_colour(&app, b, "10001").await;
    assert!(is_red(colour), "the red picture: {colour:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_slow_avatar_gives_way_to_the_initial_and_a_private_address_is_never_asked() {
    let (port, hits) = avatar_server(std::time::Duration::from_secs(20)).await;
    let app = TestApp::spawn_with(|c| {
        with_fonts(c);
        c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
        c.posters.qq_avatar_url = format!("http://127.0.0.1:{port}/avatar/{{id}}");
        c.posters.avatar_timeout_ms = 300;
    })
    .await;
    let b = qq_poster_group(&app).await;
    let colour = avatar_colour(&app, b, "10002").await;
    assert!(!is_red(colour), "the generated initial, not the late picture: {colour:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Without the address allowed, the policy refuses it before any connection.
    let (port, hits) = avatar_server(std::time::Duration::ZERO).await;
    let app = TestApp::spawn_with(|c| {
        with_fonts(c);
        c.posters.qq_avatar_url = format!("http://127.0.0.1:{port}/avatar/{{id}}");
    })
    .await;
    let b = qq_poster_group(&app).await;
    let colour = avatar_colour(&app, b, "10003").await;
    assert!(!is_red(colour), "{colour:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_page_shows_the_members_progress_in_each_campaign_of_their_groups() {
    let app = TestApp::spawn().await;
    let b = bridge(&app, "s3cret").await;
    let g = linked_group(&app, "room-9", "zh-CN").await;
    let token = app.token("admin", true, &[]).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/campaigns"))
        .bearer_auth(&token)
        .json(&json!({"name": "春季邀请赛", "group_ids": [g], "hold_days": 3,
            "stages": [{"invites": 3, "points": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let chat = Chat { app: &app, bridge: b, chat: "room-9", n: 0.into() };
    chat.say("ann", "签到").await;
    let (_, r) = chat.say("ann", "我的").await;
    let (s, page) = get(&app, &format!("/m/{}", token_in(r["reply"].as_str().unwrap()))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("我的邀请 · 春季邀请赛"), "a section per campaign: {page}");
    assert!(page.contains("再成功邀请 3 人可得下一档奖励"), "what the next reward needs: {page}");
    // A member of a group no campaign covers sees no invite section.
    linked_group(&app, "room-10", "zh-CN").await;
    let other = Chat { app: &app, bridge: b, chat: "room-10", n: 0.into() };
    let (_, r) = other.say("bob", "我的").await;
    let (_, page) = get(&app, &format!("/m/{}", token_in(r["reply"].as_str().unwrap()))).await;
    assert!(!page.contains("我的邀请"), "{page}");
}
