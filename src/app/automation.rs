//! The join-request queue (入群审核): list the requests in scope (with their questionnaire
//! answers), and approve or decline them in bulk with a reason. Each answer goes out as an outbound job (`automation::answer_request`)
//! in the same transaction, with its activity-log and audit rows.

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::automation::RequestStatus;
use crate::error::{AppResult, FieldErrors};
use crate::store::automation::{self as store, RequestRow};
use crate::Config;

use super::Done;

/// Requests in the principal's scope, newest first.
pub async fn list(
    conn: &mut PgConnection,
    who: &Principal,
    status: Option<RequestStatus>,
    before: Option<i64>,
    limit: i64,
) -> AppResult<Vec<RequestRow>> {
    let scope = who.group_filter();
    let mut rows = store::requests(conn, scope.as_deref(), status, before, limit.clamp(1, 200)).await?;
    // The questionnaire answers of the rows that were sent one (one query for the page).
    let asked: Vec<i64> = rows.iter().filter(|r| !r.questions.is_empty()).map(|r| r.id).collect();
    if !asked.is_empty() {
        for a in crate::store::questionnaire::answers_for(conn, &asked).await? {
            if let Some(r) = rows.iter_mut().find(|r| r.id == a.join_request_id) {
                r.answers.push(a);
            }
        }
    }
    Ok(rows)
}

/// A decision on some requests.
#[derive(Debug, Clone)]
pub struct Decision {
    pub ids: Vec<i64>,
    pub approve: bool,
    pub reason: String,
}

impl Decision {
    /// At most 200 requests at once; a reason of at most 200 characters.
    pub fn new(ids: Vec<i64>, approve: bool, reason: &str) -> Result<Decision, FieldErrors> {
        let mut e = FieldErrors::new();
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            e.add("ids", "automation.error.choose_requests");
        } else if ids.len() > 200 {
            e.add("ids", "automation.error.too_many_requests");
        }
        let reason = crate::domain::optional_text(reason, 200, "reason", &mut e);
        fields_ok(e, Decision { ids, approve, reason })
    }
}

/// Approves or declines pending requests in scope; the ones decided (others were decided
/// already, or are outside the scope: skipped).
pub async fn decide(
    conn: &mut PgConnection,
    config: &Config,
    who: &Principal,
    d: &Decision,
) -> AppResult<Done<Vec<RequestRow>>> {
    who.require_write()?;
    let mut decided = Vec::new();
    for id in &d.ids {
        let Some(row) = store::request(conn, *id).await? else { continue };
        if !who.sees_group(row.group_id) {
            continue;
        }
        let status = if d.approve { RequestStatus::Approved } else { RequestStatus::Declined };
        let Some(row) = store::decide(conn, *id, status, &who.name, &d.reason).await? else { continue };
        let reason = Some(d.reason.clone()).filter(|r| !r.is_empty() && !d.approve);
        crate::automation::answer_request(conn, config, &row, d.approve, reason, "operator", &d.reason).await?;
        decided.push(row);
    }
    let action = if d.approve { "join_request.approve" } else { "join_request.decline" };
    let details = serde_json::json!({"ids": decided.iter().map(|r| r.id).collect::<Vec<_>>(), "reason": d.reason});
    super::record(conn, who, action, "join_request", None, details).await?;
    Ok(Done::plain(decided))
}

/// `v` when no field has an error, else the errors.
fn fields_ok<T>(e: FieldErrors, v: T) -> Result<T, FieldErrors> {
    if e.is_empty() {
        Ok(v)
    } else {
        Err(e)
    }
}
