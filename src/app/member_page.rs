//! The member's own page: the link the bot gives a member who asks (`我的`, `/me`), opening
//! such a link, and revoking every link of a member (an operator's use case, audited).
//!
//! Links are signed with the installation's secret `member_page_key` (`app_secrets`, shared
//! by every process), so opening one needs no row of its own: one read of the member, whose
//! `page_epoch` must still be the link's.

use std::time::Duration;

use sqlx::PgConnection;

use crate::auth::Principal;
use crate::domain::member_page::{Claims, Refused};
use crate::error::{AppError, AppResult};
use crate::i18n::Lang;
use crate::scan::limit::AddressLimiter;
use crate::store::member_page::{self as store, PageMember};

use super::{record, Done};

/// Page views per client address per minute (as new scans are limited on `/l/`).
pub const VIEWS_PER_MINUTE: u32 = 60;

/// This process's part of the member pages: where links point, the signing key (loaded once),
/// and the per-address limit on views.
pub struct MemberPages {
    base: String,
    key: tokio::sync::OnceCell<Vec<u8>>,
    pub limiter: AddressLimiter,
}

impl MemberPages {
    pub fn new(public_base: &str) -> MemberPages {
        MemberPages {
            base: public_base.trim_end_matches('/').to_string(),
            key: tokio::sync::OnceCell::new(),
            limiter: AddressLimiter::new(VIEWS_PER_MINUTE, Duration::from_secs(60)),
        }
    }

    /// The signing key, created by the first process that needs it.
    pub async fn key(&self, conn: &mut PgConnection) -> sqlx::Result<&[u8]> {
        let k = self
            .key
            .get_or_try_init(|| async {
                let fresh = crate::auth::random_token(32);
                let k = crate::store::secrets::get_or_create(conn, "member_page_key", fresh.as_bytes()).await?;
                Ok::<_, sqlx::Error>(k.0)
            })
            .await?;
        Ok(k)
    }

    /// The full URL of a token's page.
    pub fn url(&self, token: &str) -> String {
        format!("{}/m/{token}", self.base)
    }

    /// The full URL of a public path.
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A link to the member's page in `lang`, valid from `now` (unix seconds) for
/// [`crate::domain::member_page::LINK_DAYS`]; None for a member that is gone.
pub async fn link(
    conn: &mut PgConnection,
    pages: &MemberPages,
    member_id: i64,
    lang: Lang,
    now: i64,
) -> sqlx::Result<Option<String>> {
    let Some(epoch) = store::epoch(conn, member_id).await? else { return Ok(None) };
    let key = pages.key(conn).await?;
    Ok(Some(pages.url(&Claims::new(member_id, epoch, lang, now).sign(key))))
}

/// The member a token opens, with the token's claims: refused when altered, ended, revoked
/// (the member's epoch moved on) or the member is gone.
pub async fn open(
    conn: &mut PgConnection,
    pages: &MemberPages,
    token: &str,
    now: i64,
) -> sqlx::Result<Result<(Claims, PageMember), Refused>> {
    let key = pages.key(conn).await?;
    let claims = match Claims::verify(token, key, now) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    Ok(match store::member(conn, claims.member_id).await? {
        Some(m) if m.page_epoch == claims.epoch => Ok((claims, m)),
        _ => Err(Refused::Invalid),
    })
}

/// Ends every page link given to the member so far (a lost phone, a link posted in public);
/// the bot gives a new one when asked. The member must be in the principal's scope.
/// `member.page_links_revoke`.
pub async fn revoke(conn: &mut PgConnection, who: &Principal, member_id: i64) -> AppResult<Done<i32>> {
    who.require_write()?;
    super::members::load(conn, who, member_id).await?;
    let epoch = store::bump_epoch(conn, member_id).await?.ok_or(AppError::NotFound)?;
    record(conn, who, "member.page_links_revoke", "member", Some(member_id), serde_json::json!({"epoch": epoch}))
        .await?;
    Ok(Done::plain(epoch))
}
