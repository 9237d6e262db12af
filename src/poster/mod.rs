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
        // Cells only for a layer the cache can keep (a layer bigger than its whole budget is
        // drawn again for every poster: encoding it too would cost twice).
        let budget = self.statics.lock().unwrap_or_else(|e| e.into_inner()).budget();
        let rows = match template_id {
            Some(_) if pixmap.data().len() / 4 * 5 <= budget => {
                Some(jpeg::Rows::new(pixmap.data(), pixmap.width(), pixmap.height())?)
            }
            _ => None,
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
    use super::template::Element;
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

    fn member(i: usize, avatar: Option<Vec<u8>>) -> PosterData {
        PosterData {
            name: format!("成员{i}号🐟"),
            avatar,
            qr_url: format!("https://shoal.example/l/spring?r=M{i:06}"),
            vars: std::collections::BTreeMap::from([
                ("campaign".to_string(), "春季打卡营，连续打卡七天有额外奖励".to_string()),
                ("streak".to_string(), (i % 30).to_string()),
                ("days".to_string(), (i % 365).to_string()),
                ("date".to_string(), "2026-12-03".to_string()),
            ]),
        }
    }

    fn kept(p: &Posters, version: i32, layout: &Layout, bg: &[u8]) -> Arc<StaticLayer> {
        p.build_static_layer(Some((7, version)), layout, Some(bg)).unwrap();
        p.static_layer(7, version).expect("kept")
    }

    /// Peak signal-to-noise ratio (dB) and largest channel difference of a decoded JPEG against
    /// the pixels it was encoded from.
    fn psnr(jpeg: &[u8], pix: &Pixmap) -> (f64, u8) {
        let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (pix.width(), pix.height()));
        let (mut se, mut max) = (0f64, 0u8);
        for (a, b) in img.as_raw().chunks_exact(3).zip(pix.data().chunks_exact(4)) {
            for c in 0..3 {
                let d = a[c].abs_diff(b[c]);
                max = max.max(d);
                se += (d as f64) * (d as f64);
            }
        }
        let mse = se / (img.as_raw().len() as f64);
        (10.0 * (255.0f64 * 255.0 / mse).log10(), max)
    }

    #[test]
    fn spliced_posters_are_the_bytes_of_a_whole_encode_and_their_qr_codes_read() {
        let p = Posters::new(&PostersConfig::default());
        let fonts = p.fonts().expect("fonts (fonts-noto-cjk)");
        let mut layout = bench::layout();
        // A name, a square avatar on the right edge and a QR in the last rows: cells cut by the
        // canvas's edges, elements near each other.
        layout.elements.push(Element::Nickname {
            style: template::TextStyle {
                x: 300,
                y: 160,
                width: 700,
                font_size: 48,
                color: template::Rgba([0x10, 0x20, 0x80, 255]),
                align: template::Align::Right,
                max_lines: 1,
                bold: true,
            },
        });
        layout.elements.push(Element::Avatar { x: 1000, y: 1000, size: 120, shape: template::Shape::Square });
        layout.elements.push(Element::Qr { x: 860, y: 1700, size: 220, color: template::Rgba::BLACK });
        let base = kept(&p, 1, &layout, &bench::background());
        let rows = base.rows.as_ref().unwrap();
        for (i, avatar) in [(1, Some(bench::avatar())), (2, None), (3, Some(b"not a picture".to_vec()))] {
            let d = member(i, avatar);
            let spliced = p.draw(&base, &layout, &d, Format::Jpeg).unwrap();
            let whole = render::draw_member(&base.pixmap, &layout, &d, &fonts);
            assert_eq!(spliced.as_ref(), render::encode(&whole, Format::Jpeg).unwrap(), "member {i}");
            let patches = render::draw_patches(&base.pixmap, &layout, &d, &fonts, rows.grid());
            let covered: u32 = patches.iter().map(|p| p.pixmap.width() * p.pixmap.height()).sum();
            assert!(covered < layout.width * layout.height / 2, "only part of the poster is drawn again: {covered}");
            let (db, max) = psnr(&spliced, &whole);
            assert!(db > 30.0 && max < 160, "member {i}: PSNR {db:.1} dB, max difference {max}");
            let img = image::load_from_memory(&spliced).unwrap().to_luma8();
            let mut prepared = rqrr::PreparedImage::prepare(img);
            let codes: Vec<String> = prepared.detect_grids().into_iter().map(|g| g.decode().unwrap().1).collect();
            assert_eq!(codes, [d.qr_url.clone(), d.qr_url.clone()], "member {i}");
            zbar_reads(&spliced, &d.qr_url);
        }
    }

    /// zbar reads the spliced JPEG's QR codes (when zbar-tools is installed).
    fn zbar_reads(jpeg: &[u8], url: &str) {
        if std::process::Command::new("zbarimg").arg("--version").output().is_err() {
            eprintln!("zbarimg is not installed (zbar-tools): only rqrr checked the QR codes");
            return;
        }
        let dir = std::env::temp_dir().join(format!("shoal-splice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("poster.jpg");
        std::fs::write(&path, jpeg).unwrap();
        let out = std::process::Command::new("zbarimg").args(["--raw", "-q"]).arg(&path).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty() && lines.iter().all(|l| *l == url), "zbarimg: {text:?}");
    }

    #[test]
    fn every_pixel_a_member_changes_is_in_a_patch_and_patches_do_not_overlap() {
        let p = Posters::new(&PostersConfig::default());
        let fonts = p.fonts().expect("fonts (fonts-noto-cjk)");
        let mut layout = bench::layout();
        // Elements that overlap each other and reach outside the canvas.
        layout.elements.push(Element::Avatar { x: -40, y: 1850, size: 150, shape: template::Shape::Round });
        layout.elements.push(Element::Nickname {
            style: template::TextStyle {
                x: 150,
                y: 200,
                width: 900,
                font_size: 60,
                color: template::Rgba([200, 30, 30, 200]),
                align: template::Align::Center,
                max_lines: 2,
                bold: false,
            },
        });
        let base = kept(&p, 1, &layout, &bench::background());
        let grid = base.rows.as_ref().unwrap().grid();
        for d in
            [member(5, Some(bench::avatar())), member(6, None), PosterData { name: "👨‍👩‍👧".into(), ..member(7, None) }]
        {
            let whole = render::draw_member(&base.pixmap, &layout, &d, &fonts);
            let patches = render::draw_patches(&base.pixmap, &layout, &d, &fonts, grid);
            for (a, pa) in patches.iter().enumerate() {
                for pb in &patches[a + 1..] {
                    let (x, y) = (pa.cells, pb.cells);
                    assert!(x.col1 <= y.col0 || y.col1 <= x.col0 || x.row1 <= y.row0 || y.row1 <= x.row0);
                }
            }
            let rects: Vec<_> = patches.iter().map(|p| (grid.pixels(&p.cells), p)).collect();
            let w = layout.width as usize;
            let mut changed = 0;
            for (i, (now, was)) in whole.data().chunks_exact(4).zip(base.pixmap.data().chunks_exact(4)).enumerate() {
                let (x, y) = ((i % w) as u32, (i / w) as u32);
                let inside =
                    rects.iter().find(|((x0, y0, pw, ph), _)| x >= *x0 && x < x0 + pw && y >= *y0 && y < y0 + ph);
                match inside {
                    // A patch holds exactly the whole poster's pixels.
                    Some(((x0, y0, pw, _), patch)) => {
                        let j = (((y - y0) * pw + (x - x0)) * 4) as usize;
                        assert_eq!(&patch.pixmap.data()[j..j + 4], now, "pixel ({x}, {y})");
                    }
                    None => assert_eq!(now, was, "pixel ({x}, {y}) changed outside every patch"),
                }
                changed += usize::from(now != was);
            }
            assert!(changed > 10_000, "the member's elements were drawn: {changed}");
        }
    }

    #[test]
    fn a_new_template_version_has_its_own_cells_and_the_static_layers_stay_within_budget() {
        let cfg = PostersConfig { static_layers: 2, ..Default::default() };
        let p = Posters::new(&cfg);
        let fonts = p.fonts().expect("fonts (fonts-noto-cjk)");
        let layout = bench::layout();
        let v1 = kept(&p, 1, &layout, &bench::background());
        // Version 2: another background and the QR moved.
        let mut layout2 = layout.clone();
        layout2.background_color = template::Rgba([0x20, 0x60, 0x30, 255]);
        for e in &mut layout2.elements {
            if let Element::Qr { y, .. } = e {
                *y = 900;
            }
        }
        let v2 = p.build_static_layer(Some((7, 2)), &layout2, None).unwrap();
        let d = member(9, None);
        let one = p.draw(&p.static_layer(7, 1).unwrap(), &layout, &d, Format::Jpeg).unwrap();
        let two = p.draw(&p.static_layer(7, 2).unwrap(), &layout2, &d, Format::Jpeg).unwrap();
        assert_ne!(one, two);
        let whole2 = render::draw_member(&v2.pixmap, &layout2, &d, &fonts);
        assert_eq!(two.as_ref(), render::encode(&whole2, Format::Jpeg).unwrap());
        assert_eq!(
            one.as_ref(),
            render::encode(&render::draw_member(&v1.pixmap, &layout, &d, &fonts), Format::Jpeg).unwrap()
        );
        // Every kept layer counts its pixels and its cells; the oldest go when over budget.
        assert!(v2.bytes() > v2.pixmap.data().len());
        for v in 3..6 {
            p.build_static_layer(Some((7, v)), &layout, None).unwrap();
        }
        let statics = p.statics.lock().unwrap();
        let budget = 2 * (template::DEFAULT_WIDTH * template::DEFAULT_HEIGHT * 5) as usize;
        assert!(statics.bytes() <= budget && statics.len() == 2, "{} bytes in {}", statics.bytes(), statics.len());
        drop(statics);
        assert!(p.static_layer(7, 1).is_none() && p.static_layer(7, 5).is_some());
        p.forget_template(7);
        assert!(p.static_layer(7, 5).is_none());
        // A layer that is not kept (a preview) has no cells: its posters are encoded whole.
        let preview = p.build_static_layer(None, &layout, None).unwrap();
        assert!(preview.rows.is_none());
        let jpeg = p.draw(&preview, &layout, &d, Format::Jpeg).unwrap();
        assert_eq!(
            jpeg.as_ref(),
            render::encode(&render::draw_member(&preview.pixmap, &layout, &d, &fonts), Format::Jpeg).unwrap()
        );
        // PNG is always drawn whole.
        let png = p.draw(&v2, &layout2, &d, Format::Png).unwrap();
        assert_eq!(image::guess_format(&png).unwrap(), image::ImageFormat::Png);
    }
}
