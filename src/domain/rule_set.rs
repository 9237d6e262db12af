//! Rule sets (规则集): one set of bot automation (welcome, keyword replies, entry policy, and the
//! moderation rules that reference it) attached to groups or to a group tag, and the per-group
//! activity log's vocabulary. Pure: what a valid rule set is and which attachment wins.

use serde::{Deserialize, Serialize};

use super::{optional_text, required_text, text_enum};
use crate::error::FieldErrors;

/// A rule set as typed into a form or a JSON body.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RuleSetRaw {
    pub name: String,
    pub description: String,
}

/// A valid rule set's own fields.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSetSpec {
    pub name: String,
    pub description: String,
}

impl RuleSetRaw {
    pub fn parse(&self) -> Result<RuleSetSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let name = required_text(&self.name, 120, "name", &mut e);
        let description = optional_text(&self.description, 2000, "description", &mut e);
        if e.is_empty() {
            Ok(RuleSetSpec { name, description })
        } else {
            Err(e)
        }
    }
}

/// Where a rule set applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Attachment {
    /// One group: wins over any tag's rule set.
    Group { group_id: i64 },
    /// Every group carrying `tag` that has no rule set of its own; between two tags of one
    /// group the higher `priority` wins, then the tag first in text order.
    Tag {
        tag: String,
        #[serde(default)]
        priority: i32,
    },
}

/// Whence a group's effective rule set comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Source {
    Group,
    Tag,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Group => "group",
            Source::Tag => "tag",
        }
    }
}
text_enum!(Source);

/// Which of several candidate attachments is a group's effective rule set: its own, else the
/// tag with the highest priority, then the first tag in text order. `store::rule_sets::effective`
/// orders the same way in SQL; this is the rule for tests and for callers holding the rows.
pub fn pick<'a, T>(candidates: &'a [(Source, Option<&'a str>, i32, T)]) -> Option<&'a T> {
    candidates
        .iter()
        .min_by(|a, b| {
            let rank = |s: Source| if s == Source::Group { 0 } else { 1 };
            rank(a.0).cmp(&rank(b.0)).then(b.2.cmp(&a.2)).then(a.1.cmp(&b.1))
        })
        .map(|c| &c.3)
}

/// What the bot did, as a `bot_activity` row's `kind`. Stored as text without a CHECK so that
/// other rule kinds (moderation) add variants here only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ActivityKind {
    /// Welcomed one or more new members.
    Welcome,
    /// Deleted the previous welcome message.
    WelcomeDeleted,
    /// Answered a keyword.
    KeywordReply,
    /// Approved a join request.
    JoinApproved,
    /// Declined a join request.
    JoinDeclined,
    /// Held a join request for an operator.
    JoinHeld,
    /// Sent the applicant the questionnaire.
    JoinQuestionnaire,
    /// A held request ran out of time (and was declined or left, per policy).
    JoinExpired,
    /// Moderation: deleted a message that broke a rule.
    ModerationDelete,
    /// Moderation: warned the member (the notice with their warning count).
    ModerationWarn,
    /// Moderation: told the member they are muted or removed.
    ModerationNotice,
    /// Moderation: muted the member.
    ModerationMute,
    /// Moderation: removed the member.
    ModerationKick,
    /// Moderation: an operator lifted a mute or the ban of a removal.
    ModerationUndo,
}

impl ActivityKind {
    pub const ALL: [ActivityKind; 14] = [
        ActivityKind::Welcome,
        ActivityKind::WelcomeDeleted,
        ActivityKind::KeywordReply,
        ActivityKind::JoinApproved,
        ActivityKind::JoinDeclined,
        ActivityKind::JoinHeld,
        ActivityKind::JoinQuestionnaire,
        ActivityKind::JoinExpired,
        ActivityKind::ModerationDelete,
        ActivityKind::ModerationWarn,
        ActivityKind::ModerationNotice,
        ActivityKind::ModerationMute,
        ActivityKind::ModerationKick,
        ActivityKind::ModerationUndo,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Welcome => "welcome",
            ActivityKind::WelcomeDeleted => "welcome_deleted",
            ActivityKind::KeywordReply => "keyword_reply",
            ActivityKind::JoinApproved => "join_approved",
            ActivityKind::JoinDeclined => "join_declined",
            ActivityKind::JoinHeld => "join_held",
            ActivityKind::JoinQuestionnaire => "join_questionnaire",
            ActivityKind::JoinExpired => "join_expired",
            ActivityKind::ModerationDelete => "moderation_delete",
            ActivityKind::ModerationWarn => "moderation_warn",
            ActivityKind::ModerationNotice => "moderation_notice",
            ActivityKind::ModerationMute => "moderation_mute",
            ActivityKind::ModerationKick => "moderation_kick",
            ActivityKind::ModerationUndo => "moderation_undo",
        }
    }
}
text_enum!(ActivityKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_own_rule_set_wins_then_the_highest_tag_priority_then_tag_order() {
        let c = [(Source::Tag, Some("b"), 5, 1), (Source::Tag, Some("a"), 5, 2), (Source::Tag, Some("c"), 1, 3)];
        assert_eq!(pick(&c), Some(&2));
        let mut with_own = c.to_vec();
        with_own.push((Source::Group, None, 0, 9));
        assert_eq!(pick(&with_own), Some(&9));
        assert_eq!(pick::<i32>(&[]), None);
    }

    #[test]
    fn a_rule_set_needs_a_name() {
        let e = RuleSetRaw { name: "  ".into(), description: String::new() }.parse().unwrap_err();
        assert!(e.has("name"));
        let ok = RuleSetRaw { name: " 新人群 ".into(), description: "x".into() }.parse().unwrap();
        assert_eq!(ok.name, "新人群");
    }

    #[test]
    fn attachments_are_tagged_in_json() {
        let a: Attachment = serde_json::from_value(serde_json::json!({"to": "tag", "tag": "vip"})).unwrap();
        assert_eq!(a, Attachment::Tag { tag: "vip".into(), priority: 0 });
    }
}
