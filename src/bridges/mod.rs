//! Bridge deliveries. Each protocol is one module implementing [`Protocol`] — how a webhook is
//! verified, parsed into Shoal's `Event`s and answered — and [`Kind::protocol`] is the one place
//! that picks it. Processing is protocol-neutral: one transaction per delivery, deduplicated on
//! the protocol's delivery id (a retry changes nothing and gets the same answer), turning events
//! into members, memberships, activity, check-ins and ledger entries, and answering with a list
//! of [`Action`]s that the protocol splits into its webhook answer and what must wait for its
//! API. All SQL is in `store::bridges` and `store::checkins`.

pub mod chatter;
pub mod generic;
pub mod onebot;
pub mod telegram;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::domain::action::Action;
use crate::domain::bridge::{Delivery, Event, EventBody, Kind, ParseError, Parsed};
use crate::domain::checkin::{render, streaks, Intent, Outcome, Rules};
use crate::domain::points::{IdempotencyKey, LedgerKind};
use crate::domain::Platform;
use crate::i18n::Tr;
use crate::store;
use crate::store::bridges::LinkedGroup;
use crate::store::checkins::{Earning, LogRow, Message};
use crate::store::points::{self, Applied, Posting};

pub use crate::store::bridges::BridgeRow;

/// One bridge protocol: everything that differs between OneBot v11, Telegram and the generic
/// bridge on the way in.
pub trait Protocol: Send + Sync {
    fn kind(&self) -> Kind;

    /// The platform a bridge of this kind reports unless the operator says otherwise.
    fn default_platform(&self) -> Option<Platform>;

    /// Whether the delivery is authentic, checked over the raw bytes (constant time) before
    /// anything is parsed. `now` in unix seconds.
    fn verify(&self, headers: &HeaderMap, body: &[u8], secret: &str, now: i64) -> bool;

    fn parse(&self, body: &[u8]) -> Result<Parsed, ParseError>;

    /// `text` made safe to put into a message sent through this protocol: every value
    /// substituted into an outbound text (a member's name, any text from a chat) goes through
    /// here, so that it reads as plain text and never as markup of the platform.
    fn escape(&self, text: &str) -> String;

    /// A mention of the member `user_id` named `name` in a message sent through the bot's API
    /// (a welcome's `{name}`): the platform's own mention where it has one, else the name
    /// escaped.
    fn mention(&self, _user_id: &str, name: &str) -> String {
        self.escape(name)
    }

    /// The webhook's answer to `d` holding what of `actions` the protocol can carry in it;
    /// the rest, in order, in `later`.
    fn answer(&self, d: &Delivery, actions: Vec<Action>) -> Handled;
}

impl Kind {
    /// The protocol of this kind of bridge.
    pub fn protocol(self) -> &'static dyn Protocol {
        match self {
            Kind::OneBot11 => &onebot::OneBot,
            Kind::Telegram => &telegram::Telegram,
            Kind::Generic => &generic::Generic,
        }
    }
}

/// A header's value as text, if it is there and is text.
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// What a delivery asks of Shoal's bot, split by its protocol: the webhook's answer (`None`:
/// 204, no body) and the actions it cannot carry there, which must go out through the
/// protocol's API as outbound jobs. `later` holds the actions of a delivery's first processing
/// only: a retry gets the same answer and nothing for later, which was handed over already.
#[derive(Debug, Default, PartialEq)]
pub struct Handled {
    pub answer: Option<Value>,
    pub later: Vec<Action>,
}

/// What a delivery's log row keeps (`bridge_events.reply`) so that a retry is answered the
/// same: the actions, or a check-in's outcome, written by the one-statement path as
/// `{"checkin": …}` (`store::checkins`), from which the reply is written again.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    Actions(Vec<Action>),
    Checkin(Outcome),
}

/// Bridge rows as webhooks need them, kept per process for up to [`BridgeCache::TTL`]: every
/// delivery needs its bridge (kind, secret) before anything else, and at hundreds of deliveries
/// a second that lookup was a round trip of its own. A change made in this process evicts the
/// row at once; one made by another process is seen within the TTL.
#[derive(Default)]
pub struct BridgeCache(
    std::sync::Mutex<std::collections::HashMap<i64, CachedBridge>>,
    /// The instance's public URL (configuration), for links in bot replies (`邀请`).
    pub std::sync::OnceLock<String>,
    /// Chats' groups, looked up through the bridges.
    GroupCache,
);

/// Chat lookups (`store::bridges::find_group`: a chat's group with its check-in rules), kept per
/// process like bridge rows: every group message needs one before anything else, and at
/// hundreds of messages a second it was a round trip of its own. An entry lives for
/// [`GroupCache::TTL`] and no longer than the lookup generation it was read in
/// (`store::groups::lookup_generation`, bumped by every write that changes what a lookup
/// finds), so a change made in this process is seen at once and one made by another process
/// within the TTL. Unlinked chats are kept too; the cache holds at most [`GroupCache::MAX`]
/// chats.
#[derive(Default)]
struct GroupCache(std::sync::Mutex<std::collections::HashMap<(i64, String, String), CachedGroup>>);

struct CachedGroup {
    group: Option<LinkedGroup>,
    loaded: std::time::Instant,
    generation: u64,
}

impl GroupCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX: usize = 10_000;

    async fn find(
        &self,
        conn: &mut store::Conn<'_>,
        bridge: &BridgeRow,
        chat: &str,
    ) -> sqlx::Result<Option<LinkedGroup>> {
        let key = (bridge.id, bridge.platform.clone(), chat.to_string());
        // Read before the lookup: a write that lands during it leaves the entry stale at once.
        let generation = store::groups::lookup_generation();
        if let Some(c) = self.0.lock().ok().as_ref().and_then(|m| m.get(&key)) {
            if c.generation == generation && c.loaded.elapsed() < Self::TTL {
                return Ok(c.group.clone());
            }
        }
        let group = store::bridges::find_group(conn.get().await?, bridge.id, &bridge.platform, chat).await?;
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX {
                m.retain(|_, c| c.generation == generation && c.loaded.elapsed() < Self::TTL);
                if m.len() >= Self::MAX {
                    m.clear();
                }
            }
            m.insert(key, CachedGroup { group: group.clone(), loaded: std::time::Instant::now(), generation });
        }
        Ok(group)
    }
}

struct CachedBridge {
    row: std::sync::Arc<BridgeRow>,
    loaded: std::time::Instant,
    /// When this process last refreshed the row's `last_event_at`.
    touched: Option<std::time::Instant>,
}

impl BridgeCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);

    /// An empty cache that knows the instance's public URL.
    pub fn with_public_base(base: &str) -> BridgeCache {
        let cache = BridgeCache::default();
        let _ = cache.1.set(base.to_string());
        cache
    }

    pub async fn get(&self, db: &sqlx::PgPool, id: i64) -> sqlx::Result<Option<std::sync::Arc<BridgeRow>>> {
        if let Some(c) = self.0.lock().ok().and_then(|m| m.get(&id).map(|c| (c.loaded, c.row.clone()))) {
            if c.0.elapsed() < Self::TTL {
                return Ok(Some(c.1));
            }
        }
        let mut conn = db.acquire().await?;
        let Some(row) = store::bridges::get(&mut conn, id).await? else {
            self.evict(id);
            return Ok(None);
        };
        let row = std::sync::Arc::new(row);
        if let Ok(mut m) = self.0.lock() {
            let touched = m.get(&id).and_then(|c| c.touched);
            m.insert(id, CachedBridge { row: row.clone(), loaded: std::time::Instant::now(), touched });
        }
        Ok(Some(row))
    }

    pub fn evict(&self, id: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&id);
        }
    }

    /// Whether this delivery should refresh the bridge's `last_event_at` (and `self_id`): at most
    /// once a second per process, so that concurrent deliveries do not queue behind the one row
    /// every delivery of the bridge shares.
    fn should_touch(&self, bridge: &BridgeRow, self_id: Option<&str>) -> bool {
        if bridge.self_id.is_none() && self_id.is_some() {
            return true;
        }
        let Ok(mut m) = self.0.lock() else { return true };
        match m.get_mut(&bridge.id) {
            Some(c) if c.touched.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) => false,
            Some(c) => {
                c.touched = Some(std::time::Instant::now());
                true
            }
            None => true,
        }
    }
}

/// One rejected delivery: when, the status answered, why.
pub type Rejection = (DateTime<Utc>, u16, String);

/// Rejected deliveries, kept in memory per process for the bridge's status page: a rejected
/// delivery must write nothing to the database (invariant 5).
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

/// Handles one authenticated, parsed delivery atomically.
///
/// The common delivery — one message in a linked group, a check-in or plain chat — is one
/// statement (`store::checkins::message_at_once`) after reading the group's rules. Anything else
/// (joins, leaves, make-ups, unlinked chats, several events) runs in a transaction that first
/// claims the delivery's dedupe row.
pub async fn handle(state: &crate::AppState, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<Handled> {
    let (db, cache, pages) = (&state.db, &*state.bridges, &*state.member_pages);
    let (auto, moderator) = (&*state.automation, &*state.moderation);
    let protocol = bridge.kind.protocol();
    // The first event's group with its rules, read once for either path below.
    let first = d.events.first();
    // Taken from the pool only when a cache misses or something is written now.
    let mut conn = store::Conn::lazy(db);
    let first_group = match first {
        Some(e) => cache.2.find(&mut conn, bridge, &e.chat.id).await?,
        None => None,
    };
    // Moderation: a message that breaks its group's rules is handled apart.
    if let Some(h) = crate::moderation::screen(&mut conn, auto, moderator, bridge, d, first_group.as_ref()).await? {
        return Ok(h);
    }
    if let ([e @ Event { body: EventBody::Message { text, force_checkin, .. }, .. }], Some(group)) =
        (d.events.as_slice(), &first_group)
    {
        let intent = group.rules.intent(text, *force_checkin);
        // A make-up, or a member asking for their page (`我的`) or their invites (`邀请`), is
        // more than one statement.
        if intent != Intent::MakeUp
            && !(intent == Intent::None
                && (crate::domain::member_page::is_command(text) || crate::domain::invite::is_command(text)))
        {
            let earning = match &intent {
                Intent::CheckIn(note) => Some(Earning::of(&group.rules, note.as_ref())),
                Intent::MakeUp | Intent::None => None,
            };
            // Plain chat (no answer, no keyword reply): written behind the answer, in batches.
            if intent == Intent::None && !crate::automation::may_reply(&mut conn, auto, e, group).await? {
                let m = message(bridge, e, group);
                let plain = store::bridges::Chatter {
                    bridge_id: bridge.id,
                    dedupe_key: d.dedupe_key.clone(),
                    kind: d.kind.as_str(),
                    chat_id: e.chat.id.clone(),
                    user_id: e.user.id.clone(),
                    platform: bridge.platform.clone(),
                    name: m.name.to_string(),
                    at: m.at,
                    group_id: group.id,
                    role: e.user.role.unwrap_or("member"),
                    day: m.day,
                };
                if state.chatter.record(plain) {
                    touch(&mut conn, cache, bridge, d).await?;
                    metrics::counter!("bridge_events_total", "kind" => bridge.kind.as_str(), "result" => "queued")
                        .increment(1);
                    return Ok(protocol.answer(d, vec![]));
                }
            }
            let log = LogRow {
                bridge_id: bridge.id,
                dedupe_key: &d.dedupe_key,
                kind: d.kind.as_str(),
                chat_id: &e.chat.id,
                user_id: &e.user.id,
            };
            let conn = conn.get().await?;
            let written =
                store::checkins::message_at_once(conn, &message(bridge, e, group), earning.as_ref(), &log).await?;
            let Some(outcome) = written else {
                return stored_answer(conn, pages, auto, bridge, d, first_group.as_ref()).await;
            };
            touch(&mut store::Conn::Held(&mut *conn), cache, bridge, d).await?;
            metrics::counter!("bridge_events_total", "kind" => bridge.kind.as_str(), "result" => "processed")
                .increment(1);
            if intent == Intent::None {
                // Automation: a keyword reply, for what no built-in command took.
                return crate::automation::on_message(conn, auto, bridge, d, e, group).await;
            }
            let mut actions: Vec<Action> =
                outcome.iter().map(|o| checkin_reply(protocol, e, &group.rules, o)).collect();
            if let Some(o) = &outcome {
                actions.extend(checkin_poster(conn, pages, e, group, o).await?);
            }
            let handled = protocol.answer(d, actions);
            hand_over(conn, auto, bridge, d, &handled.later).await?;
            return Ok(handled);
        }
    }
    let conn = conn.get().await?;
    let mut tx = conn.begin().await?;
    let Some(event_row) = store::bridges::claim_delivery(&mut tx, bridge.id, d, 0).await? else {
        drop(tx);
        return stored_answer(conn, pages, auto, bridge, d, first_group.as_ref()).await;
    };
    let mut known = first.map(|e| (e.chat.id.as_str(), first_group));
    let mut actions = Vec::new();
    for e in &d.events {
        let group = match known.take_if(|(chat, _)| *chat == e.chat.id) {
            Some((_, group)) => group,
            None => store::bridges::find_group(&mut tx, bridge.id, &bridge.platform, &e.chat.id).await?,
        };
        actions.extend(process(&mut tx, cache, protocol, pages, bridge, e, group).await?);
    }
    // Automation: welcome batches for joins, the entry policy for join requests.
    crate::automation::on_events(&mut tx, auto, bridge, d).await?;
    let stored = if actions.is_empty() { None } else { Some(stored_json(&Stored::Actions(actions.clone()))?) };
    let handled = protocol.answer(d, actions);
    // What the answer cannot carry goes out as outbound jobs, enqueued with this delivery.
    crate::automation::enqueue_later(&mut tx, auto, bridge, d, &handled.later).await?;
    let status = if handled.answer.is_some() { 200 } else { 204 };
    store::bridges::settle_delivery(&mut tx, &event_row, stored.as_ref(), status).await?;
    touch(&mut store::Conn::Held(&mut tx), cache, bridge, d).await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.as_str(), "result" => "processed").increment(1);
    Ok(handled)
}

fn stored_json(s: &Stored) -> sqlx::Result<Value> {
    serde_json::to_value(s).map_err(|e| sqlx::Error::Encode(e.into()))
}

/// A delivery whose events' times do not count (see `Delivery::counts`): its row is recorded
/// (so a retry is recognised and the bridge's log shows it), nothing else is written, and there
/// is no answer.
pub async fn record_only(db: &sqlx::PgPool, cache: &BridgeCache, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    store::bridges::claim_delivery(&mut tx, bridge.id, d, 204).await?;
    touch(&mut store::Conn::Held(&mut tx), cache, bridge, d).await?;
    tx.commit().await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.as_str(), "result" => "out_of_time").increment(1);
    Ok(())
}

/// A retry: the first delivery's answer, nothing else. A check-in's reply is written again
/// from its stored outcome with the group's rules (`None` when the chat is no longer linked:
/// no answer); a row from before actions were stored holds the answer itself.
async fn stored_answer(
    conn: &mut PgConnection,
    pages: &crate::app::member_page::MemberPages,
    auto: &crate::automation::Automation,
    bridge: &BridgeRow,
    d: &Delivery,
    group: Option<&LinkedGroup>,
) -> sqlx::Result<Handled> {
    let reply = store::bridges::stored_reply(conn, bridge.id, &d.dedupe_key).await?;
    metrics::counter!("bridge_events_total", "kind" => bridge.kind.as_str(), "result" => "duplicate").increment(1);
    let protocol = bridge.kind.protocol();
    let Some(reply) = reply else { return Ok(Handled::default()) };
    let actions = match serde_json::from_value::<Stored>(reply.clone()) {
        Ok(Stored::Actions(actions)) => actions,
        Ok(Stored::Checkin(outcome)) => match (d.events.first(), group) {
            (Some(e), Some(g)) => {
                let mut a = vec![checkin_reply(protocol, e, &g.rules, &outcome)];
                a.extend(checkin_poster(conn, pages, e, g, &outcome).await?);
                a
            }
            _ => vec![],
        },
        Err(_) => return Ok(Handled { answer: Some(reply), later: vec![] }),
    };
    // The first try enqueued what the answer cannot carry, unless it stopped just before: the
    // same keys make this a no-op when it did.
    let handled = protocol.answer(d, actions);
    hand_over(conn, auto, bridge, d, &handled.later).await?;
    Ok(handled)
}

/// What the answer of the one-statement path (or of a retry) cannot carry, as outbound jobs in a
/// short transaction of their own, keyed by the delivery and position like the transaction
/// path's (`automation::enqueue_later`), so a retry adds none.
async fn hand_over(
    conn: &mut PgConnection,
    auto: &crate::automation::Automation,
    bridge: &BridgeRow,
    d: &Delivery,
    later: &[Action],
) -> sqlx::Result<()> {
    if later.is_empty() {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    crate::automation::enqueue_later(&mut tx, auto, bridge, d, later).await?;
    tx.commit().await
}

/// Refreshes the bridge's `last_event_at` (and `self_id`). One row shared by every delivery of
/// the bridge: touched at most once a second (per process by the cache, across processes by the
/// statement) so that concurrent deliveries do not queue behind its lock.
async fn touch(conn: &mut store::Conn<'_>, cache: &BridgeCache, bridge: &BridgeRow, d: &Delivery) -> sqlx::Result<()> {
    if cache.should_touch(bridge, d.self_id.as_deref()) {
        store::bridges::touch(conn.get().await?, bridge.id, d.self_id.as_deref()).await?;
    }
    Ok(())
}

fn display_name<'a>(user_id: &'a str, name: &'a str) -> &'a str {
    if name.is_empty() {
        user_id
    } else {
        name
    }
}

/// A message event in `group` as the message statements take it.
fn message<'a>(bridge: &'a BridgeRow, e: &'a Event, group: &LinkedGroup) -> Message<'a> {
    Message {
        platform: &bridge.platform,
        user_id: &e.user.id,
        name: display_name(&e.user.id, &e.user.name),
        at: e.at,
        group: group.id,
        role: e.user.role.unwrap_or("member"),
        day: group.rules.day_of(e.at),
    }
}

/// A reply to the message `e`, in its chat and topic.
fn reply_to(e: &Event, text: String) -> Action {
    let (reply_to, thread_id) = match &e.body {
        EventBody::Message { message_id, thread_id, .. } => (Some(message_id.clone()), thread_id.clone()),
        _ => (None, None),
    };
    Action::Send { chat_id: e.chat.id.clone(), text, reply_to, thread_id, mention: false, user_id: None }
}

/// A picture answering the message `e`, in its chat and topic.
fn photo_to(e: &Event, url: String) -> Action {
    let (reply_to, thread_id) = match &e.body {
        EventBody::Message { message_id, thread_id, .. } => (Some(message_id.clone()), thread_id.clone()),
        _ => (None, None),
    };
    Action::SendPhoto { chat_id: e.chat.id.clone(), url, caption: None, reply_to, thread_id }
}

/// The reply to a check-in: the text names the member (their name escaped for the platform,
/// which is the one value in a reply that a member controls: a QQ card `[CQ:at,qq=all]` must
/// not @ everyone), so the reply does not also mention them.
fn checkin_reply(protocol: &dyn Protocol, e: &Event, rules: &Rules, o: &Outcome) -> Action {
    let name = protocol.escape(display_name(&e.user.id, &e.user.name));
    reply_to(e, rules.checkin_reply(&name, o))
}

/// The "day N" poster of a new check-in, when the group has one: computed from the outcome
/// (`app::checkin_poster::action`), never by the check-in's statement.
async fn checkin_poster(
    conn: &mut PgConnection,
    pages: &crate::app::member_page::MemberPages,
    e: &Event,
    group: &LinkedGroup,
    o: &Outcome,
) -> sqlx::Result<Option<Action>> {
    let (reply_to, thread_id) = match &e.body {
        EventBody::Message { message_id, thread_id, .. } => (Some(message_id.clone()), thread_id.clone()),
        _ => (None, None),
    };
    let (chat, user) = (&e.chat.id, &e.user.id);
    crate::app::checkin_poster::action(conn, pages, &group.rules, group.id, chat, user, reply_to, thread_id, e.at, o)
        .await
}

/// One event in the chat `group` (None: no group claims the chat yet); the actions it asks for
/// (the reply to a check-in or make-up).
async fn process(
    conn: &mut PgConnection,
    cache: &BridgeCache,
    protocol: &dyn Protocol,
    pages: &crate::app::member_page::MemberPages,
    bridge: &BridgeRow,
    e: &Event,
    group: Option<LinkedGroup>,
) -> sqlx::Result<Vec<Action>> {
    let Some(group) = group else {
        store::bridges::saw_unlinked_chat(conn, bridge.id, &e.chat.id, e.chat.title.as_deref()).await?;
        return Ok(vec![]);
    };
    match &e.body {
        EventBody::Message { text, force_checkin, .. } => {
            let intent = group.rules.intent(text, *force_checkin);
            let earning = match &intent {
                Intent::CheckIn(note) => Some(Earning::of(&group.rules, note.as_ref())),
                Intent::MakeUp | Intent::None => None,
            };
            let (member, outcome) =
                store::checkins::message_in_transaction(conn, &message(bridge, e, &group), earning.as_ref()).await?;
            if intent == Intent::None && crate::domain::invite::is_command(text) {
                let name = protocol.escape(display_name(&e.user.id, &e.user.name));
                let base = cache.1.get().map(String::as_str).unwrap_or("");
                let lang = group.rules.reply_lang;
                let answer =
                    crate::app::invites::command_reply(conn, pages, member, &name, base, lang, Some(group.id)).await?;
                // The text, then the member's posters as pictures in the same chat and topic.
                let mut a = vec![reply_to(e, answer.text)];
                a.extend(answer.posters.into_iter().map(|url| photo_to(e, url)));
                return Ok(a);
            }
            Ok(match (intent, outcome) {
                (Intent::CheckIn(_), Some(o)) => {
                    let mut a = vec![checkin_reply(protocol, e, &group.rules, &o)];
                    a.extend(checkin_poster(conn, pages, e, &group, &o).await?);
                    a
                }
                (Intent::MakeUp, _) => {
                    let name = protocol.escape(display_name(&e.user.id, &e.user.name));
                    vec![reply_to(e, make_up(conn, &group.rules, member, &name, group.id, e.at).await?)]
                }
                (Intent::None, _) if crate::domain::member_page::is_command(text) => {
                    let name = protocol.escape(display_name(&e.user.id, &e.user.name));
                    let lang = group.rules.reply_lang;
                    crate::app::member_page::link(conn, pages, member, lang, Utc::now().timestamp())
                        .await?
                        .map(|url| reply_to(e, Tr(lang).f("me.reply", &[("name", &name), ("url", &url)])))
                        .into_iter()
                        .collect()
                }
                _ => vec![],
            })
        }
        EventBody::Join { inviter, invite_link_name } => {
            let platform = &bridge.platform;
            let name = display_name(&e.user.id, &e.user.name);
            let mid = store::bridges::member_id(conn, platform, &e.user.id, name, e.at).await?;
            let inviter_id = match inviter {
                Some(u) => {
                    Some(store::bridges::member_id(conn, platform, &u.id, display_name(&u.id, &u.name), e.at).await?)
                }
                None => None,
            };
            // What a join request said before (a link's name, go-cqhttp's inviter) names the
            // inviter of a join that names none itself, or only the admin who approved it.
            let (hint_link, hint_inviter) = crate::app::invite_links::hint_for_join(conn, group.id, mid, e.at).await?;
            let invite_link_name = invite_link_name.clone().or(hint_link);
            let inviter_id = hint_inviter.or(inviter_id);
            let joining = store::memberships::Joining {
                role: None,
                at: Some(e.at),
                inviter_member_id: inviter_id,
                invite_link_name: invite_link_name.as_deref(),
            };
            store::memberships::open(conn, mid, group.id, &joining).await?;
            let join = crate::app::invites::JoinSeen {
                bridge_kind: bridge.kind,
                invitee: mid,
                group: group.id,
                at: e.at,
                inviter: inviter_id,
                invite_link_name: invite_link_name.as_deref(),
            };
            crate::app::invites::record_join(conn, &join).await?;
            Ok(vec![])
        }
        EventBody::Leave { reason } => {
            let name = display_name(&e.user.id, &e.user.name);
            let mid = store::bridges::member_id(conn, &bridge.platform, &e.user.id, name, e.at).await?;
            store::memberships::close(conn, mid, group.id, Some(e.at), *reason).await?;
            crate::app::invites::record_leave(conn, mid, group.id, e.at).await?;
            Ok(vec![])
        }
        // Judged by the group's entry policy (`automation::on_events`); what it says about the
        // inviter is kept for the join that follows.
        EventBody::JoinRequest { invite_link_name, inviter, .. } => {
            if invite_link_name.is_none() && inviter.is_none() {
                return Ok(vec![]);
            }
            let platform = &bridge.platform;
            let name = display_name(&e.user.id, &e.user.name);
            let mid = store::bridges::member_id(conn, platform, &e.user.id, name, e.at).await?;
            let inviter_id = match inviter {
                Some(u) => {
                    Some(store::bridges::member_id(conn, platform, &u.id, display_name(&u.id, &u.name), e.at).await?)
                }
                None => None,
            };
            crate::app::invite_links::note_request(conn, group.id, mid, invite_link_name.as_deref(), inviter_id, e.at)
                .await?;
            Ok(vec![])
        }
    }
}

/// A make-up on the day of `at`: the latest missed day within reach is filled, for its cost,
/// and the streaks after it are counted again; the reply says what happened.
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
    let days = store::checkins::days(conn, member, group).await?;
    let base = [
        ("name", name.to_string()),
        ("cost", rules.makeup_cost.to_string()),
        ("limit", rules.makeup_per_month.to_string()),
    ];
    let vars = |extra: &[(&'static str, String)]| {
        let mut v = base.to_vec();
        v.extend(extra.iter().cloned());
        v
    };
    let Some(target) = rules.makeup_day(today, &days) else {
        return Ok(render(tr.t("checkin.makeup_nothing"), &vars(&[("days", rules.makeup_days_back.to_string())])));
    };
    let used = store::checkins::makeups_in_month(conn, member, group, today).await?;
    if used >= rules.makeup_per_month as i64 {
        return Ok(render(tr.t("checkin.makeup_limit"), &vars(&[])));
    }
    if rules.makeup_cost > 0 {
        let key = IdempotencyKey::makeup(member, group, target);
        let spent = points::post(
            conn,
            Posting {
                member_id: member,
                delta: -(rules.makeup_cost as i64),
                kind: LedgerKind::Makeup,
                reference: &format!("makeup:{target}"),
                key: &key,
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
    store::checkins::insert_makeup(conn, member, group, target, at).await?;
    // The filled gap joins the runs around it: recount every streak from there on.
    let rows = store::checkins::lock_streaks(conn, member, group).await?;
    let fresh = streaks(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let mut current = 1;
    for ((id, day, old), new) in rows.iter().zip(fresh) {
        if *old != new {
            store::checkins::set_streak(conn, *id, new).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bridge::{Chat, DeliveryKind, User};

    #[test]
    fn every_kind_has_its_protocol() {
        for k in Kind::ALL {
            assert_eq!(k.protocol().kind(), k);
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn stored_answers_keep_their_tags() {
        let a = Stored::Actions(vec![Action::Delete { chat_id: "1".into(), message_id: "2".into() }]);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"actions": [{"action": "delete", "chat_id": "1", "message_id": "2"}]})
        );
        // The form store::checkins writes in SQL.
        let v = serde_json::json!({"checkin": {"new": true, "streak": 2, "total_days": 5, "points": 1, "balance": 9, "rank_today": 3}});
        assert!(matches!(serde_json::from_value::<Stored>(v).unwrap(), Stored::Checkin(Outcome { streak: 2, .. })));
    }

    #[test]
    fn a_checkin_reply_answers_the_message_in_its_topic_and_names_the_member_once() {
        let e = Event {
            chat: Chat { id: "-100".into(), title: None },
            user: User { id: "5".into(), name: "[Mei]".into(), role: None },
            at: Utc::now(),
            sent_at: None,
            body: EventBody::Message {
                text: "签到".into(),
                message_id: "9".into(),
                thread_id: Some("77".into()),
                force_checkin: false,
            },
        };
        let o = Outcome { new: true, streak: 1, total_days: 1, points: 1, balance: 1, rank_today: 1 };
        let Action::Send { text, reply_to, thread_id, mention, .. } =
            checkin_reply(Kind::OneBot11.protocol(), &e, &Rules::default(), &o)
        else {
            panic!()
        };
        assert!(text.starts_with("&#91;Mei&#93; 签到成功"), "{text}");
        assert_eq!((reply_to.as_deref(), thread_id.as_deref(), mention), (Some("9"), Some("77"), false));
        let d = Delivery { dedupe_key: "k".into(), kind: DeliveryKind::Message, self_id: None, events: vec![e] };
        let h = Kind::Telegram
            .protocol()
            .answer(&d, vec![checkin_reply(Kind::Telegram.protocol(), &d.events[0], &Rules::default(), &o)]);
        assert_eq!(h.answer.unwrap()["message_thread_id"], 77);
    }
}
