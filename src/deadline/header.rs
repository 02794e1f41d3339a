//! Budgets announced by a trusted proxy in a request header.

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::number::digits;

/// A request header that announces the time the caller will wait, from a proxy you trust.
///
/// Never trusted unless named with [`DeadlineLayer::trust_header`]. Malformed or
/// overflowing values are ignored (with a `debug` event); values above the layer's maximum
/// are clamped to it. Zero means what the sender means by it: for `grpc-timeout` and a
/// named header, no time is left (the request is answered `504` at once); for Envoy's
/// header, Envoy has no timeout, so it sets no deadline.
///
/// [`DeadlineLayer::trust_header`]: super::DeadlineLayer::trust_header
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustedHeader {
    /// A header of your choice holding milliseconds, such as `x-request-timeout-ms`.
    Millis(HeaderName),
    /// `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
    GrpcTimeout,
    /// Envoy's `x-envoy-expected-rq-timeout-ms`.
    EnvoyExpectedTimeout,
}

const ENVOY: &str = "x-envoy-expected-rq-timeout-ms";

impl TrustedHeader {
    fn name(&self) -> &str {
        match self {
            Self::Millis(name) => name.as_str(),
            Self::GrpcTimeout => "grpc-timeout",
            Self::EnvoyExpectedTimeout => ENVOY,
        }
    }

    /// The budget this header announces, if present and well-formed.
    pub(crate) fn budget(&self, headers: &HeaderMap) -> Option<Duration> {
        let value = headers.get(self.name())?;
        let parsed = value.to_str().ok().and_then(|text| match self {
            Self::GrpcTimeout => parse_grpc_timeout(text),
            Self::Millis(_) => parse_millis(text),
            Self::EnvoyExpectedTimeout => parse_millis(text).filter(|budget| !budget.is_zero()),
        });
        if parsed.is_none() {
            tracing::debug!(
                header = self.name(),
                ?value,
                "ignoring a time budget header that is malformed or sets no deadline"
            );
        }
        parsed
    }
}

fn parse_millis(text: &str) -> Option<Duration> {
    digits(text, 20).map(Duration::from_millis)
}

fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let value = digits(&text[..text.len() - unit.len_utf8()], 8)?;
    Some(match unit {
        'H' => Duration::from_secs(value * 3600),
        'M' => Duration::from_secs(value * 60),
        'S' => Duration::from_secs(value),
        'm' => Duration::from_millis(value),
        'u' => Duration::from_micros(value),
        'n' => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget `header` gives `value`, whose bytes arrive as they are: from the wire, a
    /// value need not be ASCII (`http` 1.6 refuses such text in `parse`, not in `from_bytes`).
    fn budget(header: TrustedHeader, value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header.name().parse::<HeaderName>().unwrap(),
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
        header.budget(&headers)
    }

    #[test]
    fn grpc_timeout_units() {
        let table = [
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("4S", Some(Duration::from_secs(4))),
            ("5m", Some(Duration::from_millis(5))),
            ("6u", Some(Duration::from_micros(6))),
            ("7n", Some(Duration::from_nanos(7))),
            ("99999999H", Some(Duration::from_secs(99_999_999 * 3600))),
            ("123456789m", None),
            ("5", None),
            ("m", None),
            ("5x", None),
            ("-5S", None),
            ("5 S", None),
            ("0S", Some(Duration::ZERO)),
            ("0n", Some(Duration::ZERO)),
            ("1.5S", None),
            ("5é", None),
        ];
        for (text, want) in table {
            assert_eq!(budget(TrustedHeader::GrpcTimeout, text), want, "{text:?}");
        }
    }

    #[test]
    fn millis_headers() {
        let named = || TrustedHeader::Millis(HeaderName::from_static("x-timeout-ms"));
        let table = [
            ("2000", Some(Duration::from_millis(2000))),
            (
                "18446744073709551615",
                Some(Duration::from_millis(u64::MAX)),
            ),
            ("18446744073709551616", None),
            ("99999999999999999999999", None),
            ("-1", None),
            ("+5", None),
            ("", None),
            ("1e3", None),
            ("10 ", None),
        ];
        for (text, want) in table {
            assert_eq!(budget(named(), text), want, "{text:?}");
            assert_eq!(
                budget(TrustedHeader::EnvoyExpectedTimeout, text),
                want,
                "{text:?}"
            );
        }
        // Zero: no time left for a named header; no timeout at all for Envoy's.
        assert_eq!(budget(named(), "0"), Some(Duration::ZERO));
        assert_eq!(budget(TrustedHeader::EnvoyExpectedTimeout, "0"), None);
    }

    #[test]
    fn absent_or_not_text() {
        assert_eq!(TrustedHeader::GrpcTimeout.budget(&HeaderMap::new()), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            "grpc-timeout",
            http::HeaderValue::from_bytes(b"5\xffS").unwrap(),
        );
        assert_eq!(TrustedHeader::GrpcTimeout.budget(&headers), None);
    }
}
