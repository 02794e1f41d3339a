//! How the shared stores write what is not a string: headers, instants and durations.
//! One encoding for Redis and DynamoDB, so that a record reads the same in both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Headers as `name NUL value LF` lines: neither byte may appear in a name or a value.
pub(super) fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The headers [`encode_headers`] wrote; `None` when the bytes are not such lines.
pub(super) fn decode_headers(bytes: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        let split = line.iter().position(|b| *b == 0)?;
        let name = HeaderName::from_bytes(&line[..split]).ok()?;
        let value = HeaderValue::from_bytes(&line[split + 1..]).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// The longest duration a store writes: about 100 years, in whole milliseconds.
const MAX_MILLIS: u64 = 100 * 365 * 86_400 * 1000;

/// Whole milliseconds, at least 1 and at most about 100 years: Lua's numbers stay exact,
/// `PEXPIRE` accepts every value, and an epoch plus it never overflows, whatever
/// `Duration` the settings hold.
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(MAX_MILLIS)
        .clamp(1, MAX_MILLIS)
}

/// Milliseconds since the Unix epoch (0 for an instant before it).
#[cfg_attr(not(feature = "dynamodb"), allow(dead_code))] // `RedisStore` only reads them
pub(super) fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(super) fn from_epoch_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("two words\tand tab"));
        headers.append("set-cookie", HeaderValue::from_bytes(b"v=\xff").unwrap());
        assert_eq!(decode_headers(&encode_headers(&headers)), Some(headers));
        assert_eq!(decode_headers(b"no-separator\n"), None);
        assert_eq!(decode_headers(b""), Some(HeaderMap::new()));
    }

    #[test]
    fn durations_are_bounded_and_epochs_round_trip() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::MAX), MAX_MILLIS);
        let now = from_epoch_millis(epoch_millis(SystemTime::now()));
        assert_eq!(from_epoch_millis(epoch_millis(now)), now);
        assert_eq!(epoch_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
