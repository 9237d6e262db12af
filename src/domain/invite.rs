//! Fission (裂变) rules, free of I/O: invite record states and reasons, a campaign's checked
//! shape (`CampaignRaw → CampaignSpec`, one set of messages for the admin form and the API), the
//! stages a count of confirmed invites reaches, the bot command, and the signals that send an
//! invite to review instead of crediting it at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text_enum;
use crate::error::FieldErrors;

/// Where an invite record stands (`invite_records.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InviteState {
    /// Credited, inside the hold period: no reward yet.
    Pending,
    /// The hold period passed with the invitee still in the group: counts for stages.
    Confirmed,
    /// The invitee left (or was kicked) inside the hold period; a reward it had earned is taken
    /// back by a compensating entry.
    Reversed,
    /// Credited but suspicious: waits for an operator's decision (approve or reject).
    Flagged,
    /// An operator rejected it.
    Rejected,
    /// Kept for the record, never credited (self-invite, someone else was first, a re-join).
    NotCredited,
}

impl InviteState {
    pub const ALL: [InviteState; 6] = [
        InviteState::Pending,
        InviteState::Confirmed,
        InviteState::Reversed,
        InviteState::Flagged,
        InviteState::Rejected,
        InviteState::NotCredited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InviteState::Pending => "pending",
            InviteState::Confirmed => "confirmed",
            InviteState::Reversed => "reversed",
            InviteState::Flagged => "flagged",
            InviteState::Rejected => "rejected",
            InviteState::NotCredited => "not_credited",
        }
    }

    pub fn parse(s: &str) -> Option<InviteState> {
        InviteState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}
text_enum!(InviteState);

/// How Shoal learnt who brought whom (`invite_records.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InviteSource {
    /// A platform invite link named with the inviter's code (Telegram `invite_link.name`).
    PlatformLink,
    /// The platform named the inviter (OneBot `operator_id` of an invite, Telegram's adder).
    PlatformInviter,
    /// The generic webhook's `inviter`.
    Generic,
    /// A live-code scan with `?r={code}` matched to the join.
    Scan,
}

impl InviteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteSource::PlatformLink => "platform_link",
            InviteSource::PlatformInviter => "platform_inviter",
            InviteSource::Generic => "generic",
            InviteSource::Scan => "scan",
        }
    }
}
text_enum!(InviteSource);

/// Why a record is not credited, or why it waits for review (`invite_records.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum InviteReason {
    SelfInvite,
    AlreadyCredited,
    Rejoin,
    /// Many joins on one inviter's link in a short time.
    Burst,
    /// The scan that led here came from a client that scanned many personal codes.
    ScanManyCodes,
    /// The invitee left or was kicked inside the hold period.
    Left,
    /// An operator decided.
    Operator,
}

impl InviteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteReason::SelfInvite => "self_invite",
            InviteReason::AlreadyCredited => "already_credited",
            InviteReason::Rejoin => "rejoin",
            InviteReason::Burst => "burst",
            InviteReason::ScanManyCodes => "scan_many_codes",
            InviteReason::Left => "left",
            InviteReason::Operator => "operator",
        }
    }
}
text_enum!(InviteReason);

/// A campaign's status (`campaigns.status`): only active campaigns credit new invites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CampaignStatus {
    Active,
    Paused,
    Ended,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 3] = [CampaignStatus::Active, CampaignStatus::Paused, CampaignStatus::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignStatus> {
        CampaignStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}
text_enum!(CampaignStatus);

/// An operator's decision on a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A flagged record is credited after all (confirmed at once if its hold is over).
    Approve,
    /// A flagged, pending or confirmed record stops counting (a reward it earned is taken back).
    Reject,
}

/// One stage: this many confirmed invites earn these points (and a member tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stage {
    #[schema(minimum = 1, maximum = 100000)]
    pub invites: i64,
    #[schema(minimum = 0, maximum = 1000000)]
    pub points: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 40)]
    pub tag: Option<String>,
}

pub const MAX_STAGES: usize = 20;
pub const MAX_NAME: usize = 100;
pub const MAX_REPLY: usize = 500;
pub const MAX_GROUPS: usize = 500;

/// Joins on one inviter's link within [`BURST_WINDOW_MINUTES`] from which on an invite is
/// flagged for review.
pub const BURST_JOINS: i64 = 10;
pub const BURST_WINDOW_MINUTES: i64 = 10;
/// Distinct personal codes one client scanned within a day from which on the invites its scans
/// lead to are flagged.
pub const SCAN_CODES_PER_CLIENT: i64 = 5;
/// How long after a scan a join in the group it was sent to is matched to it.
pub const REFERRAL_WINDOW_MINUTES: i64 = 30;

/// A campaign as typed (form fields or JSON), before its checks.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CampaignRaw {
    pub name: String,
    pub group_ids: Vec<i64>,
    pub live_code_slug: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
    pub hold_days: Option<i64>,
    pub rejoin_days: Option<i64>,
    pub stages: Vec<Stage>,
    pub level2_points: Option<i64>,
    pub poster_template_id: Option<i64>,
    pub reply_progress: String,
    pub reply_stage: String,
}

/// A campaign that passed its checks.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignSpec {
    pub name: String,
    pub group_ids: Vec<i64>,
    /// The live code's slug, looked up (and scope-checked) by the use case.
    pub live_code_slug: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub status: CampaignStatus,
    pub hold_days: i32,
    pub rejoin_days: i32,
    pub stages: Vec<Stage>,
    pub level2_points: i64,
    pub poster_template_id: Option<i64>,
    pub reply_progress: String,
    pub reply_stage: String,
}

impl TryFrom<CampaignRaw> for CampaignSpec {
    type Error = FieldErrors;

    fn try_from(r: CampaignRaw) -> Result<CampaignSpec, FieldErrors> {
        let mut fe = FieldErrors::new();
        let name = r.name.trim().to_string();
        if name.is_empty() {
            fe.add("name", "invites.error.name_required");
        } else if name.chars().count() > MAX_NAME {
            fe.add("name", "invites.error.name_long");
        }
        let mut group_ids = r.group_ids.clone();
        group_ids.sort_unstable();
        group_ids.dedup();
        if group_ids.is_empty() {
            fe.add("group_ids", "invites.error.groups_required");
        } else if group_ids.len() > MAX_GROUPS || group_ids.iter().any(|g| *g <= 0) {
            fe.add("group_ids", "invites.error.groups_bad");
        }
        let slug = r.live_code_slug.trim();
        if slug.chars().count() > 64 {
            fe.add("live_code_slug", "invites.error.live_code_unknown");
        }
        if let (Some(s), Some(e)) = (r.starts_at, r.ends_at) {
            if e <= s {
                fe.add("ends_at", "invites.error.window");
            }
        }
        let status = match r.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => CampaignStatus::Active,
            Some(s) => CampaignStatus::parse(s).unwrap_or_else(|| {
                fe.add("status", "invites.error.status");
                CampaignStatus::Active
            }),
        };
        let hold_days = r.hold_days.unwrap_or(3);
        if !(0..=60).contains(&hold_days) {
            fe.add("hold_days", "invites.error.hold_days");
        }
        let rejoin_days = r.rejoin_days.unwrap_or(30);
        if !(0..=365).contains(&rejoin_days) {
            fe.add("rejoin_days", "invites.error.rejoin_days");
        }
        let level2_points = r.level2_points.unwrap_or(0);
        if !(0..=1_000_000).contains(&level2_points) {
            fe.add("level2_points", "invites.error.points");
        }
        let mut stages = Vec::new();
        if r.stages.is_empty() {
            fe.add("stages", "invites.error.stages_required");
        } else if r.stages.len() > MAX_STAGES {
            fe.add("stages", "invites.error.stages_many");
        }
        for s in r.stages.iter().take(MAX_STAGES) {
            let tag = s.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
            if !(1..=100_000).contains(&s.invites) {
                fe.add("stages", "invites.error.stage_invites");
            } else if !(0..=1_000_000).contains(&s.points) {
                fe.add("stages", "invites.error.points");
            } else if tag.as_ref().is_some_and(|t| t.chars().count() > 40 || t.chars().any(char::is_control)) {
                fe.add("stages", "invites.error.tag");
            } else {
                stages.push(Stage { invites: s.invites, points: s.points, tag });
            }
        }
        stages.sort_by_key(|s| s.invites);
        if stages.windows(2).any(|w| w[0].invites == w[1].invites) {
            fe.add("stages", "invites.error.stage_twice");
        }
        for (field, text) in [("reply_progress", &r.reply_progress), ("reply_stage", &r.reply_stage)] {
            if text.chars().count() > MAX_REPLY {
                fe.add(field, "invites.error.reply_long");
            }
        }
        if !fe.is_empty() {
            return Err(fe);
        }
        Ok(CampaignSpec {
            name,
            group_ids,
            live_code_slug: Some(slug.to_string()).filter(|s| !s.is_empty()),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status,
            hold_days: hold_days as i32,
            rejoin_days: rejoin_days as i32,
            stages,
            level2_points,
            poster_template_id: r.poster_template_id.filter(|t| *t > 0),
            reply_progress: r.reply_progress.trim().to_string(),
            reply_stage: r.reply_stage.trim().to_string(),
        })
    }
}

/// The stages reached with `confirmed` invites (stages ascending).
pub fn reached(stages: &[Stage], confirmed: i64) -> impl Iterator<Item = &Stage> {
    stages.iter().filter(move |s| s.invites <= confirmed)
}

/// The next stage not reached yet, and how many more confirmed invites it needs.
pub fn next_stage(stages: &[Stage], confirmed: i64) -> Option<(&Stage, i64)> {
    stages.iter().find(|s| s.invites > confirmed).map(|s| (s, s.invites - confirmed))
}

/// Whether a chat message asks for one's invite progress: `邀请`, `/invite` (with or without
/// the bot's name, which the bridges strip), case-insensitive.
pub fn is_command(text: &str) -> bool {
    let t = text.trim();
    t == "邀请" || t == "我的邀请" || t.eq_ignore_ascii_case("/invite")
}

/// Whether `s` has the shape of a personal invite code (checked before any lookup).
pub fn is_code(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'9'))
}

/// A personal link: the live code's URL with the member's reference.
pub fn personal_link(public_base: &str, slug: &str, code: &str) -> String {
    format!("{}/l/{slug}?r={code}", public_base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> CampaignRaw {
        CampaignRaw {
            name: "Spring".into(),
            group_ids: vec![2, 1, 2],
            stages: vec![
                Stage { invites: 10, points: 50, tag: Some("ambassador".into()) },
                Stage { invites: 3, points: 10, tag: None },
            ],
            ..CampaignRaw::default()
        }
    }

    #[test]
    fn a_campaign_is_checked_and_its_stages_sorted() {
        let c = CampaignSpec::try_from(raw()).unwrap();
        assert_eq!(c.group_ids, vec![1, 2]);
        assert_eq!(c.stages[0].invites, 3);
        assert_eq!((c.hold_days, c.rejoin_days, c.level2_points), (3, 30, 0));
        let mut r = raw();
        r.name = " ".into();
        r.stages.push(Stage { invites: 3, points: 1, tag: None });
        r.hold_days = Some(61);
        let fe = CampaignSpec::try_from(r).unwrap_err();
        for f in ["name", "stages", "hold_days"] {
            assert!(fe.has(f), "{f}");
        }
    }

    #[test]
    fn stages_reached_and_next() {
        let c = CampaignSpec::try_from(raw()).unwrap();
        assert_eq!(reached(&c.stages, 4).count(), 1);
        assert_eq!(next_stage(&c.stages, 4).map(|(s, n)| (s.invites, n)), Some((10, 6)));
        assert!(next_stage(&c.stages, 10).is_none());
    }

    #[test]
    fn commands_and_codes() {
        assert!(is_command(" 邀请 ") && is_command("/INVITE") && !is_command("邀请 朋友"));
        assert!(is_code("abcdefgh23") && !is_code("abcdefgh01") && !is_code("ABCDEFGH23") && !is_code("abc"));
    }
}
