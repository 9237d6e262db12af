//! A real browser: headless Chromium, driven through chromedriver with the W3C WebDriver protocol
//! (a small client below, over reqwest). It goes through the first start the way a new admin
//! would: setup page, log out and in again, the first group, the list; then switches the UI to
//! Chinese with the footer button and does it once more. Screenshots of the key steps are kept in
//! `target/browser-screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{temp_dir, TestApp, PASSWORD};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long to wait for a page, an element or a text before failing.
const WAIT: Duration = Duration::from_secs(10);
/// The JSON key of a web element reference (W3C WebDriver).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child process with one browser session. Dropping it ends the session, stops
/// chromedriver, kills whatever browser process is left and removes the profile directory, so
/// nothing outlives the test, also when it panics.
struct Browser {
    http: reqwest::Client,
    port: u16,
    session: Option<String>,
    driver: Option<Child>,
    /// Holds the browser profile and the chromedriver log; unique to this browser.
    dir: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        Self::start_attempt(1).await
    }

    /// Starts chromedriver on a free port. Another test may take that port between our check
    /// and chromedriver's bind: then it tries another, up to five times.
    async fn start_attempt(attempt: u32) -> Browser {
        for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{what} not found at {path}: the browser test needs headless Chromium and chromedriver; \
                 install them with `apt-get install chromium chromium-driver`"
            );
        }
        let dir = temp_dir("browser");
        let profile = dir.join("profile");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("browser home");
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.join("chromedriver.log").display()))
            // Chromium keeps its config, caches and crash database under $HOME: keep them in
            // the browser's own directory, which goes away with it.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Should this test process die without unwinding, chromedriver goes with it.
        // SAFETY: only prctl runs between fork and exec, and it is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let driver = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {CHROMEDRIVER}: {e}; install the packages chromium and chromium-driver")
        });
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("client");
        let mut b = Browser { http, port, session: None, driver: Some(driver), dir };

        // Ready when GET /status says so.
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(status) = b.call(Method::GET, "/status", None).await {
                if status["ready"] == json!(true) {
                    break;
                }
            }
            if let Some(Ok(Some(exit))) = b.driver.as_mut().map(Child::try_wait) {
                let log = b.log();
                if log.contains("ERR_ADDRESS_IN_USE") && attempt < 5 {
                    drop(b);
                    return Box::pin(Self::start_attempt(attempt + 1)).await;
                }
                panic!("chromedriver exited at start ({exit}); log:\n{log}");
            }
            assert!(Instant::now() < deadline, "chromedriver not ready after {WAIT:?}; log:\n{}", b.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created = b
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}; chromedriver log:\n{}", b.log()));
        let id = created["sessionId"].as_str().expect("sessionId").to_string();
        b.session = Some(id);
        b
    }

    /// The last lines of the chromedriver log, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One WebDriver command; the `value` of the answer, or the WebDriver error as text.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let mut answer: Value = resp.json().await.map_err(|e| format!("{method} {path}: not JSON: {e}"))?;
        let value = answer["value"].take();
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{method} {path}: {status} {}: {}", value["error"], value["message"]))
        }
    }

    /// A command on the session.
    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let id = self.session.as_deref().expect("no WebDriver session");
        self.call(method, &format!("/session/{id}{path}"), body).await
    }

    async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url }))).await.expect("navigate");
    }

    /// The path of the current URL (htmx pushes it into the history after boosted requests).
    async fn path(&self) -> Result<String, String> {
        let url = self.cmd(Method::GET, "/url", None).await?;
        let url = reqwest::Url::parse(url.as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        Ok(url.path().to_string())
    }

    async fn find(&self, css: &str) -> Result<String, String> {
        let body = json!({"using": "css selector", "value": css});
        let el = self.cmd(Method::POST, "/element", Some(body)).await?;
        el[ELEMENT].as_str().map(str::to_string).ok_or_else(|| format!("no element reference in {el}"))
    }

    async fn find_all(&self, css: &str) -> Result<Vec<String>, String> {
        let body = json!({"using": "css selector", "value": css});
        let els = self.cmd(Method::POST, "/elements", Some(body)).await?;
        Ok(els.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(str::to_string)).collect())
    }

    async fn element_text(&self, el: &str) -> Result<String, String> {
        let t = self.cmd(Method::GET, &format!("/element/{el}/text"), None).await?;
        Ok(t.as_str().unwrap_or_default().to_string())
    }

    /// The rendered text of the first element matching `css`.
    async fn text(&self, css: &str) -> Result<String, String> {
        let el = self.find(css).await?;
        self.element_text(&el).await
    }

    async fn source(&self) -> Result<String, String> {
        Ok(self.cmd(Method::GET, "/source", None).await?.as_str().unwrap_or_default().to_string())
    }

    async fn script(&self, script: &str, args: Value) -> Result<Value, String> {
        self.cmd(Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Polls `probe` until it gives a value; fails with the page's URL, text and a screenshot.
    async fn wait_for<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if Instant::now() > deadline {
                let url = self.cmd(Method::GET, "/url", None).await.unwrap_or_default();
                let text = self.text("body").await.unwrap_or_default();
                let shot = match self.save_screenshot("failure").await {
                    Ok((path, _)) => path.display().to_string(),
                    Err(e) => e,
                };
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\nURL: {url}\nscreenshot: {shot}\npage text:\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the URL path is `path`.
    async fn wait_path(&self, path: &str) {
        self.wait_for(&format!("the URL path {path}"), async || (self.path().await.ok()? == path).then_some(())).await
    }

    /// Waits until an element matching `css` contains `needle` in its text; returns the text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_for(&format!("{css} containing {needle:?}"), async || {
            let text = self.text(css).await.ok()?;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Waits until exactly `n` elements match `css`; returns their texts.
    async fn wait_count(&self, css: &str, n: usize) -> Vec<String> {
        self.wait_for(&format!("{n} elements matching {css}"), async || {
            let els = self.find_all(css).await.ok()?;
            if els.len() != n {
                return None;
            }
            let mut texts = Vec::new();
            for el in &els {
                texts.push(self.element_text(el).await.ok()?);
            }
            Some(texts)
        })
        .await
    }

    /// The text content of every element matching `css`, as in the HTML (rendered text may be
    /// transformed by CSS, e.g. upper-case table headings).
    async fn texts_in_dom(&self, css: &str) -> Vec<String> {
        let script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())";
        let texts = self.script(script, json!([css])).await.expect("read texts");
        serde_json::from_value(texts).expect("a list of texts")
    }

    /// Clicks the element matching `css` once it is there and clickable.
    async fn click(&self, css: &str) {
        self.wait_for(&format!("a clickable {css}"), async || {
            let el = self.find(css).await.ok()?;
            self.cmd(Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await.ok()
        })
        .await;
    }

    /// Types `text` into the (cleared) field matching `css`.
    async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(&format!("an editable {css}"), async || {
            let el = self.find(css).await.ok()?;
            self.cmd(Method::POST, &format!("/element/{el}/clear"), Some(json!({}))).await.ok()?;
            self.cmd(Method::POST, &format!("/element/{el}/value"), Some(json!({ "text": text }))).await.ok()
        })
        .await;
        let typed = self.script("return document.querySelector(arguments[0]).value", json!([css])).await;
        assert_eq!(typed, Ok(json!(text)), "value of {css} after typing");
    }

    /// Saves a screenshot of the viewport as `target/browser-screenshots/{name}.png`; returns
    /// the path and the PNG bytes.
    async fn save_screenshot(&self, name: &str) -> Result<(PathBuf, Vec<u8>), String> {
        let data = self.cmd(Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot {name}: not base64: {e}"))?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((path, png))
    }

    /// A screenshot of a key step, checked to be a PNG of a plausible size that shows something.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let (path, png) = self.save_screenshot(name).await.expect("screenshot");
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("screenshot {name} is not a PNG: {e}"))
            .to_rgb8();
        let (w, h) = img.dimensions();
        assert!((800..=4000).contains(&w) && (400..=4000).contains(&h), "screenshot {name} is {w}x{h}");
        let first = img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| p != first), "screenshot {name} is blank");
        path
    }

    /// Ends the session properly; dropping does the rest.
    async fn quit(mut self) {
        if let Some(id) = self.session.take() {
            self.call(Method::DELETE, &format!("/session/{id}"), None).await.expect("delete session");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The processes to clean up: chromedriver's descendants, and anything using our profile.
        let marker = self.dir.display().to_string();
        let driver_pid = self.driver.as_ref().map(|c| c.id() as i32);
        let mut stray = descendants(driver_pid);
        stray.extend(processes_mentioning(&marker));
        if let Some(id) = self.session.take() {
            // Synchronous: Drop can't await, and this also runs while unwinding from a panic.
            http_sync(self.port, "DELETE", &format!("/session/{id}"));
        }
        if let Some(mut driver) = self.driver.take() {
            http_sync(self.port, "GET", "/shutdown");
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(driver.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        stray.extend(processes_mentioning(&marker));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive: Vec<&(i32, String)> = stray.iter().filter(|(pid, cmd)| cmdline(*pid) == *cmd).collect();
            if alive.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in alive {
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port()
}

/// A bodiless HTTP/1.1 request to chromedriver, without an async runtime; the answer is ignored.
fn http_sync(port: u16, method: &str, path: &str) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_ok() {
        let _ = s.read_to_end(&mut Vec::new());
    }
}

/// The command line of a process ("" once it is gone).
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Every process (pid, command line) whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .map(|pid| (pid, cmdline(pid)))
        .filter(|(_, cmd)| cmd.contains(marker))
        .collect()
}

/// The descendants (pid, command line) of `root`, from the parent links in /proc.
fn descendants(root: Option<i32>) -> Vec<(i32, String)> {
    let Some(root) = root else { return Vec::new() };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in all_pids() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut out, mut todo) = (Vec::new(), vec![root]);
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push((c, cmdline(c)));
            todo.push(c);
        }
    }
    out
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

async fn setup_token(app: &TestApp) -> String {
    let token = shoal::auth::random_token(24);
    let mut conn = app.db.acquire().await.unwrap();
    shoal::store::operators::replace_setup_token(&mut conn, &shoal::auth::token_hash(&token)).await.unwrap();
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_setup_login_and_first_group_in_both_languages() {
    let started = Instant::now();
    // Only a failing run leaves this one.
    let _ = std::fs::remove_file(screenshot_dir().join("failure.png"));
    let app = TestApp::spawn().await;
    let token = setup_token(&app).await;
    let b = Browser::start().await;

    // The setup page: the first admin, in English.
    b.goto(&app.url(&format!("/setup?token={token}"))).await;
    b.wait_path("/setup").await;
    let h1 = b.text("h1").await.expect("setup heading");
    assert!(["Create the first admin", "创建第一个管理员"].contains(&h1.as_str()), "setup page: {h1}");
    b.type_into("#username", "captain").await;
    b.type_into("#password", PASSWORD).await;
    b.type_into("#password_confirm", PASSWORD).await;
    b.click("#language option[value='en']").await;
    assert_eq!(b.script("return document.querySelector('#language').value", json!([])).await, Ok(json!("en")));
    b.screenshot("01-setup").await;
    b.click("form.stack button[type='submit']").await;

    // Logged in on the dashboard, in English.
    b.wait_path("/").await;
    b.wait_text("h1", "Dashboard").await;
    b.wait_text(".flash-success", "Welcome! Your admin account is ready.").await;
    assert_eq!(b.text("a[data-nav='groups']").await.as_deref(), Ok("Groups"));
    assert!(b.text(".userbox").await.expect("user box").contains("captain"));
    b.screenshot("02-dashboard").await;

    // Log out with the header button, and back in on the login page.
    b.click(".userbox form button[type='submit']").await;
    b.wait_path("/login").await;
    b.wait_text("h1", "Log in").await;
    assert!(b.find_all(".mainnav").await.expect("find nav").is_empty(), "no navigation when logged out");
    // A wrong password first: the page says so (a 401 page that htmx must swap in, too).
    b.type_into("#username", "captain").await;
    b.type_into("#password", "not the password").await;
    b.click("form.stack button[type='submit']").await;
    b.wait_text(".flash-error", "Wrong username or password.").await;
    assert_eq!(b.script("return document.querySelector('#username').value", json!([])).await, Ok(json!("captain")));
    b.type_into("#password", PASSWORD).await;
    b.click("form.stack button[type='submit']").await;
    b.wait_path("/").await;
    b.wait_text("h1", "Dashboard").await;
    b.wait_text(".userbox", "captain").await;

    // Groups → New group → the group page.
    b.click("a[data-nav='groups']").await;
    b.wait_path("/groups").await;
    b.wait_text("h1", "Groups").await;
    b.wait_text("#empty", "No groups match.").await;
    b.click(".page-head a[href='/groups/new']").await;
    b.wait_path("/groups/new").await;
    b.wait_text("h1", "New group").await;
    let first = ("Harbour Tea Club", "https://t.me/+harbour-tea-club");
    b.type_into("#name", first.0).await;
    b.type_into("#join_url", first.1).await;
    b.screenshot("03-group-form").await;
    b.click("form.stack .form-actions button[type='submit']").await;
    b.wait_text(".flash-success", "Group created.").await;
    b.wait_text("h1", first.0).await;
    let path = b.path().await.expect("url");
    let id = path.strip_prefix("/groups/").and_then(|id| id.parse::<i64>().ok());
    assert!(id.is_some(), "on the group page, not {path}");
    assert_eq!(b.text(&format!("dl.props a[href='{}']", first.1)).await.as_deref(), Ok(first.1));

    // The list has it.
    b.click("a[data-nav='groups']").await;
    b.wait_path("/groups").await;
    let rows = b.wait_count("#groups tbody tr", 1).await;
    assert!(rows[0].contains(first.0) && rows[0].contains("Invite link"), "row: {}", rows[0]);
    assert_eq!(b.texts_in_dom("#groups thead th").await[..3], ["Name", "Platform", "Status"]);
    b.screenshot("04-groups-en").await;

    // The footer button switches the UI to Chinese, on the same page.
    assert_eq!(b.text("footer form button").await.as_deref(), Ok("中文"));
    b.click("footer form button").await;
    b.wait_text("a[data-nav='groups']", "群组").await;
    b.wait_path("/groups").await;
    b.wait_text("h1", "群组").await;
    assert_eq!(b.text("footer form button").await.as_deref(), Ok("English"));
    let source = b.source().await.expect("page source");
    assert!(source.contains("退出登录"), "the logout button is in Chinese too");

    // A second group, through the form in Chinese.
    b.click(".page-head a[href='/groups/new']").await;
    b.wait_path("/groups/new").await;
    b.wait_text("h1", "新建群").await;
    let second = ("海港读书会", "https://qm.qq.com/q/harbour-reading");
    b.type_into("#name", second.0).await;
    b.click("#platform option[value='qq']").await;
    b.type_into("#join_url", second.1).await;
    b.click("form.stack .form-actions button[type='submit']").await;
    b.wait_text(".flash-success", "群已创建。").await;
    b.wait_text("h1", second.0).await;

    // Both groups in the list, under Chinese headings.
    b.click("a[data-nav='groups']").await;
    b.wait_path("/groups").await;
    let rows = b.wait_count("#groups tbody tr", 2).await;
    for (name, _) in [first, second] {
        assert!(rows.iter().any(|r| r.contains(name) && r.contains("邀请链接")), "{name} in {rows:?}");
    }
    assert_eq!(b.texts_in_dom("#groups thead th").await[..3], ["群名称", "平台", "状态"]);
    b.screenshot("05-groups-zh").await;
    b.quit().await;

    // What the browser did is in the database.
    let admins: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT username, role, language FROM operators").fetch_all(&app.db).await.unwrap();
    assert_eq!(admins, [("captain".to_string(), "admin".to_string(), Some("zh-CN".to_string()))]);
    let groups: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT name, platform, join_url FROM groups ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(
        groups,
        [
            (first.0.to_string(), "wechat".to_string(), Some(first.1.to_string())),
            (second.0.to_string(), "qq".to_string(), Some(second.1.to_string())),
        ]
    );
    app.stop().await;
    eprintln!("browser test took {:.1?}", started.elapsed());
}

/// A phone (390 × 844, as an iPhone 14) on a live code's page: the live code's own QR is the
/// first image, the navigation is folded behind a menu button that works without JavaScript,
/// and every target's actions are within the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_phone_layout_of_the_live_code_page() {
    let app = TestApp::spawn().await;
    app.operator("xiaoli", "admin", true, &[]).await;
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, join_url) VALUES ('海港读书会', 'qq', 500, 'https://qm.qq.com/q/x') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let code: i64 = sqlx::query_scalar(
        "INSERT INTO live_codes (slug, name, fallback_kind) VALUES ('spring', '春季招新', 'image') RETURNING id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO live_code_fallback_images (live_code_id, content_type, bytes, sha256) VALUES ($1, 'image/png', $2, 'abc')",
    )
    .bind(code)
    .bind(crate::harness::qr_png("https://u.wechat.com/kefu"))
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit) VALUES ($1, $2, 1, 200)")
        .bind(code)
        .bind(group)
        .execute(&app.db)
        .await
        .unwrap();

    let b = Browser::start().await;
    let metrics = json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true});
    b.cmd(
        Method::POST,
        "/goog/cdp/execute",
        Some(json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": metrics})),
    )
    .await
    .expect("phone viewport");
    b.goto(&app.url("/login")).await;
    b.wait_path("/login").await;
    b.type_into("#username", "xiaoli").await;
    b.type_into("#password", PASSWORD).await;
    b.click("form.stack button[type='submit']").await;
    b.wait_path("/").await;
    b.goto(&app.url(&format!("/live-codes/{code}"))).await;
    b.wait_path(&format!("/live-codes/{code}")).await;
    b.wait_for("the page to load", async || b.find("#target-table").await.ok()).await;
    assert_eq!(b.script("return window.innerWidth", json!([])).await, Ok(json!(390)), "a phone-sized viewport");

    // The live code's QR comes first; the fallback contact QR is small and further down.
    let first_img = b.script("return document.querySelector('main img').id", json!([])).await;
    assert_eq!(first_img, Ok(json!("live-code-qr")));
    let sizes = b
        .script(
            "const r = id => document.getElementById(id).getBoundingClientRect();
             return [r('live-code-qr').top, r('live-code-qr').width, r('fallback-qr').top, r('fallback-qr').width]",
            json!([]),
        )
        .await
        .expect("image boxes");
    let n = |i: usize| sizes[i].as_f64().unwrap_or(0.0);
    assert!(n(0) < n(2) && n(1) > 2.0 * n(3), "live code QR {sizes} above and larger than the fallback");

    // The navigation is folded; the menu button opens it (a checkbox label: no JavaScript).
    let nav_display = "return getComputedStyle(document.getElementById('mainnav')).display";
    assert_eq!(b.script(nav_display, json!([])).await, Ok(json!("none")), "nav folded on a phone");
    b.screenshot_phone("06-phone-live-code").await;
    b.click("#nav-toggle-label").await;
    b.wait_for("the menu to open", async || {
        (b.script(nav_display, json!([])).await.ok()? != json!("none")).then_some(())
    })
    .await;
    b.screenshot_phone("07-phone-menu-open").await;
    b.click("#nav-toggle-label").await;

    // The target's actions are all on screen, each reachable by scrolling down only.
    let off = b
        .script(
            "const out = [];
             for (const el of document.querySelectorAll('#target-table .target-actions button, #target-table .target-actions input:not([type=hidden])')) {
               const r = el.getBoundingClientRect();
               if (r.width === 0 || r.left < 0 || r.right > window.innerWidth) out.push(el.outerHTML.slice(0, 80));
             }
             return [out, document.querySelectorAll('#target-table .target-actions button').length,
                     document.documentElement.scrollWidth]",
            json!([]),
        )
        .await
        .expect("target actions");
    assert_eq!(off[0], json!([]), "target actions off screen: {off}");
    assert!(off[1].as_u64().unwrap_or(0) >= 5, "the target's buttons are there: {off}");
    assert!(off[2].as_u64().unwrap_or(9999) <= 390, "no sideways scrolling: {off}");
    b.script("document.querySelector('#target-table').scrollIntoView()", json!([])).await.expect("scroll");
    b.screenshot_phone("08-phone-targets").await;
    b.quit().await;
    app.stop().await;
}

impl Browser {
    /// A screenshot at phone size, checked to be a PNG of that size that shows something.
    async fn screenshot_phone(&self, name: &str) -> PathBuf {
        let (path, png) = self.save_screenshot(name).await.expect("screenshot");
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("screenshot {name} is not a PNG: {e}"))
            .to_rgb8();
        let (w, h) = img.dimensions();
        assert!((300..=800).contains(&w) && (600..=2000).contains(&h), "screenshot {name} is {w}x{h}");
        let first = img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| p != first), "screenshot {name} is blank");
        path
    }
}

/// Group automation through the pages, as an operator would set it up: a rule set made on
/// `/rule-sets`, attached to a group and given a keyword reply; a member's message arrives
/// through the group's OneBot bridge and is answered; the group's activity log shows what the
/// bot did and which rule made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_a_rule_set_made_in_the_pages_answers_and_shows_in_the_activity_log() {
    use hmac::Mac;
    const SECRET: &str = "browser-automation-secret";
    let app = TestApp::spawn().await;
    app.operator("xiaoli", "admin", true, &[]).await;
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'QQ bot', $1) RETURNING id",
    )
    .bind(SECRET)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ('周末读书会', 'qq', 500, '700900', $1) RETURNING id",
    )
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();

    let b = Browser::start().await;
    b.goto(&app.url("/login")).await;
    b.wait_path("/login").await;
    b.type_into("#username", "xiaoli").await;
    b.type_into("#password", PASSWORD).await;
    b.click("form.stack button[type='submit']").await;
    b.wait_path("/").await;

    // A new rule set, then on its page: attached to the group, with a keyword reply.
    b.goto(&app.url("/rule-sets")).await;
    b.wait_path("/rule-sets").await;
    b.type_into("#new-rule-set #name", "读书会规则").await;
    b.click("#new-rule-set button[type='submit']").await;
    let rule_set: i64 = b
        .wait_for("the rule set's page", async || {
            let path = b.path().await.ok()?;
            path.strip_prefix("/rule-sets/")?.parse().ok()
        })
        .await;
    b.click(&format!("#group_id option[value='{group}']")).await;
    b.click("form[action$='/attach'] button[type='submit']").await;
    b.wait_for("the group to be attached", async || {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rule_set_groups WHERE rule_set_id = $1 AND group_id = $2")
                .bind(rule_set)
                .bind(group)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;
    b.wait_path(&format!("/rule-sets/{rule_set}")).await;
    b.click("#match_kind option[value='contains']").await;
    b.type_into("#pattern", "几点").await;
    b.type_into("#reply_text", "每周六晚上八点开始").await;
    b.click("#add-keyword button[type='submit']").await;
    b.wait_text("main", "每周六晚上八点开始").await;
    b.screenshot("08-rule-set").await;

    // A member asks in the group: the bot answers with the reply.
    let body = serde_json::to_vec(&json!({"time": chrono::Utc::now().timestamp(), "self_id": 10001000,
        "post_type": "message", "message_type": "group", "sub_type": "normal", "message_id": 41,
        "group_id": 700900, "user_id": 4242, "message": "今晚几点开始？",
        "sender": {"user_id": 4242, "nickname": "阿青", "card": ""}}))
    .unwrap();
    let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    let (status, answer) = crate::harness::post_hook(
        &app,
        &format!("/hooks/onebot11/{bridge}"),
        &body,
        &[("x-signature", sig), ("x-self-id", "10001000".into())],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(answer["reply"], "每周六晚上八点开始");

    // The group's activity log shows it, with the rule that made it.
    b.goto(&app.url(&format!("/groups/{group}/activity"))).await;
    b.wait_path(&format!("/groups/{group}/activity")).await;
    let rows = b.wait_count("#activity tr[data-kind='keyword_reply']", 1).await;
    let row = &rows[0];
    assert!(row.contains("Keyword reply #") && !row.contains("keyword:"), "the row names its rule in words: {row}");
    assert!(row.contains("4242") || row.contains("阿青"), "the row names the member: {row}");
    b.screenshot("09-activity").await;
    b.quit().await;
}

/// The growth loop end to end, as an operator and members would live it: the operator makes a
/// campaign in the pages (group, live code, stages, hold days, poster, time window); a member
/// asks the QQ bot `邀请` through a signed OneBot delivery and gets their poster; its QR, decoded,
/// is their personal link, which leads through the live code to the group; the scan is matched to
/// the join that follows through the bridge; the invite is pending on the records page; the test
/// clock lets the hold pass and the job confirms it; the reward is in the member's ledger and on
/// their page; a second invitee who leaves inside the hold is shown reversed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_the_invite_loop_from_campaign_to_poster_to_confirmed_reward() {
    use crate::invite_loop::{
        images_in, invite_code, live_code, now, onebot_post, poster_qr, poster_template, qq_group, qq_message,
        qq_notice, JOIN_URL,
    };
    let app = TestApp::spawn_with(crate::invite_loop::config).await;
    app.operator("xiaoli", "admin", true, &[]).await;
    let token = app.token("admin", true, &[]).await;
    let (bridge, group) = qq_group(&app).await;
    live_code(&app, "runners", group).await;
    let template = poster_template(&app, &token).await;
    // The inviter is in the group already (a join nobody is credited with).
    let (s, _) = onebot_post(&app, bridge, qq_notice("group_increase", "approve", 4242, now())).await;
    assert!(s.is_success());

    let b = Browser::start().await;
    b.goto(&app.url("/login")).await;
    b.wait_path("/login").await;
    b.type_into("#username", "xiaoli").await;
    b.type_into("#password", PASSWORD).await;
    b.click("form.stack button[type='submit']").await;
    b.wait_path("/").await;

    // The campaign, made in its form.
    b.goto(&app.url("/campaigns/new")).await;
    b.wait_path("/campaigns/new").await;
    b.type_into("#name", "冬季跑团邀请赛").await;
    b.click(&format!("input[name='group_ids'][value='{group}']")).await;
    b.type_into("#live_code_slug", "runners").await;
    b.type_into("#hold_days", "3").await;
    b.type_into("#stages", "1,10").await;
    b.type_into("#poster_template_id", &template.to_string()).await;
    let legend = b.text("#campaign-window legend").await.expect("the window's legend");
    assert!(["Time window", "活动时间"].contains(&legend.as_str()), "{legend}");
    // The window, typed in the display zone: from yesterday to a week from now.
    let tz = chrono_tz::Asia::Shanghai;
    let local = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).with_timezone(&tz).format("%Y-%m-%dT%H:%M");
    let set = "document.querySelector(arguments[0]).value = arguments[1]";
    b.script(set, json!(["#starts_at", local(-1).to_string()])).await.expect("start");
    b.script(set, json!(["#ends_at", local(7).to_string()])).await.expect("end");
    b.screenshot("10-campaign-form").await;
    b.click("#campaign-form button[type='submit']").await;
    b.wait_text("h1", "冬季跑团邀请赛").await;
    let campaign: i64 = b
        .wait_for("the campaign's page", async || b.path().await.ok()?.strip_prefix("/campaigns/")?.parse().ok())
        .await;
    type Stored = (Vec<i64>, i32, Option<i64>, Option<i64>, bool);
    let stored: Stored = sqlx::query_as(
        "SELECT group_ids, hold_days, live_code_id, poster_template_id, starts_at < now() AND ends_at > now() FROM campaigns WHERE id = $1",
    )
    .bind(campaign)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((stored.0, stored.1, stored.3, stored.4), (vec![group], 3, Some(template), true));
    assert!(stored.2.is_some(), "the live code is the campaign's");

    // The member asks the bot; the answer carries their poster; its QR is their personal link.
    let (s, a) = onebot_post(&app, bridge, qq_message(4242, 1, "邀请")).await;
    assert_eq!(s, reqwest::StatusCode::OK, "{a}");
    let reply = a["reply"].as_str().unwrap();
    let posters = images_in(reply);
    assert_eq!(posters.len(), 1, "{reply}");
    let personal = poster_qr(&posters[0]).await;
    let code = invite_code(&app, "4242").await;
    assert_eq!(personal, app.url(&format!("/l/runners?r={code}")));

    // A friend scans it: the live code sends them to the group, and the scan waits as a
    // referral; their join through the bridge a moment later is matched to it.
    let scan = async |ua: &str, referrals: i64| {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = http.get(&personal).header("user-agent", ua).send().await.unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        assert_eq!(r.headers()["location"], JOIN_URL, "the live code leads to the group");
        for _ in 0..100 {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM invite_referrals").fetch_one(&app.db).await.unwrap();
            if n == referrals {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The join's time (whole seconds) comes after the scan's.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    };
    scan("Mozilla/5.0 (iPhone) friend-one", 1).await;
    let (s, _) = onebot_post(&app, bridge, qq_notice("group_increase", "approve", 5001, now())).await;
    assert!(s.is_success());
    let record = |invitee: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT r.state, r.source FROM invite_records r JOIN members m ON m.id = r.invitee_member_id
                 WHERE m.external_user_id = $1 AND r.campaign_id = $2",
            )
            .bind(invitee)
            .bind(campaign)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(record("5001").await, ("pending".to_string(), "scan".to_string()));

    // The records page shows it waiting for the hold period.
    b.goto(&app.url(&format!("/invites?campaign={campaign}"))).await;
    let rows = b.wait_count("#invites tbody tr", 1).await;
    assert!(rows[0].contains("5001") && rows[0].contains("4242"), "{}", rows[0]);
    assert_eq!(b.find_all("#invites span.badge[data-state='pending']").await.unwrap().len(), 1);
    b.screenshot("11-invite-pending").await;

    // A second friend joins the same way and leaves inside the hold period.
    scan("Mozilla/5.0 (Android) friend-two", 2).await;
    let (s, _) = onebot_post(&app, bridge, qq_notice("group_increase", "approve", 5002, now())).await;
    assert!(s.is_success());
    assert_eq!(record("5002").await.0, "pending");
    let (s, _) = onebot_post(&app, bridge, qq_notice("group_decrease", "leave", 5002, now() + 1)).await;
    assert!(s.is_success());
    assert_eq!(record("5002").await.0, "reversed");

    // The test clock: four days pass for the hold; the confirmation job runs.
    sqlx::query("UPDATE invite_records SET joined_at = joined_at - interval '4 days', hold_until = hold_until - interval '4 days'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE jobs SET run_at = run_at - interval '4 days' WHERE kind = 'invite_confirm' AND state = 'queued'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    b.wait_for("the job to confirm the first invite", async || (record("5001").await.0 == "confirmed").then_some(()))
        .await;
    assert_eq!(record("5002").await.0, "reversed", "a reversed invite stays reversed");

    // The records page: one confirmed, one reversed (left).
    b.goto(&app.url(&format!("/invites?campaign={campaign}"))).await;
    b.wait_count("#invites tbody tr", 2).await;
    let confirmed = b.wait_count("#invites tr:has(span.badge[data-state='confirmed'])", 1).await;
    assert!(confirmed[0].contains("5001"), "{}", confirmed[0]);
    let reversed = b.wait_count("#invites tr:has(span.badge[data-state='reversed'])", 1).await;
    assert!(reversed[0].contains("5002"), "{}", reversed[0]);
    b.screenshot("12-invites-confirmed-and-reversed").await;
    // The leaderboard counts the confirmed one.
    b.goto(&app.url(&format!("/campaigns/{campaign}"))).await;
    let leaders = b.wait_count("#leaderboard tbody tr", 1).await;
    assert!(leaders[0].contains("4242") && leaders[0].contains("10"), "{}", leaders[0]);

    // The reward is one ledger entry of the stage's 10 points, and the balance says so.
    let ledger: Vec<(i64, String)> = sqlx::query_as(
        "SELECT l.delta, l.kind FROM points_ledger l JOIN members m ON m.id = l.member_id WHERE m.external_user_id = '4242'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(ledger, [(10, "invite".to_string())]);
    // The member's own page (from `我的`) shows it.
    let (_, me) = onebot_post(&app, bridge, qq_message(4242, 2, "我的")).await;
    let me = me["reply"].as_str().unwrap();
    let at = me.find("/m/").unwrap_or_else(|| panic!("no link in {me}"));
    let path: String =
        me[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')).collect();
    b.goto(&app.url(&path)).await;
    let ledger_text = b.wait_text("#ledger", "+10").await;
    assert!(ledger_text.contains("邀请奖励") || ledger_text.contains("Invite reward"), "{ledger_text}");
    b.wait_text("section.invites", "冬季跑团邀请赛").await;
    b.screenshot("13-member-page-reward").await;
    b.quit().await;
    app.stop().await;
}
