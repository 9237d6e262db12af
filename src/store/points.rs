//! The points ledger: append-only entries, a balance kept beside them in the same transaction,
//! never negative, and idempotency keys so that an award is applied once.
//!
//! [`post`] is the ledger's one writing function; [`credit_ctes`] is the same write as SQL, for
//! the one statement that records a check-in. Entries are never changed or deleted (a trigger
//! refuses it, and a member's deletion anonymises the member instead of deleting history).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::points::{IdempotencyKey, LedgerKind};
use crate::domain::Platform;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub member_id: i64,
    pub delta: i64,
    pub kind: LedgerKind,
    pub reference: String,
    pub idempotency_key: String,
    #[serde(skip)]
    pub request_hash: Option<String>,
    pub operator_id: Option<i64>,
    pub note: String,
    pub at: DateTime<Utc>,
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Posting<'a> {
    pub member_id: i64,
    /// Positive: a credit; negative: a spend (never below a zero balance).
    pub delta: i64,
    pub kind: LedgerKind,
    pub reference: &'a str,
    pub key: &'a IdempotencyKey,
    /// What the request that caused it held (API adjustments), to tell a replay from a
    /// conflicting reuse of the key.
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

pub async fn by_key(conn: &mut PgConnection, key: &IdempotencyKey) -> sqlx::Result<Option<Entry>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM points_ledger WHERE idempotency_key = $1"))
        .bind(key.as_str())
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

/// The ledger rows of the `credits` CTE whose keys are new (CTE `entries`), and their totals
/// added to the day's (CTE `ledger_day`, table `points_daily`) in the same statement: every
/// ledger write goes through here. A session adds to its own slot of the day's totals (backend
/// pid mod 64), so concurrent writers seldom wait for each other's row; the rows are locked in
/// one order (kind), so two statements cannot deadlock on them.
macro_rules! ledger_entries {
    () => {
        "entries AS (
            INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note)
            SELECT member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note FROM credits
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id, member_id, delta, kind, reference, idempotency_key, request_hash, operator_id, note, at
         ), ledger_day AS (
            INSERT INTO points_daily AS d (day, kind, slot, entries, earned, spent)
            SELECT (at AT TIME ZONE 'UTC')::date, kind, (pg_backend_pid() % 64)::smallint, count(*),
                   COALESCE(sum(delta) FILTER (WHERE delta > 0), 0), COALESCE(-sum(delta) FILTER (WHERE delta < 0), 0)
            FROM entries GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (day, kind, slot) DO UPDATE
                SET entries = d.entries + EXCLUDED.entries, earned = d.earned + EXCLUDED.earned, spent = d.spent + EXCLUDED.spent
         )"
    };
}
pub(crate) use ledger_entries;

/// The ledger's writing half, for statements that credit points as part of something bigger
/// (a check-in): to follow a CTE named `credits` with the columns of [`Posting`] (`member_id,
/// delta, kind, reference, idempotency_key, request_hash, operator_id, note`, every delta > 0;
/// `kind` the name of a [`LedgerKind`], `idempotency_key` the text of an [`IdempotencyKey`]).
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

/// Writes one entry inside the caller's transaction: the ledger's one writing function.
///
/// A credit is one statement ([`credit_ctes`]). A spend first locks the account row, so
/// concurrent spends are ordered and the never-negative check cannot be raced (the `CHECK
/// (balance >= 0)` on the account is the last line behind it), then writes the entry and the
/// balance in one statement. Either way a key used before writes nothing and returns its entry.
pub async fn post(conn: &mut PgConnection, e: Posting<'_>) -> sqlx::Result<Applied> {
    let query = if e.delta < 0 {
        let balance: i64 = sqlx::query_scalar(
            "INSERT INTO points_accounts (member_id) VALUES ($1)
             ON CONFLICT (member_id) DO UPDATE SET updated_at = points_accounts.updated_at RETURNING balance",
        )
        .bind(e.member_id)
        .fetch_one(&mut *conn)
        .await?;
        if balance + e.delta < 0 {
            return Ok(match by_key(conn, e.key).await? {
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
        .bind(e.key.as_str())
        .bind(e.request_hash)
        .bind(e.operator_id)
        .bind(e.note)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match written {
        Some(w) => Applied::New { entry: w.entry, balance: w.balance },
        // The key was used before (perhaps by a request that raced this one): that entry stands.
        None => Applied::Existing(by_key(conn, e.key).await?.ok_or(sqlx::Error::RowNotFound)?),
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

// ---------------------------------------------------------------- the overview

#[derive(sqlx::FromRow)]
pub struct TopRow {
    pub member_id: i64,
    pub display_name: String,
    pub platform: Platform,
    pub balance: i64,
}

#[derive(sqlx::FromRow)]
pub struct RecentRow {
    pub member_id: i64,
    pub display_name: String,
    pub delta: i64,
    pub kind: LedgerKind,
    pub reference: String,
    pub note: String,
    pub operator: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub struct KindTotal {
    pub kind: LedgerKind,
    pub entries: i64,
    pub earned: i64,
    pub spent: i64,
}

/// The points overview: what is outstanding, who holds most, the latest entries and the last
/// 30 days by kind.
pub struct Overview {
    pub balance: i64,
    pub holders: super::Total,
    pub top: Vec<TopRow>,
    pub recent: Vec<RecentRow>,
    pub by_kind: Vec<KindTotal>,
}

/// A scoped principal sees a member with a membership (open or past) in one of its groups:
/// here the member of the account or ledger entry `a`.
const MEMBER_IN_SCOPE: &str =
    "EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = a.member_id AND s.group_id = ANY($1))";

/// The overview. For every group (admins) it reads the day totals (`points_daily`), the top
/// balances' index and the newest ledger ids, never the whole ledger: "last 30 days" are the
/// last 30 UTC days, today included, and the number of members with points is the planner's
/// estimate once it is large. Within a scope, the ledger and accounts of the scope's members
/// are read (a cost that grows with the scope, not with the installation), names only for the
/// rows shown; each statement is planned for its scope (not prepared: a generic plan, made
/// without knowing how many members the scope holds, took 2.5 times as long at a million).
pub async fn overview(conn: &mut PgConnection, scope: Option<&[i64]>) -> sqlx::Result<Overview> {
    let Some(scope) = scope else { return overview_all(conn).await };
    let (holders, balance): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE a.balance > 0), COALESCE(sum(a.balance), 0)::bigint
         FROM points_accounts a WHERE {MEMBER_IN_SCOPE}"
    ))
    .bind(scope)
    .persistent(false)
    .fetch_one(&mut *conn)
    .await?;
    let top = sqlx::query_as(&format!(
        "SELECT m.id AS member_id, m.display_name, m.platform, a.balance
         FROM (SELECT a.member_id, a.balance FROM points_accounts a
               WHERE a.balance > 0 AND {MEMBER_IN_SCOPE} ORDER BY a.balance DESC, a.member_id LIMIT 20) a
         JOIN members m ON m.id = a.member_id ORDER BY a.balance DESC, m.id"
    ))
    .bind(scope)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let recent = sqlx::query_as(&format!(
        "SELECT l.member_id, m.display_name, l.delta, l.kind, l.reference, l.note, o.username AS operator, l.at
         FROM (SELECT a.* FROM points_ledger a WHERE {MEMBER_IN_SCOPE} ORDER BY a.id DESC LIMIT 50) l
         JOIN members m ON m.id = l.member_id LEFT JOIN operators o ON o.id = l.operator_id
         ORDER BY l.id DESC"
    ))
    .bind(scope)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let by_kind = sqlx::query_as(&format!(
        "SELECT a.kind, count(*) AS entries,
                COALESCE(sum(a.delta) FILTER (WHERE a.delta > 0), 0)::bigint AS earned,
                COALESCE(-sum(a.delta) FILTER (WHERE a.delta < 0), 0)::bigint AS spent
         FROM points_ledger a
         WHERE a.at >= {THIRTY_DAYS} AND {MEMBER_IN_SCOPE}
         GROUP BY a.kind ORDER BY a.kind"
    ))
    .bind(scope)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Overview { balance, holders: super::Total::Exact(holders), top, recent, by_kind })
}

/// The start of the overview's 30 days: midnight UTC 29 days before today.
const THIRTY_DAYS: &str = "((now() AT TIME ZONE 'UTC')::date - 29) AT TIME ZONE 'UTC'";

async fn overview_all(conn: &mut PgConnection) -> sqlx::Result<Overview> {
    let balance: i64 = sqlx::query_scalar("SELECT COALESCE(sum(earned - spent), 0)::bigint FROM points_daily")
        .fetch_one(&mut *conn)
        .await?;
    let holders = match super::estimated_rows(&mut *conn, "points_accounts_top_idx").await? {
        Some(n) if n > super::COUNT_CAP => super::Total::About(n),
        _ => {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM points_accounts WHERE balance > 0 LIMIT $1) x")
                    .bind(super::COUNT_CAP + 1)
                    .fetch_one(&mut *conn)
                    .await?;
            if n > super::COUNT_CAP {
                super::Total::MoreThan(super::COUNT_CAP)
            } else {
                super::Total::Exact(n)
            }
        }
    };
    let top = sqlx::query_as(
        "SELECT m.id AS member_id, m.display_name, m.platform, a.balance
         FROM (SELECT member_id, balance FROM points_accounts WHERE balance > 0
               ORDER BY balance DESC, member_id LIMIT 20) a
         JOIN members m ON m.id = a.member_id ORDER BY a.balance DESC, m.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Newest by id: the ledger's primary key, so no index on time is kept up on every write.
    let recent = sqlx::query_as(
        "SELECT l.member_id, m.display_name, l.delta, l.kind, l.reference, l.note, o.username AS operator, l.at
         FROM (SELECT * FROM points_ledger ORDER BY id DESC LIMIT 50) l
         JOIN members m ON m.id = l.member_id LEFT JOIN operators o ON o.id = l.operator_id
         ORDER BY l.id DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    let by_kind = sqlx::query_as(
        "SELECT kind, sum(entries)::bigint AS entries, sum(earned)::bigint AS earned, sum(spent)::bigint AS spent
         FROM points_daily WHERE day >= (now() AT TIME ZONE 'UTC')::date - 29
         GROUP BY kind HAVING sum(entries) > 0 ORDER BY kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Overview { balance, holders, top, recent, by_kind })
}

/// One line of a member's ledger export, with the operator's name.
#[derive(sqlx::FromRow)]
pub struct LedgerLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: LedgerKind,
    pub delta: i64,
    pub reference: String,
    pub note: String,
    pub operator: Option<String>,
    pub idempotency_key: String,
}

/// A member's whole ledger, oldest first.
pub async fn ledger(conn: &mut PgConnection, member_id: i64) -> sqlx::Result<Vec<LedgerLine>> {
    sqlx::query_as(
        "SELECT l.id, l.at, l.kind, l.delta, l.reference, l.note, o.username AS operator, l.idempotency_key
         FROM points_ledger l LEFT JOIN operators o ON o.id = l.operator_id
         WHERE l.member_id = $1 ORDER BY l.at, l.id",
    )
    .bind(member_id)
    .fetch_all(conn)
    .await
}
