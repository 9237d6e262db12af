//! Codes in words: what the admin pages show instead of raw audit actions ("member.points_adjust"),
//! object references ("member #1"), JSON details, ledger references ("checkin:1") and HTTP status
//! codes — each translated, and linked to the object's page where it has one.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ctx::Layout;
use crate::i18n::lookup;

/// A text, linked where the thing has a page.
pub struct Linked {
    pub text: String,
    pub href: Option<String>,
}

/// The admin page of an object of `kind` with `id`.
fn page_of(kind: &str, id: &str) -> Option<String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match kind {
        "group" => Some(format!("/groups/{id}")),
        "live_code" => Some(format!("/live-codes/{id}")),
        "member" => Some(format!("/members/{id}")),
        "bridge" => Some(format!("/bridges/{id}")),
        "operator" => Some(format!("/settings/operators/{id}")),
        "token" => Some("/settings/tokens".to_string()),
        "broadcast" => Some(format!("/broadcasts/{id}")),
        _ => None,
    }
}

/// True for values nobody reads: content hashes and other long hex strings.
fn is_hash(key: &str, v: &str) -> bool {
    key.contains("sha") || key.contains("hash") || (v.len() >= 32 && v.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Layout {
    fn word(&self, key: &str) -> Option<&'static str> {
        lookup(self.tr.lang(), key)
    }

    /// An audit action in words ("调整积分"); unknown actions keep their code, marked as such.
    pub fn action_words(&self, action: &str) -> String {
        match self.word(&format!("audit.actions.{}", action.replace('.', "_"))) {
            Some(w) => w.to_string(),
            None => self.tr.f("audit.unknown_action", &[("code", &action)]),
        }
    }

    /// The object an audit row is about: "活码「春季活动」", linked to its page.
    pub fn audit_object(&self, kind: &str, id: &Option<String>, details: &Value) -> Linked {
        let kind_word = self.word(&format!("audit.objects.{kind}")).unwrap_or(self.tr.t("audit.objects.other"));
        let id = id.as_deref().unwrap_or("");
        let name = ["name", "display_name", "username", "title"]
            .iter()
            .find_map(|k| details.get(*k).and_then(Value::as_str))
            .filter(|s| !s.is_empty());
        let text = match (name, id.is_empty()) {
            (Some(n), _) => self.tr.f("audit.object_named", &[("kind", &kind_word), ("name", &n)]),
            (None, false) => self.tr.f("audit.object_numbered", &[("kind", &kind_word), ("id", &id)]),
            (None, true) => kind_word.to_string(),
        };
        Linked { text, href: page_of(kind, id) }
    }

    /// A kind of object in words ("活码"), for the filter.
    pub fn object_kind_words(&self, kind: &str) -> &'static str {
        self.word(&format!("audit.objects.{kind}")).unwrap_or(self.tr.t("audit.objects.other"))
    }

    /// An audit row's details as labelled values, without hashes and empty values.
    pub fn detail_pairs(&self, details: &Value) -> Vec<(String, String)> {
        let Some(map) = details.as_object() else { return Vec::new() };
        let mut out = Vec::new();
        for (k, v) in map {
            let shown = match v {
                Value::Null => continue,
                Value::Bool(b) => self.tr.t(if *b { "live_codes.yes" } else { "live_codes.no" }).to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) if s.is_empty() || is_hash(k, s) => continue,
                Value::String(s) => self.value_words(k, s),
                Value::Array(a) if a.is_empty() => continue,
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(|s| self.value_words(k, s)).unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(self.tr.t("audit.list_separator")),
                Value::Object(_) => continue,
            };
            let label =
                self.word(&format!("audit.fields.{k}")).map(str::to_string).unwrap_or_else(|| k.replace('_', " "));
            out.push((label, shown));
        }
        out
    }

    /// A stored value in words where it is a code (platform, status, role, mode) or a time.
    fn value_words(&self, key: &str, v: &str) -> String {
        if let Some(w) = self.word(&format!("audit.values.{key}.{v}")) {
            return w.to_string();
        }
        let prefix = match key {
            "platform" => Some("platform"),
            "status" => Some("status"),
            "mode" => Some("live_codes.modes"),
            "role" => Some("role"),
            _ => None,
        };
        if let Some(w) = prefix.and_then(|p| self.word(&format!("{p}.{v}"))) {
            return w.to_string();
        }
        if key == "role" {
            if let Some(w) = self.word(&format!("member_role.{v}")) {
                return w.to_string();
            }
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(v) {
            return self.time.at(at.with_timezone(&Utc));
        }
        v.chars().take(200).collect()
    }

    /// A ledger reference in words: a check-in, a make-up day, or the text an API client gave.
    pub fn ledger_ref(&self, reference: &str, member_id: &i64) -> Linked {
        if reference.is_empty() {
            return Linked { text: "–".into(), href: None };
        }
        if let Some(id) = reference.strip_prefix("checkin:").filter(|s| s.chars().all(|c| c.is_ascii_digit())) {
            return Linked {
                text: self.tr.f("points.refs.checkin", &[("id", &id)]),
                href: Some(format!("/members/{member_id}#checkins")),
            };
        }
        if let Some(day) = reference.strip_prefix("makeup:") {
            return Linked {
                text: self.tr.f("points.refs.makeup", &[("day", &day)]),
                href: Some(format!("/members/{member_id}#checkins")),
            };
        }
        Linked { text: reference.to_string(), href: None }
    }

    /// Why a bridge delivery was refused (or, 204, recorded without counting), in words, from
    /// its HTTP status.
    pub fn rejection_words(&self, status: &u16) -> &'static str {
        match status {
            401 => self.tr.t("bridges.refused.signature"),
            413 => self.tr.t("bridges.refused.too_large"),
            400 => self.tr.t("bridges.refused.malformed"),
            422 => self.tr.t("bridges.refused.shape"),
            // Not a refusal: recorded, counting for nothing (`web::hooks::deliver`).
            204 => self.tr.t("bridges.refused.out_of_time"),
            _ => self.tr.t("bridges.refused.other"),
        }
    }

    /// What became of a stored delivery, in words.
    pub fn delivery_words(&self, status: &i32) -> &'static str {
        match status {
            200 => self.tr.t("bridges.status_replied"),
            204 => self.tr.t("bridges.status_no_reply"),
            _ => self.tr.t("bridges.refused.other"),
        }
    }
}
