//! Check-in pages: a group's rules (keywords, points, streak bonuses, day boundary, make-ups,
//! replies), the group's check-ins (today in order, current streaks, a month calendar), and the
//! activity and check-in sections of the member page.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgConnection;

use super::ctx::{Ctx, Layout};
use super::{redirect, render};
use crate::domain::checkin::{Rules, StreakBonus};
use crate::error::{AppError, AppResult, FieldErrors};
use crate::i18n::Lang;
use crate::store::audit::{self, Actor};
use crate::store::checkins::{self as store_checkins, CalendarHit, StreakRow, TodayRow};
use crate::store::groups::{self, GroupRow};
use crate::AppState;

/// The placeholders a reply template may use.
pub const PLACEHOLDERS: [&str; 6] = ["name", "streak", "total_days", "points", "balance", "rank_today"];
const MAX_KEYWORDS: usize = 20;
const MAX_BONUSES: usize = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups/{id}/checkin-rules", get(rules_form).post(save_rules))
        .route("/groups/{id}/checkins", get(checkins_page))
}

/// The group, if it exists and is in the principal's scope (else 404).
async fn load_group(conn: &mut PgConnection, ctx: &Ctx, id: i64) -> AppResult<GroupRow> {
    ctx.principal.require_group(id)?;
    groups::get(conn, id).await?.ok_or(AppError::NotFound)
}

// ---------------------------------------------------------------- rules

/// The rules form as typed. Checkboxes are present (any value) or absent.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct RulesRaw {
    enabled: String,
    keywords: String,
    points: String,
    streak_bonuses: String,
    day_start_hour: String,
    makeup_enabled: String,
    makeup_keyword: String,
    makeup_cost: String,
    makeup_days_back: String,
    makeup_per_month: String,
    reply_lang: String,
    reply_zh: String,
    reply_en: String,
}

fn int_in(input: &str, min: i32, max: i32, field: &str, e: &mut FieldErrors) -> i32 {
    match input.trim().parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            e.add(field, "error.number_range");
            min
        }
    }
}

/// Keywords separated by commas (either width) or line breaks; trimmed, without duplicates.
fn parse_keywords(input: &str, e: &mut FieldErrors) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in input.split([',', '，', '\n', '\r']).map(str::trim).filter(|k| !k.is_empty()) {
        if k.chars().count() > 32 {
            e.add("keywords", "checkin_rules.error.keyword_long");
            return out;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(k)) {
            out.push(k.to_string());
        }
    }
    if out.is_empty() {
        e.add("keywords", "checkin_rules.error.keywords_required");
    } else if out.len() > MAX_KEYWORDS {
        e.add("keywords", "checkin_rules.error.too_many");
    }
    out
}

/// Lines of `day=points` (blank lines ignored), sorted by day, each day once.
fn parse_bonuses(input: &str, e: &mut FieldErrors) -> Vec<StreakBonus> {
    let mut out: Vec<StreakBonus> = Vec::new();
    for line in input.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed = line.split_once(['=', '＝']).and_then(|(d, p)| {
            let day = d.trim().parse::<i32>().ok().filter(|d| (1..=3650).contains(d))?;
            let points = p.trim().parse::<i32>().ok().filter(|p| (1..=100_000).contains(p))?;
            Some(StreakBonus { day, points })
        });
        match parsed {
            Some(b) if out.iter().any(|o| o.day == b.day) => {
                e.add("streak_bonuses", "checkin_rules.error.bonus_twice");
                return out;
            }
            Some(b) => out.push(b),
            None => {
                e.add("streak_bonuses", "checkin_rules.error.bonus_line");
                return out;
            }
        }
    }
    if out.len() > MAX_BONUSES {
        e.add("streak_bonuses", "checkin_rules.error.too_many");
    }
    out.sort_by_key(|b| b.day);
    out
}

/// A reply template: required, at most 500 characters, only known `{placeholders}`.
fn parse_reply(input: &str, field: &str, e: &mut FieldErrors) -> String {
    let s = crate::domain::required_text(input, 500, field, e);
    let mut rest = s.as_str();
    while let Some(i) = rest.find('{') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find('}') else { break };
        let name = &rest[..j];
        let ident = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident && !PLACEHOLDERS.contains(&name) {
            e.add(field, "checkin_rules.error.placeholder");
            break;
        }
    }
    s
}

impl RulesRaw {
    /// The form of existing (or default) rules.
    pub fn of(r: &Rules) -> RulesRaw {
        let on = |b: bool| if b { "on".to_string() } else { String::new() };
        RulesRaw {
            enabled: on(r.enabled),
            keywords: r.keywords.join("\n"),
            points: r.points.to_string(),
            streak_bonuses: r
                .streak_bonuses
                .iter()
                .map(|b| format!("{}={}", b.day, b.points))
                .collect::<Vec<_>>()
                .join("\n"),
            day_start_hour: r.day_start_hour.to_string(),
            makeup_enabled: on(r.makeup_enabled),
            makeup_keyword: r.makeup_keyword.clone(),
            makeup_cost: r.makeup_cost.to_string(),
            makeup_days_back: r.makeup_days_back.to_string(),
            makeup_per_month: r.makeup_per_month.to_string(),
            reply_lang: r.reply_lang.code().to_string(),
            reply_zh: r.reply_zh.clone(),
            reply_en: r.reply_en.clone(),
        }
    }

    /// Valid rules (in the default time zone: the group's is not part of the form).
    pub fn parse(&self) -> Result<Rules, FieldErrors> {
        let mut e = FieldErrors::new();
        let keywords = parse_keywords(&self.keywords, &mut e);
        crate::domain::no_nul(&self.keywords, "keywords", &mut e);
        crate::domain::no_nul(&self.makeup_keyword, "makeup_keyword", &mut e);
        let points = int_in(&self.points, 0, 100_000, "points", &mut e);
        let streak_bonuses = parse_bonuses(&self.streak_bonuses, &mut e);
        let day_start_hour = int_in(&self.day_start_hour, 0, 23, "day_start_hour", &mut e);
        let makeup_enabled = !self.makeup_enabled.trim().is_empty();
        let makeup_keyword = self.makeup_keyword.trim().to_string();
        if makeup_keyword.chars().count() > 32 {
            e.add("makeup_keyword", "error.too_long");
        } else if makeup_enabled && makeup_keyword.is_empty() {
            e.add("makeup_keyword", "error.required");
        } else if !makeup_keyword.is_empty() && keywords.iter().any(|k| k.eq_ignore_ascii_case(&makeup_keyword)) {
            e.add("makeup_keyword", "checkin_rules.error.makeup_clash");
        }
        let makeup_cost = int_in(&self.makeup_cost, 0, 100_000, "makeup_cost", &mut e);
        let makeup_days_back = int_in(&self.makeup_days_back, 1, 30, "makeup_days_back", &mut e);
        let makeup_per_month = int_in(&self.makeup_per_month, 0, 31, "makeup_per_month", &mut e);
        let reply_lang = match self.reply_lang.trim() {
            "en" => Lang::En,
            "zh-CN" => Lang::ZhCn,
            _ => {
                e.add("reply_lang", "error.choice");
                Lang::ZhCn
            }
        };
        let reply_zh = parse_reply(&self.reply_zh, "reply_zh", &mut e);
        let reply_en = parse_reply(&self.reply_en, "reply_en", &mut e);
        if !e.is_empty() {
            return Err(e);
        }
        Ok(Rules {
            enabled: !self.enabled.trim().is_empty(),
            keywords,
            points,
            streak_bonuses,
            timezone: Rules::default().timezone,
            day_start_hour,
            makeup_enabled,
            makeup_keyword,
            makeup_cost,
            makeup_days_back,
            makeup_per_month,
            reply_lang,
            reply_zh,
            reply_en,
            // Set on its own page (`web::checkin_poster`); saving the rules keeps it.
            poster: None,
        })
    }

    fn enabled_on(&self) -> bool {
        !self.enabled.trim().is_empty()
    }

    fn makeup_on(&self) -> bool {
        !self.makeup_enabled.trim().is_empty()
    }
}

#[derive(Template)]
#[template(path = "checkins/rules.html")]
struct RulesPage {
    l: Layout,
    g: GroupRow,
    raw: RulesRaw,
    errors: FieldErrors,
    /// Whether the group has its own rules yet (else the defaults are shown).
    saved: bool,
    placeholders: String,
    can_write: bool,
}

async fn rules_page(
    state: &AppState,
    ctx: &Ctx,
    g: GroupRow,
    raw: Option<RulesRaw>,
    errors: FieldErrors,
    status: StatusCode,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let saved = store_checkins::has_rules(&mut conn, g.id).await?;
    let raw = match raw {
        Some(r) => r,
        None => RulesRaw::of(&store_checkins::rules(&mut conn, g.id, &g.timezone).await?),
    };
    drop(conn);
    let page = RulesPage {
        l: ctx.layout_titled(format!("{} · {}", ctx.tr.t("checkin_rules.title"), g.name), "groups").await?,
        g,
        raw,
        errors,
        saved,
        placeholders: PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(" "),
        can_write: ctx.principal.can_write(),
    };
    render(status, &page)
}

async fn rules_form(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let g = load_group(&mut conn, &ctx, id).await?;
    drop(conn);
    rules_page(&state, &ctx, g, None, FieldErrors::new(), StatusCode::OK).await
}

async fn save_rules(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(raw): Form<RulesRaw>,
) -> AppResult<Response> {
    ctx.principal.require_write()?;
    let mut conn = state.db.acquire().await?;
    let g = load_group(&mut conn, &ctx, id).await?;
    drop(conn);
    let r = match raw.parse() {
        Ok(r) => r,
        Err(errors) => {
            return rules_page(&state, &ctx, g, Some(raw), errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let bonuses = serde_json::to_value(&r.streak_bonuses).map_err(|e| AppError::Other(e.into()))?;
    let mut tx = state.db.begin().await?;
    store_checkins::save_rules(&mut tx, id, &r).await?;
    audit::record(
        &mut tx,
        Actor::Principal(&ctx.principal),
        "group.checkin_rules",
        "group",
        Some(id.to_string()),
        serde_json::json!({
            "enabled": r.enabled, "keywords": r.keywords, "points": r.points, "streak_bonuses": bonuses,
            "day_start_hour": r.day_start_hour, "makeup_enabled": r.makeup_enabled,
            "makeup_keyword": r.makeup_keyword, "makeup_cost": r.makeup_cost,
            "makeup_days_back": r.makeup_days_back, "makeup_per_month": r.makeup_per_month,
            "reply_lang": r.reply_lang.code(),
        }),
    )
    .await?;
    tx.commit().await?;
    ctx.flash("success", "checkin_rules.saved").await?;
    Ok(redirect(&format!("/groups/{id}/checkin-rules")))
}

// ---------------------------------------------------------------- a group's check-ins

#[derive(Deserialize, Default)]
struct MonthQuery {
    month: Option<String>,
    /// Page of today's list (1-based, [`TODAY_PAGE`] rows each).
    today_page: Option<String>,
    /// Page of the calendar (1-based, [`CALENDAR_PAGE`] members each).
    calendar_page: Option<String>,
}

/// Rows of today's list per page.
const TODAY_PAGE: i64 = 100;
/// Members of the calendar per page.
const CALENDAR_PAGE: i64 = 50;
/// Running streaks shown.
const STREAKS: i64 = 50;
/// The deepest page either list goes to: beyond it an OFFSET would read too far.
const MAX_PAGE: i64 = 1000;

/// A 1-based page number from the query (1 when missing or not a number), at most [`MAX_PAGE`].
fn page_number(q: &Option<String>) -> i64 {
    q.as_deref().and_then(|p| p.trim().parse::<i64>().ok()).unwrap_or(1).clamp(1, MAX_PAGE)
}

/// Links to the previous and next page of one of the page's lists.
pub struct PageLinks {
    pub prev: Option<String>,
    pub next: Option<String>,
    pub label: String,
}

/// The first day of `?month=YYYY-MM`, else of the month of `today`.
fn month_start(q: &Option<String>, today: NaiveDate) -> NaiveDate {
    q.as_deref()
        .and_then(|m| NaiveDate::parse_from_str(&format!("{}-01", m.trim()), "%Y-%m-%d").ok())
        .filter(|d| (2000..=2100).contains(&d.year()))
        .unwrap_or_else(|| today.with_day(1).unwrap_or(today))
}

fn next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 { (first.year() + 1, 1) } else { (first.year(), first.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first)
}

fn prev_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 1 { (first.year() - 1, 12) } else { (first.year(), first.month() - 1) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first)
}

struct TodayView {
    rank: usize,
    r: TodayRow,
    time: String,
    /// The amount found in the note, in words ("5 公里").
    amount: Option<String>,
}

/// One member's month: per day 0 (none), 1 (checked in), 2 (made up) or 3 (still to come).
struct CalendarRow {
    member_id: i64,
    name: String,
    cells: Vec<u8>,
    total: usize,
}

/// One member's days in a month, from a month's hits ordered by member.
fn calendar(hits: Vec<CalendarHit>, first: NaiveDate, days: usize) -> Vec<CalendarRow> {
    let mut rows: BTreeMap<i64, CalendarRow> = BTreeMap::new();
    for h in hits {
        let row = rows.entry(h.member_id).or_insert_with(|| CalendarRow {
            member_id: h.member_id,
            name: h.display_name.clone(),
            cells: vec![0; days],
            total: 0,
        });
        let i = (h.day - first).num_days();
        if (0..days as i64).contains(&i) {
            row.cells[i as usize] = if h.makeup { 2 } else { 1 };
            row.total += 1;
        }
    }
    let mut out: Vec<CalendarRow> = rows.into_values().collect();
    out.sort_by(|a, b| b.total.cmp(&a.total).then(a.member_id.cmp(&b.member_id)));
    out
}

/// Marks the days after `today` as still to come, so they do not look missed.
fn mark_future(rows: &mut [CalendarRow], first: NaiveDate, today: NaiveDate) {
    let from = (today - first).num_days() + 1;
    for r in rows {
        for (i, c) in r.cells.iter_mut().enumerate() {
            if i as i64 >= from && *c == 0 {
                *c = 3;
            }
        }
    }
}

#[derive(Template)]
#[template(path = "checkins/group.html")]
struct GroupPage {
    l: Layout,
    g: GroupRow,
    today: String,
    /// Which local day "today" is, and why.
    day_note: String,
    enabled: bool,
    checkins: Vec<TodayView>,
    /// How many checked in today (all pages).
    today_total: i64,
    today_links: PageLinks,
    streaks: Vec<StreakRow>,
    month: String,
    prev: String,
    next: String,
    days: Vec<u32>,
    calendar: Vec<CalendarRow>,
    calendar_links: PageLinks,
}

async fn checkins_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<MonthQuery>,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let g = load_group(&mut conn, &ctx, id).await?;
    let rules = store_checkins::rules(&mut conn, id, &g.timezone).await?;
    let today = rules.day_of(Utc::now());
    let (today_page, calendar_page) = (page_number(&q.today_page), page_number(&q.calendar_page));
    let rows = store_checkins::today(&mut conn, id, today, TODAY_PAGE + 1, (today_page - 1) * TODAY_PAGE).await?;
    let today_total = store_checkins::day_count(&mut conn, id, today).await?;
    let streaks = store_checkins::running_streaks(&mut conn, id, today, STREAKS).await?;
    let first = month_start(&q.month, today);
    let after = next_month(first);
    let mut members = store_checkins::calendar_members(
        &mut conn,
        id,
        first,
        after,
        CALENDAR_PAGE + 1,
        (calendar_page - 1) * CALENDAR_PAGE,
    )
    .await?;
    let calendar_more = members.len() as i64 > CALENDAR_PAGE;
    members.truncate(CALENDAR_PAGE as usize);
    let ids: Vec<i64> = members.iter().map(|m| m.member_id).collect();
    let hits = store_checkins::calendar_hits(&mut conn, id, first, after, &ids).await?;
    drop(conn);
    let days = (after - first).num_days() as usize;
    let mut cal = calendar(hits, first, days);
    mark_future(&mut cal, first, today);
    let today_more = rows.len() as i64 > TODAY_PAGE;
    let offset = (today_page - 1) * TODAY_PAGE;
    let checkins = rows
        .into_iter()
        .take(TODAY_PAGE as usize)
        .enumerate()
        .map(|(i, r)| TodayView {
            rank: offset as usize + i + 1,
            time: ctx.time.clock(r.at),
            amount: r.quantity.zip(r.unit).map(|(q, u)| format!("{q} {}", ctx.tr.tk("checkins.units", u.as_str()))),
            r,
        })
        .collect();
    let month = first.format("%Y-%m").to_string();
    let base = format!("/groups/{id}/checkins?month={month}");
    let links = |page: i64, more: bool, param: &str, anchor: &str| PageLinks {
        prev: (page > 1).then(|| format!("{base}&{param}={}#{anchor}", page - 1)),
        next: more.then(|| format!("{base}&{param}={}#{anchor}", page + 1)),
        label: ctx.tr.f("checkins.page", &[("page", &page)]),
    };
    let today_links = links(today_page, today_more && today_page < MAX_PAGE, "today_page", "today");
    let calendar_links = links(calendar_page, calendar_more && calendar_page < MAX_PAGE, "calendar_page", "calendar");
    let page = GroupPage {
        l: ctx.layout_titled(format!("{} · {}", ctx.tr.t("checkins.title"), g.name), "groups").await?,
        today: today.format("%Y-%m-%d").to_string(),
        day_note: ctx.tr.f(
            "checkins.day_note",
            &[("day", &today), ("tz", &g.timezone), ("hour", &format!("{:02}:00", rules.day_start_hour))],
        ),
        enabled: rules.enabled,
        g,
        checkins,
        today_total,
        today_links,
        streaks,
        month,
        prev: prev_month(first).format("%Y-%m").to_string(),
        next: after.format("%Y-%m").to_string(),
        days: (1..=days as u32).collect(),
        calendar: cal,
        calendar_links,
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- member page sections

/// Days of activity shown on the member page.
pub const ACTIVITY_DAYS: i64 = 90;

pub struct ActivityBar {
    pub x: String,
    pub y: String,
    pub h: String,
    pub title: String,
}

/// Messages per day over the last 90 days, as an inline SVG bar chart.
pub struct Activity {
    pub from: String,
    pub to: String,
    pub total: i64,
    pub active_days: usize,
    pub max: i64,
    pub width: u32,
    pub height: u32,
    pub base: u32,
    pub bars: Vec<ActivityBar>,
}

const BAR_SLOT: f64 = 6.0;
const PLOT_H: f64 = 60.0;
const PLOT_TOP: f64 = 4.0;

fn activity_chart(per_day: &[(NaiveDate, i64)], from: NaiveDate, to: NaiveDate) -> Activity {
    let n = ((to - from).num_days() + 1).max(1) as usize;
    let max = per_day.iter().map(|d| d.1).max().unwrap_or(0);
    let scale = if max > 0 { PLOT_H / max as f64 } else { 0.0 };
    let base = PLOT_TOP + PLOT_H;
    let bars = per_day
        .iter()
        .filter(|(d, n)| *n > 0 && *d >= from && *d <= to)
        .map(|(d, m)| {
            let i = (*d - from).num_days() as f64;
            let h = (*m as f64 * scale).max(1.0);
            ActivityBar {
                x: format!("{:.1}", i * BAR_SLOT + 0.5),
                y: format!("{:.1}", base - h),
                h: format!("{h:.1}"),
                title: format!("{}: {m}", d.format("%Y-%m-%d")),
            }
        })
        .collect();
    Activity {
        from: from.format("%Y-%m-%d").to_string(),
        to: to.format("%Y-%m-%d").to_string(),
        total: per_day.iter().map(|d| d.1).sum(),
        active_days: per_day.iter().filter(|d| d.1 > 0).count(),
        max,
        width: (n as f64 * BAR_SLOT) as u32,
        height: (base + 1.0) as u32,
        base: base as u32,
        bars,
    }
}

/// A member's messages per day over the last 90 days, summed over the groups in `scope`.
pub async fn member_activity(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
    today: NaiveDate,
) -> sqlx::Result<Activity> {
    let from = today - Duration::days(ACTIVITY_DAYS - 1);
    // Groups in zones ahead of ours may already count tomorrow.
    let rows = store_checkins::member_activity(conn, member_id, scope, from, today + Duration::days(1)).await?;
    let to = rows.last().map(|r| r.0).filter(|d| *d > today).unwrap_or(today);
    Ok(activity_chart(&rows, from, to))
}

pub use store_checkins::MemberCheckin;

/// A member's 30 latest check-ins in the groups in `scope`.
pub async fn member_checkins(
    conn: &mut PgConnection,
    member_id: i64,
    scope: Option<&[i64]>,
) -> sqlx::Result<Vec<MemberCheckin>> {
    store_checkins::member_checkins(conn, member_id, scope).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RulesRaw {
        RulesRaw::of(&Rules::default())
    }

    #[test]
    fn the_defaults_round_trip_through_the_form() {
        let parsed = good().parse().unwrap();
        assert_eq!(parsed, Rules::default());
    }

    #[test]
    fn keywords_split_on_commas_and_lines_and_must_not_be_empty() {
        let raw = RulesRaw { keywords: "签到，打卡\n/checkin, 签到 ,\r\n".into(), ..good() };
        assert_eq!(raw.parse().unwrap().keywords, vec!["签到", "打卡", "/checkin"]);
        let raw = RulesRaw { keywords: " , \n".into(), ..good() };
        assert!(raw.parse().unwrap_err().has("keywords"));
    }

    #[test]
    fn bonus_lines_are_day_equals_points() {
        let raw = RulesRaw { streak_bonuses: "30=20\n\n 7 = 5 ".into(), ..good() };
        assert_eq!(
            raw.parse().unwrap().streak_bonuses,
            vec![StreakBonus { day: 7, points: 5 }, StreakBonus { day: 30, points: 20 }]
        );
        for bad in ["x", "7", "7=", "=5", "0=5", "7=-1", "7=5\n7=6"] {
            let raw = RulesRaw { streak_bonuses: bad.into(), ..good() };
            assert!(raw.parse().unwrap_err().has("streak_bonuses"), "{bad:?}");
        }
        let raw = RulesRaw { streak_bonuses: "".into(), ..good() };
        assert!(raw.parse().unwrap().streak_bonuses.is_empty());
    }

    #[test]
    fn numbers_are_bounded_and_replies_use_known_placeholders() {
        for (field, value) in
            [("day_start_hour", "24"), ("day_start_hour", "-1"), ("points", "x"), ("makeup_days_back", "0")]
        {
            let mut raw = good();
            match field {
                "day_start_hour" => raw.day_start_hour = value.into(),
                "points" => raw.points = value.into(),
                _ => raw.makeup_days_back = value.into(),
            }
            assert!(raw.parse().unwrap_err().has(field), "{field}={value}");
        }
        let raw = RulesRaw { reply_en: "{name} got {points} {bogus}".into(), ..good() };
        assert!(raw.parse().unwrap_err().has("reply_en"));
        let raw = RulesRaw { reply_en: "{name} {rank_today} { } {}".into(), ..good() };
        assert!(raw.parse().is_ok());
        let raw = RulesRaw { makeup_keyword: "签到".into(), ..good() };
        assert!(raw.parse().unwrap_err().has("makeup_keyword"));
        let raw = RulesRaw { makeup_enabled: String::new(), makeup_keyword: String::new(), ..good() };
        assert!(raw.parse().is_ok(), "no keyword needed when make-ups are off");
    }

    #[test]
    fn months_default_to_the_current_one_and_wrap_at_the_year() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 15).unwrap();
        assert_eq!(month_start(&None, today), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(month_start(&Some("2026-02".into()), today), NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
        assert_eq!(month_start(&Some("junk".into()), today), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(
            next_month(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            prev_month(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()
        );
    }

    #[test]
    fn the_calendar_marks_days_and_makeups_per_member() {
        let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let hit = |m: i64, d: u32, makeup: bool| CalendarHit {
            member_id: m,
            display_name: format!("m{m}"),
            day: NaiveDate::from_ymd_opt(2026, 11, d).unwrap(),
            makeup,
        };
        let rows = calendar(vec![hit(1, 1, false), hit(2, 2, false), hit(2, 3, true)], first, 30);
        assert_eq!(rows[0].member_id, 2, "most days first");
        assert_eq!(&rows[0].cells[..4], &[0, 1, 2, 0]);
        assert_eq!(rows[1].cells[0], 1);
    }

    #[test]
    fn days_after_today_are_still_to_come_not_missed() {
        let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let hit = CalendarHit {
            member_id: 1,
            display_name: "m".into(),
            day: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            makeup: false,
        };
        let mut rows = calendar(vec![hit], first, 30);
        mark_future(&mut rows, first, NaiveDate::from_ymd_opt(2026, 11, 3).unwrap());
        assert_eq!(&rows[0].cells[..5], &[0, 1, 0, 3, 3]);
        assert!(rows[0].cells[3..].iter().all(|c| *c == 3));
    }
}
