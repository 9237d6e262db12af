//! The entry questionnaire's public page, `/q/{token}` (no login: the bot's signed link is the
//! key, bound to one join request): the questions, in the link's language, for a phone (no
//! script, nothing loaded from elsewhere), and the answers posted back. No session and no CSRF
//! token: the form can only answer the request its token names, only while it is pending.
//!
//! Input is bounded before any lookup: the token's length and alphabet, the client address's
//! share of views (shared with the member pages), the body's size; then the signature, the end,
//! the request; answers are checked (required, 500 characters each) and a bad form is shown
//! again with its messages, writing nothing.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;

use super::ctx::client_addr;
use crate::domain::automation::RequestStatus;
use crate::domain::questionnaire::{parse_answers, plausible, Refused, MAX_ANSWER_CHARS, MAX_FORM_BYTES};
use crate::error::{AppError, FieldErrors};
use crate::i18n::{Lang, Tr};
use crate::store::automation::RequestRow;
use crate::AppState;

/// The public page (no session).
pub fn public_router() -> Router<AppState> {
    Router::new().route("/q/{token}", get(page).post(submit))
}

/// One question with what was typed and its messages.
pub struct Field {
    pub name: String,
    pub question: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "questionnaire/form.html")]
struct FormPage {
    tr: Tr,
    intro: String,
    hint: String,
    action: String,
    fields: Vec<Field>,
    errors: FieldErrors,
    max: usize,
}

#[derive(Template)]
#[template(path = "questionnaire/message.html")]
struct MessagePage {
    tr: Tr,
    key: &'static str,
}

fn private(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    // The token is in the address: no other site learns it from a click.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    resp
}

fn html<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => private(super::html(status, body)),
        Err(e) => AppError::from(e).into_response(),
    }
}

fn message(lang: Lang, status: StatusCode, key: &'static str) -> Response {
    html(status, &MessagePage { tr: Tr(lang), key })
}

fn guest_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(headers).unwrap_or(Lang::ZhCn)
}

/// The bounds every request meets before a lookup: the token's shape, then the address's share.
fn bounded(state: &AppState, token: &str, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    if !plausible(token) {
        return Some(message(guest_lang(headers), StatusCode::NOT_FOUND, "auto2.q.invalid"));
    }
    let retry = client_addr(headers, Some(peer), state.config.auth.forwarded_hops())
        .and_then(|ip| state.member_pages.limiter.allow(ip).err())?;
    let mut r = message(guest_lang(headers), StatusCode::TOO_MANY_REQUESTS, "auto2.q.busy");
    if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(r)
}

/// What a request that is not pending any more says.
fn closed(lang: Lang, status: RequestStatus) -> Response {
    let key = match status {
        RequestStatus::Approved => "auto2.q.approved",
        RequestStatus::Declined => "auto2.q.declined",
        _ => "auto2.q.expired",
    };
    message(lang, StatusCode::OK, key)
}

fn form(tr: Tr, token: &str, r: &RequestRow, values: &[String], errors: FieldErrors) -> Response {
    let fields = r
        .questions
        .iter()
        .enumerate()
        .map(|(i, q)| Field {
            name: format!("a{i}"),
            question: q.clone(),
            value: values.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = FormPage {
        tr,
        intro: tr.f("auto2.q.intro", &[("group", &r.group_name)]),
        hint: tr.f("auto2.q.hint", &[("max", &MAX_ANSWER_CHARS)]),
        action: format!("/q/{token}"),
        fields,
        errors,
        max: MAX_ANSWER_CHARS,
    };
    html(status, &page)
}

fn refused(headers: &HeaderMap, r: Refused) -> Response {
    match r {
        Refused::Expired => message(guest_lang(headers), StatusCode::GONE, "auto2.q.expired"),
        Refused::Invalid => message(guest_lang(headers), StatusCode::NOT_FOUND, "auto2.q.invalid"),
    }
}

/// `GET /q/{token}`: the questions, or what became of the request.
async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = bounded(&state, &token, peer, &headers) {
        return r;
    }
    let opened = async {
        let mut conn = state.db.acquire().await?;
        crate::app::questionnaire::open(&mut conn, &token, Utc::now().timestamp()).await
    };
    match opened.await {
        Ok(Ok((claims, r))) if r.status == RequestStatus::Pending => {
            form(Tr(claims.lang), &token, &r, &[], FieldErrors::new())
        }
        Ok(Ok((claims, r))) => closed(claims.lang, r.status),
        Ok(Err(r)) => refused(&headers, r),
        Err(e) => private(AppError::from(e).into_response()),
    }
}

/// `POST /q/{token}`: the answers. Bad answers show the form again (422) and write nothing; good
/// ones approve the request once and store the answers on the member.
async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = bounded(&state, &token, peer, &headers) {
        return r;
    }
    if body.len() > MAX_FORM_BYTES {
        return message(guest_lang(&headers), StatusCode::PAYLOAD_TOO_LARGE, "auto2.q.too_large");
    }
    match answer(&state, &token, &body, guest_lang(&headers)).await {
        Ok(r) => r,
        Err(e) => private(e.into_response()),
    }
}

async fn answer(state: &AppState, token: &str, body: &[u8], guest: Lang) -> Result<Response, AppError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().take(64).collect();
    let mut tx = state.db.begin().await?;
    let (claims, r) = match crate::app::questionnaire::open(&mut tx, token, Utc::now().timestamp()).await? {
        Ok(x) => x,
        Err(Refused::Expired) => return Ok(message(guest, StatusCode::GONE, "auto2.q.expired")),
        Err(Refused::Invalid) => return Ok(message(guest, StatusCode::NOT_FOUND, "auto2.q.invalid")),
    };
    let tr = Tr(claims.lang);
    if r.status != RequestStatus::Pending {
        return Ok(closed(claims.lang, r.status));
    }
    let answers = match parse_answers(&r.questions, &fields) {
        Ok(a) => a,
        Err(errors) => {
            let typed: Vec<String> = (0..r.questions.len())
                .map(|i| {
                    let name = format!("a{i}");
                    let v = fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("");
                    // Shown again as typed, but never more than the page allows.
                    v.chars().take(MAX_ANSWER_CHARS * 2).collect()
                })
                .collect();
            return Ok(form(tr, token, &r, &typed, errors));
        }
    };
    if !crate::app::questionnaire::submit(&mut tx, &state.config, &r, &answers).await? {
        drop(tx);
        let mut conn = state.db.acquire().await?;
        let status = crate::store::automation::request(&mut conn, r.id).await?.map(|x| x.status);
        return Ok(closed(claims.lang, status.unwrap_or(RequestStatus::Expired)));
    }
    tx.commit().await?;
    metrics::counter!("questionnaires_answered_total").increment(1);
    Ok(message(claims.lang, StatusCode::OK, "auto2.q.approved"))
}
