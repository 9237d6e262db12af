//! Public input is hostile: slow and idle connections, one address draining a live code, huge
//! images, unbounded slugs and cookies, a live code deleted while its scan events wait to be
//! written.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{location, TestApp};
use crate::live_codes::live_code;

const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile Safari/537.36";

/// A phone without cookies, its connections coming from `from` (any 127.x.y.z is this machine).
fn phone_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(PHONE)
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A TCP connection to `addr` from the local address `from`.
async fn connect_from(addr: SocketAddr, from: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Whether the server closed the connection within `within` (reads until end of file).
async fn closed_within<R: tokio::io::AsyncRead + Unpin>(r: &mut R, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trickle_their_headers_are_cut_off_and_others_are_still_served() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.max_connections_per_ip = 40;
    })
    .await;
    // 60 connections from one address, each sending a header line every 200 ms, never the end
    // of the headers.
    let mut readers = Vec::new();
    for _ in 0..60 {
        let s = connect_from(app.addr, "127.0.0.2").await;
        let (r, mut w) = s.into_split();
        tokio::spawn(async move {
            if w.write_all(b"GET /healthz HTTP/1.1\r\nHost: shoal\r\n").await.is_err() {
                return;
            }
            while w.write_all(b"X-Slow: 1\r\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        readers.push(r);
    }
    // Past the cap of 40 per address, connections are closed at once.
    let quick = futures_count(&mut readers, Duration::from_millis(500)).await;
    assert_eq!(quick, 20, "connections over the per-address cap are closed at once");

    // Another client is served meanwhile.
    let start = Instant::now();
    let r = phone_from("127.0.0.1").get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(start.elapsed() < Duration::from_secs(1), "served at once: {:?}", start.elapsed());

    // The trickling ones are closed once the header-read timeout (1 s) has passed.
    let all = futures_count(&mut readers, Duration::from_secs(3)).await;
    assert_eq!(all, 60, "every connection that never finished its headers was closed");
}

/// How many of `readers` see their connection closed within `within` (checked concurrently).
async fn futures_count(readers: &mut [tokio::net::tcp::OwnedReadHalf], within: Duration) -> usize {
    let mut n = 0;
    let deadline = Instant::now() + within;
    for r in readers.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if closed_within(r, left).await {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_a_slow_one_is_cut_off() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_read_timeout_secs = 1;
        c.http.max_connections = 4;
        c.http.max_connections_per_ip = 0;
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(app.addr, "127.0.0.2").await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: shoal\r\n").await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let r = phone_from("127.0.0.1").get(app.url("/healthz")).timeout(Duration::from_secs(10)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "held back by the cap until the stalled connections timed out: {waited:?}"
    );
    for s in &mut stalled {
        assert!(closed_within(s, Duration::from_secs(1)).await);
    }
}

#[tokio::test]
async fn a_request_whose_body_stalls_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| c.http.idle_timeout_secs = 1).await;
    let mut s = connect_from(app.addr, "127.0.0.1").await;
    s.write_all(b"POST /hooks/generic/1 HTTP/1.1\r\nHost: shoal\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let start = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(4)).await, "closed long before the 30 s request timeout");
    assert!(start.elapsed() >= Duration::from_millis(900), "not before the idle timeout: {:?}", start.elapsed());
}

async fn used(app: &TestApp, target: i64) -> i32 {
    sqlx::query_scalar("SELECT used FROM live_code_targets WHERE id = $1")
        .bind(target)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn events(app: &TestApp, code: i64, outcome: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM scan_events WHERE live_code_id = $1 AND outcome = $2")
        .bind(code)
        .bind(outcome)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_address_cannot_drain_a_live_code() {
    let app = TestApp::spawn_with(|c| c.scan.new_scans_per_address = 5).await;
    let (code, targets) = live_code(&app, "drain", "fill", &[("d1", 100)]).await;
    // A script: 12 scans without cookies from one address.
    let script = phone_from("127.0.0.1");
    let mut statuses = Vec::new();
    let mut busy_page = String::new();
    for _ in 0..12 {
        let r = script.get(app.url("/l/drain")).header("accept-language", "zh-CN").send().await.unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=70).contains(&retry), "Retry-After {retry}");
            busy_page = r.text().await.unwrap();
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::FOUND).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 7, "{statuses:?}");
    assert!(busy_page.contains("当前扫码人数较多") && busy_page.contains("http-equiv=\"refresh\""), "{busy_page}");

    // Other addresses still get a slot; a returning visitor (cookies) is not counted.
    let other = phone_from("127.0.0.2");
    assert_eq!(other.get(app.url("/l/drain")).send().await.unwrap().status(), StatusCode::FOUND);
    let member = reqwest::Client::builder()
        .user_agent(PHONE)
        .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(member.get(app.url("/l/drain")).send().await.unwrap().status(), StatusCode::FOUND);
    }

    app.stop_keep().await;
    assert_eq!(used(&app, targets[0]).await, 7, "5 + 1 + 1 slots, the rest refused");
    assert_eq!(events(&app, code, "refused").await, 7);

    // The live code's statistics show them.
    let app2 = TestApp::spawn_on(app.db.clone(), app.db_opts.clone()).await;
    let admin = app2.admin().await;
    let page = admin.get(app2.url(&format!("/live-codes/{code}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"stat-refused\">7<"), "refused count on the statistics");
}

#[tokio::test]
async fn made_up_slugs_never_push_real_codes_out_of_the_cache() {
    let app = TestApp::spawn_with(|c| {
        c.scan.cache_ttl_ms = 600_000;
        c.scan.new_scans_per_address = 0;
    })
    .await;
    live_code(&app, "real", "fill", &[("r1", 100)]).await;
    let c = phone_from("127.0.0.1");
    let r = c.get(app.url("/l/real")).send().await.unwrap();
    assert_eq!(location(&r), "https://qm.qq.com/q/r1");
    // Changed behind the cache's back: as long as the code stays cached, scans see the old link.
    sqlx::query("UPDATE groups SET join_url = 'https://qm.qq.com/q/changed'").execute(&app.db).await.unwrap();

    // A slug no code could have (too long) is refused without a lookup.
    let long = "a".repeat(65_000);
    let r = c.get(app.url(&format!("/l/{long}"))).send().await.unwrap();
    assert!(
        matches!(r.status(), StatusCode::NOT_FOUND | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "{}",
        r.status()
    );
    let r = c.get(app.url(&format!("/l/{}", "b".repeat(65)))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // 10 050 made-up slugs, concurrently.
    let mut tasks = Vec::new();
    for w in 0..50 {
        let (c, base) = (c.clone(), app.url("/l/"));
        tasks.push(tokio::spawn(async move {
            for i in 0..201 {
                let r = c.get(format!("{base}nope-{w}-{i}")).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::NOT_FOUND);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = c.get(app.url("/l/real")).send().await.unwrap();
    assert_eq!(location(&r), "https://qm.qq.com/q/r1", "the real code stayed cached");
}

#[tokio::test]
async fn the_press_beacon_ignores_a_visitor_cookie_that_is_not_a_visitor_id() {
    let app = TestApp::spawn().await;
    let (code, targets) = live_code(&app, "press", "fill", &[("p1", 100)]).await;
    let c = reqwest::Client::new();
    let huge = "x".repeat(8000);
    let r = c
        .post(app.url("/l/press/press"))
        .header("cookie", format!("shoal_vid={huge}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("t={}", targets[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A body far beyond `t=<id>` is refused.
    let r = c.post(app.url("/l/press/press")).body(vec![b'a'; 64 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.stop_keep().await;
    let visitors: Vec<String> =
        sqlx::query_scalar("SELECT visitor FROM scan_events WHERE live_code_id = $1 AND outcome = 'long_press'")
            .bind(code)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(visitors, vec![String::new()], "counted, without the cookie's contents");
}

/// A square greyscale image of `side` pixels showing a QR code of `text`.
fn qr_of_side(text: &str, side: u32) -> image::GrayImage {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let (w, colors) = (code.width() as u32, code.to_colors());
    let total = w + 8;
    image::GrayImage::from_fn(side, side, |x, y| {
        let (mx, my) = ((x * total / side) as i64 - 4, (y * total / side) as i64 - 4);
        let dark = mx >= 0
            && my >= 0
            && (mx as u32) < w
            && (my as u32) < w
            && colors[(my as u32 * w + mx as u32) as usize] == qrcode::Color::Dark;
        image::Luma([if dark { 0 } else { 255 }])
    })
}

fn png_of(img: &image::GrayImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Creates a WeChat group through the form with `file` as its QR image.
async fn wechat_group(app: &TestApp, c: &reqwest::Client, name: &str, file: (&str, Vec<u8>)) -> reqwest::Response {
    app.post_multipart(
        c,
        "/groups/new",
        "/groups/new",
        &[("name", name), ("platform", "wechat")],
        vec![("qr_image", file.0, file.1)],
    )
    .await
}

#[tokio::test]
async fn images_larger_than_4096_pixels_a_side_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    // A QR code in the corner of a 4200 × 4200 white picture: small as a file, 17.6 megapixels.
    let mut big = image::GrayImage::from_pixel(4200, 4200, image::Luma([255]));
    image::imageops::replace(&mut big, &qr_of_side("https://weixin.qq.com/g/big", 400), 0, 0);
    let png = png_of(&big);
    assert!(png.len() < 2 * 1024 * 1024, "{} bytes", png.len());
    let r = wechat_group(&app, &c, "大图群", ("big.png", png.clone())).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"err-qr_image\"") && body.contains("4096"), "a clear reason");
    assert_eq!(app.count("groups").await, 0);
    assert_eq!(app.count("group_qr_images").await, 0);

    let r = app
        .post_multipart(
            &c,
            "/live-codes/new",
            "/live-codes/new",
            &[("name", "大图"), ("slug", "big-image"), ("fallback_kind", "image")],
            vec![("fallback_image", "big.png", png)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("4096"));
    assert_eq!(app.count("live_codes").await, 0);
}

#[tokio::test]
async fn public_images_are_scaled_down_and_carry_no_metadata() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    // A 2000 × 2000 JPEG of a group QR with an EXIF block (where a phone writes its location).
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode_image(&qr_of_side("https://weixin.qq.com/g/scaled", 2000))
        .unwrap();
    let exif = b"Exif\0\0GPS-SECRET-31.2304N-121.4737E";
    let mut upload = vec![0xFF, 0xD8, 0xFF, 0xE1];
    upload.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    upload.extend_from_slice(exif);
    upload.extend_from_slice(&jpeg[2..]);
    let r = wechat_group(&app, &c, "缩放群", ("qr.jpg", upload)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let group: i64 = sqlx::query_scalar("SELECT id FROM groups").fetch_one(&app.db).await.unwrap();
    let code: i64 = sqlx::query_scalar("INSERT INTO live_codes (slug, name) VALUES ('scaled', 'S') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let target: i64 = sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 10) RETURNING id",
    )
    .bind(code)
    .bind(group)
    .fetch_one(&app.db)
    .await
    .unwrap();

    let r = reqwest::get(app.url(&format!("/l/scaled/t/{target}/qr"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let served = r.bytes().await.unwrap();
    assert!(!served.windows(10).any(|w| w == b"GPS-SECRET"), "metadata stripped");
    let img = image::load_from_memory(&served).unwrap();
    assert!(img.width().max(img.height()) <= 1080, "{}×{}", img.width(), img.height());
    let mut prepared = rqrr::PreparedImage::prepare(img.to_luma8());
    let (_, text) = prepared.detect_grids()[0].decode().unwrap();
    assert_eq!(text, "https://weixin.qq.com/g/scaled", "still scans");
}

#[tokio::test]
async fn a_targets_qr_is_served_only_while_a_scan_could_go_there() {
    let app = TestApp::spawn().await;
    let c = app.admin().await;
    let r = wechat_group(&app, &c, "开放群", ("qr.png", crate::harness::qr_png("https://weixin.qq.com/g/open"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let group: i64 = sqlx::query_scalar("SELECT id FROM groups").fetch_one(&app.db).await.unwrap();
    let code: i64 = sqlx::query_scalar("INSERT INTO live_codes (slug, name) VALUES ('open', 'O') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let target: i64 = sqlx::query_scalar(
        "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 10) RETURNING id",
    )
    .bind(code)
    .bind(group)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let url = app.url(&format!("/l/open/t/{target}/qr"));
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);

    sqlx::query("UPDATE live_code_targets SET enabled = FALSE WHERE id = $1")
        .bind(target)
        .execute(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await; // the snapshot cache's TTL
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND, "disabled target");

    sqlx::query("UPDATE live_code_targets SET enabled = TRUE WHERE id = $1")
        .bind(target)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE groups SET status = 'archived' WHERE id = $1").bind(group).execute(&app.db).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND, "archived group");
}

#[tokio::test]
async fn deleting_a_live_code_mid_batch_loses_only_its_own_events() {
    // One write a second: the scans below and the deletion fall into one batch.
    let app = TestApp::spawn_with(|c| c.scan.events_flush_ms = 1000).await;
    let (gone, _) = live_code(&app, "gone", "fill", &[("g1", 100)]).await;
    let (kept, _) = live_code(&app, "kept", "fill", &[("k1", 100)]).await;
    let c = phone_from("127.0.0.1");
    for slug in ["gone", "kept", "gone", "kept", "kept"] {
        assert_eq!(c.get(app.url(&format!("/l/{slug}"))).send().await.unwrap().status(), StatusCode::FOUND);
    }
    let mut conn = app.db.acquire().await.unwrap();
    assert!(shoal::store::live_codes::delete(&mut conn, gone).await.unwrap());
    drop(conn);
    let start = Instant::now();
    app.stop_keep().await;
    assert!(start.elapsed() < Duration::from_secs(3), "no retries: {:?}", start.elapsed());
    assert_eq!(events(&app, kept, "new").await, 3, "the other code's events are written");
    assert_eq!(events(&app, gone, "new").await, 0);
    let daily: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(scans), 0)::bigint FROM scan_daily WHERE live_code_id = $1")
            .bind(kept)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(daily, 3);
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_not_retried() {
    use shoal::scan::events::{EventSink, ScanEvent};
    let app = TestApp::spawn().await;
    let (code, _) = live_code(&app, "refuse", "fill", &[("x1", 10)]).await;
    let sink = EventSink::start(app.db.clone(), chrono_tz::UTC, Duration::from_millis(100));
    let event = |channel: &str| ScanEvent {
        at: chrono::Utc::now(),
        live_code_id: code,
        channel: channel.to_string(),
        target_id: None,
        group_id: None,
        outcome: shoal::domain::live_code::ScanOutcome::Fallback,
        visitor: String::new(),
        referrer: String::new(),
        ua_class: shoal::domain::live_code::UaClass::Mobile,
        ip_anon: None,
    };
    // Text PostgreSQL refuses (a NUL character): no retry can make it pass.
    sink.record(event("bad\0channel"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    sink.record(event(""));
    let start = Instant::now();
    sink.flush_and_stop().await;
    assert!(start.elapsed() < Duration::from_secs(2), "not retried for seconds: {:?}", start.elapsed());
    assert_eq!(events(&app, code, "fallback").await, 1, "the next batch is written");
}
