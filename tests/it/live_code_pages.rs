//! Live-code admin pages: create and edit with field errors, targets (order, enable, limit,
//! reset, remove), channels, QR downloads decoded back to their link, statistics, scoping,
//! read-only viewers and the dashboard's live-code warnings.

use reqwest::StatusCode;

use crate::harness::{location, plain_png, qr_png, TestApp};

const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36";

/// A live code without targets; returns its id.
async fn code_row(app: &TestApp, slug: &str, name: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO live_codes (slug, name, fallback_message) VALUES ($1, $2, 'All full') RETURNING id")
        .bind(slug)
        .bind(name)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// A group joined by invite link, with a capacity and an optional reported member count.
async fn group(app: &TestApp, name: &str, capacity: i32, members: Option<i32>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, member_count, join_url) VALUES ($1, 'qq', $2, $3, $4) RETURNING id",
    )
    .bind(name)
    .bind(capacity)
    .bind(members)
    .bind(format!("https://qm.qq.com/q/{name}"))
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn target_row(app: &TestApp, code: i64, group: i64, position: i32, limit: i32) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(code)
    .bind(group)
    .bind(position)
    .bind(limit)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// (target id, group id, position, limit, used, enabled) in order.
async fn targets(app: &TestApp, code: i64) -> Vec<(i64, i64, i32, i32, i32, bool)> {
    sqlx::query_as(
        "SELECT id, group_id, position, scan_limit, used, enabled FROM live_code_targets
         WHERE live_code_id = $1 ORDER BY position, id",
    )
    .bind(code)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn get_text(c: &reqwest::Client, url: String) -> String {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

fn phone() -> reqwest::Client {
    reqwest::Client::builder().user_agent(PHONE).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The text of the element with `id="…"` up to its closing tag (for `<div id=… >N</div>`).
fn by_id(body: &str, id: &str) -> String {
    let i = body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let start = i + body[i..].find('>').unwrap() + 1;
    let end = start + body[start..].find('<').unwrap();
    body[start..end].trim().to_string()
}

#[tokio::test]
async fn creating_a_live_code_through_the_form_lists_it_and_audits_it() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let form = get_text(&c, app.url("/live-codes/new")).await;
    // A fresh random slug is offered.
    let i = form.find("name=\"slug\" value=\"").unwrap() + "name=\"slug\" value=\"".len();
    assert_eq!(form[i..].find('"').unwrap(), 10, "prefilled random slug");

    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &[
                ("name", "春季招募"),
                ("slug", "spring-2026"),
                ("status", "active"),
                ("mode", "balance"),
                ("sticky_days", "3"),
                ("starts_at", "2026-05-01T09:00"),
                ("ends_at", ""),
                ("fallback_kind", "image"),
                ("fallback_message", "请联系客服"),
            ],
            vec![("fallback_image", "kefu.png", plain_png())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id: i64 = location(&r).trim_start_matches("/live-codes/").parse().unwrap();
    let (mode, sticky, starts, kind): (String, i32, chrono::DateTime<chrono::Utc>, String) =
        sqlx::query_as("SELECT mode, sticky_days, starts_at, fallback_kind FROM live_codes WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((mode.as_str(), sticky, kind.as_str()), ("balance", 3, "image"));
    assert_eq!(starts.to_rfc3339(), "2026-05-01T01:00:00+00:00", "09:00 in Asia/Shanghai");
    let (ct, sha): (String, String) =
        sqlx::query_as("SELECT content_type, sha256 FROM live_code_fallback_images WHERE live_code_id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(ct, "image/png");

    let list = get_text(&c, app.url("/live-codes")).await;
    assert!(list.contains("春季招募") && list.contains("spring-2026"));
    let detail = get_text(&c, app.url(&format!("/live-codes/{id}"))).await;
    assert!(detail.contains(&app.url("/l/spring-2026")), "public link shown");
    assert!(detail.contains(&format!("/live-codes/{id}/fallback-image?v={sha}")));
    let img = c.get(app.url(&format!("/live-codes/{id}/fallback-image"))).send().await.unwrap();
    assert_eq!(img.headers()["content-type"], "image/png");
    assert_eq!(img.bytes().await.unwrap().as_ref(), plain_png().as_slice());
    assert_eq!(audit_count(&app, "live_code.create").await, 1);

    // Editing keeps the image and shows the local time again; pausing takes effect at once.
    let edit = format!("/live-codes/{id}/edit");
    let form = get_text(&c, app.url(&edit)).await;
    assert!(form.contains("value=\"2026-05-01T09:00\""), "start shown in the stats time zone");
    let r = app
        .post_multipart(
            &c,
            &edit,
            &edit,
            &[("name", "春季招募"), ("slug", "spring-2026"), ("status", "paused"), ("fallback_kind", "image")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("live_code_fallback_images").await, 1);
    assert_eq!(audit_count(&app, "live_code.update").await, 1);

    // Deleting removes it and its public link answers 404 at once.
    let r =
        app.post_form(&c, &format!("/live-codes/{id}"), &format!("/live-codes/{id}/delete"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/live-codes");
    assert_eq!(app.count("live_codes").await, 0);
    assert_eq!(audit_count(&app, "live_code.delete").await, 1);
    assert_eq!(phone().get(app.url("/l/spring-2026")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let list = get_text(&c, app.url("/live-codes")).await;
    assert!(!list.contains("spring-2026") && list.contains("id=\"empty\""));
}

#[tokio::test]
async fn bad_live_code_input_re_renders_the_form_with_messages_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &[
                ("name", ""),
                ("slug", "a b"),
                ("status", "sleeping"),
                ("mode", "zigzag"),
                ("sticky_days", "400"),
                ("starts_at", "2026-05-02T09:00"),
                ("ends_at", "2026-05-01T09:00"),
                ("fallback_kind", "url"),
                ("fallback_url", ""),
                ("fallback_message", "keep me"),
            ],
            vec![("fallback_image", "notes.txt", b"not an image at all".to_vec())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for field in ["name", "slug", "status", "mode", "sticky_days", "ends_at", "fallback_url", "fallback_image"] {
        assert!(body.contains(&format!("id=\"err-{field}\"")), "message for {field}");
    }
    assert!(body.contains("The end must come after the start."));
    assert!(body.contains("not a readable PNG or JPEG"));
    assert!(body.contains("value=\"a b\"") && body.contains("keep me"), "input kept");

    // The image fallback needs an image.
    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &[("name", "X"), ("slug", "needs-image"), ("fallback_kind", "image")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-fallback_image\""));

    // A file over the limit: 413 with the form again.
    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &[("name", "X"), ("slug", "too-big")],
            vec![("fallback_image", "big.png", vec![0x89; 2 * 1024 * 1024 + 10])],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().await.unwrap().contains("larger than 2 MiB"));

    assert_eq!(app.count("live_codes").await, 0);
    assert_eq!(app.count("live_code_fallback_images").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_taken_slug_is_a_field_error_on_create_and_on_edit() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    code_row(&app, "taken", "First").await;
    let other = code_row(&app, "other", "Second").await;
    let r = app
        .post_multipart(&c, "/live-codes/new", "/live-codes/new", &[("name", "Third"), ("slug", "TAKEN")], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-slug\"") && body.contains("Another live code uses this slug."));
    assert!(body.contains("value=\"Third\""));
    let edit = format!("/live-codes/{other}/edit");
    let r = app.post_multipart(&c, &edit, &edit, &[("name", "Second"), ("slug", "taken")], vec![]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-slug\""));
    let slugs: Vec<String> =
        sqlx::query_scalar("SELECT slug FROM live_codes ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(slugs, vec!["taken", "other"]);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn targets_are_added_reordered_disabled_limited_reset_and_removed() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let code = code_row(&app, "order", "Order").await;
    let alpha = group(&app, "alpha", 200, Some(150)).await;
    let beta = group(&app, "beta", 500, None).await;
    let page = format!("/live-codes/{code}");
    let add = format!("{page}/targets");

    // The picker offers both groups; an empty limit is the room left in the group.
    let detail = get_text(&c, app.url(&page)).await;
    assert!(
        detail.contains(&format!("<option value=\"{alpha}\"")) && detail.contains(&format!("<option value=\"{beta}\""))
    );
    let r = app.post_form(&c, &page, &add, &[("group_id", &alpha.to_string()), ("scan_limit", "")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{page}#targets"));
    let r = app.post_form(&c, &page, &add, &[("group_id", &beta.to_string()), ("scan_limit", "30")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let ts = targets(&app, code).await;
    assert_eq!(ts.iter().map(|t| (t.1, t.2, t.3)).collect::<Vec<_>>(), vec![(alpha, 1, 50), (beta, 2, 30)]);
    let (ta, tb) = (ts[0].0, ts[1].0);
    let detail = get_text(&c, app.url(&page)).await;
    assert!(detail.contains("id=\"no-candidates\""), "both groups are targets now");
    assert!(detail.contains(&format!("href=\"/groups/{alpha}\"")));

    // The same group twice, or a bad limit: field errors, nothing written.
    let r = app.post_form(&c, &page, &add, &[("group_id", &alpha.to_string()), ("scan_limit", "5")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-group_id\"") && body.contains("This group is a target already."));
    let gamma = group(&app, "gamma", 100, None).await;
    let r = app.post_form(&c, &page, &add, &[("group_id", &gamma.to_string()), ("scan_limit", "lots")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-scan_limit\"") && body.contains("value=\"lots\""));
    assert_eq!(targets(&app, code).await.len(), 2);
    // A group that does not exist: the same field error as through the API.
    let r = app.post_form(&c, &page, &add, &[("group_id", "999999"), ("scan_limit", "5")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-group_id\""));
    // A limit above 10 000 000 is refused, as through the API.
    let r = app.post_form(&c, &page, &add, &[("group_id", &gamma.to_string()), ("scan_limit", "10000001")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(targets(&app, code).await.len(), 2);

    // Move beta up: positions change.
    let r = app.post_form(&c, &page, &format!("{page}/targets/{tb}/up"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let ts = targets(&app, code).await;
    assert_eq!(ts.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(), vec![(tb, 1), (ta, 2)]);
    // Moving the last one down changes nothing.
    app.post_form(&c, &page, &format!("{page}/targets/{ta}/down"), &[]).await;
    assert_eq!(targets(&app, code).await.iter().map(|t| t.0).collect::<Vec<_>>(), vec![tb, ta]);
    app.post_form(&c, &page, &format!("{page}/targets/{tb}/down"), &[]).await;
    assert_eq!(targets(&app, code).await.iter().map(|t| t.0).collect::<Vec<_>>(), vec![ta, tb]);

    // Disable and enable.
    let r = app.post_form(&c, &page, &format!("{page}/targets/{ta}/disable"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!targets(&app, code).await[0].5);
    let detail = get_text(&c, app.url(&page)).await;
    assert!(detail.contains(&format!("/targets/{ta}/enable\"")));
    app.post_form(&c, &page, &format!("{page}/targets/{ta}/enable"), &[]).await;
    assert!(targets(&app, code).await[0].5);

    // Change the limit; a bad one is a field error on that target's form.
    let r = app.post_form(&c, &page, &format!("{page}/targets/{ta}/limit"), &[("scan_limit", "80")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(targets(&app, code).await[0].3, 80);
    let r = app.post_form(&c, &page, &format!("{page}/targets/{ta}/limit"), &[("scan_limit", "-5")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("id=\"err-limit_{ta}\"")) && body.contains("value=\"-5\""));
    assert_eq!(targets(&app, code).await[0].3, 80);

    // Reset: the counter goes to zero and the audit row keeps the old count.
    sqlx::query("UPDATE live_code_targets SET used = 7 WHERE id = $1").bind(ta).execute(&app.db).await.unwrap();
    let r = app.post_form(&c, &page, &format!("{page}/targets/{ta}/reset"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(targets(&app, code).await[0].4, 0);
    let old: i64 = sqlx::query_scalar(
        "SELECT (details->>'old_used')::bigint FROM audit_log WHERE action = 'live_code.target_reset' AND target_id = $1",
    )
    .bind(code.to_string())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(old, 7);

    // Remove.
    let r = app.post_form(&c, &page, &format!("{page}/targets/{tb}/remove"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(targets(&app, code).await.iter().map(|t| t.0).collect::<Vec<_>>(), vec![ta]);
    // A target of another live code is not found through this one.
    let other = code_row(&app, "other", "Other").await;
    let foreign = target_row(&app, other, beta, 1, 10).await;
    let r = app.post_form(&c, &page, &format!("{page}/targets/{foreign}/remove"), &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(targets(&app, other).await.len(), 1);

    for (action, n) in [
        ("live_code.target_add", 2),
        ("live_code.target_move", 3),
        ("live_code.target_disable", 1),
        ("live_code.target_enable", 1),
        ("live_code.target_limit", 1),
        ("live_code.target_reset", 1),
        ("live_code.target_remove", 1),
    ] {
        assert_eq!(audit_count(&app, action).await, n, "{action}");
    }
}

#[tokio::test]
async fn channels_are_added_with_a_valid_key_and_deleted() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let code = code_row(&app, "chan", "Channels").await;
    let page = format!("/live-codes/{code}");
    let add = format!("{page}/channels");
    let r = app.post_form(&c, &page, &add, &[("key", "Poster A"), ("name", "")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-key\"") && body.contains("id=\"err-name\"") && body.contains("value=\"Poster A\""));
    assert_eq!(app.count("live_code_channels").await, 0);

    let r = app.post_form(&c, &page, &add, &[("key", "poster-a"), ("name", "地铁海报")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("{page}#channels"));
    let detail = get_text(&c, app.url(&page)).await;
    assert!(detail.contains(&app.url("/l/chan?ch=poster-a")) && detail.contains("地铁海报"));
    assert!(detail.contains(&format!("/live-codes/{code}/qr.svg?ch=poster-a")));

    let r = app.post_form(&c, &page, &add, &[("key", "poster-a"), ("name", "Again")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("This live code has a channel with this key already."));
    assert_eq!(app.count("live_code_channels").await, 1);

    let cid: i64 = sqlx::query_scalar("SELECT id FROM live_code_channels").fetch_one(&app.db).await.unwrap();
    let r = app.post_form(&c, &page, &format!("{page}/channels/{cid}/delete"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("live_code_channels").await, 0);
    assert_eq!(audit_count(&app, "live_code.channel_add").await, 1);
    assert_eq!(audit_count(&app, "live_code.channel_delete").await, 1);
}

/// Reads the squares of `render_svg` back into a module grid and rasterises it (8 px a
/// module, the quiet zone included) for a real decoder.
fn decode_svg(svg: &str) -> String {
    let vb = svg.find("viewBox=\"0 0 ").unwrap() + "viewBox=\"0 0 ".len();
    let total: u32 = svg[vb..].split(' ').next().unwrap().parse().unwrap();
    let d = svg.find(" d=\"").unwrap() + 4;
    let path = &svg[d..d + svg[d..].find('"').unwrap()];
    let mut dark = std::collections::HashSet::new();
    for square in path.split('z').filter(|s| !s.is_empty()) {
        let body = square.strip_prefix('M').unwrap().strip_suffix("h1v1h-1").unwrap();
        let (x, y) = body.split_once(' ').unwrap();
        dark.insert((x.parse::<u32>().unwrap(), y.parse::<u32>().unwrap()));
    }
    assert!(dark.iter().all(|(x, y)| *x >= 4 && *y >= 4 && *x < total - 4 && *y < total - 4), "quiet zone kept");
    let scale = 8;
    let img = image::GrayImage::from_fn(total * scale, total * scale, |x, y| {
        image::Luma([if dark.contains(&(x / scale, y / scale)) { 0 } else { 255 }])
    });
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn qr_downloads_encode_the_public_link_at_every_size_and_per_channel() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let code = code_row(&app, "print-me", "Print").await;
    sqlx::query("INSERT INTO live_code_channels (live_code_id, key, name) VALUES ($1, 'flyer', 'Flyer')")
        .bind(code)
        .execute(&app.db)
        .await
        .unwrap();
    for (query, size, text, file) in [
        ("?size=256", 256, app.url("/l/print-me"), "live-code-print-me-256.png"),
        ("?size=2048", 2048, app.url("/l/print-me"), "live-code-print-me-2048.png"),
        ("", 512, app.url("/l/print-me"), "live-code-print-me-512.png"),
        ("?size=1024&ch=flyer", 1024, app.url("/l/print-me?ch=flyer"), "live-code-print-me-flyer-1024.png"),
    ] {
        let r = c.get(app.url(&format!("/live-codes/{code}/qr.png{query}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.headers()["content-disposition"], format!("attachment; filename=\"{file}\"").as_str());
        let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (size, size), "{query}");
        assert_eq!(shoal::domain::qr::find_qr(&img).as_deref(), Some(text.as_str()), "{query}");
    }
    for (query, text, file) in [
        ("", app.url("/l/print-me"), "live-code-print-me.svg"),
        ("?ch=flyer", app.url("/l/print-me?ch=flyer"), "live-code-print-me-flyer.svg"),
    ] {
        let r = c.get(app.url(&format!("/live-codes/{code}/qr.svg{query}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        assert_eq!(r.headers()["content-disposition"], format!("attachment; filename=\"{file}\"").as_str());
        assert_eq!(decode_svg(&r.text().await.unwrap()), text);
    }
    // Sizes outside 256..=2048 are refused, not clamped; unknown channels are not found.
    for query in ["?size=255", "?size=2049", "?size=big"] {
        let r = c.get(app.url(&format!("/live-codes/{code}/qr.png{query}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
    }
    for path in [format!("/live-codes/{code}/qr.png?ch=nope"), format!("/live-codes/{code}/qr.svg?ch=nope")] {
        assert_eq!(c.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn the_statistics_count_scans_per_day_target_and_channel() {
    let app = TestApp::spawn().await;
    let code = code_row(&app, "counted", "Counted").await;
    let g = group(&app, "stats-group", 500, None).await;
    let t = target_row(&app, code, g, 1, 3).await;
    sqlx::query("INSERT INTO live_code_channels (live_code_id, key, name) VALUES ($1, 'poster-a', 'Poster')")
        .bind(code)
        .execute(&app.db)
        .await
        .unwrap();
    // Three scans from the poster take the three slots (one visitor also long-presses), two
    // direct scans get the fallback, and a link preview uses nothing.
    let with_cookies = reqwest::Client::builder()
        .user_agent(PHONE)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = with_cookies.get(app.url("/l/counted?ch=poster-a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = with_cookies.post(app.url("/l/counted/press")).form(&[("t", t.to_string())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        assert_eq!(phone().get(app.url("/l/counted?ch=poster-a")).send().await.unwrap().status(), StatusCode::FOUND);
    }
    for _ in 0..2 {
        assert_eq!(phone().get(app.url("/l/counted")).send().await.unwrap().status(), StatusCode::OK);
    }
    let bot = reqwest::Client::builder().user_agent("TelegramBot (like TwitterBot)").build().unwrap();
    bot.get(app.url("/l/counted")).send().await.unwrap();
    app.stop_keep().await; // writes the queued events

    let app2 = TestApp::spawn_on(app.db.clone(), app.db_opts.clone()).await;
    let c = app2.login_as("admin", "admin", true, &[]).await;
    let body = get_text(&c, app2.url(&format!("/live-codes/{code}"))).await;
    assert_eq!(by_id(&body, "stat-landed"), "3");
    assert_eq!(by_id(&body, "stat-fallbacks"), "2");
    assert_eq!(by_id(&body, "stat-visitors"), "5");
    assert_eq!(by_id(&body, "stat-long-presses"), "1");
    assert_eq!(by_id(&body, "stat-previews"), "1");
    let by_target = &body[body.find("id=\"by-target\"").unwrap()..];
    assert!(by_target.contains("<td>stats-group</td><td class=\"num\">3</td>"));
    let by_channel = &body[body.find("id=\"by-channel\"").unwrap()..];
    assert!(by_channel.contains("<td>poster-a</td><td class=\"num\">3</td>"));
    assert!(by_channel.contains("<td>(direct)</td><td class=\"num\">2</td>"));
    // The target's counter shows in its fill bar: 3 of 3.
    assert!(body.contains("<progress max=\"100\" value=\"100\"") && body.contains("3 / 3"));
    // The chart has one bar per day of the default 14-day range.
    assert!(body.contains("id=\"scan-chart\"") && body.matches("class=\"lc-landed\"").count() == 14);
    let list = get_text(&c, app2.url("/live-codes")).await;
    let row = &list[list.find(&format!("data-id=\"{code}\"")).unwrap()..];
    let cell = row.find("scans-today\">").unwrap() + "scans-today\">".len();
    assert_eq!(&row[cell..cell + row[cell..].find('<').unwrap()], "5", "scans today on the list");

    // A chosen range reads only its days.
    sqlx::query(
        "INSERT INTO scan_daily (live_code_id, day, channel, target_id, outcome, scans) VALUES
         ($1, '2026-01-10', '', $2, 'new', 4), ($1, '2026-01-10', '', 0, 'fallback', 6), ($1, '2026-02-01', '', $2, 'new', 9)",
    )
    .bind(code)
    .bind(t)
    .execute(&app.db)
    .await
    .unwrap();
    let body = get_text(&c, app2.url(&format!("/live-codes/{code}?from=2026-01-01&to=2026-01-31"))).await;
    assert_eq!(by_id(&body, "stat-landed"), "4");
    assert_eq!(by_id(&body, "stat-fallbacks"), "6");
    assert!(body.contains("<tr><td>2026-01-10</td><td class=\"num\">4</td><td class=\"num\">6</td></tr>"));
    assert_eq!(body.matches("class=\"lc-landed\"").count(), 31, "one bar per day");
    assert!(body.contains("value=\"2026-01-01\"") && body.contains("value=\"2026-01-31\""));
}

#[tokio::test]
async fn a_scoped_operator_cannot_see_or_change_a_live_code_reaching_outside_their_groups() {
    let app = TestApp::spawn().await;
    let mine = group(&app, "mine", 500, None).await;
    let theirs = group(&app, "theirs", 500, None).await;
    let shared = code_row(&app, "shared", "Shared code").await;
    target_row(&app, shared, mine, 1, 10).await;
    let outside = target_row(&app, shared, theirs, 2, 10).await;
    let own = code_row(&app, "own", "Own code").await;
    target_row(&app, own, mine, 1, 10).await;
    let c = app.login_as("scoped", "operator", false, &[mine]).await;

    let list = get_text(&c, app.url("/live-codes")).await;
    assert!(list.contains("Own code") && !list.contains("Shared code"));
    for path in [
        format!("/live-codes/{shared}"),
        format!("/live-codes/{shared}/edit"),
        format!("/live-codes/{shared}/qr.png"),
        format!("/live-codes/{shared}/qr.svg"),
    ] {
        assert_eq!(c.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{path}");
    }
    let own_page = format!("/live-codes/{own}");
    for action in [
        format!("/live-codes/{shared}/delete"),
        format!("/live-codes/{shared}/targets/{outside}/remove"),
        format!("/live-codes/{shared}/targets/{outside}/reset"),
    ] {
        let r = app.post_form(&c, &own_page, &action, &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{action}");
    }
    // Their own code: the picker offers only their groups, and a group outside is a bad choice
    // (422, as through the API), which writes nothing.
    let detail = get_text(&c, app.url(&own_page)).await;
    assert!(!detail.contains(&format!("<option value=\"{theirs}\"")));
    let r = app
        .post_form(
            &c,
            &own_page,
            &format!("{own_page}/targets"),
            &[("group_id", &theirs.to_string()), ("scan_limit", "5")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(targets(&app, own).await.len(), 1);
    assert_eq!(targets(&app, shared).await.len(), 2);
    assert_eq!(app.count("live_codes").await, 2);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn a_viewer_reads_live_codes_but_every_change_is_forbidden() {
    let app = TestApp::spawn().await;
    let g = group(&app, "g", 500, None).await;
    let code = code_row(&app, "look", "Look only").await;
    let t = target_row(&app, code, g, 1, 10).await;
    let c = app.login_as("viewer", "viewer", true, &[]).await;
    let page = format!("/live-codes/{code}");
    let detail = get_text(&c, app.url(&page)).await;
    assert!(detail.contains("Look only") && !detail.contains("id=\"add-target\"") && !detail.contains("/remove\""));
    assert!(get_text(&c, app.url("/live-codes")).await.contains("Look only"));
    assert_eq!(c.get(app.url(&format!("/live-codes/{code}/qr.svg"))).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(c.get(app.url("/live-codes/new")).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    for (action, fields) in [
        (format!("{page}/delete"), vec![]),
        (format!("{page}/targets"), vec![("group_id", g.to_string())]),
        (format!("{page}/targets/{t}/disable"), vec![]),
        (format!("{page}/targets/{t}/limit"), vec![("scan_limit", "1".to_string())]),
        (format!("{page}/targets/{t}/reset"), vec![]),
        (format!("{page}/targets/{t}/remove"), vec![]),
        (format!("{page}/channels"), vec![("key", "x".to_string()), ("name", "X".to_string())]),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = app.post_form(&c, &page, &action, &fields).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
    }
    let r = app.post_multipart(&c, &page, "/live-codes/new", &[("name", "N"), ("slug", "new-one")], vec![]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(targets(&app, code).await, vec![(t, g, 1, 10, 0, true)]);
    assert_eq!(app.count("live_codes").await, 1);
    assert_eq!(app.count("live_code_channels").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn the_dashboard_lists_expiring_and_nearly_full_targets_and_codes_with_no_group_open() {
    let app = TestApp::spawn().await;
    // A WeChat group whose QR image expires in ten hours.
    let wx: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity) VALUES ('微信三群', 'wechat', 200) RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let img = shoal::domain::qr::validate(qr_png("https://weixin.qq.com/g/three"), 2 << 20).unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    shoal::store::groups::put_qr(&mut conn, wx, &img, Some(chrono::Utc::now() + chrono::Duration::hours(10)))
        .await
        .unwrap();
    drop(conn);
    let expiring = code_row(&app, "wx-code", "Expiring code").await;
    target_row(&app, expiring, wx, 1, 100).await;
    // A target at 95 of 100.
    let busy = group(&app, "busy-group", 500, None).await;
    let full = code_row(&app, "full-code", "Nearly full code").await;
    let t = target_row(&app, full, busy, 1, 100).await;
    sqlx::query("UPDATE live_code_targets SET used = 95 WHERE id = $1").bind(t).execute(&app.db).await.unwrap();
    // A code with no group at all, and a healthy one.
    code_row(&app, "empty-code", "Empty code").await;
    let fine = code_row(&app, "fine-code", "Healthy code").await;
    let fine_group = group(&app, "fine-group", 500, None).await;
    target_row(&app, fine, fine_group, 1, 100).await;

    let c = app.admin().await;
    let body = get_text(&c, app.url("/")).await;
    let section = &body[body.find("id=\"live-code-attention\"").unwrap()..];
    let row = |class: &str| -> String {
        let i = section.find(&format!("class=\"{class}\"")).unwrap_or_else(|| panic!("no {class} row"));
        section[i..i + section[i..].find("</tr>").unwrap()].to_string()
    };
    let r = row("lc-expiring");
    assert!(r.contains("Expiring code") && r.contains("微信三群") && r.contains("Group QR expires soon"), "{r}");
    let r = row("lc-nearly-full");
    assert!(r.contains("Nearly full code") && r.contains("busy-group") && r.contains("95 / 100"), "{r}");
    let r = row("lc-no-target");
    assert!(r.contains("Empty code"), "{r}");
    assert!(!section.contains("Healthy code"));
    assert_eq!(section.matches("class=\"lc-no-target\"").count(), 1, "codes with an open group are not listed");
}

#[tokio::test]
async fn live_code_pages_need_a_login_and_forms_need_the_csrf_token() {
    let app = TestApp::spawn().await;
    let code = code_row(&app, "locked", "Locked").await;
    let anonymous = crate::harness::client();
    for path in [
        "/live-codes".to_string(),
        "/live-codes/new".into(),
        format!("/live-codes/{code}"),
        format!("/live-codes/{code}/edit"),
        format!("/live-codes/{code}/qr.png"),
        format!("/live-codes/{code}/qr.svg"),
        format!("/live-codes/{code}/fallback-image"),
    ] {
        let r = anonymous.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&r).starts_with("/login?next="), "{path}");
    }
    let c = app.admin().await;
    let r = c
        .post(app.url(&format!("/live-codes/{code}/channels")))
        .form(&[("key", "flyer"), ("name", "Flyer")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.post(app.url(&format!("/live-codes/{code}/delete"))).form(&[("_csrf", "forged")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("live_code_channels").await, 0);
    assert_eq!(app.count("live_codes").await, 1);
}
