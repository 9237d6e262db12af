//! What Chinese operators tripped over, page by page: the live-code page's QR order, a paused
//! code's wording, one labelled display time zone, GET on form URLs, words instead of codes,
//! the dashboard's wording, CSV for Excel, the audit log's filters, confirmations before
//! destructive actions, the setup form's hints and the check-in calendar.

use reqwest::{Client, StatusCode};

use crate::harness::{location, plain_png, TestApp, PASSWORD};

/// A client that asks for Chinese, keeps cookies and does not follow redirects.
fn zh_client() -> Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9".parse().unwrap());
    Client::builder().cookie_store(true).default_headers(h).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A Chinese-speaking admin (no language of their own: the browser's decides).
async fn zh_admin(app: &TestApp) -> Client {
    app.operator("laowang", "admin", true, &[]).await;
    let c = zh_client();
    assert_eq!(app.login(&c, "laowang", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    c
}

async fn page(app: &TestApp, c: &Client, path: &str) -> String {
    let r = c.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.text().await.unwrap()
}

async fn group_with_link(app: &TestApp, name: &str, platform: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, join_url) VALUES ($1, $2, 500, 'https://qm.qq.com/q/x') RETURNING id",
    )
    .bind(name)
    .bind(platform)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn live_code(app: &TestApp, slug: &str, status: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO live_codes (slug, name, status) VALUES ($1, $1, $2) RETURNING id")
        .bind(slug)
        .bind(status)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn target(app: &TestApp, code: i64, group: i64, limit: i32, used: i32) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit, used) VALUES ($1, $2, 1, $3, $4) RETURNING id",
    )
    .bind(code)
    .bind(group)
    .bind(limit)
    .bind(used)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn member(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name, last_active_at)
         VALUES ('qq', $1, $1, '2026-12-02 11:30:00+00') RETURNING id",
    )
    .bind(name)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

// ---------------------------------------------------------------- live-code page

#[tokio::test]
async fn the_live_code_page_leads_with_its_own_qr_and_keeps_the_fallback_qr_small_and_labelled() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let code = live_code(&app, "spring", "active").await;
    sqlx::query("UPDATE live_codes SET fallback_kind = 'image' WHERE id = $1")
        .bind(code)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO live_code_fallback_images (live_code_id, content_type, bytes, sha256) VALUES ($1, 'image/png', $2, 'abc')",
    )
    .bind(code)
    .bind(plain_png())
    .execute(&app.db)
    .await
    .unwrap();
    let body = page(&app, &c, &format!("/live-codes/{code}")).await;
    let main = &body[body.find("<main").unwrap()..];
    let first_img = &main[main.find("<img").unwrap()..];
    assert!(
        first_img.starts_with("<img class=\"qr-main\" id=\"live-code-qr\""),
        "first image: {}",
        first_img.chars().take(120).collect::<String>()
    );
    assert!(first_img.contains(&format!("src=\"/live-codes/{code}/qr.png")));
    assert!(body.contains("活码二维码（印刷和分享这一个）"));
    // The downloads sit with the live code's QR, before anything about the fallback.
    let downloads = body.find("/qr.png?size=2048").unwrap();
    let fallback = body.find("id=\"fallback-qr\"").expect("the fallback QR is shown");
    assert!(downloads < fallback);
    let section = &body[body.find("id=\"fallback\"").unwrap()..];
    assert!(section.contains("class=\"qr-thumb\" id=\"fallback-qr\"") && section.contains("width=\"96\""));
    assert!(section.contains("兜底联系人二维码（仅在所有群都满时显示）"));
}

#[tokio::test]
async fn a_paused_live_code_tells_members_it_is_paused_not_that_it_is_dead() {
    let app = TestApp::spawn().await;
    live_code(&app, "napping", "paused").await;
    let ended = live_code(&app, "over", "active").await;
    sqlx::query("UPDATE live_codes SET ends_at = now() - interval '1 day' WHERE id = $1")
        .bind(ended)
        .execute(&app.db)
        .await
        .unwrap();
    let c = zh_client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = app.url(path);
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (_, paused) = get("/l/napping").await;
    assert!(paused.contains("该活码已暂停使用") && paused.contains("并没有失效"), "{paused}");
    assert!(!paused.contains("已失效") && !paused.contains("活动已经结束"), "{paused}");
    let (_, over) = get("/l/over").await;
    assert!(over.contains("活动已结束"), "{over}");
    let (status, missing) = get("/l/never-made").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("链接不存在"), "{missing}");
    // The form's hint says the same thing members will see.
    let admin = zh_admin(&app).await;
    let form = page(&app, &admin, "/live-codes/new").await;
    assert!(form.contains("id=\"hint-status\"") && form.contains("该活码已暂停使用"));
}

// ---------------------------------------------------------------- time zones

#[tokio::test]
async fn every_time_is_shown_in_one_labelled_zone_which_an_operator_may_choose() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let m = member(&app, "阿明").await;
    sqlx::query(
        "INSERT INTO bridges (kind, platform, name, secret, last_event_at) VALUES ('onebot11', 'qq', 'QQ机器人', 's', '2026-12-02 11:30:00+00')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (at, actor_kind, actor_name, action, target_kind, target_id, details)
         VALUES ('2026-12-02 11:30:00+00', 'operator', 'laowang', 'member.update', 'member', $1, '{}')",
    )
    .bind(m.to_string())
    .execute(&app.db)
    .await
    .unwrap();
    let beijing = "2026-12-02 19:30 (北京时间)";
    for path in [format!("/members/{m}"), "/bridges".to_string(), "/settings/audit".to_string()] {
        let body = page(&app, &c, &path).await;
        assert!(
            body.contains(beijing) || body.contains("2026-12-02 19:30:00 (北京时间)"),
            "{path} shows Beijing time, labelled"
        );
        assert!(!body.contains(" UTC") && !body.contains("11:30 ("), "{path} shows no UTC time");
    }

    // The operator's own choice applies to every page.
    let r = app.post_form(&c, "/settings", "/settings/timezone", &[("timezone", "Asia/Tokyo")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let body = page(&app, &c, &format!("/members/{m}")).await;
    assert!(body.contains("2026-12-02 20:30 (Asia/Tokyo, UTC+9)"), "the operator's zone");
    // A zone that does not exist is refused and changes nothing.
    let r = app.post_form(&c, "/settings", "/settings/timezone", &[("timezone", "Mars/Olympus")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let zone: Option<String> = sqlx::query_scalar("SELECT display_timezone FROM operators WHERE username = 'laowang'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(zone.as_deref(), Some("Asia/Tokyo"));
    // Back to the instance's default.
    let r = app.post_form(&c, "/settings", "/settings/timezone", &[("timezone", "")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(page(&app, &c, &format!("/members/{m}")).await.contains(beijing));
}

#[tokio::test]
async fn the_instance_display_zone_is_a_setting() {
    let app = TestApp::spawn_with(|c| c.display_timezone = shoal::domain::Zone(chrono_tz::UTC)).await;
    let c = zh_admin(&app).await;
    let m = member(&app, "阿明").await;
    assert!(page(&app, &c, &format!("/members/{m}")).await.contains("2026-12-02 11:30 (UTC)"));
}

// ---------------------------------------------------------------- GET on form URLs

/// Every admin route that takes a POST, from the routers' source, with `{…}` segments as 1.
fn post_routes() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let admin = [
        "bridges",
        "bridge_outbound",
        "checkins",
        "dashboard",
        "groups",
        "live_codes",
        "login",
        "members",
        "points",
        "settings",
    ];
    let mut out = Vec::new();
    for module in admin {
        let text = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
        for line in text.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let path = line.trim_start_matches(".route(\"").split('"').next().unwrap();
            if line.contains("post(") {
                let concrete: Vec<String> =
                    path.split('/').map(|s| if s.starts_with('{') { "1".to_string() } else { s.to_string() }).collect();
                out.push(concrete.join("/"));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_url_a_form_posts_to_answers_get_with_the_page_that_holds_the_form() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    // Something with id 1 behind every kind of link.
    let g = group_with_link(&app, "一群", "qq").await;
    let m = member(&app, "阿明").await;
    let code = live_code(&app, "code1", "active").await;
    target(&app, code, g, 10, 0).await;
    sqlx::query("INSERT INTO live_code_channels (live_code_id, key, name) VALUES ($1, 'poster', 'Poster')")
        .bind(code)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'B', 's')")
        .execute(&app.db)
        .await
        .unwrap();
    app.token("viewer", true, &[]).await;
    assert_eq!((g, m, code), (1, 1, 1));

    let routes = post_routes();
    assert!(routes.contains(&"/setup".to_string()));
    assert!(routes.len() >= 30, "found the POST routes: {routes:?}");
    assert!(routes.contains(&"/members/1/points".to_string()));
    // The setup form answers GET only with its one-time token (a 404 page without it).
    for path in routes.into_iter().filter(|p| p != "/setup") {
        let r = c.get(app.url(&path)).send().await.unwrap();
        let status = r.status();
        assert!(status == StatusCode::OK || status == StatusCode::SEE_OTHER, "GET {path}: {status}");
        if status == StatusCode::SEE_OTHER {
            let to = location(&r);
            let r = c.get(app.url(&to)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "GET {path} → {to}");
        }
    }
}

// ---------------------------------------------------------------- words, not codes

#[tokio::test]
async fn pages_show_words_and_links_instead_of_codes() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let m = member(&app, "阿明").await;
    {
        let mut conn = app.db.acquire().await.unwrap();
        let key = shoal::domain::points::IdempotencyKey::checkin(m, 1, chrono::Utc::now().date_naive());
        shoal::store::points::post(
            &mut conn,
            shoal::store::points::Posting {
                member_id: m,
                delta: 1,
                kind: shoal::domain::points::LedgerKind::Checkin,
                reference: "checkin:5",
                key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await
        .unwrap();
    }
    let r = app
        .post_form(
            &c,
            &format!("/members/{m}"),
            &format!("/members/{m}/points"),
            &[("key", "6f1c1d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f"), ("delta", "5"), ("reason", "活动奖励")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let body = page(&app, &c, &format!("/members/{m}")).await;
    assert!(body.contains("添加时间") && !body.contains("成员已添加。"), "the created date has its own label");
    assert!(
        body.contains(&format!("<a href=\"/members/{m}#checkins\">签到奖励（第 5 条签到）</a>")),
        "ledger reference in words"
    );
    assert!(!body.contains("checkin:5"));
    assert!(!body.contains("}}: ") && !body.contains("积分余额:") && body.contains("：<strong"), "full-width colons");

    let audit = page(&app, &c, "/settings/audit").await;
    assert!(audit.contains("调整积分"), "the action in words");
    assert!(!audit.contains(">member.points_adjust<"));
    assert!(audit.contains(&format!("<a href=\"/members/{m}\">成员 {m} 号</a>")), "the object, linked: {audit}");
    let table = &audit[audit.find("id=\"audit\"").unwrap()..];
    assert!(!table.contains("{&quot;") && !table.contains("{\"") && !table.contains("&#34;"), "no raw JSON");
    assert!(audit.contains("<dt>备注</dt><dd>活动奖励</dd>"), "details as labelled values");
}

#[tokio::test]
async fn the_bridge_page_says_why_a_delivery_was_refused_and_when_no_group_of_its_platform_exists() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'QQ机器人', 'right') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO unlinked_chats (bridge_id, chat_id, title) VALUES ($1, '123456', '读书群')")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let body =
        br#"{"post_type":"message","message_type":"group","group_id":123456,"user_id":1,"message":"hi","time":1}"#;
    let (status, _) =
        crate::harness::post_hook(&app, &format!("/hooks/onebot11/{id}"), body, &[("x-signature", "sha1=00".into())])
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let page = page(&app, &c, &format!("/bridges/{id}")).await;
    assert!(page.contains("签名错误或缺失：请检查机器人配置中的密钥。"), "the refusal in words");
    let no_candidates = &page[page.find("id=\"no-candidates\"").expect("the hint")..];
    assert!(no_candidates.contains("还没有QQ群可以关联"), "{}", &no_candidates[..200]);
    assert!(!page.contains("每个群都已有群聊 id"));
    // One name for bridges, in the nav and in the titles.
    assert!(page.contains("data-nav=\"bridges\" aria-current=\"page\">机器人</a>"));
    assert!(!page.contains("桥接"));
    let list = crate::ux::page(&app, &c, "/bridges").await;
    assert!(list.contains("<title>机器人 · Shoal</title>"), "the list's title");

    // With a QQ group that already has a chat, the other reason is given.
    sqlx::query("INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('已关联', 'qq', 500, '999')")
        .execute(&app.db)
        .await
        .unwrap();
    let page = crate::ux::page(&app, &c, &format!("/bridges/{id}")).await;
    assert!(page.contains("每个群都已有群聊 id"));
}

#[tokio::test]
async fn live_code_statistics_name_what_they_count() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let code = live_code(&app, "stats", "active").await;
    let body = page(&app, &c, &format!("/live-codes/{code}")).await;
    assert!(body.contains("分到群的扫码（含回访）"));
    assert!(!body.contains(">进入群<"));
}

// ---------------------------------------------------------------- dashboard

#[tokio::test]
async fn the_dashboard_tells_full_from_nearly_full_and_an_empty_install_from_a_fine_one() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let empty = page(&app, &c, "/").await;
    assert!(empty.contains("还没有群") && empty.contains("还没有活码"), "an empty install says so");
    assert!(!empty.contains("一切正常") && !empty.contains("每个群都有可用的入群方式"));

    let g = group_with_link(&app, "一群", "qq").await;
    let full = live_code(&app, "full", "active").await;
    target(&app, full, g, 3, 3).await;
    let body = page(&app, &c, "/").await;
    assert!(body.contains("已满（3 / 3）"), "a full target is full");
    assert!(!body.contains("已用上限的 90 %"));
    assert!(!body.contains("一切正常"), "nothing claims all is well above a live code with no eligible group");
    assert!(body.contains("没有需要处理的群"), "the groups card speaks of groups only");

    let g2 = group_with_link(&app, "二群", "qq").await;
    let nearly = live_code(&app, "nearly", "active").await;
    target(&app, nearly, g2, 10, 9).await;
    let body = page(&app, &c, "/").await;
    assert!(body.contains("已用上限的 90%（9 / 10）"));
}

// ---------------------------------------------------------------- CSV for Excel

#[tokio::test]
async fn csv_for_excel_bom_gbk_chinese_headers_template_and_clear_errors() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let m = member(&app, "阿明").await;
    {
        let mut conn = app.db.acquire().await.unwrap();
        let key = shoal::domain::points::IdempotencyKey::manual(m, uuid::Uuid::new_v4());
        shoal::store::points::post(
            &mut conn,
            shoal::store::points::Posting {
                member_id: m,
                delta: 7,
                kind: shoal::domain::points::LedgerKind::Adjustment,
                reference: "",
                key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await
        .unwrap();
    }
    let export = c.get(app.url("/members/export.csv")).send().await.unwrap().bytes().await.unwrap();
    assert!(export.starts_with(b"\xEF\xBB\xBF"), "a UTF-8 BOM for Excel");
    let text = String::from_utf8(export[3..].to_vec()).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",balance,last_active_at (Asia/Shanghai)"), "{text}");
    assert!(text.contains("阿明,,,,,7,2026-12-02 19:30:00"), "balance and last active: {text}");

    let template = c.get(app.url("/members/import/template.csv")).send().await.unwrap();
    assert_eq!(template.status(), StatusCode::OK);
    let template = template.bytes().await.unwrap();
    assert!(template.starts_with("\u{feff}平台,用户ID,昵称,群编号,角色,标签,备注".as_bytes()));

    // What Excel writes on a Chinese Windows: GBK, Chinese headers, 微信 and QQ.
    let csv = "平台,用户ID,昵称,标签\n微信,wxid_1,张三,新人\nQQ,10001,李四,\nICQ,7,王五,\n";
    let (gbk, _, _) = encoding_rs::GBK.encode(csv);
    let r = app
        .post_multipart(&c, "/members/import", "/members/import", &[], vec![("file", "会员.csv", gbk.into_owned())])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    let platforms: Vec<(String, String)> = sqlx::query_as(
        "SELECT platform, display_name FROM members WHERE display_name IN ('张三', '李四') ORDER BY platform",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(platforms, vec![("qq".to_string(), "李四".to_string()), ("wechat".to_string(), "张三".to_string())]);
    // The bad row names its value and what is allowed, in Chinese words.
    assert!(body.contains("平台「ICQ」有误"), "{body}");
    assert!(body.contains("可选值：微信 (wechat)、QQ (qq)"), "{body}");
}

// ---------------------------------------------------------------- audit log

#[tokio::test]
async fn the_audit_log_filters_by_who_what_object_and_day_in_the_display_zone() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    for (at, who, action, kind, id) in [
        ("2026-10-31 17:00:00+00", "alice", "group.update", "group", "5"), // 11-01 01:00 in Beijing
        ("2026-11-01 17:00:00+00", "alice", "member.update", "member", "5"), // 11-02 01:00 in Beijing
        ("2026-11-01 03:00:00+00", "bob", "group.update", "group", "6"),
    ] {
        sqlx::query(
            "INSERT INTO audit_log (at, actor_kind, actor_name, action, target_kind, target_id, details)
             VALUES ($1::timestamptz, 'operator', $2, $3, $4, $5, '{}')",
        )
        .bind(at)
        .bind(who)
        .bind(action)
        .bind(kind)
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    }
    let rows = |body: &str| body.matches("<tr data-action=").count();
    assert_eq!(rows(&page(&app, &c, "/settings/audit?actor=alice").await), 2);
    assert_eq!(rows(&page(&app, &c, "/settings/audit?action=group.update").await), 2);
    assert_eq!(rows(&page(&app, &c, "/settings/audit?kind=group&object=5").await), 1);
    let day = page(&app, &c, "/settings/audit?from=2026-11-01&to=2026-11-01").await;
    assert_eq!(rows(&day), 2, "1 November in Beijing: 10-31 17:00 and 11-01 03:00 UTC");
    assert!(
        day.contains("id=\"audit-filters\"") && day.contains("value=\"2026-11-01\""),
        "the filters keep their values"
    );
    assert!(page(&app, &c, "/settings/audit?actor=nobody").await.contains("没有符合筛选条件的记录"));
}

// ---------------------------------------------------------------- confirmations

#[tokio::test]
async fn destructive_actions_ask_first_and_only_the_confirmed_repost_acts() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    app.token("viewer", true, &[]).await;
    let revoked = || async {
        sqlx::query_scalar::<_, bool>("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = 1")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let r = app.post_form(&c, "/settings/tokens", "/settings/tokens/1/revoke", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ask = r.text().await.unwrap();
    assert!(ask.contains("请确认") && ask.contains("吊销这个令牌"), "{ask}");
    assert!(ask.contains("<form method=\"post\" action=\"/settings/tokens/1/revoke\""));
    assert!(ask.contains("name=\"confirm\" value=\"1\"") && ask.contains("name=\"_csrf\""));
    assert!(!revoked().await, "asking changes nothing");
    let r = app.post_form(&c, "/settings/tokens", "/settings/tokens/1/revoke", &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(revoked().await);

    let g = group_with_link(&app, "一群", "qq").await;
    let code = live_code(&app, "reset-me", "active").await;
    let t = target(&app, code, g, 10, 4).await;
    let used = || async {
        sqlx::query_scalar::<_, i32>("SELECT used FROM live_code_targets WHERE id = $1")
            .bind(t)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let detail = format!("/live-codes/{code}");
    let r = app.post_form(&c, &detail, &format!("{detail}/targets/{t}/reset"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("「一群」把该群的计数清零"));
    assert_eq!(used().await, 4);
    let r = app.post_form(&c, &detail, &format!("{detail}/targets/{t}/reset"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(used().await, 0);

    let r = app.post_form(&c, &detail, &format!("{detail}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.count("live_codes").await, 1);
    // A viewer is refused before any question is asked.
    let viewer = app.login_as("kan", "viewer", true, &[]).await;
    let r = app.post_form(&viewer, "/live-codes", &format!("{detail}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.post_form(&c, &detail, &format!("{detail}/delete"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("live_codes").await, 0);
}

// ---------------------------------------------------------------- setup form, calendar

#[tokio::test]
async fn the_setup_form_shows_each_hint_once_even_next_to_its_error() {
    let app = TestApp::spawn().await;
    let token = shoal::auth::random_token(24);
    {
        let mut conn = app.db.acquire().await.unwrap();
        shoal::store::operators::replace_setup_token(&mut conn, &shoal::auth::token_hash(&token)).await.unwrap();
    }
    let c = zh_client();
    let form = page(&app, &c, &format!("/setup?token={token}")).await;
    assert_eq!(form.matches("至少 10 个字符。").count(), 1);
    let csrf = crate::harness::csrf_in(&form).unwrap();
    let r = c
        .post(app.url("/setup"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("token", token.as_str()),
            ("username", "x"),
            ("password", "short"),
            ("password_confirm", "short"),
            ("language", "zh-CN"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert_eq!(body.matches("至少 10 个字符。").count(), 1, "the error, not the hint again");
    assert_eq!(app.count("operators").await, 0);
}

#[tokio::test]
async fn the_checkin_calendar_leaves_the_days_to_come_blank() {
    let app = TestApp::spawn().await;
    let c = zh_admin(&app).await;
    let g = group_with_link(&app, "打卡群", "qq").await;
    let m = member(&app, "阿明").await;
    let today: chrono::NaiveDate =
        sqlx::query_scalar("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date").fetch_one(&app.db).await.unwrap();
    sqlx::query("INSERT INTO checkins (member_id, group_id, day, at, streak) VALUES ($1, $2, $3, now(), 1)")
        .bind(m)
        .bind(g)
        .bind(today)
        .execute(&app.db)
        .await
        .unwrap();
    let body = page(&app, &c, &format!("/groups/{g}/checkins")).await;
    let calendar = &body[body.find("id=\"calendar-table\"").unwrap()..];
    let row = &calendar[calendar.find(&format!("data-member=\"{m}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    use chrono::Datelike;
    let days_in_month = {
        let first = today.with_day(1).unwrap();
        let next = if first.month() == 12 {
            chrono::NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
        } else {
            chrono::NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
        }
        .unwrap();
        (next - first).num_days() as usize
    };
    let past = today.day() as usize - 1;
    assert_eq!(row.matches("class=\"d none\"").count(), past, "only days gone by can be missed");
    assert_eq!(row.matches("class=\"d future\"").count(), days_in_month - past - 1, "days to come are blank");
}
