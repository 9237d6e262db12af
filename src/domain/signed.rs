//! Signed tokens for public links that open something without a login (a member's page, a
//! check-in poster, an entry questionnaire): `{field}.{field}….{mac}`, the fields in the clear
//! and the mac the first 128 bits of HMAC-SHA256 (base64url) over `{purpose}:{fields}` with the
//! installation's key, so a token of one purpose never opens another. What the fields mean is
//! each purpose's own.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::i18n::Lang;

fn mac(purpose: &str, key: &[u8], payload: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(purpose.as_bytes());
    m.update(b":");
    m.update(payload.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..16])
}

/// The token of `fields` (none holding a `.`) for `purpose`.
pub fn seal(purpose: &str, key: &[u8], fields: &[&str]) -> String {
    let payload = fields.join(".");
    let sig = mac(purpose, key, &payload);
    format!("{payload}.{sig}")
}

/// The fields of `token` if `key` sealed it for `purpose`: its length (at most `max_len`) and
/// alphabet are checked first, then the mac in constant time.
pub fn open<'t>(purpose: &str, key: &[u8], token: &'t str, max_len: usize) -> Option<Vec<&'t str>> {
    if !plausible(token, max_len) {
        return None;
    }
    let (payload, sig) = token.rsplit_once('.')?;
    if !crate::auth::secret_eq(mac(purpose, key, payload).as_bytes(), sig.as_bytes()) {
        return None;
    }
    Some(payload.split('.').collect())
}

/// A token's shape: 1 to `max_len` characters of digits, letters, `-`, `_`, `.`.
pub fn plausible(token: &str, max_len: usize) -> bool {
    !token.is_empty()
        && token.len() <= max_len
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A language as a token field.
pub fn lang_field(l: Lang) -> &'static str {
    match l {
        Lang::ZhCn => "z",
        Lang::En => "e",
    }
}

/// The language of a token field.
pub fn lang_of(field: &str) -> Option<Lang> {
    match field {
        "z" => Some(Lang::ZhCn),
        "e" => Some(Lang::En),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_for_its_purpose_key_and_unaltered() {
        let key = b"k".repeat(32);
        let t = seal("page", &key, &["42", "7", "z"]);
        assert_eq!(open("page", &key, &t, 80), Some(vec!["42", "7", "z"]));
        assert_eq!(open("poster", &key, &t, 80), None, "another purpose");
        assert_eq!(open("page", &b"x".repeat(32), &t, 80), None, "another key");
        assert_eq!(open("page", &key, &t.replacen("42", "43", 1), 80), None, "altered");
        assert_eq!(open("page", &key, &t, t.len() - 1), None, "too long");
        assert_eq!(open("page", &key, &format!("{t}/"), 80), None, "outside the alphabet");
    }
}
