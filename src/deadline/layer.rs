use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use tower::Layer;

use super::{Deadline, DeadlineExceeded, DeadlineService, FrontDoors, TrustedHeader};
use crate::ConfigError;

/// API Gateway REST APIs cut a request after 29 s (their default integration timeout).
pub const API_GATEWAY_REST_CAP: Duration = Duration::from_secs(29);
/// API Gateway HTTP APIs cut a request after 30 s.
pub const API_GATEWAY_HTTP_CAP: Duration = Duration::from_secs(30);
/// The margin kept below a cap unless another is set: time to send the answer.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(1);
/// CloudFront's default origin response timeout: a distribution answers `504` once its
/// origin has not answered within it.
pub const CLOUDFRONT_CAP: Duration = Duration::from_secs(30);

type SourceFn = dyn Fn(&Parts) -> Option<Deadline> + Send + Sync;
type TimeoutFn = dyn Fn(&DeadlineExceeded) -> Response<Full<Bytes>> + Send + Sync;

/// Answers before the gateway does: a `504` problem+json once the request's deadline passes.
///
/// See the [module docs](super) for the sources of the deadline and an example.
#[derive(Clone)]
#[must_use]
pub struct DeadlineLayer {
    pub(crate) config: Config,
}

/// The configuration, copied into every service. What most layers leave unset is behind one
/// `Arc`, and absent when unset: hosts clone the service per request (axum's router, hyper
/// through `TowerToHyperService`), and a clone that touches no reference count shared by
/// every worker thread costs nothing under load.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) cap: Duration,
    pub(crate) margin: Duration,
    pub(crate) header_max: Duration,
    pub(crate) warn_fraction: f64,
    pub(crate) shared: Option<Arc<Shared>>,
}

/// The settings of [`Config`] that hold vectors and closures.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    pub(crate) headers: Vec<TrustedHeader>,
    pub(crate) sources: Vec<Arc<SourceFn>>,
    pub(crate) timeout_response: Option<Arc<TimeoutFn>>,
}

impl Config {
    #[inline]
    pub(crate) fn budget(&self) -> Duration {
        self.cap.saturating_sub(self.margin)
    }

    #[inline]
    pub(crate) fn headers(&self) -> &[TrustedHeader] {
        self.shared.as_deref().map_or(&[], |shared| &shared.headers)
    }

    #[inline]
    pub(crate) fn sources(&self) -> &[Arc<SourceFn>] {
        self.shared.as_deref().map_or(&[], |shared| &shared.sources)
    }

    #[inline]
    pub(crate) fn on_timeout(&self) -> OnTimeout {
        OnTimeout {
            warn_fraction: self.warn_fraction,
            custom: self
                .shared
                .as_ref()
                .and_then(|shared| shared.timeout_response.clone()),
        }
    }
}

/// What a response future needs of the configuration. Only a custom timeout response is
/// shared: the default path copies two words instead of touching a reference count that
/// every worker thread would share.
#[derive(Clone)]
pub(crate) struct OnTimeout {
    pub(crate) warn_fraction: f64,
    pub(crate) custom: Option<Arc<TimeoutFn>>,
}

impl OnTimeout {
    pub(crate) fn response(&self, exceeded: DeadlineExceeded) -> Response<Full<Bytes>> {
        let mut response = match &self.custom {
            Some(make) => make(&exceeded),
            None => crate::response::problem(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "the request did not complete within its time budget of {} ms",
                    exceeded.budget.as_millis()
                ),
            ),
        };
        response.extensions_mut().insert(exceeded);
        response
    }
}

impl DeadlineLayer {
    /// A layer whose requests get `budget`, counted from their arrival at the service.
    ///
    /// Any `Duration` is accepted: a budget beyond about 30 years is taken as 30 years
    /// (`Duration::MAX` is "no budget"). A zero budget answers every request `504`, as
    /// tower's `Timeout` does.
    pub fn new(budget: Duration) -> Self {
        Self {
            config: Config {
                cap: budget,
                margin: Duration::ZERO,
                header_max: budget,
                warn_fraction: 0.8,
                shared: None,
            },
        }
    }

    /// A layer with no budget of its own: it enforces the deadline set before it (by the
    /// Lambda runner from the front door and the function, by a trusted header or a
    /// [`source`](Self::source)), answering `504` when it passes. Under the Lambda runner
    /// this is the layer to use: the runner knows the front door's cap (REST, HTTP API,
    /// function URL, ALB) better than a fixed budget.
    pub fn inherit() -> Self {
        Self::new(Duration::MAX)
    }

    /// The budget under an API Gateway REST API: [`API_GATEWAY_REST_CAP`] minus the margin
    /// (default [`DEFAULT_MARGIN`]: 28 s).
    pub fn api_gateway_rest() -> Self {
        Self::new(API_GATEWAY_REST_CAP).with_margin(DEFAULT_MARGIN)
    }

    /// The budget under an API Gateway HTTP API: [`API_GATEWAY_HTTP_CAP`] minus the margin
    /// (default [`DEFAULT_MARGIN`]: 29 s).
    pub fn api_gateway_http() -> Self {
        Self::new(API_GATEWAY_HTTP_CAP).with_margin(DEFAULT_MARGIN)
    }

    fn with_margin(mut self, margin: Duration) -> Self {
        self.config.margin = margin;
        self
    }

    fn shared(&mut self) -> &mut Shared {
        Arc::make_mut(self.config.shared.get_or_insert_with(Arc::default))
    }

    /// Time kept below the cap for sending the answer; the budget is the cap minus this.
    ///
    /// # Errors
    ///
    /// When `margin` is not below the cap: every request would be answered `504` at once.
    pub fn margin(self, margin: Duration) -> Result<Self, ConfigError> {
        if margin >= self.config.cap {
            return Err(ConfigError("the margin must be below the budget's cap"));
        }
        Ok(self.with_margin(margin))
    }

    /// The budget: the cap minus the margin.
    pub fn budget(&self) -> Duration {
        self.config.budget()
    }

    /// Also takes the budget that `header` announces, for a proxy in front that you trust.
    /// Never enable this for headers a client can set.
    pub fn trust_header(mut self, header: TrustedHeader) -> Self {
        self.shared().headers.push(header);
        self
    }

    /// The most a trusted header may announce; larger values are clamped to it
    /// (default: the budget).
    ///
    /// # Errors
    ///
    /// When `max` is zero: every request with the header would be answered `504` at once.
    pub fn max_header_budget(mut self, max: Duration) -> Result<Self, ConfigError> {
        if max.is_zero() {
            return Err(ConfigError("the largest header budget must be above zero"));
        }
        self.config.header_max = max;
        Ok(self)
    }

    /// Adds a source of deadlines computed from the request; the earliest of all sources
    /// wins. The `lambda` feature adds the gateway's arrival time and the function's deadline
    /// this way.
    pub fn source<F>(mut self, source: F) -> Self
    where
        F: Fn(&Parts) -> Option<Deadline> + Send + Sync + 'static,
    {
        self.shared().sources.push(Arc::new(source));
        self
    }

    /// Also takes the deadlines the AWS Lambda Web Adapter forwards: the front door's
    /// arrival time plus its cap (`x-amzn-request-context`: `requestTimeEpoch` for REST
    /// APIs and HTTP APIs with payload format 1.0, told apart by `resourceId`, `timeEpoch`
    /// for HTTP APIs and function URLs; CloudFront's origin response
    /// timeout too when the request carries its `x-amz-cf-id`) and the function's deadline
    /// (`x-amzn-lambda-context`: `deadline`), each minus the margin of `doors`: the same
    /// [`Deadline`] the Lambda runner computes from the event.
    ///
    /// Only behind the adapter, which overwrites these headers: a client can set them on
    /// any other host. Malformed JSON or values are ignored with a `debug` event.
    pub fn lambda_web_adapter(self, doors: FrontDoors) -> Self {
        self.source(move |parts| doors.adapter_deadline(parts))
    }

    /// Emits a `tracing` warning for a response that used more than `fraction` of its
    /// budget (default 0.8).
    ///
    /// # Errors
    ///
    /// When `fraction` is not within `0.0..=1.0`.
    pub fn warn_above(mut self, fraction: f64) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ConfigError("the warning fraction must be within 0.0..=1.0"));
        }
        self.config.warn_fraction = fraction;
        Ok(self)
    }

    /// Replaces the `504` problem+json answered when the deadline passes. The
    /// [`DeadlineExceeded`] marker is added to what `make` returns.
    pub fn timeout_response<F>(mut self, make: F) -> Self
    where
        F: Fn(&DeadlineExceeded) -> Response<Full<Bytes>> + Send + Sync + 'static,
    {
        self.shared().timeout_response = Some(Arc::new(make));
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::new(inner, self.config.clone())
    }
}

impl fmt::Debug for DeadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineLayer")
            .field("cap", &self.config.cap)
            .field("margin", &self.config.margin)
            .field("headers", &self.config.headers())
            .field("header_max", &self.config.header_max)
            .field("sources", &self.config.sources().len())
            .field("warn_fraction", &self.config.warn_fraction)
            .finish()
    }
}
