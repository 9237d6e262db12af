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
//! carries a link outside the allow-list. Every request is built and signed before the clock
//! starts and sent over at most `connections` keep-alive connections by a minimal HTTP/1.1
//! client: the generator runs on the same cores as Shoal, and a general-purpose client's work
//! per request (a URL parsed, headers mapped, JSON built and signed while the load runs) was
//! taken from the server measured. It measures each webhook's latency from the moment it
//! was due (so a stalled server shows up in the figures, no coordinated omission) and prints
//! `SENT n`, `VIOLATING n`, `ERRORS n`, `LATE n`, `P50_US`, `P99_US`, `MAX_US`, `RPS`, the same
//! percentiles for clean and violating deliveries apart (`P50_CLEAN_US`…), and to stderr each
//! second's p50, p99 and worst.

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
    /// host:port of Shoal.
    host: String,
    onebot: i64,
    telegram: i64,
    secret: String,
    groups: u64,
    violating_every: u64,
}

impl Plan {
    /// The n-th delivery, due at unix time `at`, as the bytes of its HTTP/1.1 request, and
    /// whether it breaks a rule.
    fn request(&self, n: u64, run: u64, at: i64) -> (Vec<u8>, bool) {
        // Pairs of deliveries, one per bridge: both break a rule in every (100 / violating)-th pair.
        let violating = self.violating_every > 0 && (n / 2) % self.violating_every == self.violating_every / 2;
        let group = (n / 2) % self.groups;
        let user = 10_000 + (n / 2 / self.groups) % 50 + group * 50;
        let text = if violating {
            format!("便宜好货 看这里 spam-{}.example-shop.com/p?{n}", n % 7)
        } else {
            format!("今天的练习打卡了吗 第 {n} 条 https://shoal.example.org/docs")
        };
        let message_id = run * 100_000_000 + n;
        let (path, body, header) = if n.is_multiple_of(2) {
            let body = serde_json::to_vec(&json!({"time": at, "self_id": 10001000, "post_type": "message",
                "message_type": "group", "sub_type": "normal", "message_id": message_id, "group_id": 700_000 + group,
                "user_id": user, "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 0,
                "sender": {"user_id": user, "nickname": format!("m{user}"), "card": "", "role": "member"}}))
            .unwrap_or_default();
            let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(self.secret.as_bytes()).expect("key");
            mac.update(&body);
            let sig = format!("X-Signature: sha1={}", hex::encode(mac.finalize().into_bytes()));
            (format!("/hooks/onebot11/{}", self.onebot), body, sig)
        } else {
            let body = serde_json::to_vec(&json!({"update_id": message_id, "message": {"message_id": message_id,
                "date": at, "chat": {"id": -1_007_000_000i64 - group as i64, "type": "supergroup", "title": "g"},
                "from": {"id": user, "is_bot": false, "first_name": format!("m{user}")}, "text": text}}))
            .unwrap_or_default();
            let header = format!("X-Telegram-Bot-Api-Secret-Token: {}", self.secret);
            (format!("/hooks/telegram/{}", self.telegram), body, header)
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{header}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        (req, violating)
    }
}

/// One keep-alive HTTP/1.1 connection to Shoal, one request at a time.
struct Conn {
    host: String,
    stream: Option<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Sends `req` and reads the answer: its status. A connection the server closed while idle
    /// (nothing of the answer read) is opened again and the request sent once more (its
    /// delivery key makes a second copy harmless).
    async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        let reused = self.stream.is_some();
        let (err, answered) = match self.try_send(req).await {
            Ok(status) => return Ok(status),
            Err(e) => e,
        };
        self.stream = None;
        if !reused || answered {
            return Err(err);
        }
        let again = self.try_send(req).await;
        if again.is_err() {
            self.stream = None;
        }
        again.map_err(|(e, _)| e)
    }

    async fn try_send(&mut self, req: &[u8]) -> Result<u16, (std::io::Error, bool)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.stream.is_none() {
            let s = tokio::net::TcpStream::connect(&self.host).await.map_err(|e| (e, false))?;
            s.set_nodelay(true).map_err(|e| (e, false))?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(req).await.map_err(|e| (e, false))?;
        self.buf.clear();
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
        // The head.
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.map_err(|e| (e, !self.buf.is_empty()))?;
            if n == 0 {
                return Err((eof(), !self.buf.is_empty()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let bad = || (std::io::Error::new(std::io::ErrorKind::InvalidData, "bad answer"), true);
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let header = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
        };
        let close = header("connection").is_some_and(|v| v == "close");
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            // Read up to the last chunk; the body itself is not needed.
            while !self.buf[head_end..].windows(5).any(|w| w == b"0\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(|e| (e, true))?;
                if n == 0 {
                    return Err((eof(), true));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while self.buf.len() < head_end + len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(|e| (e, true))?;
                if n == 0 {
                    return Err((eof(), true));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

async fn load(args: &[String]) {
    let need = |n: &str| arg(args, n).unwrap_or_else(|| panic!("{n} is required"));
    let shoal = need("--shoal");
    let plan = Plan {
        host: shoal.trim_start_matches("http://").trim_end_matches('/').to_string(),
        onebot: need("--onebot").parse().expect("--onebot ID"),
        telegram: need("--telegram").parse().expect("--telegram ID"),
        secret: need("--secret"),
        groups: arg(args, "--groups").and_then(|g| g.parse().ok()).unwrap_or(50),
        violating_every: 100 / arg(args, "--violating").and_then(|v| v.parse::<u64>().ok()).unwrap_or(10).clamp(1, 100),
    };
    let rate: u64 = arg(args, "--rate").and_then(|r| r.parse().ok()).unwrap_or(5000);
    let seconds: u64 = arg(args, "--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let connections: usize = arg(args, "--connections").and_then(|c| c.parse().ok()).unwrap_or(64);
    let run: u64 = arg(args, "--run").and_then(|r| r.parse().ok()).unwrap_or(1);
    let total = rate * seconds;
    // Every request is built and signed before the clock starts, with the event time it will
    // be due at: the load generator shares the machine with Shoal, and what it spends while
    // the load runs is taken from the server measured.
    let lead = Duration::from_millis(500);
    let t0 = chrono::Utc::now() + lead + Duration::from_millis(total / 50);
    let requests: Arc<Vec<(Vec<u8>, bool)>> =
        Arc::new((0..total).map(|n| plan.request(n, run, t0.timestamp() + (n / rate) as i64)).collect());
    let violating = requests.iter().filter(|r| r.1).count();

    // At most `connections` requests in flight: a request due while all are busy waits, and
    // its latency counts from when it was due.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, usize)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (rx, requests, latencies, errors, late) =
            (rx.clone(), requests.clone(), latencies.clone(), errors.clone(), late.clone());
        let mut conn = Conn { host: plan.host.clone(), stream: None, buf: Vec::with_capacity(4096) };
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some((due, n)) = next else { break };
                if due.elapsed() > Duration::from_millis(100) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let ok = matches!(conn.send(&requests[n].0).await, Ok(s) if (200..300).contains(&s));
                mine.push((n, due.elapsed().as_micros() as u64));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        });
    }
    let wait = (t0 - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let start = Instant::now();
    for n in 0..total {
        let due = start + Duration::from_nanos(n * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        tx.send((due, n as usize)).expect("workers");
    }
    drop(tx);
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let all = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    // Each second's p99 and worst, to stderr: where the tail comes from.
    let mut by_second = vec![Vec::new(); seconds as usize + 1];
    for &(n, us) in &all {
        by_second[(n as u64 / rate) as usize].push(us);
    }
    for (i, mut v) in by_second.into_iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        v.sort_unstable();
        eprintln!("second {i}: p50 {} us, p99 {} us, max {} us", v[v.len() / 2], v[v.len() * 99 / 100], v[v.len() - 1]);
    }
    for bad in [false, true] {
        let mut v: Vec<u64> = all.iter().filter(|(n, _)| requests[*n].1 == bad).map(|(_, us)| *us).collect();
        v.sort_unstable();
        if !v.is_empty() {
            let which = if bad { "VIOLATING" } else { "CLEAN" };
            println!("P50_{which}_US {}", v[v.len() / 2]);
            println!("P99_{which}_US {}", v[v.len() * 99 / 100]);
        }
    }
    let mut l: Vec<u64> = all.into_iter().map(|(_, us)| us).collect();
    l.sort_unstable();
    let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("SENT {}", l.len());
    println!("VIOLATING {violating}");
    println!("ERRORS {}", errors.load(Ordering::Relaxed));
    println!("LATE {}", late.load(Ordering::Relaxed));
    println!("P50_US {}", pct(0.50));
    println!("P99_US {}", pct(0.99));
    println!("MAX_US {}", l.last().copied().unwrap_or(0));
    println!("RPS {:.1}", l.len() as f64 / elapsed);
}
