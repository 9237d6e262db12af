//! The scan event writer's SQL (`scan::events`): a batch's session settings, the binary COPY
//! into `scan_events`, the daily counters and the unique-visitor sketches, all inside the
//! writer's transaction.

use chrono::NaiveDate;
use sqlx::postgres::PgCopyIn;
use sqlx::PgConnection;

use crate::domain::live_code::ScanOutcome;

/// The columns of `scan_events` in the order the writer encodes them, as a binary COPY.
const COPY: &str = "COPY scan_events (at, live_code_id, channel, target_id, group_id, outcome, visitor, ref, ua_class, ip_anon) FROM STDIN (FORMAT binary)";

/// For the rest of the batch's transaction: no waiting for the WAL flush (a database crash may
/// lose the last moments of analytics, as a Shoal crash may) and no statement timeout (a batch
/// is fed over most of a tick, and longer while the database is slow).
pub async fn relax_batch(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('synchronous_commit', 'off', true), set_config('statement_timeout', '0', true)")
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts the binary COPY of a batch's events; the caller sends the encoded rows and finishes it.
pub async fn copy_in(conn: &mut PgConnection) -> sqlx::Result<PgCopyIn<&mut PgConnection>> {
    conn.copy_in_raw(COPY).await
}

/// One daily counter to add to: (live code, day, channel, target or 0, outcome) and the scans.
pub struct DailyCount {
    pub live_code_id: i64,
    pub day: NaiveDate,
    pub channel: String,
    pub target_id: i64,
    pub outcome: ScanOutcome,
    pub scans: i64,
}

/// Adds a batch's counts to `scan_daily`, in one statement.
pub async fn add_daily(conn: &mut PgConnection, counts: &[DailyCount]) -> sqlx::Result<()> {
    let codes: Vec<i64> = counts.iter().map(|c| c.live_code_id).collect();
    let days: Vec<NaiveDate> = counts.iter().map(|c| c.day).collect();
    let channels: Vec<&str> = counts.iter().map(|c| c.channel.as_str()).collect();
    let targets: Vec<i64> = counts.iter().map(|c| c.target_id).collect();
    let outcomes: Vec<&str> = counts.iter().map(|c| c.outcome.as_str()).collect();
    let scans: Vec<i64> = counts.iter().map(|c| c.scans).collect();
    sqlx::query(
        "INSERT INTO scan_daily (live_code_id, day, channel, target_id, outcome, scans)
         SELECT * FROM UNNEST($1::bigint[], $2::date[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
         ON CONFLICT (live_code_id, day, channel, target_id, outcome) DO UPDATE SET scans = scan_daily.scans + EXCLUDED.scans",
    )
    .bind(&codes)
    .bind(&days)
    .bind(&channels)
    .bind(&targets)
    .bind(&outcomes)
    .bind(&scans)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a day's unique-visitor sketch when there is none yet; false when one exists (merge
/// it with [`locked_uniques`] and [`set_uniques`]).
pub async fn insert_uniques(
    conn: &mut PgConnection,
    code: i64,
    day: NaiveDate,
    channel: &str,
    registers: &[u8],
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "INSERT INTO scan_daily_uniques (live_code_id, day, channel, registers) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(code)
    .bind(day)
    .bind(channel)
    .bind(registers)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The stored sketch, locked until the transaction ends.
pub async fn locked_uniques(
    conn: &mut PgConnection,
    code: i64,
    day: NaiveDate,
    channel: &str,
) -> sqlx::Result<Vec<u8>> {
    sqlx::query_scalar(
        "SELECT registers FROM scan_daily_uniques WHERE live_code_id = $1 AND day = $2 AND channel = $3 FOR UPDATE",
    )
    .bind(code)
    .bind(day)
    .bind(channel)
    .fetch_one(conn)
    .await
}

pub async fn set_uniques(
    conn: &mut PgConnection,
    code: i64,
    day: NaiveDate,
    channel: &str,
    registers: &[u8],
) -> sqlx::Result<()> {
    sqlx::query("UPDATE scan_daily_uniques SET registers = $4 WHERE live_code_id = $1 AND day = $2 AND channel = $3")
        .bind(code)
        .bind(day)
        .bind(channel)
        .bind(registers)
        .execute(conn)
        .await?;
    Ok(())
}
