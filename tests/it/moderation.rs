//! Moderation against the fake bots: a link from a domain outside the allow-list is deleted and
//! warned; the ladder escalates to a mute (`set_group_ban` with a duration) and a kick; an
//! expired or pardoned warning no longer counts; admins and exempt-tagged members are left
//! alone; floods are noticed; undoing a mute asks the bot to lift it; every action is a row of
//! the log (API and page).

use std::time::Duration;

use hmac::Mac;
use reqwest::StatusCode as S;
use serde_json::{json, Value};

use crate::fakebots::{FakeBot, Flavor, TELEGRAM_TOKEN};
use crate::harness::{post_hook, TestApp};

const SECRET: &str = "the-bridge-secret_1";
const QQ_CHAT: &str = "736001";
const TG_CHAT: &str = "-1001234567";

fn fast(c: &mut shoal::Config) {
    c.outbound.allowed_hosts = vec!["127.0.0.1".into()];
    c.outbound.bot_timeout_ms = 1000;
    c.outbound.limit_margin_ms = 50;
    c.outbound.member_count_interval_secs = 0;
    c.jobs.poll_ms = 50;
    c.jobs.backoff_base_ms = 100;
    c.jobs.backoff_max_ms = 400;
}

struct Scene {
    app: TestApp,
    bot: FakeBot,
    bridge: i64,
    group: i64,
    rule_set: i64,
    token: String,
}

/// A bridge of `flavor` to a fake bot, a group linked to its chat, and a rule set attached to
/// the group.
async fn scene(flavor: Flavor) -> Scene {
    let app = TestApp::spawn_with(fast).await;
    let bot = FakeBot::start(flavor).await;
    let (kind, platform, chat) = match flavor {
        Flavor::Telegram => ("telegram", "telegram", TG_CHAT),
        _ => ("onebot11", "qq", QQ_CHAT),
    };
    let bridge: i64 = sqlx::query_scalar(
        "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
         VALUES ($1, $2, 'bot', $3, $4, $5, 0, 0) RETURNING id",
    )
    .bind(kind)
    .bind(platform)
    .bind(SECRET)
    .bind(bot.base())
    .bind(&bot.token)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let group: i64 = sqlx::query_scalar(
        "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id) VALUES ('Yoga', $1, 500, $2, $3) RETURNING id",
    )
    .bind(platform)
    .bind(chat)
    .bind(bridge)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let rule_set: i64 = sqlx::query_scalar("INSERT INTO rule_sets (name) VALUES ('House rules') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO rule_set_groups (group_id, rule_set_id) VALUES ($1, $2)")
        .bind(group)
        .bind(rule_set)
        .execute(&app.db)
        .await
        .unwrap();
    let token = app.token("admin", true, &[]).await;
    Scene { app, bot, bridge, group, rule_set, token }
}

impl Scene {
    async fn put_moderation(&self, body: Value) -> (S, Value) {
        let r = reqwest::Client::new()
            .put(self.app.url(&format!("/api/v1/rule-sets/{}/moderation", self.rule_set)))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn rules(&self, rules: Value, ladder: Value) {
        let (s, body) = self.put_moderation(json!({"rules": rules, "ladder": ladder})).await;
        assert_eq!(s, S::OK, "{body}");
        // The webhook path reads rule sets from a per-process cache told by NOTIFY.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// A message from `user` (with `role`) in the chat; the webhook's status.
    async fn say(&self, message_id: i64, user: i64, role: &str, text: &str) -> S {
        let now = chrono::Utc::now().timestamp();
        match self.bot.flavor {
            Flavor::Telegram => {
                let body = serde_json::to_vec(&json!({"update_id": message_id, "message": {
                    "message_id": message_id, "date": now,
                    "chat": {"id": TG_CHAT.parse::<i64>().unwrap(), "type": "supergroup", "title": "Yoga"},
                    "from": {"id": user, "is_bot": false, "first_name": format!("U{user}")},
                    "text": text}}))
                .unwrap();
                let _ = role;
                post_hook(
                    &self.app,
                    &format!("/hooks/telegram/{}", self.bridge),
                    &body,
                    &[("x-telegram-bot-api-secret-token", SECRET.into())],
                )
                .await
                .0
            }
            _ => {
                let body = serde_json::to_vec(&json!({"time": now, "self_id": 10001000, "post_type": "message",
                    "message_type": "group", "sub_type": "normal", "message_id": message_id,
                    "group_id": QQ_CHAT.parse::<i64>().unwrap(), "user_id": user,
                    "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 0,
                    "sender": {"user_id": user, "nickname": format!("U{user}"), "card": "", "role": role}}))
                .unwrap();
                let mut mac = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let sig = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
                post_hook(
                    &self.app,
                    &format!("/hooks/onebot11/{}", self.bridge),
                    &body,
                    &[("x-signature", sig), ("x-self-id", "10001000".into())],
                )
                .await
                .0
            }
        }
    }

    /// (step, strike, deleted, evidence) of the log, oldest first.
    async fn log(&self) -> Vec<(String, Option<i32>, bool, String)> {
        sqlx::query_as("SELECT step, strike, deleted, evidence FROM moderation_actions ORDER BY id")
            .fetch_all(&self.app.db)
            .await
            .unwrap()
    }

    async fn api(&self, method: reqwest::Method, path: &str) -> (S, Value) {
        let r =
            reqwest::Client::new().request(method, self.app.url(path)).bearer_auth(&self.token).send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

fn links_rule() -> Value {
    json!({"kind": "links", "words": ["example.org"], "delete": true, "response": {"type": "warn"}})
}

fn ladder(steps: Value) -> Value {
    json!({"steps": steps, "warn_days": 30, "exempt_tags": ["vip"]})
}

#[tokio::test]
async fn a_link_from_a_domain_outside_the_allow_list_is_deleted_and_warned() {
    let s = scene(Flavor::NapCat).await;
    s.rules(json!([links_rule()]), ladder(json!([{"type": "warn"}, {"type": "warn"}, {"type": "kick"}]))).await;
    assert_eq!(s.say(501, 42, "member", "docs at https://example.org/guide").await, S::NO_CONTENT);
    assert_eq!(s.say(502, 42, "member", "便宜 spam[.]com 快来").await, S::NO_CONTENT);
    let deleted = s.bot.wait_method("delete_msg", 1).await;
    assert_eq!(deleted[0].body["message_id"], 502);
    let sent = s.bot.wait_method("send_group_msg", 1).await;
    let text = sent[0].body["message"].as_str().unwrap();
    assert!(text.contains("U42") && text.contains("1/3"), "{text}");
    assert_eq!(s.log().await, [("warn".to_string(), Some(1), true, "spam.com".to_string())]);
    // The allowed link was an ordinary message: the member and their activity are there, once
    // the plain chat's batch is written.
    s.app.chatter_written().await;
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM bridge_events WHERE bridge_id = $1")
        .bind(s.bridge)
        .fetch_one(&s.app.db)
        .await
        .unwrap();
    assert_eq!(messages, 2);
    // Each delivery's row is settled as answered: no reply kept, 204.
    let rows: Vec<(i32, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT status, reply FROM bridge_events WHERE bridge_id = $1 ORDER BY dedupe_key")
            .bind(s.bridge)
            .fetch_all(&s.app.db)
            .await
            .unwrap();
    assert_eq!(rows, [(204, None), (204, None)]);
    // A retry of the violating delivery changes nothing.
    assert_eq!(s.say(502, 42, "member", "便宜 spam[.]com 快来").await, S::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.log().await.len(), 1);
    assert_eq!(s.bot.calls_of("delete_msg").len(), 1);
}

/// The action log has no foreign keys (see its migration): a rule, a member or a rule set deleted
/// leaves the rows and loses the link, a group deleted takes its rows along — and only its own.
#[tokio::test]
async fn the_action_log_loses_the_link_to_a_deleted_rule_member_or_rule_set_and_goes_with_its_group() {
    let s = scene(Flavor::NapCat).await;
    s.rules(json!([links_rule()]), ladder(json!([{"type": "warn"}, {"type": "kick"}]))).await;
    assert_eq!(s.say(601, 42, "member", "spam.com").await, S::NO_CONTENT);
    assert_eq!(s.log().await.len(), 1);
    let links = |table: &'static str| {
        let db = s.app.db.clone();
        async move {
            sqlx::query_as::<_, (i64, Option<i64>, Option<i64>)>(&format!(
                "SELECT group_id, member_id, rule_set_id FROM {table} ORDER BY id"
            ))
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let member: i64 =
        sqlx::query_scalar("SELECT id FROM members WHERE external_user_id = '42'").fetch_one(&s.app.db).await.unwrap();
    let whole = (s.group, Some(member), Some(s.rule_set));
    assert_eq!(links("moderation_actions").await, [whole]);
    assert_eq!(links("bot_activity").await, [whole, whole], "the deletion and the warning");
    let rule_id = || async {
        sqlx::query_scalar::<_, Option<i64>>("SELECT rule_id FROM moderation_actions")
            .fetch_one(&s.app.db)
            .await
            .unwrap()
    };
    assert!(rule_id().await.is_some());

    // The rule set saved without its rule: the row keeps its kind and loses the rule.
    s.rules(json!([]), ladder(json!([{"type": "warn"}]))).await;
    assert_eq!(rule_id().await, None);
    let kind: String =
        sqlx::query_scalar("SELECT rule_kind FROM moderation_actions").fetch_one(&s.app.db).await.unwrap();
    assert_eq!(kind, "links");
    // The member deleted by hand (they only chatted: no ledger history).
    sqlx::query("DELETE FROM members WHERE id = $1").bind(member).execute(&s.app.db).await.unwrap();
    let (s1, body) = s.api(reqwest::Method::DELETE, &format!("/api/v1/rule-sets/{}", s.rule_set)).await;
    assert!(s1.is_success(), "{s1} {body}");
    let bare = (s.group, None, None);
    assert_eq!(links("moderation_actions").await, [bare]);
    assert_eq!(links("bot_activity").await, [bare, bare]);

    // Another group's row stays when this group is deleted by hand.
    let other: i64 =
        sqlx::query_scalar("INSERT INTO groups (name, platform, capacity) VALUES ('Other', 'qq', 10) RETURNING id")
            .fetch_one(&s.app.db)
            .await
            .unwrap();
    sqlx::query("INSERT INTO bot_activity (group_id, kind) VALUES ($1, 'welcome')")
        .bind(other)
        .execute(&s.app.db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM groups WHERE id = $1").bind(s.group).execute(&s.app.db).await.unwrap();
    assert!(links("moderation_actions").await.is_empty());
    assert_eq!(links("bot_activity").await, [(other, None, None)]);
}

/// Several violations of one member judged at once each take their own strike: the lock on
/// the member's warnings is taken with the delivery's claim, before the standing is read.
#[tokio::test]
async fn violations_judged_at_once_take_one_strike_each() {
    let s = scene(Flavor::NapCat).await;
    let steps = json!([{"type": "warn"}, {"type": "warn"}, {"type": "warn"}, {"type": "warn"}, {"type": "warn"},
                       {"type": "warn"}, {"type": "warn"}, {"type": "kick"}]);
    s.rules(json!([links_rule()]), ladder(steps)).await;
    let say = |id| s.say(id, 42, "member", "spam.com");
    let (a, b, c, d, e, f) = tokio::join!(say(701), say(702), say(703), say(704), say(705), say(706));
    let statuses = [a, b, c, d, e, f];
    assert!(statuses.iter().all(|st| *st == S::NO_CONTENT), "{statuses:?}");
    let mut strikes: Vec<i32> = s.log().await.into_iter().filter_map(|(_, strike, _, _)| strike).collect();
    strikes.sort_unstable();
    assert_eq!(strikes, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn the_ladder_escalates_to_a_mute_with_its_duration_then_a_kick() {
    let s = scene(Flavor::NapCat).await;
    s.rules(
        json!([links_rule()]),
        ladder(json!([{"type": "warn"}, {"type": "mute", "seconds": 3600}, {"type": "kick"}])),
    )
    .await;
    for (i, text) in ["a spam.com", "b spam.com", "c spam.com"].iter().enumerate() {
        assert_eq!(s.say(600 + i as i64, 77, "member", text).await, S::NO_CONTENT);
    }
    let bans = s.bot.wait_method("set_group_ban", 1).await;
    assert_eq!(bans[0].body["duration"], 3600);
    assert_eq!(bans[0].body["user_id"], 77);
    let kicks = s.bot.wait_method("set_group_kick", 1).await;
    assert_eq!(kicks[0].body["user_id"], 77);
    s.bot.wait_method("delete_msg", 3).await;
    let notices = s.bot.wait_method("send_group_msg", 3).await;
    // The step before the last says what comes next.
    let second = notices
        .iter()
        .find(|c| {
            c.body["message"].as_str().unwrap().contains("3600")
                || c.body["message"].as_str().unwrap().contains("1 小时")
        })
        .expect("the mute notice");
    assert!(second.body["message"].as_str().unwrap().contains("移出"), "{}", second.body["message"]);
    let steps: Vec<(String, Option<i32>)> = s.log().await.into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(steps, [("warn".into(), Some(1)), ("mute".into(), Some(2)), ("kick".into(), Some(3))]);
}

#[tokio::test]
async fn an_expired_or_pardoned_warning_no_longer_counts() {
    let s = scene(Flavor::NapCat).await;
    s.rules(json!([links_rule()]), ladder(json!([{"type": "warn"}, {"type": "kick"}]))).await;
    s.say(701, 5, "member", "spam.com").await;
    s.bot.wait_method("send_group_msg", 1).await;
    sqlx::query("UPDATE moderation_actions SET expires_at = now() - interval '1 second'")
        .execute(&s.app.db)
        .await
        .unwrap();
    s.say(702, 5, "member", "spam.com").await;
    s.bot.wait_method("send_group_msg", 2).await;
    let log = s.log().await;
    assert_eq!((log[1].0.as_str(), log[1].1), ("warn", Some(1)), "the expired warning did not count");
    // Pardon the second: the third offence is a first warning again, not a kick.
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM moderation_actions").fetch_one(&s.app.db).await.unwrap();
    let (st, body) = s.api(reqwest::Method::POST, &format!("/api/v1/moderation/actions/{id}/pardon")).await;
    assert_eq!(st, S::OK, "{body}");
    assert!(body["pardoned_at"].is_string());
    let (st, _) = s.api(reqwest::Method::POST, &format!("/api/v1/moderation/actions/{id}/pardon")).await;
    assert_eq!(st, S::CONFLICT, "pardoned already");
    s.say(703, 5, "member", "spam.com").await;
    s.bot.wait_method("send_group_msg", 3).await;
    let log = s.log().await;
    assert_eq!((log[2].0.as_str(), log[2].1), ("warn", Some(1)));
    assert!(s.bot.calls_of("set_group_kick").is_empty());
}

#[tokio::test]
async fn admins_owners_and_exempt_tagged_members_are_never_acted_on() {
    let s = scene(Flavor::NapCat).await;
    s.rules(json!([links_rule()]), ladder(json!([{"type": "warn"}]))).await;
    assert_eq!(s.say(801, 1, "admin", "spam.com").await, S::NO_CONTENT);
    assert_eq!(s.say(802, 2, "owner", "spam.com").await, S::NO_CONTENT);
    sqlx::query(
        "INSERT INTO members (platform, external_user_id, display_name, tags) VALUES ('qq', '3', 'V', '{vip}')",
    )
    .execute(&s.app.db)
    .await
    .unwrap();
    assert_eq!(s.say(803, 3, "member", "spam.com").await, S::NO_CONTENT);
    assert_eq!(s.say(804, 4, "member", "spam.com").await, S::NO_CONTENT);
    s.bot.wait_method("delete_msg", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.bot.calls_of("delete_msg").len(), 1);
    assert_eq!(s.bot.calls_of("delete_msg")[0].body["message_id"], 804);
    let users: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM moderation_actions").fetch_all(&s.app.db).await.unwrap();
    assert_eq!(users, ["4"]);
}

#[tokio::test]
async fn a_flood_is_one_offence_per_burst() {
    let s = scene(Flavor::Telegram).await;
    s.rules(
        json!([{"kind": "flood", "count": 5, "seconds": 60, "delete": true, "response": {"type": "mute", "seconds": 600}}]),
        ladder(json!([{"type": "warn"}])),
    )
    .await;
    for i in 0..7 {
        assert_eq!(s.say(900 + i, 11, "member", &format!("hi {i}")).await, S::NO_CONTENT);
    }
    let mutes = s.bot.wait_method("restrictChatMember", 1).await;
    assert_eq!(mutes[0].body["permissions"]["can_send_messages"], false);
    assert!(mutes[0].body["until_date"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.log().await.len(), 1, "the 6th and 7th messages start a new count");
    // Another member's messages in between do not count for them.
    assert_eq!(s.bot.calls_of("deleteMessage").len(), 1);
    assert_eq!(s.bot.calls_of("deleteMessage")[0].body["message_id"], 904);
}

#[tokio::test]
async fn undoing_a_mute_asks_the_bot_to_lift_it_and_the_log_shows_both() {
    let s = scene(Flavor::NapCat).await;
    s.rules(
        json!([{"kind": "keywords", "words": ["代开发票"], "delete": true, "response": {"type": "mute", "seconds": 600}}]),
        ladder(json!([{"type": "warn"}])),
    )
    .await;
    s.say(1001, 9, "member", "本店 代 开 发 票").await;
    let bans = s.bot.wait_method("set_group_ban", 1).await;
    assert_eq!(bans[0].body["duration"], 600);
    let (st, page) = s.api(reqwest::Method::GET, &format!("/api/v1/moderation/actions?group_id={}", s.group)).await;
    assert_eq!(st, S::OK);
    let row = &page["items"][0];
    assert_eq!(row["step"], "mute");
    assert_eq!(row["rule_kind"], "keywords");
    assert_eq!(row["evidence"], "代开发票");
    let id = row["id"].as_i64().unwrap();
    // The undo goes through the admin page, as an operator would.
    let admin = s.app.admin().await;
    let r = s.app.post_form(&admin, "/moderation", &format!("/moderation/{id}/undo"), &[]).await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let bans = s.bot.wait_method("set_group_ban", 2).await;
    assert_eq!(bans[1].body["duration"], 0);
    assert_eq!(bans[1].body["user_id"], 9);
    let (st, _) = s.api(reqwest::Method::POST, &format!("/api/v1/moderation/actions/{id}/undo")).await;
    assert_eq!(st, S::CONFLICT, "undone already");
    // The log page lists it, with the platform's answers.
    let body = admin.get(s.app.url("/moderation")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(&format!("id=\"action-{id}\"")), "{body}");
    assert!(body.contains("代开发票"));
    // The bot has the call; its job is marked done right after the answer comes back.
    let mut answers: Vec<String> = Vec::new();
    let mut one = serde_json::Value::Null;
    for _ in 0..100 {
        one = s.api(reqwest::Method::GET, &format!("/api/v1/moderation/actions/{id}")).await.1;
        assert!(one["undone_at"].is_string());
        answers = serde_json::from_value(one["answers"].clone()).unwrap();
        if answers.iter().all(|a| a.starts_with("done")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answers.len() >= 2 && answers.iter().all(|a| a.starts_with("done")), "{answers:?}");
    // The group's activity log has the lifting, with who asked for it.
    let (_, log) = s.api(reqwest::Method::GET, &format!("/api/v1/groups/{}/activity", s.group)).await;
    let undo = &log["items"][0];
    assert_eq!((undo["kind"].as_str(), undo["reason"].as_str()), (Some("moderation_undo"), Some("admin")), "{log}");
    assert_eq!(undo["action"]["seconds"], 0);
    let body =
        admin.get(s.app.url(&format!("/groups/{}/activity", s.group))).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("Mute lifted") || body.contains("已解除禁言"), "{body}");
    // The member page shows the action.
    let member = one["member_id"].as_i64().unwrap();
    let body = admin.get(s.app.url(&format!("/members/{member}"))).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("id=\"warnings\"") && body.contains(&format!("action-{id}")), "{body}");
}

#[tokio::test]
async fn a_telegram_kick_is_undone_by_lifting_the_ban_only_if_banned() {
    let s = scene(Flavor::Telegram).await;
    s.rules(
        json!([{"kind": "invite", "delete": true, "response": {"type": "kick"}}]),
        ladder(json!([{"type": "warn"}])),
    )
    .await;
    s.say(1101, 12, "member", "join t.me/+AbCdEf123").await;
    s.bot.wait_method("banChatMember", 1).await;
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM moderation_actions").fetch_one(&s.app.db).await.unwrap();
    let (st, body) = s.api(reqwest::Method::POST, &format!("/api/v1/moderation/actions/{id}/undo")).await;
    assert_eq!(st, S::OK, "{body}");
    // One unban from the kick itself, one from the undo.
    let unbans = s.bot.wait_method("unbanChatMember", 2).await;
    assert!(unbans.iter().all(|c| c.body["only_if_banned"] == true));
    let _ = TELEGRAM_TOKEN;
}

#[tokio::test]
async fn bad_rules_are_refused_and_write_nothing() {
    let s = scene(Flavor::NapCat).await;
    for bad in [
        json!({"rules": [{"kind": "keywords", "words": [], "response": {"type": "warn"}}], "ladder": ladder(json!([{"type": "warn"}]))}),
        json!({"rules": [{"kind": "links", "words": ["not a domain"], "response": {"type": "warn"}}], "ladder": ladder(json!([{"type": "warn"}]))}),
        json!({"rules": [{"kind": "flood", "count": 5, "response": {"type": "warn"}}], "ladder": ladder(json!([{"type": "warn"}]))}),
        json!({"rules": [], "ladder": {"steps": [], "warn_days": 30}}),
        json!({"rules": [], "ladder": {"steps": [{"type": "warn"}], "warn_days": 0}}),
    ] {
        let (st, body) = s.put_moderation(bad.clone()).await;
        assert_eq!(st, S::UNPROCESSABLE_ENTITY, "{bad} → {body}");
    }
    assert_eq!(s.app.count("moderation_rules").await, 0);
    assert_eq!(s.app.count("moderation_settings").await, 0);
}

#[tokio::test]
async fn the_rule_set_editor_adds_a_rule_and_refuses_a_bad_one_with_a_message() {
    let s = scene(Flavor::NapCat).await;
    let admin = s.app.admin().await;
    let page = format!("/rule-sets/{}/moderation", s.rule_set);
    let r = s
        .app
        .post_form(
            &admin,
            &page,
            &format!("{page}/rules"),
            &[("kind", "phone"), ("enabled", "on"), ("delete", "on"), ("response", "mute 10m")],
        )
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (kind, response, mute): (String, String, i32) =
        sqlx::query_as("SELECT kind, response, mute_seconds FROM moderation_rules").fetch_one(&s.app.db).await.unwrap();
    assert_eq!((kind.as_str(), response.as_str(), mute), ("phone", "mute", 600));
    let r = s
        .app
        .post_form(
            &admin,
            &page,
            &format!("{page}/rules"),
            &[("kind", "links"), ("words", "not a domain"), ("response", "warn")],
        )
        .await;
    assert_eq!(r.status(), S::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("example.com"), "the domain message is shown");
    assert_eq!(s.app.count("moderation_rules").await, 1);
    let r = s
        .app
        .post_form(&admin, &page, &format!("{page}/ladder"), &[("ladder", "warn, mute 1h, kick"), ("warn_days", "7")])
        .await;
    assert_eq!(r.status(), S::SEE_OTHER);
    let (l, d): (String, i32) =
        sqlx::query_as("SELECT ladder, warn_days FROM moderation_settings").fetch_one(&s.app.db).await.unwrap();
    assert_eq!((l.as_str(), d), ("warn, mute:3600, kick", 7));
}

#[tokio::test]
async fn moderation_actions_show_in_the_groups_activity_log_with_the_rule_and_the_platforms_answer() {
    let s = scene(Flavor::NapCat).await;
    s.rules(json!([links_rule()]), ladder(json!([{"type": "warn"}, {"type": "mute", "seconds": 3600}]))).await;
    assert_eq!(s.say(801, 42, "member", "看 spam.com").await, S::NO_CONTENT);
    assert_eq!(s.say(802, 42, "member", "再看 spam.com").await, S::NO_CONTENT);
    s.bot.wait_method("set_group_ban", 1).await;
    s.bot.wait_method("delete_msg", 2).await;
    s.bot.wait_method("send_group_msg", 2).await;
    // Every action's answer is in once its job settled.
    let mut items = Vec::new();
    for _ in 0..200 {
        let (st, page) = s.api(reqwest::Method::GET, &format!("/api/v1/groups/{}/activity", s.group)).await;
        assert_eq!(st, S::OK, "{page}");
        items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 5 && items.iter().all(|i| i["answer"].as_str().is_some_and(|a| a.starts_with("ok"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kinds: Vec<&str> = items.iter().rev().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["moderation_delete", "moderation_warn", "moderation_delete", "moderation_notice", "moderation_mute"],
        "{items:?}"
    );
    kinds.clear();
    for i in &items {
        assert!(i["rule"].as_str().unwrap().starts_with("moderation:links:"), "{i}");
        assert_eq!(i["reason"], "spam.com");
        assert!(i["answer"].as_str().unwrap().starts_with("ok"), "the platform's answer: {i}");
        assert!(i["member_id"].as_i64().is_some());
    }
    // The page says it in the operator's words, in both languages.
    let c = s.app.admin().await;
    for (lang, words) in [
        ("en", ["Deleted a message", "Warned", "Muted", "Moderation rule #", "links", "Muted for 1 hour", "Done"]),
        ("zh-CN", ["删除了消息", "警告", "禁言", "违规规则 #", "链接", "禁言 1 小时", "已完成"]),
    ] {
        s.app.post_form(&c, "/settings", "/language", &[("lang", lang)]).await;
        let html =
            c.get(s.app.url(&format!("/groups/{}/activity", s.group))).send().await.unwrap().text().await.unwrap();
        for w in words {
            assert!(html.contains(w), "{lang}: {w} missing in {html}");
        }
        assert!(!html.contains("moderation:links"), "the rule in words, not its code");
    }
    // Each action row lists its jobs in the order they were taken; each job has its log row,
    // which names the action the job carries.
    let listed: Vec<Vec<i64>> =
        sqlx::query_scalar("SELECT job_ids FROM moderation_actions WHERE group_id = $1 ORDER BY id")
            .bind(s.group)
            .fetch_all(&s.app.db)
            .await
            .unwrap();
    assert_eq!(listed.iter().map(Vec::len).collect::<Vec<_>>(), [2, 3], "{listed:?}");
    let logged: Vec<(i64, Value, Value)> = sqlx::query_as(
        "SELECT a.job_id, a.action, j.payload->'action' FROM bot_activity a JOIN jobs j ON j.id = a.job_id
         WHERE a.group_id = $1 ORDER BY a.id",
    )
    .bind(s.group)
    .fetch_all(&s.app.db)
    .await
    .unwrap();
    assert_eq!(logged.iter().map(|l| l.0).collect::<Vec<_>>(), listed.concat());
    for (job, logged, carried) in &logged {
        assert_eq!(logged, carried, "job {job}");
    }
    assert!(listed.concat().windows(2).all(|w| w[0] < w[1]), "jobs queued in order: {listed:?}");
}
