//! "Day N" check-in posters, free of I/O: a group's setting (which poster template, which line
//! of text) and the signed public address of one check-in's poster, `/c/{token}`, which
//! carries everything the poster shows — group, member, day, streak, days in all — so that the
//! check-in statement stays one statement: the poster is an extra action computed from its
//! outcome, and drawn only when the platform fetches it.
//!
//! A token is `{group}.{yyyymmdd}.{streak}.{total}.{user}.{mac}`: the user's platform id in
//! base64url, the mac the first 128 bits of HMAC-SHA256 (the member page's key, another
//! domain) over the rest.

use base64::Engine;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::signed;

/// The purpose the tokens' mac is made for (`domain::signed`).
const PURPOSE: &str = "checkin_poster";

/// A group's check-in poster: drawn from `template_id`, with `text` as its `{campaign}` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinPoster {
    pub template_id: i64,
    pub text: String,
}

/// The longest line of text a group may set.
pub const MAX_TEXT_CHARS: usize = 60;

/// The longest token; a longer one is refused before anything else.
pub const MAX_TOKEN_LEN: usize = 240;

/// One check-in's poster, as its token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosterClaims {
    pub group_id: i64,
    pub day: NaiveDate,
    pub streak: i32,
    pub total_days: i64,
    /// The member's id on the group's platform.
    pub user_id: String,
}

impl PosterClaims {
    pub fn sign(&self, key: &[u8]) -> String {
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.user_id.as_bytes());
        let (g, d) = (self.group_id.to_string(), self.day.format("%Y%m%d").to_string());
        let (st, t) = (self.streak.to_string(), self.total_days.to_string());
        signed::seal(PURPOSE, key, &[&g, &d, &st, &t, &user])
    }

    /// The claims of a token `key` signed (length and alphabet first, the mac in constant time).
    pub fn verify(token: &str, key: &[u8]) -> Option<PosterClaims> {
        let fields = signed::open(PURPOSE, key, token, MAX_TOKEN_LEN)?;
        let [g, d, s, t, u] = fields.as_slice() else { return None };
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(u).ok()?;
        Some(PosterClaims {
            group_id: g.parse().ok()?,
            day: NaiveDate::parse_from_str(d, "%Y%m%d").ok()?,
            streak: s.parse().ok()?,
            total_days: t.parse().ok()?,
            user_id: String::from_utf8(user).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poster_token_carries_its_check_in_and_cannot_be_altered() {
        let key = b"k".repeat(32);
        let c = PosterClaims {
            group_id: 7,
            day: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            streak: 27,
            total_days: 30,
            user_id: "123456789".into(),
        };
        let t = c.sign(&key);
        assert!(t.len() <= MAX_TOKEN_LEN);
        assert_eq!(PosterClaims::verify(&t, &key), Some(c));
        assert_eq!(PosterClaims::verify(&t.replacen(".27.", ".99.", 1), &key), None);
        assert_eq!(PosterClaims::verify(&t, b"other"), None);
        assert_eq!(PosterClaims::verify(&"a".repeat(MAX_TOKEN_LEN + 1), &key), None);
    }
}
