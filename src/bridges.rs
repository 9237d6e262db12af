//! Processing bridge deliveries: one transaction per delivery, deduplicated on the protocol's
//! delivery id (a retry changes nothing and gets the stored reply), turning events into
//! members, memberships, activity, check-ins and ledger entries, and answering a reply text.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::domain::bridge::{onebot_reply, telegram_reply, Delivery, Event, EventBody, Kind};
use crate::domain::checkin::{render, streaks, Intent, Rules, StreakBonus};
use crate::i18n::{Lang, Tr};
use crate::store::points::{self, Applied, NewEntry};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BridgeRow {
    pub id: i64,
    pub kind: String,
    pub platform: String,
    pub name: String,
    pub secret: String,
    pub api_base_url: Option<String>,
    pub access_token: Option<String>,
    pub self_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_event_at: Option<DateTime<Utc>>,
}

impl BridgeRow {
    pub fn kind(&self) -> Kind {
        Kind::parse(&self.kind).unwrap_or(Kind::Generic)
    }
}

pub async fn get(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<BridgeRow>> {
    sqlx::query_as(
        "SELECT id, kind, platform, name, secret, api_base_url, access_token, self_id, created_at, last_event_at FROM bridges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Rejected deliveries, kept in memory per process for the bridge's status page: a rejected
/// delivery must write nothing to the database (invariant 5).
/// One rejected delivery: when, the status answered, why.
pub type Rejection = (DateTime<Utc>, u16, String);

#[derive(Default)]
pub struct RecentErrors(std::sync::Mutex<std::collections::HashMap<i64, std::collections::VecDeque<Rejection>>>);

impl RecentErrors {
    pub fn push(&self, bridge_id: i64, status: u16, reason: &str) {
        if let Ok(mut m) = self.0.lock() {
            let q = m.entry(bridge_id).or_default();
            q.push_front((Utc::now(), status, reason.chars().take(300).collect()));
            q.truncate(50);
        }
        metrics::counter!("bridge_rejections_total", "status" => status.to_string()).increment(1);
    }

    pub fn list(&self, bridge_id: i64) -> Vec<Rejection> {
        self.0.lock().ok().and_then(|m| m.get(&bridge_id).map(|q| q.iter().cloned().collect())).unwrap_or_default()
    }
}

/// Handles one authenticated, parsed delivery in one transaction; returns the reply body.
pub async fn handle(db: &sqlx::PgPool, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<Option<Value>> {
    let mut tx = db.begin().await?;
    let first = d.events.first();
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO bridge_events (bridge_id, dedupe_key, kind, chat_id, user_id, status) VALUES ($1, $2, $3, $4, $5, 0)
         ON CONFLICT (bridge_id, dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(bridge.id)
    .bind(&d.dedupe_key)
    .bind(d.kind)
    .bind(first.map(|e| e.chat.id.clone()))
    .bind(first.map(|e| e.user.id.clone()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(event_row) = inserted else {
        // A retry: the first delivery's reply, nothing else.
        let reply: Option<Value> =
            sqlx::query_scalar("SELECT reply FROM bridge_events WHERE bridge_id = $1 AND dedupe_key = $2")
                .bind(bridge.id)
                .bind(&d.dedupe_key)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "duplicate").increment(1);
        return Ok(reply);
    };
    let mut reply_text = None;
    for e in &d.events {
        if let Some(t) = process(&mut tx, bridge, e).await? {
            reply_text = Some(t);
        }
    }
    let reply = reply_text.map(|t| match bridge.kind() {
        Kind::OneBot11 => onebot_reply(&t),
        Kind::Telegram => match &d.reply_to {
            Some((chat, msg)) => telegram_reply(chat, msg, &t),
            None => serde_json::json!({"method": "sendMessage", "text": t}),
        },
        Kind::Generic => serde_json::json!({"reply": t}),
    });
    sqlx::query("UPDATE bridge_events SET reply = $2, status = $3 WHERE id = $1")
        .bind(event_row)
        .bind(&reply)
        .bind(if reply.is_some() { 200 } else { 204 })
        .execute(&mut *tx)
        .await?;
    // One row shared by every delivery of this bridge: touch it at most once a second so that
    // concurrent deliveries do not queue behind its lock.
    sqlx::query(
        "UPDATE bridges SET last_event_at = now(), self_id = COALESCE(self_id, $2)
         WHERE id = $1 AND (last_event_at IS NULL OR last_event_at < now() - interval '1 second' OR (self_id IS NULL AND $2 IS NOT NULL))",
    )
    .bind(bridge.id)
    .bind(&d.self_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.clone(), "result" => "processed").increment(1);
    Ok(reply)
}

struct GroupRef {
    id: i64,
    timezone: String,
}

async fn member_id(
    conn: &mut PgConnection,
    platform: &str,
    user_id: &str,
    name: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO members (platform, external_user_id, display_name, last_active_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (platform, external_user_id) DO UPDATE SET display_name = EXCLUDED.display_name,
            last_active_at = GREATEST(members.last_active_at, EXCLUDED.last_active_at), updated_at = now()
         RETURNING id",
    )
    .bind(platform)
    .bind(user_id)
    .bind(if name.is_empty() { user_id } else { name })
    .bind(at)
    .fetch_one(conn)
    .await
}

/// One event; returns a reply text when the event asks for one (check-ins).
async fn process(conn: &mut PgConnection, bridge: &BridgeRow, e: &Event) -> sqlx::Result<Option<String>> {
    let group: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, timezone FROM groups WHERE platform = $1 AND external_chat_id = $2 AND status <> 'archived'",
    )
    .bind(&bridge.platform)
    .bind(&e.chat.id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((gid, timezone)) = group else {
        sqlx::query(
            "INSERT INTO unlinked_chats (bridge_id, chat_id, title) VALUES ($1, $2, $3)
             ON CONFLICT (bridge_id, chat_id) DO UPDATE SET last_seen = now(), events = unlinked_chats.events + 1,
                title = COALESCE(NULLIF(EXCLUDED.title, ''), unlinked_chats.title)",
        )
        .bind(bridge.id)
        .bind(&e.chat.id)
        .bind(e.chat.title.clone().unwrap_or_default())
        .execute(&mut *conn)
        .await?;
        return Ok(None);
    };
    let group = GroupRef { id: gid, timezone };
    let mid = member_id(conn, &bridge.platform, &e.user.id, &e.user.name, e.at).await?;
    match &e.body {
        EventBody::Message { text, force_checkin, .. } => {
            sqlx::query(
                "INSERT INTO memberships (member_id, group_id, role, joined_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO UPDATE SET role = EXCLUDED.role",
            )
            .bind(mid)
            .bind(group.id)
            .bind(e.user.role.unwrap_or("member"))
            .bind(e.at)
            .execute(&mut *conn)
            .await?;
            let rules = load_rules(conn, group.id, &group.timezone).await?;
            let day = rules.day_of(e.at);
            sqlx::query(
                "INSERT INTO member_daily_activity (member_id, group_id, day, messages) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (member_id, group_id, day) DO UPDATE SET messages = member_daily_activity.messages + 1",
            )
            .bind(mid)
            .bind(group.id)
            .bind(day)
            .execute(&mut *conn)
            .await?;
            match rules.intent(text, *force_checkin) {
                Intent::CheckIn => check_in(conn, &rules, mid, &e.user.name, group.id, e.at).await.map(Some),
                Intent::MakeUp => make_up(conn, &rules, mid, &e.user.name, group.id, e.at).await.map(Some),
                Intent::None => Ok(None),
            }
        }
        EventBody::Join { inviter, invite_link_name } => {
            let inviter_id = match inviter {
                Some(u) => Some(member_id(conn, &bridge.platform, &u.id, &u.name, e.at).await?),
                None => None,
            };
            let opened = sqlx::query(
                "INSERT INTO memberships (member_id, group_id, joined_at, inviter_member_id, invite_link_name) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (member_id, group_id) WHERE left_at IS NULL DO NOTHING",
            )
            .bind(mid)
            .bind(group.id)
            .bind(e.at)
            .bind(inviter_id)
            .bind(invite_link_name)
            .execute(&mut *conn)
            .await?;
            if opened.rows_affected() == 1 {
                sqlx::query("UPDATE groups SET member_count = member_count + 1, updated_at = now() WHERE id = $1 AND member_count IS NOT NULL")
                    .bind(group.id)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(None)
        }
        EventBody::Leave { reason } => {
            let closed = sqlx::query(
                "UPDATE memberships SET left_at = GREATEST($3, joined_at), left_reason = $4
                 WHERE member_id = $1 AND group_id = $2 AND left_at IS NULL",
            )
            .bind(mid)
            .bind(group.id)
            .bind(e.at)
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?;
            if closed.rows_affected() == 1 {
                sqlx::query("UPDATE groups SET member_count = GREATEST(member_count - 1, 0), updated_at = now() WHERE id = $1 AND member_count IS NOT NULL")
                    .bind(group.id)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(None)
        }
    }
}

#[derive(sqlx::FromRow)]
struct RulesRow {
    enabled: bool,
    keywords: Vec<String>,
    points: i32,
    streak_bonuses: serde_json::Value,
    day_start_hour: i32,
    makeup_enabled: bool,
    makeup_keyword: String,
    makeup_cost: i32,
    makeup_days_back: i32,
    makeup_per_month: i32,
    reply_lang: String,
    reply_zh: String,
    reply_en: String,
}

/// The group's rules, or the defaults when it has none yet.
pub async fn load_rules(conn: &mut PgConnection, group_id: i64, timezone: &str) -> sqlx::Result<Rules> {
    let tz = timezone.parse().unwrap_or(chrono_tz::Asia::Shanghai);
    let row: Option<RulesRow> = sqlx::query_as(
        "SELECT enabled, keywords, points, streak_bonuses, day_start_hour, makeup_enabled, makeup_keyword, makeup_cost,
                makeup_days_back, makeup_per_month, reply_lang, reply_zh, reply_en
         FROM checkin_rules WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => Rules { timezone: tz, ..Rules::default() },
        Some(r) => Rules {
            enabled: r.enabled,
            keywords: r.keywords,
            points: r.points,
            streak_bonuses: serde_json::from_value::<Vec<StreakBonus>>(r.streak_bonuses).unwrap_or_default(),
            timezone: tz,
            day_start_hour: r.day_start_hour,
            makeup_enabled: r.makeup_enabled,
            makeup_keyword: r.makeup_keyword,
            makeup_cost: r.makeup_cost,
            makeup_days_back: r.makeup_days_back,
            makeup_per_month: r.makeup_per_month,
            reply_lang: Lang::parse(&r.reply_lang).unwrap_or(Lang::ZhCn),
            reply_zh: r.reply_zh,
            reply_en: r.reply_en,
        },
    })
}

async fn award(
    conn: &mut PgConnection,
    member: i64,
    delta: i64,
    kind: &str,
    key: String,
    reference: &str,
) -> sqlx::Result<()> {
    if delta != 0 {
        points::apply(
            conn,
            NewEntry {
                member_id: member,
                delta,
                kind,
                reference,
                idempotency_key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await?;
    }
    Ok(())
}

async fn check_in(
    conn: &mut PgConnection,
    rules: &Rules,
    member: i64,
    name: &str,
    group: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<String> {
    let tr = Tr(rules.reply_lang);
    let day = rules.day_of(at);
    let prev: Option<(NaiveDate, i32)> =
        sqlx::query_as("SELECT day, streak FROM checkins WHERE member_id = $1 AND group_id = $2 AND day < $3 ORDER BY day DESC LIMIT 1")
            .bind(member)
            .bind(group)
            .bind(day)
            .fetch_optional(&mut *conn)
            .await?;
    let streak = match prev {
        Some((d, s)) if d + chrono::Duration::days(1) == day => s + 1,
        _ => 1,
    };
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO checkins (member_id, group_id, day, at, streak) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (member_id, group_id, day) DO NOTHING RETURNING id",
    )
    .bind(member)
    .bind(group)
    .bind(day)
    .bind(at)
    .bind(streak)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else {
        let today: i32 =
            sqlx::query_scalar("SELECT streak FROM checkins WHERE member_id = $1 AND group_id = $2 AND day = $3")
                .bind(member)
                .bind(group)
                .bind(day)
                .fetch_one(&mut *conn)
                .await?;
        return Ok(render(tr.t("checkin.already"), &[("name", name.to_string()), ("streak", today.to_string())]));
    };
    let reference = format!("checkin:{id}");
    award(conn, member, rules.points as i64, "checkin", format!("checkin:{member}:{group}:{day}"), &reference).await?;
    let bonus = rules.bonus_for(streak) as i64;
    award(conn, member, bonus, "streak_bonus", format!("streak_bonus:{member}:{group}:{day}"), &reference).await?;
    let (total_days, rank_today): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM checkins WHERE member_id = $1 AND group_id = $2),
                (SELECT count(*) FROM checkins WHERE group_id = $2 AND day = $3 AND NOT makeup AND id <= $4)",
    )
    .bind(member)
    .bind(group)
    .bind(day)
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let balance = points::balance(conn, member).await?;
    let template = if rules.reply_lang == Lang::En { &rules.reply_en } else { &rules.reply_zh };
    Ok(render(
        template,
        &[
            ("name", name.to_string()),
            ("streak", streak.to_string()),
            ("total_days", total_days.to_string()),
            ("points", (rules.points as i64 + bonus).to_string()),
            ("balance", balance.to_string()),
            ("rank_today", rank_today.to_string()),
        ],
    ))
}

async fn make_up(
    conn: &mut PgConnection,
    rules: &Rules,
    member: i64,
    name: &str,
    group: i64,
    at: DateTime<Utc>,
) -> sqlx::Result<String> {
    let tr = Tr(rules.reply_lang);
    let today = rules.day_of(at);
    let days: Vec<NaiveDate> =
        sqlx::query_scalar("SELECT day FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day")
            .bind(member)
            .bind(group)
            .fetch_all(&mut *conn)
            .await?;
    fn with(base: [(&'static str, String); 3], extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut v = base.to_vec();
        v.extend(extra.iter().cloned());
        v
    }
    let base = [
        ("name", name.to_string()),
        ("cost", rules.makeup_cost.to_string()),
        ("limit", rules.makeup_per_month.to_string()),
    ];
    let vars = |extra: &[(&'static str, String)]| with(base.clone(), extra);
    let Some(target) = rules.makeup_day(today, &days) else {
        return Ok(render(tr.t("checkin.makeup_nothing"), &vars(&[("days", rules.makeup_days_back.to_string())])));
    };
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkins WHERE member_id = $1 AND group_id = $2 AND makeup
            AND date_trunc('month', day) = date_trunc('month', $3::date)",
    )
    .bind(member)
    .bind(group)
    .bind(today)
    .fetch_one(&mut *conn)
    .await?;
    if used >= rules.makeup_per_month as i64 {
        return Ok(render(tr.t("checkin.makeup_limit"), &vars(&[])));
    }
    let key = format!("makeup:{member}:{group}:{target}");
    if rules.makeup_cost > 0 {
        let spent = points::apply(
            conn,
            NewEntry {
                member_id: member,
                delta: -(rules.makeup_cost as i64),
                kind: "makeup",
                reference: &format!("makeup:{target}"),
                idempotency_key: &key,
                request_hash: None,
                operator_id: None,
                note: "",
            },
        )
        .await?;
        if let Applied::Insufficient { balance } = spent {
            return Ok(render(tr.t("checkin.makeup_poor"), &vars(&[("balance", balance.to_string())])));
        }
    }
    sqlx::query("INSERT INTO checkins (member_id, group_id, day, at, streak, makeup) VALUES ($1, $2, $3, $4, 1, TRUE) ON CONFLICT DO NOTHING")
        .bind(member)
        .bind(group)
        .bind(target)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    // The filled gap joins the runs around it: recount every streak from there on.
    let rows: Vec<(i64, NaiveDate, i32)> = sqlx::query_as(
        "SELECT id, day, streak FROM checkins WHERE member_id = $1 AND group_id = $2 ORDER BY day FOR UPDATE",
    )
    .bind(member)
    .bind(group)
    .fetch_all(&mut *conn)
    .await?;
    let fresh = streaks(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let mut current = 1;
    for ((id, day, old), new) in rows.iter().zip(fresh) {
        if *old != new {
            sqlx::query("UPDATE checkins SET streak = $2 WHERE id = $1").bind(id).bind(new).execute(&mut *conn).await?;
        }
        if *day <= today {
            current = new;
        }
    }
    let balance = points::balance(conn, member).await?;
    Ok(render(
        tr.t("checkin.makeup_done"),
        &vars(&[("date", target.to_string()), ("streak", current.to_string()), ("balance", balance.to_string())]),
    ))
}
