//! A fake Telegram Bot API server for bench/outbound.sh: answers every `sendMessage` like the
//! Bot API (`{"ok":true,"result":{"message_id":…}}`) and remembers each one (chat, text, arrival
//! time), so that the benchmark can check what arrived.
//!
//!     cargo build --release --example fake_telegram
//!     target/release/examples/fake_telegram [--listen 127.0.0.1:0] [--threads 1]
//!
//! It prints `fake telegram listening on http://ADDR` and then serves:
//! - `POST /bot<token>/<method>`: sendMessage (and any other method) answered at once;
//! - `GET /_stats?window_ms=60000&limit=20`: what arrived — calls, distinct texts (a text sent
//!   twice is a repeated call), chats, the most calls one chat got in any window of `window_ms`,
//!   how many chats got more than `limit` in some window, the first and last arrival and the
//!   rate between them;
//! - `GET /_texts`: every distinct text received, one per line;
//! - `POST /_reset`: forget everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    /// (chat, text, nanoseconds since start).
    calls: Vec<(String, String, u64)>,
}

#[derive(Clone)]
struct App {
    start: Instant,
    seen: Arc<Mutex<Seen>>,
}

fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--threads" => threads = args.next().and_then(|t| t.parse().ok()).expect("--threads N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build().unwrap();
    rt.block_on(async move {
        let app = App { start: Instant::now(), seen: Arc::default() };
        let router = Router::new()
            .route("/_stats", get(stats))
            .route("/_texts", get(texts))
            .route("/_reset", post(reset))
            .route("/{bot}/{method}", post(method))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        println!("fake telegram listening on http://{}", listener.local_addr().unwrap());
        axum::serve(listener, router).await.unwrap();
    });
}

async fn method(
    State(app): State<App>,
    axum::extract::Path((_bot, method)): axum::extract::Path<(String, String)>,
    body: Bytes,
) -> impl IntoResponse {
    let at = app.start.elapsed().as_nanos() as u64;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let chat = match &v["chat_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = v["text"].as_str().unwrap_or("").to_string();
    let id = {
        let mut seen = app.seen.lock().unwrap();
        seen.calls.push((chat, text, at));
        seen.calls.len()
    };
    let result = if method == "sendMessage" || method == "sendPhoto" {
        json!({"message_id": id, "date": 0, "chat": {"id": v["chat_id"], "type": "supergroup"}})
    } else {
        json!(true)
    };
    Json(json!({"ok": true, "result": result}))
}

async fn stats(State(app): State<App>, Query(q): Query<HashMap<String, u64>>) -> impl IntoResponse {
    let window = q.get("window_ms").copied().unwrap_or(60_000) * 1_000_000;
    let limit = q.get("limit").copied().unwrap_or(20) as usize;
    let seen = app.seen.lock().unwrap();
    let mut per_chat: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut texts: HashSet<&str> = HashSet::new();
    for (chat, text, at) in &seen.calls {
        per_chat.entry(chat).or_default().push(*at);
        texts.insert(text);
    }
    let (mut most, mut over) = (0usize, 0usize);
    for times in per_chat.values_mut() {
        times.sort_unstable();
        let (mut start, mut best) = (0usize, 0usize);
        for end in 0..times.len() {
            while times[end] - times[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        most = most.max(best);
        if best > limit {
            over += 1;
        }
    }
    let first = seen.calls.iter().map(|c| c.2).min().unwrap_or(0);
    let last = seen.calls.iter().map(|c| c.2).max().unwrap_or(0);
    let span = (last - first) as f64 / 1e9;
    let total = seen.calls.len();
    Json(json!({
        "calls": total,
        "distinct_texts": texts.len(),
        "repeated_calls": total - texts.len(),
        "chats": per_chat.len(),
        "window_ms": window / 1_000_000,
        "limit": limit,
        "max_per_chat_in_window": most,
        "chats_over_limit": over,
        "span_secs": span,
        "calls_per_sec": if span > 0.0 { total as f64 / span } else { 0.0 },
    }))
}

async fn texts(State(app): State<App>) -> impl IntoResponse {
    let seen = app.seen.lock().unwrap();
    let set: HashSet<&str> = seen.calls.iter().map(|c| c.1.as_str()).collect();
    let mut out = String::new();
    for t in set {
        out.push_str(t);
        out.push('\n');
    }
    out
}

async fn reset(State(app): State<App>) -> impl IntoResponse {
    app.seen.lock().unwrap().calls.clear();
    "ok"
}
