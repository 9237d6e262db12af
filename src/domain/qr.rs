//! Checking uploaded images: PNG or JPEG, decodable within size, side and memory limits, scaled
//! to a public size and encoded again; a group QR image must hold a QR code a phone could scan.
//! Also rendering QR codes. Pure and CPU-bound: call it through `web::upload::decode_image`.

use sha2::{Digest, Sha256};

/// A validated group QR image, ready to store: re-encoded at a public size (see [`public_image`]).
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

/// An uploaded image made fit to be served to anyone: decoded within limits, scaled down to
/// [`PUBLIC_SIDE`], and encoded again, so that no metadata (location, camera) survives.
#[derive(Debug, Clone)]
pub struct PublicImage {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
}

/// Largest side, in pixels, that is decoded at all: a phone screenshot is about 1080 × 2400;
/// a bigger picture costs memory and time out of proportion (an 8000 × 8000 PNG of 265 KB
/// decodes to 256 MB).
pub const MAX_SIDE: u32 = 4096;
/// Longest side of a stored (and publicly served) image: a phone screen's width.
pub const PUBLIC_SIDE: u32 = 1080;
/// Most memory the decoder may allocate: a 4096 × 4096 RGBA image (64 MiB) with room to spare.
const MAX_ALLOC: u64 = 96 * 1024 * 1024;
/// Images are scaled down to this before looking for the QR code, to bound the work.
const DETECT_SIDE: u32 = 1200;

/// Decodes a PNG or JPEG of at most `max_bytes` and `MAX_SIDE` pixels a side; `Err` holds the
/// i18n key of the reason. Poster backgrounds are checked with it too (`poster::background`).
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<(image::DynamicImage, image::ImageFormat), &'static str> {
    if bytes.is_empty() {
        return Err("error.file_empty");
    }
    if bytes.len() > max_bytes {
        return Err("error.file_too_large");
    }
    let format = image::guess_format(bytes).map_err(|_| "error.not_an_image")?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err("error.image_format");
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => "error.image_dimensions",
        _ => "error.not_an_image",
    })?;
    Ok((img, format))
}

/// `img` scaled to at most `PUBLIC_SIDE` and encoded as its upload was (JPEG stays JPEG, at
/// quality 85; anything else becomes an 8-bit PNG).
fn reencode(
    img: &image::DynamicImage,
    format: image::ImageFormat,
) -> Result<(image::DynamicImage, PublicImage), &'static str> {
    use image::DynamicImage as D;
    let scaled = if img.width().max(img.height()) > PUBLIC_SIDE {
        img.resize(PUBLIC_SIDE, PUBLIC_SIDE, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let content_type = if format == image::ImageFormat::Jpeg {
        let rgb = scaled.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(&rgb)
            .map_err(|_| "error.not_an_image")?;
        "image/jpeg"
    } else {
        let eight_bit = match &scaled {
            D::ImageLuma8(_) | D::ImageLumaA8(_) | D::ImageRgb8(_) | D::ImageRgba8(_) => None,
            other if other.color().has_alpha() => Some(D::ImageRgba8(other.to_rgba8())),
            other => Some(D::ImageRgb8(other.to_rgb8())),
        };
        eight_bit
            .as_ref()
            .unwrap_or(&scaled)
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(|_| "error.not_an_image")?;
        "image/png"
    };
    let bytes = out.into_inner();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let (width, height) = (scaled.width(), scaled.height());
    Ok((scaled, PublicImage { content_type, bytes, sha256, width, height }))
}

/// Any picture to show the public (a fallback contact image), made safe to serve. CPU-bound:
/// call it through `web::upload::decode_image`.
pub fn public_image(bytes: Vec<u8>, max_bytes: usize) -> Result<PublicImage, &'static str> {
    let (img, format) = decode(&bytes, max_bytes)?;
    drop(bytes);
    Ok(reencode(&img, format)?.1)
}

/// Validates `bytes` (at most `max_bytes`) as a group QR image and re-encodes it to store;
/// `Err` holds the i18n key of the reason. The QR code is looked for in the image as it will
/// be shown (a phone scans that one), then at full size. CPU-bound: call it through
/// `web::upload::decode_image`.
pub fn validate(bytes: Vec<u8>, max_bytes: usize) -> Result<QrImage, &'static str> {
    let (img, format) = decode(&bytes, max_bytes)?;
    drop(bytes);
    let (scaled, public) = reencode(&img, format)?;
    let shown = find_qr_gray(&scaled.to_luma8());
    let was_scaled = scaled.width() != img.width();
    drop(scaled);
    let payload = match shown {
        Some(p) => Some(p),
        None if was_scaled => {
            let luma = img.to_luma8();
            drop(img);
            find_qr_gray(&luma)
        }
        None => None,
    };
    let payload = payload.ok_or("error.no_qr")?;
    let PublicImage { content_type, bytes, sha256, width, height } = public;
    Ok(QrImage { content_type, bytes, sha256, payload, width, height })
}

/// The text of the first readable QR code in `img`, trying the full image and a downscaled copy.
pub fn find_qr(img: &image::DynamicImage) -> Option<String> {
    find_qr_gray(&img.to_luma8())
}

/// [`find_qr`] on a greyscale image (what the QR search works on: a quarter of RGBA's memory).
pub fn find_qr_gray(luma: &image::GrayImage) -> Option<String> {
    let try_decode = |luma: image::GrayImage| -> Option<String> {
        let mut prepared = rqrr::PreparedImage::prepare(luma);
        prepared.detect_grids().into_iter().find_map(|g| g.decode().ok().map(|(_, text)| text))
    };
    let side = luma.width().max(luma.height());
    let big = side > DETECT_SIDE;
    let first = if big {
        let fit = |v: u32| ((v as u64 * DETECT_SIDE as u64 / side as u64) as u32).max(1);
        image::imageops::thumbnail(luma, fit(luma.width()), fit(luma.height()))
    } else {
        luma.clone()
    };
    try_decode(first).or_else(|| {
        // Small codes in a big picture may only survive at full size.
        big.then(|| try_decode(luma.clone())).flatten()
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

    #[test]
    fn images_past_the_side_limit_are_refused_and_others_scaled_to_the_public_size() {
        let encode = |img: image::GrayImage| {
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png).unwrap();
            out.into_inner()
        };
        let huge = encode(image::GrayImage::from_pixel(MAX_SIDE + 1, 8, image::Luma([255])));
        assert_eq!(public_image(huge, 2 << 20).unwrap_err(), "error.image_dimensions");
        let big = encode(image::GrayImage::from_pixel(2000, 1000, image::Luma([200])));
        let p = public_image(big, 2 << 20).unwrap();
        assert_eq!((p.width, p.height), (PUBLIC_SIDE, PUBLIC_SIDE / 2));
        assert_eq!(p.content_type, "image/png");
        let back = image::load_from_memory(&p.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (PUBLIC_SIDE, PUBLIC_SIDE / 2));
    }
}
