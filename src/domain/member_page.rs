//! The member's own page (`/m/{token}`), free of I/O: which chat message asks for it (`我的`,
//! `/me`), and the signed link that opens it without a login — who, until when, in which
//! language, and the member's page epoch, which an operator raises to revoke every link given
//! out so far.
//!
//! A token is `{member}.{epoch}.{expires}.{lang}.{mac}`: the first four in the clear, the last
//! the first 128 bits of HMAC-SHA256 over them with the installation's secret (base64url). It
//! cannot be guessed or altered, ends by itself, and dies when the epoch moves.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::i18n::Lang;

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

fn lang_code(l: Lang) -> char {
    match l {
        Lang::ZhCn => 'z',
        Lang::En => 'e',
    }
}

fn mac(key: &[u8], payload: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"member_page:");
    m.update(payload.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..16])
}

impl Claims {
    /// The claims of a link made at `now` (unix seconds), valid for [`LINK_DAYS`].
    pub fn new(member_id: i64, epoch: i32, lang: Lang, now: i64) -> Claims {
        Claims { member_id, epoch, expires: now + LINK_DAYS * 86_400, lang }
    }

    /// The token for these claims, signed with `key`.
    pub fn sign(&self, key: &[u8]) -> String {
        let payload = format!("{}.{}.{}.{}", self.member_id, self.epoch, self.expires, lang_code(self.lang));
        let sig = mac(key, &payload);
        format!("{payload}.{sig}")
    }

    /// The claims of `token` if `key` signed it and it has not ended at `now`. The length and
    /// alphabet are checked first; the signature is compared in constant time. The epoch is
    /// the caller's to compare with the member's current one.
    pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, Refused> {
        if !plausible(token) {
            return Err(Refused::Invalid);
        }
        let (payload, sig) = token.rsplit_once('.').ok_or(Refused::Invalid)?;
        if !crate::auth::secret_eq(mac(key, payload).as_bytes(), sig.as_bytes()) {
            return Err(Refused::Invalid);
        }
        let mut parts = payload.split('.');
        let (Some(m), Some(e), Some(x), Some(l), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Invalid);
        };
        let lang = match l {
            "z" => Lang::ZhCn,
            "e" => Lang::En,
            _ => return Err(Refused::Invalid),
        };
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
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
