//! Members and their memberships: create, change, delete (anonymise), add to and remove from
//! groups, and the CSV import.

use sqlx::{Connection, PgConnection};

use super::{invalid, record, Done};
use crate::auth::Principal;
use crate::domain::csv_import::RowError;
use crate::domain::member::{LeaveReason, MemberRole, MemberSpec};
use crate::domain::points::{IdempotencyKey, LedgerKind};
use crate::error::{on_unique, AppError, AppResult};
use crate::store::members::{self, MemberRow};
use crate::store::memberships::{self, Joining};
use crate::store::{groups, points};

/// A (platform, external id) that another member has. A scoped principal learns only that it
/// cannot use it, never that (or where) the member exists.
fn duplicate_for(p: &Principal) -> impl Fn(sqlx::Error) -> AppError {
    let key = if p.group_filter().is_some() { "error.member_unavailable" } else { "error.member_exists" };
    move |e| on_unique(e, "members_platform_external_user_id_key", "external_user_id", key)
}

fn details(m: &MemberSpec) -> serde_json::Value {
    serde_json::json!({"platform": m.platform, "external_user_id": m.external_user_id, "display_name": m.display_name, "tags": m.tags, "group_id": m.group_id})
}

/// The member, if the principal's scope sees them (else 404).
pub async fn load(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<MemberRow> {
    members::get(conn, id, who.group_filter().as_deref()).await?.ok_or(AppError::NotFound)
}

/// Creates a member, in `spec.group_id` with `spec.role` when given. A principal scoped to some
/// groups must name one of them (a member it could not see afterwards would be lost to it).
/// `member.create`.
pub async fn create(conn: &mut PgConnection, who: &Principal, spec: &MemberSpec) -> AppResult<Done<i64>> {
    who.require_write()?;
    match spec.group_id {
        Some(g) if !who.sees_group(g) => return Err(invalid("group_id", "error.choice")),
        None if who.group_filter().is_some() => return Err(invalid("group_id", "error.required")),
        _ => {}
    }
    let id = members::insert(conn, spec).await.map_err(duplicate_for(who))?;
    if let Some(g) = spec.group_id {
        if groups::get(conn, g).await?.is_none() {
            return Err(invalid("group_id", "error.choice"));
        }
        memberships::open(conn, id, g, &Joining { role: Some(spec.role), ..Joining::default() }).await?;
    }
    record(conn, who, "member.create", "member", Some(id), details(spec)).await?;
    Ok(Done::plain(id))
}

/// Changes a member's platform, id, name, tags and notes (`spec.group_id` and `role` are not
/// used: memberships change through [`join`] and [`leave`]). `member.update`.
pub async fn update(conn: &mut PgConnection, who: &Principal, id: i64, spec: &MemberSpec) -> AppResult<Done<()>> {
    who.require_write()?;
    load(conn, who, id).await?;
    members::update(conn, id, spec).await.map_err(duplicate_for(who))?;
    let spec = MemberSpec { group_id: None, ..spec.clone() };
    record(conn, who, "member.update", "member", Some(id), details(&spec)).await?;
    Ok(Done::plain(()))
}

/// What deleting a member did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The balance taken back (a `forfeit` entry), 0 when there was none.
    pub forfeited: i64,
    /// Groups whose open membership was closed.
    pub left_groups: Vec<i64>,
}

/// Deletes a member (principals with every group only): the balance is taken back by one ledger
/// entry, open memberships are closed (each group's reported count one smaller), and the member
/// is anonymised — their history stays, with nothing that identifies them, and balance == sum of
/// the ledger still holds. `member.delete`, whose details name no one.
pub async fn delete(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<Deleted>> {
    who.require_write()?;
    load(conn, who, id).await?;
    if who.group_filter().is_some() {
        return Err(AppError::Forbidden);
    }
    let balance = points::balance(conn, id).await?;
    let mut forfeited = 0;
    if balance > 0 {
        let key = IdempotencyKey::forfeit(id);
        let posted = points::post(
            conn,
            points::Posting {
                member_id: id,
                delta: -balance,
                kind: LedgerKind::Forfeit,
                reference: "",
                key: &key,
                request_hash: None,
                operator_id: super::points::operator_of(who),
                note: "",
            },
        )
        .await?;
        if let points::Applied::New { entry, .. } = posted {
            forfeited = -entry.delta;
        }
    }
    let left_groups = memberships::close_all(conn, id, LeaveReason::Manual).await?;
    if !members::anonymise(conn, id).await? {
        return Err(AppError::NotFound);
    }
    let details = serde_json::json!({"forfeited": forfeited, "left_groups": left_groups});
    record(conn, who, "member.delete", "member", Some(id), details).await?;
    Ok(Done::plain(Deleted { forfeited, left_groups }))
}

/// Adds the member to a group (or changes their role there). `membership.join`.
pub async fn join(
    conn: &mut PgConnection,
    who: &Principal,
    member_id: i64,
    group_id: i64,
    role: MemberRole,
) -> AppResult<Done<bool>> {
    who.require_write()?;
    load(conn, who, member_id).await?;
    who.require_group(group_id)?;
    groups::get(conn, group_id).await?.ok_or(AppError::NotFound)?;
    let opened =
        memberships::open(conn, member_id, group_id, &Joining { role: Some(role), ..Joining::default() }).await?;
    let details = serde_json::json!({"group_id": group_id, "role": role});
    record(conn, who, "membership.join", "member", Some(member_id), details).await?;
    Ok(Done::plain(opened))
}

/// Ends the member's membership in a group, if open. `membership.leave` (only when one ended).
pub async fn leave(conn: &mut PgConnection, who: &Principal, member_id: i64, group_id: i64) -> AppResult<Done<bool>> {
    who.require_write()?;
    who.require_group(group_id)?;
    load(conn, who, member_id).await?;
    let closed = memberships::close(conn, member_id, group_id, None, LeaveReason::Manual).await?;
    if closed {
        record(conn, who, "membership.leave", "member", Some(member_id), serde_json::json!({"group_id": group_id}))
            .await?;
    }
    Ok(Done::plain(closed))
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    pub created: usize,
    pub updated: usize,
    /// Nothing was written: strict mode and some row had an error.
    pub rolled_back: bool,
    /// Every bad row, by line.
    pub errors: Vec<RowError>,
}

/// Imports parsed CSV rows: each valid row creates or updates its member (by platform and id)
/// and opens the membership it names. A scoped principal must name one of its groups on every
/// row and updates only members it sees already; a row naming anyone else is a conflict that
/// writes nothing and says nothing about them. `strict`: nothing at all is written when any row
/// has an error (`errors` from parsing count too). `member.import`, unless nothing was written.
pub async fn import(
    conn: &mut PgConnection,
    who: &Principal,
    rows: &[(u64, MemberSpec)],
    mut errors: Vec<RowError>,
    strict: bool,
    file_name: &str,
) -> AppResult<Done<Imported>> {
    who.require_write()?;
    let scope = who.group_filter();
    let known: std::collections::HashSet<i64> =
        groups::names(conn, scope.as_deref()).await?.into_iter().map(|(id, _)| id).collect();
    // A savepoint: a strict import with errors takes back its rows and leaves the caller's
    // transaction as it was.
    let mut sp = conn.begin().await?;
    let (mut created, mut updated) = (0, 0);
    for (line, spec) in rows {
        match spec.group_id {
            Some(g) if !known.contains(&g) => {
                errors.push(RowError::field(*line, "group_id", "error.choice", g.to_string()));
                continue;
            }
            None if scope.is_some() => {
                errors.push(RowError::field(*line, "group_id", "error.required", String::new()));
                continue;
            }
            _ => {}
        }
        let upserted = match &scope {
            None => Some(members::upsert(&mut sp, spec).await?),
            Some(ids) => members::upsert_in_scope(&mut sp, spec, ids).await?,
        };
        let Some((id, inserted)) = upserted else {
            errors.push(RowError {
                line: *line,
                problems: vec![("external_user_id".into(), "error.member_unavailable")],
                values: Vec::new(),
            });
            continue;
        };
        if let Some(g) = spec.group_id {
            memberships::open(&mut sp, id, g, &Joining { role: Some(spec.role), ..Joining::default() }).await?;
        }
        if inserted {
            created += 1;
        } else {
            updated += 1;
        }
    }
    errors.sort_by_key(|e| e.line);
    if strict && !errors.is_empty() {
        sp.rollback().await?;
        return Ok(Done::plain(Imported { created: 0, updated: 0, rolled_back: true, errors }));
    }
    sp.commit().await?;
    let details =
        serde_json::json!({"file": file_name, "created": created, "updated": updated, "failed_rows": errors.len()});
    record(conn, who, "member.import", "member", None, details).await?;
    Ok(Done::plain(Imported { created, updated, rolled_back: false, errors }))
}
