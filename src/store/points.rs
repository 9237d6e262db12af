//! The points ledger: append-only entries, a balance kept beside them in the same transaction,
//! never negative, and idempotency keys so that an award is applied once.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub member_id: i64,
    pub delta: i64,
    pub kind: String,
    pub reference: String,
    pub idempotency_key: String,
    #[serde(skip)]
    pub request_hash: Option<String>,
    pub operator_id: Option<i64>,
    pub note: String,
    pub at: DateTime<Utc>,
}

pub struct NewEntry<'a> {
    pub member_id: i64,
    pub delta: i64,
    pub kind: &'a str,
    pub reference: &'a str,
    pub idempotency_key: &'a str,
    pub request_hash: Option<&'a str>,
    pub operator_id: Option<i64>,
    pub note: &'a str,
}

#[derive(Debug)]
pub enum Applied {
    /// Written now; `balance` is the account's balance after it.
    New { entry: Entry, balance: i64 },
    /// The key was used before: the original entry.
    Existing(Entry),
    /// A spend larger than the balance: nothing written.
    Insufficient { balance: i64 },
}

const COLUMNS: &str = "id, member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note, at";

pub async fn by_key(conn: &mut PgConnection, key: &str) -> sqlx::Result<Option<Entry>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM points_ledger WHERE idempotency_key = $1"))
        .bind(key)
        .fetch_optional(conn)
        .await
}

pub async fn balance(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar("SELECT balance FROM points_accounts WHERE member_id = $1")
        .bind(member_id)
        .fetch_optional(conn)
        .await?
        .unwrap_or(0))
}

/// The ledger rows of the `credits` CTE whose keys are new (CTE `entries`).
macro_rules! ledger_entries {
    () => {
        "entries AS (
            INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note)
            SELECT member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note FROM credits
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note, at
         )"
    };
}
pub(crate) use ledger_entries;

/// The ledger's writing half, for statements that credit points as part of something bigger
/// (a check-in): to follow a CTE named `credits` with the columns of [`NewEntry`] (`member_id,
/// delta, kind, reference, idempotency_key, request_hash, operator_id, note`, every delta > 0).
/// Each row whose key is new becomes an entry (CTE `entries`), and each member's balance grows by
/// the sum of their new entries in the same statement (CTE `account`: `member_id, balance` after).
/// A key used before writes nothing; a concurrent request with the same key waits on the unique
/// index and then finds it taken.
macro_rules! credit_ctes {
    () => {
        concat!(
            $crate::store::points::ledger_entries!(),
            ", account AS (
                INSERT INTO points_accounts (member_id, balance)
                SELECT member_id, sum(delta)::bigint FROM entries GROUP BY member_id
                ON CONFLICT (member_id) DO UPDATE SET balance = points_accounts.balance + EXCLUDED.balance, updated_at = now()
                RETURNING member_id, balance
             )"
        )
    };
}
pub(crate) use credit_ctes;

/// One entry as the `credits` CTE of [`credit_ctes`] (or of a spend) wants it.
macro_rules! one_entry {
    () => {
        "WITH credits (member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note) AS (
            VALUES ($1::bigint, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::bigint, $8::text)
         ), "
    };
}

#[derive(sqlx::FromRow)]
struct Written {
    #[sqlx(flatten)]
    entry: Entry,
    balance: i64,
}

/// Applies one entry inside the caller's transaction.
///
/// A credit is one statement ([`credit_ctes`]). A spend first locks the account row, so
/// concurrent spends are ordered and the never-negative check cannot be raced (the `CHECK
/// (balance >= 0)` on the account is the last line behind it), then writes the entry and the
/// balance in one statement. Either way a key used before writes nothing and returns its entry.
pub async fn apply(conn: &mut PgConnection, e: NewEntry<'_>) -> sqlx::Result<Applied> {
    let query = if e.delta < 0 {
        let balance: i64 = sqlx::query_scalar(
            "INSERT INTO points_accounts (member_id) VALUES ($1)
             ON CONFLICT (member_id) DO UPDATE SET updated_at = points_accounts.updated_at RETURNING balance",
        )
        .bind(e.member_id)
        .fetch_one(&mut *conn)
        .await?;
        if balance + e.delta < 0 {
            return Ok(match by_key(conn, e.idempotency_key).await? {
                Some(existing) => Applied::Existing(existing),
                None => Applied::Insufficient { balance },
            });
        }
        // The account exists (locked above). An upsert cannot take a spend: PostgreSQL checks
        // `balance >= 0` on the proposed new row before it notices the conflict.
        concat!(
            one_entry!(),
            ledger_entries!(),
            ", account AS (
                UPDATE points_accounts SET balance = balance + entries.delta, updated_at = now() FROM entries
                WHERE points_accounts.member_id = entries.member_id RETURNING balance
             )
             SELECT entries.*, account.balance FROM entries, account"
        )
    } else {
        concat!(one_entry!(), credit_ctes!(), " SELECT entries.*, account.balance FROM entries, account")
    };
    let written: Option<Written> = sqlx::query_as(query)
        .bind(e.member_id)
        .bind(e.delta)
        .bind(e.kind)
        .bind(e.reference)
        .bind(e.idempotency_key)
        .bind(e.request_hash)
        .bind(e.operator_id)
        .bind(e.note)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match written {
        Some(w) => Applied::New { entry: w.entry, balance: w.balance },
        // The key was used before (perhaps by a request that raced this one): that entry stands.
        None => Applied::Existing(by_key(conn, e.idempotency_key).await?.ok_or(sqlx::Error::RowNotFound)?),
    })
}

pub async fn entries(conn: &mut PgConnection, member_id: i64, limit: i64) -> sqlx::Result<Vec<Entry>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM points_ledger WHERE member_id = $1 ORDER BY at DESC, id DESC LIMIT $2"
    ))
    .bind(member_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}
