//! The member's own page (`/m/{token}`), free of I/O: which chat message asks for it (`我的`,
//! `/me`), and the signed link that opens it without a login — who, until when, in which
//! language, and the member's page epoch, which an operator raises to revoke every link given
//! out so far.
//!
//! A token is `{member}.{epoch}.{expires}.{lang}.{mac}`: the first four in the clear, the last
//! the first 128 bits of HMAC-SHA256 over them with the installation's secret (base64url). It
//! cannot be guessed or altered, ends by itself, and dies when the epoch moves.

use crate::domain::signed;
use crate::i18n::Lang;

/// The purpose the links' mac is made for (`domain::signed`).
const PURPOSE: &str = "member_page";

/// How long a link given out by the bot opens the page.
pub const LINK_DAYS: i64 = 7;

/// The longest token a link can carry; a longer path segment is refused before anything else.
pub const MAX_TOKEN_LEN: usize = 80;

/// Entries of the ledger shown per page.
pub const LEDGER_PAGE: i64 = 20;

/// The furthest ledger page a link may ask for (a member with more entries sees the latest
/// 20 000).
pub const MAX_LEDGER_PAGE: i64 = 1000;

/// The words that ask for the page, whole (case-insensitive; Telegram's `/me@bot` too).
pub const COMMANDS: &[&str] = &["我的", "/me"];

/// Whether `text` (bot mentions removed) asks for the member's page.
pub fn is_command(text: &str) -> bool {
    let t = text.trim();
    // Telegram addresses commands in groups as `/me@SomeBot`.
    let t = match t.split_once('@') {
        Some((cmd, bot)) if cmd.starts_with('/') && !bot.is_empty() && !bot.contains(char::is_whitespace) => cmd,
        _ => t,
    };
    COMMANDS.iter().any(|c| t.eq_ignore_ascii_case(c))
}

/// What a token says: the member, their page epoch when it was made, when it ends (unix
/// seconds) and the page's language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub member_id: i64,
    pub epoch: i32,
    pub expires: i64,
    pub lang: Lang,
}

/// Why a token opens nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a token of ours, or altered.
    Invalid,
    /// Past its end.
    Expired,
}

impl Claims {
    /// The claims of a link made at `now` (unix seconds), valid for [`LINK_DAYS`].
    pub fn new(member_id: i64, epoch: i32, lang: Lang, now: i64) -> Claims {
        Claims { member_id, epoch, expires: now + LINK_DAYS * 86_400, lang }
    }

    /// The token for these claims, signed with `key`.
    pub fn sign(&self, key: &[u8]) -> String {
        let (m, e, x) = (self.member_id.to_string(), self.epoch.to_string(), self.expires.to_string());
        signed::seal(PURPOSE, key, &[&m, &e, &x, signed::lang_field(self.lang)])
    }

    /// The claims of `token` if `key` signed it and it has not ended at `now`. The length and
    /// alphabet are checked first; the signature is compared in constant time. The epoch is
    /// the caller's to compare with the member's current one.
    pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, Refused> {
        let fields = signed::open(PURPOSE, key, token, MAX_TOKEN_LEN).ok_or(Refused::Invalid)?;
        let [m, e, x, l] = fields.as_slice() else { return Err(Refused::Invalid) };
        let lang = signed::lang_of(l).ok_or(Refused::Invalid)?;
        let claims = Claims {
            member_id: m.parse().map_err(|_| Refused::Invalid)?,
            epoch: e.parse().map_err(|_| Refused::Invalid)?,
            expires: x.parse().map_err(|_| Refused::Invalid)?,
            lang,
        };
        if claims.expires <= now {
            return Err(Refused::Expired);
        }
        Ok(claims)
    }
}

/// A token's shape: at most [`MAX_TOKEN_LEN`] characters of digits, letters, `-`, `_`, `.`.
pub fn plausible(token: &str) -> bool {
    signed::plausible(token, MAX_TOKEN_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_the_whole_message() {
        for t in ["我的", " 我的 ", "/me", "/ME", "/me@shoal_bot"] {
            assert!(is_command(t), "{t}");
        }
        for t in ["我的积分呢", "/men", "me", "/me please", "我的 积分", "/me@", "/me@ bot"] {
            assert!(!is_command(t), "{t}");
        }
    }

    #[test]
    fn a_token_opens_only_unaltered_and_in_time() {
        let key = b"k".repeat(32);
        let c = Claims::new(42, 3, Lang::En, 1_000);
        let t = c.sign(&key);
        assert!(t.len() <= MAX_TOKEN_LEN, "{t}");
        assert_eq!(Claims::verify(&t, &key, 1_001), Ok(c.clone()));
        assert_eq!(Claims::verify(&t, &key, c.expires), Err(Refused::Expired));
        assert_eq!(Claims::verify(&t, b"other key", 1_001), Err(Refused::Invalid));
        // Another member, a later expiry, a longer token: all refused.
        for bad in [t.replacen("42.", "43.", 1), t.replacen(".3.", ".4.", 1), format!("{t}x"), format!("x{t}")] {
            assert_eq!(Claims::verify(&bad, &key, 1_001), Err(Refused::Invalid), "{bad}");
        }
        assert_eq!(Claims::verify(&"1".repeat(MAX_TOKEN_LEN + 1), &key, 0), Err(Refused::Invalid));
        assert_eq!(Claims::verify("1.2.3.z.<script>", &key, 0), Err(Refused::Invalid));
    }
}
