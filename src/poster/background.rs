//! Background images of poster templates: checked like every uploaded image (PNG or JPEG, at
//! most 4096 px a side and 96 MiB of decoder memory, `domain::qr::decode`), then scaled down to
//! the largest canvas and encoded again without metadata: JPEG (quality 90) when opaque, PNG
//! when it has transparency. CPU-bound: call it through `web::upload::decode_image`.

use sha2::{Digest, Sha256};

use super::template::{MAX_HEIGHT, MAX_WIDTH};

/// A checked background, ready to store.
#[derive(Debug, Clone)]
pub struct Background {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub width: u32,
    pub height: u32,
}

/// Checks and re-encodes an uploaded background; `Err` holds the i18n key of the reason.
pub fn validate(bytes: Vec<u8>, max_bytes: usize) -> Result<Background, &'static str> {
    let (img, _) = crate::domain::qr::decode(&bytes, max_bytes)?;
    drop(bytes);
    let fits = img.width() <= MAX_WIDTH && img.height() <= MAX_HEIGHT;
    let img = if fits { img } else { img.resize(MAX_WIDTH, MAX_HEIGHT, image::imageops::FilterType::Triangle) };
    let mut out = std::io::Cursor::new(Vec::new());
    let opaque = !img.color().has_alpha() || img.to_rgba8().pixels().all(|p| p.0[3] == 255);
    let content_type = if opaque {
        let rgb = img.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&rgb)
            .map_err(|_| "error.not_an_image")?;
        "image/jpeg"
    } else {
        image::DynamicImage::ImageRgba8(img.to_rgba8())
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(|_| "error.not_an_image")?;
        "image/png"
    };
    let bytes = out.into_inner();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Background { content_type, bytes, sha256, width: img.width(), height: img.height() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn backgrounds_are_scaled_to_the_largest_canvas_and_opaque_ones_become_jpeg() {
        let big = png(image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3000, 3000, image::Rgb([9, 9, 9]))));
        let b = validate(big, 8 << 20).unwrap();
        assert_eq!((b.width, b.height, b.content_type), (MAX_WIDTH, MAX_WIDTH, "image/jpeg"));
        let clear =
            png(image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(40, 40, image::Rgba([9, 9, 9, 100]))));
        assert_eq!(validate(clear, 8 << 20).unwrap().content_type, "image/png");
        assert_eq!(validate(b"GIF89a".to_vec(), 8 << 20).unwrap_err(), "error.image_format");
    }
}
