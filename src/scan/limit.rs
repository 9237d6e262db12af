//! A per-process abuse limit on new slots: at most `n` new scans per client address (IPv6: per
//! /64) per fixed window, so that one phone or script cannot drain a live code. Counted in
//! memory, in shards with a coarse window: one short lock per new scan, no database. With
//! several Shoal processes each counts its own share, so an address may get up to `n` per
//! process; the limit is against abuse, not an exact quota (the slot counts stay exact).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Addresses remembered per shard and window; past that, new addresses are let through
/// uncounted rather than refused (memory stays bounded, real members are never turned away
/// because an attacker rotates addresses).
const MAX_PER_SHARD: usize = 16_384;

struct Shard {
    window: u64,
    counts: HashMap<u128, u32>,
}

pub struct AddressLimiter {
    per_window: u32,
    window_ms: u64,
    started: Instant,
    shards: Vec<Mutex<Shard>>,
}

impl AddressLimiter {
    /// `per_window` new scans per address per `window`; 0 turns the limit off.
    pub fn new(per_window: u32, window: Duration) -> AddressLimiter {
        AddressLimiter {
            per_window,
            window_ms: (window.as_millis() as u64).max(1000),
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { window: 0, counts: HashMap::new() })).collect(),
        }
    }

    /// Counts a new scan from `ip`. `Err(seconds)`: the address has used up this window, which
    /// ends in that many seconds.
    pub fn allow(&self, ip: IpAddr) -> Result<(), u64> {
        if self.per_window == 0 {
            return Ok(());
        }
        let key = key(ip);
        let now = self.started.elapsed().as_millis() as u64;
        let window = now / self.window_ms;
        let mix = ((key as u64) ^ ((key >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let shard = &self.shards[(mix >> 60) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        if s.window != window {
            s.window = window;
            s.counts.clear();
        }
        match s.counts.get_mut(&key) {
            Some(n) if *n >= self.per_window => Err(((window + 1) * self.window_ms - now).div_ceil(1000)),
            Some(n) => {
                *n += 1;
                Ok(())
            }
            None => {
                if s.counts.len() < MAX_PER_SHARD {
                    s.counts.insert(key, 1);
                }
                Ok(())
            }
        }
    }
}

/// An IPv4 address (also IPv4-mapped) or an IPv6 /64, as one number.
fn key(ip: IpAddr) -> u128 {
    match crate::web::serve::address_key(ip) {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_per_window_and_others_are_not_affected() {
        let l = AddressLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allow(a).is_ok());
        }
        let retry = l.allow(a).unwrap_err();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(l.allow("203.0.113.6".parse().unwrap()).is_ok());
        // The same /64 is one client.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for i in 0..3 {
            assert!(l.allow(v6(&format!("2001:db8:0:1::{i}"))).is_ok());
        }
        assert!(l.allow(v6("2001:db8:0:1::ffff")).is_err());
        assert!(l.allow(v6("2001:db8:0:2::1")).is_ok());
        let off = AddressLimiter::new(0, Duration::from_secs(60));
        assert!((0..100).all(|_| off.allow(a).is_ok()));
    }
}
