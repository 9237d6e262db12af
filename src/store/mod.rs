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

impl Page {
    pub fn new(number: Option<i64>, size: i64) -> Page {
        Page { number: number.unwrap_or(1).max(1), size }
    }
    pub fn offset(&self) -> i64 {
        (self.number - 1) * self.size
    }
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
