//! SQL, one small module per aggregate. Functions take `&mut PgConnection` so that a handler can
//! compose several inside one transaction; none of them commits.

pub mod alerts;
pub mod audit;
pub mod groups;
pub mod jobs;
pub mod live_codes;
pub mod members;
pub mod operators;
pub mod points;
pub mod tokens;

/// Offset pagination for the admin UI.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub number: i64,
    pub size: i64,
}

/// The highest page number a list answers; any larger number (up to `i64::MAX`, which would
/// overflow the offset) shows this page, which is empty unless the list is that long.
pub const MAX_PAGE: i64 = 1_000_000;

impl Page {
    pub fn new(number: Option<i64>, size: i64) -> Page {
        Page { number: number.unwrap_or(1).clamp(1, MAX_PAGE), size }
    }
    pub fn offset(&self) -> i64 {
        (self.number - 1).saturating_mul(self.size)
    }
}

/// `?page=` as typed: a number too large for `i64` means the last page we answer, anything that
/// is not a number the first; a list never fails over its page number.
pub fn lenient_page<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let raw: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(raw.map(|s| {
        let s = s.trim();
        match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => MAX_PAGE,
            Err(_) => 1,
        }
    }))
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern and wraps it in `%…%`.
pub fn like_pattern(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 2);
    s.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}
