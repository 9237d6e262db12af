//! Posters: the renderer (every QR code read back, Chinese line breaking, line clamp, colour
//! emoji), templates through the admin pages and the API (bad uploads write nothing, scopes),
//! public links (ETag, revocation) and a missing font.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal::poster::render::text_lines;
use shoal::poster::template::{Align, Element, Layout, Rgba, Shape, TextStyle};
use shoal::poster::{Format, PosterData, Posters, PostersConfig};

use crate::harness::{client, location, TestApp};

fn engine() -> Posters {
    Posters::new(&PostersConfig::default())
}

const LINK: &str = "https://shoal.example/l/spring?r=AB12CD";

fn data(name: &str) -> PosterData {
    PosterData {
        name: name.into(),
        avatar: None,
        qr_url: LINK.into(),
        vars: BTreeMap::from([
            ("campaign".to_string(), "春季打卡营".to_string()),
            ("streak".to_string(), "27".to_string()),
            ("days".to_string(), "88".to_string()),
        ]),
    }
}

fn draw(p: &Posters, layout: &Layout, bg: Option<&[u8]>, d: &PosterData, format: Format) -> image::RgbaImage {
    let base = p.build_static_layer(None, layout, bg).expect("static layer");
    let bytes = p.draw(&base, layout, d, format).expect("draw");
    let img = image::load_from_memory(&bytes).expect("a readable image");
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        if format == Format::Jpeg { image::ImageFormat::Jpeg } else { image::ImageFormat::Png }
    );
    img.to_rgba8()
}

/// Every QR code rqrr finds in the image, decoded.
fn qr_codes(img: &image::RgbaImage) -> Vec<String> {
    let luma = image::DynamicImage::ImageRgba8(img.clone()).to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(luma);
    prepared.detect_grids().into_iter().map(|g| g.decode().expect("a QR code that decodes").1).collect()
}

fn style(x: i32, y: i32, width: u32, font_size: u32, max_lines: u32) -> TextStyle {
    TextStyle { x, y, width, font_size, color: Rgba::BLACK, align: Align::Left, max_lines, bold: false }
}

/// A noisy photo-like background: the QR code must read over it.
fn busy_background(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (((x as f32 / 23.0).sin() * (y as f32 / 31.0).cos() + 1.0) * 127.0) as u8;
        image::Rgb([v, (x / 8 % 256) as u8, 255 - v])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn every_qr_code_on_a_poster_reads_back_as_its_link() {
    let p = engine();
    let bg = busy_background(1200, 2000);
    let mut layout = Layout::sample();
    // A second, small QR code in a corner, in a dark colour that is not black.
    layout.elements.push(Element::Qr { x: 900, y: 60, size: 160, color: Rgba([0x12, 0x34, 0x56, 255]) });
    let expected = layout.elements.iter().filter(|e| matches!(e, Element::Qr { .. })).count();
    for format in [Format::Jpeg, Format::Png] {
        let img = draw(&p, &layout, Some(&bg), &data("阿明"), format);
        assert_eq!(img.dimensions(), (1080, 1920));
        let codes = qr_codes(&img);
        assert_eq!(codes.len(), expected, "{format:?}: every QR code is found: {codes:?}");
        assert!(codes.iter().all(|c| c == LINK), "{codes:?}");
    }
    // A long link still fits a small code (more modules, fewer pixels each).
    let long = format!("{LINK}&utm_source={}", "x".repeat(150));
    let small = Layout {
        width: 400,
        height: 400,
        background_color: Rgba::WHITE,
        elements: vec![Element::Qr { x: 50, y: 50, size: 300, color: Rgba::BLACK }],
    };
    let img = draw(&p, &small, None, &PosterData { qr_url: long.clone(), ..data("x") }, Format::Png);
    assert_eq!(qr_codes(&img), vec![long]);
}

#[test]
fn zbar_reads_the_posters_qr_code_too() {
    let Ok(out) = std::process::Command::new("zbarimg").arg("--version").output() else {
        eprintln!("zbarimg is not installed (zbar-tools): only rqrr checked the QR codes");
        return;
    };
    assert!(out.status.success());
    let p = engine();
    let img = draw(&p, &Layout::sample(), Some(&busy_background(1080, 1920)), &data("阿明🐟"), Format::Jpeg);
    let path = crate::harness::temp_dir("poster-zbar").join("poster.png");
    img.save(&path).unwrap();
    let out = std::process::Command::new("zbarimg").args(["--raw", "-q"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "zbarimg: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), LINK);
}

/// Full-width punctuation that must never start a line (it stays at the end of the line before).
const NO_LINE_START: &[char] = &['，', '。', '、', '！', '？', '；', '：', '）', '」', '』', '》', '…'];

#[test]
fn chinese_text_wraps_by_the_rules_and_punctuation_never_starts_a_line() {
    let p = engine();
    let fonts = p.fonts().expect("fonts-noto-cjk is installed");
    let text = "今天天气很好，我们一起去公园散步。你来不来？来吧！我们在湖边等你，带上相机、水和零食；\
                别忘了：下午三点集合。（如果下雨就改天）好的，「明天见」。";
    let mut wrapped = 0;
    // Many widths, so that a comma or full stop falls at the edge of some of them.
    for width in (200..=620).step_by(12) {
        let lines = text_lines(&fonts, &style(0, 0, width, 32, 20), text);
        assert!(lines.len() > 1);
        wrapped += 1;
        for (i, line) in lines.iter().enumerate().skip(1) {
            let first = line.chars().next().unwrap();
            assert!(!NO_LINE_START.contains(&first), "width {width}, line {i} starts with {first:?}: {lines:?}");
        }
        assert_eq!(lines.concat(), text, "width {width}: nothing lost or repeated");
    }
    assert!(wrapped > 30);
    // The SC face was chosen: 关 and 门 in simplified forms exist in every CJK face, but the face
    // reported for a Han character is the SC one.
    assert_eq!(fonts.family, "Noto Sans CJK SC");
}

#[test]
fn text_past_its_line_clamp_ends_with_an_ellipsis() {
    let p = engine();
    let fonts = p.fonts().unwrap();
    let text = "我是阿明，邀请你加入春季打卡营！扫码进群，每天打卡领积分，连续七天还有额外奖励，快来一起吧。";
    let lines = text_lines(&fonts, &style(0, 0, 400, 40, 2), text);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].ends_with('…'), "{lines:?}");
    assert!(!lines[0].ends_with('…'), "{lines:?}");
    // Text that fits is left alone.
    let lines = text_lines(&fonts, &style(0, 0, 400, 40, 2), "扫码进群");
    assert_eq!(lines, vec!["扫码进群".to_string()]);
    // One line: a long name is cut with an ellipsis.
    let lines = text_lines(&fonts, &style(0, 0, 300, 48, 1), "一个非常非常非常非常长的昵称🐟🐟🐟");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with('…'), "{lines:?}");
}

#[test]
fn emoji_in_names_are_drawn_in_colour_not_as_boxes() {
    let p = engine();
    let fonts = p.fonts().unwrap();
    assert!(fonts.has_emoji, "fonts-noto-color-emoji is installed");
    let layout = Layout {
        width: 400,
        height: 200,
        background_color: Rgba::WHITE,
        elements: vec![Element::Nickname { style: style(20, 40, 360, 80, 1) }],
    };
    let coloured = |img: &image::RgbaImage| {
        img.pixels()
            .filter(|p| {
                let [r, g, b, _] = p.0;
                r.max(g).max(b) - r.min(g).min(b) > 80
            })
            .count()
    };
    // Black text has no colour; the fish and the heart do.
    let plain = draw(&p, &layout, None, &data("阿明"), Format::Png);
    assert_eq!(coloured(&plain), 0);
    let img = draw(&p, &layout, None, &data("🐟❤️"), Format::Png);
    assert!(coloured(&img) > 1000, "{} coloured pixels", coloured(&img));
}

#[test]
fn avatars_are_drawn_from_pictures_or_as_an_initial() {
    let p = engine();
    let layout = Layout {
        width: 300,
        height: 300,
        background_color: Rgba::WHITE,
        elements: vec![Element::Avatar { x: 50, y: 50, size: 200, shape: Shape::Round }],
    };
    let red = {
        let img = image::RgbImage::from_pixel(640, 480, image::Rgb([255, 0, 0]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let img = draw(&p, &layout, None, &PosterData { avatar: Some(red), ..data("阿明") }, Format::Png);
    assert_eq!(img.get_pixel(150, 150).0, [255, 0, 0, 255], "the picture fills the disc");
    assert_eq!(img.get_pixel(55, 55).0, [255, 255, 255, 255], "outside the circle stays background");
    // JPEG profile photos (decoded at the smallest size that still covers the box): colour,
    // landscape, cropped to the centred square with its quadrants where they belong; grey;
    // and one smaller than the box, enlarged.
    let jpeg = |img: image::DynamicImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    };
    let close = |got: [u8; 4], want: [u8; 3]| got[..3].iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 12);
    let quadrants = |w: u32, h: u32| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => image::Rgb([230, 20, 20]),
            (false, true) => image::Rgb([20, 200, 20]),
            (true, false) => image::Rgb([20, 20, 230]),
            (false, false) => image::Rgb([230, 230, 20]),
        }))
    };
    for picture in [quadrants(640, 480), quadrants(150, 150)] {
        let img = draw(&p, &layout, None, &PosterData { avatar: Some(jpeg(picture)), ..data("阿明") }, Format::Png);
        for ((x, y), want) in [
            ((110, 110), [230, 20, 20]),
            ((190, 110), [20, 200, 20]),
            ((110, 190), [20, 20, 230]),
            ((190, 190), [230, 230, 20]),
        ] {
            assert!(close(img.get_pixel(x, y).0, want), "({x}, {y}): {:?}, not {want:?}", img.get_pixel(x, y).0);
        }
        assert_eq!(img.get_pixel(55, 55).0, [255, 255, 255, 255]);
    }
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(640, 640, image::Luma([90])));
    let img = draw(&p, &layout, None, &PosterData { avatar: Some(jpeg(grey)), ..data("阿明") }, Format::Png);
    assert!(close(img.get_pixel(150, 150).0, [90, 90, 90]), "{:?}", img.get_pixel(150, 150).0);
    // No picture (or one that is not an image): a coloured disc with the initial.
    for avatar in [None, Some(b"not an image".to_vec())] {
        let img = draw(&p, &layout, None, &PosterData { avatar, ..data("阿明") }, Format::Png);
        let edge = img.get_pixel(150, 60).0;
        assert_ne!(edge, [255, 255, 255, 255]);
        let whites = (100..200).flat_map(|y| (100..200).map(move |x| (x, y))).filter(|(x, y)| {
            let [r, g, b, _] = img.get_pixel(*x, *y).0;
            r > 240 && g > 240 && b > 240
        });
        assert!(whites.count() > 300, "the initial is drawn in white");
    }
}

// --- templates through the API ---

fn sample_body(name: &str, group: Option<i64>) -> Value {
    json!({
        "name": name,
        "group_id": group,
        "background_color": "#fbf7ef",
        "elements": [
            {"type": "avatar", "x": 80, "y": 100, "size": 160, "shape": "round"},
            {"type": "nickname", "x": 280, "y": 140, "width": 720, "font_size": 56, "bold": true},
            {"type": "text", "x": 80, "y": 330, "width": 920, "font_size": 48, "max_lines": 3, "text": "我是{name}，邀请你加入{campaign}！"},
            {"type": "qr", "x": 340, "y": 1300, "size": 400},
        ]
    })
}

async fn create_template(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(app.url("/api/v1/poster-templates")).bearer_auth(token).json(body).send().await.unwrap()
}

#[tokio::test]
async fn templates_are_made_read_changed_and_previewed_through_the_api() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let c = reqwest::Client::new();
    let r = create_template(&app, &token, &sample_body("春季", None)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    let id = t["id"].as_i64().unwrap();
    assert_eq!((t["version"].as_i64(), t["width"].as_i64(), t["height"].as_i64()), (Some(1), Some(1080), Some(1920)));
    assert_eq!(t["elements"][0], json!({"type": "avatar", "x": 80, "y": 100, "size": 160, "shape": "round"}));
    assert_eq!(t["elements"][2]["text"], "我是{name}，邀请你加入{campaign}！");

    let r = c
        .get(app.url(&format!("/api/v1/poster-templates/{id}/preview?name=%E5%B0%8F%E7%BA%A2")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgba8();
    assert_eq!(qr_codes(&img), vec![format!("http://{}/l/sample?r=SAMPLE", app.addr)]);
    let r = c
        .get(app.url(&format!("/api/v1/poster-templates/{id}/preview?name=%E5%B0%8F%E7%BA%A2")))
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = c
        .get(app.url(&format!("/api/v1/poster-templates/{id}/preview?format=png")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");

    // A change bumps the version; a partial body keeps the rest.
    let r = c
        .patch(app.url(&format!("/api/v1/poster-templates/{id}")))
        .bearer_auth(&token)
        .json(&json!({"name": "春季 2", "background_color": "#102030"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!((t["version"].as_i64(), t["name"].as_str()), (Some(2), Some("春季 2")));
    assert_eq!(t["elements"].as_array().unwrap().len(), 4);

    // Background: a real image is stored re-encoded; the version goes up again.
    let r = c
        .put(app.url(&format!("/api/v1/poster-templates/{id}/background")))
        .bearer_auth(&token)
        .header("content-type", "image/jpeg")
        .body(busy_background(1080, 1920))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!((t["has_background"].as_bool(), t["version"].as_i64()), (Some(true), Some(3)));
    let listed: Value =
        c.get(app.url("/api/v1/poster-templates")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let r = c.delete(app.url(&format!("/api/v1/poster-templates/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.count("poster_templates").await, 0);
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE target_kind = 'poster_template' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        actions,
        ["poster_template.create", "poster_template.update", "poster_template.update", "poster_template.delete"]
    );
}

#[tokio::test]
async fn bad_templates_and_uploads_are_refused_with_their_fields_named_and_nothing_written() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let c = reqwest::Client::new();
    let mut bad = sample_body("x", None);
    bad["elements"][0]["x"] = json!(5000);
    bad["elements"][2]["text"] = json!("hi {nmae}");
    bad["elements"][3]["color"] = json!("#eeeeee");
    bad["width"] = json!(99999);
    let r = create_template(&app, &token, &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
    let p: Value = r.json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["elements[0].x", "elements[2].text", "elements[3].color", "width"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    assert_eq!(app.count("poster_templates").await, 0);

    let r = create_template(&app, &token, &sample_body("ok", None)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let put = |ct: &'static str, body: Vec<u8>| {
        c.put(app.url(&format!("/api/v1/poster-templates/{id}/background")))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let huge = {
        let img = image::GrayImage::from_pixel(5000, 10, image::Luma([9]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    for (ct, body, status) in [
        ("image/png", b"not a png".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", b"GIF89a\x01\x00\x01\x00".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", huge, StatusCode::UNPROCESSABLE_ENTITY),
        ("image/png", vec![0u8; 3 * 1024 * 1024], StatusCode::PAYLOAD_TOO_LARGE),
        ("text/plain", busy_background(100, 100), StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let r = put(ct, body).await.unwrap();
        assert_eq!(r.status(), status);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
    }
    let (version, has_bg): (i32, bool) =
        sqlx::query_as("SELECT version, background IS NOT NULL FROM poster_templates WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((version, has_bg), (1, false), "refused uploads change nothing");

    // The admin form: a bad background re-renders the form with its message and writes nothing.
    let admin = app.admin().await;
    let r = app
        .post_multipart(
            &admin,
            "/posters/new",
            "/posters/new",
            &[("name", "表单"), ("e0_type", "qr"), ("e0_x", "100"), ("e0_y", "100"), ("e0_w", "300")],
            vec![("background", "bg.gif", b"GIF89a\x01\x00\x01\x00".to_vec())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-background\""), "the message is by its field");
    assert!(body.contains("value=\"表单\""), "the form keeps what was typed");
    let r = app
        .post_multipart(
            &admin,
            "/posters/new",
            "/posters/new",
            &[("name", "表单"), ("e0_type", "qr"), ("e0_x", "100"), ("e0_y", "100"), ("e0_w", "50000")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-elements[0].w\""));
    assert_eq!(app.count("poster_templates").await, 1);
}

#[tokio::test]
async fn the_admin_pages_make_preview_and_change_a_template() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let r = admin.get(app.url("/posters/new")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("src=\"/static/poster-preview.js\""));
    assert!(!body.contains("<script>"), "no inline script");
    // The preview of the form as it is, without JavaScript: the image URL in the page works.
    let src = body
        .split("id=\"poster-preview\" src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let r = admin.get(app.url(&src)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{src}");
    assert_eq!(r.headers()["content-type"], "image/jpeg");

    let fields = [
        ("name", "春季海报"),
        ("width", "1080"),
        ("height", "1920"),
        ("background_color", "#ffffff"),
        ("e0_type", "nickname"),
        ("e0_x", "80"),
        ("e0_y", "100"),
        ("e0_w", "900"),
        ("e0_font_size", "60"),
        ("e1_type", "qr"),
        ("e1_x", "340"),
        ("e1_y", "1300"),
        ("e1_w", "400"),
    ];
    // "Preview" shows the form again with a preview of what it holds, and saves nothing.
    let mut with_preview = fields.to_vec();
    with_preview.push(("intent", "preview"));
    let r = app.post_multipart(&admin, "/posters/new", "/posters/new", &with_preview, vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    let src = body
        .split("id=\"poster-preview\" src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(src.contains("e1_type=qr"), "{src}");
    let r = admin.get(app.url(&src)).send().await.unwrap();
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap().to_rgba8();
    assert_eq!(qr_codes(&img).len(), 1);
    assert_eq!(app.count("poster_templates").await, 0);

    let mut save = fields.to_vec();
    save.push(("intent", "save"));
    let r = app
        .post_multipart(
            &admin,
            "/posters/new",
            "/posters/new",
            &save,
            vec![("background", "bg.jpg", busy_background(800, 1400))],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = location(&r);
    let id: i64 = page.trim_start_matches("/posters/").parse().unwrap();
    let body = admin.get(app.url("/posters")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("春季海报"));
    let body = admin.get(app.url(&page)).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(&format!("/posters/{id}/preview.jpg?v=1")));
    let r = admin.get(app.url(&format!("/posters/{id}/preview.jpg?v=1"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = admin.get(app.url(&format!("/posters/{id}/background"))).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/jpeg");

    // Editing shows the stored values and saving bumps the version.
    let body = admin.get(app.url(&format!("/posters/{id}/edit"))).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("name=\"e1_type\"") && body.contains("value=\"340\""));
    let mut edit = save.clone();
    edit[0] = ("name", "春季海报 v2");
    edit.push(("remove_background", "1"));
    let r =
        app.post_multipart(&admin, &format!("/posters/{id}/edit"), &format!("/posters/{id}/edit"), &edit, vec![]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (version, has_bg): (i32, bool) =
        sqlx::query_as("SELECT version, background IS NOT NULL FROM poster_templates WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((version, has_bg), (2, false));

    // Deleting asks first.
    let r = app.post_form(&admin, &page, &format!("/posters/{id}/delete"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.count("poster_templates").await, 1);
    let r = app.post_form(&admin, &page, &format!("/posters/{id}/delete"), &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("poster_templates").await, 0);
}

#[tokio::test]
async fn public_links_have_an_etag_follow_the_member_and_stop_when_revoked() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let c = reqwest::Client::new();
    let id = create_template(&app, &token, &sample_body("公开", None)).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let member: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '10001', '阿明') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let r = c
        .post(app.url(&format!("/api/v1/poster-templates/{id}/links")))
        .bearer_auth(&token)
        .json(&json!({"member_id": member, "qr_url": LINK, "vars": {"campaign": "春季打卡营", "invites": "3"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let link: Value = r.json().await.unwrap();
    assert_eq!(link["name"], "阿明");
    let url = link["url"].as_str().unwrap().to_string();
    let path = url.trim_start_matches(&format!("http://{}", app.addr)).to_string();
    assert!(path.starts_with("/p/") && path.len() == 3 + 43, "{path}");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM poster_links").fetch_one(&app.db).await.unwrap();
    assert_ne!(stored, &path.as_bytes()[3..], "only the token's hash is stored");

    let r = c.get(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let first = r.bytes().await.unwrap();
    let img = image::load_from_memory(&first).unwrap().to_rgba8();
    assert_eq!(qr_codes(&img), vec![LINK.to_string()]);
    // Again: the same bytes (from memory); with the ETag: 304 and no body.
    let again = c.get(app.url(&path)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(first, again);
    let r = c.get(app.url(&path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c.get(app.url(&format!("{path}?format=png"))).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");

    // The member's new name is a new poster (after the link cache's second).
    sqlx::query("UPDATE members SET display_name = '阿明明' WHERE id = $1")
        .bind(member)
        .execute(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = c.get(app.url(&path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);

    // Revoked: 404 at once, with or without the ETag.
    let link_id = link["id"].as_i64().unwrap();
    let r = c.delete(app.url(&format!("/api/v1/poster-links/{link_id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.unwrap()["revoked_at"].is_string());
    assert_eq!(c.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = c.get(app.url(&path)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Made-up tokens are not looked up.
    for fake in ["/p/abc", "/p/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/p/..%2F..%2Fetc"] {
        assert_eq!(c.get(app.url(fake)).send().await.unwrap().status(), StatusCode::NOT_FOUND, "{fake}");
    }
}

#[tokio::test]
async fn links_are_made_and_revoked_from_the_template_page() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let id = create_template(&app, &token, &sample_body("页面", None)).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let admin = app.admin().await;
    let page = format!("/posters/{id}");
    let r = app
        .post_form(
            &admin,
            &page,
            &format!("/posters/{id}/links"),
            &[("name", "小红"), ("qr_url", "ftp://x"), ("campaign", "春")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-qr_url\""));
    assert_eq!(app.count("poster_links").await, 0);
    let r = app
        .post_form(
            &admin,
            &page,
            &format!("/posters/{id}/links"),
            &[("name", "小红"), ("qr_url", LINK), ("campaign", "春")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    let url = body.split("id=\"new-link\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let path = url.trim_start_matches(&format!("http://{}", app.addr)).to_string();
    assert_eq!(client().get(app.url(&path)).send().await.unwrap().status(), StatusCode::OK);
    let link: i64 = sqlx::query_scalar("SELECT id FROM poster_links").fetch_one(&app.db).await.unwrap();
    let revoke = format!("/posters/{id}/links/{link}/revoke");
    let r = app.post_form(&admin, &page, &revoke, &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "asks first");
    assert_eq!(client().get(app.url(&path)).send().await.unwrap().status(), StatusCode::OK);
    let r = app.post_form(&admin, &page, &revoke, &[("confirm", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(client().get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scoped_operators_see_their_groups_and_shared_templates_and_change_only_their_own() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.group("A").await, app.group("B").await);
    let admin = app.token("admin", true, &[]).await;
    let id_a = create_template(&app, &admin, &sample_body("A 的", Some(a))).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let shared = create_template(&app, &admin, &sample_body("共享", None)).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let scoped = app.token("operator", false, &[b]).await;
    let c = reqwest::Client::new();
    let get =
        |id: i64, t: &str| c.get(app.url(&format!("/api/v1/poster-templates/{id}"))).bearer_auth(t.to_string()).send();
    assert_eq!(get(id_a, &scoped).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get(shared, &scoped).await.unwrap().status(), StatusCode::OK);
    let r =
        c.get(app.url(&format!("/api/v1/poster-templates/{id_a}/preview"))).bearer_auth(&scoped).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let listed: Value =
        c.get(app.url("/api/v1/poster-templates")).bearer_auth(&scoped).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["共享"]);
    // A shared template is read, not changed; another group's cannot be made.
    let r = c
        .patch(app.url(&format!("/api/v1/poster-templates/{shared}")))
        .bearer_auth(&scoped)
        .json(&json!({"name": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for group in [None, Some(a), Some(999_999)] {
        let r = create_template(&app, &scoped, &sample_body("x", group)).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{group:?}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], "group_id");
    }
    let r = create_template(&app, &scoped, &sample_body("B 的", Some(b))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Nor moved into a group outside the scope.
    let id_b = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = c
        .patch(app.url(&format!("/api/v1/poster-templates/{id_b}")))
        .bearer_auth(&scoped)
        .json(&json!({"group_id": a}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Viewers read and write nothing.
    let viewer = app.token("viewer", true, &[]).await;
    assert_eq!(get(id_a, &viewer).await.unwrap().status(), StatusCode::OK);
    assert_eq!(create_template(&app, &viewer, &sample_body("v", None)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("poster_templates").await, 3);

    // The same in the admin pages.
    let op = app.login_as("bob", "operator", false, &[b]).await;
    assert_eq!(op.get(app.url(&format!("/posters/{id_a}"))).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let body = op.get(app.url("/posters")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("共享") && body.contains("B 的") && !body.contains("A 的"));
    assert_eq!(
        op.get(app.url(&format!("/posters/{shared}/edit"))).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn without_a_chinese_font_posters_say_so_in_one_sentence_and_the_rest_works() {
    let app = TestApp::spawn_with(|c| c.posters.font_paths = vec!["/nonexistent/NotoSansCJK-Regular.ttc".into()]).await;
    let token = app.token("admin", true, &[]).await;
    let id = create_template(&app, &token, &sample_body("无字体", None)).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/poster-templates/{id}/preview")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("/nonexistent/NotoSansCJK-Regular.ttc") && detail.contains("posters.font_paths"),
        "{detail}"
    );
    let admin = app.admin().await;
    let body = admin.get(app.url("/posters")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("id=\"font-problem\"") && body.contains("posters.font_paths"));
    assert_eq!(admin.get(app.url("/groups")).send().await.unwrap().status(), StatusCode::OK);

    // Fonts present but none Chinese: the sentence names the missing family.
    let emoji_only = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf";
    if std::path::Path::new(emoji_only).exists() {
        let p = Posters::new(&PostersConfig { font_paths: vec![emoji_only.into()], ..PostersConfig::default() });
        let e = p.fonts().unwrap_err().to_string();
        assert!(e.contains("Noto Sans CJK SC"), "{e}");
    }
}

#[tokio::test]
async fn a_members_poster_uses_their_current_name_and_the_callers_values() {
    let app = TestApp::spawn().await;
    let token = app.token("admin", true, &[]).await;
    let id = create_template(&app, &token, &sample_body("活动", None)).await.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let member: i64 = sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name) VALUES ('qq', '42', '阿明🐟') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let mut config = shoal::Config::defaults();
    config.public_url = format!("http://{}", app.addr);
    let state = shoal::AppState::new(app.db.clone(), config);
    let who = shoal::auth::Principal {
        kind: shoal::auth::ActorKind::Token,
        id: 1,
        name: "campaigns".into(),
        role: shoal::auth::Role::Admin,
        scope: shoal::auth::Scope::All,
        language: None,
    };
    let vars = BTreeMap::from([("campaign".to_string(), "春季".to_string()), ("invites".to_string(), "4".to_string())]);
    let bytes =
        shoal::app::posters::member_poster(&state, &who, id, member, LINK.into(), vars.clone(), None, Format::Jpeg)
            .await
            .unwrap();
    let img = image::load_from_memory(&bytes).unwrap().to_rgba8();
    assert_eq!(qr_codes(&img), vec![LINK.to_string()]);
    // Outside the principal's scope: not found.
    let scoped = shoal::auth::Principal { scope: shoal::auth::Scope::Groups(Default::default()), ..who.clone() };
    let r =
        shoal::app::posters::member_poster(&state, &scoped, id, member, LINK.into(), vars, None, Format::Jpeg).await;
    assert!(matches!(r, Err(shoal::app::posters::DrawError::App(shoal::error::AppError::NotFound))), "{r:?}");
}
