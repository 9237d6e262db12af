//! Group pages: create, validate, upload and replace QR images, list filters, archive.

use reqwest::StatusCode;

use crate::harness::{location, plain_png, qr_png, TestApp};

fn group_id_from(loc: &str) -> i64 {
    loc.trim_start_matches("/groups/").parse().expect("group id in Location")
}

#[tokio::test]
async fn creating_a_group_with_an_invite_link_lists_it_and_audits_it() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[
                ("name", "QQ 交流一群"),
                ("platform", "qq"),
                ("join_url", "https://qm.qq.com/q/abc"),
                ("tags", "beijing, vip"),
                ("timezone", "Asia/Shanghai"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = group_id_from(&location(&r));
    let (capacity, tags): (i32, Vec<String>) =
        sqlx::query_as("SELECT capacity, tags FROM groups WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(capacity, 500, "QQ default capacity");
    assert_eq!(tags, vec!["beijing", "vip"]);
    let list = c.get(app.url("/groups")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("QQ 交流一群"));
    let detail = c.get(app.url(&format!("/groups/{id}"))).send().await.unwrap().text().await.unwrap();
    assert!(detail.contains("https://qm.qq.com/q/abc"));
    let action: String = sqlx::query_scalar("SELECT action FROM audit_log WHERE target_id = $1")
        .bind(id.to_string())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(action, "group.create");
}

#[tokio::test]
async fn bad_group_input_re_renders_the_form_with_messages_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[
                ("name", ""),
                ("platform", "myspace"),
                ("join_url", "javascript:alert(1)"),
                ("capacity", "0"),
                ("timezone", "Mars/Base"),
                ("notes", "keep me"),
            ],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for field in ["name", "platform", "join_url", "capacity", "timezone"] {
        assert!(body.contains(&format!("id=\"err-{field}\"")), "message for {field}");
    }
    assert!(
        body.contains("javascript:alert(1)") && body.contains("keep me") && body.contains("Mars/Base"),
        "input kept"
    );
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test]
async fn an_uploaded_qr_image_is_decoded_stored_and_served_with_caching() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let png = qr_png("https://weixin.qq.com/g/AbCdEf123");
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[("name", "微信群 1"), ("platform", "wechat")],
            vec![("qr_image", "qr.png", png.clone())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = group_id_from(&location(&r));
    let (payload, days): (String, f64) = sqlx::query_as(
        "SELECT qr_payload, EXTRACT(EPOCH FROM expires_at - uploaded_at)::float8 / 86400 FROM group_qr_images WHERE group_id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(payload, "https://weixin.qq.com/g/AbCdEf123");
    assert!((days - 7.0).abs() < 0.01, "WeChat QR expires 7 days after upload, got {days}");

    let r = c.get(app.url(&format!("/groups/{id}/qr"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let served = r.bytes().await.unwrap();
    assert_eq!(served.as_ref(), png.as_slice());
    // Decode what is served, as a phone would.
    let img = image::load_from_memory(&served).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let (_, text) = prepared.detect_grids()[0].decode().unwrap();
    assert_eq!(text, "https://weixin.qq.com/g/AbCdEf123");
    let r = c.get(app.url(&format!("/groups/{id}/qr"))).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn uploads_that_are_not_qr_images_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "notes.txt",
            b"hello, I am not an image".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a readable PNG or JPEG",
        ),
        ("plain.png", plain_png(), StatusCode::UNPROCESSABLE_ENTITY, "No readable QR code"),
        ("huge.png", vec![0x89; 2 * 1024 * 1024 + 10], StatusCode::PAYLOAD_TOO_LARGE, "larger than 2 MiB"),
    ];
    for (name, bytes, status, message) in cases {
        let r = app
            .post_multipart(
                &c,
                "/groups/new",
                "/groups/new",
                &[("name", "G"), ("platform", "wechat")],
                vec![("qr_image", name, bytes)],
            )
            .await;
        assert_eq!(r.status(), status, "{name}");
        let body = r.text().await.unwrap();
        assert!(body.contains("id=\"err-qr_image\"") && body.contains(message), "{name}: {message}");
        assert!(body.contains("value=\"G\""), "{name}: input kept");
    }
    // A body far over the limit is cut off before it is read.
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[("name", "G")],
            vec![("qr_image", "big.png", vec![0; 3 * 1024 * 1024])],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("group_qr_images").await, 0);
}

#[tokio::test]
async fn replacing_the_qr_keeps_the_group_and_serves_the_new_image() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[("name", "W"), ("platform", "wechat")],
            vec![("qr_image", "a.png", qr_png("https://weixin.qq.com/g/old"))],
        )
        .await;
    let id = group_id_from(&location(&r));
    let edit = format!("/groups/{id}/edit");
    let form = c.get(app.url(&edit)).send().await.unwrap().text().await.unwrap();
    assert!(form.contains("value=\"W\""));
    let new_png = qr_png("https://weixin.qq.com/g/new");
    let r = app
        .post_multipart(
            &c,
            &edit,
            &edit,
            &[("name", "W"), ("platform", "wechat")],
            vec![("qr_image", "b.png", new_png.clone())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("groups").await, 1);
    let payload: String = sqlx::query_scalar("SELECT qr_payload FROM group_qr_images WHERE group_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(payload, "https://weixin.qq.com/g/new");
    let served = c.get(app.url(&format!("/groups/{id}/qr"))).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(served.as_ref(), new_png.as_slice());
    let replaced: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'group.qr_replace'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(replaced, 1);
    // Editing without a new file keeps the image.
    let r = app.post_multipart(&c, &edit, &edit, &[("name", "W2"), ("platform", "wechat")], vec![]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("group_qr_images").await, 1);
}

#[tokio::test]
async fn the_list_searches_filters_and_pages() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    sqlx::query(
        "INSERT INTO groups (name, platform, capacity, tags, status)
         SELECT 'Group ' || lpad(i::text, 3, '0'), CASE WHEN i % 2 = 0 THEN 'qq' ELSE 'telegram' END, 500,
                CASE WHEN i % 10 = 0 THEN ARRAY['ten'] ELSE '{}' END, CASE WHEN i = 7 THEN 'archived' ELSE 'active' END
         FROM generate_series(1, 60) i",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let get = |q: &'static str| {
        let c = c.clone();
        let url = app.url(&format!("/groups{q}"));
        async move { c.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let rows = |body: &str| body.matches("<tr>").count() - 1;
    let page1 = get("").await;
    assert_eq!(rows(&page1), 50);
    assert!(page1.contains("59 in total"), "archived hidden by default");
    assert!(!page1.contains("Group 007"));
    let page2 = get("?page=2").await;
    assert_eq!(rows(&page2), 9);
    assert_eq!(rows(&get("?platform=qq").await), 30);
    assert_eq!(rows(&get("?tag=ten").await), 6);
    let found = get("?q=group%2004").await;
    assert_eq!(rows(&found), 10);
    let archived = get("?status=archived").await;
    assert!(archived.contains("Group 007") && rows(&archived) == 1);
    assert!(get("?q=zzz").await.contains("id=\"empty\""));
}

#[tokio::test]
async fn archiving_hides_a_group_and_restoring_brings_it_back() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let id = app.group("Old group").await;
    let r = app.post_form(&c, &format!("/groups/{id}"), &format!("/groups/{id}/archive"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let status: String =
        sqlx::query_scalar("SELECT status FROM groups WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(status, "archived");
    assert!(!c.get(app.url("/groups")).send().await.unwrap().text().await.unwrap().contains("Old group"));
    let r = app.post_form(&c, &format!("/groups/{id}"), &format!("/groups/{id}/restore"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(c.get(app.url("/groups")).send().await.unwrap().text().await.unwrap().contains("Old group"));
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(actions, vec!["group.archive", "group.restore"]);
}

#[tokio::test]
async fn a_taken_external_chat_id_is_a_field_error() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    sqlx::query("INSERT INTO groups (name, platform, capacity, external_chat_id) VALUES ('A', 'qq', 500, '123456')")
        .execute(&app.db)
        .await
        .unwrap();
    let r = app
        .post_multipart(
            &c,
            "/groups/new",
            "/groups/new",
            &[("name", "B"), ("platform", "qq"), ("external_chat_id", "123456")],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("id=\"err-external_chat_id\""));
    assert_eq!(app.count("groups").await, 1);
}

#[tokio::test]
async fn a_scoped_operator_who_creates_a_group_can_manage_it() {
    let app = TestApp::spawn().await;
    let c = app.login_as("olga", "operator", false, &[]).await;
    let r = app
        .post_multipart(&c, "/groups/new", "/groups/new", &[("name", "Olga's"), ("platform", "telegram")], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = group_id_from(&location(&r));
    assert_eq!(c.get(app.url(&format!("/groups/{id}"))).send().await.unwrap().status(), StatusCode::OK);
}
