//! Instance settings: the alert webhook.

use sqlx::PgConnection;

use super::{invalid, record, Done};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::outbound::Policy;
use crate::store::alerts;

/// Sets (or, empty, clears) the alert webhook (admins only). The URL must pass the rule every
/// outbound call obeys (`outbound::Policy`: http(s), no internal address), checked now as well
/// as at delivery. `alert_settings.update`.
pub async fn set_alert_webhook(
    conn: &mut PgConnection,
    who: &Principal,
    policy: &Policy,
    url: &str,
) -> AppResult<Done<()>> {
    who.require_admin()?;
    let url = url.trim();
    if !url.is_empty() {
        let refused = match policy.check(url) {
            Ok(_) if !crate::domain::group::valid_http_url(url) => Some("error.url"),
            Ok(_) => None,
            Err(e) => Some(e.message_key()),
        };
        if let Some(key) = refused {
            return Err(invalid("webhook_url", key));
        }
    }
    alerts::set_webhook_url(conn, (!url.is_empty()).then_some(url)).await?;
    record(conn, who, "alert_settings.update", "settings", None, serde_json::json!({"set": !url.is_empty()})).await?;
    Ok(Done::plain(()))
}
