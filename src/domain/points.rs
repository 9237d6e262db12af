//! The points ledger's vocabulary, free of I/O: the kinds of entry, the idempotency keys that
//! make each award happen once, and the rules of a manual adjustment (the same for the admin
//! page and the API).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{optional_text, text_enum};
use crate::error::FieldErrors;

/// What a ledger entry is for (`points_ledger.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LedgerKind {
    /// Points for a check-in.
    Checkin,
    /// The bonus for reaching a streak length.
    StreakBonus,
    /// The cost of a make-up check-in.
    Makeup,
    /// An operator's correction, with a reason.
    Adjustment,
    Invite,
    Redemption,
    Refund,
    Expiry,
    /// An award or deduction by an integration through the API.
    Api,
    /// A deleted member's remaining balance, taken back when they were anonymised.
    Forfeit,
}

impl LedgerKind {
    pub const ALL: [LedgerKind; 10] = [
        LedgerKind::Checkin,
        LedgerKind::StreakBonus,
        LedgerKind::Makeup,
        LedgerKind::Adjustment,
        LedgerKind::Invite,
        LedgerKind::Redemption,
        LedgerKind::Refund,
        LedgerKind::Expiry,
        LedgerKind::Api,
        LedgerKind::Forfeit,
    ];
    /// The kinds a caller may choose for an adjustment (the API's `kind`).
    pub const ADJUSTABLE: &'static [&'static str] = &["api", "adjustment"];

    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Checkin => "checkin",
            LedgerKind::StreakBonus => "streak_bonus",
            LedgerKind::Makeup => "makeup",
            LedgerKind::Adjustment => "adjustment",
            LedgerKind::Invite => "invite",
            LedgerKind::Redemption => "redemption",
            LedgerKind::Refund => "refund",
            LedgerKind::Expiry => "expiry",
            LedgerKind::Api => "api",
            LedgerKind::Forfeit => "forfeit",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        LedgerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

text_enum!(LedgerKind);

/// The key that makes a ledger entry happen at most once (`points_ledger.idempotency_key`,
/// unique). Built only by the constructors below, one per kind of event, so that two paths
/// awarding the same thing build the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The points for a member's check-in in a group on a local day. The one-statement check-in
    /// (`bridges::checkin_result!`) builds the same text in SQL:
    /// `kind || ':' || member || ':' || group || ':' || day`.
    pub fn checkin(member: i64, group: i64, day: NaiveDate) -> IdempotencyKey {
        Self::daily(LedgerKind::Checkin, member, group, day)
    }

    /// The streak bonus of that check-in.
    pub fn streak_bonus(member: i64, group: i64, day: NaiveDate) -> IdempotencyKey {
        Self::daily(LedgerKind::StreakBonus, member, group, day)
    }

    /// The cost of making up `day` in a group.
    pub fn makeup(member: i64, group: i64, day: NaiveDate) -> IdempotencyKey {
        Self::daily(LedgerKind::Makeup, member, group, day)
    }

    fn daily(kind: LedgerKind, member: i64, group: i64, day: NaiveDate) -> IdempotencyKey {
        IdempotencyKey(format!("{kind}:{member}:{group}:{}", day.format("%Y-%m-%d")))
    }

    /// An operator's adjustment from the member page: the form carries a nonce made when it was
    /// rendered, so a double submit applies once.
    pub fn manual(member: i64, form_nonce: uuid::Uuid) -> IdempotencyKey {
        IdempotencyKey(format!("adjustment:{member}:{form_nonce}"))
    }

    /// An API caller's own key (`Idempotency-Key`), kept apart per caller.
    pub fn api(caller: i64, key: &str) -> IdempotencyKey {
        IdempotencyKey(format!("api:{caller}:{key}"))
    }

    /// The balance taken back when a member is deleted (once per member).
    pub fn forfeit(member: i64) -> IdempotencyKey {
        IdempotencyKey(format!("forfeit:{member}"))
    }

    /// A campaign's reward to a member: level 1 for reaching a stage (`stage` = its invite
    /// count), level 2 for one confirmed invite of someone they invited (`stage` = the invitee's
    /// member id). `round` counts how often it was paid: a reward taken back by a reversal is
    /// paid again as the next round when the stage is reached again.
    pub fn invite_reward(campaign: i64, member: i64, level: i16, stage: i64, round: i32) -> IdempotencyKey {
        IdempotencyKey(format!("invite:{campaign}:{member}:l{level}:{stage}:{round}"))
    }

    /// The compensating entry that takes back reward row `reward` (once).
    pub fn invite_reversal(reward: i64) -> IdempotencyKey {
        IdempotencyKey(format!("invite_reversal:{reward}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest adjustment either way, from the member page and the API alike.
pub const MAX_ADJUSTMENT: i64 = 10_000_000;
/// The longest note (reason) of an adjustment.
pub const MAX_NOTE: usize = 500;
/// The longest reference of an adjustment.
pub const MAX_REFERENCE: usize = 200;
/// The longest key an API caller may give.
pub const MAX_CALLER_KEY: usize = 200;

/// A valid manual change of a balance, whichever entrance it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    pub delta: i64,
    /// `Adjustment` (an operator's correction) or `Api`.
    pub kind: LedgerKind,
    pub reference: String,
    pub note: String,
}

/// An adjustment as typed (form) or sent (JSON).
#[derive(Clone, Debug, Default)]
pub struct AdjustmentRaw {
    pub delta: String,
    /// Empty: `adjustment`.
    pub kind: String,
    pub reference: String,
    pub note: String,
}

impl AdjustmentRaw {
    /// Checks every field: a whole number other than 0 within [`MAX_ADJUSTMENT`] (`delta`,
    /// `points.error.delta`), a kind a caller may choose, a note of at most [`MAX_NOTE`]
    /// characters that an operator's correction must have (`note`, the reason), a reference of
    /// at most [`MAX_REFERENCE`].
    pub fn parse(&self) -> Result<Adjustment, FieldErrors> {
        let mut e = FieldErrors::new();
        let s = self.delta.trim();
        let delta = match s.strip_prefix('+').unwrap_or(s).parse::<i64>() {
            Ok(n) if n != 0 && n.unsigned_abs() <= MAX_ADJUSTMENT as u64 => n,
            _ => {
                e.add("delta", "points.error.delta");
                0
            }
        };
        let kind = match self.kind.trim() {
            "" | "adjustment" => LedgerKind::Adjustment,
            "api" => LedgerKind::Api,
            _ => {
                e.add_choice("kind", LedgerKind::ADJUSTABLE);
                LedgerKind::Adjustment
            }
        };
        let note = optional_text(&self.note, MAX_NOTE, "note", &mut e);
        if kind == LedgerKind::Adjustment && note.is_empty() {
            e.add("note", "error.required");
        }
        let reference = optional_text(&self.reference, MAX_REFERENCE, "reference", &mut e);
        if !e.is_empty() {
            return Err(e);
        }
        Ok(Adjustment { delta, kind, reference, note })
    }
}

impl Adjustment {
    /// What makes two requests with one key "the same": everything but the key.
    pub fn request_hash(&self, member: i64) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!([member, self.delta, self.kind.as_str(), self.reference, self.note]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(LedgerKind::parse("bonus"), None);
    }

    #[test]
    fn keys_are_built_the_way_the_checkin_statement_builds_them() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        assert_eq!(IdempotencyKey::checkin(5, 9, day).as_str(), "checkin:5:9:2026-03-07");
        assert_eq!(IdempotencyKey::streak_bonus(5, 9, day).as_str(), "streak_bonus:5:9:2026-03-07");
        assert_eq!(IdempotencyKey::makeup(5, 9, day).as_str(), "makeup:5:9:2026-03-07");
        let nonce = uuid::Uuid::nil();
        assert_eq!(IdempotencyKey::manual(5, nonce).as_str(), format!("adjustment:5:{nonce}"));
        assert_eq!(IdempotencyKey::api(3, "order-1").as_str(), "api:3:order-1");
        assert_ne!(IdempotencyKey::api(3, "k"), IdempotencyKey::api(4, "k"), "per caller");
    }

    #[test]
    fn adjustments_have_one_set_of_rules() {
        let raw = |delta: &str, kind: &str, note: &str| AdjustmentRaw {
            delta: delta.into(),
            kind: kind.into(),
            note: note.into(),
            ..AdjustmentRaw::default()
        };
        assert_eq!(raw(" +15 ", "", "gift").parse().unwrap().delta, 15);
        assert_eq!(raw("-3", "api", "").parse().unwrap().kind, LedgerKind::Api);
        assert_eq!(raw("10000000", "api", "").parse().unwrap().delta, MAX_ADJUSTMENT);
        for bad in ["0", "", "1.5", "x", "10000001", "-10000001", "99999999999"] {
            assert!(raw(bad, "api", "").parse().unwrap_err().has("delta"), "{bad:?}");
        }
        assert!(raw("5", "", "").parse().unwrap_err().has("note"), "a correction needs a reason");
        assert!(raw("5", "bonus", "x").parse().unwrap_err().has("kind"));
        assert!(raw("5", "api", &"x".repeat(MAX_NOTE + 1)).parse().unwrap_err().has("note"));
    }

    #[test]
    fn the_request_hash_covers_everything_but_the_key() {
        let a = Adjustment { delta: 5, kind: LedgerKind::Api, reference: "r".into(), note: "n".into() };
        assert_eq!(a.request_hash(1), a.clone().request_hash(1));
        assert_ne!(a.request_hash(1), a.request_hash(2));
        assert_ne!(a.request_hash(1), Adjustment { delta: 6, ..a.clone() }.request_hash(1));
    }
}
