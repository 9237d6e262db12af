//! Moderation at delivery time: the judge of each rule set compiled once per version and kept
//! per process, the flood counts of this process, and — for a message that broke a rule — the
//! delivery's transaction that records the member's message, takes the ladder's step, writes
//! the action row and enqueues the bot's actions (delete, notice, mute, kick) as outbound jobs.
//!
//! A clean message costs the judge (microseconds, no allocation) and nothing else: the rule set
//! comes from the cache, and only a violation reads the member's standing (active warnings,
//! join time, tags) from the database, with one advisory lock.
//!
//! Flood counts live in this process only (`domain::moderation::FloodTracker`): with several
//! Shoal processes behind a load balancer that spreads one bot's deliveries, each process sees
//! its share of a chat's messages, so a flood needs up to N times the messages to be noticed
//! (route a bridge to one process, e.g. by path, to keep it exact).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use crate::bridges::{BridgeRow, Handled, Protocol};
use crate::domain::action::Action;
use crate::domain::bridge::{Delivery, Event, EventBody};
use crate::domain::moderation::{
    compile, decide, format_duration, Author, Decision, FloodTracker, Judge, Ladder, Step, Verdict,
};
use crate::domain::rule_set::ActivityKind;
use crate::i18n::{Lang, Tr};
use crate::outbound::dispatch;
use crate::store;
use crate::store::bridges::LinkedGroup;
use crate::store::checkins::Message;
use crate::store::moderation::Standing;
use crate::Config;

/// One process's compiled rule sets (by id, at a version) and flood counts.
/// A compiled rule set: its version, when it was compiled, the judge.
type Compiled = (i32, Instant, Arc<Judge>);

/// One process's moderation: each rule set compiled once per version (groups' effective rule
/// sets come from `automation::RuleSetCache`), the flood counts, and the configuration the bot's
/// jobs take.
pub struct Moderator {
    judges: Mutex<HashMap<i64, Compiled>>,
    pub flood: FloodTracker,
    config: Arc<Config>,
}

impl Moderator {
    /// How long a compiled rule set is trusted at one version: a change through Shoal moves the
    /// version on (seen at once); one made in the database by hand is seen within this.
    pub const TTL: Duration = Duration::from_secs(10);
    const MAX_ENTRIES: usize = 100_000;

    pub fn new(config: Arc<Config>) -> Moderator {
        Moderator { judges: Mutex::default(), flood: FloodTracker::default(), config }
    }

    /// The compiled moderation of rule set `id` at `version`, compiled once per version.
    pub async fn judge(&self, conn: &mut crate::store::Conn<'_>, id: i64, version: i32) -> sqlx::Result<Arc<Judge>> {
        if let Some((v, at, j)) = self.judges.lock().ok().and_then(|m| m.get(&id).cloned()) {
            if v == version && at.elapsed() < Self::TTL {
                return Ok(j);
            }
        }
        let conn = conn.get().await?;
        let rules = store::moderation::rules(&mut *conn, id).await?;
        let ladder = store::moderation::ladder(conn, id).await?;
        let judge = Arc::new(compile_lenient(&rules, ladder));
        if let Ok(mut m) = self.judges.lock() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(id, (version, Instant::now(), judge.clone()));
        }
        Ok(judge)
    }
}

/// Compiles what can be compiled: the rules were checked when saved, but a rule that no longer
/// compiles must not stop the others.
fn compile_lenient(rules: &[crate::domain::moderation::Rule], ladder: Ladder) -> Judge {
    match compile(rules, ladder.clone()) {
        Ok(j) => j,
        Err(_) => {
            let ok: Vec<_> =
                rules.iter().filter(|r| compile(std::slice::from_ref(*r), ladder.clone()).is_ok()).cloned().collect();
            compile(&ok, ladder.clone()).unwrap_or_else(|_| compile(&[], ladder).unwrap_or_else(|_| unreachable!()))
        }
    }
}

/// The rules a delivery's one message breaks, judged in memory (empty: go on as usual).
pub fn judge_delivery(m: &Moderator, judge: &Judge, d: &Delivery, group: &LinkedGroup) -> Vec<Verdict> {
    let [e @ Event { body: EventBody::Message { text, .. }, .. }] = d.events.as_slice() else { return vec![] };
    if judge.is_empty() {
        return vec![];
    }
    let author = Author { user_id: &e.user.id, role: e.user.role };
    judge.judge(&m.flood, group.id, author, text, e.at.timestamp_millis())
}

/// The one call in `bridges::handle`: a delivery of one message in a linked group whose rule set
/// has moderation rules is judged in memory; one that breaks a rule is handled here, in its own
/// transaction (`Some`: the webhook's answer). `None`: go on as usual (no rule broken, nothing
/// to judge, or a copy of the delivery handled first, which the usual path answers as a retry).
pub async fn screen(
    conn: &mut crate::store::Conn<'_>,
    auto: &crate::automation::Automation,
    m: &Moderator,
    bridge: &BridgeRow,
    d: &Delivery,
    group: Option<&LinkedGroup>,
) -> sqlx::Result<Option<Handled>> {
    let (Some(group), [Event { body: EventBody::Message { .. }, .. }]) = (group, d.events.as_slice()) else {
        return Ok(None);
    };
    let rules = auto.rule_sets.get(conn, group.id).await?;
    let Some(rule_set_id) = rules.rule_set_id else { return Ok(None) };
    let judge = m.judge(conn, rule_set_id, rules.version).await?;
    let verdicts = judge_delivery(m, &judge, d, group);
    if verdicts.is_empty() {
        return Ok(None);
    }
    let scene = Scene { config: &m.config, bridge, group, rule_set_id, judge: &judge };
    intercept(conn.get().await?, &scene, d, &verdicts).await
}

/// What `intercept` needs besides the delivery.
pub struct Scene<'a> {
    pub config: &'a Config,
    pub bridge: &'a BridgeRow,
    pub group: &'a LinkedGroup,
    pub rule_set_id: i64,
    pub judge: &'a Judge,
}

/// A delivery whose message broke a rule, in one transaction: its dedupe row claimed together
/// with the lock on the member's warnings in the group; their standing read together with the
/// message's writes (member, membership, activity; no check-in); the ladder's step, the action
/// row and the bot's jobs. Each of those "together" is one statement: every round trip is
/// latency on a busy machine. `None` when a copy of the delivery was handled first (the caller answers as for any
/// retry). The webhook gets no answer: everything the bot does goes through its API.
pub async fn intercept(
    conn: &mut PgConnection,
    s: &Scene<'_>,
    d: &Delivery,
    verdicts: &[Verdict],
) -> sqlx::Result<Option<Handled>> {
    let [e @ Event { body: EventBody::Message { .. }, .. }] = d.events.as_slice() else { return Ok(None) };
    let mut tx = conn.begin().await?;
    let lock = store::moderation::warnings_lock(s.group.id, &e.user.id);
    let Some(row) = store::bridges::claim_delivery_then_lock(&mut tx, s.bridge.id, d, 204, &lock).await? else {
        return Ok(None);
    };
    let name = display_name(e);
    let message = Message {
        platform: &s.bridge.platform,
        user_id: &e.user.id,
        name,
        at: e.at,
        group: s.group.id,
        role: e.user.role.unwrap_or("member"),
        day: s.group.rules.day_of(e.at),
    };
    let (member_id, standing) = store::moderation::standing_and_message(&mut tx, &message).await?;
    act(&mut tx, s, e, member_id, &standing, verdicts, &d.dedupe_key).await?;
    store::bridges::settle_delivery(&mut tx, &row, None, 204).await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => s.bridge.kind.as_str(), "result" => "moderated").increment(1);
    Ok(Some(Handled::default()))
}

fn display_name(e: &Event) -> &str {
    if e.user.name.is_empty() {
        &e.user.id
    } else {
        &e.user.name
    }
}

/// The first verdict that holds for the member with `standing` (a quarantine verdict only when
/// they joined within its hours; nothing for an exempt tag), the step, the row and the jobs. The action row's id, if one was taken.
pub async fn act(
    conn: &mut PgConnection,
    s: &Scene<'_>,
    e: &Event,
    member_id: i64,
    standing: &Standing,
    verdicts: &[Verdict],
    dedupe_key: &str,
) -> sqlx::Result<Option<i64>> {
    let EventBody::Message { text, message_id, thread_id, .. } = &e.body else { return Ok(None) };
    let ladder = &s.judge.ladder;
    if standing.role.is_some() || standing.tags.iter().any(|t| ladder.exempt_tags.iter().any(|x| x == t)) {
        return Ok(None);
    }
    let Some(v) = verdicts.iter().find(|v| holds(v, standing.joined_at, e.at)) else { return Ok(None) };
    let d = decide(v, ladder, standing.active.clamp(0, u32::MAX as i64) as u32);
    let protocol = s.bridge.kind.protocol();
    let actions = actions_for(protocol, s.group.rules.reply_lang, e, message_id, thread_id.as_deref(), v, &d);
    let jobs: Vec<_> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let key = format!("moderation:{}:{}:{i}", s.bridge.id, dedupe_key);
            dispatch::job(s.config, s.bridge.id, a.clone(), "moderation", Some(key))
        })
        .collect();
    let acted: Vec<_> = actions
        .iter()
        .zip(&jobs)
        .map(|(a, job)| store::moderation::ActionJob { job, kind: activity_kind(a, d.step), action: a })
        .collect();
    // The group's activity log shows each of the bot's actions with the rule, what was found and,
    // through the action's job, the platform's answer.
    let rule = format!("moderation:{}:{}", v.kind.as_str(), v.rule_id.max(0));
    let id = store::moderation::record(
        conn,
        &store::moderation::NewAction {
            group_id: s.group.id,
            member_id: Some(member_id),
            bridge_id: s.bridge.id,
            chat_id: &e.chat.id,
            user_id: &e.user.id,
            message_id: Some(message_id),
            excerpt: text,
            rule_set_id: s.rule_set_id,
            rule_id: (v.rule_id > 0).then_some(v.rule_id),
            rule_kind: v.kind,
            evidence: &v.evidence,
            deleted: d.delete,
            step: d.step,
            strike: d.strike,
            warn_days: ladder.warn_days,
        },
        &acted,
        &rule,
    )
    .await?;
    metrics::counter!("moderation_actions_total", "rule" => v.kind.as_str()).increment(1);
    Ok(Some(id))
}

/// What one of the bot's moderation actions is, for the activity log: the notice is a warning
/// when the step is one, else it tells of the mute or removal that follows.
pub fn activity_kind(a: &Action, step: Option<Step>) -> ActivityKind {
    match a {
        Action::Delete { .. } => ActivityKind::ModerationDelete,
        Action::Mute { .. } => ActivityKind::ModerationMute,
        Action::Kick { .. } => ActivityKind::ModerationKick,
        _ if step == Some(Step::Warn) => ActivityKind::ModerationWarn,
        _ => ActivityKind::ModerationNotice,
    }
}

/// Whether a verdict holds: a quarantine verdict only for a member whose open membership began
/// within its hours (a member Shoal never saw join is not new).
fn holds(v: &Verdict, joined_at: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    match v.joined_within_hours {
        None => true,
        Some(h) => joined_at.is_some_and(|j| at - j < chrono::Duration::hours(i64::from(h))),
    }
}

/// A duration in words: `1 hour`, `30 分钟`.
pub fn duration_words(seconds: u32, lang: Lang) -> String {
    let short = format_duration(seconds);
    let (n, unit) = short.split_at(short.len() - 1);
    let tr = Tr(lang);
    let unit = tr.t(match unit {
        "w" => "moderation.unit.w",
        "d" => "moderation.unit.d",
        "h" => "moderation.unit.h",
        "m" => "moderation.unit.m",
        _ => "moderation.unit.s",
    });
    match lang {
        Lang::En if n != "1" => format!("{n} {unit}s"),
        _ => format!("{n} {unit}"),
    }
}

/// The bot's actions for a decision, in order: delete the message, tell the member (their name
/// escaped for the platform), mute or remove them. Removal is a kick (they may come back);
/// every text is in the group's reply language.
pub fn actions_for(
    protocol: &dyn Protocol,
    lang: Lang,
    e: &Event,
    message_id: &str,
    thread_id: Option<&str>,
    v: &Verdict,
    d: &Decision,
) -> Vec<Action> {
    let tr = Tr(lang);
    let chat = e.chat.id.clone();
    let mut out = Vec::with_capacity(3);
    if d.delete {
        out.push(Action::Delete { chat_id: chat.clone(), message_id: message_id.to_string() });
    }
    let Some(step) = d.step else { return out };
    let name = protocol.escape(display_name(e));
    let rule = tr.tk("moderation.kind", v.kind);
    let mut text = crate::domain::checkin::render(
        tr.t(if d.delete { "moderation.bot.removed" } else { "moderation.bot.broke" }),
        &[("name", name), ("rule", rule.to_string())],
    );
    match step {
        Step::Warn => text.push_str(&crate::domain::checkin::render(
            tr.t("moderation.bot.warning"),
            &[("n", d.strike.unwrap_or(1).to_string()), ("max", d.of.to_string())],
        )),
        Step::Mute { seconds } => text.push_str(&crate::domain::checkin::render(
            tr.t("moderation.bot.muted"),
            &[("duration", duration_words(seconds, lang))],
        )),
        Step::Kick => text.push_str(tr.t("moderation.bot.kicked")),
    }
    match d.last_notice {
        Some(Step::Kick) => text.push_str(tr.t("moderation.bot.next_kick")),
        Some(Step::Mute { seconds }) => text.push_str(&crate::domain::checkin::render(
            tr.t("moderation.bot.next_mute"),
            &[("duration", duration_words(seconds, lang))],
        )),
        _ => {}
    }
    out.push(Action::Send {
        chat_id: chat.clone(),
        text,
        // The message is gone when deleted: answering it would fail on QQ.
        reply_to: (!d.delete).then(|| message_id.to_string()),
        thread_id: thread_id.map(str::to_string),
        mention: false,
        user_id: None,
    });
    match step {
        Step::Mute { seconds } => out.push(Action::Mute { chat_id: chat, user_id: e.user.id.clone(), seconds }),
        Step::Kick => out.push(Action::Kick { chat_id: chat, user_id: e.user.id.clone(), ban: false }),
        Step::Warn => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bridge::{Chat, Kind, User};
    use crate::domain::moderation::{Response, RuleKind};

    fn event() -> Event {
        Event {
            chat: Chat { id: "123".into(), title: None },
            user: User { id: "9".into(), name: "[Mei]".into(), role: None },
            at: Utc::now(),
            sent_at: None,
            body: EventBody::Message {
                text: "x".into(),
                message_id: "77".into(),
                thread_id: None,
                force_checkin: false,
            },
        }
    }

    #[test]
    fn a_mute_step_deletes_tells_and_mutes_and_the_step_before_last_says_what_comes_next() {
        let v = Verdict {
            rule_id: 1,
            index: 0,
            kind: RuleKind::Links,
            delete: true,
            response: Response::Warn,
            evidence: "spam.com".into(),
            joined_within_hours: None,
        };
        let d = decide(&v, &Ladder::default(), 2);
        let a = actions_for(Kind::OneBot11.protocol(), Lang::En, &event(), "77", None, &v, &d);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0], Action::Delete { chat_id: "123".into(), message_id: "77".into() });
        let Action::Send { text, reply_to, .. } = &a[1] else { panic!() };
        assert!(text.starts_with("&#91;Mei&#93;"), "{text}");
        assert!(text.contains("1 hour") && text.contains("Next time"), "{text}");
        assert_eq!(*reply_to, None);
        assert_eq!(a[2], Action::Mute { chat_id: "123".into(), user_id: "9".into(), seconds: 3600 });
        let zh = actions_for(Kind::Telegram.protocol(), Lang::ZhCn, &event(), "77", None, &v, &d);
        let Action::Send { text, .. } = &zh[1] else { panic!() };
        assert!(text.contains("1 小时"), "{text}");
    }

    #[test]
    fn quarantine_holds_only_for_members_who_joined_recently() {
        let v = Verdict {
            rule_id: 1,
            index: 0,
            kind: RuleKind::Quarantine,
            delete: true,
            response: Response::Nothing,
            evidence: String::new(),
            joined_within_hours: Some(24),
        };
        let now = Utc::now();
        assert!(holds(&v, Some(now - chrono::Duration::hours(2)), now));
        assert!(!holds(&v, Some(now - chrono::Duration::hours(25)), now));
        assert!(!holds(&v, None, now));
    }
}
