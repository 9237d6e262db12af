//! Personal posters (海报), drawn on the server: a template (canvas, background image, positioned
//! elements; `template`) and one member's data (`PosterData`) give a JPEG or PNG (`render`).
//!
//! Costs are kept where they belong: fonts are loaded once per process on first use (`fonts`);
//! the part of a template that is the same for everyone (background, rectangles, fixed text) is
//! drawn once per template version and kept (`Posters::static_layer`) with its JPEG cut in
//! restart intervals (`jpeg::Rows`), so a member's JPEG re-encodes only the cells its elements
//! touch and copies the others (`jpeg`); finished posters are
//! kept per (template version, data) in a bounded LRU (`Posters::cached`), so a poster viewed
//! again costs a lookup. Public links (`/p/{token}`) are resolved through a short-lived cache.

pub mod background;
pub mod bench;
pub mod cache;
pub mod fonts;
pub mod jpeg;
pub mod render;
pub mod template;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiny_skia::Pixmap;

pub use fonts::{FontError, Fonts};
pub use render::{Format, PosterData, RenderError};
pub use template::{Layout, TemplateSpec};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PostersConfig {
    /// Font files to draw with (TTC, TTF or OTF); empty: Noto Sans CJK and Noto Color Emoji at
    /// their usual places.
    pub font_paths: Vec<PathBuf>,
    /// The font family text is set in (its face in a collection is chosen by this name).
    pub font_family: String,
    /// Megabytes of finished posters kept in memory.
    pub cache_mb: usize,
    /// Templates whose static layer is kept (each costs width × height × 4 bytes, plus its
    /// JPEG: the budget allows a quarter more per layer).
    pub static_layers: usize,
    /// Posters drawn at once (0: one per CPU core); more wait.
    pub renders: usize,
    /// Milliseconds a public poster link is remembered before it is looked up again (revoking
    /// one takes this long to reach other processes).
    pub link_cache_ms: u64,
    /// Milliseconds a member's picture may take before the poster uses their initial.
    pub avatar_timeout_ms: u64,
    /// QQ's public avatar address, `{id}` the QQ number.
    pub qq_avatar_url: String,
}

impl Default for PostersConfig {
    fn default() -> Self {
        PostersConfig {
            font_paths: Vec::new(),
            font_family: fonts::DEFAULT_FAMILY.into(),
            cache_mb: 64,
            static_layers: 4,
            renders: 0,
            link_cache_ms: 1000,
            avatar_timeout_ms: 1500,
            qq_avatar_url: "https://q1.qlogo.cn/g?b=qq&nk={id}&s=640".into(),
        }
    }
}

/// A finished poster.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub bytes: Bytes,
    pub format: Format,
}

/// Which poster: a template version and a digest of everything drawn from the data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PosterKey {
    pub template_id: i64,
    pub version: i32,
    pub data: [u8; 16],
    pub format: Format,
}

impl PosterKey {
    pub fn new(template_id: i64, version: i32, data: &PosterData, format: Format) -> PosterKey {
        PosterKey { template_id, version, data: data_digest(data), format }
    }

    /// A strong ETag: the same key always gives the same bytes.
    pub fn etag(&self) -> String {
        format!("\"p{}-{}-{}-{}\"", self.template_id, self.version, hex::encode(&self.data[..12]), self.format.as_str())
    }
}

/// A digest of a poster's data: every value that can change its pixels.
pub fn data_digest(d: &PosterData) -> [u8; 16] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(d.name.as_bytes());
    field(d.qr_url.as_bytes());
    field(&d.avatar.as_ref().map(|a| Sha256::digest(a).to_vec()).unwrap_or_default());
    for (k, v) in &d.vars {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// What is drawn once per template version: the static layer's pixels and, for a kept
/// template version, its JPEG cell by cell (posters of it are spliced from it).
pub struct StaticLayer {
    pub pixmap: Pixmap,
    pub rows: Option<jpeg::Rows>,
}

impl StaticLayer {
    /// Bytes it holds (the static layers cache's budget counts both).
    pub fn bytes(&self) -> usize {
        self.pixmap.data().len() + self.rows.as_ref().map_or(0, jpeg::Rows::bytes)
    }
}

/// The poster machinery of one process.
pub struct Posters {
    cfg: PostersConfig,
    fonts: OnceLock<Result<Arc<Fonts>, FontError>>,
    statics: Mutex<cache::Lru<(i64, i32), Arc<StaticLayer>>>,
    outputs: Mutex<cache::Lru<PosterKey, Bytes>>,
    pub links: cache::LinkCache,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Posters {
    pub fn new(cfg: &PostersConfig) -> Posters {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let renders = if cfg.renders == 0 { cores } else { cfg.renders };
        // The pixels and the encoded cells (a q85 JPEG is far below a quarter of the pixels).
        let layer_bytes = (template::DEFAULT_WIDTH * template::DEFAULT_HEIGHT * 5) as usize;
        Posters {
            statics: Mutex::new(cache::Lru::new(cfg.static_layers.max(1) * layer_bytes)),
            outputs: Mutex::new(cache::Lru::new(cfg.cache_mb * 1024 * 1024)),
            links: cache::LinkCache::new(std::time::Duration::from_millis(cfg.link_cache_ms)),
            permits: Arc::new(tokio::sync::Semaphore::new(renders.max(1))),
            fonts: OnceLock::new(),
            cfg: cfg.clone(),
        }
    }

    /// The fonts, loaded on first use (blocking: call from the blocking pool, or accept a few
    /// milliseconds once), or why posters cannot be drawn.
    pub fn fonts(&self) -> Result<Arc<Fonts>, FontError> {
        self.fonts
            .get_or_init(|| {
                let files = fonts::find(&self.cfg.font_paths)?;
                let engines = self.permits.available_permits().max(1);
                let loaded = Fonts::load(files, &self.cfg.font_family, engines).map(Arc::new);
                match &loaded {
                    Ok(f) => tracing::info!(files = ?f.files, emoji = f.has_emoji, "poster fonts loaded"),
                    Err(e) => tracing::warn!("{e}"),
                }
                loaded
            })
            .clone()
    }

    /// Whether fonts are there, without loading them: None before the first poster.
    pub fn font_status(&self) -> Option<Result<(), FontError>> {
        self.fonts.get().map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone))
    }

    /// A finished poster from the cache.
    pub fn cached(&self, key: &PosterKey) -> Option<Bytes> {
        self.outputs.lock().unwrap_or_else(|e| e.into_inner()).get(key)
    }

    pub fn remember(&self, key: PosterKey, bytes: Bytes) {
        let size = bytes.len();
        self.outputs.lock().unwrap_or_else(|e| e.into_inner()).put(key, bytes, size);
    }

    /// The static layer of a template version, if this process has drawn it.
    pub fn static_layer(&self, template_id: i64, version: i32) -> Option<Arc<StaticLayer>> {
        self.statics.lock().unwrap_or_else(|e| e.into_inner()).get(&(template_id, version))
    }

    /// Draws the static layer of a template version (blocking) and, given its id and version,
    /// encodes it cell by cell and keeps it. Without (an unsaved preview), posters drawn on it
    /// are encoded whole.
    pub fn build_static_layer(
        &self,
        template_id: Option<(i64, i32)>,
        layout: &Layout,
        background: Option<&[u8]>,
    ) -> Result<Arc<StaticLayer>, RenderError> {
        let fonts = self.fonts()?;
        let bg = background.and_then(|b| image::load_from_memory(b).ok()).map(|i| i.to_rgba8());
        let pixmap = render::static_layer(layout, bg.as_ref(), &fonts)?;
        let rows = match template_id {
            Some(_) => Some(jpeg::Rows::new(pixmap.data(), pixmap.width(), pixmap.height())?),
            None => None,
        };
        let layer = Arc::new(StaticLayer { pixmap, rows });
        if let Some(key) = template_id {
            let size = layer.bytes();
            self.statics.lock().unwrap_or_else(|e| e.into_inner()).put(key, layer.clone(), size);
        }
        Ok(layer)
    }

    /// Draws a poster on `base` and encodes it (blocking). A JPEG on a kept layer is spliced:
    /// only the cells the member's elements touch are drawn and encoded; the same bytes as
    /// encoding the whole poster.
    pub fn draw(
        &self,
        base: &StaticLayer,
        layout: &Layout,
        data: &PosterData,
        format: Format,
    ) -> Result<Bytes, RenderError> {
        let fonts = self.fonts()?;
        match (format, &base.rows) {
            (Format::Jpeg, Some(rows)) => {
                let patches = render::draw_patches(&base.pixmap, layout, data, &fonts, rows.grid());
                Ok(Bytes::from(rows.splice(&patches)?))
            }
            _ => {
                let pix = render::draw_member(&base.pixmap, layout, data, &fonts);
                Ok(Bytes::from(render::encode(&pix, format)?))
            }
        }
    }

    /// Waits for a turn to draw: at most `posters.renders` posters are drawn at once.
    pub async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Forgets everything kept of a template (it was changed or deleted); its versions also
    /// change, so this only frees memory sooner.
    pub fn forget_template(&self, template_id: i64) {
        self.statics.lock().unwrap_or_else(|e| e.into_inner()).retain(|k| k.0 != template_id);
        self.outputs.lock().unwrap_or_else(|e| e.into_inner()).retain(|k| k.template_id != template_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_digest_changes_with_every_value() {
        let base = PosterData { name: "阿明".into(), qr_url: "https://x/l/a?r=1".into(), ..Default::default() };
        let d = data_digest(&base);
        let mut other = base.clone();
        other.vars.insert("streak".into(), "3".into());
        assert_ne!(d, data_digest(&other));
        let mut other = base.clone();
        other.avatar = Some(vec![1, 2, 3]);
        assert_ne!(d, data_digest(&other));
        // Field boundaries count: "ab" + "c" is not "a" + "bc".
        let a = PosterData { name: "ab".into(), qr_url: "c".into(), ..Default::default() };
        let b = PosterData { name: "a".into(), qr_url: "bc".into(), ..Default::default() };
        assert_ne!(data_digest(&a), data_digest(&b));
        assert_eq!(d, data_digest(&base));
    }
}
