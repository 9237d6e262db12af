//! Check-in rules, free of I/O: which message is a check-in, which local day it belongs to,
//! streak arithmetic (with make-ups), bonuses, and the reply text.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreakBonus {
    pub day: i32,
    pub points: i32,
}

/// A group's check-in rules (defaults match the database defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub enabled: bool,
    pub keywords: Vec<String>,
    pub points: i32,
    pub streak_bonuses: Vec<StreakBonus>,
    pub timezone: chrono_tz::Tz,
    pub day_start_hour: i32,
    pub makeup_enabled: bool,
    pub makeup_keyword: String,
    pub makeup_cost: i32,
    pub makeup_days_back: i32,
    pub makeup_per_month: i32,
    pub reply_lang: crate::i18n::Lang,
    pub reply_zh: String,
    pub reply_en: String,
    /// The "day N" poster sent with each new check-in's reply, if the group has one
    /// (`domain::checkin_poster`; set on its own, not with the rest of the rules).
    pub poster: Option<super::checkin_poster::CheckinPoster>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            enabled: true,
            keywords: vec!["签到".into(), "打卡".into(), "/checkin".into()],
            points: 1,
            streak_bonuses: vec![StreakBonus { day: 7, points: 5 }, StreakBonus { day: 30, points: 20 }],
            timezone: chrono_tz::Asia::Shanghai,
            day_start_hour: 0,
            makeup_enabled: true,
            makeup_keyword: "补签".into(),
            makeup_cost: 5,
            makeup_days_back: 3,
            makeup_per_month: 2,
            reply_lang: crate::i18n::Lang::ZhCn,
            reply_zh: "{name} 签到成功！连续 {streak} 天，累计 {total_days} 天，+{points} 积分，余额 {balance}。今日第 {rank_today} 名。".into(),
            reply_en: "{name} checked in! Streak {streak} days, {total_days} days in all, +{points} points, balance {balance}. #{rank_today} today.".into(),
            poster: None,
        }
    }
}

/// What a message asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A check-in, with what the member wrote after the keyword, if anything.
    CheckIn(Option<Note>),
    MakeUp,
    None,
}

/// What a member wrote after the check-in keyword (`打卡 今天跑了5公里 加油` → `今天跑了5公里 加油`),
/// at most [`Note::MAX_CHARS`] characters, and the first number with a unit in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub amount: Option<Amount>,
}

impl Note {
    pub const MAX_CHARS: usize = 500;

    /// The note of `text` (already without the keyword): `None` when nothing but separators is
    /// left.
    pub fn of(text: &str) -> Option<Note> {
        let t = text.trim_start_matches(is_separator).trim_end();
        if t.is_empty() {
            return None;
        }
        let text: String = t.chars().take(Note::MAX_CHARS).collect();
        let amount = Amount::find(&text);
        Some(Note { text, amount })
    }
}

/// A number with a unit found in a note: `5km`, `5公里`, `3.5 km`, `30分钟`, `1小时`, `20页`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount {
    /// A decimal as text, as the database's `numeric` takes it: no leading zeros, at most
    /// three digits after the point and no trailing zeros there (`3.5`, `30`), below 10⁹.
    pub value: String,
    pub unit: Unit,
}

/// The units a note's amount may have (stored as [`Unit::as_str`]); their spellings are in
/// `UNIT_SPELLINGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Km,
    M,
    H,
    Min,
    Page,
    Step,
    Rep,
    Kg,
    Kcal,
}

/// How a unit may be written after a number. Latin spellings match case-insensitively and only
/// when no Latin letter follows (`5 monkeys` has no unit); the longest spelling that matches
/// wins (`min` over `m`, `千米` over `米`).
const UNIT_SPELLINGS: &[(&str, Unit)] = &[
    ("kilometres", Unit::Km),
    ("kilometers", Unit::Km),
    ("kilometre", Unit::Km),
    ("kilometer", Unit::Km),
    ("公里", Unit::Km),
    ("千米", Unit::Km),
    ("kms", Unit::Km),
    ("km", Unit::Km),
    ("metres", Unit::M),
    ("meters", Unit::M),
    ("metre", Unit::M),
    ("meter", Unit::M),
    ("米", Unit::M),
    ("m", Unit::M),
    ("个小时", Unit::H),
    ("小时", Unit::H),
    ("钟头", Unit::H),
    ("hours", Unit::H),
    ("hour", Unit::H),
    ("hrs", Unit::H),
    ("hr", Unit::H),
    ("h", Unit::H),
    ("minutes", Unit::Min),
    ("minute", Unit::Min),
    ("分钟", Unit::Min),
    ("mins", Unit::Min),
    ("min", Unit::Min),
    ("pages", Unit::Page),
    ("page", Unit::Page),
    ("页", Unit::Page),
    ("steps", Unit::Step),
    ("step", Unit::Step),
    ("步", Unit::Step),
    ("times", Unit::Rep),
    ("reps", Unit::Rep),
    ("rep", Unit::Rep),
    ("次", Unit::Rep),
    ("公斤", Unit::Kg),
    ("千克", Unit::Kg),
    ("kgs", Unit::Kg),
    ("kg", Unit::Kg),
    ("kcal", Unit::Kcal),
    ("千卡", Unit::Kcal),
    ("大卡", Unit::Kcal),
];

impl Unit {
    pub const ALL: [Unit; 9] =
        [Unit::Km, Unit::M, Unit::H, Unit::Min, Unit::Page, Unit::Step, Unit::Rep, Unit::Kg, Unit::Kcal];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Km => "km",
            Unit::M => "m",
            Unit::H => "h",
            Unit::Min => "min",
            Unit::Page => "page",
            Unit::Step => "step",
            Unit::Rep => "rep",
            Unit::Kg => "kg",
            Unit::Kcal => "kcal",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == s)
    }

    /// The unit spelled at the start of `s`.
    fn at_start(s: &str) -> Option<Unit> {
        let mut best: Option<(Unit, usize)> = None;
        for (spelling, unit) in UNIT_SPELLINGS {
            let n = spelling.len();
            if s.len() < n || !s.is_char_boundary(n) || !s[..n].eq_ignore_ascii_case(spelling) {
                continue;
            }
            if spelling.is_ascii() && s[n..].chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                continue;
            }
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((*unit, n));
            }
        }
        best.map(|b| b.0)
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Amount {
    /// The first number in `text` that a unit follows (spaces between allowed). Ordinals
    /// (`第3页`) and numbers glued to a Latin letter or a point before them are skipped;
    /// full-width digits count.
    pub fn find(text: &str) -> Option<Amount> {
        let t: String = text
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
                '．' => '.',
                c => c,
            })
            .collect();
        let b = t.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let int_end = i;
            let mut frac = "";
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                let f = i + 1;
                i = f;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                frac = &t[f..i];
            }
            let glued =
                t[..start].chars().next_back().is_some_and(|c| c.is_ascii_alphabetic() || c == '.' || c == '第');
            if glued {
                continue;
            }
            let Some(unit) = Unit::at_start(t[i..].trim_start_matches([' ', '\u{3000}'])) else { continue };
            let int = t[start..int_end].trim_start_matches('0');
            let frac = frac.trim_end_matches('0');
            if int.len() > 9 || frac.len() > 3 {
                continue;
            }
            let int = if int.is_empty() { "0" } else { int };
            let value = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            return Some(Amount { value, unit });
        }
        None
    }
}

/// Whitespace and the punctuation that may separate a check-in keyword from its note
/// (`签到！第3天`, `打卡，5km`, `/checkin - 30 min`). Brackets and quotes are not: they belong
/// to the note.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '!' | '！'
                | ','
                | '，'
                | '.'
                | '。'
                | ':'
                | '：'
                | ';'
                | '；'
                | '、'
                | '~'
                | '～'
                | '-'
                | '—'
                | '–'
                | '…'
                | '·'
        )
}

/// `text` after `keyword` when it begins with it (case-insensitive for Latin letters) and the
/// keyword stands alone: the text ends there, or goes on after a character that is not a letter
/// or digit (whitespace, punctuation, an emoji). `签到了` and `签到3` do not begin with `签到`
/// in this sense.
fn after_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let k = keyword.trim();
    let n = k.len();
    if k.is_empty() || text.len() < n || !text.is_char_boundary(n) || !text[..n].eq_ignore_ascii_case(k) {
        return None;
    }
    let rest = &text[n..];
    match rest.chars().next() {
        Some(c) if c.is_alphanumeric() => None,
        _ => Some(rest),
    }
}

impl Rules {
    /// What `text` (bot mentions removed, CQ codes unescaped) asks for: a check-in when it
    /// begins with a keyword that stands alone, the rest being its note ([`Note::of`]); a
    /// make-up when it is the make-up keyword exactly. A keyword inside or glued to a sentence
    /// (`我忘了签到`, `签到了吗`) asks for nothing. `force_checkin` (the generic bridge's
    /// `checkin` events) makes any text a check-in, with the text after a keyword, or else the
    /// whole text, as its note.
    pub fn intent(&self, text: &str, force_checkin: bool) -> Intent {
        if !self.enabled {
            return Intent::None;
        }
        let t = text.trim();
        let keyword = self
            .keywords
            .iter()
            .filter_map(|k| after_keyword(t, k).map(|rest| (k.trim().len(), rest)))
            .max_by_key(|m| m.0);
        if let Some((_, rest)) = keyword {
            return Intent::CheckIn(Note::of(rest));
        }
        if force_checkin {
            return Intent::CheckIn(Note::of(t));
        }
        if self.makeup_enabled
            && !self.makeup_keyword.trim().is_empty()
            && t.eq_ignore_ascii_case(self.makeup_keyword.trim())
        {
            Intent::MakeUp
        } else {
            Intent::None
        }
    }

    /// The bonus a check-in earns on top of [`Rules::points`] when it makes the member's streak
    /// `streak` days long: the streak-bonus table's points for exactly that day, else 0.
    pub fn bonus_for(&self, streak: i32) -> i32 {
        self.streak_bonuses.iter().filter(|b| b.day == streak).map(|b| b.points).sum()
    }

    /// [`Rules::bonus_for`] of each streak from 1 day up to the longest in the table (index 0:
    /// a streak of 1 day). This is how the check-in statement takes the rule: a lookup by the
    /// streak it reaches, nothing beyond the table's end.
    pub fn bonus_by_streak(&self) -> Vec<i32> {
        let longest = self.streak_bonuses.iter().map(|b| b.day).max().unwrap_or(0);
        (1..=longest).map(|s| self.bonus_for(s)).collect()
    }

    /// The reply to a check-in: the group's template in its reply language for a new one, the
    /// "already checked in" text for a second one the same day. `name` is the member's name,
    /// already escaped for the platform.
    pub fn checkin_reply(&self, name: &str, o: &Outcome) -> String {
        let tr = crate::i18n::Tr(self.reply_lang);
        if !o.new {
            return render(tr.t("checkin.already"), &[("name", name.to_string()), ("streak", o.streak.to_string())]);
        }
        let template = if self.reply_lang == crate::i18n::Lang::En { &self.reply_en } else { &self.reply_zh };
        render(
            template,
            &[
                ("name", name.to_string()),
                ("streak", o.streak.to_string()),
                ("total_days", o.total_days.to_string()),
                ("points", o.points.to_string()),
                ("balance", o.balance.to_string()),
                ("rank_today", o.rank_today.to_string()),
            ],
        )
    }

    /// The local day an instant belongs to: the group's time zone, with days starting at
    /// `day_start_hour`.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        (at.with_timezone(&self.timezone) - Duration::hours(self.day_start_hour as i64)).date_naive()
    }

    /// The day a make-up on `today` fills: the latest missed day within `makeup_days_back`,
    /// provided the member has checked in at some point before it (nothing to make up for a
    /// newcomer). `days` are the member's check-in days in this group.
    pub fn makeup_day(&self, today: NaiveDate, days: &[NaiveDate]) -> Option<NaiveDate> {
        let first = days.iter().min()?;
        (1..=self.makeup_days_back as i64).map(|n| today - Duration::days(n)).find(|d| d > first && !days.contains(d))
    }
}

/// Streaks of a sorted, distinct list of days: each day's count of consecutive days ending there.
pub fn streaks(days: &[NaiveDate]) -> Vec<i32> {
    let mut out = Vec::with_capacity(days.len());
    for (i, d) in days.iter().enumerate() {
        let s = if i > 0 && days[i - 1] + Duration::days(1) == *d { out[i - 1] + 1 } else { 1 };
        out.push(s);
    }
    out
}

/// What a check-in statement found, from which the reply is written ([`Rules::checkin_reply`]):
/// whether this was the member's first check-in of the day in the group, the streak it makes
/// (or made, for a second one), and for a first one the member's days in all, the points it
/// earned, the balance after them and its rank in the group's day (0 for a second one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub new: bool,
    pub streak: i32,
    pub total_days: i64,
    pub points: i64,
    pub balance: i64,
    pub rank_today: i64,
}

/// Fills `{name}`-style placeholders in one pass: a value is never searched for placeholders
/// itself (a member named `{balance}` stays so); unknown ones stay as they are.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let filled = after.find('}').and_then(|close| {
            let key = &after[..close];
            vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (v, close))
        });
        match filled {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn note(text: &str, amount: Option<(&str, Unit)>) -> Intent {
        Intent::CheckIn(Some(Note {
            text: text.into(),
            amount: amount.map(|(v, unit)| Amount { value: v.into(), unit }),
        }))
    }

    #[test]
    fn keywords_match_alone_or_followed_by_a_separator() {
        let r = Rules::default();
        assert_eq!(r.intent(" 签到 ", false), Intent::CheckIn(None));
        assert_eq!(r.intent("/CHECKIN", false), Intent::CheckIn(None));
        assert_eq!(r.intent("签到！", false), Intent::CheckIn(None), "punctuation alone is no note");
        assert_eq!(r.intent("我要签到", false), Intent::None);
        assert_eq!(r.intent("@42 签到", false), Intent::None, "a mention of someone else is not a check-in");
        assert_eq!(r.intent("补签", false), Intent::MakeUp);
        assert_eq!(r.intent("anything", true), note("anything", None));
        assert_eq!(r.intent("", true), Intent::CheckIn(None));
        let off = Rules { enabled: false, ..Rules::default() };
        assert_eq!(off.intent("签到", false), Intent::None);
    }

    #[test]
    fn a_keyword_then_a_separator_then_text_is_a_checkin_with_a_note() {
        let r = Rules::default();
        assert_eq!(r.intent("打卡 今天跑了5公里 加油", false), note("今天跑了5公里 加油", Some(("5", Unit::Km))));
        assert_eq!(r.intent("签到！第3天", false), note("第3天", None));
        assert_eq!(r.intent("打卡 [第3天]", false), note("[第3天]", None), "brackets belong to the note");
        assert_eq!(r.intent("签到，读了20页", false), note("读了20页", Some(("20", Unit::Page))));
        assert_eq!(r.intent("/checkin 3.5 km", false), note("3.5 km", Some(("3.5", Unit::Km))));
        assert_eq!(r.intent("打卡💪30分钟", false), note("💪30分钟", Some(("30", Unit::Min))));
        assert_eq!(r.intent("签到\n冥想1小时", false), note("冥想1小时", Some(("1", Unit::H))));
        assert_eq!(r.intent("checkin 5km", true), note("checkin 5km", Some(("5", Unit::Km))), "forced: all of it");
        assert_eq!(r.intent("签到 5km", true), note("5km", Some(("5", Unit::Km))), "forced: after a keyword");
        let long = format!("签到 {}", "长".repeat(600));
        let Intent::CheckIn(Some(n)) = r.intent(&long, false) else { panic!() };
        assert_eq!(n.text.chars().count(), Note::MAX_CHARS);
    }

    #[test]
    fn a_keyword_inside_or_glued_to_a_sentence_is_not_a_checkin() {
        let r = Rules::default();
        for text in ["我忘了签到", "签到了吗", "签到了", "打卡第3天", "签到3", "/checking", "/checkin2", "补签 昨天"]
        {
            assert_eq!(r.intent(text, false), Intent::None, "{text}");
        }
    }

    #[test]
    fn amounts_are_a_number_and_a_known_unit() {
        let a = |t: &str| Amount::find(t).map(|a| (a.value, a.unit));
        assert_eq!(a("5km"), Some(("5".into(), Unit::Km)));
        assert_eq!(a("跑了 3.50 KM"), Some(("3.5".into(), Unit::Km)));
        assert_eq!(a("５公里"), Some(("5".into(), Unit::Km)), "full-width digits");
        assert_eq!(a("5 minutes"), Some(("5".into(), Unit::Min)));
        assert_eq!(a("5min"), Some(("5".into(), Unit::Min)), "min, not m");
        assert_eq!(a("3千米"), Some(("3".into(), Unit::Km)), "千米, not 米");
        assert_eq!(a("1个小时"), Some(("1".into(), Unit::H)));
        assert_eq!(a("第3天 跑了2km"), Some(("2".into(), Unit::Km)), "ordinals and units-less numbers skipped");
        assert_eq!(a("第3页"), None, "an ordinal is no amount");
        assert_eq!(a("007步"), Some(("7".into(), Unit::Step)));
        assert_eq!(a("0.5h"), Some(("0.5".into(), Unit::H)));
        assert_eq!(a("5 monkeys"), None);
        assert_eq!(a("v2km"), None, "glued to a letter");
        assert_eq!(a("1.2345km"), None, "more than three decimals");
        assert_eq!(a("12345678901km"), None, "too large");
        assert_eq!(a("今天很开心"), None);
        for u in Unit::ALL {
            assert_eq!(Unit::parse(u.as_str()), Some(u));
        }
    }

    #[test]
    fn the_streak_bonus_is_one_rule_and_its_table_a_lookup_by_streak() {
        let r = Rules::default();
        assert_eq!((r.bonus_for(6), r.bonus_for(7), r.bonus_for(8), r.bonus_for(30)), (0, 5, 0, 20));
        let table = r.bonus_by_streak();
        assert_eq!(table.len(), 30);
        for s in 1..=40 {
            assert_eq!(table.get(s as usize - 1).copied().unwrap_or(0), r.bonus_for(s), "streak {s}");
        }
        assert!(Rules { streak_bonuses: vec![], ..Rules::default() }.bonus_by_streak().is_empty());
    }

    #[test]
    fn replies_are_the_template_for_a_first_checkin_and_already_for_a_second() {
        let r = Rules::default();
        let o = Outcome { new: true, streak: 3, total_days: 9, points: 6, balance: 40, rank_today: 2 };
        assert_eq!(r.checkin_reply("阿强", &o), "阿强 签到成功！连续 3 天，累计 9 天，+6 积分，余额 40。今日第 2 名。");
        let again = Outcome { new: false, streak: 3, total_days: 0, points: 0, balance: 0, rank_today: 0 };
        assert_eq!(r.checkin_reply("阿强", &again), "阿强，你今天已经签到过了（连续第 3 天）。");
        let en = Rules { reply_lang: crate::i18n::Lang::En, ..Rules::default() };
        assert!(en.checkin_reply("Ann", &o).starts_with("Ann checked in! Streak 3 days, 9 days in all"));
    }

    #[test]
    fn the_day_boundary_follows_the_group_zone_and_hour() {
        let r = Rules { day_start_hour: 4, ..Rules::default() };
        // 2026-11-23 19:30 UTC = 2026-11-24 03:30 in Shanghai: still the 23rd with a 04:00 boundary.
        assert_eq!(r.day_of("2026-11-23T19:30:00Z".parse().unwrap()), d("2026-11-23"));
        assert_eq!(r.day_of("2026-11-23T20:30:00Z".parse().unwrap()), d("2026-11-24"));
        assert_eq!(Rules::default().day_of("2026-11-23T16:30:00Z".parse().unwrap()), d("2026-11-24"));
    }

    #[test]
    fn streaks_count_consecutive_days_and_reset_after_a_gap() {
        let days = [d("2026-11-01"), d("2026-11-02"), d("2026-11-03"), d("2026-11-05"), d("2026-11-06")];
        assert_eq!(streaks(&days), vec![1, 2, 3, 1, 2]);
        let made_up =
            [d("2026-11-01"), d("2026-11-02"), d("2026-11-03"), d("2026-11-04"), d("2026-11-05"), d("2026-11-06")];
        assert_eq!(streaks(&made_up), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_makeup_fills_the_latest_missed_day_within_reach() {
        let r = Rules::default();
        let days = [d("2026-11-01"), d("2026-11-02"), d("2026-11-04")];
        assert_eq!(r.makeup_day(d("2026-11-04"), &days), Some(d("2026-11-03")));
        assert_eq!(r.makeup_day(d("2026-11-09"), &days), Some(d("2026-11-08")));
        assert_eq!(r.makeup_day(d("2026-11-02"), &[d("2026-11-02")]), None, "nothing before the first check-in");
    }

    #[test]
    fn replies_fill_placeholders() {
        let s = render(
            "{name}: {streak}/{balance}",
            &[("name", "阿强".into()), ("streak", "3".into()), ("balance", "12".into())],
        );
        assert_eq!(s, "阿强: 3/12");
        let s = render("{name} {balance} {x}", &[("name", "{balance}".into()), ("balance", "5".into())]);
        assert_eq!(s, "{balance} 5 {x}", "values are not filled in again; unknown placeholders stay");
    }
}
