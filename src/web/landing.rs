//! The live-code form's landing-page part: the logo upload, checked like every public image.

use axum::http::StatusCode;

use super::upload;
use crate::domain::qr::{self, PublicImage};
use crate::error::FieldErrors;
use crate::AppState;

/// The form's `logo` file, decoded and re-encoded at a public size: None when none was sent;
/// an error on `logo` (and the status to answer) when it is too large or not a PNG/JPEG.
pub async fn logo_upload(
    state: &AppState,
    form: &upload::MultipartForm,
    errors: &mut FieldErrors,
) -> Result<Option<PublicImage>, StatusCode> {
    let Some(u) = form.file("logo") else { return Ok(None) };
    if u.too_large {
        errors.add("logo", "error.file_too_large");
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let (bytes, max) = (u.bytes.clone(), state.config.http.max_upload_bytes);
    match upload::decode_image(state, move || qr::public_image(bytes, max)).await {
        Some(Ok(img)) => Ok(Some(img)),
        Some(Err(key)) => {
            errors.add("logo", key);
            Err(StatusCode::UNPROCESSABLE_ENTITY)
        }
        None => {
            errors.add("logo", "error.not_an_image");
            Err(StatusCode::UNPROCESSABLE_ENTITY)
        }
    }
}
