//! The dashboard: overview counts and what needs an operator's attention.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::ctx::{Ctx, Layout};
use super::render;
use crate::alerts::Kind;
use crate::error::AppResult;
use crate::store::groups::{self, GroupRow, Overview};
use crate::store::live_codes::{self, LiveCodeRow, TargetRow};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(dashboard))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    l: Layout,
    o: Overview,
    members: String,
    attention: Vec<GroupRow>,
    lc: LiveCodeAttention,
    can_write: bool,
}

/// A live-code target that needs an operator, as the dashboard lists it.
struct TargetAlert {
    t: TargetRow,
    code_name: String,
    expired: bool,
    expires_local: String,
    /// What is wrong, in words: "full (3 / 3)" or "80 % of its limit used".
    label: String,
}

/// Live codes that need an operator: group QR images expiring (or expired) within
/// `alerts.expiring_hours`, targets
/// at 90 % of their limit or more, and live codes that would send the next scan to the fallback.
#[derive(Default)]
struct LiveCodeAttention {
    expiring: Vec<TargetAlert>,
    nearly_full: Vec<TargetAlert>,
    no_target: Vec<LiveCodeRow>,
    /// How many live codes the operator can see (none: nothing to be fine about yet).
    codes: usize,
}

impl LiveCodeAttention {
    fn is_empty(&self) -> bool {
        self.expiring.is_empty() && self.nearly_full.is_empty() && self.no_target.is_empty()
    }
}

async fn live_code_attention(
    conn: &mut sqlx::PgConnection,
    access: &live_codes::Access,
    state: &AppState,
    ctx: &Ctx,
) -> sqlx::Result<LiveCodeAttention> {
    let now = chrono::Utc::now();
    let scope = access.scope.as_deref();
    let codes = live_codes::list(&mut *conn, access).await?;
    let targets = live_codes::all_targets(&mut *conn, scope).await?;
    let mut out = LiveCodeAttention { codes: codes.len(), ..Default::default() };
    // The same conditions the alerts raise, from the same function.
    for f in crate::alerts::findings(&codes, &targets, &state.config.alerts, now) {
        let alert = |t: &TargetRow| TargetAlert {
            t: t.clone(),
            code_name: f.code.name.clone(),
            expired: t.qr_expires_at.is_some_and(|at| at <= now),
            expires_local: ctx.time.opt_or_empty(t.qr_expires_at),
            label: fill_label(&ctx.tr, t),
        };
        match (f.kind, f.target) {
            (Kind::ExpiringSoon, Some(t)) => out.expiring.push(alert(t)),
            (Kind::NearlyFull, Some(t)) => out.nearly_full.push(TargetAlert { expired: false, ..alert(t) }),
            (Kind::Exhausted, _) => out.no_target.push(f.code.clone()),
            _ => {}
        }
    }
    out.expiring.truncate(20);
    out.nearly_full.truncate(20);
    out.no_target.truncate(20);
    Ok(out)
}

/// A nearly full target in words: full when nothing is left, else the share of its limit used.
fn fill_label(tr: &crate::i18n::Tr, t: &TargetRow) -> String {
    if t.scan_limit > 0 && t.used >= t.scan_limit {
        tr.f("live_codes.dash.full", &[("used", &t.used), ("limit", &t.scan_limit)])
    } else {
        let pct = (t.used as i64 * 100).checked_div(t.scan_limit as i64).unwrap_or(0);
        tr.f("live_codes.dash.nearly_full_pct", &[("pct", &pct), ("used", &t.used), ("limit", &t.scan_limit)])
    }
}

async fn dashboard(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let o = groups::overview(&mut conn, scope.as_deref(), state.config.alerts.expiring_hours).await?;
    let members_filter = crate::store::members::Filter { scope: scope.clone(), ..Default::default() };
    let members = super::count_label(&ctx.tr, crate::store::members::total(&mut conn, &members_filter).await?);
    let attention =
        groups::needing_attention(&mut conn, scope.as_deref(), state.config.alerts.expiring_hours, 20).await?;
    let lc = live_code_attention(&mut conn, &live_codes::Access::of(&ctx.principal), &state, &ctx).await?;
    let page = DashboardPage {
        l: ctx.layout("nav.dashboard", "dashboard").await?,
        o,
        members,
        attention,
        lc,
        can_write: ctx.principal.can_write(),
    };
    render(StatusCode::OK, &page)
}
