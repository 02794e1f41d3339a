//! Delta-seconds: the whole seconds of `Retry-After` and of `Prefer: wait`.

use std::time::Duration;

/// `text` as delta-seconds, one or more ASCII digits. More seconds than a `u64` holds are
/// `u64::MAX` of them, as RFC 9111 (section 1.2.2) asks of a value past what the recipient
/// can represent: a wait as long as there is, not a header to ignore. `None` for anything
/// but digits.
pub(crate) fn delta_seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_nothing_else() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(delta_seconds("0"), secs(0));
        assert_eq!(delta_seconds("007"), secs(7));
        assert_eq!(delta_seconds("18446744073709551615"), secs(u64::MAX));
        assert_eq!(delta_seconds("18446744073709551616"), secs(u64::MAX));
        for bad in ["", " 1", "1 ", "-1", "+1", "1.5", "1e3", "٣"] {
            assert_eq!(delta_seconds(bad), None, "{bad:?}");
        }
    }
}
