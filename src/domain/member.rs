//! What a valid member is: one person on one platform, known by the platform's user id.

use serde::{Deserialize, Serialize};

use super::{optional_text, parse_tags, required_text, text_enum, Platform};
use crate::error::FieldErrors;

/// The names of the roles a member may have inside one group ([`MemberRole`]).
pub const ROLES: [&str; 3] = ["member", "admin", "owner"];

/// A member's role inside one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MemberRole {
    #[default]
    Member,
    Admin,
    Owner,
}

impl MemberRole {
    pub const ALL: [MemberRole; 3] = [MemberRole::Member, MemberRole::Admin, MemberRole::Owner];
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Member => "member",
            MemberRole::Admin => "admin",
            MemberRole::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Option<MemberRole> {
        MemberRole::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }
}

text_enum!(MemberRole);

/// Why a membership ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member left.
    Leave,
    /// A group admin removed them.
    Kick,
    /// The bot itself was removed.
    KickMe,
    /// An operator ended it in Shoal (or the member was deleted).
    Manual,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Leave => "leave",
            LeaveReason::Kick => "kick",
            LeaveReason::KickMe => "kick_me",
            LeaveReason::Manual => "manual",
        }
    }
}

text_enum!(LeaveReason);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MemberRaw {
    pub platform: String,
    pub external_user_id: String,
    pub display_name: String,
    pub tags: String,
    pub notes: String,
    /// Optional group to add the member to (manual add and CSV import).
    pub group_id: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberSpec {
    pub platform: Platform,
    pub external_user_id: String,
    pub display_name: String,
    pub tags: Vec<String>,
    pub notes: String,
    pub group_id: Option<i64>,
    pub role: MemberRole,
}

impl MemberRaw {
    pub fn parse(&self) -> Result<MemberSpec, FieldErrors> {
        let mut e = FieldErrors::new();
        let platform = Platform::parse(&self.platform).unwrap_or_else(|| {
            e.add_choice("platform", Platform::NAMES);
            Platform::Other
        });
        let external_user_id = required_text(&self.external_user_id, 128, "external_user_id", &mut e);
        let display_name = required_text(&self.display_name, 120, "display_name", &mut e);
        let tags = parse_tags(&self.tags, "tags", &mut e);
        let notes = optional_text(&self.notes, 4000, "notes", &mut e);
        let group_id = match self.group_id.trim() {
            "" => None,
            s => match s.parse::<i64>() {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    e.add("group_id", "error.choice");
                    None
                }
            },
        };
        let role = match self.role.trim() {
            "" => MemberRole::Member,
            r => MemberRole::parse(r).unwrap_or_else(|| {
                e.add_choice("role", &ROLES);
                MemberRole::Member
            }),
        };
        if e.is_empty() {
            Ok(MemberSpec { platform, external_user_id, display_name, tags, notes, group_id, role })
        } else {
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_needs_platform_id_and_name() {
        let e = MemberRaw::default().parse().unwrap_err();
        assert!(e.has("platform") && e.has("external_user_id") && e.has("display_name"));
        let ok = MemberRaw {
            platform: "qq".into(),
            external_user_id: " 10001 ".into(),
            display_name: "小明".into(),
            group_id: "3".into(),
            ..Default::default()
        }
        .parse()
        .unwrap();
        assert_eq!(ok.external_user_id, "10001");
        assert_eq!(ok.group_id, Some(3));
        assert_eq!(ok.role, MemberRole::Member);
        let names: Vec<&str> = MemberRole::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ROLES);
    }
}
