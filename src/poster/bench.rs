//! `shoal poster-bench`: how long an uncached poster takes to draw, on this machine, without a
//! server in the way (bench/posters.sh runs it next to the HTTP measurements).
//!
//! The poster is the one the performance target names: 1080 × 1920 with a background image, an
//! avatar picture, two text blocks with placeholders and a QR code. Fonts are loaded and the
//! template's static layer is drawn once, as a running Shoal does; then every iteration draws a
//! poster for a different member (a new name and QR link, the avatar decoded and scaled again)
//! and encodes it as JPEG — the work of a poster that is not in the cache, as `Posters::draw`
//! does it: only the cells of the JPEG grid the member's elements touch are drawn and encoded,
//! the rest copied from the static layer's JPEG (encoded once with the layer, in
//! `static_layer_us`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::template::{Align, Element, Layout, Rgba, Shape, TextStyle};
use super::{render, Format, PosterData, Posters, PostersConfig};

/// The benchmark's template layout.
pub fn layout() -> Layout {
    let text = |y: i32, size: u32, lines: u32, text: &str| Element::Text {
        style: TextStyle {
            x: 80,
            y,
            width: 920,
            font_size: size,
            color: Rgba([0x22, 0x22, 0x22, 255]),
            align: Align::Left,
            max_lines: lines,
            bold: false,
        },
        text: text.into(),
    };
    Layout {
        width: 1080,
        height: 1920,
        background_color: Rgba::WHITE,
        elements: vec![
            Element::Avatar { x: 80, y: 120, size: 200, shape: Shape::Round },
            text(380, 52, 3, "我是{name}，邀请你加入{campaign}！扫码进群，每天打卡领积分，连续七天还有额外奖励。"),
            text(640, 40, 2, "已连续打卡 {streak} 天，累计 {days} 天 · {date}"),
            Element::Qr { x: 340, y: 1300, size: 400, color: Rgba::BLACK },
        ],
    }
}

/// A photo-like background: smooth colour gradients with some texture (JPEG, 1080 × 1920).
pub fn background() -> Vec<u8> {
    let img = image::RgbImage::from_fn(1080, 1920, |x, y| {
        let (fx, fy) = (x as f32 / 1080.0, y as f32 / 1920.0);
        let wave = ((x as f32 / 37.0).sin() * (y as f32 / 53.0).cos() * 18.0) as i32;
        let c = |base: f32, span: f32| (base + span * (fx + fy) / 2.0 + wave as f32).clamp(0.0, 255.0) as u8;
        image::Rgb([c(250.0, -40.0), c(220.0, -30.0), c(180.0, 20.0)])
    });
    jpeg(&image::DynamicImage::ImageRgb8(img))
}

/// A member's picture: a 640 × 640 JPEG.
pub fn avatar() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 640, |x, y| image::Rgb([(x / 3) as u8, (y / 3) as u8, 160]));
    jpeg(&image::DynamicImage::ImageRgb8(img))
}

fn jpeg(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img.to_rgb8());
    out.into_inner()
}

/// The data of the `i`-th member's poster: a name with an emoji, the avatar, a reference link
/// and the campaign's variables.
pub fn data(i: usize, avatar: &[u8]) -> PosterData {
    PosterData {
        name: format!("成员{i}号🐟"),
        avatar: Some(avatar.to_vec()),
        qr_url: format!("https://shoal.example/l/spring?r=M{i:06}"),
        vars: BTreeMap::from([
            ("campaign".to_string(), "春季打卡营".to_string()),
            ("streak".to_string(), (i % 30).to_string()),
            ("days".to_string(), (i % 365).to_string()),
            ("date".to_string(), "2026-12-03".to_string()),
        ]),
    }
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `iterations` uncached posters; prints one `POSTERBENCH key=value …` line (times in µs)
/// and, with `out_dir`, writes the background, the template as an API body and one poster there.
pub fn run(cfg: &PostersConfig, iterations: usize, out_dir: Option<&Path>) -> anyhow::Result<()> {
    let posters = Posters::new(cfg);
    let t = Instant::now();
    let fonts = posters.fonts()?;
    let font_load = t.elapsed().as_micros();
    let layout = layout();
    let bg = background();
    let t = Instant::now();
    let base = posters.build_static_layer(Some((1, 1)), &layout, Some(&bg))?;
    let static_layer = t.elapsed().as_micros();
    let avatar = avatar();
    // Warm the glyph caches as a running server's are.
    for i in 0..3 {
        posters.draw(&base, &layout, &data(i, &avatar), Format::Jpeg)?;
    }
    let (mut total, mut draw, mut encode) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for i in 0..iterations.max(1) {
        let d = data(1000 + i, &avatar);
        let t0 = Instant::now();
        let rows = base.rows.as_ref().ok_or_else(|| anyhow::anyhow!("the static layer was not encoded"))?;
        let patches = render::draw_patches(&base.pixmap, &layout, &d, &fonts, rows.grid());
        let t1 = Instant::now();
        let bytes = rows.splice(&patches)?;
        let t2 = Instant::now();
        size = bytes.len();
        draw.push((t1 - t0).as_micros());
        encode.push((t2 - t1).as_micros());
        total.push((t2 - t0).as_micros());
    }
    for v in [&mut total, &mut draw, &mut encode] {
        v.sort_unstable();
    }
    println!(
        "POSTERBENCH iterations={} font_load_us={font_load} static_layer_us={static_layer} p50_us={} p90_us={} p99_us={} max_us={} draw_p50_us={} encode_p50_us={} jpeg_bytes={size}",
        total.len(),
        percentile(&total, 50.0),
        percentile(&total, 90.0),
        percentile(&total, 99.0),
        total.last().copied().unwrap_or(0),
        percentile(&draw, 50.0),
        percentile(&encode, 50.0),
    );
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("background.jpg"), &bg)?;
        let body = serde_json::json!({
            "name": "Bench poster",
            "width": layout.width,
            "height": layout.height,
            "background_color": layout.background_color.hex(),
            // The API takes elements as the stored layout writes them.
            "elements": serde_json::to_value(&layout.elements)?,
        });
        std::fs::write(dir.join("template.json"), serde_json::to_vec_pretty(&body)?)?;
        std::fs::write(dir.join("poster.jpg"), posters.draw(&base, &layout, &data(0, &avatar), Format::Jpeg)?)?;
    }
    Ok(())
}
