//! How the admin UI shows a moment: every timestamp on every page goes through [`DisplayTz`], in
//! one display zone (the operator's preference, else the instance's `display_timezone`), and is
//! always labelled with that zone, so an operator never has to guess between UTC and Beijing time.

use chrono::{DateTime, Offset, Utc};
use chrono_tz::Tz;

use crate::domain::Zone;
use crate::i18n::{Lang, Tr};

/// Zones that Chinese operators call 北京时间 (all UTC+8 without daylight saving).
const BEIJING: [&str; 5] = ["Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "PRC"];

/// Time zones offered on the account page (any IANA name is accepted in config).
pub const CHOICES: [&str; 12] = [
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Taipei",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
    "UTC",
];

/// A moment however a template hands it over (`x`, `&x`, `&&x`: askama borrows arguments).
pub trait Moment {
    fn utc(&self) -> DateTime<Utc>;
}

impl Moment for DateTime<Utc> {
    fn utc(&self) -> DateTime<Utc> {
        *self
    }
}

impl<T: Moment + ?Sized> Moment for &T {
    fn utc(&self) -> DateTime<Utc> {
        (**self).utc()
    }
}

/// A moment that may be missing, however a template hands it over.
pub trait MaybeMoment {
    fn utc_opt(&self) -> Option<DateTime<Utc>>;
}

impl MaybeMoment for Option<DateTime<Utc>> {
    fn utc_opt(&self) -> Option<DateTime<Utc>> {
        *self
    }
}

impl<T: MaybeMoment + ?Sized> MaybeMoment for &T {
    fn utc_opt(&self) -> Option<DateTime<Utc>> {
        (**self).utc_opt()
    }
}

/// The display zone of one request, with the language its label is written in.
#[derive(Clone, Copy, Debug)]
pub struct DisplayTz {
    pub tz: Tz,
    pub lang: Lang,
}

impl DisplayTz {
    /// The operator's zone if they chose one, else the instance's (both parsed when read).
    pub fn pick(operator: Option<Zone>, instance: Zone, lang: Lang) -> DisplayTz {
        DisplayTz { tz: operator.unwrap_or(instance).tz(), lang }
    }

    pub fn name(&self) -> &'static str {
        self.tz.name()
    }

    /// "北京时间" / "Beijing time" for China's zone; otherwise the zone's name and its current
    /// offset, e.g. "Asia/Tokyo, UTC+9".
    pub fn label(&self) -> String {
        let tr = Tr(self.lang);
        if BEIJING.contains(&self.tz.name()) {
            return tr.t("settings.tz.beijing").to_string();
        }
        if self.tz == chrono_tz::UTC || self.tz.name() == "Etc/UTC" {
            return "UTC".to_string();
        }
        format!("{}, {}", self.tz.name(), self.offset_of(&Utc::now()))
    }

    /// "UTC+8", "UTC-4", "UTC+5:30" at the moment `at`.
    fn offset_of(&self, at: &DateTime<Utc>) -> String {
        let secs = at.with_timezone(&self.tz).offset().fix().local_minus_utc();
        let sign = if secs < 0 { '-' } else { '+' };
        let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
        if m == 0 {
            format!("UTC{sign}{h}")
        } else {
            format!("UTC{sign}{h}:{m:02}")
        }
    }

    fn fmt(&self, at: &DateTime<Utc>, pattern: &str) -> String {
        let label = if BEIJING.contains(&self.tz.name()) || self.tz == chrono_tz::UTC {
            self.label()
        } else {
            format!("{}, {}", self.tz.name(), self.offset_of(at))
        };
        format!("{} ({label})", at.with_timezone(&self.tz).format(pattern))
    }

    /// `2026-12-02 19:30 (北京时间)`.
    pub fn at<T: Moment>(&self, at: T) -> String {
        self.fmt(&at.utc(), "%Y-%m-%d %H:%M")
    }

    /// `2026-12-02 19:30:05 (北京时间)`.
    pub fn at_secs<T: Moment>(&self, at: T) -> String {
        self.fmt(&at.utc(), "%Y-%m-%d %H:%M:%S")
    }

    /// [`at`](Self::at), or "–" for none.
    pub fn opt<T: MaybeMoment>(&self, at: T) -> String {
        at.utc_opt().map(|a| self.at(a)).unwrap_or_else(|| "–".to_string())
    }

    /// [`at`](Self::at), or "" for none (for templates that show their own placeholder).
    pub fn opt_or_empty(&self, at: Option<DateTime<Utc>>) -> String {
        at.map(|a| self.at(a)).unwrap_or_default()
    }

    /// The local clock time only, `19:30:05`, for lists whose heading names the zone.
    pub fn clock<T: Moment>(&self, at: T) -> String {
        at.utc().with_timezone(&self.tz).format("%H:%M:%S").to_string()
    }

    /// `2026-12-02 19:30:05` in the display zone without a label, for CSV cells whose header
    /// names the zone.
    pub fn plain<T: Moment>(&self, at: T) -> String {
        at.utc().with_timezone(&self.tz).format("%Y-%m-%d %H:%M:%S").to_string()
    }

    /// Today's date in the display zone.
    pub fn today(&self) -> chrono::NaiveDate {
        Utc::now().with_timezone(&self.tz).date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_moment_is_shown_in_the_display_zone_with_its_label() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 11, 30, 5).unwrap();
        let z = |s: &str| Zone::parse(s).unwrap();
        let zh = DisplayTz::pick(None, z("Asia/Shanghai"), Lang::ZhCn);
        assert_eq!(zh.at(at), "2026-12-02 19:30 (北京时间)");
        assert_eq!(zh.at_secs(at), "2026-12-02 19:30:05 (北京时间)");
        let en = DisplayTz::pick(Some(z("Asia/Tokyo")), z("Asia/Shanghai"), Lang::En);
        assert_eq!(en.at(at), "2026-12-02 20:30 (Asia/Tokyo, UTC+9)");
        let utc = DisplayTz::pick(Some(z("UTC")), z("Asia/Shanghai"), Lang::En);
        assert_eq!(utc.at(at), "2026-12-02 11:30 (UTC)");
        let own = DisplayTz::pick(None, z("Europe/Berlin"), Lang::En);
        assert_eq!(own.name(), "Europe/Berlin", "without a zone of one's own, the instance's");
        assert_eq!(zh.opt(None::<DateTime<Utc>>), "–");
        let india = DisplayTz::pick(Some(z("Asia/Kolkata")), z("UTC"), Lang::En);
        assert_eq!(india.at(at), "2026-12-02 17:00 (Asia/Kolkata, UTC+5:30)");
    }
}
