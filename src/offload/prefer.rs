//! The `Prefer` request header (RFC 7240): `respond-async` and `wait`.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::number::delta_seconds;

/// Made at compile time: a lookup by `&str` would parse the name on every request.
const PREFER: HeaderName = HeaderName::from_static("prefer");

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Preferences {
    pub(crate) respond_async: bool,
    pub(crate) wait: Option<Duration>,
}

/// Reads every `Prefer` header; what does not parse is ignored, as RFC 7240 asks.
pub(crate) fn parse(headers: &HeaderMap) -> Preferences {
    let mut preferences = Preferences::default();
    // Most requests have none: one lookup, without the iterators below.
    if !headers.contains_key(&PREFER) {
        return preferences;
    }
    let values = headers.get_all(&PREFER);
    for token in values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_outside_quotes(','))
    {
        // Parameters after `;` do not change these two preferences.
        let token = split_outside_quotes(';')(token)
            .next()
            .unwrap_or_default()
            .trim();
        let (name, value) = match token.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (token, None),
        };
        if name.eq_ignore_ascii_case("respond-async") && value.is_none() {
            preferences.respond_async = true;
        } else if name.eq_ignore_ascii_case("wait") {
            if let Some(wait) = value.and_then(delta_seconds) {
                // The first `wait` wins, like any repeated preference.
                preferences.wait.get_or_insert(wait);
            }
        }
    }
    preferences
}

/// Splits at `separator` where it is not inside a quoted string (with `\` escapes).
fn split_outside_quotes(separator: char) -> impl Fn(&str) -> std::vec::IntoIter<&str> {
    move |text| {
        let mut parts = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (at, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                _ if c == separator && !quoted => {
                    parts.push(&text[start..at]);
                    start = at + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        parts.into_iter()
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> Preferences {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", value.parse().unwrap());
        }
        parse(&headers)
    }

    #[test]
    fn tokens() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(prefer(&[]), Preferences::default());
        assert!(prefer(&["respond-async"]).respond_async);
        assert!(prefer(&["Respond-Async"]).respond_async);
        assert!(prefer(&["handling=lenient, respond-async; foo=bar"]).respond_async);
        assert!(!prefer(&["respond-async=1"]).respond_async);
        assert_eq!(prefer(&["wait=5"]).wait, secs(5));
        assert_eq!(prefer(&["wait = 5"]).wait, secs(5));
        assert_eq!(prefer(&["wait=\"7\""]).wait, secs(7));
        assert_eq!(
            prefer(&["respond-async, wait=10"]),
            Preferences {
                respond_async: true,
                wait: secs(10)
            }
        );
        assert_eq!(prefer(&["wait=1", "wait=9"]).wait, secs(1));
        assert_eq!(
            prefer(&["wait=99999999999999999999999"]).wait,
            secs(u64::MAX)
        );
        // A comma or semicolon inside a quoted string separates nothing.
        assert_eq!(
            prefer(&[r#"foo="a, wait=1", wait=4"#]),
            Preferences {
                respond_async: false,
                wait: secs(4)
            }
        );
        assert!(prefer(&[r#"handling="x;y, respond-async", respond-async"#]).respond_async);
        assert!(!prefer(&[r#"foo="respond-async, \"still quoted""#]).respond_async);
        for bad in [
            "wait", "wait=", "wait=-1", "wait=1.5", "wait=abc", "=", ",,,", ";",
        ] {
            assert_eq!(prefer(&[bad]), Preferences::default(), "{bad:?}");
        }
    }
}
