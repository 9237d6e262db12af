//! Plain group messages, written behind the webhook's answer. A message that is no check-in,
//! no command, matches no keyword reply and breaks no rule gets no answer either, so nothing it
//! writes (its delivery row, the member and their last activity, the open membership, the day's
//! message count) is needed before the answer. Handlers queue it here and one writer task per
//! process writes what is queued every `bridges.chatter_flush_ms`, a batch at a time, in one
//! statement (`store::bridges::write_chatter`). Dedupe holds as on the direct path: a batch
//! writes a delivery's row only once, whichever process saw it (a retry in the same or another
//! process counts nothing twice). A full queue sends the handler down the direct path (nothing
//! is dropped); on shutdown the writer drains the queue before it stops; a hard crash loses the
//! counts of at most one interval's messages, never a check-in or anything with an answer.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::bridges::Chatter;

const CAPACITY: usize = 50_000;
const BATCH: usize = 5_000;

/// The queue of plain messages and its writer.
pub struct ChatterSink {
    tx: Option<mpsc::Sender<Chatter>>,
    /// Asks the writer to write what is queued now, answering when it is written.
    flush: Option<mpsc::Sender<oneshot::Sender<()>>>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ChatterSink {
    /// Starts the writer, writing every `every`; with a zero interval nothing is queued (every
    /// message is written as it comes).
    pub fn start(db: PgPool, every: Duration) -> ChatterSink {
        let (stop, stop_rx) = watch::channel(false);
        if every.is_zero() {
            return ChatterSink { tx: None, flush: None, stop, writer: Mutex::new(None) };
        }
        let (tx, rx) = mpsc::channel(CAPACITY);
        let (flush, flush_rx) = mpsc::channel(16);
        let writer = tokio::spawn(write_loop(db, every, rx, flush_rx, stop_rx));
        ChatterSink { tx: Some(tx), flush: Some(flush), stop, writer: Mutex::new(Some(writer)) }
    }

    /// Queues a message; never waits. False when it was not queued (batching off, the queue
    /// full, or the writer stopped): the caller writes it at once.
    pub fn record(&self, c: Chatter) -> bool {
        let Some(tx) = &self.tx else { return false };
        let queued = tx.try_send(c).is_ok();
        if !queued {
            metrics::counter!("chatter_direct_total").increment(1);
        }
        queued
    }

    /// Writes what is queued now and returns when it is written.
    pub async fn flush(&self) {
        let Some(flush) = &self.flush else { return };
        let (done, written) = oneshot::channel();
        if flush.send(done).await.is_ok() {
            let _ = written.await;
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
    every: Duration,
    mut rx: mpsc::Receiver<Chatter>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf: Vec<Chatter> = Vec::with_capacity(BATCH);
    let mut asked: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            Some(done) = flush.recv() => {
                asked.push(done);
                false
            }
            _ = stop.changed() => true,
        };
        if stopping {
            // No request is running any more: take the rest, and refuse what might still come.
            rx.close();
        }
        while !rx.is_empty() {
            rx.recv_many(&mut buf, BATCH).await;
            write_with_retry(&db, std::mem::replace(&mut buf, Vec::with_capacity(BATCH))).await;
        }
        for done in asked.drain(..) {
            let _ = done.send(());
        }
        if stopping {
            return;
        }
    }
}

async fn write_with_retry(db: &PgPool, batch: Vec<Chatter>) {
    let n = batch.len();
    for attempt in 1..=5u32 {
        let written = async {
            let mut conn = db.acquire().await?;
            crate::store::bridges::write_chatter(&mut conn, &batch).await
        }
        .await;
        match written {
            Ok(fresh) => {
                metrics::counter!("chatter_written_total").increment(fresh.max(0) as u64);
                return;
            }
            Err(e) if !crate::scan::events::transient(&e) => {
                tracing::error!(messages = n, error = %e, "plain messages were refused by the database and are lost");
                metrics::counter!("chatter_lost_total").increment(n as u64);
                return;
            }
            Err(e) => {
                tracing::warn!(attempt, messages = n, error = %e, "writing plain messages failed");
                tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
            }
        }
    }
    tracing::error!(messages = n, "plain messages could not be written and are lost");
    metrics::counter!("chatter_lost_total").increment(n as u64);
}
