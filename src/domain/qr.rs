//! Checking an uploaded group QR image: PNG or JPEG, decodable, within size limits, and holding
//! a QR code that a phone could scan. Pure and CPU-bound: call it from `spawn_blocking`.

use sha2::{Digest, Sha256};

/// A validated group QR image, ready to store.
#[derive(Debug, Clone)]
pub struct QrImage {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// What the QR code says (the group's join link).
    pub payload: String,
    pub width: u32,
    pub height: u32,
}

/// Largest side, in pixels, that is decoded at all (a phone photo is about 4000).
const MAX_SIDE: u32 = 8000;
/// Images are scaled down to this before looking for the QR code, to bound the work.
const DETECT_SIDE: u32 = 1200;

/// Validates `bytes` (at most `max_bytes`); `Err` holds the i18n key of the reason.
pub fn validate(bytes: Vec<u8>, max_bytes: usize) -> Result<QrImage, &'static str> {
    if bytes.is_empty() {
        return Err("error.file_empty");
    }
    if bytes.len() > max_bytes {
        return Err("error.file_too_large");
    }
    let format = image::guess_format(&bytes).map_err(|_| "error.not_an_image")?;
    let content_type = match format {
        image::ImageFormat::Png => "image/png",
        image::ImageFormat::Jpeg => "image/jpeg",
        _ => return Err("error.image_format"),
    };
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let img = reader.decode().map_err(|_| "error.not_an_image")?;
    let (width, height) = (img.width(), img.height());
    let payload = find_qr(&img).ok_or("error.no_qr")?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(QrImage { content_type, bytes, sha256, payload, width, height })
}

/// The text of the first readable QR code in `img`, trying the full image and a downscaled copy.
pub fn find_qr(img: &image::DynamicImage) -> Option<String> {
    let try_decode = |luma: image::GrayImage| -> Option<String> {
        let mut prepared = rqrr::PreparedImage::prepare(luma);
        prepared.detect_grids().into_iter().find_map(|g| g.decode().ok().map(|(_, text)| text))
    };
    let scaled =
        if img.width().max(img.height()) > DETECT_SIDE { img.thumbnail(DETECT_SIDE, DETECT_SIDE) } else { img.clone() };
    try_decode(scaled.to_luma8()).or_else(|| {
        // Small codes in a big picture may only survive at full size.
        (img.width().max(img.height()) > DETECT_SIDE).then(|| try_decode(img.to_luma8())).flatten()
    })
}

/// The dark/light modules of a QR code for `text` (error correction M), with its width.
fn modules(text: &str) -> Option<(usize, Vec<bool>)> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).ok()?;
    let w = code.width();
    Some((w, code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect()))
}

/// A QR code as a PNG of `size`×`size` pixels (at least one pixel per module), with the
/// standard four-module quiet zone.
pub fn render_png(text: &str, size: u32) -> Option<Vec<u8>> {
    let (w, dark) = modules(text)?;
    let total = (w + 8) as u32;
    let scale = (size / total).max(1);
    let side = (size).max(total * scale);
    let offset = (side - total * scale) / 2;
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        let inside = |v: u32| v >= offset && v < offset + total * scale;
        if !inside(x) || !inside(y) {
            return image::Luma([255]);
        }
        let (mx, my) = (((x - offset) / scale) as i64 - 4, ((y - offset) / scale) as i64 - 4);
        let is_dark =
            mx >= 0 && my >= 0 && (mx as usize) < w && (my as usize) < w && dark[my as usize * w + mx as usize];
        image::Luma([if is_dark { 0 } else { 255 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

/// A QR code as SVG: one path of unit squares on a white background, scalable for print.
pub fn render_svg(text: &str) -> Option<String> {
    let (w, dark) = modules(text)?;
    let total = w + 8;
    let mut path = String::with_capacity(w * w * 8);
    for y in 0..w {
        for x in 0..w {
            if dark[y * w + x] {
                path.push_str(&format!("M{} {}h1v1h-1z", x + 4, y + 4));
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {total} {total}\" width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\"><rect width=\"{total}\" height=\"{total}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>\n",
        px = total * 8
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_pngs_decode_back_to_their_text() {
        for size in [256, 1024] {
            let png = render_png("https://shoal.example/l/abc?ch=flyer", size).unwrap();
            let img = image::load_from_memory(&png).unwrap();
            assert!(img.width() >= size && img.width() < size + 64);
            assert_eq!(find_qr(&img).as_deref(), Some("https://shoal.example/l/abc?ch=flyer"));
        }
    }

    #[test]
    fn uploads_are_checked_for_a_qr_code() {
        let png = render_png("https://weixin.qq.com/g/x", 400).unwrap();
        assert_eq!(validate(png, 2 << 20).unwrap().payload, "https://weixin.qq.com/g/x");
        assert_eq!(validate(b"GIF89a....".to_vec(), 2 << 20).unwrap_err(), "error.image_format");
        assert_eq!(validate(vec![1, 2, 3], 2 << 20).unwrap_err(), "error.not_an_image");
    }
}
