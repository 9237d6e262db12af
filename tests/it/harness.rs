//! The test harness: a throwaway PostgreSQL cluster per test run, a fresh database per test, the
//! real application on 127.0.0.1:0, and an HTTP client that keeps cookies and never follows
//! redirects (so tests see every 303).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use reqwest::{Client, Response, StatusCode};
use shoal::pg::{EmbeddedPostgres, StartOptions};
use shoal::{AppState, Config};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub const PASSWORD: &str = "correct horse battery";

struct Cluster {
    /// Connection options for the maintenance database; `.database(x)` for others.
    base: PgConnectOptions,
    template: String,
    /// A connection URL with `{db}` in place of the database name, for child processes.
    url_template: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A directory the `postgres` system user can enter (tests run as root on CI).
pub fn temp_dir(label: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("shoal-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The cluster lives in its own thread and runtime for the whole test run. When the test
        // process exits, its watchdog sees the pipe close, stops postgres and removes the dir.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (base, url_template, _keep) = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
                    Some(url) => {
                        (url.parse::<PgConnectOptions>().expect("DATABASE_URL"), with_db_placeholder(&url), None)
                    }
                    None => {
                        let root = temp_dir("it");
                        let bin_dir = shoal::pg::find_bin_dir("").expect("PostgreSQL binaries");
                        let pg = EmbeddedPostgres::start(StartOptions {
                            data_dir: root.join("pg"),
                            bin_dir,
                            remove_on_stop: Some(root.clone()),
                        })
                        .await
                        .expect("start test cluster");
                        (pg.connect_options("postgres"), pg.url("{db}"), Some(pg))
                    }
                };
                let template = format!("shoal_tpl_{}", std::process::id());
                let mut admin = base.clone().database("postgres").connect().await.expect("connect");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {template}")).execute(&mut admin).await.expect("drop");
                sqlx::query(&format!("CREATE DATABASE {template}")).execute(&mut admin).await.expect("create template");
                admin.close().await.ok();
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(base.clone().database(&template))
                    .await
                    .expect("tpl");
                shoal::db::migrate(&pool).await.expect("migrate template");
                pool.close().await;
                tx.send(Cluster { base, template, url_template }).expect("send");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("test cluster failed to start")
    })
}

/// A fresh, migrated database for one test.
pub async fn fresh_db() -> (PgPool, PgConnectOptions) {
    let c = cluster();
    let name = format!("shoal_t_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    let mut admin = c.base.clone().database("postgres").connect().await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {}", c.template))
        .execute(&mut admin)
        .await
        .expect("create db");
    admin.close().await.ok();
    let opts = c.base.clone().database(&name);
    let pool = PgPoolOptions::new().max_connections(5).connect_with(opts.clone()).await.expect("pool");
    (pool, opts)
}

/// The connection URL of a test database, for child processes.
pub fn url_of(opts: &PgConnectOptions) -> String {
    cluster().url_template.replace("{db}", opts.get_database().unwrap_or("postgres"))
}

/// `postgres://u@h/name?x` → `postgres://u@h/{db}?x`.
fn with_db_placeholder(url: &str) -> String {
    let (main, query) = url.split_once('?').map(|(m, q)| (m, format!("?{q}"))).unwrap_or((url, String::new()));
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match main[scheme_end..].find('/') {
        Some(i) => &main[..scheme_end + i],
        None => main,
    };
    format!("{prefix}/{{db}}{query}")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PgPool,
    pub db_opts: PgConnectOptions,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    chatter: std::sync::Arc<shoal::bridges::chatter::ChatterSink>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let (db, db_opts) = fresh_db().await;
        Self::start(db, db_opts, tweak).await
    }

    /// A second server on an existing database (a restart, or another process).
    pub async fn spawn_on(db: PgPool, db_opts: PgConnectOptions) -> TestApp {
        Self::start(db, db_opts, |_| {}).await
    }

    /// Another server on an existing database, with its own pool and configuration.
    pub async fn start_on(db_opts: PgConnectOptions, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let own = PgPoolOptions::new().max_connections(8).connect_with(db_opts.clone()).await.expect("pool");
        Self::start(own, db_opts, tweak).await
    }

    async fn start(db: PgPool, db_opts: PgConnectOptions, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::defaults();
        config.listen = addr;
        config.public_url = format!("http://{addr}");
        tweak(&mut config);
        let state = AppState::new(db.clone(), config.clone());
        let chatter = state.chatter.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(shoal::run(listener, state, async move {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            db,
            db_opts,
            stop: std::sync::Mutex::new(Some(stop)),
            task: std::sync::Mutex::new(Some(task)),
            chatter,
        }
    }

    /// Waits until the plain messages answered so far are written (`bridges::chatter` writes
    /// them behind the answer).
    pub async fn chatter_written(&self) {
        self.chatter.flush().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server gracefully and waits for it (queued scan events are written, reserved
    /// slots given back), keeping the database for assertions.
    pub async fn stop_keep(&self) {
        let stop = self.stop.lock().unwrap().take();
        if let Some(s) = stop {
            let _ = s.send(());
        }
        let task = self.task.lock().unwrap().take();
        if let Some(t) = task {
            t.await.expect("join").expect("server result");
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) {
        self.stop_keep().await;
    }

    /// Creates an operator directly in the database; `groups` scopes a non-admin.
    pub async fn operator(&self, username: &str, role: &str, all_groups: bool, groups: &[i64]) -> i64 {
        let hash = shoal::auth::password::hash(PASSWORD.into()).await.expect("hash");
        let mut conn = self.db.acquire().await.expect("conn");
        shoal::store::operators::create(
            &mut conn,
            shoal::store::operators::NewOperator {
                username,
                password_hash: &hash,
                role: shoal::auth::Role::parse(role).expect("role"),
                all_groups,
                group_ids: groups,
                language: None,
            },
        )
        .await
        .expect("create operator")
    }

    /// A client logged in as a new operator.
    pub async fn login_as(&self, username: &str, role: &str, all_groups: bool, groups: &[i64]) -> Client {
        self.operator(username, role, all_groups, groups).await;
        let c = client();
        let resp = self.login(&c, username, PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login as {username}");
        c
    }

    pub async fn admin(&self) -> Client {
        self.login_as("admin", "admin", true, &[]).await
    }

    pub async fn login(&self, c: &Client, username: &str, password: &str) -> Response {
        let csrf = self.csrf(c, "/login").await;
        c.post(self.url("/login"))
            .form(&[("_csrf", csrf.as_str()), ("username", username), ("password", password)])
            .send()
            .await
            .expect("login")
    }

    /// The CSRF token of the session, read from a form on `page`.
    pub async fn csrf(&self, c: &Client, page: &str) -> String {
        let body = c.get(self.url(page)).send().await.expect("get").text().await.expect("text");
        csrf_in(&body).unwrap_or_else(|| panic!("no CSRF field on {page}"))
    }

    /// POSTs a urlencoded form with the session's CSRF token (read from `page`).
    pub async fn post_form(&self, c: &Client, page: &str, action: &str, fields: &[(&str, &str)]) -> Response {
        let csrf = self.csrf(c, page).await;
        let mut all: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        c.post(self.url(action)).form(&all).send().await.expect("post")
    }

    /// POSTs a multipart form with the session's CSRF token and optional file parts.
    pub async fn post_multipart(
        &self,
        c: &Client,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
        files: Vec<(&str, &str, Vec<u8>)>,
    ) -> Response {
        let csrf = self.csrf(c, page).await;
        let mut form = reqwest::multipart::Form::new().text("_csrf", csrf);
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        for (field, name, bytes) in files {
            form = form.part(field.to_string(), reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
        }
        c.post(self.url(action)).multipart(form).send().await.expect("post multipart")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&self.db).await.expect("count")
    }

    /// Creates an API token directly and returns its secret.
    pub async fn token(&self, role: &str, all_groups: bool, groups: &[i64]) -> String {
        let secret = shoal::web::settings::new_token_secret();
        let mut conn = self.db.acquire().await.expect("conn");
        shoal::store::tokens::create(
            &mut conn,
            shoal::store::tokens::NewToken {
                name: "test",
                hash: &shoal::auth::token_hash(&secret),
                prefix: &secret[..10],
                role: shoal::auth::Role::parse(role).expect("role"),
                all_groups,
                group_ids: groups,
                created_by: None,
            },
        )
        .await
        .expect("token");
        secret
    }

    /// Inserts a group directly; returns its id.
    pub async fn group(&self, name: &str) -> i64 {
        sqlx::query_scalar("INSERT INTO groups (name, platform, capacity) VALUES ($1, 'qq', 500) RETURNING id")
            .bind(name)
            .fetch_one(&self.db)
            .await
            .expect("group")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = s.send(());
        }
    }
}

/// A client with a cookie store that does not follow redirects.
pub fn client() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

pub fn csrf_in(body: &str) -> Option<String> {
    let i = body.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
    let j = body[i..].find('"')?;
    Some(body[i..i + j].to_string())
}

pub fn location(r: &Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// A PNG holding a QR code of `text`, as a phone screenshot of a group QR would.
pub fn qr_png(text: &str) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).expect("qr");
    let (w, colors) = (code.width() as u32, code.to_colors());
    let (scale, quiet) = (8u32, 4u32);
    let side = (w + 2 * quiet) * scale;
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        let (mx, my) = ((x / scale) as i64 - quiet as i64, (y / scale) as i64 - quiet as i64);
        let dark = mx >= 0
            && my >= 0
            && (mx as u32) < w
            && (my as u32) < w
            && colors[(my as u32 * w + mx as u32) as usize] == qrcode::Color::Dark;
        image::Luma([if dark { 0 } else { 255 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

/// A valid PNG with no QR code in it.
pub fn plain_png() -> Vec<u8> {
    let img = image::GrayImage::from_fn(200, 200, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

/// The bridge payload fixtures: a byte-for-byte copy of `../shared/fixtures/bridges` kept in the
/// repository, so that a clone runs its tests wherever it is checked out
/// (`bridges::the_vendored_fixtures_are_the_shared_ones` keeps the copy honest).
pub fn bridge_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bridges")
}

/// One fixture's bytes, e.g. `onebot11/group_message_array_checkin.json`.
pub fn bridge_fixture(path: &str) -> Vec<u8> {
    std::fs::read(bridge_fixtures().join(path)).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// POSTs a JSON body to a webhook with the given headers; the status and the JSON answer (Null
/// when there is none).
pub async fn post_hook(
    app: &TestApp,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (StatusCode, serde_json::Value) {
    let mut req = Client::new().post(app.url(path)).header("content-type", "application/json").body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(serde_json::Value::Null))
}

/// A generic-bridge event, signed now with `secret`.
pub async fn post_generic(
    app: &TestApp,
    id: i64,
    secret: &str,
    event: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let body = serde_json::to_vec(&event).unwrap();
    let ts = chrono::Utc::now().timestamp();
    let sig = shoal::domain::bridge::sign_generic(secret, ts, &body);
    post_hook(
        app,
        &format!("/hooks/generic/{id}"),
        &body,
        &[("x-shoal-timestamp", ts.to_string()), ("x-shoal-signature", sig)],
    )
    .await
}
