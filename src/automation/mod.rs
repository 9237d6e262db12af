//! Group automation at run time: the effective rule set of each group cached per process
//! ([`RuleSetCache`], emptied on `NOTIFY shoal_rule_sets` from any process), what a delivery's
//! events ask of it (a keyword reply to a message, a welcome batch for a join, a verdict on a
//! join request), the bot actions that go out as outbound jobs in the delivery's own
//! transaction, and the jobs that finish later: `welcome` (one message for a batch of joins)
//! and `join_request_expiry`. Every action is a `bot_activity` row with its rule and reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};

use crate::bridges::{BridgeRow, Handled};
use crate::domain::action::Action;
use crate::domain::automation::{
    pick_keyword, EntryPolicy, Fallback, Keyword, RequestStatus, Verdict, Welcome, WelcomeValues,
};
use crate::domain::bridge::{Delivery, Event, EventBody, Kind};
use crate::domain::rule_set::ActivityKind;
use crate::jobs::{JobContext, Outcome};
use crate::store;
use crate::store::automation::{NewRequest, RequestRow};
use crate::store::bot_activity::NewActivity;
use crate::store::bridges::LinkedGroup;
use crate::store::jobs::{Claimed, JobKind};
use crate::Config;

/// What a delivery needs of automation: the cache and the configuration (jobs' attempts).
pub struct Automation {
    pub rule_sets: Arc<RuleSetCache>,
    pub config: Arc<Config>,
}

impl Automation {
    pub fn new(config: Arc<Config>) -> Automation {
        Automation { rule_sets: Arc::default(), config }
    }
}

// ---- the cache ---------------------------------------------------------------------------------

/// A group's effective rule set, ready to apply: patterns compiled, keywords by priority.
#[derive(Debug, Default)]
pub struct GroupRules {
    pub rule_set_id: Option<i64>,
    pub version: i32,
    pub welcome: Option<Welcome>,
    pub keywords: Vec<Keyword>,
    pub entry: Option<EntryPolicy>,
}

/// A group's rules, the epoch they were read under, and when.
type Cached = (Arc<GroupRules>, u64, Instant);

/// Effective rule sets per group, for this process. An entry is good while no change was
/// announced since it was read (`epoch`): every change to a rule set, its rules, an attachment
/// or a group's tags fires `NOTIFY shoal_rule_sets` at commit (statement triggers), and the
/// listener moves the epoch on. Without a listening connection (it dropped, or LISTEN failed)
/// an entry lives [`RuleSetCache::UNHEARD_TTL`] only; after a reconnect everything is read again.
#[derive(Default)]
pub struct RuleSetCache {
    map: Mutex<HashMap<i64, Cached>>,
    epoch: AtomicU64,
    listening: AtomicBool,
}

impl RuleSetCache {
    /// How long an entry is trusted while the listener is down.
    pub const UNHEARD_TTL: Duration = Duration::from_secs(1);
    /// How long an entry is trusted at most (a lost notification heals by then).
    pub const HEARD_TTL: Duration = Duration::from_secs(300);
    const MAX_ENTRIES: usize = 100_000;

    /// The group's rules: from memory when still good, else read (four short queries).
    pub async fn get(&self, conn: &mut crate::store::Conn<'_>, group_id: i64) -> sqlx::Result<Arc<GroupRules>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let ttl = if self.listening.load(Ordering::Acquire) { Self::HEARD_TTL } else { Self::UNHEARD_TTL };
        if let Some(hit) = self.map.lock().ok().and_then(|m| {
            m.get(&group_id).filter(|(_, e, at)| *e == epoch && at.elapsed() < ttl).map(|(r, _, _)| r.clone())
        }) {
            metrics::counter!("rule_set_cache_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        metrics::counter!("rule_set_cache_total", "result" => "miss").increment(1);
        let rules = Arc::new(load(conn.get().await?, group_id).await?);
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            // Read under `epoch`: a change announced meanwhile makes it stale at once.
            m.insert(group_id, (rules.clone(), epoch, Instant::now()));
        }
        Ok(rules)
    }

    /// Forgets everything (a change in this process, a notification, a reconnect).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }

    /// Listens for `shoal_rule_sets` until the task is aborted.
    pub fn spawn_listener(self: &Arc<Self>, db: PgPool) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                let mut l = match PgListener::connect_with(&db).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "rule sets: no LISTEN connection; cached for 1 s only");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                if let Err(e) = l.listen("shoal_rule_sets").await {
                    tracing::warn!(error = %e, "rule sets: LISTEN failed; cached for 1 s only");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                cache.invalidate_all();
                cache.listening.store(true, Ordering::Release);
                loop {
                    match l.try_recv().await {
                        Ok(Some(_)) => cache.invalidate_all(),
                        // The connection dropped: notifications may be lost meanwhile.
                        Ok(None) | Err(_) => {
                            cache.listening.store(false, Ordering::Release);
                            cache.invalidate_all();
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }
}

async fn load(conn: &mut PgConnection, group_id: i64) -> sqlx::Result<GroupRules> {
    let Some(eff) = store::rule_sets::effective(conn, group_id).await? else { return Ok(GroupRules::default()) };
    let id = eff.rule_set.id;
    let welcome = store::automation::welcome(conn, id).await?.filter(|w| w.enabled);
    let keywords =
        store::automation::keywords(conn, id).await?.into_iter().filter_map(|k| Keyword::new(k.id, k.spec())).collect();
    let entry = store::automation::entry(conn, id).await?;
    Ok(GroupRules { rule_set_id: Some(id), version: eff.rule_set.version, welcome, keywords, entry })
}

// ---- actions as jobs ---------------------------------------------------------------------------

/// Enqueues one bot action in the caller's transaction; the job's id (None: a job with the same
/// key exists already — a retried delivery).
pub async fn enqueue(
    conn: &mut PgConnection,
    config: &Config,
    bridge_id: i64,
    action: &Action,
    origin: &str,
    dedupe_key: String,
) -> sqlx::Result<Option<i64>> {
    let job = crate::outbound::dispatch::job(config, bridge_id, action.clone(), origin, Some(dedupe_key));
    store::jobs::enqueue(conn, &job).await
}

/// The actions of a delivery that its webhook answer cannot carry, as outbound jobs in the
/// delivery's transaction (keys per delivery and position: a retry adds nothing).
pub async fn enqueue_later(
    conn: &mut PgConnection,
    auto: &Automation,
    bridge: &BridgeRow,
    d: &Delivery,
    later: &[Action],
) -> sqlx::Result<Vec<Option<i64>>> {
    let mut ids = Vec::with_capacity(later.len());
    for (i, a) in later.iter().enumerate() {
        let origin = format!("delivery:{}", d.dedupe_key);
        ids.push(
            enqueue(conn, &auto.config, bridge.id, a, &origin, format!("delivery:{}:{}:{i}", bridge.id, d.dedupe_key))
                .await?,
        );
    }
    Ok(ids)
}

// ---- keyword replies (the one-statement message path) -----------------------------------------

/// A message no built-in command took, in a linked group, already written: the keyword reply
/// its rule set gives, if any rule matches and its cooldown in the chat is free. The reply goes
/// in the webhook's answer where the protocol can carry it, else as a job (enqueued with a key
/// of the delivery, so a retry adds none); the delivery's row keeps the answer for retries.
/// The keyword reply a message in `group` asks for, if any (its cooldown aside).
fn keyword_for<'a>(rules: &'a GroupRules, e: &Event, group: &LinkedGroup) -> Option<&'a Keyword> {
    let EventBody::Message { text, .. } = &e.body else { return None };
    if rules.keywords.is_empty() {
        return None;
    }
    let mut reserved: Vec<&str> = group.rules.keywords.iter().map(String::as_str).collect();
    if group.rules.makeup_enabled {
        reserved.push(group.rules.makeup_keyword.as_str());
    }
    pick_keyword(&rules.keywords, text, &reserved, e.at, group.rules.timezone)
}

/// Whether a message in `group` may get a keyword reply (from the cached rule sets): one that
/// cannot is plain chat, written behind the answer (`bridges::chatter`).
pub async fn may_reply(
    conn: &mut crate::store::Conn<'_>,
    auto: &Automation,
    e: &Event,
    group: &LinkedGroup,
) -> sqlx::Result<bool> {
    let rules = auto.rule_sets.get(conn, group.id).await?;
    Ok(keyword_for(&rules, e, group).is_some())
}

pub async fn on_message(
    conn: &mut PgConnection,
    auto: &Automation,
    bridge: &BridgeRow,
    d: &Delivery,
    e: &Event,
    group: &LinkedGroup,
) -> sqlx::Result<Handled> {
    let protocol = bridge.kind.protocol();
    let EventBody::Message { message_id, thread_id, .. } = &e.body else { return Ok(protocol.answer(d, vec![])) };
    let rules = auto.rule_sets.get(&mut crate::store::Conn::Held(&mut *conn), group.id).await?;
    let Some(k) = keyword_for(&rules, e, group) else {
        return Ok(protocol.answer(d, vec![]));
    };
    let mut tx = conn.begin().await?;
    if k.spec.cooldown_secs > 0
        && !store::automation::claim_cooldown(&mut tx, k.id, &e.chat.id, k.spec.cooldown_secs).await?
    {
        return Ok(protocol.answer(d, vec![]));
    }
    let name = protocol.escape(if e.user.name.is_empty() { &e.user.id } else { &e.user.name });
    let reply = crate::domain::checkin::render(&k.spec.reply_text, &[("name", name)]);
    let action = match &k.spec.image_url {
        Some(url) => Action::SendPhoto {
            chat_id: e.chat.id.clone(),
            url: url.clone(),
            caption: Some(reply).filter(|r| !r.is_empty()),
            reply_to: Some(message_id.clone()),
            thread_id: thread_id.clone(),
        },
        None => Action::Send {
            chat_id: e.chat.id.clone(),
            text: reply,
            reply_to: Some(message_id.clone()),
            thread_id: thread_id.clone(),
            mention: false,
            user_id: None,
        },
    };
    let handled = protocol.answer(d, vec![action.clone()]);
    let jobs = enqueue_later(&mut tx, auto, bridge, d, &handled.later).await?;
    let job_id = jobs.into_iter().flatten().next();
    let rule = format!("keyword:{}", k.id);
    store::bot_activity::record(
        &mut tx,
        &NewActivity {
            group_id: group.id,
            member_id: None,
            user_id: Some(&e.user.id),
            bridge_id: Some(bridge.id),
            kind: ActivityKind::KeywordReply,
            action: Some(&action),
            rule_set_id: rules.rule_set_id,
            rule: &rule,
            reason: &k.spec.pattern,
            job_id,
            answer: handled.answer.is_some().then_some("webhook"),
        },
    )
    .await?;
    let status = if handled.answer.is_some() { 200 } else { 204 };
    store::automation::store_delivery_answer(&mut tx, bridge.id, &d.dedupe_key, &json!({"actions": [action]}), status)
        .await?;
    tx.commit().await?;
    Ok(handled)
}

// ---- joins and join requests (the transaction path) -------------------------------------------

/// What the group's rule set asks of a delivery's joins (a welcome batch) and join requests
/// (the entry policy's verdict), inside the delivery's transaction.
pub async fn on_events(
    conn: &mut PgConnection,
    auto: &Automation,
    bridge: &BridgeRow,
    d: &Delivery,
) -> sqlx::Result<()> {
    for e in &d.events {
        if !matches!(e.body, EventBody::Join { .. } | EventBody::JoinRequest { .. }) {
            continue;
        }
        let Some(group) = store::bridges::find_group(conn, bridge.id, &bridge.platform, &e.chat.id).await? else {
            continue;
        };
        let rules = auto.rule_sets.get(&mut crate::store::Conn::Held(&mut *conn), group.id).await?;
        let name = if e.user.name.is_empty() { e.user.id.as_str() } else { e.user.name.as_str() };
        match &e.body {
            EventBody::Join { .. } => {
                let Some(w) = &rules.welcome else { continue };
                let member = store::bridges::member_id(conn, &bridge.platform, &e.user.id, name, e.at).await?;
                let due_in = w.window_secs + w.delay_secs;
                let (batch, opened, due) = store::automation::add_to_welcome_batch(
                    conn,
                    group.id,
                    bridge.id,
                    &e.chat.id,
                    due_in,
                    &e.user.id,
                    name,
                    Some(member),
                )
                .await?;
                if opened {
                    let mut job = crate::jobs::new_job(
                        &auto.config,
                        JobKind::Welcome,
                        json!(WelcomeJob { batch_id: batch }),
                        Some(format!("welcome:{batch}")),
                    );
                    job.run_at = Some(due);
                    store::jobs::enqueue(conn, &job).await?;
                }
            }
            EventBody::JoinRequest { request, answer, user_chat_id, .. } => {
                let Some(policy) = &rules.entry else { continue };
                let member = store::bridges::member_id(conn, &bridge.platform, &e.user.id, name, e.at).await?;
                let id = store::automation::upsert_request(
                    conn,
                    &NewRequest {
                        group_id: group.id,
                        bridge_id: bridge.id,
                        chat_id: &e.chat.id,
                        user_id: &e.user.id,
                        name,
                        member_id: Some(member),
                        request,
                        answer,
                        user_chat_id: user_chat_id.as_deref(),
                        rule_set_id: rules.rule_set_id,
                    },
                )
                .await?;
                let rule = format!("entry:{}", policy.mode.as_str());
                match policy.judge(answer) {
                    Verdict::Approve => {
                        if let Some(row) =
                            store::automation::decide(conn, id, RequestStatus::Approved, "policy", "").await?
                        {
                            answer_request(conn, &auto.config, &row, true, None, &rule, answer).await?;
                        }
                    }
                    Verdict::Decline => {
                        let reason = policy.decline_reason.clone();
                        if let Some(row) =
                            store::automation::decide(conn, id, RequestStatus::Declined, "policy", &reason).await?
                        {
                            let reason = Some(reason).filter(|r| !r.is_empty());
                            answer_request(conn, &auto.config, &row, false, reason, &rule, answer).await?;
                        }
                    }
                    Verdict::Ask
                        if bridge.kind == Kind::Telegram && user_chat_id.is_some() && !policy.questions.is_empty() =>
                    {
                        // The request waits for the applicant's answers as it would for an
                        // operator (the queue shows it; the same expiry), and the bot sends them
                        // the link in a private message.
                        let expires = hold(conn, auto, id, policy.expire_hours).await?;
                        let to = user_chat_id.as_deref().unwrap_or_default();
                        let (action, job_id) = send_questionnaire(
                            conn,
                            auto,
                            bridge.id,
                            id,
                            to,
                            &policy.questions,
                            expires,
                            group.rules.reply_lang,
                        )
                        .await?;
                        store::bot_activity::record(
                            conn,
                            &NewActivity {
                                group_id: group.id,
                                member_id: Some(member),
                                user_id: Some(&e.user.id),
                                bridge_id: Some(bridge.id),
                                kind: ActivityKind::JoinQuestionnaire,
                                action: Some(&action),
                                rule_set_id: rules.rule_set_id,
                                rule: &rule,
                                reason: answer,
                                job_id,
                                answer: None,
                            },
                        )
                        .await?;
                    }
                    // Hold, and a questionnaire the bot cannot send: QQ (OneBot has no way to
                    // write to an applicant) or a request without a private chat to answer in.
                    Verdict::Hold | Verdict::Ask => {
                        hold(conn, auto, id, policy.expire_hours).await?;
                        store::bot_activity::record(
                            conn,
                            &NewActivity {
                                group_id: group.id,
                                member_id: Some(member),
                                user_id: Some(&e.user.id),
                                bridge_id: Some(bridge.id),
                                kind: ActivityKind::JoinHeld,
                                action: None,
                                rule_set_id: rules.rule_set_id,
                                rule: &rule,
                                reason: answer,
                                job_id: None,
                                answer: Some("queue"),
                            },
                        )
                        .await?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Holds a request until `hours` from now: its expiry, and the job that ends it then.
async fn hold(conn: &mut PgConnection, auto: &Automation, id: i64, hours: i32) -> sqlx::Result<DateTime<Utc>> {
    let expires = store::automation::set_expiry(conn, id, hours).await?;
    let mut job = crate::jobs::new_job(
        &auto.config,
        JobKind::JoinRequestExpiry,
        json!(ExpiryJob { request_id: id }),
        Some(format!("join-request-expiry:{id}:{}", expires.timestamp())),
    );
    job.run_at = Some(expires);
    store::jobs::enqueue(conn, &job).await?;
    Ok(expires)
}

/// Sends an applicant the questionnaire: records the questions on the request and enqueues a
/// message to their private chat (`user_chat_id`) with the signed link, open until the request
/// expires, in the group's reply language. The action and its job (one per request).
#[allow(clippy::too_many_arguments)]
async fn send_questionnaire(
    conn: &mut PgConnection,
    auto: &Automation,
    bridge_id: i64,
    request_id: i64,
    user_chat_id: &str,
    questions: &[String],
    expires: DateTime<Utc>,
    lang: crate::i18n::Lang,
) -> sqlx::Result<(Action, Option<i64>)> {
    store::questionnaire::set_questions(conn, request_id, questions).await?;
    let link = crate::app::questionnaire::link(conn, &auto.config, request_id, expires.timestamp(), lang).await?;
    let group = store::automation::request(conn, request_id).await?.map(|r| r.group_name).unwrap_or_default();
    let protocol = Kind::Telegram.protocol();
    let hours = ((expires - Utc::now()).num_minutes() as f64 / 60.0).round().max(1.0) as i64;
    let text = crate::domain::checkin::render(
        crate::i18n::Tr(lang).t("auto2.bot_questionnaire"),
        &[("group", protocol.escape(&group)), ("hours", hours.to_string()), ("link", link)],
    );
    let action = Action::Send {
        chat_id: user_chat_id.to_string(),
        text,
        reply_to: None,
        thread_id: None,
        mention: false,
        user_id: None,
    };
    let job_id = enqueue(
        conn,
        &auto.config,
        bridge_id,
        &action,
        &format!("join_request:{request_id}"),
        format!("questionnaire:{request_id}"),
    )
    .await?;
    Ok((action, job_id))
}

/// Answers a decided request on the platform (an outbound job, once per request) and logs it.
pub async fn answer_request(
    conn: &mut PgConnection,
    config: &Config,
    row: &RequestRow,
    approve: bool,
    reason: Option<String>,
    rule: &str,
    why: &str,
) -> sqlx::Result<Option<i64>> {
    let action = Action::JoinRequest { chat_id: row.chat_id.clone(), request: row.request.clone(), approve, reason };
    let job_id = enqueue(
        conn,
        config,
        row.bridge_id,
        &action,
        &format!("join_request:{}", row.id),
        format!("join-request:{}", row.id),
    )
    .await?;
    let kind = match (approve, row.status) {
        (true, _) => ActivityKind::JoinApproved,
        (false, RequestStatus::Expired) => ActivityKind::JoinExpired,
        (false, _) => ActivityKind::JoinDeclined,
    };
    store::bot_activity::record(
        conn,
        &NewActivity {
            group_id: row.group_id,
            member_id: row.member_id,
            user_id: Some(&row.user_id),
            bridge_id: Some(row.bridge_id),
            kind,
            action: Some(&action),
            rule_set_id: row.rule_set_id,
            rule,
            reason: why,
            job_id,
            answer: None,
        },
    )
    .await?;
    Ok(job_id)
}

// ---- jobs ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
pub struct WelcomeJob {
    pub batch_id: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExpiryJob {
    pub request_id: i64,
}

fn retry(e: impl std::fmt::Display) -> Outcome {
    Outcome::Retry { error: e.to_string(), after: None }
}

/// Closes a welcome batch and posts one welcome naming its members (each as the platform's
/// mention), deleting the previous welcome first when the rule set says so.
pub async fn welcome_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let Ok(p) = serde_json::from_value::<WelcomeJob>(job.job.payload.clone()) else {
        return Outcome::Dead { error: "not a welcome job".into() };
    };
    match welcome(ctx, p.batch_id).await {
        Ok(()) => Outcome::Done,
        Err(e) => retry(e),
    }
}

async fn welcome(ctx: &JobContext, batch_id: i64) -> sqlx::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let Some(batch) = store::automation::close_welcome_batch(&mut tx, batch_id).await? else { return Ok(()) };
    let Some(bridge) = store::bridges::get(&mut tx, batch.bridge_id).await? else { return tx.commit().await };
    let Some(group) = store::groups::get(&mut tx, batch.group_id).await? else { return tx.commit().await };
    let rules = load(&mut tx, batch.group_id).await?;
    let Some(w) = rules.welcome else { return tx.commit().await };
    let members = store::automation::welcome_members(&mut tx, batch_id).await?;
    if members.is_empty() {
        return tx.commit().await;
    }
    let protocol = bridge.kind.protocol();
    let checkin = store::checkins::rules(&mut tx, group.id, group.timezone.name()).await?;
    let mentions: Vec<String> = members.iter().map(|(uid, name, _)| protocol.mention(uid, name)).collect();
    let zh = checkin.reply_lang == crate::i18n::Lang::ZhCn;
    let text = w.render(&WelcomeValues {
        mentions: &mentions,
        group: &protocol.escape(&group.name),
        rules_link: &protocol.escape(&w.rules_link),
        checkin_keyword: &protocol.escape(checkin.keywords.first().map(String::as_str).unwrap_or("")),
        separator: if zh { "、" } else { ", " },
    });
    let action = match &w.image_url {
        Some(url) => Action::SendPhoto {
            chat_id: batch.chat_id.clone(),
            url: url.clone(),
            caption: Some(text),
            reply_to: None,
            thread_id: None,
        },
        None => Action::Send {
            chat_id: batch.chat_id.clone(),
            text,
            reply_to: None,
            thread_id: None,
            mention: false,
            user_id: None,
        },
    };
    if w.delete_previous {
        if let Some((prev, message_id)) = store::automation::previous_welcome(&mut tx, group.id, batch_id).await? {
            let delete = Action::Delete { chat_id: batch.chat_id.clone(), message_id };
            let id = enqueue(
                &mut tx,
                &ctx.config,
                bridge.id,
                &delete,
                &format!("welcome:{batch_id}"),
                format!("welcome-delete:{prev}"),
            )
            .await?;
            if id.is_some() {
                store::bot_activity::record(
                    &mut tx,
                    &NewActivity {
                        group_id: group.id,
                        member_id: None,
                        user_id: None,
                        bridge_id: Some(bridge.id),
                        kind: ActivityKind::WelcomeDeleted,
                        action: Some(&delete),
                        rule_set_id: rules.rule_set_id,
                        rule: "welcome",
                        reason: "delete_previous",
                        job_id: id,
                        answer: None,
                    },
                )
                .await?;
            }
        }
    }
    let job_id = enqueue(
        &mut tx,
        &ctx.config,
        bridge.id,
        &action,
        &format!("welcome:{batch_id}"),
        format!("welcome-send:{batch_id}"),
    )
    .await?;
    if let Some(id) = job_id {
        store::automation::set_welcome_job(&mut tx, batch_id, id).await?;
    }
    let reason = format!("{} joined", members.len());
    for (uid, _, member_id) in &members {
        store::bot_activity::record(
            &mut tx,
            &NewActivity {
                group_id: group.id,
                member_id: *member_id,
                user_id: Some(uid),
                bridge_id: Some(bridge.id),
                kind: ActivityKind::Welcome,
                action: Some(&action),
                rule_set_id: rules.rule_set_id,
                rule: "welcome",
                reason: &reason,
                job_id,
                answer: None,
            },
        )
        .await?;
    }
    tx.commit().await
}

/// A held request nobody answered in time: declined or left to lapse, per the policy it was
/// held under (the current one of its group).
pub async fn expiry_job(ctx: &JobContext, job: &Claimed) -> Outcome {
    let Ok(p) = serde_json::from_value::<ExpiryJob>(job.job.payload.clone()) else {
        return Outcome::Dead { error: "not a join request expiry job".into() };
    };
    match expire(ctx, p.request_id).await {
        Ok(()) => Outcome::Done,
        Err(e) => retry(e),
    }
}

async fn expire(ctx: &JobContext, id: i64) -> sqlx::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let Some(row) = store::automation::request(&mut tx, id).await? else { return Ok(()) };
    if row.status != RequestStatus::Pending || row.expires_at.is_some_and(|t| t > Utc::now()) {
        return Ok(());
    }
    let rules = load(&mut tx, row.group_id).await?;
    let decline = rules.entry.as_ref().is_none_or(|p| p.on_expiry == Fallback::Decline);
    let reason = rules.entry.as_ref().map(|p| p.decline_reason.clone()).unwrap_or_default();
    if let Some(row) = store::automation::decide(&mut tx, id, RequestStatus::Expired, "policy", &reason).await? {
        if decline {
            answer_request(
                &mut tx,
                &ctx.config,
                &row,
                false,
                Some(reason).filter(|r| !r.is_empty()),
                "entry:expiry",
                "expired",
            )
            .await?;
        } else {
            store::bot_activity::record(
                &mut tx,
                &NewActivity {
                    group_id: row.group_id,
                    member_id: row.member_id,
                    user_id: Some(&row.user_id),
                    bridge_id: Some(row.bridge_id),
                    kind: ActivityKind::JoinExpired,
                    action: None,
                    rule_set_id: row.rule_set_id,
                    rule: "entry:expiry",
                    reason: "expired",
                    job_id: None,
                    answer: Some("lapsed"),
                },
            )
            .await?;
        }
    }
    tx.commit().await
}
