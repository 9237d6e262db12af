//! The entry questionnaire (入群问卷): the signed link the bot sends an applicant, opening it,
//! and the applicant's submission — the answers stored on the member and the request approved
//! through the same outbound path as the operator queue (`automation::answer_request`), once.
//!
//! Public (no login, no session, no CSRF token): the link's token is bound to one join request
//! and ends with it, so a form posted with it can only answer that request, and only while it
//! is pending. Links are signed with the installation's `questionnaire_key` (`app_secrets`,
//! shared by every process), so no row is kept per link.

use sqlx::PgConnection;

use crate::domain::automation::RequestStatus;
use crate::domain::questionnaire::{Claims, Refused};
use crate::i18n::Lang;
use crate::store::automation::RequestRow;
use crate::Config;

/// The signing key, created by the first process that needs it. Read per use: links are made
/// once per join request and opened a few times, behind a per-address limit.
pub async fn key(conn: &mut PgConnection) -> sqlx::Result<Vec<u8>> {
    let fresh = crate::auth::random_token(32);
    Ok(crate::store::secrets::get_or_create(conn, "questionnaire_key", fresh.as_bytes()).await?.0)
}

/// The link to request `request_id`'s questionnaire in `lang`, open until `expires` (unix seconds).
pub async fn link(
    conn: &mut PgConnection,
    config: &Config,
    request_id: i64,
    expires: i64,
    lang: Lang,
) -> sqlx::Result<String> {
    let key = key(conn).await?;
    let token = Claims { request_id, expires, lang }.sign(&key);
    Ok(format!("{}/q/{token}", config.public_base()))
}

/// The request a token opens (any status: the page says when it is closed), with its claims.
/// Refused when altered, ended, or the request is gone or was never sent a questionnaire.
pub async fn open(
    conn: &mut PgConnection,
    token: &str,
    now: i64,
) -> sqlx::Result<Result<(Claims, RequestRow), Refused>> {
    let key = key(conn).await?;
    let claims = match Claims::verify(token, &key, now) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    Ok(match crate::store::automation::request(conn, claims.request_id).await? {
        Some(r) if !r.questions.is_empty() => Ok((claims, r)),
        _ => Err(Refused::Invalid),
    })
}

/// The applicant's valid answers to a request's questions: approves the request if it is still
/// pending (a conditional update, so two submissions approve once), writes the answers and
/// enqueues the approval with its activity row, all in the caller's transaction. False when
/// the request was no longer pending (answered, decided by an operator, or expired): nothing
/// is written.
pub async fn submit(
    conn: &mut PgConnection,
    config: &Config,
    request: &RequestRow,
    answers: &[String],
) -> sqlx::Result<bool> {
    let Some(row) =
        crate::store::automation::decide(conn, request.id, RequestStatus::Approved, "questionnaire", "").await?
    else {
        return Ok(false);
    };
    crate::store::questionnaire::insert_answers(conn, row.id, row.group_id, row.member_id, &row.questions, answers)
        .await?;
    crate::automation::answer_request(conn, config, &row, true, None, "entry:questionnaire", "answered").await?;
    Ok(true)
}
