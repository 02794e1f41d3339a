//! Answer before the gateway does: a time budget for every request, visible to the handler.
//!
//! API Gateway cuts a request at 29 s (REST) or 30 s (HTTP API) and answers `504` itself,
//! while the function keeps running, and billing, for nobody. [`DeadlineLayer`] gives every
//! request a [`Deadline`], the earliest of every source that applies:
//!
//! 1. the configured budget, counted from the request's arrival at the service
//!    ([`DeadlineLayer::new`], or the presets [`DeadlineLayer::api_gateway_rest`] and
//!    [`DeadlineLayer::api_gateway_http`]: the cap minus a margin, 1 s by default);
//! 2. opt-in only, for a proxy in front that you trust: a [`TrustedHeader`]
//!    (`grpc-timeout`, `x-envoy-expected-rq-timeout-ms`, or a named header in
//!    milliseconds), clamped to a maximum;
//! 3. behind the AWS Lambda Web Adapter, opt-in: the front door's arrival time plus its
//!    cap and the function's deadline, from the headers the adapter forwards
//!    ([`DeadlineLayer::lambda_web_adapter`], with the caps of [`FrontDoors`]);
//! 4. any [`source`](DeadlineLayer::source) of the application's, a function of the request.
//!
//! A deadline set by an outer layer is kept when it is earlier: nested layers shorten the
//! budget, never extend it.
//!
//! The deadline is in the request's extensions and, while the inner service runs, readable
//! from anywhere in the request's task with [`current()`]; [`Deadline::remaining_millis_header`]
//! and [`Deadline::grpc_timeout_header`] pass what remains to outbound calls.
//!
//! When the deadline passes, the inner future is dropped (its work stops) and the answer is
//! `504 Gateway Timeout` with an `application/problem+json` body (RFC 9457), or what
//! [`DeadlineLayer::timeout_response`] makes. That response carries a [`DeadlineExceeded`]
//! marker; [`EscalateLayer::timeouts`](crate::escalate::EscalateLayer::timeouts) turns it
//! into a failed invocation, for event sources that should retry. A response that used more
//! than 80 % of its budget ([`DeadlineLayer::warn_above`]) is logged as a `tracing` warning
//! with its method, path, elapsed time and budget.
//!
//! Behind a CloudFront distribution that caches the API's `GET`s, a `504` is kept for the
//! distribution's error caching minimum TTL (10 s by default) and served to everyone who asks
//! for the same URL: CloudFront ignores `Cache-Control: no-store` on every 5xx but `501`.
//! Set that TTL to 0 for `504` on the API's paths.
//!
//! The deadline bounds the inner service's response future, up to the response's head, as
//! tower-http's `TimeoutLayer` does: a body that streams after the head is not cut. Behind
//! API Gateway and `lambda_http` the whole body is buffered before anything is sent, so a
//! handler that streams a slow body there bounds it itself (with [`current()`]).
//!
//! The inner service's errors pass through unchanged (`Infallible` stays `Infallible`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_serverless::deadline::{self, DeadlineLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_millis(50)))
//!     .service(service_fn(|request: Request<String>| async move {
//!         let deadline = deadline::current().expect("set by the layer");
//!         if request.uri().path() == "/slow" {
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{:?}", deadline.source())))
//!     }));
//!
//! let fast = service.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(fast.status(), StatusCode::OK);
//!
//! let slow = service.oneshot(Request::get("/slow").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
//! assert_eq!(slow.headers()["content-type"], "application/problem+json");
//! # }
//! ```

mod front_door;
pub mod future;
mod header;
mod layer;
mod scope;
mod service;
mod value;

#[cfg(feature = "lambda")]
pub(crate) use self::front_door::{plausible, v1_door, v2_door, Epoch};
pub use self::front_door::{FrontDoor, FrontDoors};
pub use self::header::TrustedHeader;
pub use self::layer::{
    DeadlineLayer, API_GATEWAY_HTTP_CAP, API_GATEWAY_REST_CAP, CLOUDFRONT_CAP, DEFAULT_MARGIN,
};
pub use self::scope::current;
pub use self::service::DeadlineService;
pub(crate) use self::value::{later, seconds_up};
pub use self::value::{Deadline, DeadlineExceeded, DeadlineSource};
pub use crate::ConfigError;
