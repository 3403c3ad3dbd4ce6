//! Dates as Italian citizens read them: "22 novembre 2026, 10:30", in Italian time (CET/CEST, the
//! EU summer-time rule: from the last Sunday of March to the last Sunday of October, 01:00 UTC).

use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

const MONTHS: [&str; 12] = [
    "gennaio",
    "febbraio",
    "marzo",
    "aprile",
    "maggio",
    "giugno",
    "luglio",
    "agosto",
    "settembre",
    "ottobre",
    "novembre",
    "dicembre",
];

fn last_sunday(year: i32, month: Month) -> Option<Date> {
    let mut day = Date::from_calendar_date(year, month, 31).ok()?;
    while day.weekday() != Weekday::Sunday {
        day = day.previous_day()?;
    }
    Some(day)
}

/// The offset of Italian time at the instant `utc`.
pub fn rome_offset(utc: OffsetDateTime) -> UtcOffset {
    let year = utc.year();
    let summer = match (
        last_sunday(year, Month::March),
        last_sunday(year, Month::October),
    ) {
        (Some(start), Some(end)) => {
            let start = start.with_hms(1, 0, 0).map(|d| d.assume_utc());
            let end = end.with_hms(1, 0, 0).map(|d| d.assume_utc());
            matches!((start, end), (Ok(s), Ok(e)) if utc >= s && utc < e)
        }
        _ => false,
    };
    UtcOffset::from_hms(if summer { 2 } else { 1 }, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// Unix milliseconds as "22 novembre 2026, 10:30" (Italian time).
pub fn date_time(ms: i64) -> String {
    let Ok(utc) = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return String::new();
    };
    let local = utc.to_offset(rome_offset(utc));
    format!(
        "{} {} {}, {:02}:{:02}",
        local.day(),
        MONTHS[usize::from(u8::from(local.month())) - 1],
        local.year(),
        local.hour(),
        local.minute()
    )
}

/// A date as "12 marzo 2027".
pub fn long_date(date: Date) -> String {
    format!(
        "{} {} {}",
        date.day(),
        MONTHS[usize::from(u8::from(date.month())) - 1],
        date.year()
    )
}

/// The calendar day in Italy at the instant `ms` (Unix milliseconds).
pub fn rome_date(ms: i64) -> Date {
    match OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(utc) => utc.to_offset(rome_offset(utc)).date(),
        Err(_) => Date::MIN,
    }
}

/// The instant (Unix milliseconds) at which the clocks in Italy show `minute` minutes past midnight
/// of `date`. In the hour skipped in March the later offset is used; in the hour repeated in October,
/// the first.
pub fn rome_instant(date: Date, minute: u16) -> i64 {
    let midnight_utc = date.midnight().assume_utc().unix_timestamp() * 1000;
    let local = midnight_utc + i64::from(minute) * 60_000;
    for hours in [2, 1] {
        let candidate = local - hours * 3_600_000;
        if let Ok(utc) = OffsetDateTime::from_unix_timestamp(candidate / 1000) {
            if i64::from(rome_offset(utc).whole_hours()) == hours {
                return candidate;
            }
        }
    }
    local - 3_600_000
}

/// The minutes past midnight shown by the clocks in Italy at the instant `ms`.
pub fn rome_minute(ms: i64) -> u16 {
    match OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(utc) => {
            let local = utc.to_offset(rome_offset(utc));
            u16::from(local.hour()) * 60 + u16::from(local.minute())
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: Month, d: u8, h: u8, min: u8) -> i64 {
        let date = Date::from_calendar_date(y, m, d).unwrap_or(Date::MIN);
        date.with_hms(h, min, 0)
            .map(|t| t.assume_utc().unix_timestamp() * 1000)
            .unwrap_or(0)
    }

    #[test]
    fn local_times_become_instants_and_back() {
        let nov = Date::from_calendar_date(2026, Month::November, 23).unwrap_or(Date::MIN);
        let at = rome_instant(nov, 9 * 60 + 30);
        assert_eq!(date_time(at), "23 novembre 2026, 09:30");
        assert_eq!(rome_minute(at), 570);
        let jul = Date::from_calendar_date(2026, Month::July, 1).unwrap_or(Date::MIN);
        assert_eq!(
            date_time(rome_instant(jul, 14 * 60)),
            "1 luglio 2026, 14:00"
        );
    }

    #[test]
    fn winter_and_summer_time() {
        assert_eq!(
            date_time(ms(2026, Month::November, 22, 9, 30)),
            "22 novembre 2026, 10:30"
        );
        assert_eq!(
            date_time(ms(2026, Month::July, 1, 9, 5)),
            "1 luglio 2026, 11:05"
        );
    }

    #[test]
    fn the_changes_happen_on_the_last_sundays_at_one_utc() {
        // 2026: summer time from 29 March, back on 25 October.
        assert_eq!(
            date_time(ms(2026, Month::March, 29, 0, 59)),
            "29 marzo 2026, 01:59"
        );
        assert_eq!(
            date_time(ms(2026, Month::March, 29, 1, 0)),
            "29 marzo 2026, 03:00"
        );
        assert_eq!(
            date_time(ms(2026, Month::October, 25, 0, 59)),
            "25 ottobre 2026, 02:59"
        );
        assert_eq!(
            date_time(ms(2026, Month::October, 25, 1, 0)),
            "25 ottobre 2026, 02:00"
        );
    }
}
