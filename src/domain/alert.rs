//! What an operator alert is about (`alerts.condition`, `alerts.subject_kind`).

use serde::{Deserialize, Serialize};

use super::text_enum;

/// A condition among live codes that an operator should know of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AlertKind {
    /// A target's group joins by QR image and the image expires within `alerts.expiring_hours`.
    ExpiringSoon,
    /// A target has used `alerts.nearly_full_percent` of its limit or more.
    NearlyFull,
    /// A live code whose next scan would go to the fallback.
    Exhausted,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ExpiringSoon => "expiring_soon",
            AlertKind::NearlyFull => "nearly_full",
            AlertKind::Exhausted => "exhausted",
        }
    }
}

text_enum!(AlertKind);

/// What an alert is raised on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AlertSubject {
    Target,
    LiveCode,
}

impl AlertSubject {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSubject::Target => "target",
            AlertSubject::LiveCode => "live_code",
        }
    }
}

text_enum!(AlertSubject);
