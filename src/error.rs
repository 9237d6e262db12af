//! One error type for the whole service. It answers `application/problem+json` (RFC 9457); the
//! admin UI's `html_errors` layer turns those answers into a localised HTML page, so a handler
//! never has to know which audience it serves. 5xx details are logged, never sent.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::i18n::Lang;

/// Field name → i18n message keys (rendered per language in forms, in English in the API);
/// and, for a field that must be one of a fixed set of values, those values (listed in the API's
/// problem document).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(pub BTreeMap<String, Vec<&'static str>>, pub BTreeMap<String, &'static [&'static str]>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, field: &str, key: &'static str) {
        self.0.entry(field.to_string()).or_default().push(key);
    }
    /// `field` is not one of `allowed` (`error.choice`, with the values for the API).
    pub fn add_choice(&mut self, field: &str, allowed: &'static [&'static str]) {
        self.add(field, "error.choice");
        self.1.insert(field.to_string(), allowed);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    /// Messages for one field in `lang`, for templates.
    pub fn get(&self, field: &str, lang: Lang) -> Vec<&'static str> {
        self.0.get(field).map(|keys| keys.iter().map(|k| crate::i18n::t(lang, k)).collect()).unwrap_or_default()
    }
    /// Moves the messages of `from` to `to` (a form that names a field differently from the
    /// domain type it is parsed into).
    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(keys) = self.0.remove(from) {
            self.0.entry(to.to_string()).or_default().extend(keys);
        }
        if let Some(allowed) = self.1.remove(from) {
            self.1.insert(to.to_string(), allowed);
        }
    }
    /// `Ok(v)` when no error was recorded, else `Err(Validation)`.
    pub fn into_result<T>(self, v: T) -> Result<T, AppError> {
        if self.is_empty() {
            Ok(v)
        } else {
            Err(AppError::Validation(self))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("authentication required")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF token missing or invalid")]
    Csrf,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Well-formed but not acceptable (e.g. JSON of the wrong shape), with a reason.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Other(anyhow::anyhow!("template rendering failed: {e}"))
    }
}

/// Marker placed in a response's extensions so the HTML layer knows it came from `AppError`.
#[derive(Clone, Copy, Debug)]
pub struct ErrorMarker(pub StatusCode);

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldProblem>>,
}

#[derive(Serialize)]
struct FieldProblem {
    field: String,
    messages: Vec<&'static str>,
    /// The values the field may take, when it must be one of a fixed set.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed: Option<&'static [&'static str]>,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Validation(_) | AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Database(sqlx::Error::RowNotFound) => StatusCode::NOT_FOUND,
            AppError::Database(sqlx::Error::PoolTimedOut) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Database(_) | AppError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            AppError::NotFound | AppError::Database(sqlx::Error::RowNotFound) => "not-found",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden => "forbidden",
            AppError::Csrf => "csrf",
            AppError::Conflict(_) => "conflict",
            AppError::Validation(_) | AppError::Unprocessable(_) => "validation",
            AppError::BadRequest(_) => "bad-request",
            AppError::PayloadTooLarge => "payload-too-large",
            AppError::UnsupportedMediaType => "unsupported-media-type",
            AppError::TooManyRequests { .. } => "too-many-requests",
            AppError::Database(sqlx::Error::PoolTimedOut) => "unavailable",
            AppError::Database(_) | AppError::Other(_) => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let detail = match &self {
            AppError::Conflict(d) | AppError::BadRequest(d) | AppError::Unprocessable(d) => Some(d.clone()),
            AppError::Csrf => Some("CSRF token missing or invalid; reload the form and try again".into()),
            AppError::Validation(_) => Some("one or more fields are invalid".into()),
            _ => None,
        };
        let errors = match &self {
            AppError::Validation(fe) => Some(
                fe.0.iter()
                    .map(|(field, keys)| FieldProblem {
                        field: field.clone(),
                        messages: keys.iter().map(|k| crate::i18n::t(Lang::En, k)).collect(),
                        allowed: fe.1.get(field).copied(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        let kind = format!("/problems/{}", self.slug());
        let body = Problem { kind: &kind, title, status: status.as_u16(), detail, errors };
        let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let AppError::TooManyRequests { retry_after_secs } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if matches!(status, StatusCode::UNAUTHORIZED) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp.extensions_mut().insert(ErrorMarker(status));
        resp
    }
}

/// Maps a unique-constraint violation on `constraint` to a field validation error.
pub fn on_unique(err: sqlx::Error, constraint: &str, field: &str, key: &'static str) -> AppError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() && db.constraint() == Some(constraint) {
            let mut fe = FieldErrors::new();
            fe.add(field, key);
            return AppError::Validation(fe);
        }
    }
    AppError::Database(err)
}

pub type AppResult<T> = Result<T, AppError>;

impl FieldErrors {
    /// `invalid` when the field has an error, for the field's CSS class.
    pub fn class(&self, field: &str) -> &'static str {
        if self.has(field) {
            "invalid"
        } else {
            ""
        }
    }

    /// The field's messages as `<p class="field-error">` elements. Safe to emit unescaped: the
    /// messages are our own locale strings, escaped here anyway.
    pub fn html(&self, field: &str, lang: Lang) -> String {
        self.get(field, lang)
            .into_iter()
            .map(|m| format!("<p class=\"field-error\" id=\"err-{}\">{}</p>", escape(field), escape(m)))
            .collect()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
