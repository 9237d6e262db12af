//! The fonts posters are drawn with, found on the system the way the PostgreSQL binaries are:
//! known Debian (and Arch, Fedora) paths of Noto Sans CJK and Noto Color Emoji, or the files
//! named in `posters.font_paths`. No fontconfig and no directory scan, so a poster looks the
//! same on every host. The files are mapped once and shared by every text engine.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cosmic_text::{fontdb, FontSystem, SwashCache};

/// Where distributions install Noto Sans CJK (`fonts-noto-cjk` on Debian and Ubuntu).
pub const CJK_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc",
];
/// Where distributions install Noto Color Emoji (`fonts-noto-color-emoji` on Debian).
pub const EMOJI_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-color-emoji/NotoColorEmoji.ttf",
];
/// The Simplified Chinese face of the CJK collection: chosen by name, or the collection's first
/// face (Japanese) would draw some characters in their Japanese forms.
pub const DEFAULT_FAMILY: &str = "Noto Sans CJK SC";

/// Why posters cannot be drawn. The rest of Shoal works without fonts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FontError {
    #[error("Posters need a Chinese font and none was found: install fonts-noto-cjk (Debian, Ubuntu) or name the font files in posters.font_paths.")]
    NoCjkFont,
    #[error("Posters need the font family {0:?} (posters.font_family), which none of the font files found has: install fonts-noto-cjk or name a file that has it in posters.font_paths.")]
    NoFamily(String),
    #[error("The font file {0} named in posters.font_paths cannot be read.")]
    Unreadable(PathBuf),
}

/// One text engine: cosmic-text's font system (shaping, fallback, layout caches) and glyph
/// cache. Both need `&mut`, so each is used by one render at a time.
pub struct Engine {
    pub fs: FontSystem,
    pub swash: SwashCache,
}

/// The loaded fonts and a small pool of text engines over them.
pub struct Fonts {
    pub family: String,
    pub has_emoji: bool,
    pub files: Vec<PathBuf>,
    engines: Vec<Mutex<Engine>>,
}

impl std::fmt::Debug for Fonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fonts").field("family", &self.family).field("files", &self.files).finish()
    }
}

/// The font files to load: `configured` when it names any, else every candidate that exists.
pub fn find(configured: &[PathBuf]) -> Result<Vec<PathBuf>, FontError> {
    if !configured.is_empty() {
        for p in configured {
            if !p.is_file() {
                return Err(FontError::Unreadable(p.clone()));
            }
        }
        return Ok(configured.to_vec());
    }
    let existing =
        |list: &[&str]| -> Vec<PathBuf> { list.iter().map(PathBuf::from).filter(|p| p.is_file()).collect::<Vec<_>>() };
    let cjk = existing(CJK_CANDIDATES);
    if cjk.is_empty() {
        return Err(FontError::NoCjkFont);
    }
    // One emoji font is enough.
    Ok(cjk.into_iter().chain(existing(EMOJI_CANDIDATES).into_iter().take(1)).collect())
}

impl Fonts {
    /// Loads `files` (see [`find`]) and makes `engines` text engines sharing them.
    pub fn load(files: Vec<PathBuf>, family: &str, engines: usize) -> Result<Fonts, FontError> {
        let mut db = fontdb::Database::new();
        for path in &files {
            let before = db.len();
            db.load_font_file(path).map_err(|_| FontError::Unreadable(path.clone()))?;
            if db.len() == before {
                return Err(FontError::Unreadable(path.clone()));
            }
            share(&mut db, path);
        }
        let has_family = db.faces().any(|f| f.families.iter().any(|(name, _)| name == family));
        if !has_family {
            return Err(FontError::NoFamily(family.to_string()));
        }
        let has_emoji = db.faces().any(|f| f.families.iter().any(|(name, _)| name.contains("Emoji")));
        db.set_sans_serif_family(family);
        let engines = (0..engines.max(1))
            .map(|_| {
                Mutex::new(Engine {
                    fs: FontSystem::new_with_locale_and_db("zh-CN".into(), db.clone()),
                    swash: SwashCache::new(),
                })
            })
            .collect();
        Ok(Fonts { family: family.to_string(), has_emoji, files, engines })
    }

    /// A free text engine, or the first one to come free. The glyph cache of an engine grows
    /// with the glyphs it has drawn; past `MAX_CACHED_GLYPHS` it starts again.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        const MAX_CACHED_GLYPHS: usize = 20_000;
        let mut guard = self
            .engines
            .iter()
            .find_map(|m| m.try_lock().ok())
            .unwrap_or_else(|| self.engines[0].lock().unwrap_or_else(|e| e.into_inner()));
        if guard.swash.image_cache.len() > MAX_CACHED_GLYPHS {
            guard.swash.image_cache.clear();
        }
        guard
    }
}

/// Maps the file once for every face it holds and every engine (instead of a mapping per use).
fn share(db: &mut fontdb::Database, path: &Path) {
    let id = db.faces().find(|f| matches!(&f.source, fontdb::Source::File(p) if p == path)).map(|f| f.id);
    if let Some(id) = id {
        // SAFETY: the mapping is of a read-only font file. Package upgrades replace font files
        // by renaming a new file over the old one, which leaves this mapping intact; a file
        // truncated in place by hand could fault, as it would for any program using it.
        unsafe {
            db.make_shared_face_data(id);
        }
    }
}
