//! Drawing a poster: the static layer of a template (background colour and image, rectangles,
//! fixed text), then per member the avatar, the name, the filled-in text blocks and the QR code,
//! then JPEG or PNG. CPU-bound: run it on the blocking pool.

use std::collections::BTreeMap;

use cosmic_text::{
    Align as CtAlign, Attrs, Buffer, Ellipsize, EllipsizeHeightLimit, Family, Metrics, Shaping, SwashContent, Weight,
    Wrap,
};
use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Rect, Transform};

use super::fonts::{Engine, Fonts};
use super::jpeg::{Grid, Patch};
use super::template::{fill, Align, Element, Layout, Rgba, Shape, TextStyle};

/// Line height as a multiple of the font size.
const LINE_HEIGHT: f32 = 1.35;
/// Largest side of an avatar picture that is decoded at all.
const AVATAR_MAX_SIDE: u32 = 4096;

/// What one poster shows of one member.
#[derive(Clone, Debug, Default)]
pub struct PosterData {
    /// The member's name (`{name}`, the nickname element, the initial of a generated avatar).
    pub name: String,
    /// The member's picture as PNG or JPEG bytes; None (or unreadable): their initial on a
    /// coloured disc.
    pub avatar: Option<Vec<u8>>,
    /// What the QR code says: the member's personal link.
    pub qr_url: String,
    /// Values of `{campaign}`, `{streak}`, `{days}`, `{invites}`, `{date}`.
    pub vars: BTreeMap<String, String>,
}

impl PosterData {
    /// The placeholders' values, `{name}` included.
    fn values(&self) -> BTreeMap<String, String> {
        let mut v = self.vars.clone();
        v.insert("name".into(), self.name.clone());
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Fonts(#[from] super::fonts::FontError),
    #[error("the canvas could not be allocated")]
    Canvas,
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// The part of a poster that is the same for every member: background colour, background image
/// (scaled to cover the canvas, centred), rectangles and text without placeholders.
pub fn static_layer(
    layout: &Layout,
    background: Option<&image::RgbaImage>,
    fonts: &Fonts,
) -> Result<Pixmap, RenderError> {
    let mut pix = Pixmap::new(layout.width, layout.height).ok_or(RenderError::Canvas)?;
    // Always opaque, so that the pixels are the same premultiplied or not (JPEG has no alpha).
    let base = over_white(layout.background_color);
    pix.fill(tiny_skia::Color::from_rgba8(base.0[0], base.0[1], base.0[2], 255));
    if let Some(bg) = background {
        draw_cover(&mut pix, bg);
    }
    let mut engine = None;
    for e in layout.elements.iter().filter(|e| e.is_static()) {
        match e {
            Element::Rect { x, y, width, height, color, radius } => {
                fill_round_rect(&mut pix, *x as f32, *y as f32, *width as f32, *height as f32, *radius as f32, *color)
            }
            Element::Text { style, text } => {
                let engine = engine.get_or_insert_with(|| fonts.engine());
                draw_text(&mut pix, engine, &fonts.family, style, text);
            }
            _ => {}
        }
    }
    Ok(pix)
}

/// One member's element, laid out and ready to paint, with the pixels it may change.
struct Piece<'a> {
    /// x0, y0, x1, y1 on the canvas (end exclusive; may reach outside it).
    bbox: (i32, i32, i32, i32),
    kind: PieceKind<'a>,
}

enum PieceKind<'a> {
    Avatar { img: image::RgbaImage, x: i32, y: i32, size: u32, shape: Shape },
    Disc { rgb: [u8; 3], x: i32, y: i32, size: u32, shape: Shape },
    Text { buf: Buffer, x: i32, y: i32, color: Rgba },
    Qr { text: &'a str, x: i32, y: i32, size: u32, color: Rgba },
}

/// The member's elements in drawing order: avatar (or initial), name, filled-in text blocks, QR.
fn pieces<'a>(layout: &Layout, data: &'a PosterData, engine: &mut Engine, family: &str) -> Vec<Piece<'a>> {
    let values = data.values();
    // Decoded once, for the largest avatar element (none: not at all).
    let want = layout
        .elements
        .iter()
        .filter_map(|e| if let Element::Avatar { size, .. } = e { Some(*size) } else { None })
        .max();
    let avatar = want.and_then(|want| decode_avatar(data.avatar.as_deref()?, want));
    let mut out = Vec::new();
    for e in &layout.elements {
        match e {
            Element::Avatar { x, y, size, shape } => {
                let (x, y, size, shape) = (*x, *y, *size, *shape);
                let bbox = (x, y, x + size as i32, y + size as i32);
                match &avatar {
                    Some(img) => out.push(Piece {
                        bbox,
                        kind: PieceKind::Avatar { img: scale_avatar(img, size), x, y, size, shape },
                    }),
                    None => {
                        use sha2::{Digest, Sha256};
                        let i = Sha256::digest(data.name.as_bytes())[0] as usize % AVATAR_COLOURS.len();
                        out.push(Piece { bbox, kind: PieceKind::Disc { rgb: AVATAR_COLOURS[i], x, y, size, shape } });
                        out.extend(initial_piece(engine, family, &data.name, x, y, size));
                    }
                }
            }
            Element::Nickname { style } => out.extend(text_piece(engine, family, style, &data.name)),
            Element::Text { style, text } if !e.is_static() => {
                out.extend(text_piece(engine, family, style, &fill(text, &values)))
            }
            Element::Qr { x, y, size, color } => out.push(Piece {
                bbox: (*x, *y, *x + *size as i32, *y + *size as i32),
                kind: PieceKind::Qr { text: &data.qr_url, x: *x, y: *y, size: *size, color: *color },
            }),
            _ => {}
        }
    }
    out
}

/// Paints a piece on `pix`, whose top left corner is the canvas's pixel `origin`.
fn paint(pix: &mut Pixmap, origin: (i32, i32), engine: &mut Engine, piece: &Piece) {
    match &piece.kind {
        // A scaled avatar picture (`scale_avatar`).
        PieceKind::Avatar { img, x, y, size, shape } => {
            paint_square(pix, origin, *x, *y, *size, *shape, |sx, sy| img.get_pixel(sx, sy).0)
        }
        PieceKind::Disc { rgb: [r, g, b], x, y, size, shape } => {
            paint_square(pix, origin, *x, *y, *size, *shape, |_, _| [*r, *g, *b, 255])
        }
        PieceKind::Text { buf, x, y, color } => paint_text(pix, origin, engine, buf, *x, *y, *color),
        PieceKind::Qr { text, x, y, size, color } => draw_qr(pix, origin, text, *x, *y, *size, *color),
    }
}

/// Draws the member's elements onto a copy of the whole static layer (PNG, and the reference
/// the spliced JPEG is checked against).
pub fn draw_member(base: &Pixmap, layout: &Layout, data: &PosterData, fonts: &Fonts) -> Pixmap {
    let mut pix = base.clone();
    let mut engine = fonts.engine();
    for piece in pieces(layout, data, &mut engine, &fonts.family) {
        paint(&mut pix, (0, 0), &mut engine, &piece);
    }
    pix
}

/// Draws the member's elements onto copies of only the parts of the static layer they touch:
/// rectangles of the JPEG grid's cells (`jpeg::Grid`), overlapping ones merged, each element
/// drawn into the one rectangle that holds it.
pub fn draw_patches(base: &Pixmap, layout: &Layout, data: &PosterData, fonts: &Fonts, grid: Grid) -> Vec<Patch> {
    let mut engine = fonts.engine();
    let pieces = pieces(layout, data, &mut engine, &fonts.family);
    let (mut rects, mut which) = (Vec::new(), Vec::new());
    for (i, p) in pieces.iter().enumerate() {
        let (x0, y0, x1, y1) = p.bbox;
        if let Some(c) = grid.cover(x0, y0, x1, y1) {
            rects.push(c);
            which.push(i);
        }
    }
    let (merged, members) = Grid::merge(rects);
    let bw = base.width() as usize * 4;
    merged
        .into_iter()
        .zip(members)
        .filter_map(|(cells, members)| {
            let (x0, y0, w, h) = grid.pixels(&cells);
            // The static layer's pixels of the rectangle, copied without zeroing first.
            let row = w as usize * 4;
            let mut data = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                let at = (y0 as usize + y) * bw + x0 as usize * 4;
                data.extend_from_slice(&base.data()[at..at + row]);
            }
            let mut pix = Pixmap::from_vec(data, tiny_skia::IntSize::from_wh(w, h)?)?;
            for m in members {
                paint(&mut pix, (x0 as i32, y0 as i32), &mut engine, &pieces[which[m]]);
            }
            Some(Patch { cells, pixmap: pix })
        })
        .collect()
}

/// The poster as JPEG (quality 85) or PNG.
pub fn encode(pix: &Pixmap, format: Format) -> Result<Vec<u8>, RenderError> {
    let (w, h) = (pix.width(), pix.height());
    let err = |e: &dyn std::fmt::Display| RenderError::Encode(e.to_string());
    match format {
        // The same bytes a spliced poster has (`jpeg`).
        Format::Jpeg => super::jpeg::encode_full(pix.data(), w, h),
        Format::Png => {
            use image::ImageEncoder;
            // Opaque: drop the alpha channel (a quarter less to compress).
            let rgb: Vec<u8> = pix.data().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            let mut out = Vec::new();
            image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| err(&e))?;
            Ok(out)
        }
    }
}

fn over_white(c: Rgba) -> Rgba {
    let [r, g, b, a] = c.0;
    let mix = |v: u8| ((v as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8;
    Rgba([mix(r), mix(g), mix(b), 255])
}

/// Source-over of one straight-alpha pixel (`a` 0..=255) onto a premultiplied RGBA pixel.
#[inline]
fn blend(dst: &mut [u8], r: u8, g: u8, b: u8, a: u32) {
    if a == 0 {
        return;
    }
    let inv = 255 - a;
    let mix = |s: u8, d: u8| ((s as u32 * a + d as u32 * inv + 127) / 255) as u8;
    dst[0] = mix(r, dst[0]);
    dst[1] = mix(g, dst[1]);
    dst[2] = mix(b, dst[2]);
    dst[3] = ((a * 255 + dst[3] as u32 * inv + 127) / 255) as u8;
}

/// `img` scaled to cover the canvas and centred (the overflow is cut off), drawn over it.
fn draw_cover(pix: &mut Pixmap, img: &image::RgbaImage) {
    let (cw, ch) = (pix.width(), pix.height());
    let scale = (cw as f32 / img.width() as f32).max(ch as f32 / img.height() as f32);
    let (sw, sh) =
        (((img.width() as f32 * scale).ceil() as u32).max(cw), ((img.height() as f32 * scale).ceil() as u32).max(ch));
    let scaled = if (sw, sh) == img.dimensions() {
        img.clone()
    } else {
        image::imageops::resize(img, sw, sh, image::imageops::FilterType::Triangle)
    };
    let (ox, oy) = ((sw - cw) / 2, (sh - ch) / 2);
    let data = pix.data_mut();
    for y in 0..ch {
        for x in 0..cw {
            let p = scaled.get_pixel(x + ox, y + oy).0;
            let i = ((y * cw + x) * 4) as usize;
            blend(&mut data[i..i + 4], p[0], p[1], p[2], p[3] as u32);
        }
    }
}

fn fill_round_rect(pix: &mut Pixmap, x: f32, y: f32, w: f32, h: f32, radius: f32, color: Rgba) {
    let r = radius.min(w / 2.0).min(h / 2.0);
    let path = if r <= 0.0 {
        Rect::from_xywh(x, y, w, h).map(PathBuilder::from_rect)
    } else {
        // Quarter circles as cubic Béziers.
        let k = r * 0.552_284_8;
        let mut pb = PathBuilder::new();
        pb.move_to(x + r, y);
        pb.line_to(x + w - r, y);
        pb.cubic_to(x + w - r + k, y, x + w, y + r - k, x + w, y + r);
        pb.line_to(x + w, y + h - r);
        pb.cubic_to(x + w, y + h - r + k, x + w - r + k, y + h, x + w - r, y + h);
        pb.line_to(x + r, y + h);
        pb.cubic_to(x + r - k, y + h, x, y + h - r + k, x, y + h - r);
        pb.line_to(x, y + r);
        pb.cubic_to(x, y + r - k, x + r - k, y, x + r, y);
        pb.close();
        pb.finish()
    };
    if let Some(path) = path {
        let mut paint = Paint::default();
        let [r, g, b, a] = color.0;
        paint.set_color_rgba8(r, g, b, a);
        pix.fill_path(&path, &paint, FillRule::Winding, Transform::identity(), None);
    }
}

/// A laid-out text box: wrapped at `style.width` by the Unicode line-breaking rules (a
/// full-width comma or full stop never starts a line), at most `style.max_lines` lines, the
/// last one ending in "…" when the text does not fit. The SC face is asked for by name; glyphs
/// it lacks (emoji) come from the fallback fonts.
fn layout_text(engine: &mut Engine, family: &str, style: &TextStyle, text: &str) -> Buffer {
    let size = style.font_size as f32;
    let mut buf = Buffer::new(&mut engine.fs, Metrics::new(size, (size * LINE_HEIGHT).round()));
    buf.set_wrap(Wrap::WordOrGlyph);
    buf.set_size(Some(style.width as f32), None);
    buf.set_ellipsize(Ellipsize::End(EllipsizeHeightLimit::Lines(style.max_lines as usize)));
    let weight = if style.bold { Weight::BOLD } else { Weight::NORMAL };
    let attrs = Attrs::new().family(Family::Name(family)).weight(weight);
    let align = match style.align {
        Align::Left => CtAlign::Left,
        Align::Center => CtAlign::Center,
        Align::Right => CtAlign::Right,
    };
    // One paragraph: line breaks typed into a text block are kept as spaces would be by a phone.
    let text: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    buf.set_text(&text, &attrs, Shaping::Advanced, Some(align));
    buf.shape_until_scroll(&mut engine.fs, false);
    buf
}

/// The lines `text` is laid out in (for tests and previews): each visual line's text, "…"
/// where the ellipsis was drawn.
pub fn text_lines(fonts: &Fonts, style: &TextStyle, text: &str) -> Vec<String> {
    let mut engine = fonts.engine();
    let buf = layout_text(&mut engine, &fonts.family, style, text);
    buf.layout_runs()
        .map(|run| {
            let mut line = String::new();
            let mut prev: Option<(usize, usize)> = None;
            for g in run.glyphs {
                match prev {
                    // Several glyphs of one cluster (an emoji sequence) share its text.
                    Some(p) if p == (g.start, g.end) => continue,
                    // The ellipsis is shaped on its own: it covers no text of the line.
                    _ if g.start == g.end => line.push('…'),
                    _ => line.push_str(run.text.get(g.start..g.end).unwrap_or("")),
                }
                prev = Some((g.start, g.end));
            }
            line
        })
        .collect()
}

/// Text drawn straight onto `pix` (the static layer's fixed text).
fn draw_text(pix: &mut Pixmap, engine: &mut Engine, family: &str, style: &TextStyle, text: &str) {
    if let Some(piece) = text_piece(engine, family, style, text) {
        paint(pix, (0, 0), engine, &piece);
    }
}

/// A text box laid out, with the box its glyphs' pixels cover; None when there is nothing to draw.
fn text_piece<'a>(engine: &mut Engine, family: &str, style: &TextStyle, text: &str) -> Option<Piece<'a>> {
    if text.trim().is_empty() {
        return None;
    }
    let buf = layout_text(engine, family, style, text);
    let (x, y) = (style.x, style.y);
    let mut bbox = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for run in buf.layout_runs() {
        for glyph in run.glyphs {
            let pg = glyph.physical((x as f32, y as f32 + run.line_y), 1.0);
            // Rasterised once: the glyph cache keeps it for painting.
            let Some(img) = engine.swash.get_image(&mut engine.fs, pg.cache_key) else { continue };
            let (left, top) = (pg.x + img.placement.left, pg.y - img.placement.top);
            bbox.0 = bbox.0.min(left);
            bbox.1 = bbox.1.min(top);
            bbox.2 = bbox.2.max(left + img.placement.width as i32);
            bbox.3 = bbox.3.max(top + img.placement.height as i32);
        }
    }
    (bbox.0 < bbox.2 && bbox.1 < bbox.3)
        .then_some(Piece { bbox, kind: PieceKind::Text { buf, x, y, color: style.color } })
}

#[allow(clippy::too_many_arguments)]
fn paint_text(pix: &mut Pixmap, origin: (i32, i32), engine: &mut Engine, buf: &Buffer, x: i32, y: i32, color: Rgba) {
    let [r, g, b, a] = color.0;
    let (w, h) = (pix.width() as i32, pix.height() as i32);
    let data = pix.data_mut();
    for run in buf.layout_runs() {
        for glyph in run.glyphs {
            // Placed on the canvas first, then moved by whole pixels: the same glyph images
            // wherever the pixmap starts.
            let pg = glyph.physical((x as f32, y as f32 + run.line_y), 1.0);
            let Some(img) = engine.swash.get_image(&mut engine.fs, pg.cache_key) else { continue };
            let (left, top) = (pg.x + img.placement.left - origin.0, pg.y - img.placement.top - origin.1);
            let (gw, gh) = (img.placement.width as i32, img.placement.height as i32);
            for gy in 0..gh {
                let py = top + gy;
                if py < 0 || py >= h {
                    continue;
                }
                for gx in 0..gw {
                    let px = left + gx;
                    if px < 0 || px >= w {
                        continue;
                    }
                    let i = ((py * w + px) * 4) as usize;
                    let j = (gy * gw + gx) as usize;
                    match img.content {
                        SwashContent::Mask => {
                            let cov = img.data[j] as u32 * a as u32 / 255;
                            blend(&mut data[i..i + 4], r, g, b, cov);
                        }
                        SwashContent::Color => {
                            let p = &img.data[j * 4..j * 4 + 4];
                            blend(&mut data[i..i + 4], p[0], p[1], p[2], p[3] as u32);
                        }
                        SwashContent::SubpixelMask => {}
                    }
                }
            }
        }
    }
}

/// An avatar picture to be drawn at most `want` pixels a side: decoded within bounds (PNG or
/// JPEG, at most 4096 px a side), else None. A JPEG whose short side covers `want` at 1/2, 1/4
/// or 1/8 of its size is decoded at that size, its IDCT scaled as libjpeg does: a 640 px
/// profile photo (QQ's and Telegram's size) drawn at 200 px is decoded at 320 px, a quarter of
/// the pixels.
fn decode_avatar(bytes: &[u8], want: u32) -> Option<image::RgbaImage> {
    let format = image::guess_format(bytes).ok()?;
    match format {
        image::ImageFormat::Jpeg => {
            if let Some(img) = decode_jpeg_scaled(bytes, want) {
                return Some(img);
            }
        }
        image::ImageFormat::Png => {}
        _ => return None,
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(AVATAR_MAX_SIDE);
    limits.max_image_height = Some(AVATAR_MAX_SIDE);
    limits.max_alloc = Some(AVATAR_MAX_ALLOC);
    reader.limits(limits);
    Some(reader.decode().ok()?.to_rgba8())
}

/// Decoded memory an avatar may take.
const AVATAR_MAX_ALLOC: u64 = 96 * 1024 * 1024;

/// A colour or grey JPEG decoded at the smallest of 1/8, 1/4, 1/2 and 1 of its size whose short
/// side is still at least `want`. None for what the general decoder must handle (CMYK, 12 or
/// 16 bits) or refuse.
fn decode_jpeg_scaled(bytes: &[u8], want: u32) -> Option<image::RgbaImage> {
    use jpeg_decoder::PixelFormat;
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.set_max_decoding_buffer_size(AVATAR_MAX_ALLOC as usize);
    d.read_info().ok()?;
    let info = d.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if w > AVATAR_MAX_SIDE || h > AVATAR_MAX_SIDE || !matches!(info.pixel_format, PixelFormat::RGB24 | PixelFormat::L8)
    {
        return None;
    }
    let k = [8, 4, 2].into_iter().find(|k| w.min(h) / k >= want.max(1)).unwrap_or(1);
    let (sw, sh) = d.scale(w.div_ceil(k) as u16, h.div_ceil(k) as u16).ok()?;
    let px = d.decode().ok()?;
    let rgba: Vec<u8> = match info.pixel_format {
        PixelFormat::RGB24 => px.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        _ => px.iter().flat_map(|&l| [l, l, l, 255]).collect(),
    };
    image::RgbaImage::from_raw(u32::from(sw), u32::from(sh), rgba)
}

/// Coverage (0..=255) of the pixel (x, y) of a `size` box by its inscribed circle, anti-aliased.
#[inline]
fn disc(x: u32, y: u32, size: u32) -> u32 {
    let r = size as f32 / 2.0;
    let (dx, dy) = (x as f32 + 0.5 - r, y as f32 + 0.5 - r);
    let d = (dx * dx + dy * dy).sqrt();
    ((r - d + 0.5).clamp(0.0, 1.0) * 255.0) as u32
}

/// The centred square of the picture, scaled to the box: shrunk by averaging the area each
/// output pixel covers (fixed point, two passes; the usual case, a 640 px avatar in a 200 px
/// box, costs about a millisecond), enlarged with a triangle filter.
fn scale_avatar(img: &image::RgbaImage, size: u32) -> image::RgbaImage {
    let side = img.width().min(img.height());
    let (cx, cy) = ((img.width() - side) / 2, (img.height() - side) / 2);
    if side < size || size == 0 {
        let square = image::imageops::crop_imm(img, cx, cy, side, side).to_image();
        return image::imageops::resize(&square, size, size, image::imageops::FilterType::Triangle);
    }
    let taps = area_weights(side, size);
    let (src, stride) = (img.as_raw(), img.width() as usize * 4);
    // Across: every row of the square, `size` pixels wide, weights summing to 1 << 12.
    let mut across = Vec::with_capacity(side as usize * size as usize * 4);
    for y in 0..side as usize {
        let row = &src[(cy as usize + y) * stride + cx as usize * 4..];
        for (start, ws) in &taps {
            let mut acc = [0u32; 4];
            for (k, w) in ws.iter().enumerate() {
                let p = &row[(start + k) * 4..(start + k) * 4 + 4];
                for c in 0..4 {
                    acc[c] += p[c] as u32 * w;
                }
            }
            across.extend_from_slice(&acc);
        }
    }
    // Down: weights summing to 1 << 12 again, so the sum is the value << 24.
    let mut out = image::RgbaImage::new(size, size);
    let line = size as usize * 4;
    let mut acc = vec![0u64; line];
    for (o, (start, ws)) in taps.iter().enumerate() {
        let dst = &mut out.as_mut()[o * line..(o + 1) * line];
        acc.fill(0);
        for (k, w) in ws.iter().enumerate() {
            let src = &across[(start + k) * line..(start + k + 1) * line];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += *s as u64 * *w as u64;
            }
        }
        for (d, a) in dst.iter_mut().zip(&acc) {
            *d = ((a + (1 << 23)) >> 24).min(255) as u8;
        }
    }
    out
}

/// For shrinking `from` pixels to `to` (`from >= to`): per output pixel, the first input pixel
/// it covers and the share of each covered pixel, in 1/4096ths summing to 4096.
fn area_weights(from: u32, to: u32) -> Vec<(usize, Vec<u32>)> {
    let f = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            let (a, b) = (o as f64 * f, ((o + 1) as f64 * f).min(from as f64));
            let start = a.floor() as usize;
            let end = (b.ceil() as usize).min(from as usize).max(start + 1);
            // Cumulative shares, rounded: they add up to exactly 4096.
            let share = |x: f64| ((x.clamp(a, b) - a) / (b - a) * 4096.0).round() as u32;
            let ws: Vec<u32> = (start..end).map(|i| share(i as f64 + 1.0) - share(i as f64)).collect();
            (start, ws)
        })
        .collect()
}

/// A `size` × `size` square at the canvas's (x, y), cut to a disc when `shape` is round, on a
/// pixmap whose top left corner is the canvas's `origin`; `rgba(sx, sy)` is the colour of the
/// square's pixel (sx, sy).
#[allow(clippy::too_many_arguments)]
fn paint_square(
    pix: &mut Pixmap,
    origin: (i32, i32),
    x: i32,
    y: i32,
    size: u32,
    shape: Shape,
    rgba: impl Fn(u32, u32) -> [u8; 4],
) {
    let (w, h) = (pix.width() as i32, pix.height() as i32);
    let data = pix.data_mut();
    for sy in 0..size {
        for sx in 0..size {
            let (px, py) = (x + sx as i32 - origin.0, y + sy as i32 - origin.1);
            if px < 0 || py < 0 || px >= w || py >= h {
                continue;
            }
            let [r, g, b, a] = rgba(sx, sy);
            let cover = match shape {
                Shape::Round => disc(sx, sy, size),
                Shape::Square => 255,
            };
            let i = ((py * w + px) * 4) as usize;
            blend(&mut data[i..i + 4], r, g, b, a as u32 * cover / 255);
        }
    }
}

/// The colours of generated avatars; a name always gets the same one.
const AVATAR_COLOURS: [[u8; 3]; 8] = [
    [0xe5, 0x73, 0x73],
    [0xf0, 0x9a, 0x3e],
    [0x4c, 0xaf, 0x50],
    [0x26, 0xa6, 0x9a],
    [0x42, 0xa5, 0xf5],
    [0x5c, 0x6b, 0xc0],
    [0xab, 0x47, 0xbc],
    [0x8d, 0x6e, 0x63],
];

/// No picture: a disc (or square) of the name's colour…
/// …with the name's first character on it, in white.
fn initial_piece<'a>(engine: &mut Engine, family: &str, name: &str, x: i32, y: i32, size: u32) -> Option<Piece<'a>> {
    let initial = first_grapheme(name.trim());
    if initial.is_empty() {
        return None;
    }
    let font_size = (size as f32 * 0.45).round().max(8.0) as u32;
    let line = (font_size as f32 * LINE_HEIGHT).round() as i32;
    let style = TextStyle {
        x,
        y: y + (size as i32 - line) / 2,
        width: size,
        font_size,
        color: Rgba::WHITE,
        align: Align::Center,
        max_lines: 1,
        bold: true,
    };
    text_piece(engine, family, &style, &initial.to_uppercase())
}

/// The first user-perceived character: a letter with its combining marks, or a whole emoji
/// sequence (joined by ZWJ, with variation selectors and skin tones).
fn first_grapheme(s: &str) -> &str {
    let mut end = 0;
    let mut chars = s.char_indices().peekable();
    let mut joined = true;
    while let Some((i, c)) = chars.next() {
        if !joined && !is_extender(c) {
            break;
        }
        end = i + c.len_utf8();
        joined = c == '\u{200d}';
        if let Some((_, next)) = chars.peek() {
            if is_extender(*next) || *next == '\u{200d}' {
                continue;
            }
        }
    }
    &s[..end]
}

fn is_extender(c: char) -> bool {
    matches!(c, '\u{200d}' | '\u{fe00}'..='\u{fe0f}' | '\u{1f3fb}'..='\u{1f3ff}' | '\u{0300}'..='\u{036f}' | '\u{e0020}'..='\u{e007f}')
}

/// The QR code of `text`, error correction M, dark modules in `color` on white with the
/// four-module quiet zone, each module a whole number of pixels (crisp edges scan best), centred
/// in the `size` box.
#[allow(clippy::too_many_arguments)]
fn draw_qr(pix: &mut Pixmap, origin: (i32, i32), text: &str, x: i32, y: i32, size: u32, color: Rgba) {
    let Ok(code) = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M) else { return };
    let n = code.width() as u32;
    let colors = code.to_colors();
    let total = n + 8;
    let scale = (size / total).max(1);
    let offset = (size.saturating_sub(total * scale) / 2) as i32;
    let (w, h) = (pix.width() as i32, pix.height() as i32);
    let [r, g, b, _] = color.0;
    // The box's pixels of one row of modules (None: the quiet zone), made once per row of
    // modules and copied to each of its pixel rows.
    let mut line = vec![0u8; size as usize * 4];
    let mut line_of: Option<Option<u32>> = None;
    let (left, right) = ((x - origin.0).max(0), (x - origin.0 + size as i32).min(w));
    if left >= right {
        return;
    }
    let data = pix.data_mut();
    for sy in 0..size as i32 {
        let py = y + sy - origin.1;
        if py < 0 || py >= h {
            continue;
        }
        let my = (sy - offset).div_euclid(scale as i32) - 4;
        let row = (sy >= offset && my >= 0 && (my as u32) < n).then_some(my as u32);
        if line_of != Some(row) {
            for (sx, px) in line.chunks_exact_mut(4).enumerate() {
                let sx = sx as i32;
                let mx = (sx - offset).div_euclid(scale as i32) - 4;
                let dark = row.is_some_and(|my| {
                    sx >= offset
                        && mx >= 0
                        && (mx as u32) < n
                        && colors[(my * n + mx as u32) as usize] == qrcode::Color::Dark
                });
                px.copy_from_slice(&if dark { [r, g, b, 255] } else { [255, 255, 255, 255] });
            }
            line_of = Some(row);
        }
        let from = (left - (x - origin.0)) as usize * 4;
        let at = ((py * w + left) * 4) as usize;
        let len = (right - left) as usize * 4;
        data[at..at + len].copy_from_slice(&line[from..from + len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_character_keeps_emoji_sequences_and_marks_whole() {
        assert_eq!(first_grapheme("阿明"), "阿");
        assert_eq!(first_grapheme("👨‍👩‍👧 family"), "👨‍👩‍👧");
        assert_eq!(first_grapheme("👍🏽ok"), "👍🏽");
        assert_eq!(first_grapheme("e\u{301}cole"), "e\u{301}");
        assert_eq!(first_grapheme(""), "");
    }

    #[test]
    fn avatars_shrink_by_area_and_keep_flat_colours_exact() {
        for (from, to) in [(640, 200), (300, 300), (1000, 7), (201, 200)] {
            let ws = area_weights(from, to);
            assert_eq!(ws.len(), to as usize);
            for (s, w) in &ws {
                assert!(w.iter().sum::<u32>() == 4096 && s + w.len() <= from as usize, "{from} → {to}: {s} {w:?}");
            }
        }
        // A flat picture stays flat; the centred square is taken from a wide one.
        let mut img = image::RgbaImage::from_pixel(900, 640, image::Rgba([10, 200, 30, 255]));
        for y in 0..640 {
            for x in 0..130 {
                img.put_pixel(x, y, image::Rgba([255, 0, 0, 255]));
                img.put_pixel(899 - x, y, image::Rgba([255, 0, 0, 255]));
            }
        }
        let s = scale_avatar(&img, 200);
        assert_eq!(s.dimensions(), (200, 200));
        assert!(s.pixels().all(|p| p.0 == [10, 200, 30, 255]), "{:?}", s.get_pixel(0, 0));
        // Halves: each output pixel the mean of a 2 × 2 block.
        let img = image::RgbaImage::from_fn(4, 4, |x, y| image::Rgba([(x * 60) as u8, (y * 60) as u8, 0, 255]));
        let s = scale_avatar(&img, 2);
        assert_eq!(s.get_pixel(1, 0).0, [150, 30, 0, 255]);
        assert_eq!(scale_avatar(&img, 8).dimensions(), (8, 8));
    }

    #[test]
    fn jpeg_avatars_are_decoded_at_the_smallest_scale_that_covers_the_box() {
        let jpeg = |img: image::DynamicImage| {
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
            out.into_inner()
        };
        let photo = jpeg(image::DynamicImage::ImageRgb8(image::RgbImage::new(640, 480)));
        let size = |want| decode_jpeg_scaled(&photo, want).map(|i| i.dimensions());
        assert_eq!(size(200), Some((320, 240)), "the short side, 480, covers 200 at a half");
        assert_eq!(size(100), Some((160, 120)));
        assert_eq!(size(60), Some((80, 60)));
        assert_eq!(size(241), Some((640, 480)), "a half would be 240: too small");
        let grey = jpeg(image::DynamicImage::ImageLuma8(image::GrayImage::new(64, 64)));
        assert_eq!(decode_jpeg_scaled(&grey, 16).map(|i| i.dimensions()), Some((16, 16)));
        // What this path does not take falls back to the general decoder, within its limits.
        assert!(decode_jpeg_scaled(b"not a jpeg", 200).is_none());
        assert_eq!(decode_avatar(&photo, 200).map(|i| i.dimensions()), Some((320, 240)));
    }

    #[test]
    fn blending_is_source_over() {
        let mut px = [255u8, 255, 255, 255];
        blend(&mut px, 0, 0, 0, 255);
        assert_eq!(px, [0, 0, 0, 255]);
        let mut px = [255u8, 255, 255, 255];
        blend(&mut px, 0, 0, 0, 128);
        assert!((126..=128).contains(&px[0]), "{px:?}");
        assert_eq!(over_white(Rgba([0, 0, 0, 0])), Rgba::WHITE);
    }
}
