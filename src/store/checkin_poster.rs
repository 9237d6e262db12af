//! A group's "day N" check-in poster setting (two columns of `checkin_rules`), and what the
//! public poster address needs to draw one.

use sqlx::PgConnection;

use crate::domain::checkin_poster::CheckinPoster;

/// Sets or clears the group's check-in poster; a group without rules gets a row with the
/// default rules (which is what it followed already).
pub async fn set(conn: &mut PgConnection, group_id: i64, poster: Option<&CheckinPoster>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO checkin_rules (group_id, poster_template_id, poster_text) VALUES ($1, $2, $3)
         ON CONFLICT (group_id) DO UPDATE SET poster_template_id = EXCLUDED.poster_template_id,
            poster_text = EXCLUDED.poster_text, updated_at = now()",
    )
    .bind(group_id)
    .bind(poster.map(|p| p.template_id))
    .bind(poster.map(|p| p.text.as_str()).unwrap_or(""))
    .execute(conn)
    .await?;
    super::groups::lookups_changed();
    Ok(())
}

/// The group's poster setting now (None: it has none).
pub async fn get(conn: &mut PgConnection, group_id: i64) -> sqlx::Result<Option<CheckinPoster>> {
    let row: Option<(Option<i64>, String)> =
        sqlx::query_as("SELECT poster_template_id, poster_text FROM checkin_rules WHERE group_id = $1")
            .bind(group_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(t, text)| t.map(|template_id| CheckinPoster { template_id, text })))
}

/// What a check-in poster of `group_id` shows beyond its token: the template to draw (None:
/// the group has no poster now) and the member's current name on the group's platform.
#[derive(Debug, sqlx::FromRow)]
pub struct PosterSource {
    pub platform: crate::domain::Platform,
    pub bridge_id: Option<i64>,
    pub template_id: Option<i64>,
    pub text: String,
    pub member_name: Option<String>,
}

pub async fn source(conn: &mut PgConnection, group_id: i64, user_id: &str) -> sqlx::Result<Option<PosterSource>> {
    sqlx::query_as(
        "SELECT g.platform, g.bridge_id, r.poster_template_id AS template_id, r.poster_text AS text,
                (SELECT m.display_name FROM members m WHERE m.platform = g.platform AND m.external_user_id = $2
                   AND m.deleted_at IS NULL) AS member_name
         FROM groups g JOIN checkin_rules r ON r.group_id = g.id WHERE g.id = $1",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}
