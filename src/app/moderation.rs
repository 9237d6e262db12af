//! Moderation as use cases: read and save a rule set's moderation rules and ladder, list the
//! action log, pardon a warning, undo a mute or a kick (which queues the bot call that lifts
//! it). The rule-set editor, the member page, the log page and the API call these alike.
//!
//! Who may do what: moderation rules belong to a rule set, so changing them takes what changing
//! a rule set takes ([`may_write`]); the log shows a principal the groups in its scope;
//! pardoning and undoing need write access to the action's group.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use super::Done;
use crate::auth::Principal;
use crate::domain::action::Action;
use crate::domain::bridge::Kind;
use crate::domain::moderation::{compile, Ladder, Rule};
use crate::error::{AppError, AppResult};
use crate::outbound::dispatch;
use crate::store::moderation::{self as store, ActionRow, Filter};
use crate::Config;

/// A rule set's moderation: its rules in order and its ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Moderation {
    pub rules: Vec<Rule>,
    pub ladder: Ladder,
}

/// Whether `who` may change a rule set's moderation: what changing a rule set takes (admins and
/// principals with every group may write; a rule set reaches groups outside any scope).
pub fn may_write(who: &Principal) -> bool {
    who.can_write() && (who.is_admin() || who.group_filter().is_none())
}

pub async fn get(conn: &mut PgConnection, _who: &Principal, rule_set_id: i64) -> AppResult<Moderation> {
    crate::store::rule_sets::get(conn, rule_set_id).await?.ok_or(AppError::NotFound)?;
    Ok(Moderation { rules: store::rules(conn, rule_set_id).await?, ladder: store::ladder(conn, rule_set_id).await? })
}

/// Replaces a rule set's moderation rules and ladder after checking every rule and that the
/// set compiles (bounded keyword automata). Every process's cached rule set is told.
pub async fn save(
    conn: &mut PgConnection,
    who: &Principal,
    rule_set_id: i64,
    m: Moderation,
) -> AppResult<Done<Moderation>> {
    if !may_write(who) {
        return Err(AppError::Forbidden);
    }
    crate::store::rule_sets::lock(conn, rule_set_id).await?.ok_or(AppError::NotFound)?;
    for (i, r) in m.rules.iter().enumerate() {
        if let Err(mut e) = r.check() {
            for (field, keys) in std::mem::take(&mut e.0) {
                for k in keys {
                    e.add(&format!("rules[{i}].{field}"), k);
                }
            }
            return Err(AppError::Validation(e));
        }
    }
    if let Err(mut e) = m.ladder.check() {
        for (field, keys) in std::mem::take(&mut e.0) {
            for k in keys {
                e.add(&format!("ladder.{field}"), k);
            }
        }
        return Err(AppError::Validation(e));
    }
    if let Err(e) = compile(&m.rules, m.ladder.clone()) {
        return Err(AppError::Validation(e));
    }
    let ids = store::replace_rules(conn, rule_set_id, &m.rules).await?;
    store::save_ladder(conn, rule_set_id, &m.ladder).await?;
    crate::store::rule_sets::bump(conn, rule_set_id).await?;
    let kinds: Vec<&str> = m.rules.iter().map(|r| r.kind.as_str()).collect();
    let details = json!({"rules": kinds, "ladder": m.ladder.text(), "warn_days": m.ladder.warn_days});
    super::record(conn, who, "moderation.save", "rule_set", Some(rule_set_id), details).await?;
    let rules = m.rules.into_iter().zip(ids).map(|(r, id)| Rule { id, ..r }).collect();
    Ok(Done::plain(Moderation { rules, ladder: m.ladder }))
}

/// The action log, newest first, within the principal's scope.
pub async fn list(conn: &mut PgConnection, who: &Principal, mut f: Filter) -> AppResult<Vec<ActionRow>> {
    f.scope = who.group_filter();
    Ok(store::list(conn, &f).await?)
}

async fn row_for_change(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<ActionRow> {
    who.require_write()?;
    let row = store::get(conn, id).await?.ok_or(AppError::NotFound)?;
    who.require_group(row.group_id)?;
    Ok(row)
}

/// Takes a warning off the member's ladder. 409 when the row is no warning or was pardoned.
pub async fn pardon(conn: &mut PgConnection, who: &Principal, id: i64) -> AppResult<Done<ActionRow>> {
    let row = row_for_change(conn, who, id).await?;
    if row.strike.is_none() {
        return Err(AppError::Conflict("this action is not a warning".into()));
    }
    if !store::pardon(conn, id, &who.name).await? {
        return Err(AppError::Conflict("the warning was pardoned already".into()));
    }
    let details = json!({"group_id": row.group_id, "user_id": row.user_id, "strike": row.strike});
    super::record(conn, who, "moderation.pardon", "moderation_action", Some(id), details).await?;
    let row = store::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(row))
}

/// What lifts a step: a mute of 0 seconds, or lifting the ban a kick left (Telegram only: QQ
/// bots cannot).
pub fn undo_action(kind: Kind, row: &ActionRow) -> Result<Action, &'static str> {
    match (row.step.as_str(), kind) {
        ("mute", _) => Ok(Action::Mute { chat_id: row.chat_id.clone(), user_id: row.user_id.clone(), seconds: 0 }),
        ("kick", Kind::OneBot11) => Err("moderation.error.no_unban"),
        ("kick", _) => Ok(Action::Unban { chat_id: row.chat_id.clone(), user_id: row.user_id.clone() }),
        _ => Err("moderation.error.not_undoable"),
    }
}

/// Lifts a mute or the ban of a kick: queues the bot call in this transaction and marks the
/// row undone. 409 when there is nothing to lift (already undone, a warning, a QQ kick).
pub async fn undo(conn: &mut PgConnection, config: &Config, who: &Principal, id: i64) -> AppResult<Done<ActionRow>> {
    let row = row_for_change(conn, who, id).await?;
    if !row.undoable() {
        return Err(AppError::Conflict(
            "there is nothing to undo: it was undone already, or it was no mute or kick".into(),
        ));
    }
    let bridge = crate::store::outbound::bridge(conn, row.bridge_id).await?.ok_or_else(|| {
        AppError::Conflict("the bridge that acted no longer exists, so nothing can be lifted through it".into())
    })?;
    let action = undo_action(bridge.kind, &row)
        .map_err(|key| AppError::Conflict(crate::i18n::t(crate::i18n::Lang::En, key).into()))?;
    let key = format!("moderation:undo:{id}");
    let job = dispatch::job(config, bridge.id, action.clone(), &key, Some(key.clone()));
    let job_ids: Vec<i64> = crate::store::jobs::enqueue(conn, &job).await?.into_iter().collect();
    if !store::undo(conn, id, &who.name, &job_ids).await? {
        return Err(AppError::Conflict("it was undone already".into()));
    }
    // The group's activity log shows the lifting too, with who asked for it and the answer.
    let rule = format!("moderation:{}:{}", row.rule_kind.as_str(), row.rule_id.unwrap_or(0));
    crate::store::bot_activity::record(
        conn,
        &crate::store::bot_activity::NewActivity {
            group_id: row.group_id,
            member_id: row.member_id,
            user_id: Some(&row.user_id),
            bridge_id: Some(bridge.id),
            kind: crate::domain::rule_set::ActivityKind::ModerationUndo,
            action: Some(&action),
            rule_set_id: row.rule_set_id,
            rule: &rule,
            reason: &who.name,
            job_id: job_ids.first().copied(),
            answer: None,
        },
    )
    .await?;
    let details = json!({"group_id": row.group_id, "user_id": row.user_id, "step": row.step, "job_ids": job_ids});
    super::record(conn, who, "moderation.undo", "moderation_action", Some(id), details).await?;
    let row = store::get(conn, id).await?.ok_or(AppError::NotFound)?;
    Ok(Done::plain(row))
}
