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
        }
    }
}

/// What a message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    CheckIn,
    MakeUp,
    None,
}

impl Rules {
    /// Exact match of the trimmed text (bot mentions already removed), case-insensitive for
    /// Latin letters.
    pub fn intent(&self, text: &str, force_checkin: bool) -> Intent {
        if !self.enabled {
            return Intent::None;
        }
        if force_checkin {
            return Intent::CheckIn;
        }
        let t = text.trim();
        if self.keywords.iter().any(|k| k.trim().eq_ignore_ascii_case(t)) {
            Intent::CheckIn
        } else if self.makeup_enabled
            && !self.makeup_keyword.trim().is_empty()
            && t.eq_ignore_ascii_case(self.makeup_keyword.trim())
        {
            Intent::MakeUp
        } else {
            Intent::None
        }
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

/// Fills `{name}`-style placeholders.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn keywords_match_exactly_after_trimming() {
        let r = Rules::default();
        assert_eq!(r.intent(" 签到 ", false), Intent::CheckIn);
        assert_eq!(r.intent("/CHECKIN", false), Intent::CheckIn);
        assert_eq!(r.intent("我要签到", false), Intent::None);
        assert_eq!(r.intent("@42 签到", false), Intent::None, "a mention of someone else is not a check-in");
        assert_eq!(r.intent("补签", false), Intent::MakeUp);
        assert_eq!(r.intent("anything", true), Intent::CheckIn);
        let off = Rules { enabled: false, ..Rules::default() };
        assert_eq!(off.intent("签到", false), Intent::None);
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
    }
}
