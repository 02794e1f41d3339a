use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

/// The most any budget, lease or TTL reaches into the future: about 30 years, which is
/// "no limit" for every purpose here and far from `Instant`'s overflow.
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `at + duration`, saturating at [`FAR`] from `at`: no setting or header can overflow an
/// `Instant` (which panics).
#[inline]
pub(crate) fn later(at: Instant, duration: Duration) -> Instant {
    at + duration.min(FAR)
}

/// `duration` in whole seconds, rounded up: what a header counted in seconds (`Retry-After`,
/// `Prefer: wait`) says of a duration, never less than it (half a second is `1`, not `0`).
#[inline]
pub(crate) fn seconds_up(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// The instant by which the current request's work must be done, and which source set it.
///
/// [`DeadlineLayer`](super::DeadlineLayer) puts it in the request's extensions and makes it
/// readable from anywhere inside the request's task with [`current`](super::current).
/// See the [module docs](super) for an example.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    source: DeadlineSource,
}

/// Where a [`Deadline`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineSource {
    /// The budget configured on the layer, counted from the request's arrival.
    Budget,
    /// A trusted inbound header (`grpc-timeout`, `x-envoy-expected-rq-timeout-ms` or a named
    /// header).
    Header,
    /// A front door's arrival timestamp plus its cap (API Gateway's, or CloudFront's origin
    /// response timeout), minus the margin.
    Gateway,
    /// The Lambda function's own deadline, minus the margin.
    Function,
    /// The background budget of work that continues after the response.
    Background,
    /// A source of the application's, by name.
    Custom(&'static str),
}

impl Deadline {
    /// A deadline at `at`.
    #[inline]
    pub fn at(at: Instant, source: DeadlineSource) -> Self {
        Self { at, source }
    }

    /// A deadline `budget` from now. Any `Duration` is accepted: budgets beyond about 30
    /// years are taken as 30 years.
    pub fn after(budget: Duration, source: DeadlineSource) -> Self {
        Self::at(later(Instant::now(), budget), source)
    }

    /// The instant by which the work must be done.
    #[inline]
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Which source set this deadline.
    #[inline]
    pub fn source(&self) -> DeadlineSource {
        self.source
    }

    /// The time left, zero once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The earlier of the two deadlines (`self` when they are equal).
    #[inline]
    pub fn min(self, other: Self) -> Self {
        if other.at < self.at {
            other
        } else {
            self
        }
    }

    /// What remains, in whole milliseconds, as a header value for an outbound call (for
    /// example `x-envoy-expected-rq-timeout-ms` or a header of your own).
    ///
    /// `None` once less than a millisecond remains: receivers read `0` as "no deadline"
    /// (Envoy does), so an expired budget is never sent; make no call then.
    pub fn remaining_millis_header(&self) -> Option<HeaderValue> {
        let millis = self.remaining().as_millis();
        (millis > 0).then(|| HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX)))
    }

    /// What remains in the `grpc-timeout` format (at most 8 digits and a unit), rounded down
    /// to the finest unit whose value fits in 8 digits.
    ///
    /// `None` once the deadline has passed: an expired budget is never sent; make no call
    /// then.
    pub fn grpc_timeout_header(&self) -> Option<HeaderValue> {
        let nanos = self.remaining().as_nanos();
        if nanos == 0 {
            return None;
        }
        const UNITS: [(u128, char); 6] = [
            (1, 'n'),
            (1_000, 'u'),
            (1_000_000, 'm'),
            (1_000_000_000, 'S'),
            (60_000_000_000, 'M'),
            (3_600_000_000_000, 'H'),
        ];
        let (value, unit) = UNITS
            .iter()
            .map(|(size, unit)| (nanos / size, *unit))
            .find(|(value, _)| *value < 100_000_000)
            .unwrap_or((99_999_999, 'H'));
        Some(HeaderValue::try_from(format!("{value}{unit}")).expect("digits and a letter"))
    }
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("remaining", &self.remaining())
            .field("source", &self.source)
            .finish()
    }
}

/// A marker in the extensions of the response a [`DeadlineLayer`](super::DeadlineLayer)
/// answers when the deadline passes; [`EscalateLayer::timeouts`] escalates on it.
///
/// [`EscalateLayer::timeouts`]: crate::escalate::EscalateLayer::timeouts
#[derive(Clone, Copy, Debug)]
pub struct DeadlineExceeded {
    pub(crate) deadline: Deadline,
    pub(crate) budget: Duration,
}

impl DeadlineExceeded {
    /// The deadline that passed.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The time the request had, from its arrival to the deadline.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outbound_headers() {
        let deadline = Deadline::after(Duration::from_millis(1500), DeadlineSource::Budget);
        assert_eq!(deadline.remaining_millis_header().unwrap(), "1500");
        assert_eq!(deadline.grpc_timeout_header().unwrap(), "1500000u");
        let long = Deadline::after(Duration::from_secs(3600 * 24), DeadlineSource::Budget);
        assert_eq!(long.grpc_timeout_header().unwrap(), "86400000m");
        let huge = Deadline::after(
            Duration::from_secs(3600 * 200_000_000),
            DeadlineSource::Budget,
        );
        // Budgets saturate at 30 years (262,800 hours).
        assert_eq!(huge.grpc_timeout_header().unwrap(), "15768000M");
        let unlimited = Deadline::after(Duration::MAX, DeadlineSource::Budget);
        assert_eq!(unlimited.grpc_timeout_header().unwrap(), "15768000M");

        // Under a millisecond left: no milliseconds header, but grpc-timeout still says so.
        let close = Deadline::after(Duration::from_micros(500), DeadlineSource::Budget);
        assert_eq!(close.remaining_millis_header(), None);
        assert_eq!(close.grpc_timeout_header().unwrap(), "500000n");
        // An expired budget is never written as 0, which receivers read as no deadline.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(deadline.remaining_millis_header(), None);
        assert_eq!(deadline.grpc_timeout_header(), None);
        assert!(deadline.is_expired());
    }
}
