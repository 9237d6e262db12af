//! Manual changes of a member's balance: the member page's adjustment and the API's award or
//! deduction are one use case, with one set of limits (`domain::points::AdjustmentRaw`), one
//! audit action and one answer to a repeated key.

use sqlx::{Connection, PgConnection};

use super::{record, Done};
use crate::auth::{ActorKind, Principal};
use crate::domain::points::{Adjustment, IdempotencyKey};
use crate::error::{AppError, AppResult};
use crate::store::points::{self, Applied, Entry, Posting};

/// The operator behind a principal, for `points_ledger.operator_id` (tokens have none).
pub fn operator_of(who: &Principal) -> Option<i64> {
    (who.kind == ActorKind::Operator).then_some(who.id)
}

/// What an adjustment came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Adjusted {
    /// Written now; the balance after it.
    New { entry: Entry, balance: i64 },
    /// The same request came before (same key, same member and content): its entry stands and
    /// nothing was written.
    Replayed { entry: Entry, balance: i64 },
    /// A deduction larger than the balance: nothing written.
    Insufficient { balance: i64 },
}

/// Applies an adjustment to a member the principal sees, at most once per `key`: a repeat of
/// the same request is [`Adjusted::Replayed`], the key with another request a 409. A balance
/// never goes below zero: a deduction larger than it writes nothing at all (not even the
/// account row a first spend would open). `member.points_adjust`.
pub async fn adjust(
    conn: &mut PgConnection,
    who: &Principal,
    member_id: i64,
    adj: &Adjustment,
    key: &IdempotencyKey,
) -> AppResult<Done<Adjusted>> {
    who.require_write()?;
    super::members::load(conn, who, member_id).await?;
    let hash = adj.request_hash(member_id);
    // A savepoint: a refused deduction leaves the caller's transaction as it was.
    let mut sp = conn.begin().await?;
    let applied = points::post(
        &mut sp,
        Posting {
            member_id,
            delta: adj.delta,
            kind: adj.kind,
            reference: &adj.reference,
            key,
            request_hash: Some(&hash),
            operator_id: operator_of(who),
            note: &adj.note,
        },
    )
    .await?;
    if let Applied::Insufficient { balance } = applied {
        sp.rollback().await?;
        return Ok(Done::plain(Adjusted::Insufficient { balance }));
    }
    sp.commit().await?;
    let out = match applied {
        Applied::New { entry, balance } => {
            let details = serde_json::json!({
                "entry_id": entry.id, "delta": adj.delta, "kind": adj.kind,
                "reference": adj.reference, "note": adj.note,
            });
            record(conn, who, "member.points_adjust", "member", Some(member_id), details).await?;
            Adjusted::New { entry, balance }
        }
        Applied::Existing(entry) => {
            if entry.member_id != member_id || entry.request_hash.as_deref() != Some(hash.as_str()) {
                return Err(AppError::Conflict("this idempotency key was used with a different request".into()));
            }
            let balance = points::balance(conn, member_id).await?;
            Adjusted::Replayed { entry, balance }
        }
        Applied::Insufficient { balance } => Adjusted::Insufficient { balance },
    };
    Ok(Done::plain(out))
}
