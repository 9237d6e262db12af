//! The member's own page, `/m/{token}` (no login: the bot's signed link is the key): balance,
//! ledger a page at a time, streak and this month's calendar per group, in the link's
//! language, for a phone in WeChat's in-app browser (no script, no outside resources). And
//! the operator's "end this member's page links" (`POST /members/{id}/page-links/revoke`).

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::ctx::{client_addr, Ctx};
use super::{confirm, redirect};
use crate::domain::member_page::{plausible, Refused, LEDGER_PAGE, MAX_LEDGER_PAGE};
use crate::error::{AppError, AppResult};
use crate::i18n::{Lang, Tr};
use crate::store::member_page::{self as store, CheckinGroup};
use crate::AppState;

/// The public page (no session).
pub fn public_router() -> Router<AppState> {
    Router::new().route("/m/{token}", get(page))
}

/// The admin action (behind login and CSRF).
pub fn router() -> Router<AppState> {
    Router::new().route("/members/{id}/page-links/revoke", post(revoke))
}

/// One ledger line in words.
pub struct Line {
    pub date: String,
    pub words: &'static str,
    pub delta: String,
    pub credit: bool,
}

/// One day of a calendar (None cells pad the first and last week).
pub struct Day {
    pub n: u32,
    pub hit: bool,
    pub today: bool,
}

/// A group's check-ins: streak, days in all, and this month (in the group's days).
pub struct GroupCard {
    pub name: String,
    pub streak: i32,
    pub total_days: i64,
    pub month: String,
    pub weeks: Vec<Vec<Option<Day>>>,
    /// The poster of the member's latest check-in here, when the group has check-in posters.
    pub poster: Option<String>,
}

/// Where a member's invite progress goes (confirmed, pending, what the next reward needs).
/// Invites are built elsewhere; until they are connected there is nothing to show, and the
/// page shows nothing rather than anything made up.
/// One campaign the member can invite for: where they stand and their personal link.
pub struct InviteProgress {
    pub campaign: String,
    pub confirmed: i64,
    pub pending: i64,
    /// The confirmed invites still needed for the next reward (None: every stage reached).
    pub more: Option<String>,
    pub link: Option<String>,
    /// The member's own Telegram links for the campaign's groups they are in: (label, link;
    /// None while it is being made).
    pub platform_links: Vec<(String, Option<String>)>,
}

#[derive(Template)]
#[template(path = "member/page.html")]
struct MemberPage {
    tr: Tr,
    name: String,
    balance: i64,
    lines: Vec<Line>,
    prev: Option<String>,
    next: Option<String>,
    groups: Vec<GroupCard>,
    invites: Vec<InviteProgress>,
    weekdays: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "member/refused.html")]
struct RefusedPage {
    tr: Tr,
    key: &'static str,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
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

fn refused(headers: &HeaderMap, status: StatusCode, key: &'static str) -> Response {
    let tr = Tr(Lang::from_accept_language(headers).unwrap_or(Lang::ZhCn));
    html(status, &RefusedPage { tr, key })
}

/// `GET /m/{token}`: bounded before anything is looked up (the token's length and alphabet,
/// then the address's share of views), then the signature, the end and the member's epoch.
async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !plausible(&token) {
        return refused(&headers, StatusCode::NOT_FOUND, "me.refused.invalid");
    }
    if let Some(retry) = client_addr(&headers, Some(peer), state.config.auth.forwarded_hops())
        .and_then(|ip| state.member_pages.limiter.allow(ip).err())
    {
        let mut r = refused(&headers, StatusCode::TOO_MANY_REQUESTS, "me.refused.busy");
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match show(&state, &token, q.page).await {
        Ok(Ok(r)) => r,
        Ok(Err(Refused::Expired)) => refused(&headers, StatusCode::GONE, "me.refused.expired"),
        Ok(Err(Refused::Invalid)) => refused(&headers, StatusCode::NOT_FOUND, "me.refused.invalid"),
        Err(e) => private(e.into_response()),
    }
}

async fn show(state: &AppState, token: &str, page: Option<i64>) -> AppResult<Result<Response, Refused>> {
    let mut conn = state.db.acquire().await?;
    let now = Utc::now();
    let (claims, member) =
        match crate::app::member_page::open(&mut conn, &state.member_pages, token, now.timestamp()).await? {
            Ok(x) => x,
            Err(r) => return Ok(Err(r)),
        };
    let tr = Tr(claims.lang);
    let number = page.unwrap_or(1).clamp(1, MAX_LEDGER_PAGE);
    let mut rows = store::ledger(&mut conn, member.id, LEDGER_PAGE, (number - 1) * LEDGER_PAGE).await?;
    let more = rows.len() as i64 > LEDGER_PAGE;
    rows.truncate(LEDGER_PAGE as usize);
    let tz = state.config.display_timezone.tz();
    let lines = rows
        .into_iter()
        .map(|r| Line {
            date: r.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
            words: tr.tk("me.kind", r.kind.as_str()),
            delta: if r.delta > 0 { format!("+{}", r.delta) } else { r.delta.to_string() },
            credit: r.delta > 0,
        })
        .collect();
    let at = |n: i64| if n == 1 { format!("/m/{token}") } else { format!("/m/{token}?page={n}") };
    let mut groups = Vec::new();
    for g in store::checkin_groups(&mut conn, member.id).await? {
        let poster = match g.poster_template_id {
            Some(_) => {
                let c = crate::domain::checkin_poster::PosterClaims {
                    group_id: g.group_id,
                    day: g.last_day,
                    streak: g.last_streak,
                    total_days: g.total_days,
                    user_id: member.external_user_id.clone(),
                };
                Some(format!("/c/{}", c.sign(state.member_pages.key(&mut conn).await?)))
            }
            None => None,
        };
        let mut card = card(&mut conn, &tr, member.id, g, now).await?;
        card.poster = poster;
        groups.push(card);
    }
    let invites = invite_progress(&mut conn, state, &tr, member.id).await?;
    drop(conn);
    let p = MemberPage {
        weekdays: (1..=7).map(|d| tr.tk("me.weekday", d.to_string())).collect(),
        tr,
        name: member.display_name.clone(),
        balance: member.balance,
        lines,
        prev: (number > 1).then(|| at(number - 1)),
        next: (more && number < MAX_LEDGER_PAGE).then(|| at(number + 1)),
        groups,
        invites,
    };
    Ok(Ok(html(StatusCode::OK, &p)))
}

/// The member's invite progress per campaign (`app::invites::progress`), for the page's invite
/// section (not shown when there is no campaign they can invite for).
async fn invite_progress(
    conn: &mut sqlx::PgConnection,
    state: &AppState,
    tr: &Tr,
    member: i64,
) -> AppResult<Vec<InviteProgress>> {
    let all = crate::app::invites::progress(conn, member, state.config.public_base()).await?;
    Ok(all
        .into_iter()
        .map(|p| InviteProgress {
            campaign: p.campaign,
            confirmed: p.confirmed,
            pending: p.pending,
            more: p.more_needed.map(|n| tr.f("me.invites_more", &[("n", &n)])),
            link: p.link,
            platform_links: p
                .platform_links
                .into_iter()
                .map(|l| (tr.f("invlinks.me.group_link", &[("group", &l.group_name)]), l.link))
                .collect(),
        })
        .collect())
}

/// A group's card: the running streak (0 when the member missed yesterday), days in all, and
/// this month's calendar in the group's own days (zone and day start).
async fn card(
    conn: &mut sqlx::PgConnection,
    tr: &Tr,
    member: i64,
    g: CheckinGroup,
    now: chrono::DateTime<Utc>,
) -> AppResult<GroupCard> {
    let tz: chrono_tz::Tz = g.timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let today = (now.with_timezone(&tz) - Duration::hours(g.day_start_hour as i64)).date_naive();
    let streak = if g.last_day >= today - Duration::days(1) { g.last_streak } else { 0 };
    let first = today.with_day(1).unwrap_or(today);
    let last = month_end(first);
    let hits = store::days(conn, member, g.group_id, first, last).await?;
    Ok(GroupCard {
        name: g.name,
        streak,
        total_days: g.total_days,
        month: tr.f("me.month", &[("year", &first.year()), ("month", &first.month())]),
        weeks: weeks(first, last, today, &hits),
        poster: None,
    })
}

fn month_end(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 { (first.year() + 1, 1) } else { (first.year(), first.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).map(|d| d - Duration::days(1)).unwrap_or(first)
}

/// The month from `first` to `last` as weeks from Monday, padded with empty cells.
fn weeks(first: NaiveDate, last: NaiveDate, today: NaiveDate, hits: &[NaiveDate]) -> Vec<Vec<Option<Day>>> {
    let mut weeks = Vec::new();
    let mut week: Vec<Option<Day>> = (0..first.weekday().num_days_from_monday()).map(|_| None).collect();
    let mut d = first;
    while d <= last {
        week.push(Some(Day { n: d.day(), hit: hits.contains(&d), today: d == today }));
        if week.len() == 7 {
            weeks.push(std::mem::take(&mut week));
        }
        d += Duration::days(1);
    }
    if !week.is_empty() {
        week.resize_with(7, || None);
        weeks.push(week);
    }
    weeks
}

/// Ends every page link the member was given (asks first).
async fn revoke(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, body: Bytes) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let mut conn = state.db.acquire().await?;
    let m = crate::app::members::load(&mut conn, &ctx.principal, id).await?;
    drop(conn);
    let back = format!("/members/{id}");
    if !confirm::given(&body) {
        let question = ctx.tr.f("me.revoke_confirm", &[("name", &m.display_name)]);
        let action = format!("/members/{id}/page-links/revoke");
        let ask = confirm::Ask { nav: "members", question, action: &action, button_key: "me.revoke", cancel: &back };
        return confirm::page(&ctx, ask).await;
    }
    let mut tx = state.db.begin().await?;
    crate::app::member_page::revoke(&mut tx, &ctx.principal, id).await?.commit(tx, &state).await?;
    ctx.flash("success", "me.revoked").await?;
    Ok(redirect(&back))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_whole_weeks_from_monday() {
        // December 2026 starts on a Tuesday and has 31 days.
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let last = month_end(first);
        assert_eq!(last.day(), 31);
        let hit = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let w = weeks(first, last, hit, &[hit]);
        assert_eq!(w.len(), 5);
        assert!(w.iter().all(|w| w.len() == 7));
        assert!(w[0][0].is_none());
        let d2 = w[0][2].as_ref().unwrap();
        assert!(d2.n == 2 && d2.hit && d2.today);
        assert_eq!(month_end(NaiveDate::from_ymd_opt(2028, 2, 1).unwrap()).day(), 29);
    }
}
