use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::StatusCode;

use crate::number::is_digits;

/// A set of HTTP status codes, written like the Lambda Web Adapter's
/// `AWS_LWA_ERROR_STATUS_CODES`: single codes and inclusive ranges separated by commas.
///
/// ```
/// use tower_serverless::escalate::StatusCodes;
///
/// let codes: StatusCodes = "500,502-504".parse().unwrap();
/// assert!(codes.contains(http::StatusCode::BAD_GATEWAY));
/// assert!(!codes.contains(http::StatusCode::NOT_IMPLEMENTED));
/// assert!("504-502".parse::<StatusCodes>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StatusCodes {
    repr: Repr,
}

/// Sorted, disjoint, non-adjacent inclusive ranges. A few ranges (all the specifications
/// seen in practice) live inline, so the set adds 24 bytes to each response future and a
/// clone is a copy; more go behind an `Arc`.
#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline {
        len: u8,
        ranges: [(u16, u16); INLINE],
    },
    Shared(Arc<[(u16, u16)]>),
}

const INLINE: usize = 4;
const FIRST: u16 = 100;
const LAST: u16 = 999;

impl StatusCodes {
    /// The empty set.
    pub const fn new() -> Self {
        Self {
            repr: Repr::Inline {
                len: 0,
                ranges: [(0, 0); INLINE],
            },
        }
    }

    #[inline]
    fn ranges(&self) -> &[(u16, u16)] {
        match &self.repr {
            Repr::Inline { len, ranges } => &ranges[..usize::from(*len)],
            Repr::Shared(ranges) => ranges,
        }
    }

    /// Adds the inclusive range `from..=to`.
    pub fn with_range(self, from: StatusCode, to: StatusCode) -> Self {
        let mut ranges = self.ranges().to_vec();
        ranges.push((
            from.as_u16().min(to.as_u16()),
            to.as_u16().max(from.as_u16()),
        ));
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        let repr = if merged.len() <= INLINE {
            let mut inline = [(0, 0); INLINE];
            inline[..merged.len()].copy_from_slice(&merged);
            Repr::Inline {
                len: merged.len() as u8,
                ranges: inline,
            }
        } else {
            Repr::Shared(merged.into())
        };
        Self { repr }
    }

    /// Whether `status` is in the set.
    #[inline]
    pub fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.ranges()
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&code))
    }

    /// Whether no code is in the set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges().is_empty()
    }
}

impl Default for StatusCodes {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (FIRST..=LAST)
            .filter(|code| StatusCode::from_u16(*code).is_ok_and(|status| self.contains(status)));
        f.debug_set().entries(codes).finish()
    }
}

/// A status-code specification that could not be parsed; see [`StatusCodes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid status code specification {spec:?}: {reason}")]
pub struct StatusSpecError {
    spec: String,
    reason: &'static str,
}

impl FromStr for StatusCodes {
    type Err = StatusSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason| StatusSpecError {
            spec: spec.to_owned(),
            reason,
        };
        let code = |text: &str| {
            let text = text.trim();
            if !is_digits(text) {
                return Err(fail("a code is not a whole number"));
            }
            text.parse::<u16>()
                .ok()
                .and_then(|n| StatusCode::from_u16(n).ok())
                .ok_or_else(|| fail("a code is outside 100-999"))
        };
        if spec.trim().is_empty() {
            return Err(fail("no status code given"));
        }
        let mut codes = Self::new();
        for item in spec.split(',') {
            let (from, to) = match item.split_once('-') {
                Some((from, to)) => (code(from)?, code(to)?),
                None => {
                    let single = code(item)?;
                    (single, single)
                }
            };
            if from > to {
                return Err(fail("a range ends before it starts"));
            }
            codes = codes.with_range(from, to);
        }
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: &str) -> Result<Vec<u16>, StatusSpecError> {
        let codes: StatusCodes = spec.parse()?;
        Ok((FIRST..=LAST)
            .filter(|c| codes.contains(StatusCode::from_u16(*c).unwrap()))
            .collect())
    }

    #[test]
    fn good_specs() {
        let table: &[(&str, &[u16])] = &[
            ("500", &[500]),
            ("500,502-504", &[500, 502, 503, 504]),
            (" 500 , 502 - 503 ", &[500, 502, 503]),
            ("404,404", &[404]),
            ("100", &[100]),
            ("999", &[999]),
            ("598-599,100-101", &[100, 101, 598, 599]),
            ("503-503", &[503]),
        ];
        for (spec, want) in table {
            assert_eq!(set(spec).as_deref(), Ok(*want), "spec {spec:?}");
        }
        assert_eq!(set("500-599").unwrap().len(), 100);
    }

    #[test]
    fn bad_specs() {
        let table: &[(&str, &str)] = &[
            ("", "no status code given"),
            ("  ", "no status code given"),
            ("500,", "a code is not a whole number"),
            (",500", "a code is not a whole number"),
            ("500,,502", "a code is not a whole number"),
            ("5xx", "a code is not a whole number"),
            ("+500", "a code is not a whole number"),
            ("-500", "a code is not a whole number"),
            ("500-", "a code is not a whole number"),
            ("500-502-504", "a code is not a whole number"),
            ("50.0", "a code is not a whole number"),
            ("99", "a code is outside 100-999"),
            ("1000", "a code is outside 100-999"),
            ("0", "a code is outside 100-999"),
            ("99999999999999999999", "a code is outside 100-999"),
            ("504-502", "a range ends before it starts"),
        ];
        for (spec, reason) in table {
            let err = spec.parse::<StatusCodes>().unwrap_err();
            assert_eq!(err.reason, *reason, "spec {spec:?}");
            assert!(err.to_string().contains(&format!("{spec:?}")));
        }
    }

    #[test]
    fn many_ranges_and_merging() {
        let codes: StatusCodes = "500,502,504,506,508,510".parse().unwrap();
        assert_eq!(
            set("500,502,504,506,508,510").unwrap(),
            vec![500, 502, 504, 506, 508, 510]
        );
        assert!(matches!(codes.repr, Repr::Shared(_)));
        let merged: StatusCodes = "500-502,503,501,504-510,400".parse().unwrap();
        assert_eq!(merged.ranges(), &[(400, 400), (500, 510)]);
    }

    #[test]
    fn debug_lists_codes() {
        let codes: StatusCodes = "500,502".parse().unwrap();
        assert_eq!(format!("{codes:?}"), "{500, 502}");
        assert!(StatusCodes::new().is_empty());
        assert!(!codes.is_empty());
    }
}
