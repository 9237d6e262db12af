//! Exact slot accounting without a database write per scan. Each process reserves blocks of
//! slots from a target with one conditional UPDATE (`store::live_codes::reserve`, which never
//! grants past the limit) and hands them out from memory; unused slots go back at shutdown or
//! when the target's limit changes. A block covers about `scan.block_ms` of this process's
//! recent scans of the target (measured since its previous reservation; the first block is
//! small), within `scan.max_block` and the share of what is left. When half a block is left,
//! the next block is reserved in the background, so that a scan rarely waits for the database:
//! a reservation is a commit, and a commit waits for the WAL to be flushed, which takes
//! hundreds of milliseconds while a checkpoint writes. A hard crash can strand what one process
//! holds of a target, at most half a block plus one block (about `1.5 × block_ms` of its scans):
//! the target then admits fewer scans than its limit, never more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::PgPool;

/// How long a "used up" answer from the database is trusted before asking again.
const EXHAUSTED_MS: u64 = 250;
/// The first block of a target, and the smallest: a target nobody scans holds few slots.
const MIN_BLOCK: i64 = 64;

/// The slots one process holds for one target.
pub struct TargetSlots {
    remaining: AtomicI64,
    generation: AtomicI32,
    /// The limit these slots were reserved under (-1: unknown yet).
    limit: AtomicI64,
    /// Milliseconds since pool start until which the target counts as used up.
    exhausted_until: AtomicU64,
    /// Held by whoever changes this process's reservation of the target (reserving a block,
    /// giving slots back) and by a snapshot load reading the stored counter, so that the
    /// counter and `remaining` are read as a pair. Always taken before a database connection.
    refill: Arc<tokio::sync::Mutex<()>>,
    /// The size of the last block granted: half of it left starts the next reservation.
    last_block: AtomicI64,
    /// When the last reservation started (microseconds since pool start; 0: never) and how
    /// many slots had been handed out then: the rate the next block is sized by.
    mark_us: AtomicU64,
    mark_handed: AtomicI64,
    /// A background reservation is on its way.
    prefetching: AtomicBool,
    /// Slots this process has handed out of this target since it started (never decreases).
    handed: AtomicI64,
    /// Scans of this process trying this target right now (some wait for a block).
    trying: AtomicI64,
}

/// Counts a scan as no longer trying a target, however its try ended.
struct Tried<'a>(&'a AtomicI64);

impl Drop for Tried<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TargetSlots {
    fn try_take(&self) -> bool {
        let mut cur = self.remaining.load(Ordering::Acquire);
        while cur > 0 {
            match self.remaining.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.handed.fetch_add(1, Ordering::AcqRel);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// Slots this process has handed out of the target since it started.
    pub fn handed(&self) -> i64 {
        self.handed.load(Ordering::Acquire)
    }

    /// Scans of this process trying the target right now: counted as used when ordering, so
    /// that concurrent scans see each other's choices (instead of all waiting for one block).
    pub fn trying(&self) -> i64 {
        self.trying.load(Ordering::Acquire)
    }

    /// Slots reserved in the database and not handed out yet by this process.
    pub fn held(&self) -> i64 {
        self.remaining.load(Ordering::Acquire)
    }
}

pub struct SlotPool {
    targets: Mutex<HashMap<i64, Arc<TargetSlots>>>,
    started: Instant,
    max_block: i64,
    /// How many milliseconds of a target's scans a block covers.
    block_ms: u64,
    /// Set once the slots are given back at shutdown: no background reservation after that.
    closed: Arc<AtomicBool>,
}

impl SlotPool {
    pub fn new(max_block: i64, block_ms: u64) -> SlotPool {
        SlotPool {
            targets: Mutex::new(HashMap::new()),
            started: Instant::now(),
            max_block: max_block.max(1),
            block_ms: block_ms.max(1),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn now_ms(&self) -> u64 {
        ms_since(self.started)
    }

    fn policy(&self, share: i64) -> Policy {
        Policy { max_block: self.max_block, block_ms: self.block_ms, share }
    }

    /// The slots of `target_id`, created empty on first use. Snapshots keep the handle, so a
    /// scan takes a slot without looking the target up.
    pub fn entry(&self, target_id: i64) -> Arc<TargetSlots> {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(target_id)
            .or_insert_with(|| {
                Arc::new(TargetSlots {
                    remaining: AtomicI64::new(0),
                    generation: AtomicI32::new(0),
                    limit: AtomicI64::new(-1),
                    exhausted_until: AtomicU64::new(0),
                    refill: Arc::new(tokio::sync::Mutex::new(())),
                    last_block: AtomicI64::new(0),
                    mark_us: AtomicU64::new(0),
                    mark_handed: AtomicI64::new(0),
                    prefetching: AtomicBool::new(false),
                    handed: AtomicI64::new(0),
                    trying: AtomicI64::new(0),
                })
            })
            .clone()
    }

    /// Takes one slot of `target_id` (whose handle is `e`): from memory, or by reserving a new
    /// block of at most `1 / share` of what is left (see [`Mode::block_share`]). False when the
    /// target is used up.
    ///
    /// [`Mode::block_share`]: crate::domain::live_code::Mode::block_share
    pub async fn take(&self, db: &PgPool, e: &Arc<TargetSlots>, target_id: i64, share: i64) -> sqlx::Result<bool> {
        e.trying.fetch_add(1, Ordering::AcqRel);
        let _done = Tried(&e.trying);
        loop {
            if e.try_take() {
                let left = e.remaining.load(Ordering::Acquire);
                if left < e.last_block.load(Ordering::Acquire) / 2 && !e.prefetching.swap(true, Ordering::AcqRel) {
                    self.prefetch(db, e, target_id, share);
                }
                return Ok(true);
            }
            if e.exhausted_until.load(Ordering::Acquire) > self.now_ms() {
                return Ok(false);
            }
            let refill = e.refill.clone().lock_owned().await;
            if e.remaining.load(Ordering::Acquire) > 0 {
                continue;
            }
            if e.exhausted_until.load(Ordering::Acquire) > self.now_ms() {
                return Ok(false);
            }
            // The reservation runs in its own task, with the lock: if this request is cancelled
            // (the client went away) after the UPDATE committed, the granted slots still reach
            // the pool instead of being lost.
            let (db, entry, policy, started) = (db.clone(), e.clone(), self.policy(share), self.started);
            let granted = tokio::spawn(async move {
                let granted = reserve_into(&db, &entry, target_id, policy, started).await;
                drop(refill);
                granted
            })
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("slot reservation task failed: {e}")))??;
            if granted == 0 {
                return Ok(false);
            }
        }
    }

    /// Reserves the next block in the background while slots are still left.
    fn prefetch(&self, db: &PgPool, e: &Arc<TargetSlots>, target_id: i64, share: i64) {
        let (db, entry, policy, started) = (db.clone(), e.clone(), self.policy(share), self.started);
        let closed = self.closed.clone();
        tokio::spawn(async move {
            let refill = entry.refill.lock().await;
            let now = ms_since(started);
            // A scan may have refilled it meanwhile, or found the target used up; and after
            // shutdown gave the slots back, nothing more is reserved.
            let low = entry.remaining.load(Ordering::Acquire) < entry.last_block.load(Ordering::Acquire) / 2;
            if low && entry.exhausted_until.load(Ordering::Acquire) <= now && !closed.load(Ordering::Acquire) {
                if let Err(err) = reserve_into(&db, &entry, target_id, policy, started).await {
                    tracing::warn!(target_id, error = %err, "could not reserve the next block of slots");
                }
            }
            drop(refill);
            entry.prefetching.store(false, Ordering::Release);
        });
    }

    /// Runs `read` while no reservation or give-back of these targets is under way, so that
    /// what it reads of the stored counters matches `held` of each. Locks in id order, so two
    /// loads never wait for each other crosswise.
    pub async fn settled<T>(&self, entries: &[(i64, Arc<TargetSlots>)], read: impl AsyncFnOnce() -> T) -> T {
        let mut ordered: Vec<&(i64, Arc<TargetSlots>)> = entries.iter().collect();
        ordered.sort_by_key(|(id, _)| *id);
        let mut guards = Vec::with_capacity(ordered.len());
        for (_, e) in ordered {
            guards.push(e.refill.lock().await);
        }
        read().await
    }

    /// Slots held in memory for a target (for `resolve`, which must not take any).
    pub fn held(&self, target_id: i64) -> i64 {
        self.targets
            .lock()
            .map(|m| m.get(&target_id).map(|e| e.remaining.load(Ordering::Acquire)).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Called with fresh target rows: when a limit was changed or a counter reset, give held
    /// slots back (or drop them, after a reset) so the new figures are honoured.
    pub async fn reconcile(&self, db: &PgPool, target_id: i64, limit: i64, generation: i32) {
        let e = match self.targets.lock() {
            Ok(m) => m.get(&target_id).cloned(),
            Err(_) => None,
        };
        let Some(e) = e else { return };
        let _refill = e.refill.lock().await;
        let old_limit = e.limit.swap(limit, Ordering::AcqRel);
        let old_gen = e.generation.load(Ordering::Acquire);
        if old_gen != generation {
            // Reset: what we hold belonged to the old count; the new count starts from zero.
            e.remaining.store(0, Ordering::Release);
            e.generation.store(generation, Ordering::Release);
            e.exhausted_until.store(0, Ordering::Release);
        } else if old_limit >= 0 && old_limit != limit {
            e.exhausted_until.store(0, Ordering::Release);
            let n = e.remaining.swap(0, Ordering::AcqRel);
            if n > 0 {
                give_back(db, target_id, n, generation).await;
            }
        }
    }

    /// Gives every held slot back; called after the server stopped taking requests.
    pub async fn release_all(&self, db: &PgPool) {
        let entries: Vec<(i64, Arc<TargetSlots>)> = match self.targets.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        self.closed.store(true, Ordering::Release);
        for (id, e) in entries {
            // Waits for a background reservation still on its way.
            let _refill = e.refill.lock().await;
            let n = e.remaining.swap(0, Ordering::AcqRel);
            if n > 0 {
                give_back(db, id, n, e.generation.load(Ordering::Acquire)).await;
            }
        }
    }
}

/// The pool's clock: milliseconds since it started.
fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// How big a block to ask for.
#[derive(Clone, Copy)]
struct Policy {
    max_block: i64,
    block_ms: u64,
    /// The block is at most `1 / share` of what is left (`Mode::block_share`).
    share: i64,
}

impl Policy {
    /// The block for a target that handed out `handed` slots in the `since_us` microseconds
    /// since its previous reservation started (None: no reservation yet): that rate over
    /// `block_ms`, within [`MIN_BLOCK`] and `max_block`.
    fn block(self, since: Option<(u64, i64)>) -> i64 {
        let want = match since {
            None => MIN_BLOCK,
            Some((since_us, handed)) => {
                (handed.max(0) as u128 * self.block_ms as u128 * 1000 / since_us.max(1) as u128).min(i64::MAX as u128)
                    as i64
            }
        };
        want.clamp(MIN_BLOCK.min(self.max_block), self.max_block)
    }
}

/// One conditional UPDATE for a block of `target_id`'s slots; what it grants goes to `entry`.
/// Called with the target's refill lock held.
async fn reserve_into(
    db: &PgPool,
    entry: &TargetSlots,
    target_id: i64,
    policy: Policy,
    started: Instant,
) -> sqlx::Result<i64> {
    let now_us = (started.elapsed().as_micros() as u64).max(1);
    let (mark, handed) = (entry.mark_us.load(Ordering::Acquire), entry.handed());
    let since = (mark > 0).then(|| (now_us - mark, handed - entry.mark_handed.load(Ordering::Acquire)));
    let block = policy.block(since);
    let mut conn = db.acquire().await?;
    let (granted, generation) = crate::store::live_codes::reserve(&mut conn, target_id, block, policy.share).await?;
    entry.mark_us.store(now_us, Ordering::Release);
    entry.mark_handed.store(handed, Ordering::Release);
    if granted == 0 {
        entry.exhausted_until.store(now_us / 1000 + EXHAUSTED_MS, Ordering::Release);
    } else {
        entry.generation.store(generation, Ordering::Release);
        entry.last_block.store(granted, Ordering::Release);
        entry.remaining.fetch_add(granted, Ordering::AcqRel);
        metrics::counter!("scan_slot_reservations_total").increment(1);
    }
    Ok(granted)
}

async fn give_back(db: &PgPool, target_id: i64, n: i64, generation: i32) {
    let result = async {
        let mut conn = db.acquire().await?;
        crate::store::live_codes::give_back(&mut conn, target_id, n, generation).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(target_id, slots = n, error = %e, "could not give reserved slots back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_recent_rate_over_block_ms_within_the_bounds() {
        let p = Policy { max_block: 100_000, block_ms: 500, share: 8 };
        assert_eq!(p.block(None), MIN_BLOCK, "the first block is small");
        // 1 000 scans in a second: half a second's worth.
        assert_eq!(p.block(Some((1_000_000, 1000))), 500);
        // 64 scans in half a millisecond: 128 000/s, capped.
        assert_eq!(p.block(Some((500, 64))), 64_000);
        assert_eq!(p.block(Some((1, 1_000_000))), 100_000);
        // A quiet target (or none handed out since, or a clock that did not move) keeps the minimum.
        assert_eq!(p.block(Some((3_600_000_000, 2))), MIN_BLOCK);
        assert_eq!(p.block(Some((0, 0))), MIN_BLOCK);
        // A configured maximum below the minimum wins.
        assert_eq!(Policy { max_block: 10, ..p }.block(None), 10);
    }
}
