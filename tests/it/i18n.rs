//! Every UI string exists in English and Simplified Chinese, and every key the code or a
//! template uses exists.

use std::collections::BTreeSet;
use std::path::Path;

use shoal::i18n::{load, Lang};

fn files(dir: &Path, ext: &str, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// Keys written literally: `t("a.b")`, `tk("a", …)` prefixes, and key-shaped string literals.
fn used_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("src"), "rs", &mut paths);
    files(&root.join("templates"), "html", &mut paths);
    let (mut keys, mut prefixes) = (BTreeSet::new(), BTreeSet::new());
    let key_like = |s: &str| {
        let (head, _) = s.split_once('.').unwrap_or(("", ""));
        [
            "nav",
            "lang",
            "role",
            "status",
            "platform",
            "list",
            "form",
            "login",
            "setup",
            "dashboard",
            "coming",
            "error",
            "groups",
            "members",
            "import",
            "settings",
            "operators",
            "tokens",
            "audit",
            "alerts",
            "scan",
            "live_codes",
            "bridges",
            "checkin",
            "checkin_rules",
            "checkins",
            "points",
            "activity",
            "posters",
        ]
        .contains(&head)
            && !s.ends_with(".html")
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices("tk(\"") {
            let rest = &text[i + 4..];
            prefixes.insert(rest[..rest.find('"').unwrap()].to_string());
        }
        for piece in text.split('"').skip(1).step_by(2) {
            if key_like(piece) && piece.contains('.') && !piece.ends_with('.') {
                keys.insert(piece.to_string());
            }
        }
    }
    (keys, prefixes)
}

#[test]
fn both_languages_have_exactly_the_same_keys_and_no_empty_strings() {
    let en = load(Lang::En);
    let zh = load(Lang::ZhCn);
    let en_keys: BTreeSet<_> = en.keys().collect();
    let zh_keys: BTreeSet<_> = zh.keys().collect();
    let only_en: Vec<_> = en_keys.difference(&zh_keys).collect();
    let only_zh: Vec<_> = zh_keys.difference(&en_keys).collect();
    assert!(only_en.is_empty() && only_zh.is_empty(), "only in en: {only_en:?}; only in zh-CN: {only_zh:?}");
    for (k, v) in en.iter().chain(zh.iter()) {
        assert!(!v.trim().is_empty(), "{k} is empty");
    }
    assert!(en.len() > 200, "catalog loaded ({} keys)", en.len());
}

#[test]
fn every_key_used_in_code_and_templates_exists() {
    let en = load(Lang::En);
    let (keys, prefixes) = used_keys();
    let missing: Vec<_> =
        keys.iter().filter(|k| !en.contains_key(*k) && !en.keys().any(|e| e.starts_with(&format!("{k}.")))).collect();
    assert!(missing.is_empty(), "keys used but not defined: {missing:?}");
    // Keys built from data: every value they can take.
    let mut dynamic: Vec<String> = Vec::new();
    dynamic.extend(shoal::domain::Platform::ALL.iter().map(|p| format!("platform.{}", p.as_str())));
    dynamic.extend(shoal::domain::group::GroupStatus::ALL.iter().map(|s| format!("status.{}", s.as_str())));
    dynamic.extend(shoal::auth::Role::ALL.iter().map(|r| format!("role.{}", r.as_str())));
    dynamic.extend(shoal::domain::member::ROLES.iter().map(|r| format!("member_role.{r}")));
    dynamic.extend(shoal::web::ctx::NAV.iter().map(|(_, _, k)| k.to_string()));
    dynamic.extend(["live_codes", "bridges", "points"].iter().map(|s| format!("coming.{s}")));
    for code in [400, 401, 403, 404, 408, 413, 422, 429, 500] {
        dynamic.push(format!("error.page.{code}.title"));
        dynamic.push(format!("error.page.{code}.message"));
    }
    for k in &dynamic {
        assert!(en.contains_key(k), "{k} missing");
        let prefix = k.split('.').next().unwrap();
        assert!(
            prefixes.contains(prefix) || ["nav", "coming", "error"].contains(&prefix),
            "{prefix} is not used with tk()"
        );
    }
}
