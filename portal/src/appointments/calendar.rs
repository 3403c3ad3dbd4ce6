//! The rules of a calendar, without the database: opening hours per weekday, slot length, the
//! booking window, and the days nobody works: Italian public holidays (computed, Easter Monday
//! included), the patron day of the office's comune, and the office's closures.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, Weekday};

use crate::domain::italian_time::{rome_date, rome_instant};

pub const WEEKDAYS: [&str; 7] = [
    "lunedì",
    "martedì",
    "mercoledì",
    "giovedì",
    "venerdì",
    "sabato",
    "domenica",
];

/// Opening ranges for one weekday, in minutes after midnight.
pub type DayHours = Vec<(u16, u16)>;

/// The week's opening hours, Monday first, as the administrator wrote them ("09:00-12:30, 14:30-16:30").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Week(pub [String; 7]);

impl Week {
    /// The ranges of each weekday, or the Italian message saying which day is wrong and why.
    pub fn parse(&self) -> Result<[DayHours; 7], String> {
        let mut days: [DayHours; 7] = Default::default();
        for (i, text) in self.0.iter().enumerate() {
            days[i] = parse_day(text).map_err(|e| format!("Orari di {}: {e}", WEEKDAYS[i]))?;
        }
        Ok(days)
    }
}

fn parse_minute(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once([':', '.'])?;
    let (h, m): (u16, u16) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn parse_day(text: &str) -> Result<DayHours, String> {
    let mut ranges: DayHours = Vec::new();
    for part in text
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((from, to)) = part.split_once('-') else {
            return Err(format!(
                "«{part}» non è una fascia oraria: scrivi per esempio 09:00-12:30"
            ));
        };
        let (Some(from), Some(to)) = (parse_minute(from), parse_minute(to)) else {
            return Err(format!(
                "«{part}» non è una fascia oraria: scrivi per esempio 09:00-12:30"
            ));
        };
        if from >= to {
            return Err(format!("nella fascia «{part}» l'inizio viene dopo la fine"));
        }
        if ranges.iter().any(|&(a, b)| from < b && a < to) {
            return Err(format!("la fascia «{part}» si sovrappone a un'altra"));
        }
        ranges.push((from, to));
    }
    ranges.sort_unstable();
    Ok(ranges)
}

/// A patron day as `MM-DD` (stored) from `gg/mm` (typed by the administrator); empty is none.
pub fn parse_patron_day(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = text.split_once(['/', '-', '.']).and_then(|(d, m)| {
        let (d, m): (u8, u8) = (d.trim().parse().ok()?, m.trim().parse().ok()?);
        let month = Month::try_from(m).ok()?;
        // 2024 is a leap year, so 29 February is accepted.
        Date::from_calendar_date(2024, month, d).ok()?;
        Some(format!("{m:02}-{d:02}"))
    });
    parsed
        .map(Some)
        .ok_or_else(|| format!("«{text}» non è un giorno dell'anno: scrivi per esempio 23/04"))
}

/// The name of the national public holiday on `date`, if it is one. Easter Monday is computed; 4
/// October is a national holiday again from 2026 (law 151/2025).
pub fn national_holiday(date: Date) -> Option<&'static str> {
    let fixed = match (date.month(), date.day()) {
        (Month::January, 1) => Some("Capodanno"),
        (Month::January, 6) => Some("Epifania"),
        (Month::April, 25) => Some("Festa della Liberazione"),
        (Month::May, 1) => Some("Festa del lavoro"),
        (Month::June, 2) => Some("Festa della Repubblica"),
        (Month::August, 15) => Some("Ferragosto"),
        (Month::October, 4) if date.year() >= 2026 => {
            Some("San Francesco d'Assisi e Santa Caterina da Siena")
        }
        (Month::November, 1) => Some("Ognissanti"),
        (Month::December, 8) => Some("Immacolata Concezione"),
        (Month::December, 25) => Some("Natale"),
        (Month::December, 26) => Some("Santo Stefano"),
        _ => None,
    };
    fixed.or_else(|| {
        let easter = computus::gregorian(date.year()).ok()?;
        let month = Month::try_from(u8::try_from(easter.month).ok()?).ok()?;
        let easter =
            Date::from_calendar_date(date.year(), month, u8::try_from(easter.day).ok()?).ok()?;
        if date == easter {
            Some("Pasqua")
        } else if Some(date) == easter.next_day() {
            Some("Lunedì dell'Angelo")
        } else {
            None
        }
    })
}

/// Why nobody receives at an office on `date`, if that is so.
pub fn closed_on(
    date: Date,
    patron_day: Option<&str>,
    closures: &[(Date, Date)],
) -> Option<&'static str> {
    if let Some(holiday) = national_holiday(date) {
        return Some(holiday);
    }
    if patron_day == Some(format!("{:02}-{:02}", u8::from(date.month()), date.day()).as_str()) {
        return Some("Santo patrono");
    }
    closures
        .iter()
        .any(|(from, to)| *from <= date && date <= *to)
        .then_some("Chiusura dell'ufficio")
}

/// How a calendar receives.
#[derive(Debug, Clone)]
pub struct Rules {
    pub hours: [DayHours; 7],
    pub slot_minutes: u16,
    pub min_notice_minutes: i64,
    pub max_days: i64,
}

/// Where a calendar is: what makes a day closed.
#[derive(Debug, Clone, Default)]
pub struct Closed {
    pub patron_day: Option<String>,
    pub closures: Vec<(Date, Date)>,
}

impl Rules {
    /// The starts (Unix ms) of the slots on `date`, whole slots only, before the window is applied.
    pub fn starts_on(&self, date: Date, closed: &Closed) -> Vec<i64> {
        if closed_on(date, closed.patron_day.as_deref(), &closed.closures).is_some() {
            return Vec::new();
        }
        let weekday = usize::from(date.weekday().number_days_from_monday());
        let step = self.slot_minutes.max(5);
        // One offset for the whole day, except on the two days a year the clocks change.
        let utc_midnight = date.midnight().assume_utc().unix_timestamp() * 1000;
        let first = utc_midnight - rome_instant(date, 0);
        let last = utc_midnight + 1439 * 60_000 - rome_instant(date, 1439);
        let instant = |minute: u16| {
            if first == last {
                utc_midnight + i64::from(minute) * 60_000 - first
            } else {
                rome_instant(date, minute)
            }
        };
        let mut starts = Vec::new();
        for &(from, to) in &self.hours[weekday] {
            let mut at = from;
            while at + step <= to {
                starts.push(instant(at));
                at += step;
            }
        }
        starts
    }

    /// The days of the booking window seen at `now_ms`, each with its bookable slot starts: not
    /// earlier than the minimum notice, not later than `max_days` after today.
    pub fn window(&self, now_ms: i64, closed: &Closed) -> Vec<(Date, Vec<i64>)> {
        let earliest = now_ms + self.min_notice_minutes * 60_000;
        let today = rome_date(now_ms);
        let mut days = Vec::new();
        for offset in 0..=self.max_days {
            let date = today + Duration::days(offset);
            let starts: Vec<i64> = self
                .starts_on(date, closed)
                .into_iter()
                .filter(|&s| s >= earliest)
                .collect();
            if !starts.is_empty() {
                days.push((date, starts));
            }
        }
        days
    }

    /// Whether `start` is a slot of this calendar that can be booked at `now_ms`.
    pub fn bookable(&self, start: i64, now_ms: i64, closed: &Closed) -> bool {
        let date = rome_date(start);
        let today = rome_date(now_ms);
        start >= now_ms + self.min_notice_minutes * 60_000
            && date <= today + Duration::days(self.max_days)
            && self.starts_on(date, closed).contains(&start)
    }
}

/// "lunedì 23 novembre 2026".
pub fn day_label(date: Date) -> String {
    let weekday = match date.weekday() {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    };
    format!(
        "{} {}",
        WEEKDAYS[weekday],
        crate::domain::italian_time::long_date(date)
    )
}

/// "09:30".
pub fn clock_label(ms: i64) -> String {
    let m = crate::domain::italian_time::rome_minute(ms);
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn weekdays_nine_to_twelve() -> Rules {
        let mut hours: [DayHours; 7] = Default::default();
        for day in hours.iter_mut().take(5) {
            *day = vec![(9 * 60, 12 * 60)];
        }
        Rules {
            hours,
            slot_minutes: 30,
            min_notice_minutes: 60,
            max_days: 30,
        }
    }

    #[test]
    fn the_national_holidays_easter_monday_included() {
        assert_eq!(
            national_holiday(date!(2026 - 04 - 25)),
            Some("Festa della Liberazione")
        );
        assert_eq!(
            national_holiday(date!(2026 - 04 - 06)),
            Some("Lunedì dell'Angelo")
        );
        assert_eq!(
            national_holiday(date!(2027 - 03 - 29)),
            Some("Lunedì dell'Angelo")
        );
        assert_eq!(national_holiday(date!(2027 - 03 - 28)), Some("Pasqua"));
        assert_eq!(
            national_holiday(date!(2026 - 12 - 26)),
            Some("Santo Stefano")
        );
        assert!(national_holiday(date!(2026 - 10 - 04)).is_some());
        assert_eq!(national_holiday(date!(2025 - 10 - 04)), None);
        assert_eq!(national_holiday(date!(2026 - 04 - 07)), None);
        assert_eq!(national_holiday(date!(2026 - 11 - 23)), None);
    }

    #[test]
    fn hours_are_read_with_clear_messages() {
        let week = Week([
            "09:00-12:30, 14:30-16:30".into(),
            "".into(),
            "9.00-12.00".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ]);
        let days = week.parse().unwrap_or_default();
        assert_eq!(days[0], vec![(540, 750), (870, 990)]);
        assert_eq!(days[2], vec![(540, 720)]);
        let mut bad = week.clone();
        bad.0[1] = "12:00-09:00".into();
        assert_eq!(
            bad.parse().err().as_deref(),
            Some("Orari di martedì: nella fascia «12:00-09:00» l'inizio viene dopo la fine")
        );
        bad.0[1] = "mattina".into();
        assert!(bad
            .parse()
            .err()
            .unwrap_or_default()
            .contains("09:00-12:30"));
        bad.0[1] = "09:00-11:00, 10:00-12:00".into();
        assert!(bad
            .parse()
            .err()
            .unwrap_or_default()
            .contains("si sovrappone"));
    }

    #[test]
    fn patron_days_are_typed_as_day_and_month() {
        assert_eq!(parse_patron_day("23/04"), Ok(Some("04-23".into())));
        assert_eq!(parse_patron_day(" "), Ok(None));
        assert!(parse_patron_day("31/02").is_err());
        assert!(parse_patron_day("San Giorgio").is_err());
    }

    #[test]
    fn slots_skip_holidays_patron_days_and_closures() {
        let rules = weekdays_nine_to_twelve();
        let closed = Closed {
            patron_day: Some("04-23".into()),
            closures: vec![(date!(2026 - 04 - 28), date!(2026 - 04 - 29))],
        };
        assert_eq!(rules.starts_on(date!(2026 - 04 - 07), &closed).len(), 6);
        for shut in [
            date!(2026 - 04 - 06),
            date!(2026 - 04 - 23),
            date!(2026 - 04 - 28),
            date!(2026 - 04 - 29),
            date!(2026 - 04 - 25),
            date!(2026 - 04 - 26),
        ] {
            assert!(rules.starts_on(shut, &closed).is_empty(), "{shut}");
        }
        assert_eq!(
            clock_label(rules.starts_on(date!(2026 - 04 - 07), &closed)[1]),
            "09:30"
        );
    }

    #[test]
    fn slots_follow_the_clock_on_the_days_it_changes() {
        let mut rules = weekdays_nine_to_twelve();
        rules.hours[6] = vec![(60, 240)];
        // Sunday 29 March 2026: 02:00 becomes 03:00; the slot "at 2:30" does not exist.
        let labels: Vec<String> = rules
            .starts_on(date!(2026 - 03 - 29), &Closed::default())
            .into_iter()
            .map(clock_label)
            .collect();
        assert_eq!(labels.first().map(String::as_str), Some("01:00"));
        assert!(labels.contains(&"03:30".to_string()));
        let day = rules.starts_on(date!(2026 - 03 - 30), &Closed::default());
        assert_eq!(clock_label(day[0]), "09:00");
        assert_eq!(day[1] - day[0], 30 * 60_000);
    }

    #[test]
    fn the_window_honours_notice_and_furthest_day() {
        let rules = weekdays_nine_to_twelve();
        // Monday 23 November 2026, 10:10 in Italy.
        let now = rome_instant(date!(2026 - 11 - 23), 10 * 60 + 10);
        let days = rules.window(now, &Closed::default());
        let (first, starts) = &days[0];
        assert_eq!(*first, date!(2026 - 11 - 23));
        assert_eq!(clock_label(starts[0]), "11:30");
        let last = days.last().map(|d| d.0);
        assert_eq!(last, Some(date!(2026 - 12 - 23)));
        assert!(!days.iter().any(|d| d.0 == date!(2026 - 12 - 08)));
        assert!(rules.bookable(starts[0], now, &Closed::default()));
        assert!(!rules.bookable(starts[0] + 60_000, now, &Closed::default()));
        assert!(!rules.bookable(
            rome_instant(date!(2026 - 11 - 23), 11 * 60),
            now,
            &Closed::default()
        ));
    }
}
