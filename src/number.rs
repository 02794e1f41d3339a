//! Whole numbers in header values and settings: ASCII digits and nothing else (`u64`'s own
//! parser takes a leading `+` too), and delta-seconds, the whole seconds of `Retry-After`
//! and of `Prefer: wait`.

use std::time::Duration;

/// Whether `text` is one or more ASCII digits.
pub(crate) fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `text` as a whole number of at most `max_digits` digits; `None` for anything else, and
/// for a number past `u64`.
pub(crate) fn digits(text: &str, max_digits: usize) -> Option<u64> {
    if text.len() > max_digits || !is_digits(text) {
        return None;
    }
    text.parse().ok()
}

/// `text` as delta-seconds. More seconds than a `u64` holds are `u64::MAX` of them, as RFC
/// 9111 (section 1.2.2) asks of a value past what the recipient can represent: a wait as
/// long as there is, not a header to ignore. `None` for anything but digits.
pub(crate) fn delta_seconds(text: &str) -> Option<Duration> {
    is_digits(text).then(|| Duration::from_secs(text.parse().unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_DIGITS: [&str; 8] = ["", " 1", "1 ", "-1", "+1", "1.5", "1e3", "٣"];

    #[test]
    fn digits_and_nothing_else() {
        assert_eq!(digits("007", 3), Some(7));
        assert_eq!(digits("0007", 3), None, "more digits than allowed");
        assert_eq!(digits("18446744073709551615", 20), Some(u64::MAX));
        assert_eq!(digits("18446744073709551616", 20), None, "past u64");
        for bad in NOT_DIGITS {
            assert!(!is_digits(bad), "{bad:?}");
            assert_eq!(digits(bad, 20), None, "{bad:?}");
        }
    }

    #[test]
    fn delta_seconds_saturate() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(delta_seconds("0"), secs(0));
        assert_eq!(delta_seconds("007"), secs(7));
        assert_eq!(delta_seconds("18446744073709551615"), secs(u64::MAX));
        assert_eq!(delta_seconds("18446744073709551616"), secs(u64::MAX));
        for bad in NOT_DIGITS {
            assert_eq!(delta_seconds(bad), None, "{bad:?}");
        }
    }
}
