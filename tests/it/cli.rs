//! The binary itself: configuration layers, the embedded cluster's whole life, and the CLI.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{client, temp_dir, url_of, TestApp, PASSWORD};

fn shoal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env("SHOAL_LOG_FORMAT", "json")
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("SHOAL_") && k != "SHOAL_LOG_FORMAT" {
            c.env_remove(k);
        }
    }
    c
}

#[tokio::test]
async fn configuration_layers_defaults_then_local_file_then_environment() {
    let dir = temp_dir("config");
    std::fs::write(
        dir.join("local.toml"),
        "public_url = \"https://groups.example.com\"\nlisten = \"0.0.0.0:9000\"\n[database]\nmax_connections = 7\n",
    )
    .unwrap();
    let out = shoal()
        .arg("--config-dir")
        .arg(&dir)
        .arg("config")
        .env("SHOAL_LISTEN", "127.0.0.1:9999")
        .env("SHOAL_SESSION__SECURE", "true")
        .env("DATABASE_URL", "postgres://shoal:hunter2@db.internal/shoal")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen: 127.0.0.1:9999"), "env beats local.toml:\n{text}");
    assert!(text.contains("public_url: \"https://groups.example.com\""), "local.toml beats defaults");
    assert!(text.contains("max_connections: 7"));
    assert!(text.contains("secure: true"));
    assert!(text.contains("idle_minutes: 720"), "defaults fill the rest");
    assert!(text.contains("postgres://shoal:***@db.internal/shoal") && !text.contains("hunter2"), "secret redacted");
    let _ = std::fs::remove_dir_all(dir);

    let bad = shoal().arg("config").env("SHOAL_LISTEN", "not an address").output().await.unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid configuration"));
}

#[tokio::test]
async fn without_postgres_binaries_it_says_what_to_install() {
    let dir = temp_dir("nobin");
    let out = shoal()
        .arg("migrate")
        .env("SHOAL_DATA_DIR", &dir)
        .env("SHOAL_DATABASE__PG_BIN_DIR", "/nonexistent/bin")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install postgresql") && err.contains("DATABASE_URL"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

struct Served {
    child: Child,
    addr: String,
    setup_url: Option<String>,
    startup: Duration,
}

async fn serve(data: &Path) -> Served {
    let started = Instant::now();
    let mut child = shoal()
        .arg("serve")
        .env("SHOAL_DATA_DIR", data)
        .env("SHOAL_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut setup_url = None;
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(u) = line.split("admin at: ").nth(1) {
                setup_url = Some(u.trim().to_string());
            }
            if let Some(a) = line.strip_prefix("Shoal is listening on http://") {
                return a.trim().to_string();
            }
        }
        panic!("shoal exited before listening");
    })
    .await
    .expect("shoal did not start within 60 s");
    Served { child, addr, setup_url, startup: started.elapsed() }
}

fn postmaster_pid(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("postgres/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn terminate(mut s: Served) {
    let pid = s.child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), s.child.wait()).await.expect("stops").unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

async fn wait_gone(pid: i32) {
    for _ in 0..100 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("postgres {pid} outlived Shoal");
}

#[tokio::test]
async fn the_embedded_cluster_starts_stops_with_shoal_and_keeps_its_data() {
    let root = temp_dir("embedded");
    let data = root.join("data");

    // First start: initdb, start, migrate, print the setup link.
    let s = serve(&data).await;
    let first_start = s.startup;
    let base = format!("http://{}", s.addr);
    assert_eq!(client().get(format!("{base}/readyz")).send().await.unwrap().status(), StatusCode::OK);
    let setup = s.setup_url.clone().expect("a setup link on first start");
    assert!(setup.starts_with(&format!("{base}/setup?token=")), "{setup}");
    assert_eq!(client().get(&setup).send().await.unwrap().status(), StatusCode::OK);
    let pg = postmaster_pid(&data).expect("postmaster.pid while serving");
    assert!(alive(pg));

    // A CLI command while serving attaches to the running cluster and leaves it running.
    let out = shoal()
        .args(["operator", "create", "--username", "root1", "--role", "admin"])
        .env("SHOAL_DATA_DIR", &data)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let password = stdout.split("password (shown once): ").nth(1).expect("generated password").trim().to_string();
    assert!(alive(pg), "the serving process still owns the cluster");

    terminate(s).await;
    wait_gone(pg).await;
    assert!(postmaster_pid(&data).is_none(), "cluster stopped cleanly");

    // Restart: the same data, no setup link (an operator exists), the password works.
    let s = serve(&data).await;
    let restart = s.startup;
    assert!(s.setup_url.is_none());
    let base = format!("http://{}", s.addr);
    let c = client();
    let body = c.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::harness::csrf_in(&body).unwrap();
    let r = c
        .post(format!("{base}/login"))
        .form(&[("_csrf", csrf.as_str()), ("username", "root1"), ("password", &password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "data survived the restart");
    let pg = postmaster_pid(&data).unwrap();
    terminate(s).await;
    wait_gone(pg).await;

    // A CLI command alone starts and stops the cluster itself.
    let out = shoal().args(["operator", "list"]).env("SHOAL_DATA_DIR", &data).output().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("root1"));
    assert!(postmaster_pid(&data).is_none());

    eprintln!("embedded cluster: first start {first_start:?}, restart {restart:?}");
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test]
async fn cli_creates_and_disables_operators_and_issues_tokens() {
    let app = TestApp::spawn().await;
    let url = url_of(&app.db_opts);
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut cmd = shoal();
            cmd.args(args).env("DATABASE_URL", url).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            if let Some(s) = stdin {
                use tokio::io::AsyncWriteExt;
                child.stdin.take().unwrap().write_all(s.as_bytes()).await.unwrap();
            }
            drop(child.stdin.take());
            child.wait_with_output().await.unwrap()
        }
    };
    let out = run(
        &["operator", "create", "--username", "carol", "--role", "operator", "--all-groups", "--password-stdin"],
        Some("correct horse battery\n"),
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("correct horse"), "a given password is not echoed");
    assert_eq!(app.login(&client(), "carol", PASSWORD).await.status(), StatusCode::SEE_OTHER);

    let dup = run(&["operator", "create", "--username", "carol"], None).await;
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("exists already"));

    let out = run(&["token", "create", "--name", "ci", "--role", "viewer"], None).await;
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = client().get(app.url("/api/v1/groups")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let out = run(&["operator", "disable", "--username", "carol"], None).await;
    assert!(out.status.success());
    assert_eq!(app.login(&client(), "carol", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    let listed = String::from_utf8(run(&["operator", "list"], None).await.stdout).unwrap();
    assert!(listed.lines().any(|l| l.contains("carol") && l.contains("disabled")), "{listed}");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE actor_kind = 'system' ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(actions, vec!["operator.create", "token.create", "operator.disable"]);
}
