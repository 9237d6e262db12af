//! UI strings in English and Simplified Chinese. Locale files live under `locales/<lang>/` as flat
//! TOML tables, one file per area; a test fails if a key exists in one language only or if code
//! or a template uses a key that exists in neither.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

/// A UI language, stored as its code (`operators.language`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum Lang {
    #[default]
    #[serde(rename = "en")]
    #[sqlx(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    #[sqlx(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        if s == "en" || s.starts_with("en-") {
            Some(Lang::En)
        } else if s == "zh" || s.starts_with("zh-") {
            Some(Lang::ZhCn)
        } else {
            None
        }
    }

    /// The best supported language in an `Accept-Language` header (q-values honoured).
    pub fn from_accept_language(headers: &HeaderMap) -> Option<Lang> {
        let value = headers.get(axum::http::header::ACCEPT_LANGUAGE)?.to_str().ok()?;
        let mut best: Option<(f32, Lang)> = None;
        for part in value.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("");
            let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map(|(_, l)| l)
    }
}

/// Every locale file, per language, in the same order.
pub const FILES: &[(&str, &str, &str)] = &[
    ("core", include_str!("../locales/en/core.toml"), include_str!("../locales/zh-CN/core.toml")),
    ("groups", include_str!("../locales/en/groups.toml"), include_str!("../locales/zh-CN/groups.toml")),
    ("members", include_str!("../locales/en/members.toml"), include_str!("../locales/zh-CN/members.toml")),
    ("settings", include_str!("../locales/en/settings.toml"), include_str!("../locales/zh-CN/settings.toml")),
    ("scan", include_str!("../locales/en/scan.toml"), include_str!("../locales/zh-CN/scan.toml")),
    ("checkins", include_str!("../locales/en/checkins.toml"), include_str!("../locales/zh-CN/checkins.toml")),
    ("live_codes", include_str!("../locales/en/live_codes.toml"), include_str!("../locales/zh-CN/live_codes.toml")),
    ("bridges", include_str!("../locales/en/bridges.toml"), include_str!("../locales/zh-CN/bridges.toml")),
    ("jobs", include_str!("../locales/en/jobs.toml"), include_str!("../locales/zh-CN/jobs.toml")),
    ("invites", include_str!("../locales/en/invites.toml"), include_str!("../locales/zh-CN/invites.toml")),
    ("ux", include_str!("../locales/en/ux.toml"), include_str!("../locales/zh-CN/ux.toml")),
    ("outbound", include_str!("../locales/en/outbound.toml"), include_str!("../locales/zh-CN/outbound.toml")),
    ("posters", include_str!("../locales/en/posters.toml"), include_str!("../locales/zh-CN/posters.toml")),
    ("me", include_str!("../locales/en/me.toml"), include_str!("../locales/zh-CN/me.toml")),
    ("landing", include_str!("../locales/en/landing.toml"), include_str!("../locales/zh-CN/landing.toml")),
    ("broadcasts", include_str!("../locales/en/broadcasts.toml"), include_str!("../locales/zh-CN/broadcasts.toml")),
    ("moderation", include_str!("../locales/en/moderation.toml"), include_str!("../locales/zh-CN/moderation.toml")),
    ("automation", include_str!("../locales/en/automation.toml"), include_str!("../locales/zh-CN/automation.toml")),
    ("inve2e", include_str!("../locales/en/inve2e.toml"), include_str!("../locales/zh-CN/inve2e.toml")),
    ("invlinks", include_str!("../locales/en/invlinks.toml"), include_str!("../locales/zh-CN/invlinks.toml")),
    ("auto2", include_str!("../locales/en/auto2.toml"), include_str!("../locales/zh-CN/auto2.toml")),
];

pub type Catalog = HashMap<String, String>;

fn flatten(prefix: &str, value: &toml_value::Value, out: &mut Catalog) {
    match value {
        toml_value::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        toml_value::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
    }
}

/// A tiny TOML value model: locale files hold only tables and strings.
mod toml_value {
    use std::collections::BTreeMap;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    pub enum Value {
        String(String),
        Table(BTreeMap<String, Value>),
    }
}

/// Parses one language's files into a flat catalog. Panics only on a malformed locale file,
/// which is compiled in and covered by tests.
pub fn load(lang: Lang) -> Catalog {
    let mut out = Catalog::new();
    for (name, en, zh) in FILES {
        let text = if lang == Lang::En { en } else { zh };
        let value: toml_value::Value =
            <figment::providers::Toml as figment::providers::Format>::from_str::<toml_value::Value>(text)
                .unwrap_or_else(|e| panic!("locale file {}/{name}.toml is invalid: {e}", lang.code()));
        flatten("", &value, &mut out);
    }
    out
}

static EN: LazyLock<Catalog> = LazyLock::new(|| load(Lang::En));
static ZH: LazyLock<Catalog> = LazyLock::new(|| load(Lang::ZhCn));

/// The string for `key` in `lang`; the key itself when missing (a test prevents that).
pub fn t(lang: Lang, key: &str) -> &'static str {
    let cat: &'static Catalog = match lang {
        Lang::En => &EN,
        Lang::ZhCn => &ZH,
    };
    match cat.get(key) {
        Some(s) => s.as_str(),
        None => {
            tracing::warn!(key, lang = lang.code(), "missing translation");
            // Leak-free fallback: the caller's key is not 'static, so answer a fixed marker.
            "??"
        }
    }
}

/// The string for `key` in `lang`, or None when the catalog has no such key (for keys built
/// from data that may have no translation yet, such as an audit action).
pub fn lookup(lang: Lang, key: &str) -> Option<&'static str> {
    let cat: &'static Catalog = match lang {
        Lang::En => &EN,
        Lang::ZhCn => &ZH,
    };
    cat.get(key).map(String::as_str)
}

/// The translator handed to templates: `{{ tr.t("nav.groups") }}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tr(pub Lang);

impl Tr {
    pub fn t(&self, key: &str) -> &'static str {
        t(self.0, key)
    }
    /// `t` with `{name}` placeholders filled from `args`.
    pub fn f(&self, key: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut s = self.t(key).to_string();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), &value.to_string());
        }
        s
    }
    /// The string for the key `prefix.key`, for keys built from data (`platform.qq`).
    pub fn tk(&self, prefix: &str, key: impl AsRef<str>) -> &'static str {
        t(self.0, &format!("{prefix}.{}", key.as_ref()))
    }
    pub fn lang(&self) -> Lang {
        self.0
    }
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
    /// The colon after a label: full-width in Chinese.
    pub fn colon(&self) -> &'static str {
        match self.0 {
            Lang::En => ": ",
            Lang::ZhCn => "：",
        }
    }
    pub fn is_zh(&self) -> bool {
        self.0 == Lang::ZhCn
    }
}
