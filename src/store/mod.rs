//! SQL, one small module per aggregate. Functions take `&mut PgConnection` so that a handler can
//! compose several inside one transaction; none of them commits.

pub mod alerts;
pub mod audit;
pub mod automation;
pub mod bot_activity;
pub mod bridges;
pub mod broadcasts;
pub mod checkin_poster;
pub mod checkins;
pub mod groups;
pub mod invite_links;
pub mod invites;
pub mod jobs;
pub mod live_codes;
pub mod member_page;
pub mod members;
pub mod memberships;
pub mod moderation;
pub mod operators;
pub mod outbound;
pub mod points;
pub mod posters;
pub mod questionnaire;
pub mod rule_sets;
pub mod scan_events;
pub mod secrets;
pub mod system;
pub mod tokens;

/// A connection for code that reads from per-process caches first: one the caller holds (a
/// transaction, say), or one taken from the pool only when a cache misses. A webhook answered
/// from the caches alone (plain chat) then never waits for a connection while every one of
/// them is busy committing.
pub enum Conn<'a> {
    Held(&'a mut sqlx::PgConnection),
    Lazy(&'a sqlx::PgPool, Option<sqlx::pool::PoolConnection<sqlx::Postgres>>),
}

impl<'a> Conn<'a> {
    /// A connection taken from `pool` on first use.
    pub fn lazy(pool: &'a sqlx::PgPool) -> Conn<'a> {
        Conn::Lazy(pool, None)
    }

    pub async fn get(&mut self) -> sqlx::Result<&mut sqlx::PgConnection> {
        match self {
            Conn::Held(c) => Ok(&mut **c),
            Conn::Lazy(_, Some(c)) => Ok(&mut **c),
            Conn::Lazy(pool, slot) => Ok(&mut **slot.insert(pool.acquire().await?)),
        }
    }
}

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

/// How many rows a list counts exactly before it says "more than": a count past this would read
/// every matching row on each page view.
pub const COUNT_CAP: i64 = 10_000;

/// A list's total, exact only where that is cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    Exact(i64),
    /// The planner's estimate of the whole table (`pg_class.reltuples`), for the unfiltered list.
    About(i64),
    /// At least this many (the count stopped at [`COUNT_CAP`]).
    MoreThan(i64),
    /// Not counted: a search too short for the trigram index would read every member.
    Unknown,
}

/// The planner's estimate of a table's rows: `pg_class.reltuples` (kept by ANALYZE and
/// autovacuum) scaled to the table's current size, as the planner does. None before the table
/// was first analysed.
pub async fn estimated_rows(conn: &mut sqlx::PgConnection, table: &str) -> sqlx::Result<Option<i64>> {
    let n: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT CASE WHEN c.reltuples < 0 THEN NULL
                     WHEN c.relpages = 0 THEN c.reltuples::bigint
                     ELSE (c.reltuples / c.relpages
                           * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint END
         FROM pg_class c WHERE c.oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?;
    Ok(n.flatten())
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
