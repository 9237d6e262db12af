//! Scan events, recorded off the response path: handlers push into a bounded channel and one
//! writer task copies them to `scan_events` in batches (every `scan.events_flush_ms`, or sooner
//! when 20 000 are waiting), updating the daily counters in the same transaction. On shutdown the writer drains
//! the channel before it stops. A hard crash loses at most the events not yet written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};

const CHANNEL_CAPACITY: usize = 100_000;
const BATCH: usize = 20_000;

#[derive(Debug, Clone)]
pub struct ScanEvent {
    pub at: DateTime<Utc>,
    pub live_code_id: i64,
    pub channel: String,
    pub target_id: Option<i64>,
    pub group_id: Option<i64>,
    /// new | sticky | fallback | preview | long_press
    pub outcome: &'static str,
    pub visitor: String,
    pub referrer: String,
    pub ua_class: &'static str,
    /// The client address with its host part dropped (`domain::live_code::anonymize_ip`).
    pub ip_anon: Option<std::net::IpAddr>,
}

pub struct EventSink {
    tx: mpsc::Sender<ScanEvent>,
    /// Wakes the writer before its next tick when a batch is waiting.
    batch_ready: Arc<Notify>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl EventSink {
    /// Starts the writer. `tz` names the time zone whose calendar days the counters use.
    pub fn start(db: PgPool, tz: chrono_tz::Tz, every: Duration) -> EventSink {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (stop, stop_rx) = watch::channel(false);
        let batch_ready = Arc::new(Notify::new());
        let writer = tokio::spawn(write_loop(db, tz, every, rx, batch_ready.clone(), stop_rx));
        EventSink { tx, batch_ready, stop, writer: Mutex::new(Some(writer)) }
    }

    /// Queues an event; never waits. A full queue (the database far behind) drops the event
    /// and counts it in `scan_events_dropped_total`. The writer is not woken for each event,
    /// only when a whole batch is waiting: it otherwise collects on its own tick.
    pub fn record(&self, e: ScanEvent) {
        if self.tx.try_send(e).is_err() {
            metrics::counter!("scan_events_dropped_total").increment(1);
        } else if self.tx.capacity() <= CHANNEL_CAPACITY - BATCH {
            self.batch_ready.notify_one();
        }
    }

    /// Writes everything queued, then stops the writer.
    pub async fn flush_and_stop(&self) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

async fn write_loop(
    db: PgPool,
    tz: chrono_tz::Tz,
    every: Duration,
    mut rx: mpsc::Receiver<ScanEvent>,
    batch_ready: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    let mut buf: Vec<ScanEvent> = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = batch_ready.notified() => false,
            _ = stop.changed() => true,
        };
        // What is queued, a batch at a time: full batches go at once, a partial one ends the
        // round (what arrives while it is written waits for the next tick, so that batches stay
        // big). When stopping, no request is running any more and this empties the queue.
        loop {
            if !rx.is_empty() {
                // Returns at once: there is something to take.
                rx.recv_many(&mut buf, BATCH).await;
            }
            if buf.is_empty() {
                break;
            }
            let full = buf.len() == BATCH;
            write_with_retry(&db, tz, std::mem::replace(&mut buf, Vec::with_capacity(BATCH))).await;
            if !full && !stopping {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write_with_retry(db: &PgPool, tz: chrono_tz::Tz, events: Vec<ScanEvent>) {
    let n = events.len();
    // Formatting the batch is CPU work: keep it off the request workers.
    let prepared = match tokio::task::spawn_blocking(move || prepare(&events, tz)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(events = n, error = %e, "preparing scan events failed; they are lost");
            metrics::counter!("scan_events_dropped_total").increment(n as u64);
            return;
        }
    };
    for attempt in 1..=5u32 {
        match write(db, &prepared).await {
            Ok(()) => {
                metrics::counter!("scan_events_written_total").increment(n as u64);
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, events = n, error = %e, "writing scan events failed");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    }
    tracing::error!(events = n, "scan events could not be written and are lost");
    metrics::counter!("scan_events_dropped_total").increment(n as u64);
}

/// COPY text format: escape backslash, tab, newline and carriage return.
fn copy_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn opt_id(v: Option<i64>, out: &mut String) {
    match v {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("\\N"),
    }
}

pub fn local_day(at: DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// A batch made ready for the database: the COPY text, the daily counts and the unique-visitor
/// sketches. Built on a blocking thread so that request workers never wait for it.
struct Prepared {
    copy: Vec<u8>,
    daily: HashMap<(i64, NaiveDate, String, i64, &'static str), i64>,
    uniques: HashMap<(i64, NaiveDate, String), crate::domain::hll::Sketch>,
}

fn prepare(events: &[ScanEvent], tz: chrono_tz::Tz) -> Prepared {
    let mut text = String::with_capacity(events.len() * 120);
    let mut daily: HashMap<(i64, NaiveDate, String, i64, &'static str), i64> = HashMap::new();
    let mut uniques: HashMap<(i64, NaiveDate, String), crate::domain::hll::Sketch> = HashMap::new();
    for e in events {
        text.push_str(&e.at.to_rfc3339());
        text.push('\t');
        text.push_str(&e.live_code_id.to_string());
        text.push('\t');
        copy_text(&e.channel, &mut text);
        text.push('\t');
        opt_id(e.target_id, &mut text);
        text.push('\t');
        opt_id(e.group_id, &mut text);
        text.push('\t');
        text.push_str(e.outcome);
        text.push('\t');
        copy_text(&e.visitor, &mut text);
        text.push('\t');
        copy_text(&e.referrer, &mut text);
        text.push('\t');
        text.push_str(e.ua_class);
        text.push('\t');
        if let Some(ip) = e.ip_anon {
            let _ = write!(text, "{ip}");
        }
        text.push('\n');
        let day = local_day(e.at, tz);
        *daily.entry((e.live_code_id, day, e.channel.clone(), e.target_id.unwrap_or(0), e.outcome)).or_default() += 1;
        if e.outcome != "preview" && !e.visitor.is_empty() {
            uniques.entry((e.live_code_id, day, e.channel.clone())).or_default().add(e.visitor.as_bytes());
        }
    }
    Prepared { copy: text.into_bytes(), daily, uniques }
}

async fn write(db: &PgPool, p: &Prepared) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    // Analytics: a database crash may lose the last moments of events (as a Shoal crash may);
    // not waiting for the WAL flush keeps the writer cheap.
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY scan_events (at, live_code_id, channel, target_id, group_id, outcome, visitor, ref, ua_class, ip_anon) FROM STDIN",
        )
        .await?;
    copy.send(p.copy.as_slice()).await?;
    copy.finish().await?;

    let mut codes = Vec::new();
    let mut days = Vec::new();
    let mut channels = Vec::new();
    let mut targets = Vec::new();
    let mut outcomes = Vec::new();
    let mut counts = Vec::new();
    for ((code, day, ch, target, outcome), n) in &p.daily {
        codes.push(*code);
        days.push(*day);
        channels.push(ch.clone());
        targets.push(*target);
        outcomes.push(outcome.to_string());
        counts.push(*n);
    }
    sqlx::query(
        "INSERT INTO scan_daily (live_code_id, day, channel, target_id, outcome, scans)
         SELECT * FROM UNNEST($1::bigint[], $2::date[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
         ON CONFLICT (live_code_id, day, channel, target_id, outcome) DO UPDATE SET scans = scan_daily.scans + EXCLUDED.scans",
    )
    .bind(&codes)
    .bind(&days)
    .bind(&channels)
    .bind(&targets)
    .bind(&outcomes)
    .bind(&counts)
    .execute(&mut *tx)
    .await?;

    for ((code, day, ch), sketch) in &p.uniques {
        let inserted = sqlx::query(
            "INSERT INTO scan_daily_uniques (live_code_id, day, channel, registers) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(code)
        .bind(day)
        .bind(ch)
        .bind(sketch.to_bytes())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            continue;
        }
        let stored: Vec<u8> = sqlx::query_scalar(
            "SELECT registers FROM scan_daily_uniques WHERE live_code_id = $1 AND day = $2 AND channel = $3 FOR UPDATE",
        )
        .bind(code)
        .bind(day)
        .bind(ch)
        .fetch_one(&mut *tx)
        .await?;
        let mut merged = crate::domain::hll::Sketch::from_bytes(&stored);
        merged.merge(sketch);
        sqlx::query(
            "UPDATE scan_daily_uniques SET registers = $4 WHERE live_code_id = $1 AND day = $2 AND channel = $3",
        )
        .bind(code)
        .bind(day)
        .bind(ch)
        .bind(merged.to_bytes())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_control_characters() {
        let mut s = String::new();
        copy_text("a\tb\\c\nd", &mut s);
        assert_eq!(s, "a\\tb\\\\c\\nd");
    }

    #[test]
    fn days_are_local_to_the_configured_zone() {
        let at: DateTime<Utc> = "2026-11-23T17:30:00Z".parse().unwrap();
        assert_eq!(local_day(at, chrono_tz::Asia::Shanghai).to_string(), "2026-11-24");
        assert_eq!(local_day(at, chrono_tz::UTC).to_string(), "2026-11-23");
    }
}
