//! The entry questionnaire (入群问卷), free of I/O: the questions a rule set asks, the answers an
//! applicant may give, and the signed link that opens the form without a login.
//!
//! A token is `{request}.{expires}.{lang}.{mac}`: the join request, when the link ends (unix
//! seconds: the request's expiry), the page's language, and the first 128 bits of HMAC-SHA256
//! over them with the installation's `questionnaire_key` (base64url). It is bound to one request:
//! it cannot be guessed, altered or used for another applicant, and it ends with the request.

use crate::domain::signed;
use crate::error::FieldErrors;
use crate::i18n::Lang;

/// The purpose the links' mac is made for (`domain::signed`).
const PURPOSE: &str = "questionnaire";

/// The most questions a rule set asks.
pub const MAX_QUESTIONS: usize = 10;
/// The longest question.
pub const MAX_QUESTION_CHARS: usize = 200;
/// The longest answer.
pub const MAX_ANSWER_CHARS: usize = 500;
/// The longest token a link carries; a longer path segment is refused before anything else.
pub const MAX_TOKEN_LEN: usize = 80;
/// The largest form body the page reads (ten answers of 500 Chinese characters, percent-encoded,
/// fit about 45 KiB); a larger one is refused before it is parsed.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The questions typed into the rule-set form or sent as JSON lines: one a line, trimmed, blank
/// lines dropped; at most [`MAX_QUESTIONS`] of at most [`MAX_QUESTION_CHARS`] characters.
pub fn parse_questions(input: &str, e: &mut FieldErrors) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in input.lines() {
        let q = line.trim();
        if q.is_empty() {
            continue;
        }
        if q.chars().count() > MAX_QUESTION_CHARS {
            e.add("questions", "auto2.error.question_too_long");
            break;
        }
        if q.contains('\0') {
            e.add("questions", "error.nul");
            break;
        }
        out.push(q.to_string());
    }
    if out.len() > MAX_QUESTIONS {
        e.add("questions", "auto2.error.too_many_questions");
    }
    out
}

/// The answers a submitted form holds for `questions` (fields `a0`, `a1`, …): each required,
/// trimmed, at most [`MAX_ANSWER_CHARS`] characters; errors on the field of each bad one. Fields
/// beyond the questions are ignored.
pub fn parse_answers(questions: &[String], fields: &[(String, String)]) -> Result<Vec<String>, FieldErrors> {
    let mut e = FieldErrors::new();
    let mut out = Vec::with_capacity(questions.len());
    for i in 0..questions.len().min(MAX_QUESTIONS) {
        let name = format!("a{i}");
        let value = fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or("");
        let a = value.trim();
        if a.is_empty() {
            e.add(&name, "auto2.error.answer_needed");
        } else if a.chars().count() > MAX_ANSWER_CHARS {
            e.add(&name, "auto2.error.answer_too_long");
        } else if a.contains('\0') {
            e.add(&name, "error.nul");
        }
        out.push(a.to_string());
    }
    if e.is_empty() {
        Ok(out)
    } else {
        Err(e)
    }
}

/// What a token says: the request, when the link ends, the page's language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub request_id: i64,
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
    pub fn sign(&self, key: &[u8]) -> String {
        let (r, x) = (self.request_id.to_string(), self.expires.to_string());
        signed::seal(PURPOSE, key, &[&r, &x, signed::lang_field(self.lang)])
    }

    /// The claims of `token` if `key` signed it and it has not ended at `now`; the shape first,
    /// then the signature in constant time.
    pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, Refused> {
        let fields = signed::open(PURPOSE, key, token, MAX_TOKEN_LEN).ok_or(Refused::Invalid)?;
        let [r, x, l] = fields.as_slice() else { return Err(Refused::Invalid) };
        let lang = signed::lang_of(l).ok_or(Refused::Invalid)?;
        let claims = Claims {
            request_id: r.parse().map_err(|_| Refused::Invalid)?,
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
    fn a_token_opens_only_its_request_unaltered_and_in_time() {
        let key = b"q".repeat(32);
        let c = Claims { request_id: 42, expires: 2_000, lang: Lang::ZhCn };
        let t = c.sign(&key);
        assert!(plausible(&t) && t.len() <= MAX_TOKEN_LEN, "{t}");
        assert_eq!(Claims::verify(&t, &key, 1_000), Ok(c));
        assert_eq!(Claims::verify(&t, &key, 2_000), Err(Refused::Expired));
        let other = t.replacen("42.", "43.", 1);
        assert_eq!(Claims::verify(&other, &key, 1_000), Err(Refused::Invalid));
        assert_eq!(Claims::verify(&t, &b"x".repeat(32), 1_000), Err(Refused::Invalid));
        assert_eq!(Claims::verify("../etc", &key, 1_000), Err(Refused::Invalid));
    }

    #[test]
    fn questions_and_answers_are_bounded() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_questions(" 从哪里知道我们？\n\n你的年级？ ", &mut e), vec!["从哪里知道我们？", "你的年级？"]);
        assert!(e.is_empty());
        let many = (0..11).map(|i| format!("q{i}")).collect::<Vec<_>>().join("\n");
        parse_questions(&many, &mut e);
        assert!(e.has("questions"));
        let qs = vec!["a".to_string(), "b".to_string()];
        let f = |a: &str, b: &str| vec![("a0".to_string(), a.to_string()), ("a1".to_string(), b.to_string())];
        assert_eq!(parse_answers(&qs, &f(" 朋友 ", "大二")).unwrap(), vec!["朋友", "大二"]);
        let e = parse_answers(&qs, &f("", &"长".repeat(501))).unwrap_err();
        assert!(e.has("a0") && e.has("a1"));
    }
}
