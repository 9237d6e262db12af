//! Live-code landing pages: the logo (the texts and language are part of the live code's
//! settings, `app::live_codes`). A logo is served to anyone who scans, so it is an image
//! decoded and re-encoded at a public size like a fallback image (`domain::qr::public_image`).

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::qr::PublicImage;
use crate::error::{AppError, AppResult};
use crate::store::live_codes::{self as store, Access, LiveCodeRow};

use super::{record, AfterCommit, Done};

/// What a save does to a code's logo.
#[derive(Debug, Default)]
pub enum LogoChange {
    #[default]
    Keep,
    Replace(PublicImage),
    Remove,
}

/// Applies `change` to the code just created or changed by `done` (same transaction, same
/// principal: it passed that use case's checks), with its own audit row; the code as it is now.
/// The scan cache forgets the code after the commit, as `done` asked already.
pub async fn set_logo(
    conn: &mut PgConnection,
    who: &Principal,
    done: Done<LiveCodeRow>,
    change: &LogoChange,
) -> AppResult<Done<LiveCodeRow>> {
    let id = done.value.id;
    let details = match change {
        LogoChange::Keep => return Ok(done),
        LogoChange::Replace(img) => {
            store::put_logo(conn, id, img.content_type, &img.bytes, &img.sha256).await?;
            serde_json::json!({"logo_sha256": img.sha256})
        }
        LogoChange::Remove => {
            store::remove_logo(conn, id).await?;
            serde_json::json!({"logo_sha256": null})
        }
    };
    record(conn, who, "live_code.logo", "live_code", Some(id), details).await?;
    let row = store::get(conn, id, &Access::all()).await?.ok_or(AppError::NotFound)?;
    let after = AfterCommit::invalidate(done.after.invalidate_slugs.into_iter().chain([row.slug.clone()]));
    Ok(Done::new(row, after))
}
