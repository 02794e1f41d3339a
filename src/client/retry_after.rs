//! `Retry-After` (RFC 9110, section 10.2.3): a number of seconds, or an HTTP date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::HeaderMap;

use crate::number::{delta_seconds, digits};

/// How long `headers`' `Retry-After` asks to wait from `now`: its seconds, or the time until
/// its date. `None` when it is absent, malformed, or asks for no wait at all (`0`, a date
/// passed): that sets no pace, and the caller's backoff applies.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match delta_seconds(text) {
        Some(wait) => wait,
        None => http_date(text, now)?.duration_since(now).ok()?,
    };
    Some(wait).filter(|wait| !wait.is_zero())
}

/// Fifty years of 365.2425 days: how far ahead a two-digit year may be read.
const FIFTY_YEARS: Duration = Duration::from_secs(50 * 31_556_952);

/// An HTTP date in any of the three forms a recipient must accept (RFC 9110, section
/// 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT` (the one senders write), `Sunday, 06-Nov-94
/// 08:49:37 GMT` and `Sun Nov  6 08:49:37 1994`. The day's name is not checked; a
/// two-digit year more than 50 years after `now` is the century before, as the RFC says.
fn http_date(text: &str, now: SystemTime) -> Option<SystemTime> {
    let mut words = [""; 6];
    let mut count = 0;
    for word in text.split_ascii_whitespace() {
        *words.get_mut(count)? = word;
        count += 1;
    }
    let (day, month, year, time) = match &words[..count] {
        [_, day, month, year, time, "GMT"] if year.len() == 4 => (*day, *month, *year, *time),
        [_, date, time, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || year.len() != 2 {
                return None;
            }
            let (day, year) = (number(day)?, number(year)?);
            let this_century = at(day, month, 2000 + year, time)?;
            let too_far = this_century
                .duration_since(now)
                .is_ok_and(|ahead| ahead > FIFTY_YEARS);
            return if too_far {
                at(day, month, 1900 + year, time)
            } else {
                Some(this_century)
            };
        }
        [_, month, day, time, year] if year.len() == 4 => (*day, *month, *year, *time),
        _ => return None,
    };
    at(number(day)?, month, number(year)?, time)
}

/// The instant of `day` `month` `year` at `time` (`HH:MM:SS`), in UTC; `None` for a date or
/// time that does not exist. A leap second (`:60`) is the second after.
fn at(day: u64, month: &str, year: u64, time: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u64 + 1;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month || !(1970..=9999).contains(&year) {
        return None;
    }
    let mut clock = time
        .split(':')
        .map(|part| if part.len() == 2 { number(part) } else { None });
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days from 1970-01-01 to a date on or after it (Howard Hinnant's `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    // Years counted from March, so that the leap day ends a year.
    let year = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (year / 400, year % 400);
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A date's number: up to four digits.
fn number(text: &str) -> Option<u64> {
    digits(text, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn the_three_forms_of_a_date() {
        let now = epoch(1_795_000_000);
        // RFC 9110's own example, in its three forms.
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(http_date(form, now), Some(epoch(784_111_777)), "{form}");
        }
        // Another implementation's dates, leap days and the ends of years included.
        for seconds in [
            0,
            951_782_400,
            1_795_314_057,
            4_102_444_799,
            253_402_300_799,
        ] {
            let written = httpdate::fmt_http_date(epoch(seconds));
            assert_eq!(http_date(&written, now), Some(epoch(seconds)), "{written}");
        }
        // A two-digit year: this century unless that is over 50 years ahead.
        assert_eq!(
            http_date("Tuesday, 01-Jan-30 00:00:00 GMT", now),
            Some(epoch(1_893_456_000))
        );
        assert_eq!(
            http_date("Thursday, 01-Jan-99 00:00:00 GMT", now),
            Some(epoch(915_148_800))
        );
    }

    #[test]
    fn what_is_no_date() {
        let now = epoch(1_795_000_000);
        for text in [
            "",
            "GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Now 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, -6 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94-1 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun, 06 Nov 1994 08:49:37 GMT and more",
            "18446744073709551616",
        ] {
            assert_eq!(http_date(text, now), None, "{text:?}");
        }
    }

    #[test]
    fn a_wait_in_seconds_or_until_a_date() {
        let now = epoch(1_795_000_000);
        let wait = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        assert_eq!(wait("120"), Some(Duration::from_secs(120)));
        assert_eq!(wait(" 7 "), Some(Duration::from_secs(7)));
        // More than a number holds is the most it holds (RFC 9111, section 1.2.2).
        for huge in [
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(wait(huge), Some(Duration::from_secs(u64::MAX)), "{huge}");
        }
        let in_90_seconds = httpdate::fmt_http_date(epoch(1_795_000_090));
        assert_eq!(wait(&in_90_seconds), Some(Duration::from_secs(90)));
        // No pace: the caller's backoff applies.
        let passed = httpdate::fmt_http_date(epoch(1_794_999_000));
        for none in ["0", "000", &passed, "-5", "+5", "1.5", "soon"] {
            assert_eq!(wait(none), None, "{none:?}");
        }
    }
}
