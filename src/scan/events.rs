//! Scan events, recorded off the response path: handlers push into a bounded channel and one
//! writer task copies them to `scan_events` with binary COPY, in batches (every
//! `scan.events_flush_ms`, or sooner when 20 000 are waiting), updating the daily counters in
//! the same transaction. A regular batch is fed to PostgreSQL in parts over most of a tick, so
//! that its work never comes as one burst. On shutdown the writer drains the channel before it
//! stops. A hard crash loses at most the events not yet written. A batch holds its live codes'
//! rows (`FOR KEY SHARE`) while it is written: the events of a code deleted meanwhile are
//! dropped alone; a batch the database refuses outright is not retried.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch, Notify};

use crate::domain::live_code::{ScanOutcome, UaClass};
use crate::store::scan_events::{self, DailyCount};

const CHANNEL_CAPACITY: usize = 100_000;
const BATCH: usize = 20_000;
/// A paced batch goes to the database in this many parts, with pauses between them.
const PACED_PARTS: usize = 32;
/// Smaller batches are not worth pacing.
const PACED_MIN_EVENTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ScanEvent {
    pub at: DateTime<Utc>,
    pub live_code_id: i64,
    pub channel: String,
    pub target_id: Option<i64>,
    pub group_id: Option<i64>,
    pub outcome: ScanOutcome,
    pub visitor: String,
    pub referrer: String,
    pub ua_class: UaClass,
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
            // A regular batch is fed to the database over most of the tick, so that its work
            // does not come as one burst; a full batch (falling behind) or the last ones go at once.
            let pace = (!full && !stopping).then(|| every * 3 / 4);
            write_with_retry(&db, tz, std::mem::replace(&mut buf, Vec::with_capacity(BATCH)), pace).await;
            if !full && !stopping {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write_with_retry(db: &PgPool, tz: chrono_tz::Tz, events: Vec<ScanEvent>, pace: Option<Duration>) {
    let n = events.len();
    let events = Arc::new(events);
    for attempt in 1..=5u32 {
        match write(db, tz, &events, pace).await {
            Ok(gone) => {
                metrics::counter!("scan_events_written_total").increment((n - gone) as u64);
                if gone > 0 {
                    tracing::info!(events = gone, "scan events of deleted live codes dropped");
                    metrics::counter!("scan_events_dropped_total").increment(gone as u64);
                }
                return;
            }
            Err(e) if !transient(&e) => {
                // Retrying a batch the database refuses only delays the batches behind it.
                tracing::error!(events = n, error = %e, "scan events were refused by the database and are lost");
                metrics::counter!("scan_events_dropped_total").increment(n as u64);
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

/// Whether a failed write may succeed when tried again: the connection or the server had a
/// moment (connection lost, pool exhausted, serialization failure or deadlock, resources,
/// shutdown), not a refusal of the data itself.
pub(crate) fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| ["08", "40", "53", "55", "57", "58", "XX"].iter().any(|p| c.starts_with(p)))
        }
        _ => false,
    }
}

/// The header of PostgreSQL's binary COPY format: signature, flags, header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One field of a binary COPY row: its length, then its bytes.
fn copy_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn copy_bigint(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(n) => copy_field(out, &n.to_be_bytes()),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// The calendar day (in `tz`) of a time, remembering the UTC span of the last day it computed:
/// the events of a batch almost all fall on one day.
struct DayOf {
    tz: chrono_tz::Tz,
    /// `[from, to)` in Unix microseconds, and its local day.
    last: Option<(i64, i64, NaiveDate)>,
}

impl DayOf {
    fn get(&mut self, at: DateTime<Utc>) -> NaiveDate {
        let t = at.timestamp_micros();
        if let Some((from, to, day)) = self.last {
            if (from..to).contains(&t) {
                return day;
            }
        }
        let day = local_day(at, self.tz);
        let span = day_span_micros(day, self.tz);
        self.last = span.map(|(from, to)| (from, to, day));
        day
    }
}

/// The UTC span of a local day, when it is unambiguous (otherwise nothing is remembered).
fn day_span_micros(day: NaiveDate, tz: chrono_tz::Tz) -> Option<(i64, i64)> {
    use chrono::TimeZone;
    let start = |d: NaiveDate| tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single().map(|t| t.timestamp_micros());
    Some((start(day)?, start(day.succ_opt()?)?))
}

pub fn local_day(at: DateTime<Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

type DailyKey = (i64, NaiveDate, String, i64, ScanOutcome);
type UniquesKey = (i64, NaiveDate, String);

/// A batch made ready for the database: the binary COPY data, the daily counts and the
/// unique-visitor sketches.
struct Prepared {
    copy: Vec<u8>,
    daily: HashMap<DailyKey, i64>,
    uniques: HashMap<UniquesKey, crate::domain::hll::Sketch>,
}

/// Turns events into binary COPY data and the batch's counters, a part at a time.
struct Encoder {
    p: Prepared,
    day_of: DayOf,
    /// Consecutive events mostly share their counter: runs are counted, and the map is touched
    /// once per run.
    run: Option<(DailyKey, i64)>,
    ip: String,
}

impl Encoder {
    fn new(tz: chrono_tz::Tz, events: usize) -> Encoder {
        let mut copy = Vec::with_capacity(COPY_HEADER.len() + events * 140 + 2);
        copy.extend_from_slice(COPY_HEADER);
        let p = Prepared { copy, daily: HashMap::new(), uniques: HashMap::new() };
        Encoder { p, day_of: DayOf { tz, last: None }, run: None, ip: String::new() }
    }

    fn push(&mut self, e: &ScanEvent) {
        let copy = &mut self.p.copy;
        copy.extend_from_slice(&10i16.to_be_bytes());
        copy_field(copy, &(e.at.timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
        copy_field(copy, &e.live_code_id.to_be_bytes());
        copy_field(copy, e.channel.as_bytes());
        copy_bigint(copy, e.target_id);
        copy_bigint(copy, e.group_id);
        copy_field(copy, e.outcome.as_str().as_bytes());
        copy_field(copy, e.visitor.as_bytes());
        copy_field(copy, e.referrer.as_bytes());
        copy_field(copy, e.ua_class.as_str().as_bytes());
        self.ip.clear();
        if let Some(a) = e.ip_anon {
            let _ = write!(self.ip, "{a}");
        }
        copy_field(copy, self.ip.as_bytes());

        let day = self.day_of.get(e.at);
        let target = e.target_id.unwrap_or(0);
        match &mut self.run {
            Some(((code, d, ch, t, o), n))
                if *code == e.live_code_id && *d == day && *ch == e.channel && *t == target && *o == e.outcome =>
            {
                *n += 1
            }
            _ => {
                if let Some((k, n)) = self.run.take() {
                    *self.p.daily.entry(k).or_default() += n;
                }
                self.run = Some(((e.live_code_id, day, e.channel.clone(), target, e.outcome), 1));
            }
        }
        if e.outcome != ScanOutcome::Preview && !e.visitor.is_empty() {
            self.p.uniques.entry((e.live_code_id, day, e.channel.clone())).or_default().add(e.visitor.as_bytes());
        }
    }

    /// The COPY data encoded since the last call.
    fn take_copy(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.p.copy)
    }

    /// The rest: the COPY data not yet taken, with the trailer, and the counters.
    fn finish(mut self) -> Prepared {
        if let Some((k, n)) = self.run.take() {
            *self.p.daily.entry(k).or_default() += n;
        }
        self.p.copy.extend_from_slice(&(-1i16).to_be_bytes());
        self.p
    }
}

fn prepare(events: &[ScanEvent], tz: chrono_tz::Tz) -> Prepared {
    let mut enc = Encoder::new(tz, events.len());
    for e in events {
        enc.push(e);
    }
    enc.finish()
}

/// Writes a batch in one transaction; the number of events dropped because their live code
/// was deleted.
async fn write(
    db: &PgPool,
    tz: chrono_tz::Tz,
    events: &Arc<Vec<ScanEvent>>,
    pace: Option<Duration>,
) -> sqlx::Result<usize> {
    let mut tx = db.begin().await?;
    // Analytics: a database crash may lose the last moments of events (as a Shoal crash may);
    // not waiting for the WAL flush keeps the writer cheap. A batch is fed over most of a tick
    // and longer while the database is slow: the pool's statement timeout must not drop it.
    scan_events::relax_batch(&mut tx).await?;
    // The batch's live codes, held until the commit: a code deleted before that takes only its
    // own events with it (its daily counters would fail the foreign key, and the whole batch).
    let mut codes: Vec<i64> = events.iter().map(|e| e.live_code_id).collect();
    codes.sort_unstable();
    codes.dedup();
    let existing = crate::store::live_codes::existing_locked(&mut tx, &codes).await?;
    let total = events.len();
    let kept: Arc<Vec<ScanEvent>>;
    let events = if existing.len() == codes.len() {
        events
    } else {
        kept = Arc::new(events.iter().filter(|e| existing.binary_search(&e.live_code_id).is_ok()).cloned().collect());
        &kept
    };
    let gone = total - events.len();
    if events.is_empty() {
        tx.commit().await?;
        return Ok(gone);
    }
    let mut copy = scan_events::copy_in(&mut tx).await?;
    let p = match pace {
        Some(pace) if events.len() >= PACED_MIN_EVENTS => {
            // Encoded and sent a part at a time, with pauses: neither Shoal's encoding nor
            // PostgreSQL's parsing comes as one burst. A part is a few hundred events, short
            // enough to encode on a request worker.
            let mut enc = Encoder::new(tz, 0);
            for (i, part) in events.chunks(events.len().div_ceil(PACED_PARTS)).enumerate() {
                if i > 0 {
                    tokio::time::sleep(pace / PACED_PARTS as u32).await;
                }
                for e in part.iter() {
                    enc.push(e);
                }
                copy.send(enc.take_copy()).await?;
            }
            enc.finish()
        }
        _ => {
            // All at once, encoded off the request workers.
            let all = events.clone();
            tokio::task::spawn_blocking(move || prepare(&all, tz))
                .await
                .map_err(|e| sqlx::Error::Protocol(format!("encoding scan events failed: {e}")))?
        }
    };
    copy.send(p.copy.as_slice()).await?;
    copy.finish().await?;

    let counts: Vec<DailyCount> = p
        .daily
        .into_iter()
        .map(|((live_code_id, day, channel, target_id, outcome), scans)| DailyCount {
            live_code_id,
            day,
            channel,
            target_id,
            outcome,
            scans,
        })
        .collect();
    scan_events::add_daily(&mut tx, &counts).await?;

    for ((code, day, ch), sketch) in &p.uniques {
        if scan_events::insert_uniques(&mut tx, *code, *day, ch, &sketch.to_bytes()).await? {
            continue;
        }
        let stored = scan_events::locked_uniques(&mut tx, *code, *day, ch).await?;
        let mut merged = crate::domain::hll::Sketch::from_bytes(&stored);
        merged.merge(sketch);
        scan_events::set_uniques(&mut tx, *code, *day, ch, &merged.to_bytes()).await?;
    }
    tx.commit().await?;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remembered_day_is_always_the_local_day() {
        // Every 37 minutes over four days around a daylight-saving change, in zones with and
        // without one: the remembered span never gives a different day.
        for tz in [chrono_tz::Asia::Shanghai, chrono_tz::America::New_York, chrono_tz::UTC] {
            let mut day_of = DayOf { tz, last: None };
            let mut at: DateTime<Utc> = "2026-10-31T00:00:00Z".parse().unwrap();
            for _ in 0..(4 * 24 * 60 / 37) {
                assert_eq!(day_of.get(at), local_day(at, tz), "{at} in {tz}");
                at += chrono::Duration::minutes(37);
            }
        }
    }

    #[test]
    fn a_batch_is_binary_copy_data_with_its_counters() {
        let at: DateTime<Utc> = "2026-11-23T17:30:00.123456Z".parse().unwrap();
        let e = |outcome, visitor: &str| ScanEvent {
            at,
            live_code_id: 7,
            channel: String::new(),
            target_id: Some(3),
            group_id: None,
            outcome,
            visitor: visitor.into(),
            referrer: String::new(),
            ua_class: UaClass::Mobile,
            ip_anon: Some("203.0.113.0".parse().unwrap()),
        };
        let (new, fallback) = (ScanOutcome::New, ScanOutcome::Fallback);
        let p = prepare(&[e(new, "a"), e(new, "b"), e(fallback, "a"), e(new, "c")], chrono_tz::UTC);
        assert!(p.copy.starts_with(COPY_HEADER) && p.copy.ends_with(&[0xff, 0xff]));
        // The first field of the first row: 8 bytes of microseconds since 2000-01-01.
        let first = &p.copy[COPY_HEADER.len()..];
        assert_eq!(&first[..2], &10i16.to_be_bytes());
        assert_eq!(&first[2..6], &8i32.to_be_bytes());
        let micros = i64::from_be_bytes(first[6..14].try_into().unwrap());
        assert_eq!(micros, 848_770_200_123_456, "2026-11-23T17:30:00.123456Z");
        let day = at.date_naive();
        assert_eq!(p.daily[&(7, day, String::new(), 3, new)], 3);
        assert_eq!(p.daily[&(7, day, String::new(), 3, fallback)], 1);
        assert_eq!(p.uniques[&(7, day, String::new())].estimate(), 3);
    }

    #[test]
    fn a_batch_encoded_in_parts_is_the_batch_encoded_at_once() {
        let e = |i: i64| ScanEvent {
            at: DateTime::from_timestamp(1_790_000_000 + i * 97, 0).unwrap(),
            live_code_id: 1 + i % 2,
            channel: if i % 3 == 0 { "flyer".into() } else { String::new() },
            target_id: (i % 5 != 0).then_some(i % 4),
            group_id: Some(9),
            outcome: if i % 5 == 0 { ScanOutcome::Fallback } else { ScanOutcome::New },
            visitor: format!("v{i}"),
            referrer: String::new(),
            ua_class: UaClass::Wechat,
            ip_anon: None,
        };
        let events: Vec<ScanEvent> = (0..1000).map(e).collect();
        let whole = prepare(&events, chrono_tz::Asia::Shanghai);
        let mut enc = Encoder::new(chrono_tz::Asia::Shanghai, 0);
        let mut copy = Vec::new();
        for part in events.chunks(37) {
            part.iter().for_each(|e| enc.push(e));
            copy.extend(enc.take_copy());
        }
        let rest = enc.finish();
        copy.extend(&rest.copy);
        assert_eq!(copy, whole.copy);
        assert_eq!(rest.daily, whole.daily);
        assert_eq!(rest.daily.values().sum::<i64>(), 1000);
        let estimates =
            |p: &Prepared| p.uniques.iter().map(|(k, v)| (k.clone(), v.estimate())).collect::<HashMap<_, _>>();
        assert_eq!(estimates(&rest), estimates(&whole));
    }

    #[test]
    fn days_are_local_to_the_configured_zone() {
        let at: DateTime<Utc> = "2026-11-23T17:30:00Z".parse().unwrap();
        assert_eq!(local_day(at, chrono_tz::Asia::Shanghai).to_string(), "2026-11-24");
        assert_eq!(local_day(at, chrono_tz::UTC).to_string(), "2026-11-23");
    }
}
