//! Members' pictures for posters, fetched through the platform where it has them — QQ's public
//! avatar by QQ number (`posters.qq_avatar_url`), Telegram's profile photo through the bot
//! (`getUserProfilePhotos` → `getFile`) — under the outbound policy (no private addresses),
//! within `posters.avatar_timeout_ms`, and kept per process for an hour (a miss for five
//! minutes). A slow or failed picture never holds a poster up: it is drawn with the member's
//! initial instead (`poster::render`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::Platform;
use crate::AppState;

/// The largest picture taken; a bigger answer is dropped.
const MAX_BYTES: usize = 2 * 1024 * 1024;
const KEEP: Duration = Duration::from_secs(3600);
const KEEP_MISS: Duration = Duration::from_secs(300);
const MAX_KEPT: usize = 2_000;

type Key = (Platform, String);
/// When a picture (or its absence) was learnt.
type Kept = (Instant, Option<Vec<u8>>);

/// Pictures fetched by this process.
#[derive(Default)]
pub struct Avatars(Mutex<HashMap<Key, Kept>>);

impl Avatars {
    fn cached(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (at, v) = m.get(key)?;
        let keep = if v.is_some() { KEEP } else { KEEP_MISS };
        (at.elapsed() < keep).then(|| v.clone())
    }

    fn keep(&self, key: Key, v: Option<Vec<u8>>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_KEPT {
            m.clear();
        }
        m.insert(key, (Instant::now(), v));
    }
}

/// The picture of `user_id` on `platform` (through `bridge_id`'s bot for Telegram), or None
/// when there is none, it is not an image, or it did not come in time.
pub async fn avatar(state: &AppState, platform: Platform, user_id: &str, bridge_id: Option<i64>) -> Option<Vec<u8>> {
    let key = (platform, user_id.to_string());
    if let Some(v) = state.avatars.cached(&key) {
        return v;
    }
    let limit = Duration::from_millis(state.config.posters.avatar_timeout_ms);
    let got = match tokio::time::timeout(limit, fetch(state, platform, user_id, bridge_id)).await {
        Ok(v) => v.filter(|b| image::guess_format(b).is_ok()),
        Err(_) => {
            tracing::debug!(?platform, "avatar too slow; the poster shows the initial");
            None
        }
    };
    state.avatars.keep(key, got.clone());
    got
}

async fn fetch(state: &AppState, platform: Platform, user_id: &str, bridge_id: Option<i64>) -> Option<Vec<u8>> {
    match platform {
        Platform::Qq if !user_id.is_empty() && user_id.len() <= 20 && user_id.bytes().all(|b| b.is_ascii_digit()) => {
            download(state, &state.config.posters.qq_avatar_url.replace("{id}", user_id)).await
        }
        Platform::Telegram => telegram(state, user_id, bridge_id?).await,
        _ => None,
    }
}

/// A GET through the outbound policy, at most [`MAX_BYTES`].
async fn download(state: &AppState, url: &str) -> Option<Vec<u8>> {
    let policy = crate::outbound::Policy::new(&state.config.outbound);
    policy.check(url).ok()?;
    let mut r = state.http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.ok()? {
        if out.len() + chunk.len() > MAX_BYTES {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

async fn telegram(state: &AppState, user_id: &str, bridge_id: i64) -> Option<Vec<u8>> {
    if user_id.parse::<i64>().is_err() {
        return None;
    }
    let b = state.bots.get(&state.db, bridge_id).await.ok()??;
    let token = b.bridge.access_token.as_ref()?.expose().to_string();
    let base = state.bots.telegram_base(&b.bridge).to_string();
    let json = |url: String| async move {
        let v: serde_json::Value = serde_json::from_slice(&download(state, &url).await?).ok()?;
        v.get("ok").and_then(|o| o.as_bool()).filter(|ok| *ok)?;
        v.get("result").cloned()
    };
    let photos = json(format!("{base}/bot{token}/getUserProfilePhotos?user_id={user_id}&limit=1")).await?;
    // The sizes of the latest photo, smallest first: the largest up to 640 px is enough.
    let sizes = photos.get("photos")?.get(0)?.as_array()?.clone();
    let size = sizes
        .iter()
        .rfind(|s| s.get("width").and_then(|w| w.as_i64()).is_some_and(|w| w <= 640))
        .or_else(|| sizes.first())?;
    let file_id = size.get("file_id")?.as_str()?;
    let file = json(format!("{base}/bot{token}/getFile?file_id={file_id}")).await?;
    let path = file.get("file_path")?.as_str()?;
    download(state, &format!("{base}/file/bot{token}/{path}")).await
}
