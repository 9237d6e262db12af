//! The dashboard: overview counts and what needs an operator's attention.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::ctx::{Ctx, Layout};
use super::render;
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
    members: i64,
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
}

/// Live codes that need an operator: group QR images expiring (or expired) within 48 h, targets
/// at 90 % of their limit or more, and live codes that would send the next scan to the fallback.
#[derive(Default)]
struct LiveCodeAttention {
    expiring: Vec<TargetAlert>,
    nearly_full: Vec<TargetAlert>,
    no_target: Vec<LiveCodeRow>,
}

impl LiveCodeAttention {
    fn is_empty(&self) -> bool {
        self.expiring.is_empty() && self.nearly_full.is_empty() && self.no_target.is_empty()
    }
}

async fn live_code_attention(
    conn: &mut sqlx::PgConnection,
    scope: Option<&[i64]>,
    tz: &str,
) -> sqlx::Result<LiveCodeAttention> {
    let now = chrono::Utc::now();
    let soon = now + chrono::Duration::hours(super::live_codes::EXPIRY_WARNING_HOURS);
    let codes = live_codes::list(&mut *conn, scope).await?;
    let targets = live_codes::all_targets(&mut *conn, scope).await?;
    let mut out = LiveCodeAttention::default();
    for c in &codes {
        let mine: Vec<&TargetRow> = targets.iter().filter(|t| t.live_code_id == c.id).collect();
        let current = c.status == "active" && c.ends_at.is_none_or(|e| e > now);
        if current && !mine.iter().any(|t| t.state().eligible(now)) {
            out.no_target.push(c.clone());
        }
        for t in mine.into_iter().filter(|t| t.enabled) {
            let alert = |expired| TargetAlert {
                t: t.clone(),
                code_name: c.name.clone(),
                expired,
                expires_local: t
                    .state()
                    .qr_expires_at
                    .map(|at| crate::domain::group::local_input_value(at, tz).replace('T', " "))
                    .unwrap_or_default(),
            };
            if let Some(at) = t.state().qr_expires_at.filter(|at| *at <= soon) {
                out.expiring.push(alert(at <= now));
            }
            if t.scan_limit > 0 && t.used as i64 * 10 >= t.scan_limit as i64 * 9 {
                out.nearly_full.push(alert(false));
            }
        }
    }
    out.expiring.truncate(20);
    out.nearly_full.truncate(20);
    out.no_target.truncate(20);
    Ok(out)
}

async fn dashboard(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let scope = ctx.scope();
    let mut conn = state.db.acquire().await?;
    let o = groups::overview(&mut conn, scope.as_deref()).await?;
    let members = crate::store::members::count(&mut conn, scope.as_deref()).await?;
    // Groups that need an operator: QR expiring within 48 h or expired, or no way to join.
    let f = groups::Filter { scope, ..Default::default() };
    let (all, _) = groups::list(&mut conn, &f, 1000, 0).await?;
    let soon = chrono::Utc::now() + chrono::Duration::hours(48);
    let attention: Vec<GroupRow> = all
        .into_iter()
        .filter(|g| !g.has_join_target() || g.qr_expires_at.is_some_and(|at| at <= soon))
        .take(20)
        .collect();
    let lc = live_code_attention(&mut conn, ctx.scope().as_deref(), &state.config.scan.stats_timezone).await?;
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
