//! `/api/v1/checkins`: check-ins in the caller's groups, in id order (cursor pages), with the
//! note a member wrote after the keyword and the amount found in it.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{next_cursor, ApiAuth, PageParams};
use crate::domain::checkin::Unit;
use crate::error::AppResult;
use crate::store::checkins::{self, CheckinRow};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_checkins))
}

/// One member's check-in in one group on one local day.
#[derive(Serialize, ToSchema)]
pub struct Checkin {
    pub id: i64,
    pub group_id: i64,
    pub member_id: i64,
    /// The group's local day it counts for.
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
    /// Consecutive days ending with this one.
    pub streak: i32,
    /// A missed day made up later.
    pub makeup: bool,
    /// What the member wrote after the keyword (`打卡 今天跑了5公里` → `今天跑了5公里`).
    pub note: Option<String>,
    /// The first number with a unit in the note (`5`), with `unit`.
    pub quantity: Option<f64>,
    pub unit: Option<Unit>,
}

impl From<CheckinRow> for Checkin {
    fn from(r: CheckinRow) -> Checkin {
        Checkin {
            id: r.id,
            group_id: r.group_id,
            member_id: r.member_id,
            day: r.day,
            at: r.at,
            streak: r.streak,
            makeup: r.makeup,
            note: r.note,
            quantity: r.quantity,
            unit: r.unit,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckinFilter {
    /// Only check-ins in this group.
    pub group_id: Option<i64>,
    /// Only this member's check-ins.
    pub member_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckinPage {
    pub items: Vec<Checkin>,
    pub next_cursor: Option<String>,
}

/// List check-ins in groups visible to the caller, in id order (oldest first).
#[utoipa::path(get, path = "/api/v1/checkins", tag = "checkins", params(PageParams, CheckinFilter),
    responses((status = 200, body = CheckinPage), (status = 400, body = super::ProblemDoc), (status = 401, body = super::ProblemDoc)))]
async fn list_checkins(
    State(state): State<AppState>,
    ApiAuth(p): ApiAuth,
    Query(page): Query<PageParams>,
    Query(f): Query<CheckinFilter>,
) -> AppResult<Json<CheckinPage>> {
    let (after, limit) = page.resolve()?;
    let filter = checkins::Filter { group_id: f.group_id, member_id: f.member_id, scope: p.group_filter() };
    let mut conn = state.db.acquire().await?;
    let rows = checkins::list_after(&mut conn, &filter, after, limit).await?;
    let next_cursor = next_cursor(&rows, limit, |c| c.id);
    Ok(Json(CheckinPage { items: rows.into_iter().map(Checkin::from).collect(), next_cursor }))
}
