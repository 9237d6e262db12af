//! The scan runtime shared by every request of one process: cached live-code snapshots, the
//! slot pool, the event writer and the cookie key. Nothing here is needed for correctness
//! across processes: slots are settled in Postgres, snapshots expire within a second.

pub mod events;
pub mod limit;
pub mod slots;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

use crate::domain::live_code::{try_order, valid_slug, Mode, TargetState};
use crate::store::live_codes::{self, ChannelRow, LiveCodeRow, TargetRow};

/// A live code as the scan path sees it, loaded at most once per `cache_ttl` per process.
pub struct Snapshot {
    pub code: LiveCodeRow,
    pub targets: Vec<TargetRow>,
    pub channels: Vec<ChannelRow>,
    /// `targets` as the routing rules see them, computed once per load.
    pub states: Vec<TargetState>,
    /// This process's slots of each target, in the order of `targets`.
    pub slots: Vec<Arc<slots::TargetSlots>>,
    /// Per target: the slots used by others as of the load, less what this process had handed
    /// out by then. Adding this process's hand-outs gives the target's used slots now; see
    /// [`Snapshot::used_now`].
    base: Vec<i64>,
}

impl Snapshot {
    pub fn mode(&self) -> Mode {
        self.code.mode
    }
    pub fn target(&self, id: i64) -> Option<&TargetRow> {
        self.targets.iter().find(|t| t.id == id)
    }
    pub fn target_index(&self, id: i64) -> Option<usize> {
        self.targets.iter().position(|t| t.id == id)
    }
    pub fn channel(&self, key: &str) -> Option<&ChannelRow> {
        self.channels.iter().find(|c| c.key == key)
    }

    /// The best count of target `i`'s used slots now: the stored counter as of the load, with
    /// the slots this process held then (reserved, not handed out) taken off, and this
    /// process's hand-outs since, and the scans trying it now, added. Within a process this is
    /// exact; slots other processes hold count as used (at most a block each).
    pub fn used_now(&self, i: usize) -> i64 {
        self.base[i] + self.slots[i].handed() + self.slots[i].trying()
    }
}

/// Live codes the cache knows about, and slugs that have none. Misses are kept apart, bounded
/// (the oldest go first), so that a flood of made-up slugs never pushes real codes out.
#[derive(Default)]
struct Cache {
    codes: HashMap<String, Cached>,
    misses: HashMap<String, Instant>,
    miss_order: VecDeque<String>,
}

/// Made-up slugs remembered as misses (about 100 bytes each).
const MAX_MISSES: usize = 4096;

struct Cached {
    at: Instant,
    snapshot: Option<Arc<Snapshot>>,
}

/// How long past its expiry a snapshot may still be served while one request reloads it.
const STALE_WHILE_RELOADING: Duration = Duration::from_secs(5);

/// What the cache knows of a slug.
enum Lookup {
    /// A snapshot, or `None` for a known miss.
    Fresh(Option<Arc<Snapshot>>),
    /// Expired or unknown; an expired snapshot that may be served while another request reloads.
    Expired(Option<Arc<Snapshot>>),
}

/// Where a scan went.
pub enum Outcome {
    /// `snapshot.targets[index]` took the scan (`sticky`: a returning visitor, no slot used).
    Target {
        index: usize,
        sticky: bool,
    },
    Fallback,
}

pub struct ScanRuntime {
    pub slots: slots::SlotPool,
    /// Poked when a scan falls back, so the alert check runs at once.
    pub fallback_seen: Arc<tokio::sync::Notify>,
    pub events: events::EventSink,
    /// New slots per client address and window (`scan.new_scans_per_address`).
    pub limiter: limit::AddressLimiter,
    cache: RwLock<Cache>,
    /// One lock per slug being loaded: a burst on a cold or expired entry sends one query to
    /// the database, not one per scan. Entries live only while a load runs.
    loading: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ttl: Duration,
    /// The cookie-signing HMAC with its key already absorbed (cloned per use).
    key: tokio::sync::OnceCell<Hmac<Sha256>>,
}

impl ScanRuntime {
    pub fn start(db: PgPool, config: &crate::config::ScanConfig) -> ScanRuntime {
        let tz = config.stats_timezone.tz();
        ScanRuntime {
            slots: slots::SlotPool::new(config.max_block, config.block_ms),
            fallback_seen: Arc::new(tokio::sync::Notify::new()),
            events: events::EventSink::start(db, tz, Duration::from_millis(config.events_flush_ms.clamp(10, 1000))),
            limiter: limit::AddressLimiter::new(
                config.new_scans_per_address,
                Duration::from_secs(config.address_window_secs),
            ),
            cache: RwLock::new(Cache::default()),
            loading: std::sync::Mutex::new(HashMap::new()),
            ttl: Duration::from_millis(config.cache_ttl_ms),
            key: tokio::sync::OnceCell::new(),
        }
    }

    /// The live code with this slug, from a cache refreshed at most every `ttl`. A slug no live
    /// code could have (`valid_slug`) is answered at once, before the cache or the database.
    pub async fn snapshot(&self, db: &PgPool, slug: &str) -> sqlx::Result<Option<Arc<Snapshot>>> {
        if !valid_slug(slug) {
            return Ok(None);
        }
        let k = if slug.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(slug.to_ascii_lowercase())
        } else {
            Cow::Borrowed(slug)
        };
        let stale = match self.cached(&k) {
            Lookup::Fresh(snapshot) => return Ok(snapshot),
            Lookup::Expired(stale) => stale,
        };
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.entry(k.to_string()).or_default().clone()
        };
        let _loading = match (stale, lock.clone().try_lock_owned()) {
            (_, Ok(guard)) => guard,
            // Another request is reloading it: the old snapshot serves meanwhile.
            (Some(stale), Err(_)) => return Ok(Some(stale)),
            (None, Err(_)) => lock.clone().lock_owned().await,
        };
        // A load that ended just now (while this request waited, or just before it locked).
        if let Lookup::Fresh(snapshot) = self.cached(&k) {
            return Ok(snapshot);
        }
        let loaded = self.load(db, slug).await;
        metrics::counter!("scan_snapshot_loads_total").increment(1);
        if let (Ok(snapshot), Ok(mut m)) = (&loaded, self.cache.write()) {
            let k = k.to_string();
            if snapshot.is_some() {
                // Bounded by the live codes in the database.
                m.misses.remove(&k);
                m.codes.insert(k, Cached { at: Instant::now(), snapshot: snapshot.clone() });
            } else {
                m.codes.remove(&k);
                if m.misses.insert(k.clone(), Instant::now()).is_none() {
                    m.miss_order.push_back(k);
                    while m.miss_order.len() > MAX_MISSES {
                        if let Some(old) = m.miss_order.pop_front() {
                            m.misses.remove(&old);
                        }
                    }
                }
            }
        }
        // After the cache has the answer: a request arriving now finds it there.
        if let Ok(mut loading) = self.loading.lock() {
            if loading.get(k.as_ref()).is_some_and(|l| Arc::ptr_eq(l, &lock)) {
                loading.remove(k.as_ref());
            }
        }
        loaded
    }

    /// The cached answer for `k`: fresh, or expired (with the snapshot while it may still
    /// serve during a reload).
    fn cached(&self, k: &str) -> Lookup {
        let Ok(m) = self.cache.read() else { return Lookup::Expired(None) };
        match m.codes.get(k) {
            Some(c) if c.at.elapsed() < self.ttl => Lookup::Fresh(c.snapshot.clone()),
            Some(c) => {
                Lookup::Expired(c.snapshot.clone().filter(|_| c.at.elapsed() < self.ttl + STALE_WHILE_RELOADING))
            }
            None => match m.misses.get(k) {
                Some(at) if at.elapsed() < self.ttl => Lookup::Fresh(None),
                _ => Lookup::Expired(None),
            },
        }
    }

    /// Forgets a cached snapshot (after an operator changed the live code in this process).
    pub fn invalidate(&self, slug: &str) {
        if let Ok(mut m) = self.cache.write() {
            let k = slug.to_ascii_lowercase();
            m.codes.remove(&k);
            // Left in `miss_order`: it goes when its turn comes.
            m.misses.remove(&k);
        }
    }

    /// The live code read now, bypassing the cache (for `resolve`, which must see current counters).
    pub async fn fresh_snapshot(&self, db: &PgPool, slug: &str) -> sqlx::Result<Option<Arc<Snapshot>>> {
        self.load(db, slug).await
    }

    async fn load(&self, db: &PgPool, slug: &str) -> sqlx::Result<Option<Arc<Snapshot>>> {
        if !valid_slug(slug) {
            return Ok(None);
        }
        let mut conn = db.acquire().await?;
        let Some(code) = live_codes::by_slug(&mut conn, slug).await? else { return Ok(None) };
        let targets = live_codes::targets(&mut conn, code.id).await?;
        let channels = live_codes::channels(&mut conn, code.id).await?;
        // Slot locks come before connections (a reservation holds its lock while it waits for one).
        drop(conn);
        let states = targets.iter().map(TargetRow::state).collect();
        let slots: Vec<_> = targets.iter().map(|t| self.slots.entry(t.id)).collect();
        for t in &targets {
            self.slots.reconcile(db, t.id, t.scan_limit as i64, t.generation).await;
        }
        let base = self.base(db, code.id, &targets, &slots).await?;
        Ok(Some(Arc::new(Snapshot { code, targets, channels, states, slots, base })))
    }

    /// [`Snapshot::base`]: the stored counters, read while this process changes none of them,
    /// less what this process held and had handed out then.
    async fn base(
        &self,
        db: &PgPool,
        code_id: i64,
        targets: &[TargetRow],
        slots: &[Arc<slots::TargetSlots>],
    ) -> sqlx::Result<Vec<i64>> {
        let entries: Vec<_> = targets.iter().map(|t| t.id).zip(slots.iter().cloned()).collect();
        self.slots
            .settled(&entries, async || {
                let mut conn = db.acquire().await?;
                let used: HashMap<i64, i32> = live_codes::used_counts(&mut conn, code_id).await?.into_iter().collect();
                Ok(targets
                    .iter()
                    .zip(slots)
                    .map(|(t, s)| used.get(&t.id).copied().unwrap_or(t.used) as i64 - s.held() - s.handed())
                    .collect())
            })
            .await
    }

    /// Routes a new scan: tries the open targets in the mode's order and takes a slot from the
    /// first that has one.
    pub async fn route(&self, db: &PgPool, snap: &Snapshot, now: DateTime<Utc>) -> sqlx::Result<Outcome> {
        let states = &snap.states;
        for i in try_order(snap.mode(), states, |i| snap.used_now(i), now) {
            if self.slots.take(db, &snap.slots[i], states[i].id, snap.mode().block_share()).await? {
                return Ok(Outcome::Target { index: i, sticky: false });
            }
        }
        Ok(Outcome::Fallback)
    }

    /// Which target the next scan would get, taking nothing.
    pub fn peek(&self, snap: &Snapshot, now: DateTime<Utc>) -> Option<TargetRow> {
        let states = &snap.states;
        try_order(snap.mode(), states, |i| snap.used_now(i), now)
            .into_iter()
            .find(|&i| states[i].used < states[i].scan_limit || self.slots.held(states[i].id) > 0)
            .map(|i| snap.targets[i].clone())
    }

    async fn key(&self, db: &PgPool) -> sqlx::Result<&Hmac<Sha256>> {
        self.key
            .get_or_try_init(|| async {
                let mut conn = db.acquire().await?;
                let fresh = crate::auth::random_token(32);
                let key = crate::store::secrets::get_or_create(&mut conn, "scan_cookie_key", fresh.as_bytes()).await?;
                Ok(<Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length"))
            })
            .await
    }

    fn sign(key: &Hmac<Sha256>, msg: &str) -> String {
        let mut mac = key.clone();
        mac.update(msg.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The value of the sticky cookie remembering that `visitor` went to `target` at `at`.
    pub async fn sticky_value(
        &self,
        db: &PgPool,
        code_id: i64,
        visitor: &str,
        target: i64,
        at: i64,
    ) -> sqlx::Result<String> {
        let key = self.key(db).await?;
        Ok(format!("{target}.{at}.{}", Self::sign(key, &format!("{code_id}.{visitor}.{target}.{at}"))))
    }

    /// The target a valid, unexpired sticky cookie names.
    pub async fn read_sticky(
        &self,
        db: &PgPool,
        code_id: i64,
        visitor: &str,
        value: &str,
        window_days: i32,
        now: i64,
    ) -> sqlx::Result<Option<i64>> {
        let mut parts = value.splitn(3, '.');
        let (Some(t), Some(at), Some(sig)) = (parts.next(), parts.next(), parts.next()) else { return Ok(None) };
        let (Ok(target), Ok(at)) = (t.parse::<i64>(), at.parse::<i64>()) else { return Ok(None) };
        if now - at > window_days as i64 * 86_400 || at > now + 300 {
            return Ok(None);
        }
        let key = self.key(db).await?;
        let expected = Self::sign(key, &format!("{code_id}.{visitor}.{target}.{at}"));
        Ok(crate::auth::secret_eq(expected.as_bytes(), sig.as_bytes()).then_some(target))
    }

    /// After the server stopped: write queued events and give reserved slots back.
    pub async fn shutdown(&self, db: &PgPool) {
        self.slots.release_all(db).await;
        self.events.flush_and_stop().await;
    }
}
