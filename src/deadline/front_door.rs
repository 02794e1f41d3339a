//! The AWS front doors of a Lambda function and the time each gives a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use tokio::time::Instant;

use super::value::later;
use super::{
    Deadline, DeadlineSource, API_GATEWAY_HTTP_CAP, API_GATEWAY_REST_CAP, CLOUDFRONT_CAP,
    DEFAULT_MARGIN,
};
use crate::ConfigError;

/// How a request reached a Lambda function, which decides the cap in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontDoor {
    /// An API Gateway REST API: 29 s by default, up to 300 s for Regional and private APIs
    /// with a raised integration timeout, 15 min with response streaming
    /// ([`FrontDoors::rest_cap`]).
    RestApi,
    /// An API Gateway HTTP API: 30 s, fixed; with payload format 2.0, or 1.0, whose events
    /// are shaped like a REST API's and tell it by their route key.
    HttpApi,
    /// A Lambda function URL: no cap but the function's own timeout.
    FunctionUrl,
    /// An Application Load Balancer: no cap but the function's own timeout.
    Alb,
}

/// The longest a Lambda invocation may run, and so the longest any front door may wait.
const LAMBDA_MAX: Duration = Duration::from_secs(15 * 60);

/// A function deadline this long before now is no epoch at all: `cargo lambda watch` sends
/// the constant `600000`.
const IMPLAUSIBLE_BEFORE: Duration = Duration::from_secs(15 * 60);

/// The caps of the front doors and the margin kept below them and below the function's
/// deadline: what the Lambda runner (feature `lambda`, its `LambdaLayer`) and
/// [`DeadlineLayer::lambda_web_adapter`] compute a request's [`Deadline`] from.
///
/// ```
/// use std::time::Duration;
/// use tower_serverless::deadline::{FrontDoor, FrontDoors};
///
/// # fn main() -> Result<(), tower_serverless::ConfigError> {
/// // A Regional REST API whose integration timeout was raised to 120 s.
/// let doors = FrontDoors::new().rest_cap(Duration::from_secs(120))?;
/// assert_eq!(doors.cap(FrontDoor::RestApi), Some(Duration::from_secs(120)));
/// assert_eq!(doors.cap(FrontDoor::HttpApi), Some(Duration::from_secs(30)));
/// assert_eq!(doors.cap(FrontDoor::FunctionUrl), None);
/// # Ok(())
/// # }
/// ```
///
/// [`DeadlineLayer::lambda_web_adapter`]: super::DeadlineLayer::lambda_web_adapter
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontDoors {
    rest_cap: Duration,
    cloudfront_cap: Option<Duration>,
    margin: Duration,
}

/// The header CloudFront adds to every request it sends to an origin.
const CLOUDFRONT_ID: HeaderName = HeaderName::from_static("x-amz-cf-id");

impl Default for FrontDoors {
    fn default() -> Self {
        Self::new()
    }
}

impl FrontDoors {
    /// REST APIs capped at 29 s, HTTP APIs at 30 s, function URLs and ALB uncapped,
    /// CloudFront in front of any of them at 30 s; a 1 s margin.
    pub fn new() -> Self {
        Self {
            rest_cap: API_GATEWAY_REST_CAP,
            cloudfront_cap: Some(CLOUDFRONT_CAP),
            margin: DEFAULT_MARGIN,
        }
    }

    /// The integration timeout of your REST API (default 29 s): up to 300 s for Regional
    /// and private APIs since June 2024, up to 15 min with response streaming.
    ///
    /// # Errors
    ///
    /// When `cap` is zero or above 15 minutes, which no REST API allows.
    pub fn rest_cap(mut self, cap: Duration) -> Result<Self, ConfigError> {
        if cap.is_zero() || cap > LAMBDA_MAX {
            return Err(ConfigError(
                "a REST API's cap is above zero and at most 15 minutes",
            ));
        }
        self.rest_cap = cap;
        Ok(self)
    }

    /// The origin response timeout of a CloudFront distribution in front of the function
    /// (default 30 s, CloudFront's own; up to 60 s, or 180 s with a raised quota), or
    /// `None` to ignore CloudFront. A request came through CloudFront when it carries the
    /// `X-Amz-Cf-Id` header CloudFront adds; CloudFront answers `504` itself once the
    /// origin has not answered within this time, as API Gateway does at its cap, so the
    /// cap applies beside the door's own: it is what bounds a function URL or an ALB
    /// behind a distribution. It counts from the door's arrival time, or for an ALB, whose
    /// events have none, from when the function got the request. A client that calls the
    /// function directly with the header only shortens its own request's time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_serverless::deadline::FrontDoors;
    /// use tower_serverless::DeadlineLayer;
    ///
    /// # fn main() -> Result<(), tower_serverless::ConfigError> {
    /// // Behind the Lambda Web Adapter, with a distribution in front whose origin response
    /// // timeout was raised to 60 s.
    /// let doors = FrontDoors::new().cloudfront_cap(Some(Duration::from_secs(60)))?;
    /// let layer = DeadlineLayer::inherit().lambda_web_adapter(doors);
    /// assert!(FrontDoors::new().cloudfront_cap(Some(Duration::ZERO)).is_err());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When `cap` is zero or above 15 minutes, the longest an invocation runs.
    pub fn cloudfront_cap(mut self, cap: Option<Duration>) -> Result<Self, ConfigError> {
        if cap.is_some_and(|cap| cap.is_zero() || cap > LAMBDA_MAX) {
            return Err(ConfigError(
                "CloudFront's cap is above zero and at most 15 minutes",
            ));
        }
        self.cloudfront_cap = cap;
        Ok(self)
    }

    /// The time kept below each cap and below the function's deadline for sending the
    /// answer (default 1 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The cap of `door`; `None` for the doors with none but the function's own timeout.
    pub fn cap(&self, door: FrontDoor) -> Option<Duration> {
        match door {
            FrontDoor::RestApi => Some(self.rest_cap),
            FrontDoor::HttpApi => Some(API_GATEWAY_HTTP_CAP),
            FrontDoor::FunctionUrl | FrontDoor::Alb => None,
        }
    }

    /// The deadline the front doors set, each its arrival time plus its cap, minus the
    /// margin: the `door` the request came through, if known, at `arrived_epoch_ms` (`None`
    /// when the event does not say, as an ALB's), and CloudFront in front of it when
    /// `headers` say so. An arrival that is no plausible epoch in milliseconds (more than
    /// 15 minutes ago: `cargo lambda watch` sends seconds) is none, with one warning per
    /// process; CloudFront then counts from now.
    pub(crate) fn gateway(
        &self,
        door: Option<FrontDoor>,
        arrived_epoch_ms: Option<i64>,
        headers: &HeaderMap,
    ) -> Option<Deadline> {
        let door_cap = door.and_then(|door| self.cap(door));
        let cloudfront_cap = self
            .cloudfront_cap
            .filter(|_| headers.contains_key(CLOUDFRONT_ID));
        if door_cap.is_none() && cloudfront_cap.is_none() {
            return None;
        }
        let arrived =
            arrived_epoch_ms.and_then(|epoch_ms| plausible(epoch_ms, Epoch::GatewayArrival));
        let capped = |arrived: Instant, cap: Duration| {
            Deadline::at(
                before(later(arrived, cap), self.margin),
                DeadlineSource::Gateway,
            )
        };
        let door = door_cap.zip(arrived).map(|(cap, at)| capped(at, cap));
        let cloudfront =
            cloudfront_cap.map(|cap| capped(arrived.unwrap_or_else(Instant::now), cap));
        door.into_iter().chain(cloudfront).reduce(Deadline::min)
    }

    /// The function's deadline minus the margin; `None` for a value that is no plausible
    /// epoch (more than 15 minutes before now), with one warning per process.
    pub(crate) fn function(&self, deadline_epoch_ms: i64) -> Option<Deadline> {
        let at = plausible(deadline_epoch_ms, Epoch::FunctionDeadline)?;
        Some(Deadline::at(
            before(at, self.margin),
            DeadlineSource::Function,
        ))
    }
}

/// A time the event gives in Unix milliseconds.
#[derive(Clone, Copy)]
pub(crate) enum Epoch {
    FunctionDeadline,
    GatewayArrival,
}

/// The instant of `epoch_ms`, unless it is no plausible Unix time in milliseconds (more
/// than 15 minutes before now, longer than any invocation): `cargo lambda watch` sends a
/// constant (`600000`) for the function's deadline and seconds for the gateway's arrival.
/// Such a value is taken as absent, with one warning per process and kind naming it.
pub(crate) fn plausible(epoch_ms: i64, what: Epoch) -> Option<Instant> {
    let now_ms = now_epoch_ms();
    if i128::from(epoch_ms) >= now_ms - IMPLAUSIBLE_BEFORE.as_millis() as i128 {
        return Some(instant_of(i128::from(epoch_ms)));
    }
    static WARNED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
    let (index, name) = match what {
        Epoch::FunctionDeadline => (0, "the function's deadline"),
        Epoch::GatewayArrival => (1, "the gateway's arrival time"),
    };
    if !WARNED[index].swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "tower_serverless::lambda",
            value = epoch_ms,
            "{name} {epoch_ms} is no Unix time in milliseconds (cargo lambda watch sends other values); \
             going on without it, the other deadlines and the configured budgets still apply"
        );
    }
    None
}

fn now_epoch_ms() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i128)
}

/// The instant of a Unix time in milliseconds, on the clock deadlines use.
fn instant_of(epoch_ms: i128) -> Instant {
    let now_ms = now_epoch_ms();
    let now = Instant::now();
    let delta = Duration::from_millis(
        u64::try_from((epoch_ms - now_ms).unsigned_abs()).unwrap_or(u64::MAX),
    );
    if epoch_ms >= now_ms {
        later(now, delta)
    } else {
        now.checked_sub(delta).unwrap_or(now)
    }
}

fn before(at: Instant, margin: Duration) -> Instant {
    at.checked_sub(margin).unwrap_or(at)
}

/// What the Lambda Web Adapter forwards in `x-amzn-request-context`: the event's request
/// context as JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdapterRequestContext {
    request_time_epoch: Option<i64>,
    resource_id: Option<String>,
    stage: Option<String>,
    time_epoch: Option<i64>,
    domain_name: Option<String>,
    elb: Option<serde_json::Value>,
}

/// What the Lambda Web Adapter forwards in `x-amzn-lambda-context`.
#[derive(Deserialize)]
struct AdapterLambdaContext {
    deadline: Option<i64>,
}

/// The front door of a payload-1.0 event, a REST API's unless it is an HTTP API's: an HTTP
/// API with payload format 1.0 sends events shaped like a REST API's, but with its route
/// key (`ANY /{proxy+}`, `$default`) as `requestContext.resourceId`, where a REST API has
/// its resource's id (`abc123`), or on its `$default` stage, a name no REST stage may have.
/// An event that says neither is taken for a REST API's, whose cap is the shorter by
/// default.
pub(crate) fn v1_door(resource_id: Option<&str>, stage: Option<&str>) -> FrontDoor {
    let route_key = resource_id.is_some_and(|id| id.contains(' ') || id.starts_with('$'));
    if route_key || stage == Some("$default") {
        FrontDoor::HttpApi
    } else {
        FrontDoor::RestApi
    }
}

/// The front door of a payload-v2 event: a function URL's domain is `*.lambda-url.*`.
pub(crate) fn v2_door(domain_name: Option<&str>) -> FrontDoor {
    if domain_name.is_some_and(|domain| domain.contains(".lambda-url.")) {
        FrontDoor::FunctionUrl
    } else {
        FrontDoor::HttpApi
    }
}

impl FrontDoors {
    /// The deadline from the Lambda Web Adapter's headers: the earliest of the front door's
    /// and the function's. Malformed JSON or values are ignored, with a debug event.
    pub(crate) fn adapter_deadline(&self, parts: &Parts) -> Option<Deadline> {
        let context = adapter_header::<AdapterRequestContext>(parts, "x-amzn-request-context");
        let (door, arrived) = match context {
            Some(AdapterRequestContext {
                request_time_epoch: Some(epoch),
                resource_id,
                stage,
                ..
            }) => (
                Some(v1_door(resource_id.as_deref(), stage.as_deref())),
                Some(epoch),
            ),
            Some(AdapterRequestContext {
                time_epoch: Some(epoch),
                domain_name,
                ..
            }) => (Some(v2_door(domain_name.as_deref())), Some(epoch)),
            Some(AdapterRequestContext { elb: Some(_), .. }) => (Some(FrontDoor::Alb), None),
            _ => (None, None),
        };
        let gateway = self.gateway(door, arrived, &parts.headers);
        let function = adapter_header::<AdapterLambdaContext>(parts, "x-amzn-lambda-context")
            .and_then(|context| context.deadline)
            .and_then(|deadline| self.function(deadline));
        [gateway, function]
            .into_iter()
            .flatten()
            .reduce(Deadline::min)
    }
}

fn adapter_header<T: for<'de> Deserialize<'de>>(parts: &Parts, name: &str) -> Option<T> {
    let value = parts.headers.get(name)?;
    match serde_json::from_slice(value.as_bytes()) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            tracing::debug!(target: "tower_serverless::deadline", header = name, %error, "ignoring a malformed Lambda Web Adapter header");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        now_epoch_ms() as i64
    }

    #[tokio::test]
    async fn caps_per_door() {
        let doors = FrontDoors::new();
        let none = HeaderMap::new();
        let gateway = |doors: FrontDoors, door, arrived| doors.gateway(Some(door), arrived, &none);
        let arrived = Some(now_ms());
        let rest = gateway(doors, FrontDoor::RestApi, arrived).unwrap();
        assert!(rest.remaining() <= Duration::from_secs(28));
        assert!(rest.remaining() > Duration::from_secs(27));
        let http = gateway(doors, FrontDoor::HttpApi, arrived).unwrap();
        assert!(http.remaining() > Duration::from_secs(28));
        assert_eq!(gateway(doors, FrontDoor::FunctionUrl, arrived), None);
        assert_eq!(gateway(doors, FrontDoor::Alb, None), None);
        assert_eq!(gateway(doors, FrontDoor::RestApi, Some(0)), None);
        assert_eq!(gateway(doors, FrontDoor::RestApi, None), None);
        // cargo lambda watch sends seconds.
        let seconds = arrived.map(|ms| ms / 1000);
        assert_eq!(gateway(doors, FrontDoor::HttpApi, seconds), None);
        let raised = doors.rest_cap(Duration::from_secs(300)).unwrap();
        let rest = gateway(raised, FrontDoor::RestApi, arrived).unwrap();
        assert!(rest.remaining() > Duration::from_secs(298));
        assert!(FrontDoors::new().rest_cap(Duration::ZERO).is_err());
        assert!(FrontDoors::new()
            .rest_cap(Duration::from_secs(15 * 60 + 1))
            .is_err());
        assert_eq!(
            v2_door(Some("abc.lambda-url.us-east-1.on.aws")),
            FrontDoor::FunctionUrl
        );
        assert_eq!(
            v2_door(Some("abc.execute-api.us-east-1.amazonaws.com")),
            FrontDoor::HttpApi
        );
        assert_eq!(v2_door(None), FrontDoor::HttpApi);
        // Payload 1.0: a REST resource's id, or an HTTP API's route key or `$default` stage
        // (AWS's own sample of the format has no resource id, only that stage).
        assert_eq!(v1_door(Some("roq9wj"), Some("prod")), FrontDoor::RestApi);
        assert_eq!(v1_door(None, Some("prod")), FrontDoor::RestApi);
        assert_eq!(v1_door(None, None), FrontDoor::RestApi);
        let http = [
            (Some("ANY /{proxy+}"), Some("prod")),
            (Some("$default"), Some("prod")),
            (None, Some("$default")),
        ];
        for (resource_id, stage) in http {
            assert_eq!(
                v1_door(resource_id, stage),
                FrontDoor::HttpApi,
                "{resource_id:?}"
            );
        }
    }

    #[tokio::test]
    async fn cloudfront_in_front_caps_every_door() {
        let mut through = HeaderMap::new();
        through.insert(
            CLOUDFRONT_ID,
            http::HeaderValue::from_static("rEZ41zHijmTaPJrLdiavv7oU8g"),
        );
        // Whole seconds left, rounded down; `None` when nothing caps the request.
        let left = |doors: FrontDoors, door, arrived, headers: &HeaderMap| {
            let deadline = doors.gateway(door, arrived, headers)?;
            Some(deadline.remaining().as_secs())
        };
        let doors = FrontDoors::new();
        let ten_ago = Some(now_ms() - 10_000);
        let url = Some(FrontDoor::FunctionUrl);
        // 30 - 10 - 1, from the door's arrival.
        assert_eq!(left(doors, url, ten_ago, &through), Some(18));
        // An ALB event says nothing of its arrival: from now, 30 - 1.
        assert_eq!(left(doors, Some(FrontDoor::Alb), None, &through), Some(28));
        // The shorter cap wins: REST's 29 s.
        let rest = Some(FrontDoor::RestApi);
        assert_eq!(left(doors, rest, ten_ago, &through), Some(17));
        // An arrival that is no epoch, or no door known: from now.
        let seconds = ten_ago.map(|ms| ms / 1000);
        assert_eq!(left(doors, url, seconds, &through), Some(28));
        assert_eq!(left(doors, None, None, &through), Some(28));
        // A raised timeout; CloudFront ignored; no header, no CloudFront.
        let raised = doors.cloudfront_cap(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(left(raised, url, ten_ago, &through), Some(48));
        let ignored = doors.cloudfront_cap(None).unwrap();
        assert_eq!(left(ignored, url, ten_ago, &through), None);
        assert_eq!(left(doors, url, ten_ago, &HeaderMap::new()), None);
        for bad in [Duration::ZERO, Duration::from_secs(15 * 60 + 1)] {
            assert!(doors.cloudfront_cap(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn implausible_function_deadlines_are_none() {
        let doors = FrontDoors::new();
        for constant in [600_000, 0, -1, i64::MIN] {
            assert_eq!(doors.function(constant), None, "{constant}");
        }
        let soon = doors.function(now_ms() + 10_000).unwrap();
        assert!(soon.remaining() <= Duration::from_secs(9));
        // A deadline a little in the past is real: the budget is spent.
        assert!(doors.function(now_ms() - 1_000).unwrap().is_expired());
        assert!(doors.function(i64::MAX).is_some());
    }
}
