//! The moderation benchmark's two halves (bench/moderation.sh):
//!
//! `moderation_load bots [--listen 127.0.0.1:0]` — a fake OneBot v11 API (`POST /onebot/<action>`)
//! and a fake Telegram Bot API (`POST /bot<token>/<method>`) in one server, answering every call
//! as the platforms do and counting calls per method and the distinct messages deleted
//! (`GET /_stats`). Prints `fake bots listening on http://ADDR`.
//!
//! `moderation_load load --shoal http://ADDR --onebot ID --telegram ID --secret S --groups N
//!  --rate 5000 --seconds 20 [--violating 10] [--connections 64]` — posts signed deliveries at a
//! fixed rate, half through each bridge, spread over N groups per bridge (chat ids `700000+i` on
//! QQ, `-1007000000-i` on Telegram) and 50 members per group; every `100/violating`-th message
//! carries a link outside the allow-list. It measures each webhook's latency from the moment it
//! was due (so a stalled server shows up in the figures, no coordinated omission) and prints
//! `SENT n`, `VIOLATING n`, `ERRORS n`, `LATE n`, `P50_US`, `P99_US`, `MAX_US`, `RPS`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::Mac;
use serde_json::{json, Value};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match args.first().map(String::as_str) {
        Some("bots") => rt.block_on(bots(arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into()))),
        Some("load") => rt.block_on(load(&args)),
        _ => {
            eprintln!(
                "usage: moderation_load bots [--listen ADDR] | load --shoal URL --onebot ID --telegram ID --secret S …"
            );
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- the fake bots

#[derive(Default)]
struct Seen {
    methods: HashMap<String, u64>,
    /// (chat, message id) of every deletion.
    deleted: HashSet<(String, String)>,
}

type Shared = Arc<Mutex<Seen>>;

fn note(seen: &Shared, method: &str, body: &Value) {
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
    *s.methods.entry(method.to_string()).or_default() += 1;
    if matches!(method, "delete_msg" | "deleteMessage") {
        let chat = body.get("chat_id").map(id).unwrap_or_default();
        s.deleted.insert((chat, body.get("message_id").map(id).unwrap_or_default()));
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn onebot(State(seen): State<Shared>, Path(action): Path<String>, body: Bytes) -> Json<Value> {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    note(&seen, &action, &v);
    let data = if action.starts_with("send_") {
        json!({"message_id": NEXT_ID.fetch_add(1, Ordering::Relaxed)})
    } else {
        Value::Null
    };
    Json(json!({"status": "ok", "retcode": 0, "data": data}))
}

async fn telegram(
    State(seen): State<Shared>,
    Path((_bot, method)): Path<(String, String)>,
    body: Bytes,
) -> Json<Value> {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    note(&seen, &method, &v);
    let result = if method == "sendMessage" {
        json!({"message_id": NEXT_ID.fetch_add(1, Ordering::Relaxed), "date": 0, "chat": {"id": v["chat_id"], "type": "supergroup"}})
    } else {
        json!(true)
    };
    Json(json!({"ok": true, "result": result}))
}

async fn stats(State(seen): State<Shared>) -> Json<Value> {
    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({"methods": s.methods, "deleted": s.deleted.len()}))
}

async fn bots(listen: String) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/onebot/{action}", post(onebot))
        .route("/{bot}/{method}", post(telegram))
        .route("/_stats", get(stats))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    println!("fake bots listening on http://{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}

// ---------------------------------------------------------------- the load

struct Plan {
    shoal: String,
    onebot: i64,
    telegram: i64,
    secret: String,
    groups: u64,
    violating_every: u64,
}

impl Plan {
    /// The n-th delivery: (path, body, headers, violating).
    fn delivery(&self, n: u64, run: u64) -> (String, Vec<u8>, Vec<(&'static str, String)>, bool) {
        let violating = self.violating_every > 0 && n % self.violating_every == self.violating_every / 2;
        let group = (n / 2) % self.groups;
        let user = 10_000 + (n / 2 / self.groups) % 50 + group * 50;
        let text = if violating {
            format!("便宜好货 看这里 spam-{}.example-shop.com/p?{n}", n % 7)
        } else {
            format!("今天的练习打卡了吗 第 {n} 条 https://shoal.example.org/docs")
        };
        let now = chrono::Utc::now().timestamp();
        let message_id = run * 100_000_000 + n;
        if n.is_multiple_of(2) {
            let body = serde_json::to_vec(&json!({"time": now, "self_id": 10001000, "post_type": "message",
                "message_type": "group", "sub_type": "normal", "message_id": message_id, "group_id": 700_000 + group,
                "user_id": user, "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 0,
                "sender": {"user_id": user, "nickname": format!("m{user}"), "card": "", "role": "member"}}))
            .unwrap_or_default();
            let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(self.secret.as_bytes()).expect("key");
            mac.update(&body);
            let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
            (format!("{}/hooks/onebot11/{}", self.shoal, self.onebot), body, vec![("x-signature", sig)], violating)
        } else {
            let body = serde_json::to_vec(&json!({"update_id": message_id, "message": {"message_id": message_id,
                "date": now, "chat": {"id": -1_007_000_000i64 - group as i64, "type": "supergroup", "title": "g"},
                "from": {"id": user, "is_bot": false, "first_name": format!("m{user}")}, "text": text}}))
            .unwrap_or_default();
            (
                format!("{}/hooks/telegram/{}", self.shoal, self.telegram),
                body,
                vec![("x-telegram-bot-api-secret-token", self.secret.clone())],
                violating,
            )
        }
    }
}

async fn load(args: &[String]) {
    let need = |n: &str| arg(args, n).unwrap_or_else(|| panic!("{n} is required"));
    let plan = Arc::new(Plan {
        shoal: need("--shoal"),
        onebot: need("--onebot").parse().expect("--onebot ID"),
        telegram: need("--telegram").parse().expect("--telegram ID"),
        secret: need("--secret"),
        groups: arg(args, "--groups").and_then(|g| g.parse().ok()).unwrap_or(50),
        violating_every: 100 / arg(args, "--violating").and_then(|v| v.parse::<u64>().ok()).unwrap_or(10).clamp(1, 100),
    });
    let rate: u64 = arg(args, "--rate").and_then(|r| r.parse().ok()).unwrap_or(5000);
    let seconds: u64 = arg(args, "--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let connections: usize = arg(args, "--connections").and_then(|c| c.parse().ok()).unwrap_or(64);
    let run: u64 = arg(args, "--run").and_then(|r| r.parse().ok()).unwrap_or(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let total = rate * seconds;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let violating = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    // At most `connections` requests in flight: a request due while all are busy waits, and
    // its latency counts from when it was due.
    let slots = Arc::new(tokio::sync::Semaphore::new(connections));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = start + Duration::from_nanos(n * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (url, body, headers, bad) = plan.delivery(n, run);
        if bad {
            violating.fetch_add(1, Ordering::Relaxed);
        }
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        if due.elapsed() > Duration::from_millis(100) {
            late.fetch_add(1, Ordering::Relaxed);
        }
        let (client, latencies, errors) = (client.clone(), latencies.clone(), errors.clone());
        tasks.spawn(async move {
            let mut req = client.post(url).header("content-type", "application/json").body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
            let us = due.elapsed().as_micros() as u64;
            drop(permit);
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().unwrap_or_else(|e| e.into_inner()).push(us);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_unstable();
    let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("SENT {}", l.len());
    println!("VIOLATING {}", violating.load(Ordering::Relaxed));
    println!("ERRORS {}", errors.load(Ordering::Relaxed));
    println!("LATE {}", late.load(Ordering::Relaxed));
    println!("P50_US {}", pct(0.50));
    println!("P99_US {}", pct(0.99));
    println!("MAX_US {}", l.last().copied().unwrap_or(0));
    println!("RPS {:.1}", l.len() as f64 / elapsed);
}
