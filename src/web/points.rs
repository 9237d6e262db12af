//! Points pages: the overview (top balances, recent entries, totals by kind), and a member's
//! points: balance and ledger on the member page, manual adjustments (applied once per form,
//! never below zero) and the whole ledger as CSV.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgConnection;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::auth::ActorKind;
use crate::domain::required_text;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::i18n::Tr;
use crate::store::audit::{self, Actor};
use crate::store::members;
use crate::store::points::{self, Applied, Entry, NewEntry};
use crate::AppState;

/// Ledger entries shown on the member page.
const MEMBER_ENTRIES: i64 = 50;
/// The largest manual adjustment either way.
const MAX_ADJUSTMENT: i64 = 10_000_000;

pub const KINDS: [&str; 9] =
    ["checkin", "streak_bonus", "makeup", "adjustment", "invite", "redemption", "refund", "expiry", "api"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/points", get(overview))
        .route("/members/{id}/points", post(adjust))
        .route("/members/{id}/points.csv", get(export))
}

// ---------------------------------------------------------------- overview

#[derive(Template)]
#[template(path = "points/overview.html")]
struct OverviewPage {
    l: Layout,
    o: points::Overview,
    /// Members with points: exact, or "about N" from the planner's estimate.
    holders: String,
}

async fn overview(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let o = points::overview(&mut conn, scope.as_deref()).await?;
    drop(conn);
    let holders = super::count_label(&ctx.tr, o.holders);
    let page = OverviewPage { l: ctx.layout("points.title", "points").await?, o, holders };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- the member page

/// The adjustment form as typed; `key` is a UUID made when the form was rendered, so a double
/// submit applies once.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct AdjustForm {
    pub key: String,
    pub delta: String,
    pub reason: String,
}

/// A refused adjustment, shown again on the member page.
pub struct AdjustRetry {
    pub form: AdjustForm,
    pub errors: FieldErrors,
    /// The balance, when the spend was larger than it.
    pub balance: Option<i64>,
}

pub struct LedgerView {
    pub e: Entry,
    pub operator: Option<String>,
}

/// The points section of the member page.
pub struct MemberPoints {
    pub balance: i64,
    pub entries: Vec<LedgerView>,
    pub form: AdjustForm,
    pub errors: FieldErrors,
    /// "Not enough points (balance N)", after a spend larger than the balance.
    pub shortfall: Option<String>,
}

impl MemberPoints {
    pub fn delta_class(&self) -> &'static str {
        if self.errors.has("delta") || self.shortfall.is_some() {
            "invalid"
        } else {
            ""
        }
    }
}

pub async fn member_points(
    conn: &mut PgConnection,
    tr: &Tr,
    member_id: i64,
    retry: Option<AdjustRetry>,
) -> sqlx::Result<MemberPoints> {
    let balance = points::balance(&mut *conn, member_id).await?;
    let entries = points::entries(&mut *conn, member_id, MEMBER_ENTRIES).await?;
    let mut ids: Vec<i64> = entries.iter().filter_map(|e| e.operator_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let names: HashMap<i64, String> =
        sqlx::query_as::<_, (i64, String)>("SELECT id, username FROM operators WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let entries = entries
        .into_iter()
        .map(|e| LedgerView { operator: e.operator_id.and_then(|id| names.get(&id).cloned()), e })
        .collect();
    let (form, errors, shortfall) = match retry {
        Some(r) => (r.form, r.errors, r.balance.map(|b| tr.f("points.error.insufficient", &[("balance", &b)]))),
        None => {
            (AdjustForm { key: uuid::Uuid::new_v4().to_string(), ..AdjustForm::default() }, FieldErrors::new(), None)
        }
    };
    Ok(MemberPoints { balance, entries, form, errors, shortfall })
}

/// A non-zero whole number, `+` allowed, within the adjustment limit.
fn parse_delta(input: &str, errors: &mut FieldErrors) -> i64 {
    let s = input.trim();
    match s.strip_prefix('+').unwrap_or(s).parse::<i64>() {
        Ok(n) if n != 0 && n.abs() <= MAX_ADJUSTMENT => n,
        _ => {
            errors.add("delta", "points.error.delta");
            0
        }
    }
}

async fn adjust(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<AdjustForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let mut conn = state.db.acquire().await?;
    members::get(&mut conn, id, ctx.scope().as_deref()).await?.ok_or(AppError::NotFound)?;
    drop(conn);
    let key = uuid::Uuid::parse_str(f.key.trim()).map_err(|_| AppError::BadRequest("invalid form key".into()))?;
    let mut errors = FieldErrors::new();
    let delta = parse_delta(&f.delta, &mut errors);
    let reason = required_text(&f.reason, 200, "reason", &mut errors);
    let retry = |errors, balance| AdjustRetry { form: f.clone(), errors, balance };
    if !errors.is_empty() {
        return super::members::detail_page(
            &state,
            &ctx,
            id,
            Some(retry(errors, None)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let idempotency_key = format!("adjustment:{id}:{key}");
    let mut tx = state.db.begin().await?;
    let applied = points::apply(
        &mut tx,
        NewEntry {
            member_id: id,
            delta,
            kind: "adjustment",
            reference: "",
            idempotency_key: &idempotency_key,
            request_hash: None,
            operator_id: (ctx.principal.kind == ActorKind::Operator).then_some(ctx.principal.id),
            note: &reason,
        },
    )
    .await?;
    match applied {
        Applied::New { entry, .. } => {
            audit::record(
                &mut tx,
                Actor::Principal(&ctx.principal),
                "member.points_adjust",
                "member",
                Some(id.to_string()),
                serde_json::json!({"entry_id": entry.id, "delta": delta, "reason": reason}),
            )
            .await?;
            tx.commit().await?;
            ctx.flash("success", "points.adjusted").await?;
        }
        Applied::Existing(entry) => {
            drop(tx);
            let same = entry.delta == delta && entry.note == reason;
            if same {
                ctx.flash("success", "points.already_applied").await?;
            } else {
                ctx.flash("error", "points.error.key_reused").await?;
            }
        }
        Applied::Insufficient { balance } => {
            drop(tx);
            return super::members::detail_page(
                &state,
                &ctx,
                id,
                Some(retry(FieldErrors::new(), Some(balance))),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    }
    Ok(redirect(&format!("/members/{id}#points")))
}

#[derive(sqlx::FromRow)]
struct CsvRow {
    id: i64,
    at: DateTime<Utc>,
    kind: String,
    delta: i64,
    reference: String,
    note: String,
    operator: Option<String>,
    idempotency_key: String,
}

/// The member's whole ledger, oldest first.
async fn export(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    members::get(&mut conn, id, ctx.scope().as_deref()).await?.ok_or(AppError::NotFound)?;
    let rows: Vec<CsvRow> = sqlx::query_as(
        "SELECT l.id, l.at, l.kind, l.delta, l.reference, l.note, o.username AS operator, l.idempotency_key
         FROM points_ledger l LEFT JOIN operators o ON o.id = l.operator_id
         WHERE l.member_id = $1 ORDER BY l.at, l.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    drop(conn);
    use crate::domain::csv_import::neutralise;
    // With a BOM, so that Excel reads the Chinese notes as UTF-8.
    let mut w = csv::Writer::from_writer(crate::domain::csv_import::BOM.to_vec());
    let io = |e: csv::Error| AppError::Other(e.into());
    w.write_record(["id", "at", "kind", "delta", "reference", "note", "operator", "idempotency_key"]).map_err(io)?;
    for r in rows {
        w.write_record([
            r.id.to_string(),
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            r.kind,
            r.delta.to_string(),
            neutralise(r.reference),
            neutralise(r.note),
            neutralise(r.operator.unwrap_or_default()),
            neutralise(r.idempotency_key),
        ])
        .map_err(io)?;
    }
    let body = w.into_inner().map_err(|e| AppError::Other(anyhow::anyhow!("csv: {e}")))?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"member-{id}-points.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustments_are_non_zero_whole_numbers_within_the_limit() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_delta(" +15 ", &mut e), 15);
        assert_eq!(parse_delta("-3", &mut e), -3);
        assert!(e.is_empty());
        for bad in ["0", "", "1.5", "x", "99999999999"] {
            let mut e = FieldErrors::new();
            parse_delta(bad, &mut e);
            assert!(e.has("delta"), "{bad:?}");
        }
    }
}
