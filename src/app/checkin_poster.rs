//! "Day N" check-in posters: a group's setting (an operator's use case, audited), the extra
//! action a new check-in gets when its group has one, and the hand-over of actions a webhook's
//! answer cannot carry (a Telegram `sendPhoto`) to the outbound jobs.

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::action::Action;
use crate::domain::checkin::{Outcome, Rules};
use crate::domain::checkin_poster::{CheckinPoster, PosterClaims, MAX_TEXT_CHARS};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store;

use super::member_page::MemberPages;
use super::{record, Done};

/// A group's poster setting as typed: a template id (empty: no poster) and a line of text.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PosterRaw {
    pub template_id: String,
    pub text: String,
}

impl PosterRaw {
    pub fn parse(&self) -> Result<Option<CheckinPoster>, FieldErrors> {
        let mut e = FieldErrors::new();
        let text = crate::domain::optional_text(&self.text, MAX_TEXT_CHARS, "text", &mut e);
        let template = match self.template_id.trim() {
            "" => None,
            t => match t.parse::<i64>() {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    e.add("template_id", "checkin_poster.error.template");
                    None
                }
            },
        };
        if e.is_empty() {
            Ok(template.map(|template_id| CheckinPoster { template_id, text }))
        } else {
            Err(e)
        }
    }
}

/// Sets (or with None, ends) the group's check-in poster. The group must be one the principal
/// may change; the template one it sees, shared or of this group. `group.checkin_poster`.
pub async fn set(
    conn: &mut PgConnection,
    who: &Principal,
    group_id: i64,
    poster: Option<&CheckinPoster>,
) -> AppResult<Done<Option<CheckinPoster>>> {
    who.require_write()?;
    if !who.sees_group(group_id) || store::groups::get(conn, group_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    if let Some(p) = poster {
        let t = store::posters::get(conn, p.template_id, who.group_filter().as_deref()).await?;
        if t.is_none_or(|t| t.group_id.is_some_and(|g| g != group_id)) {
            return Err(super::invalid("template_id", "checkin_poster.error.template"));
        }
    }
    store::checkin_poster::set(conn, group_id, poster).await?;
    let d = serde_json::json!({"template_id": poster.map(|p| p.template_id), "text": poster.map(|p| p.text.as_str())});
    record(conn, who, "group.checkin_poster", "group", Some(group_id), d).await?;
    Ok(Done::plain(poster.cloned()))
}

/// The poster action of a new check-in in a group that has a poster (None otherwise): a photo
/// in the same chat and topic, answering the same message, at the check-in's signed address.
/// Computed from the outcome alone, so a retried delivery gets the same one.
#[allow(clippy::too_many_arguments)]
pub async fn action(
    conn: &mut PgConnection,
    pages: &MemberPages,
    rules: &Rules,
    group_id: i64,
    chat_id: &str,
    user_id: &str,
    reply_to: Option<String>,
    thread_id: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
    o: &Outcome,
) -> sqlx::Result<Option<Action>> {
    if rules.poster.is_none() || !o.new {
        return Ok(None);
    }
    let claims = PosterClaims {
        group_id,
        day: rules.day_of(at),
        streak: o.streak,
        total_days: o.total_days,
        user_id: user_id.to_string(),
    };
    let token = claims.sign(pages.key(conn).await?);
    Ok(Some(Action::SendPhoto {
        chat_id: chat_id.to_string(),
        url: pages.absolute(&format!("/c/{token}")),
        caption: None,
        reply_to,
        thread_id,
    }))
}
