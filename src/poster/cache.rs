//! The in-memory caches of posters: a least-recently-used map bounded by the bytes it holds
//! (finished posters, static layers), and the short-lived cache of public poster links.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A map that forgets its least recently used entries when the sizes of its values add up to
/// more than its budget. A value larger than the whole budget is not kept.
pub struct Lru<K, V> {
    budget: usize,
    used: usize,
    tick: u64,
    entries: HashMap<K, (V, usize, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Clone + Eq + Hash, V: Clone> Lru<K, V> {
    pub fn new(budget: usize) -> Self {
        Lru { budget, used: 0, tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, _, last) = self.entries.get_mut(key)?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, key.clone());
        Some(value.clone())
    }

    pub fn put(&mut self, key: K, value: V, size: usize) {
        self.remove(&key);
        if size > self.budget {
            return;
        }
        while self.used + size > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((_, s, _)) = self.entries.remove(&oldest) {
                self.used -= s;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, size, self.tick));
        self.used += size;
    }

    pub fn remove(&mut self, key: &K) {
        if let Some((_, size, tick)) = self.entries.remove(key) {
            self.order.remove(&tick);
            self.used -= size;
        }
    }

    /// Keeps only the entries whose key passes `keep`.
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        let gone: Vec<K> = self.entries.keys().filter(|k| !keep(k)).cloned().collect();
        for k in gone {
            self.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.used
    }

    pub fn budget(&self) -> usize {
        self.budget
    }
}

/// Most public links remembered at once; a full cache starts again.
const MAX_LINKS: usize = 50_000;

type Remembered = (Instant, Arc<crate::store::posters::PublicLink>);

/// Public poster links by the SHA-256 of their token, each remembered for a short while, so a
/// poster viewed again costs no query. A revoked link is forgotten at once in this process.
pub struct LinkCache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, Remembered>>,
}

impl LinkCache {
    pub fn new(ttl: Duration) -> LinkCache {
        LinkCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, hash: &[u8]) -> Option<Arc<crate::store::posters::PublicLink>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, l)| l.clone())
    }

    pub fn put(&self, hash: Vec<u8>, link: Arc<crate::store::posters::PublicLink>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_LINKS {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if map.len() >= MAX_LINKS {
                map.clear();
            }
        }
        map.insert(hash, (Instant::now(), link));
    }

    /// Forgets a link (revoked) or every link of a template (changed or deleted).
    pub fn forget(&self, link_id: Option<i64>, template_id: Option<i64>) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, l)| Some(l.id) != link_id && Some(l.template_id) != template_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entries_go_first_when_over_budget() {
        let mut lru = Lru::new(10);
        lru.put("a", 1, 4);
        lru.put("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.put("c", 3, 4); // over budget: "b" was used least recently
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        assert_eq!(lru.bytes(), 8);
        lru.put("huge", 4, 11);
        assert_eq!(lru.get(&"huge"), None);
        lru.put("a", 5, 2);
        assert_eq!((lru.get(&"a"), lru.bytes(), lru.len()), (Some(5), 6, 2));
        lru.retain(|k| *k != "c");
        assert_eq!((lru.len(), lru.bytes()), (1, 2));
    }
}
