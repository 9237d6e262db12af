//! Reading `multipart/form-data` forms: text fields into a map, at most one file; and checking
//! uploaded images off the request workers, a bounded number at a time.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::Multipart;

use crate::error::AppError;

pub struct Upload {
    pub field: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The file was larger than allowed; `bytes` holds only its beginning.
    pub too_large: bool,
}

pub struct MultipartForm {
    pub fields: HashMap<String, String>,
    /// Files that were actually chosen (an empty file input sends an empty part: skipped).
    pub files: Vec<Upload>,
}

impl MultipartForm {
    pub fn text(&self, name: &str) -> String {
        self.fields.get(name).cloned().unwrap_or_default()
    }
    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files.iter().find(|f| f.field == name)
    }
}

/// Reads the whole form. A file over `max_file` bytes is marked `too_large` (the rest of it is
/// skipped, so the other fields can still be shown again with an error).
pub async fn read(mut mp: Multipart, max_file: usize) -> Result<MultipartForm, AppError> {
    let mut form = MultipartForm { fields: HashMap::new(), files: Vec::new() };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        match field.file_name().map(str::to_string) {
            Some(file_name) => {
                let mut bytes = Vec::new();
                let mut too_large = false;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > max_file {
                        too_large = true;
                    } else if !too_large {
                        bytes.extend_from_slice(&chunk);
                    }
                }
                if too_large || !(file_name.is_empty() && bytes.is_empty()) {
                    form.files.push(Upload { field: name, file_name, bytes, too_large });
                }
            }
            None => {
                let text = field.text().await.map_err(bad)?;
                form.fields.insert(name, text);
            }
        }
    }
    Ok(form)
}

fn bad(e: axum::extract::multipart::MultipartError) -> AppError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge
    } else {
        AppError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Runs image work (`domain::qr::validate`, `public_image`) on the blocking pool, at most
/// `http.image_decodes` at once per process: each may take about 100 MB and a second of CPU,
/// so ten uploads at once must not take ten times that. `None` when the work panicked.
pub async fn decode_image<T: Send + 'static>(
    state: &crate::AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    let permits =
        PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(state.config.http.image_decodes.max(1)))).clone();
    let permit = permits.acquire_owned().await.ok()?;
    // The permit goes with the work: a request given up by its client does not free it early.
    tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await
    .ok()
}
