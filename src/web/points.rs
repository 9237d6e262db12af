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
use serde::Deserialize;
use sqlx::PgConnection;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::app;
use crate::app::points::Adjusted;
use crate::domain::points::{AdjustmentRaw, IdempotencyKey, LedgerKind};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::i18n::Tr;
use crate::store::points::{self, Entry};
use crate::AppState;

/// Ledger entries shown on the member page.
const MEMBER_ENTRIES: i64 = 50;

/// Every kind of ledger entry (each has words: `points.kinds.*`).
pub const KINDS: [LedgerKind; 10] = LedgerKind::ALL;

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
    let names: HashMap<i64, String> = crate::store::operators::names(&mut *conn, &ids).await?.into_iter().collect();
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

async fn adjust(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(f): Form<AdjustForm>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    {
        let mut conn = state.db.acquire().await?;
        app::members::load(&mut conn, &ctx.principal, id).await?;
    }
    let nonce = uuid::Uuid::parse_str(f.key.trim()).map_err(|_| AppError::BadRequest("invalid form key".into()))?;
    let retry = |errors, balance| AdjustRetry { form: f.clone(), errors, balance };
    let raw = AdjustmentRaw {
        delta: f.delta.clone(),
        kind: LedgerKind::Adjustment.as_str().into(),
        reference: String::new(),
        note: f.reason.clone(),
    };
    let adj = match raw.parse() {
        Ok(adj) => adj,
        Err(mut errors) => {
            // The form calls the note its reason.
            errors.rename("note", "reason");
            let retry = Some(retry(errors, None));
            return super::members::detail_page(&state, &ctx, id, retry, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let mut tx = state.db.begin().await?;
    match app::points::adjust(&mut tx, &ctx.principal, id, &adj, &IdempotencyKey::manual(id, nonce)).await {
        Ok(done) => match done.commit(tx, &state).await? {
            Adjusted::New { .. } => ctx.flash("success", "points.adjusted").await?,
            Adjusted::Replayed { .. } => ctx.flash("success", "points.already_applied").await?,
            Adjusted::Insufficient { balance } => {
                let retry = Some(retry(FieldErrors::new(), Some(balance)));
                return super::members::detail_page(&state, &ctx, id, retry, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        },
        Err(AppError::Conflict(_)) => {
            drop(tx);
            ctx.flash("error", "points.error.key_reused").await?;
        }
        Err(e) => return Err(e),
    }
    Ok(redirect(&format!("/members/{id}#points")))
}

/// The member's whole ledger, oldest first.
async fn export(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    app::members::load(&mut conn, &ctx.principal, id).await?;
    let rows = points::ledger(&mut conn, id).await?;
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
            r.kind.as_str().to_string(),
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
