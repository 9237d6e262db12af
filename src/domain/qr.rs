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
